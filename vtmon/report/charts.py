"""The report's charts: static, self-contained SVG drawn by pygal, ready to inline in the page.

pygal is told to load no JavaScript (``js=[]``) and to write no XML declaration; what it adds
anyway is removed here: its inline ``<script>`` (the chart's config for the tooltips script
that is not loaded) and its comments (which name its web site). What is left is SVG and CSS,
with every colour a CSS variable of the page (``var(--c1)`` ...), so the page's light, dark
and print styles colour the charts too. Text in a chart (titles, legends) goes through
pygal's XML serialisation, which escapes it.

Times on the x axis are local, at round steps (every 10 minutes, every 3 hours, ...).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime

import pygal
from pygal.style import Style

from vtmon.model import as_float

WIDTH, HEIGHT = 900, 320
SMALL = (600, 300)  # charts two to a row
STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="var(--fg)",
    foreground_strong="var(--fg)",
    foreground_subtle="var(--grid)",
    colors=("var(--c1)", "var(--c2)", "var(--c3)", "var(--c4)", "var(--c5)", "var(--c6)"),
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif",
    label_font_size=12,
    major_label_font_size=12,
    legend_font_size=13,
    title_font_size=15,
    value_font_size=11,
    tooltip_font_size=11,
    opacity="1",
    opacity_hover="1",
    transition="none",
    stroke_width=1.6,
)
_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
# Tick steps for a time axis, seconds.
_STEPS = (
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    604800,
)
MAX_TICKS = 9


def _common(
    title: str,
    x_title: str,
    y_title: str,
    legends: int,
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> dict[str, object]:
    return {
        "style": STYLE,
        "js": [],
        "disable_xml_declaration": True,
        "width": size[0],
        "height": size[1],
        "title": title,
        "x_title": x_title,
        "y_title": y_title,
        "legend_at_bottom": True,
        # one row; pygal misplaces a bottom legend with fewer entries than columns
        "legend_at_bottom_columns": max(legends, 1),
        "max_scale": 7,  # y labels: at most about this many
        "truncate_legend": -1,
        "truncate_label": -1,
        "margin": 12,
        "spacing": 10,
    }


def finish(chart: pygal.graph.graph.Graph) -> str:
    """The chart as inline SVG: no script, no comments (see the module docstring)."""
    svg = chart.render(is_unicode=True)
    return _COMMENT.sub("", _SCRIPT.sub("", svg))


def time_ticks(start: float, end: float) -> tuple[list[float], Callable[[float], str]]:
    """Round local times between ``start`` and ``end`` and how to label them."""
    span = max(end - start, 1.0)
    step = next((s for s in _STEPS if span / s <= MAX_TICKS - 1), _STEPS[-1])
    offset = datetime.fromtimestamp(start).astimezone().utcoffset()
    off = offset.total_seconds() if offset is not None else 0.0
    first = math.ceil((start + off) / step) * step - off
    ticks = []
    t = first
    while t <= end:
        ticks.append(t)
        t += step
    if span > 86400 * 1.5:
        fmt = "%d %b" if step >= 86400 else "%d %b %H:%M"
    elif step < 60:
        fmt = "%H:%M:%S"
    else:
        fmt = "%H:%M"

    def label(x: float) -> str:
        return datetime.fromtimestamp(x).strftime(fmt)

    return ticks, label


def _with_gaps(
    t: Sequence[float], ys: Sequence[float | None], res: float
) -> list[tuple[float, float | None]]:
    """Points with a break (None) where readings are further apart than 2.5 points: the time
    vtmon was down stays a gap instead of a straight line across it."""
    out: list[tuple[float, float | None]] = []
    prev: float | None = None
    for x, y in zip(t, ys, strict=True):
        if prev is not None and x - prev > 2.5 * res:
            out.append((prev + res, None))
        out.append((x, y))
        prev = x
    return out


def time_chart(
    title: str,
    start: float,
    end: float,
    t: Sequence[float],
    lines: Sequence[tuple[str, Sequence[float | None]]],
    *,
    res: float,
    y_title: str,
    timezone: str,
    y_format: Callable[[float], str] | None = None,
    target: tuple[str, float] | None = None,
    from_zero: bool = True,
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> str:
    """Lines over time (each point the end of its interval), with an optional dashed
    horizontal line (a target)."""
    ticks, label = time_ticks(start, end)
    legends = len(lines) + (target is not None)
    chart = pygal.XY(
        **_common(title, f"time ({timezone})", y_title, legends, size),
        show_dots=False,
        allow_interruptions=True,
        x_labels=ticks,
        x_value_formatter=label,
        value_formatter=y_format or _plain,
        include_x_axis=from_zero,
        xrange=(start, end),
        show_x_guides=False,
    )
    ends = [x + res for x in t]
    for name, ys in lines:
        chart.add(name, [(x, y) for x, y in _with_gaps(ends, ys, res) if x <= end + res])
    if target is not None:
        name, value = target
        chart.add(
            name,
            [(start, value), (end, value)],
            stroke_style={"width": 2, "dasharray": "8,5"},
        )
    return finish(chart)


def histogram_chart(title: str, bins: Sequence[Sequence[float]], unit: str) -> str:
    """Counts per value bin, bars labelled with each bin's lower edge."""
    opts = _common(title, f"{unit} (bins of equal width on a log scale)", "samples", 1, SMALL)
    opts["spacing"] = 2
    chart = pygal.Bar(
        **opts,
        x_labels=[_plain(b[0]) for b in bins],
        x_labels_major_every=max(1, len(bins) // 8),
        show_minor_x_labels=False,
        x_label_rotation=0,
        value_formatter=_plain,
        show_legend=False,
    )
    chart.add("samples", [b[2] for b in bins])
    return finish(chart)


def _plain(v: float) -> str:
    x = as_float(v)
    if x is None:
        return ""
    v = x
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    if a >= 0.01 or a == 0:
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return f"{v:.2g}"


def human_bytes(v: float) -> str:
    """Bytes (per second) in binary units, as the console shows them: 512 B, 1.5 MiB."""
    x = as_float(v)
    if x is None:
        return ""
    v = x
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(v) < 1024 or unit == "GiB":
            return f"{_plain(v)} {unit}" if unit != "B" else f"{v:.0f} B"
        v /= 1024.0
    return f"{_plain(v)} TiB"  # pragma: no cover - the loop always returns
