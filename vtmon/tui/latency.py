"""The latency panel: a row per distribution series, a chart of the selected one.

The rows are a ``LatencyTable`` (vtmon/tui/latency_table.py) drawn straight from the
Snapshot's columns, only as many as the screen shows; the chart and its legend are built from
the one series under the cursor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from textual.app import ComposeResult
from textual.content import Content
from textual.message import Message

from vtmon.model import Kind, SeriesKey, SeriesStats, SeriesTable, Snapshot, as_table
from vtmon.model.table import Positions
from vtmon.tui import fmt
from vtmon.tui.charts import Chart, ChartData, Line
from vtmon.tui.latency_table import LatencyTable, Shown, layout_columns
from vtmon.tui.live import LiveStatic, Panel

if TYPE_CHECKING:
    from vtmon.model import ChartHistory

# What the chart can span: the Snapshot's live five minutes, then stored history (`h`).
LIVE_SPAN_S = 300.0
CHART_SPANS_S: tuple[float, ...] = (LIVE_SPAN_S, 3600.0, 6 * 3600.0, 24 * 3600.0, 7 * 86400.0)


def empty_state_text(socket: str) -> Content:
    sock = socket or "<socket path>"
    return Content.from_markup(
        "[b]No latency series yet.[/b] Send one from a shell:\n\n"
        '  [$accent]echo "api.request_latency:12.5|ms" | socat - UNIX-CONNECT:$sock[/]\n\n'
        "or with vtmon itself:\n\n"
        '  [$accent]echo "api.request_latency:12.5|ms" | vtmon send --socket $sock[/]\n\n'
        "[dim]Add |#component:api-server to compare a series with its component's target. "
        "Counters (|c) and gauges (|g) show under Errors & events.[/dim]",
        sock=sock,
    )


def duration(seconds: float) -> str:
    """A span or a resolution as a person says it: 10 s, 1 min, 6 h, 24 h, 7 d."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size * (2 if unit == "d" else 1) and seconds % size == 0:
            return f"{seconds // size:.0f} {unit}"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def series_key(s: SeriesStats) -> SeriesKey:
    return SeriesKey(s.name, s.tags, s.kind)


def shown_positions(table: SeriesTable) -> Positions:
    """Which series the latency rows show, in which order: the distributions, in the
    engine's order (by component, then name)."""
    return table.of_kind(Kind.DISTRIBUTION)


class LatencyPanel(Panel):
    """Border-titled panel holding the table, the empty state and the chart.

    The chart spans the Snapshot's last five minutes, or (``set_span``) a longer span read
    from the history file: the panel asks for it with ``HistoryWanted`` and the app answers
    with ``set_history`` from a worker thread's result.
    """

    class HistoryWanted(Message):
        """The chart needs the stored points of ``key`` over the last ``span_s`` seconds."""

        def __init__(self, key: SeriesKey, span_s: float) -> None:
            super().__init__()
            self.key = key
            self.span_s = span_s

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.span_s = LIVE_SPAN_S
        self.stored: ChartHistory | None = None  # the last stored points received
        self._asked: tuple[SeriesKey, float] | None = None
        # The widest component name among the rows, kept while the series stay the same.
        self._widest: tuple[Positions, int] | None = None

    def compose(self) -> ComposeResult:
        yield LatencyTable(id="latency-table")
        yield LiveStatic(id="latency-empty")
        yield LiveStatic(id="latency-legend", classes="chart-legend")
        yield Chart(id="latency-chart", classes="chart")

    @property
    def table(self) -> LatencyTable:
        return self.query_one(LatencyTable)

    def on_mount(self) -> None:
        self.border_subtitle = "w window · h span · ↑↓ pgup pgdn select"
        self._title()
        self.app.theme_changed_signal.subscribe(self, lambda _t: self.table.restyle())

    def _title(self) -> None:
        self.set_titles(f"Latency · window {self.window}")

    def render_snapshot(self, snap: Snapshot, window: str) -> None:
        self._title()
        table = as_table(snap.series)
        positions = shown_positions(table)
        empty = not positions.size
        self.set_class(empty, "-empty")
        if empty:
            self.query_one("#latency-empty", LiveStatic).show(empty_state_text(snap.socket))
            return
        health = {h.component: h for h in snap.health if h.component != "overall"}
        columns, widths = layout_columns(
            self.content_size.width or 80, self._component_width(table, positions), bool(health)
        )
        rows = self.table
        rows.set_columns(columns, widths)
        rows.show(Shown(table, positions, window, health, widths["series"] - 1))
        self.update_chart()

    def _component_width(self, table: SeriesTable, positions: Positions) -> int:
        """The longest component name among the rows (18 at most)."""
        if self._widest is None or self._widest[0] is not positions:
            codes = np.unique(table.component_codes[positions]).tolist()
            names = table.components
            self._widest = (positions, min(18, max(len(names[c]) for c in codes)))
        return self._widest[1]

    def on_latency_table_highlighted(self, event: LatencyTable.Highlighted) -> None:
        event.stop()
        self.update_chart()

    def selected(self) -> SeriesStats | None:
        """The series under the cursor (the one object built from the Snapshot's table)."""
        pos = self.table.selected_position()
        if pos is None:
            return None
        return self.table.shown.table[pos]

    def set_span(self, span_s: float) -> None:
        """Chart the last ``span_s`` seconds: the live five minutes, or stored history."""
        self.span_s = span_s
        self._asked = None
        self.update_chart()

    def set_history(self, h: ChartHistory) -> None:
        """Stored points read for the chart; kept only if they are still what it shows."""
        s = self.selected()
        if s is not None and h.key == series_key(s) and h.span_s == self.span_s:
            self.stored = h
            self.update_chart()

    def history_wanted(self) -> tuple[SeriesKey, float] | None:
        """What the chart needs from the history file now (refreshes); None when live."""
        s = self.selected()
        if s is None or self.span_s <= LIVE_SPAN_S:
            return None
        return series_key(s), self.span_s

    def update_chart(self) -> None:
        snap = self.snapshot
        s = self.selected()
        if snap is None or s is None:
            return
        span = duration(self.span_s)
        if self.span_s <= LIVE_SPAN_S:
            data = latency_chart_data(s, snap.t)
            note = f"last {span}, each point: the 10 s before it"
        else:
            key, h = series_key(s), self.stored
            if h is not None and h.key == key and h.span_s == self.span_s:
                data = stored_chart_data(h, s.target_ms)
                note = f"last {span}, each point {duration(h.resolution_s)}"
            else:
                if self._asked != (key, self.span_s):
                    self._asked = (key, self.span_s)
                    self.post_message(self.HistoryWanted(key, self.span_s))
                data = ChartData(message=f"reading the last {span} from the history file…")
                note = f"last {span}, reading…"
        self.query_one("#latency-chart", Chart).set_data(data)
        target = f" [$chart-target]━ target {fmt.latency(s.target_ms)}[/]" if s.target_ms else ""
        # the span before the series name: a long name is what gets cut at the edge
        legend = Content.from_markup(
            f"[$chart-1]━ p50[/] [$chart-2]━ p95[/] [$chart-3]━ p99[/]{target}  [dim]$note[/]"
            "  [b]$sid[/b]",
            sid=s.id,
            note=note,
        )
        self.query_one("#latency-legend", LiveStatic).show(legend)


def latency_chart_data(s: SeriesStats, now: float) -> ChartData:
    hist = s.history
    xs = tuple(h.t - now for h in hist)
    span = max(10.0, -xs[0]) if xs else 60.0
    return ChartData(
        lines=(
            Line("p50", xs, tuple(h.p50 for h in hist), "chart-1"),
            Line("p95", xs, tuple(h.p95 for h in hist), "chart-2"),
            Line("p99", xs, tuple(h.p99 for h in hist), "chart-3"),
        ),
        hline=s.target_ms,
        y_format=fmt.latency,
        x_span=span,
        message="collecting history for the chart…",
    )


def stored_chart_data(h: ChartHistory, target_ms: float | None) -> ChartData:
    """Stored points over a long span: gaps (vtmon was down, nothing arrived) stay open."""
    pts = h.points
    xs = tuple(p.t - h.now for p in pts)
    return ChartData(
        lines=(
            Line("p50", xs, tuple(p.p50 for p in pts), "chart-1"),
            Line("p95", xs, tuple(p.p95 for p in pts), "chart-2"),
            Line("p99", xs, tuple(p.p99 for p in pts), "chart-3"),
        ),
        hline=target_ms,
        y_format=fmt.latency,
        x_span=h.span_s,
        message=f"nothing stored for this series in the last {duration(h.span_s)}",
        gap=2.5 * h.resolution_s,
    )
