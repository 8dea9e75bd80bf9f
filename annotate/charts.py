"""Small SVG charts drawn on the server: no JavaScript, no library, nothing fetched.

Pure Python: every label is escaped, so the markup is safe to embed in a page.
"""

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 420, 220
PAD_LEFT, PAD_BOTTOM, PAD_TOP = 40, 30, 34


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
