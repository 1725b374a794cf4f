"""The latency panel: one table row per distribution series, a chart of the selected one.

The table is keyed by series id and only the cells whose text or colour changed are updated,
so a steady screen costs nothing and the cursor never jumps. Rows are rebuilt only when the
set of series changes order or the panel changes between its wide and compact column sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.content import Content
from textual.message import Message
from textual.widgets import DataTable

from vtmon.model import Health, Kind, SeriesKey, SeriesStats, Snapshot, WindowStats
from vtmon.tui import fmt
from vtmon.tui.charts import Chart, ChartData, Line
from vtmon.tui.fmt import Severity
from vtmon.tui.live import LiveStatic, Panel
from vtmon.tui.severity import HEALTH_CELL

if TYPE_CHECKING:
    from vtmon.model import ChartHistory

# What the chart can span: the Snapshot's live five minutes, then stored history (`h`).
LIVE_SPAN_S = 300.0
CHART_SPANS_S: tuple[float, ...] = (LIVE_SPAN_S, 3600.0, 6 * 3600.0, 24 * 3600.0, 7 * 86400.0)


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    # Cells, including the one space that separates it from its neighbour (the table runs
    # with no cell padding: 9 columns x 2 cells of padding would cost the series column its
    # room). None: sized at layout time (component to content, series to what is left).
    width: int | None
    numeric: bool = True


FULL_COLUMNS: tuple[Column, ...] = (
    Column("component", "component", None, numeric=False),
    Column("series", "series", None, numeric=False),
    Column("count", "count", 7),
    Column("rate", "rate/s", 7),
    Column("p50", "p50", 8),
    Column("p95", "p95", 8),
    Column("p99", "p99", 8),
    Column("max", "max", 8),
    Column("target", "target", 8),
)
# When the full set leaves the series column too little room, the rate goes first, then the
# component and target columns (the target still shows as colour and in the chart legend), so
# the percentiles stay on screen at 80 columns.
MEDIUM_COLUMNS: tuple[Column, ...] = tuple(c for c in FULL_COLUMNS if c.key != "rate")
COMPACT_COLUMNS: tuple[Column, ...] = (
    Column("series", "series", None, numeric=False),
    Column("count", "count", 7),
    Column("p50", "p50", 8),
    Column("p95", "p95", 8),
    Column("p99", "p99", 8),
    Column("max", "max", 8),
)
# The component's health score (0..1), coloured by its status; only once the engine scores.
HEALTH_COLUMN = Column("health", "health", 7)
MIN_SERIES_WIDTH = 24
COLORED = ("p50", "p95", "p99", "max")


def with_health(columns: tuple[Column, ...]) -> tuple[Column, ...]:
    """The health column goes last: right-aligned, it never runs into the series name."""
    return (*columns, HEALTH_COLUMN)


def layout_columns(
    width: int, component_width: int, health: bool = False
) -> tuple[tuple[Column, ...], dict[str, int]]:
    """The column set for a table ``width`` cells wide, and the width of every column."""
    sets = (FULL_COLUMNS, MEDIUM_COLUMNS, COMPACT_COLUMNS)
    for columns in sets:
        if health:
            columns = with_health(columns)
        widths = {c.key: c.width for c in columns if c.width is not None}
        if "component" in {c.key for c in columns}:
            widths["component"] = max(component_width, len("component")) + 2
        room = width - sum(widths.values()) - 1  # a cell for the vertical scrollbar
        if room >= MIN_SERIES_WIDTH or "component" not in widths:
            widths["series"] = max(12, room)
            return columns, widths
    raise AssertionError("unreachable")  # pragma: no cover


def series_label(s: SeriesStats, width: int = 0) -> str:
    return fmt.series_name(s.name, s.tags, width)


def distribution_series(snap: Snapshot) -> list[SeriesStats]:
    rows = [s for s in snap.series if s.kind == Kind.DISTRIBUTION]
    rows.sort(key=lambda s: (s.component, s.name, s.tags))
    return rows


class LatencyTable(DataTable):
    """A DataTable whose severity colours are component classes, styled in TCSS."""

    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | {
        "latency--ok",
        "latency--warn",
        "latency--bad",
        "latency--none",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            cursor_type="row", cursor_foreground_priority="renderable", cell_padding=0, **kwargs
        )
        self.columns_in_use: tuple[Column, ...] = ()
        self.widths: dict[str, int] = {}
        self._restore: str | None = None
        # (text, severity) per row id and column key: what is on screen, to skip no-op updates.
        self.shown: dict[str, dict[str, tuple[str, Severity]]] = {}
        # Rendered cells, kept while their Text is the one in the table (see _render_cell).
        self._cells: dict[tuple[Any, ...], tuple[object, Any]] = {}
        # DataTable's own caches are keyed by its update count, which every update_cell
        # bumps: their entries die each second, so a few are enough (not thousands).
        for name, size in (
            ("_cell_render_cache", 64),
            ("_row_render_cache", 64),
            ("_row_renderable_cache", 64),  # it holds every row's Texts: 1000 grew for minutes
            ("_line_cache", 64),
        ):
            cache = getattr(self, name, None)
            if cache is not None and hasattr(cache, "maxsize"):
                cache.maxsize = size

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> Any:
        """DataTable renders every cell again after any update (its cache is keyed by the
        update count), so one changed percentile re-rendered the whole table each second.
        ``sync`` puts a new Text in a cell only when the cell changed: the same Text at the
        same place with the same styles renders the same, and is not rendered again."""
        try:
            row_key = self._row_locations.get_key(row_index)
            column_key = self._column_locations.get_key(column_index)
            if row_index < 0:
                cell: object = column_key
            elif row_key is None or column_key is None:  # no such cell: DataTable's own way
                raise KeyError(row_index, column_index)
            else:
                cell = self._data[row_key][column_key]
        except (AttributeError, KeyError):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        key = (
            row_index,
            column_index,
            base_style,
            width,
            cursor,
            hover,
            self.show_cursor,
            self.cursor_type,
            getattr(self, "_show_hover_cursor", None),
            getattr(self, "_pseudo_class_state", None),
        )
        hit = self._cells.get(key)
        if hit is not None and hit[0] is cell:
            return hit[1]
        lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        if len(self._cells) > 8 * max(1, self.row_count + 1) * max(1, len(self.columns)):
            self._cells.clear()  # sizes, cursors and themes come and go: keep it bounded
        self._cells[key] = (cell, lines)
        return lines

    def severity_at(self, row_id: str, column: str) -> Severity:
        return self.shown.get(row_id, {}).get(column, ("", Severity.NONE))[1]

    def selected_id(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return key.value

    def cell(self, text: str, sev: Severity, column: Column) -> Text:
        style = Style()
        if column.key in COLORED or sev is not Severity.NONE:
            # Foreground and weight only: the row's own background (the cursor) must show.
            full = self.get_component_rich_style(f"latency--{sev.value}")
            style = Style(color=full.color, bold=full.bold)
        if not column.numeric:
            # Leave the separating space free: text columns end in one.
            text = fmt.ellipsize(text, self.widths.get(column.key, 0) - 1)
        return Text(text, style=style, justify="right" if column.numeric else "left", end="")

    def set_columns(self, columns: tuple[Column, ...], widths: dict[str, int]) -> bool:
        """Switch column sets or widths; True when the table was rebuilt (rare: resizes)."""
        if columns == self.columns_in_use and widths == self.widths:
            return False
        keep = self.selected_id()
        self.clear(columns=True)
        self.shown.clear()
        self._cells.clear()
        self.columns_in_use = columns
        self.widths = dict(widths)
        for col in columns:
            label = Text(col.label, justify="right" if col.numeric else "left")
            self.add_column(label, key=col.key, width=widths[col.key])
        self._restore = keep
        return True

    def sync(self, rows: list[tuple[str, dict[str, tuple[str, Severity]]]]) -> None:
        """Make the table show ``rows`` (id, cells) in order, touching only what changed."""
        ids = [r[0] for r in rows]
        keep = self._restore or self.selected_id()
        self._restore = None
        current = list(self.shown)
        if current != ids:
            if ids[: len(current)] == current:
                for row_id, cells in rows[len(current) :]:
                    self._add(row_id, cells)
            else:
                # New series sort into the middle, or some disappeared: re-add rows in order.
                # Rare (the set of series changes), so simplicity beats a minimal diff.
                self.clear()
                self.shown.clear()
                self._cells.clear()
                for row_id, cells in rows:
                    self._add(row_id, cells)
            if keep in self.shown:
                self.move_cursor(row=ids.index(keep), animate=False)
        for row_id, cells in rows:
            shown = self.shown[row_id]
            for col in self.columns_in_use:
                new = cells.get(col.key, (fmt.DASH, Severity.NONE))
                if shown.get(col.key) != new:
                    shown[col.key] = new
                    self.update_cell(row_id, col.key, self.cell(*new, col))

    def _add(self, row_id: str, cells: dict[str, tuple[str, Severity]]) -> None:
        values = []
        shown: dict[str, tuple[str, Severity]] = {}
        for col in self.columns_in_use:
            new = cells.get(col.key, (fmt.DASH, Severity.NONE))
            shown[col.key] = new
            values.append(self.cell(*new, col))
        self.add_row(*values, key=row_id)
        self.shown[row_id] = shown

    def restyle(self) -> None:
        """Re-create every cell from what is shown (the theme changed its colours)."""
        self._cells.clear()
        for row_id, shown in self.shown.items():
            for col in self.columns_in_use:
                if col.key in shown:
                    self.update_cell(row_id, col.key, self.cell(*shown[col.key], col))


def health_cell(h: Health | None) -> tuple[str, Severity]:
    if h is None:
        return (fmt.DASH, Severity.NONE)
    return (f"{h.score:.2f}", HEALTH_CELL.get(h.status, Severity.NONE))


def row_cells(
    s: SeriesStats, w: WindowStats, series_width: int, health: Health | None = None
) -> dict[str, tuple[str, Severity]]:
    target = s.target_ms
    none = Severity.NONE
    return {
        "health": health_cell(health),
        "component": (s.component, none),
        "series": (series_label(s, series_width), none),
        "count": (fmt.count(w.count), none),
        "rate": (fmt.rate(w.rate), none),
        "p50": (fmt.latency(w.p50), fmt.severity(w.p50, target)),
        "p95": (fmt.latency(w.p95), fmt.severity(w.p95, target)),
        "p99": (fmt.latency(w.p99), fmt.severity(w.p99, target)),
        "max": (fmt.latency(w.max), fmt.severity(w.max, target)),
        "target": (fmt.latency(target), none),
    }


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
        self._series: dict[str, SeriesStats] = {}
        self.span_s = LIVE_SPAN_S
        self.stored: ChartHistory | None = None  # the last stored points received
        self._asked: tuple[SeriesKey, float] | None = None

    def compose(self) -> ComposeResult:
        yield LatencyTable(id="latency-table")
        yield LiveStatic(id="latency-empty")
        yield LiveStatic(id="latency-legend", classes="chart-legend")
        yield Chart(id="latency-chart", classes="chart")

    @property
    def table(self) -> LatencyTable:
        return self.query_one(LatencyTable)

    def on_mount(self) -> None:
        self.border_subtitle = "w window · h span · ↑↓ select"
        self._title()
        self.app.theme_changed_signal.subscribe(self, lambda _t: self.table.restyle())

    def _title(self) -> None:
        self.set_titles(f"Latency · window {self.window}")

    def render_snapshot(self, snap: Snapshot, window: str) -> None:
        self._title()
        rows = distribution_series(snap)
        self._series = {s.id: s for s in rows}
        empty = not rows
        self.set_class(empty, "-empty")
        if empty:
            self.query_one("#latency-empty", LiveStatic).show(empty_state_text(snap.socket))
            return
        table = self.table
        comp_w = min(18, max(len(s.component) for s in rows))
        health = {h.component: h for h in snap.health if h.component != "overall"}
        columns, widths = layout_columns(self.content_size.width or 80, comp_w, bool(health))
        table.set_columns(columns, widths)
        label_w = widths["series"] - 1
        empty_w = WindowStats()
        cells = []
        for s in rows:
            w = s.windows.get(window, empty_w)
            cells.append((s.id, row_cells(s, w, label_w, health.get(s.component))))
        table.sync(cells)
        self.update_chart()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.update_chart()

    def selected(self) -> SeriesStats | None:
        return self._series.get(self.table.selected_id() or "")

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
