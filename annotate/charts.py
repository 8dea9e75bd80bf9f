"""Small SVG charts drawn on the server: no JavaScript, no library, nothing fetched.

Pure Python: every label is escaped, so the markup is safe to embed in a page.

Layout, top to bottom: the title; a legend row (a bar chart's reference line, a line chart's
series); the plot, with headroom for the value over the tallest bar; the x tick labels; the x
axis label. The y axis label runs up the left edge. Nothing is drawn over the plot but the
reference line, so no text lands on a bar. Text is 13 px in the page's CSS at the viewBox's
scale; the dashboard shows charts at least as wide as their viewBox.
"""

from collections.abc import Callable, Sequence
from html import escape

WIDTH, HEIGHT = 420, 250
PAD_LEFT, PAD_RIGHT, PAD_BOTTOM, PAD_TOP = 56, 12, 48, 46
HEADROOM = 18  # above the tallest bar: its value label
CHAR_WIDTH = 8  # about the width of a character of 13 px text, to space the legend
MAX_DOTS = 40  # a series with at most this many points marks each


def bar_chart(values: Sequence[float], labels: Sequence[str], *, title: str,
              value_format: str = "{:g}", reference: float | None = None,
              reference_label: str = "", x_label: str = "", y_label: str = "") -> str:
    """Return an SVG bar chart; `reference` draws a dashed horizontal line (e.g. expected),
    named in the legend row above the plot.

    >>> svg = bar_chart([1, 3], ["a", "b<"], title="t", x_label="x", y_label="y")
    >>> svg.startswith("<svg") and "b&lt;" in svg and 'class="axis-label"' in svg
    True
    """
    top = max([*values, reference or 0, 1e-9])
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP - HEADROOM
    base = HEIGHT - PAD_BOTTOM
    step = plot_w / max(len(values), 1)
    if not values:
        return _frame(title, WIDTH) + _no_data(WIDTH)
    parts = [_frame(title, WIDTH), _axis_labels(x_label, y_label, PAD_LEFT, WIDTH)]
    for index, (value, label) in enumerate(zip(values, labels, strict=True)):
        bar_h = plot_h * value / top
        x = PAD_LEFT + index * step + step * 0.15
        y = base - bar_h
        shown = escape(value_format.format(value))
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" '
            f'height="{bar_h:.1f}"><title>{escape(label)}: {shown}</title></rect>'
            f'<text class="label tick" x="{x + step * 0.35:.1f}" y="{base + 17}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
        if bar_h > 0:
            parts.append(f'<text class="value" x="{x + step * 0.35:.1f}" y="{y - 4:.1f}" '
                         f'text-anchor="middle">{shown}</text>')
    if reference is not None:
        y = base - plot_h * reference / top
        name = f"{reference_label} ({value_format.format(reference)})"
        legend_x = WIDTH - PAD_RIGHT - CHAR_WIDTH * len(name) - 26
        parts.append(
            f'<line class="reference" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y:.1f}" '
            f'y2="{y:.1f}"/><line class="reference" x1="{legend_x}" x2="{legend_x + 20}" '
            f'y1="{PAD_TOP - 14}" y2="{PAD_TOP - 14}"/><text class="label legend" '
            f'x="{legend_x + 26}" y="{PAD_TOP - 10}">{escape(name)}</text>'
        )
    parts.append(_y_axis(PAD_LEFT, WIDTH, escape(value_format.format(top)), "0",
                         top_y=base - plot_h))
    parts.append("</svg>")
    return "".join(parts)


def _frame(title: str, width: int) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f'<text class="title" x="4" y="17">{escape(title)}</text>'
    )


def _no_data(width: int) -> str:
    return (f'<text class="label" x="{width / 2}" y="{HEIGHT / 2}" '
            'text-anchor="middle">No data yet</text></svg>')


def _axis_labels(x_label: str, y_label: str, left: int, width: int) -> str:
    middle_y = (PAD_TOP + HEIGHT - PAD_BOTTOM) / 2
    parts = []
    if x_label:
        parts.append(f'<text class="axis-label" x="{(left + width - PAD_RIGHT) / 2:.0f}" '
                     f'y="{HEIGHT - 6}" text-anchor="middle">{escape(x_label)}</text>')
    if y_label:
        parts.append(f'<text class="axis-label" x="0" y="0" text-anchor="middle" '
                     f'transform="translate(15 {middle_y:.0f}) rotate(-90)">'
                     f"{escape(y_label)}</text>")
    return "".join(parts)


def _y_axis(left: int, width: int, high: str, low: str, *, top_y: float) -> str:
    base = HEIGHT - PAD_BOTTOM
    return (
        f'<line class="axis" x1="{left}" x2="{width - PAD_RIGHT}" y1="{base}" y2="{base}"/>'
        f'<line class="axis" x1="{left}" x2="{left}" y1="{top_y:.1f}" y2="{base}"/>'
        f'<text class="label" x="{left - 5}" y="{top_y + 5:.1f}" text-anchor="end">{high}</text>'
        f'<text class="label" x="{left - 5}" y="{base}" text-anchor="end">{low}</text>'
    )


def line_chart(series: dict[str, Sequence[Sequence[float]]], *, title: str,
               value_format: str = "{:.2g}", x_label: str = "", y_label: str = "",
               x_format: Callable[[float], str] = "{:g}".format, width: int = WIDTH) -> str:
    """Return an SVG line chart of named series of [x, y] points (e.g. loss by step).

    `x_format` writes the first and last x (a day number as a date, say); `width` widens the
    viewBox for a chart that spans the page.

    >>> svg = line_chart({"loss": [[1, 0.7], [2, 0.5]], "a<b": []}, title="t")
    >>> svg.count("<polyline"), "a&lt;b" in svg
    (1, True)
    """
    points = [p for values in series.values() for p in values]
    left = PAD_LEFT + 6  # room for a negative y label
    if not points:
        return _frame(title, width) + _no_data(width)
    parts = [_frame(title, width), _axis_labels(x_label, y_label, left, width)]
    x_low, x_high = min(p[0] for p in points), max(p[0] for p in points)
    y_low, y_high = min(0.0, *(p[1] for p in points)), max(p[1] for p in points)
    x_span, y_span = (x_high - x_low) or 1, (y_high - y_low) or 1
    plot_w, plot_h = width - left - PAD_RIGHT, HEIGHT - PAD_BOTTOM - PAD_TOP
    base = HEIGHT - PAD_BOTTOM

    def xy(point) -> tuple[float, float]:
        return (left + plot_w * (point[0] - x_low) / x_span,
                PAD_TOP + plot_h - plot_h * (point[1] - y_low) / y_span)

    legend_x = left
    for index, (name, values) in enumerate(series.items()):
        parts.append(f'<text class="label legend series-{index}" x="{legend_x + 14}" '
                     f'y="{PAD_TOP - 10}">{escape(name)}</text>'
                     f'<line class="line series-{index}" x1="{legend_x}" x2="{legend_x + 10}" '
                     f'y1="{PAD_TOP - 14}" y2="{PAD_TOP - 14}"/>')
        legend_x += 28 + CHAR_WIDTH * len(name)  # the next entry after this one's name
        if values:
            line = " ".join(f"{x:.1f},{y:.1f}" for x, y in map(xy, values))
            parts.append(f'<polyline class="line series-{index}" points="{line}"/>')
        if 0 < len(values) <= MAX_DOTS:  # few points (rounds, say): each one shows
            parts.extend(f'<circle class="dot series-{index}" r="2.5" cx="{x:.1f}" '
                         f'cy="{y:.1f}"/>' for x, y in map(xy, values))
    parts.append(_y_axis(left, width, escape(value_format.format(y_high)),
                         escape(value_format.format(y_low)), top_y=PAD_TOP))
    parts.append(
        f'<text class="label tick" x="{left}" y="{base + 17}">{escape(x_format(x_low))}</text>'
        f'<text class="label tick" x="{width - PAD_RIGHT}" y="{base + 17}" text-anchor="end">'
        f"{escape(x_format(x_high))}</text></svg>"
    )
    return "".join(parts)
