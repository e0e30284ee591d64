"""Server-drawn SVG charts for the dashboard (no JavaScript, no CDN).

Each function returns SVG markup (:class:`markupsafe.Markup`) with every label
escaped, a ``<title>`` per bar (a tooltip in any browser) and an ``aria-label``
so that the figure also reads as text. Numbers are always shown next to their
bars: the chart never is the only place a number appears.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

DISCLOSED_COLOR = "#1b6ca8"
REFUSED_COLOR = "#c0392b"
NO_MATCH_COLOR = "#7f8c8d"
BAR_COLOR = "#34495e"


def _nice_max(value: int) -> int:
    """A round axis maximum at or above ``value`` (1, 2, 5 x 10^k)."""
    if value <= 0:
        return 1
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def daily_bars(
    days: Sequence[str],
    series: Mapping[str, Sequence[int]],
    colors: Mapping[str, str],
    *,
    title: str,
) -> Markup:
    """Grouped vertical bars per day, one bar per series (e.g. disclosed / refused)."""
    width, height = 760, 260
    left, right, top, bottom = 48, 12, 28, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    names = list(series)
    highest = max((max(v, default=0) for v in series.values()), default=0)
    peak = 4 * _nice_max(-(-highest // 4))  # four equal integer gridline steps
    slot = plot_w / max(len(days), 1)
    bar_w = max(1.0, min(18.0, (slot - 4) / max(len(names), 1)))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="18" class="chart-title">{escape(title)}</text>',
    ]
    for tick in range(5):
        value = peak // 4 * tick
        y = top + plot_h - plot_h * tick / 4
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{value}</text>'
        )
    label_every = max(1, len(days) // 12)
    for i, day in enumerate(days):
        x0 = left + i * slot + (slot - bar_w * len(names)) / 2
        for j, name in enumerate(names):
            value = series[name][i]
            h = plot_h * value / peak
            x = x0 + j * bar_w
            y = top + plot_h - h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colors.get(name, BAR_COLOR)}" data-series="{escape(name)}" '
                f'data-day="{escape(day)}" data-value="{value}">'
                f"<title>{escape(day)}: {value} {escape(name)}</title></rect>"
            )
        if i % label_every == 0:
            cx = left + i * slot + slot / 2
            parts.append(
                f'<text x="{cx:.1f}" y="{top + plot_h + 14}" text-anchor="end" class="tick" '
                f'transform="rotate(-40 {cx:.1f} {top + plot_h + 14})">{escape(day[5:])}</text>'
            )
    legend_x = left
    for name in names:
        parts.append(
            f'<rect x="{legend_x}" y="{height - 14}" width="10" height="10" '
            f'fill="{colors.get(name, BAR_COLOR)}"/>'
            f'<text x="{legend_x + 14}" y="{height - 5}" class="tick">{escape(name)}</text>'
        )
        legend_x += 14 + 8 * len(name) + 20
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (every interpolated label is escaped above)


def horizontal_bars(
    items: Sequence[tuple[str, int]], *, title: str, color: str = BAR_COLOR
) -> Markup:
    """One labelled horizontal bar per item, its count written at the bar's end."""
    row_h, label_w, width = 24, 260, 760
    height = 34 + row_h * max(len(items), 1)
    peak = max((v for _, v in items), default=0) or 1
    bar_space = width - label_w - 70
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="4" y="18" class="chart-title">{escape(title)}</text>',
    ]
    if not items:
        parts.append('<text x="4" y="46" class="tick">nothing in this period</text>')
    for i, (label, value) in enumerate(items):
        y = 30 + i * row_h
        w = bar_space * value / peak
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" class="label">'
            f"{escape(label)}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" '
            f'fill="{color}" data-label="{escape(label)}" data-value="{value}">'
            f"<title>{escape(label)}: {value}</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" class="value">{value}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (every interpolated label is escaped above)
