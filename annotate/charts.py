"""Small SVG charts drawn on the server: no JavaScript, no library, nothing fetched.

Pure Python: every label is escaped, so the markup is safe to embed in a page.
"""

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 420, 220
PAD_LEFT, PAD_BOTTOM, PAD_TOP = 40, 30, 34
MAX_DOTS = 40  # a series with at most this many points marks each


def bar_chart(values: Sequence[float], labels: Sequence[str], *, title: str,
              value_format: str = "{:g}", reference: float | None = None,
              reference_label: str = "") -> str:
    """Return an SVG bar chart; `reference` draws a dashed horizontal line (e.g. expected).

    >>> svg = bar_chart([1, 3], ["a", "b<"], title="t")
    >>> svg.startswith("<svg") and "b&lt;" in svg
    True
    """
    top = max([*values, reference or 0, 1e-9])
    plot_w, plot_h = WIDTH - PAD_LEFT - 10, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / max(len(values), 1)
    parts = [_frame(title)]
    if not values:
        parts.append(f'<text class="label" x="{WIDTH / 2}" y="{HEIGHT / 2}" '
                     'text-anchor="middle">No data yet</text></svg>')
        return "".join(parts)
    for index, (value, label) in enumerate(zip(values, labels, strict=True)):
        bar_h = plot_h * value / top
        x = PAD_LEFT + index * step + step * 0.15
        y = PAD_TOP + plot_h - bar_h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" '
            f'height="{bar_h:.1f}"><title>{escape(label)}: '
            f'{escape(value_format.format(value))}</title></rect>'
        )
        parts.append(
            f'<text class="label" x="{x + step * 0.35:.1f}" y="{HEIGHT - PAD_BOTTOM + 14}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
        if bar_h > 0:
            parts.append(
                f'<text class="value" x="{x + step * 0.35:.1f}" y="{y - 3:.1f}" '
                f'text-anchor="middle">{escape(value_format.format(value))}</text>'
            )
    if reference is not None:
        y = PAD_TOP + plot_h - plot_h * reference / top
        parts.append(
            f'<line class="reference" x1="{PAD_LEFT}" x2="{WIDTH - 10}" y1="{y:.1f}" '
            f'y2="{y:.1f}"/><text class="label" x="{WIDTH - 12}" y="{y - 4:.1f}" '
            f'text-anchor="end">{escape(reference_label)}</text>'
        )
    parts.append(_axis(top, value_format))
    parts.append("</svg>")
    return "".join(parts)


def _frame(title: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f'<text class="title" x="4" y="16">{escape(title)}</text>'
    )


def _axis(top: float, value_format: str) -> str:
    base = HEIGHT - PAD_BOTTOM
    return (
        f'<line class="axis" x1="{PAD_LEFT}" x2="{WIDTH - 10}" y1="{base}" y2="{base}"/>'
        f'<text class="label" x="{PAD_LEFT - 4}" y="{PAD_TOP + 4}" text-anchor="end">'
        f"{escape(value_format.format(top))}</text>"
        f'<text class="label" x="{PAD_LEFT - 4}" y="{base}" text-anchor="end">0</text>'
    )


def line_chart(series: dict[str, Sequence[Sequence[float]]], *, title: str,
               value_format: str = "{:.2g}") -> str:
    """Return an SVG line chart of named series of [x, y] points (e.g. loss by step).

    >>> svg = line_chart({"loss": [[1, 0.7], [2, 0.5]], "a<b": []}, title="t")
    >>> svg.count("<polyline"), "a&lt;b" in svg
    (1, True)
    """
    points = [p for values in series.values() for p in values]
    left = PAD_LEFT + 10  # room for a negative y label
    parts = [_frame(title)]
    if not points:
        parts.append(f'<text class="label" x="{WIDTH / 2}" y="{HEIGHT / 2}" '
                     'text-anchor="middle">No data yet</text></svg>')
        return "".join(parts)
    x_low, x_high = min(p[0] for p in points), max(p[0] for p in points)
    y_low, y_high = min(0.0, *(p[1] for p in points)), max(p[1] for p in points)
    x_span, y_span = (x_high - x_low) or 1, (y_high - y_low) or 1
    plot_w, plot_h = WIDTH - left - 10, HEIGHT - PAD_BOTTOM - PAD_TOP

    def xy(point) -> str:
        x = left + plot_w * (point[0] - x_low) / x_span
        y = PAD_TOP + plot_h - plot_h * (point[1] - y_low) / y_span
        return f"{x:.1f},{y:.1f}"

    legend_x = left
    for index, (name, values) in enumerate(series.items()):
        parts.append(f'<text class="label series-{index}" x="{legend_x + 14}" '
                     f'y="{PAD_TOP - 6}">{escape(name)}</text>'
                     f'<line class="line series-{index}" x1="{legend_x}" x2="{legend_x + 10}" '
                     f'y1="{PAD_TOP - 10}" y2="{PAD_TOP - 10}"/>')
        legend_x += 24 + 7 * len(name)  # the next entry after this one's name
        if values:
            parts.append(f'<polyline class="line series-{index}" '
                         f'points="{" ".join(xy(p) for p in values)}"/>')
        if 0 < len(values) <= MAX_DOTS:  # few points (rounds, say): each one shows
            parts.extend(f'<circle class="dot series-{index}" r="2.5" cx="{xy(p).split(",")[0]}"'
                         f' cy="{xy(p).split(",")[1]}"/>' for p in values)
    base = HEIGHT - PAD_BOTTOM
    parts.append(
        f'<line class="axis" x1="{left}" x2="{WIDTH - 10}" y1="{base}" y2="{base}"/>'
        f'<text class="label" x="{left - 4}" y="{PAD_TOP + 4}" text-anchor="end">'
        f"{escape(value_format.format(y_high))}</text>"
        f'<text class="label" x="{left - 4}" y="{base}" text-anchor="end">'
        f"{escape(value_format.format(y_low))}</text>"
        f'<text class="label" x="{left}" y="{base + 14}">{escape(f"{x_low:g}")}</text>'
        f'<text class="label" x="{WIDTH - 10}" y="{base + 14}" text-anchor="end">'
        f"{escape(f'{x_high:g}')}</text></svg>"
    )
    return "".join(parts)
