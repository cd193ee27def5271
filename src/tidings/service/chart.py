"""The simulation chart: one self-contained HTML file with inline SVG, no script, no stylesheet
from elsewhere (it opens offline and from a mail attachment).

Two panels over the same time axis: messages recorded per bucket (bars) and the most runs
waiting within each bucket (a step line). The output depends only on the series given, so the
same simulation writes the same bytes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape

from tidings.service.simulation_report import Series, SimulationReport

WIDTH = 960
PANEL = 220
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 28, 36
TICKS = 4

_STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#18181b}
h1{font-size:20px;margin:0 0 4px}p{margin:0 0 16px;color:#52525b}
svg{display:block;margin:0 0 24px}text{font-size:11px;fill:#52525b}
.title{font-size:13px;fill:#18181b;font-weight:600}.grid{stroke:#e4e4e7}
.bar{fill:#2563eb}.line{fill:none;stroke:#ea580c;stroke-width:2}"""


def render_chart(report: SimulationReport) -> str:
    """The chart of a simulation report as a complete HTML document."""
    series = report.series
    minutes = series.bucket_minutes
    unit = "hour" if minutes == 60 else f"{minutes} minutes"
    totals = report.totals
    subtitle = (
        f"{escape(report.source)}: {totals.replayed} events replayed from "
        f"{escape(totals.first_event or '-')} to {escape(totals.last_event or '-')}, "
        f"virtual time run until {escape(totals.end or '-')}; {totals.messages} messages."
    )
    panels = [
        _panel(series, series.messages, f"Messages recorded per {unit}", bars=True),
        _panel(series, series.waiting, f"Runs waiting (most within each {unit})", bars=False),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Tidings simulation: {escape(report.source)}</title>\n"
        f"<style>\n{_STYLE}\n</style>\n</head>\n<body>\n"
        f"<h1>Tidings simulation</h1>\n<p>{subtitle}</p>\n"
        + "\n".join(panels)
        + "\n</body>\n</html>\n"
    )


def _panel(series: Series, values: list[int], title: str, *, bars: bool) -> str:
    """One SVG panel: axes, grid, labels, and the values as bars or a step line."""
    inner_w = WIDTH - LEFT - RIGHT
    inner_h = PANEL - TOP - BOTTOM
    top = max(values, default=0)
    scale = _nice(-(-top // TICKS)) * TICKS  # whole-number ticks
    count = max(len(values), 1)
    step = inner_w / count
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{PANEL}" '
        f'viewBox="0 0 {WIDTH} {PANEL}" role="img" aria-label="{escape(title)}">',
        f'<text class="title" x="{LEFT}" y="16">{escape(title)}</text>',
    ]
    for tick in range(TICKS + 1):
        value = scale * tick / TICKS
        y = TOP + inner_h - inner_h * tick / TICKS
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:g}</text>')

    def y_of(value: int) -> float:
        return TOP + inner_h - (inner_h * value / scale if scale else 0)

    if bars:
        for index, value in enumerate(values):
            if value:
                x = LEFT + index * step + step * 0.1
                parts.append(
                    f'<rect class="bar" x="{x:.1f}" y="{y_of(value):.1f}" width="{step * 0.8:.1f}" '
                    f'height="{TOP + inner_h - y_of(value):.1f}"><title>{value}</title></rect>'
                )
    elif values:
        points = []
        for index, value in enumerate(values):
            points.append(f"{LEFT + index * step:.1f},{y_of(value):.1f}")
            points.append(f"{LEFT + (index + 1) * step:.1f},{y_of(value):.1f}")
        parts.append(f'<polyline class="line" points="{" ".join(points)}"/>')
    parts.extend(_time_labels(series, count, step, TOP + inner_h))
    parts.append("</svg>")
    return "\n".join(parts)


def _time_labels(series: Series, count: int, step: float, baseline: float) -> list[str]:
    """Labels under the axis: about eight, at bucket starts, with the date when it changes."""
    if not series.start:
        return []
    start = datetime.fromisoformat(series.start)
    every = max(1, -(-count // 8))
    labels: list[str] = []
    last_day = None
    for index in range(0, count, every):
        when = start + timedelta(minutes=series.bucket_minutes * index)
        text = when.strftime("%H:%M")
        if when.date() != last_day:
            text = when.strftime("%Y-%m-%d %H:%M")
            last_day = when.date()
        x = LEFT + index * step
        labels.append(f'<text x="{x:.1f}" y="{baseline + 16:.1f}">{text}</text>')
    labels.append(f'<text x="{LEFT}" y="{baseline + 30:.1f}">UTC</text>')
    return labels


def _nice(top: int) -> int:
    """A round whole number at or above `top`: 1, 2, 2.5 or 5 times a power of ten."""
    if top <= 1:
        return 1
    magnitude = 1
    while magnitude * 10 < top:
        magnitude *= 10
    for factor in (1, 2, 2.5, 5, 10):
        candidate = factor * magnitude
        if candidate >= top and candidate == int(candidate):
            return int(candidate)
    return 10 * magnitude
