"""plotext line charts drawn into a Static sized to the widget (as dolphie does).

The chart keeps the last data it was given and redraws when the data, its size or the theme
changes; colours come from ``app.current_theme`` (textual-plotext still watches ``App.dark``,
which Textual removed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import plotext
from rich.text import Text
from textual.events import Resize
from textual.theme import Theme
from textual.widgets import Static

from vtmon.tui.themes import chart_colors

# plotext paints a white background behind its frame; the widget's own background must show.
_ANSI_BG = re.compile(r"\x1b\[48;(?:5;\d+|2;\d+;\d+)m")

MIN_WIDTH = 24
MIN_HEIGHT = 5


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    x: tuple[float, ...]
    y: tuple[float | None, ...]
    color: str  # a chart variable: chart-1 .. chart-4


@dataclass(frozen=True, slots=True)
class ChartData:
    lines: tuple[Line, ...] = ()
    hline: float | None = None  # e.g. the latency target, drawn in chart-target
    y_min: float | None = 0.0
    y_max: float | None = None  # a fixed top (percentages); else 10 % above the data
    y_format: Callable[[float], str] | None = None  # tick labels; plotext's own when None
    binary: bool = False  # bytes: round ticks in KiB/MiB rather than in powers of ten
    x_span: float = 0.0  # seconds shown; the x axis reads "-60s .. now"
    message: str = ""  # shown instead of a chart (e.g. "collecting…")


def _clean(xs: Sequence[float], ys: Sequence[float | None]) -> tuple[list[float], list[float]]:
    pts = [(x, y) for x, y in zip(xs, ys, strict=False) if y is not None and math.isfinite(y)]
    return [p[0] for p in pts], [p[1] for p in pts]


def nice_ticks(lo: float, hi: float, count: int) -> list[float]:
    """About ``count`` round tick values covering lo..hi (0, 50, 100 ms rather than 36.7)."""
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        return [lo, lo + 1.0]
    raw = span / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    n = math.ceil((hi - start) / step - 1e-9)
    return [start + i * step for i in range(n + 1)]


def _x_ticks(span: float) -> tuple[list[float], list[str]]:
    if span <= 0:
        return [0.0], ["now"]
    pos = [-span, -span / 2, 0.0]
    labels = [f"-{_short_span(span)}", f"-{_short_span(span / 2)}", "now"]
    return pos, labels


def _short_span(s: float) -> str:
    if s >= 120:
        return f"{s / 60:.0f}m"
    return f"{s:.0f}s"


def build_chart(data: ChartData, width: int, height: int, theme: Theme) -> Text:
    """The chart as Rich text of exactly ``height`` lines (pure; testable without an app)."""
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return Text("")
    series = [(ln, *_clean(ln.x, ln.y)) for ln in data.lines]
    series = [s for s in series if s[1]]
    if not series:
        return Text(data.message or "waiting for data…", style="dim", justify="center")
    colors = chart_colors(theme)
    # plotext would clamp the plot to its idea of the terminal (a guess when Textual owns the
    # screen); the widget's size is the only size that matters.
    plotext.terminal.limit(False, False)
    fig = plotext.figure
    fig.clear()
    fig.plot_size(width, height)
    fig.theme("colorless")
    fig.canvas("default")
    top = max(max(ys) for _, _, ys in series)
    if data.hline is not None:
        top = max(top, data.hline)  # the target line stays in view
    y_lo = data.y_min if data.y_min is not None else min(min(ys) for _, _, ys in series)
    y_hi = data.y_max if data.y_max is not None else (top * 1.1 if top > 0 else 1.0)
    for ln, xs, ys in series:
        sig = fig.signal(xs, ys, marker=plotext.marker("braille", plotext.pixel(colors[ln.color])))
        if len(xs) > 1:
            sig.lines()
        fig.draw(sig)
    if data.hline is not None:
        fig.line(data.hline, pixel=plotext.pixel(colors["chart-target"]))
    count = max(2, min(5, (height - 3) // 3))
    unit = 1.0
    if data.binary:
        y_hi = max(y_hi, 1024.0)  # an idle disk reads "0 B .. 1 KiB", not fractions of a byte
        while y_hi / unit >= 1024:
            unit *= 1024
    ticks = [v * unit for v in nice_ticks(y_lo / unit, y_hi / unit, count)]
    fig.ruler("y").lim(ticks[0], ticks[-1])
    labels = [data.y_format(v) for v in ticks] if data.y_format else [f"{v:g}" for v in ticks]
    fig.ruler("y").ticks(ticks, labels)
    if data.x_span > 0:
        fig.ruler("x").lim(-data.x_span, 0)
        fig.ruler("x").ticks(*_x_ticks(data.x_span))
    fig.ruler("both").pixel(plotext.pixel(colors["text"]))
    fig.axes(pixel=plotext.pixel(colors["axes"]))
    raw = fig.build().string()
    return Text.from_ansi(_ANSI_BG.sub("", raw), no_wrap=True, end="")


class Chart(Static):
    """A Static that holds ChartData and draws it at its own size."""

    DEFAULT_CSS = """
    Chart { height: 1fr; min-height: 6; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes)
        self._data = ChartData()
        self._drawn_key: tuple | None = None

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.redraw())

    def on_resize(self, event: Resize) -> None:
        self.redraw()

    def on_show(self) -> None:
        self.redraw()  # data may have changed while hidden (short terminal, `c`)

    def set_data(self, data: ChartData) -> None:
        if data != self._data:
            self._data = data
            self._drawn_key = None
            self.redraw()

    @property
    def data(self) -> ChartData:
        return self._data

    def redraw(self) -> None:
        """Draw at the current size unless exactly this (data, size, theme) is on screen."""
        if not self.is_mounted or not self.display:
            return
        w, h = self.content_size.width, self.content_size.height
        key = (w, h, self.app.theme)
        if key == self._drawn_key:
            return
        self._drawn_key = key
        self.update(build_chart(self._data, w, h, self.app.current_theme))
