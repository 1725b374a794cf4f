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

from vtmon.tui.live import drawn
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
    x_span: float = 0.0  # seconds shown; the x axis reads "-60s .. now" (or "-6h .. now")
    message: str = ""  # shown instead of a chart (e.g. "collecting…")
    gap: float = 0.0  # points further apart than this are not joined (vtmon was down); 0: all


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


# Steps between x ticks, so that they read as round times: -45s, -2m, -3h, -2d.
_X_STEPS = (
    *(1, 2, 5, 10, 15, 30),
    *(m * 60 for m in (1, 2, 5, 10, 15, 30)),
    *(h * 3600 for h in (1, 2, 3, 6, 12)),
    *(d * 86400 for d in (1, 2, 7, 14, 30)),
)


def _x_ticks(span: float, most: int = 4) -> tuple[list[float], list[str]]:
    """Ticks at a round step, about ``most`` steps back from "now"; a step that ends exactly
    at the left edge is preferred (-5m -4m … now rather than -4m -2m now)."""
    if span <= 0:
        return [0.0], ["now"]
    exact = [s for s in _X_STEPS if span % s == 0 and 2 <= span // s <= most + 1]
    exact.sort(key=lambda s: (span // s > most, s))  # within ``most`` if it can be
    step = exact[0] if exact else next((s for s in _X_STEPS if span / s <= most), _X_STEPS[-1])
    n = max(1, math.floor(span / step + 1e-9))
    pos = [-k * step for k in range(n, -1, -1)]
    labels = [f"-{_short_span(-p)}" if p else "now" for p in pos]
    return [float(p) for p in pos], labels


def _short_span(s: float) -> str:
    """Seconds as the largest unit they are a whole number of: 90s, 2m, 6h, 24h, 2d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size * (2 if unit == "d" else 1) and s % size == 0:  # -24h, not -1d
            return f"{s // size:.0f}{unit}"
    return f"{s:.0f}s"


def _runs(xs: list[float], ys: list[float], gap: float) -> list[tuple[list[float], list[float]]]:
    """The points split where neighbours are more than ``gap`` apart (0: never)."""
    if gap <= 0 or not xs:
        return [(xs, ys)]
    runs: list[tuple[list[float], list[float]]] = []
    start = 0
    for i in range(1, len(xs)):
        if xs[i] - xs[i - 1] > gap:
            runs.append((xs[start:i], ys[start:i]))
            start = i
    runs.append((xs[start:], ys[start:]))
    return runs


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
    for ln, all_xs, all_ys in series:
        marker = plotext.marker("braille", plotext.pixel(colors[ln.color]))
        for xs, ys in _runs(all_xs, all_ys, data.gap):
            sig = fig.signal(xs, ys, marker=marker)
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
        fig.ruler("x").ticks(*_x_ticks(data.x_span, max(2, min(4, width // 14))))
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
        # the chart's size comes from the layout, never from its content: no layout again
        chart = drawn(self, lambda: build_chart(self._data, w, h, self.app.current_theme))
        self.update(chart, layout=False)  # a failure shown where the chart would be
