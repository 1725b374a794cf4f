"""What a quiet second costs the screen: only what changed is repainted.

A console left open all day must cost next to nothing, so a Snapshot that brings nothing new
must not repaint the panels, rebuild the table or lay the screen out again; the clock, the
machine's readings and the charts that move with time are all that change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.color import Color
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from tests.screen import SOCK, count_drawn, feed, screen_monitor, screen_text, start
from vtmon.clock import ManualClock
from vtmon.engine.monitor import Monitor
from vtmon.model import Batch, DistBuf, SeriesKey, make_tags
from vtmon.tui.app import VtmonApp
from vtmon.tui.header import HeaderBar
from vtmon.tui.help import HelpScreen
from vtmon.tui.latency import LatencyTable

API = SeriesKey("api.request_latency", make_tags({"component": "api-server"}))


@pytest.fixture
def monitor(tmp_path: Path, clock: ManualClock) -> Monitor:
    return screen_monitor(tmp_path, clock)


class Repaints:
    """Every Widget.refresh while it listens: (widget, regions, layout)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[Widget, tuple[Region, ...], bool]] = []
        original = Widget.refresh

        def refresh(widget: Widget, *regions: Region, **kw: Any) -> Widget:
            self.calls.append((widget, regions, bool(kw.get("layout"))))
            return original(widget, *regions, **kw)

        monkeypatch.setattr(Widget, "refresh", refresh)

    def names(self) -> set[str]:
        return {w.id or type(w).__name__ for w, _, _ in self.calls}


async def test_a_quiet_second_repaints_only_the_clock_the_machine_and_the_charts(
    monitor: Monitor, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed(monitor, clock, {API: [50.0] * 60 + [150.0] * 40})
    app = VtmonApp(monitor)
    async with app.run_test(size=(200, 50)) as pilot:
        for _ in range(3):  # drawn, laid out, charts sized
            await start(pilot, monitor)
            clock.advance(1)
        seen = Repaints(monkeypatch)
        await start(pilot, monitor)
        # the table, the panels' borders and texts that did not change are left alone
        assert seen.names() <= {
            "header",
            "resources-text",
            "cpu-chart",
            "io-chart",
            "latency-chart",
        }
        # the header repaints its right side (counters, clock), not the whole line
        header = app.query_one(HeaderBar)
        regions = [r for w, rs, _ in seen.calls if w is header for r in rs]
        assert regions and all(r.x > header.size.width // 2 for r in regions)
        # nothing is laid out again (the machine's text may need a line more or less)
        assert not [w for w, _, layout in seen.calls if layout and w.id != "resources-text"]


async def test_the_header_names_the_socket_once(tmp_path: Path, clock: ManualClock) -> None:
    sock = SOCK
    # what `vtmon` itself says it watches
    monitor = screen_monitor(tmp_path, clock, watching=f"metrics on {sock}")
    app = VtmonApp(monitor)
    async with app.run_test(size=(200, 50)) as pilot:
        await start(pilot, monitor)
        assert app.query_one(HeaderBar).render().plain.count(sock) == 1


async def test_help_shown_again_is_in_the_current_theme(
    monitor: Monitor, clock: ManualClock
) -> None:
    # The help screen is kept once built (showing it again then costs little on a busy
    # machine); a theme chosen in between must still colour it.
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        await pilot.press("question_mark")
        first = app.screen
        assert isinstance(first, HelpScreen)
        await pilot.press("escape")
        await pilot.press("t")
        await pilot.press("question_mark")
        assert app.screen is first
        box = app.screen.query_one("#help-box")
        assert box.styles.border_top[1].hex == Color.parse(app.current_theme.primary).hex
        assert "vtmon keys" in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_a_text_that_needs_another_line_gets_it(monitor: Monitor, clock: ManualClock) -> None:
    # Texts that keep their lines are repainted in place; one that grows still makes room.
    app = VtmonApp(monitor)
    async with app.run_test(size=(200, 50)) as pilot:
        await start(pilot, monitor)
        events = app.query_one("#events")
        before = events.size.height
        batch = Batch(received=clock.time())
        batch.rejected["parse_error"] += 3
        monitor.submit(batch)
        clock.advance(1)
        await start(pilot, monitor)
        await pilot.pause()
        assert events.size.height == before + 1
        assert "3 parse_error" in screen_text(app)


async def test_a_changed_cell_is_drawn_anew_and_the_cursor_moves_its_highlight(
    monitor: Monitor, clock: ManualClock
) -> None:
    # Cells are rendered again only when their text changes: what is on screen must still
    # follow every change, and the cursor its row.
    other = SeriesKey("db.query_latency", make_tags({"component": "db"}))
    batch = Batch(received=clock.time())
    batch.dist[API] = DistBuf(values=[40.0] * 100)
    batch.dist[other] = DistBuf(values=[5.0] * 100)
    batch.accepted += 200
    monitor.submit(batch)
    app = VtmonApp(monitor)
    async with app.run_test(size=(200, 50)) as pilot:
        await start(pilot, monitor)
        table = app.query_one(LatencyTable)

        def line(row_id: str) -> Strip:
            y = table.region.y + 1 + table.get_row_index(row_id)  # under the header
            return app.screen._compositor.render_strips()[y]

        assert "40.0 ms" in line(API.id).text
        batch = Batch(received=clock.time())
        batch.dist[API] = DistBuf(values=[900.0] * 1000)  # p50 moves past the target
        batch.accepted += 1000
        monitor.submit(batch)
        clock.advance(1)
        await start(pilot, monitor)
        p50 = table.get_cell(API.id, "p50").plain.strip()
        assert p50 != "40.0 ms" and p50 in line(API.id).text

        def looks(row_id: str) -> list[object]:
            return [seg.style for seg in line(row_id) if seg.text.strip()]

        first, second = (table.row_id(r) for r in (0, 1))
        assert table.cursor_row == 0
        before = (looks(first), looks(second))
        await pilot.press("down")
        assert table.cursor_row == 1
        assert looks(first) != before[0] and looks(second) != before[1]


async def test_only_the_changed_rows_are_drawn_again(
    monitor: Monitor, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Snapshot draws again only the table lines whose text or colour changed.
    other = SeriesKey("db.query_latency", make_tags({"component": "db"}))
    feed(monitor, clock, {API: [40.0] * 100, other: [5.0] * 100})
    app = VtmonApp(monitor)
    async with app.run_test(size=(200, 50)) as pilot:
        for _ in range(3):
            await start(pilot, monitor)
        table = app.query_one(LatencyTable)
        drawn = count_drawn(monkeypatch)
        api_row, other_row = table.get_row_index(API.id), table.get_row_index(other.id)
        feed(monitor, clock, {API: [45.0] * 400})  # only the api-server row changes
        clock.advance(1)
        await start(pilot, monitor)
        await pilot.pause()
        assert table.get_row_index(API.id) == api_row  # the rows kept their places
        assert api_row + 1 in drawn  # its line (under the header) was drawn
        assert other_row + 1 not in drawn  # the unchanged row's was not
        assert 0 not in drawn  # nor the header
