"""The latency table: one row per series shown, drawn from the Snapshot's columns.

Only the lines on screen are formatted and drawn (Textual's Line API, ``render_line``): a
Snapshot costs the visible rows whatever the number of series, and the scrollbar spans them
all. What is shown is a ``Shown``: the Snapshot's ``SeriesTable`` and ``positions``, the index
array saying which series appear and in which order (the one place a sort or a filter
changes). The cursor stays on its series when a new Snapshot moves it to another row, and a
line is drawn again only when its text, colours or cursor changed, so a steady screen costs
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from vtmon.model import Health, SeriesKey, SeriesTable
from vtmon.model.table import Positions
from vtmon.tui import fmt
from vtmon.tui.fmt import Severity
from vtmon.tui.severity import HEALTH_CELL


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    # Cells, including the one space that separates it from its neighbour (9 columns x 2
    # cells of padding would cost the series column its room). None: sized at layout time
    # (component to content, series to what is left).
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
COMPACT_COLUMNS: tuple[Column, ...] = tuple(
    c for c in MEDIUM_COLUMNS if c.key not in ("component", "target")
)
# The component's health score (0..1), coloured by its status; only once the engine scores.
HEALTH_COLUMN = Column("health", "health", 7)
MIN_SERIES_WIDTH = 24
COLORED = ("p50", "p95", "p99", "max")
# The window statistics a row shows, as the table's columns name them.
_FIELDS = ("count", "rate", "p50", "p95", "p99", "max")


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


def health_cell(h: Health | None) -> tuple[str, Severity]:
    if h is None:
        return (fmt.DASH, Severity.NONE)
    return (f"{h.score:.2f}", HEALTH_CELL.get(h.status, Severity.NONE))


def row_cells(
    key: SeriesKey,
    values: Mapping[str, float | None],
    target: float | None,
    series_width: int,
    health: Health | None = None,
) -> dict[str, tuple[str, Severity]]:
    """Every column's (text, severity) for one series; ``values`` its window's statistics."""
    none = Severity.NONE
    return {
        "health": health_cell(health),
        "component": (key.component, none),
        "series": (fmt.series_name(key.name, key.tags, series_width), none),
        "count": (fmt.count(values["count"] or 0.0), none),
        "rate": (fmt.rate(values["rate"] or 0.0), none),
        "p50": (fmt.latency(values["p50"]), fmt.severity(values["p50"], target)),
        "p95": (fmt.latency(values["p95"]), fmt.severity(values["p95"], target)),
        "p99": (fmt.latency(values["p99"]), fmt.severity(values["p99"], target)),
        "max": (fmt.latency(values["max"]), fmt.severity(values["max"], target)),
        "target": (fmt.latency(target), none),
    }


def _number(v: float) -> float | None:
    return None if v != v else v


@dataclass(frozen=True, slots=True)
class Shown:
    """What the table shows: the series of ``table`` at ``positions``, in that order, with
    the statistics of ``window``; ``label_width`` the cells a series name may take."""

    table: SeriesTable
    positions: Positions
    window: str = "1m"
    health: Mapping[str, Health] = field(default_factory=dict)
    label_width: int = 0


Cells = tuple[tuple[str, Severity], ...]  # one (text, severity) per column in use
_EMPTY = Shown(SeriesTable((), np.empty((3, 10, 0)), np.empty(0), np.empty(0)), np.empty(0, int))


class LatencyTable(ScrollView, can_focus=True):
    """A virtual table of latency rows with a row cursor, a fixed header and a scrollbar
    over every row; severity colours are component classes, styled in TCSS."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "latency--header",
        "latency--cursor",
        "latency--ok",
        "latency--warn",
        "latency--bad",
        "latency--none",
    }
    DEFAULT_CSS = """
    LatencyTable {
        height: auto;
        overflow-x: hidden;
    }
    """

    class Highlighted(Message):
        """The cursor moved to the series ``key`` (a key press or a click)."""

        def __init__(self, key: SeriesKey | None) -> None:
            super().__init__()
            self.key = key

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.columns_in_use: tuple[Column, ...] = ()
        self.widths: dict[str, int] = {}
        self.shown: Shown = _EMPTY
        self.cursor_row = 0
        self._selected: SeriesKey | None = None
        self._cells: dict[int, Cells] = {}  # rows formatted from the Snapshot shown
        self._drawn: dict[int, object] = {}  # what each line on screen was drawn from
        self._styles: dict[str, Style] = {}
        self._strips: dict[tuple[Cells, bool, int], Strip] = {}
        self.rows_formatted = 0  # how many rows were formatted (tests, benchmarks)

    # --- what is shown ------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.shown.positions)

    @property
    def selected_key(self) -> SeriesKey | None:
        return self._selected

    def selected_position(self) -> int | None:
        """The position in the Snapshot's table of the series under the cursor."""
        if not self.row_count:
            return None
        return int(self.shown.positions[self.cursor_row])

    def selected_id(self) -> str | None:
        return None if self._selected is None else self._selected.id

    def key_at(self, row: int) -> SeriesKey:
        return self.shown.table.keys[int(self.shown.positions[row])]

    def row_id(self, row: int) -> str:
        return self.key_at(row).id

    def get_row_index(self, row_id: str) -> int:
        """The row showing the series ``row_id`` (looks through every row: for tests)."""
        keys, positions = self.shown.table.keys, self.shown.positions.tolist()
        for row, pos in enumerate(positions):
            if keys[pos].id == row_id:
                return row
        raise KeyError(row_id)

    def cells(self, row: int) -> Cells:
        """The (text, severity) of every column of ``row``, formatted once per Snapshot."""
        got = self._cells.get(row)
        if got is None:
            self._format(row, row + 1)
            got = self._cells[row]
        return got

    def get_cell(self, row_id: str, column: str) -> Text:
        """The cell of ``column`` in the row of ``row_id`` as drawn: its text and colours."""
        row = self.get_row_index(row_id)
        i = [c.key for c in self.columns_in_use].index(column)
        col = self.columns_in_use[i]
        text, sev = self.cells(row)[i]
        return Text(self._fit(text, col), style=self._foreground(col, sev), end="")

    def severity_at(self, row_id: str, column: str) -> Severity:
        i = [c.key for c in self.columns_in_use].index(column)
        return self.cells(self.get_row_index(row_id))[i][1]

    def set_columns(self, columns: tuple[Column, ...], widths: dict[str, int]) -> bool:
        """Switch column sets or widths; True when they changed (rare: resizes)."""
        if columns == self.columns_in_use and widths == self.widths:
            return False
        self.columns_in_use = columns
        self.widths = dict(widths)
        self._cells.clear()
        self._strips.clear()
        self.refresh()
        return True

    def show(self, shown: Shown) -> None:
        """Show ``shown`` (a new Snapshot, window or layout), keeping the cursor on its series
        and drawing again only the lines that changed."""
        before = self.cursor_row
        self.shown = shown
        self._cells.clear()
        n = len(shown.positions)
        row = self._row_of(self._selected)
        if row is None:  # gone (or nothing was selected): the cursor keeps its row
            row = min(before, max(0, n - 1))
        self.cursor_row = row
        self._selected = self.key_at(row) if n else None
        width = sum(self.widths.values())
        if self.virtual_size != Size(width, n + 1):
            self.virtual_size = Size(width, n + 1)  # the header's line and a line per row
        if row != before:
            self._into_view(row)
        top, rows = self._visible()
        self._format(top, top + rows)
        for y in range(rows + 1):
            if self._drawn.get(y) != self._state(y, top):
                self.refresh(Region(0, y, self.size.width, 1))

    def restyle(self) -> None:
        """Draw every line again in the theme's colours."""
        self._styles.clear()
        self._strips.clear()
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self.restyle()

    def _row_of(self, key: SeriesKey | None) -> int | None:
        """The row of ``key`` in what is shown: where it was (most Snapshots), else searched."""
        if key is None:
            return None
        keys, positions = self.shown.table.keys, self.shown.positions
        row = self.cursor_row
        if row < len(positions) and keys[positions[row]] == key:
            return row
        try:
            pos = keys.index(key)
        except ValueError:
            return None
        found = np.flatnonzero(positions == pos)
        return int(found[0]) if found.size else None

    def _format(self, start: int, stop: int) -> None:
        """Format rows ``start`` to ``stop`` (not past the last) from the table's columns."""
        s = self.shown
        pos = s.positions[start:stop]
        if not pos.size:
            return
        t = s.table
        cols = [t.column(s.window, f)[pos].tolist() for f in _FIELDS]
        targets = t.target_ms[pos].tolist()
        keys = [t.keys[p] for p in pos.tolist()]
        width = s.label_width
        for i, key in enumerate(keys):
            values = {f: _number(col[i]) for f, col in zip(_FIELDS, cols, strict=True)}
            cells = row_cells(key, values, _number(targets[i]), width, s.health.get(key.component))
            none = (fmt.DASH, Severity.NONE)
            self._cells[start + i] = tuple(cells.get(c.key, none) for c in self.columns_in_use)
        self.rows_formatted += len(keys)

    # --- drawing ------------------------------------------------------------------------------

    def _visible(self) -> tuple[int, int]:
        """The first row on screen and how many rows the screen has room for."""
        return int(self.scroll_y), max(0, self.scrollable_content_region.height - 1)

    def _state(self, y: int, top: int) -> object:
        """What line ``y`` shows: the header, a row (its cells, whether the cursor is on
        it), or nothing."""
        if y == 0:
            return (self.columns_in_use, tuple(self.widths.items()))
        row = top + y - 1
        if row >= self.row_count:
            return None
        return (row, self.cells(row), row == self.cursor_row)

    def render_line(self, y: int) -> Strip:
        top = int(self.scroll_y)
        state = self._state(y, top)
        self._drawn[y] = state
        width = self.size.width
        if y == 0:
            return self._header(width)
        if state is None:
            return Strip.blank(width, self.rich_style)
        row = top + y - 1
        return self._line(self.cells(row), row == self.cursor_row, width)

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(name)
        return style

    def _foreground(self, col: Column, sev: Severity) -> Style:
        if col.key not in COLORED and sev is Severity.NONE:
            return Style.null()
        # Foreground and weight only: the row's own background (the cursor) must show.
        full = self._style(f"latency--{sev.value}")
        return Style(color=full.color, bold=full.bold)

    def _fit(self, text: str, col: Column) -> str:
        width = self.widths.get(col.key, 0)
        if col.numeric:
            return fmt.ellipsize(text, width).rjust(width)
        # Leave the separating space free: text columns end in one.
        return fmt.ellipsize(text, width - 1).ljust(width)

    def _line(self, cells: Cells, cursor: bool, width: int) -> Strip:
        key = (cells, cursor, width)
        strip = self._strips.get(key)
        if strip is None:
            base = self.rich_style
            if cursor:
                base = base + self._style("latency--cursor")
            segments = [
                Segment(self._fit(text, col), base + self._foreground(col, sev))
                for (text, sev), col in zip(cells, self.columns_in_use, strict=True)
            ]
            strip = Strip(segments).adjust_cell_length(width, base).simplify()
            if len(self._strips) > 512:  # rows come and go: keep it bounded
                self._strips.clear()
            self._strips[key] = strip
        return strip

    def _header(self, width: int) -> Strip:
        style = self.rich_style + self._style("latency--header")
        segments = [Segment(self._fit(col.label, col), style) for col in self.columns_in_use]
        return Strip(segments).adjust_cell_length(width, style)

    # --- keys and mouse -----------------------------------------------------------------------

    def move_cursor(self, row: int) -> None:
        """Put the cursor on ``row`` (clamped), bring it into view, say so."""
        n = self.row_count
        if not n:
            return
        row = min(max(0, row), n - 1)
        self._into_view(row)
        if row == self.cursor_row:
            return
        top, rows = self._visible()
        for r in (self.cursor_row, row):
            if top <= r < top + rows:
                self.refresh(Region(0, r - top + 1, self.size.width, 1))
        self.cursor_row = row
        self._selected = self.key_at(row)
        self.post_message(self.Highlighted(self._selected))

    def _into_view(self, row: int) -> None:
        top, rows = self._visible()
        if row < top:
            self.scroll_to(y=row, animate=False, force=True)
        elif rows and row >= top + rows:
            self.scroll_to(y=row - rows + 1, animate=False, force=True)

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor_row + 1)

    def action_page_down(self) -> None:
        """A screenful down: the rows below the last one shown come into view."""
        _, rows = self._visible()
        self.scroll_to(y=self.scroll_y + max(1, rows), animate=False, force=True)
        self.move_cursor(self.cursor_row + max(1, rows))

    def action_page_up(self) -> None:
        _, rows = self._visible()
        self.scroll_to(y=self.scroll_y - max(1, rows), animate=False, force=True)
        self.move_cursor(self.cursor_row - max(1, rows))

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(self.row_count - 1)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:  # the header
            return
        row = int(self.scroll_y) + offset.y - 1
        if row < self.row_count:
            self.move_cursor(row)
