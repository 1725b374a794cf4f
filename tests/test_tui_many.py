"""The latency panel with 10,000 series: a real Monitor on a ManualClock holds them all, the
real app shows them, Pilot presses keys and clicks, and the assertions read the screen."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.screen import feed, screen_monitor, screen_text, start
from vtmon.clock import ManualClock
from vtmon.engine.monitor import Monitor
from vtmon.model import SeriesKey, Snapshot, make_tags
from vtmon.tui import fmt
from vtmon.tui.app import VtmonApp
from vtmon.tui.charts import Chart
from vtmon.tui.latency import LatencyTable
from vtmon.tui.live import LiveStatic

N = 10_000
SIZE = (160, 45)


def name(i: int) -> str:
    return f"svc.endpoint_{i:05d}.latency"


def key(i: int) -> SeriesKey:
    return SeriesKey(name(i), make_tags({"component": "svc"}))


def typical_ms(i: int) -> float:
    """Each series its own latency, so rows and charts tell them apart."""
    return 10.0 + i % 100


@pytest.fixture
def monitor(tmp_path: Path, clock: ManualClock) -> Monitor:
    m = screen_monitor(tmp_path, clock)
    feed(m, clock, {key(i): [typical_ms(i)] * 3 for i in range(N)})
    return m


def cursor_line(app: VtmonApp) -> str:
    """The screen line the cursor is on (the header is the table's first line)."""
    table = app.query_one(LatencyTable)
    y = table.region.y + 1 + table.cursor_row - int(table.scroll_y)
    return screen_text(app).splitlines()[y]


def rows_on_screen(app: VtmonApp) -> list[int]:
    """The series (by number) whose rows the screen shows, top to bottom."""
    return [
        int(line.split("svc.endpoint_")[1][:5])
        for line in screen_text(app).splitlines()
        if "svc.endpoint_" in line and "━ p50" not in line  # not the chart's legend
    ]


async def test_the_first_rows_are_shown_and_a_snapshot_formats_only_those(
    monitor: Monitor, clock: ManualClock
) -> None:
    app = VtmonApp(monitor)
    async with app.run_test(size=SIZE) as pilot:
        snap = await start(pilot, monitor)
        table = app.query_one(LatencyTable)
        assert table.row_count == N == len(snap.series)
        shown = rows_on_screen(app)
        assert shown == list(range(len(shown))) and 10 <= len(shown) < 40
        row = next(line for line in screen_text(app).splitlines() if name(7) in line)
        assert fmt.latency(snap.series[7].windows["1m"].p50) in row
        # the scrollbar spans every series, not the rows on screen
        assert table.show_vertical_scrollbar and table.virtual_size.height == N + 1
        before = table.rows_formatted
        clock.advance(1)
        feed(monitor, clock, {key(i): [typical_ms(i) + 50] for i in range(N)})
        await start(pilot, monitor)
        assert table.rows_formatted - before <= len(shown)


async def test_down_page_down_and_end_bring_later_series(monitor: Monitor) -> None:
    app = VtmonApp(monitor)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, monitor)
        table = app.query_one(LatencyTable)
        page = len(rows_on_screen(app))
        await pilot.press("down")
        assert table.selected_id() == key(1).id and name(1) in cursor_line(app)
        await pilot.press("pagedown")
        assert table.selected_id() == key(1 + page).id
        shown = rows_on_screen(app)
        assert 0 not in shown and 1 + page in shown  # the next screenful
        assert name(1 + page) in cursor_line(app)
        await pilot.press("pageup")
        assert table.selected_id() == key(1).id and 0 in rows_on_screen(app)
        await pilot.press("end")
        assert table.selected_id() == key(N - 1).id
        assert rows_on_screen(app)[-1] == N - 1 and name(N - 1) in cursor_line(app)
        await pilot.press("home")
        assert table.selected_id() == key(0).id and rows_on_screen(app)[0] == 0


async def test_a_click_selects_the_row_under_the_mouse(monitor: Monitor) -> None:
    app = VtmonApp(monitor)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, monitor)
        table = app.query_one(LatencyTable)
        await pilot.press("pagedown")
        top = rows_on_screen(app)[0]
        await pilot.click(LatencyTable, offset=(5, 4))  # the header, then rows top..top+3
        await pilot.pause()
        assert table.selected_id() == key(top + 3).id
        assert name(top + 3) in cursor_line(app)
        await pilot.click(LatencyTable, offset=(5, 0))  # the header selects nothing
        assert table.selected_id() == key(top + 3).id


async def test_the_selection_stays_on_its_series_when_rows_arrive_before_it(
    tmp_path: Path, clock: ManualClock
) -> None:
    monitor = screen_monitor(tmp_path, clock)  # room for three more under the series cap
    feed(monitor, clock, {key(i): [typical_ms(i)] * 3 for i in range(N - 3)})
    app = VtmonApp(monitor)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, monitor)
        table = app.query_one(LatencyTable)
        await pilot.press("down", "down", "down", "down", "down")
        assert table.selected_id() == key(5).id
        # three new series sort before it (svc.aaa... < svc.endpoint...)
        early = [SeriesKey(f"svc.aaa_{j}.latency", key(0).tags) for j in range(3)]
        clock.advance(1)
        feed(monitor, clock, {k: [1.0] for k in early})
        snap = await start(pilot, monitor)
        assert len(snap.series) == N
        assert table.selected_id() == key(5).id
        assert table.cursor_row == 8
        assert name(5) in cursor_line(app)
        legend = app.query_one("#latency-legend", LiveStatic).shown_text
        assert key(5).id in legend


def history_p50(snap: Snapshot, k: SeriesKey) -> tuple[float | None, ...]:
    s = next(s for s in snap.series if s.id == k.id)
    return tuple(h.p50 for h in s.history)


async def test_the_chart_shows_the_selected_series(monitor: Monitor, clock: ManualClock) -> None:
    app = VtmonApp(monitor)
    async with app.run_test(size=SIZE) as pilot:
        snap = await start(pilot, monitor)
        for _ in range(3):  # a few chart points
            clock.advance(10)
            feed(monitor, clock, {key(i): [typical_ms(i)] * 3 for i in range(N)})
            snap = await start(pilot, monitor)
        chart = app.query_one("#latency-chart", Chart)
        assert chart.data.lines[0].y == history_p50(snap, key(0))
        await pilot.press("pagedown")
        table = app.query_one(LatencyTable)
        chosen = table.selected_key
        assert chosen is not None and chosen != key(0)
        assert chart.data.lines[0].y == history_p50(snap, chosen)
        assert chart.data.lines[0].y != history_p50(snap, key(0))
        assert chosen.id in app.query_one("#latency-legend", LiveStatic).shown_text
