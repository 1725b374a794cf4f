"""The screen, driven as a user would: a real Monitor on a ManualClock feeds the real app,
Pilot presses keys, and the assertions read what the widgets show."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from textual.color import Color

from tests.screen import SOCK, count_drawn, feed, same_colour, screen_monitor, screen_text, start
from vtmon.clock import ManualClock
from vtmon.config import Config
from vtmon.engine.collector import SystemCollector
from vtmon.engine.monitor import Monitor
from vtmon.engine.sensors import SensorReader
from vtmon.model import Event, Kind, SeriesKey, Snapshot, make_tags
from vtmon.store.history import HistoryStore
from vtmon.tui import fmt, keys
from vtmon.tui.app import VtmonApp
from vtmon.tui.charts import Chart
from vtmon.tui.events import EventsPanel
from vtmon.tui.fmt import Severity
from vtmon.tui.help import HelpScreen
from vtmon.tui.latency import LatencyPanel, LatencyTable
from vtmon.tui.live import LiveStatic
from vtmon.tui.themes import load_theme_file, load_themes, theme_dirs

API = SeriesKey("api.request_latency", make_tags({"component": "api-server", "endpoint": "/users"}))
VOICE = SeriesKey("voice.synth_latency", make_tags({"component": "voice-engine"}))
API_ID = API.id


@pytest.fixture
def monitor(tmp_path: Path, clock: ManualClock) -> Monitor:
    return screen_monitor(tmp_path, clock)


def mixed_latencies() -> list[float]:
    """p50 within the 100 ms target, p95 within twice it, p99 beyond."""
    return [50.0] * 60 + [150.0] * 35 + [300.0] * 5


# -- formatting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0.85, "850 µs"), (12.5, "12.5 ms"), (1.234, "1.23 ms"), (999.9, "1.00 s"), (1200, "1.20 s")],
)
def test_latency_units_fit_the_magnitude(ms: float, text: str) -> None:
    assert fmt.latency(ms) == text


def test_severity_against_target() -> None:
    assert [fmt.severity(v, 100.0) for v in (100.0, 200.0, 200.1, None)] == [
        Severity.OK,
        Severity.WARN,
        Severity.BAD,
        Severity.NONE,
    ]


# -- latency table ------------------------------------------------------------------------


async def test_rows_show_the_snapshot_percentiles(monitor: Monitor, clock: ManualClock) -> None:
    feed(monitor, clock, {API: mixed_latencies(), VOICE: [200.0, 250.0, 400.0]})
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        snap = await start(pilot, monitor)
        table = app.query_one(LatencyTable)
        assert table.row_count == 2
        for s in snap.series:
            w = s.windows["1m"]
            for col in ("p50", "p95", "p99"):
                shown = table.get_cell(s.id, col).plain.strip()
                assert shown == fmt.latency(getattr(w, col))
        assert table.get_cell(API_ID, "count").plain.strip() == "100"


async def test_cells_are_coloured_against_the_target(monitor: Monitor, clock: ManualClock) -> None:
    feed(monitor, clock, {API: mixed_latencies()})
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        table = app.query_one(LatencyTable)
        assert table.severity_at(API_ID, "p50") is Severity.OK
        assert table.severity_at(API_ID, "p95") is Severity.WARN
        assert table.severity_at(API_ID, "p99") is Severity.BAD
        theme = app.current_theme
        for col, expected in (("p50", theme.success), ("p95", theme.warning), ("p99", theme.error)):
            assert same_colour(table.get_cell(API_ID, col).style.color, expected), col


async def test_unchanged_rows_are_not_drawn_again(
    monitor: Monitor, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed(monitor, clock, {API: mixed_latencies()})
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        table = app.query_one(LatencyTable)
        drawn = count_drawn(monkeypatch)
        monitor.tick()  # same data: nothing on screen changes
        await pilot.pause()
        assert drawn == []
        assert table.get_cell(API_ID, "p50").plain.strip() == "50.0 ms"


async def test_w_cycles_the_window(monitor: Monitor, clock: ManualClock) -> None:
    feed(monitor, clock, {API: [10.0] * 50})
    monitor.tick()
    clock.advance(30)  # the 10 s window sees only what follows, 1 m and 5 m see both
    feed(monitor, clock, {API: [90.0] * 50})
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        snap = await start(pilot, monitor)
        table = app.query_one(LatencyTable)
        panel = app.query_one(LatencyPanel)
        stats = snap.series[0].windows
        assert stats["10s"].p50 != stats["1m"].p50
        assert app.window == "1m" and "1m" in str(panel.border_title)
        assert table.get_cell(API_ID, "p50").plain.strip() == fmt.latency(stats["1m"].p50)
        await pilot.press("w")
        assert app.window == "5m" and "5m" in str(panel.border_title)
        await pilot.press("w")
        assert app.window == "10s"
        assert table.get_cell(API_ID, "p50").plain.strip() == fmt.latency(stats["10s"].p50)
        assert table.get_cell(API_ID, "count").plain.strip() == "50"


async def test_up_down_select_the_charted_series(monitor: Monitor, clock: ManualClock) -> None:
    feed(monitor, clock, {API: mixed_latencies(), VOICE: [200.0] * 10})
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        snap = await start(pilot, monitor)
        table = app.query_one(LatencyTable)
        chart = app.query_one("#latency-chart", Chart)
        assert table.selected_id() == API_ID
        api = next(s for s in snap.series if s.id == API_ID)
        assert chart.data.hline == api.target_ms == 100.0
        assert chart.data.lines[0].y == tuple(h.p50 for h in api.history)
        await pilot.press("down")
        assert table.selected_id() == VOICE.id
        assert chart.data.hline == 300.0  # voice-engine's target
        assert VOICE.id in app.query_one("#latency-legend", LiveStatic).shown_text
        await pilot.press("up")
        assert table.selected_id() == API_ID


async def test_chart_redraws_on_resize(monitor: Monitor, clock: ManualClock) -> None:
    feed(monitor, clock, {API: mixed_latencies()})
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        chart = app.query_one("#latency-chart", Chart)
        before = chart.content_size
        assert "ms" in str(chart.render())  # the axis reads in latency units
        await pilot.resize_terminal(160, 45)
        await pilot.pause()
        assert chart.content_size != before
        assert len(str(chart.render()).splitlines()) == chart.content_size.height


async def test_empty_state_says_how_to_send(monitor: Monitor) -> None:
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        panel = app.query_one(LatencyPanel)
        assert panel.has_class("-empty")
        assert not app.query_one(LatencyTable).display
        text = app.query_one("#latency-empty", LiveStatic).shown_text
        assert f"socat - UNIX-CONNECT:{SOCK}" in text
        assert "vtmon send" in text
        assert "socat" in screen_text(app)


# -- other panels -------------------------------------------------------------------------


async def test_the_header_says_when_the_series_cap_refuses_new_series(clock: ManualClock) -> None:
    from tests.conftest import RecordingMonitor

    monitor = RecordingMonitor(Config(max_series=2), clock=clock, socket_path="test.sock")
    keys = [SeriesKey(n, (), Kind.DISTRIBUTION) for n in ("api.a", "api.b", "svc.c", "svc.d")]
    feed(monitor, clock, {k: [10.0, 12.0] for k in keys})
    app = VtmonApp(monitor)
    async with app.run_test(size=(200, 40)) as pilot:
        snap = await start(pilot, monitor)
        assert snap.ingest.series_refused == {"svc.*": 4}
        assert snap.ingest.max_series == 2
        header = str(app.query_one("#header").render())
        assert "full 2 series, new svc.* refused" in header


async def test_sensors_note_explains_nothing(monitor: Monitor) -> None:
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        snap = await start(pilot, monitor)
        assert snap.sensors.empty and snap.sensors.note
        shown = app.query_one("#sensors-text", LiveStatic).shown_text
        assert snap.sensors.note in shown


async def test_samples_clients_dropped_are_counted_in_the_header(
    monitor: Monitor, clock: ManualClock
) -> None:
    feed(monitor, clock, {API: [10.0]})
    # What vtmon.client sends when it reconnects after dropping samples while vtmon was away.
    monitor.handle_rpc({"jsonrpc": "2.0", "method": "client.dropped", "params": {"count": 1500}})
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        assert "drop 1.5k" in str(app.query_one("#header").render())
        events = app.query_one("#events-text", LiveStatic).shown_text
        assert "1.5k by clients while away" in events


async def test_connections_refused_or_closed_for_a_limit_are_visible(
    monitor: Monitor, clock: ManualClock
) -> None:
    feed(monitor, clock, {API: [10.0]})
    # What the socket server counts when it refuses or closes a connection for a limit.
    monitor.connections.refused = 12
    monitor.connections.closed.update({"unread answers": 2, "frame timeout": 1})
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        events = app.query_one("#events-text", LiveStatic).shown_text
        assert "Refused  12 connections (max_connections reached)" in events
        assert "Closed" in events and "2 unread answers" in events and "1 frame timeout" in events


async def test_rejections_are_visible(monitor: Monitor, clock: ManualClock) -> None:
    feed(monitor, clock, {API: [10.0]}, rejected={"bad syntax": 3, "unknown type": 1})
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        events = app.query_one("#events-text", LiveStatic).shown_text
        assert "3 bad syntax" in events and "1 unknown type" in events
        header = app.query_one("#header").render()
        assert "rej 4" in str(header)
        assert "rej 4" in screen_text(app)


async def test_events_and_errors_panel(monitor: Monitor, clock: ManualClock) -> None:
    check = Event("service_check", "db.can_connect", ts=clock.time(), status=2)
    feed(monitor, clock, {API: [10.0]}, events=[check])
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        text = app.query_one("#events-text", LiveStatic).shown_text
        assert "CRIT db.can_connect" in text


async def test_a_panel_that_cannot_draw_says_so_and_the_console_goes_on(
    monitor: Monitor, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    # A value no panel foresaw (here an event time beyond what the platform's clock can show;
    # the socket refuses such times, a bug elsewhere may not): the events panel shows its
    # failure, every other panel draws, and the next good Snapshot draws it again.
    feed(monitor, clock, {API: [10.0]})
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        snap = await start(pilot, monitor)
        bad = replace(snap, events=(Event("event", "deploy", ts=1e308),))
        app.render_snapshot(bad)
        app.render_snapshot(bad)  # failing again every second is logged once
        await pilot.pause()
        events = app.query_one(EventsPanel)
        assert "Could not draw this: OverflowError" in events.failure
        text = screen_text(app)
        assert "Could not draw this: OverflowError" in text
        assert "10.0 ms" in text and "No alerts." in text  # the other panels drew
        assert app.is_running and app.return_code is None
        logged = [r for r in caplog.records if "could not be drawn" in r.getMessage()]
        assert len(logged) == 1 and logged[0].exc_info is not None
        # a keypress still works, and the next good Snapshot clears the failure
        await pilot.press("w")
        app.render_snapshot(snap)
        await pilot.pause()
        assert events.failure == ""
        assert "Could not draw this" not in screen_text(app)


async def test_a_header_that_cannot_draw_says_so_in_itself(
    monitor: Monitor, clock: ManualClock
) -> None:
    feed(monitor, clock, {API: [10.0]})
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        snap = await start(pilot, monitor)
        huge = replace(snap, ingest=replace(snap.ingest, client_dropped=10**400))
        app.render_snapshot(huge)
        await pilot.pause()
        header = str(app.query_one("#header").render())
        assert header.startswith("Could not draw this: OverflowError")
        assert "10.0 ms" in screen_text(app) and app.is_running
        app.render_snapshot(snap)
        await pilot.pause()
        assert "Could not draw" not in str(app.query_one("#header").render())


# -- keys, help, palette, themes ----------------------------------------------------------


async def test_help_lists_every_key_from_the_registry(monitor: Monitor) -> None:
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-text").render())
        for action in keys.ACTIONS:
            assert action.display in text and action.help in text, action.id
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_a_key_press_holds_the_input_while_the_screen_answers(monitor: Monitor) -> None:
    now = [50.0]
    monitor.hold_clock = lambda: now[0]
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        assert not monitor.held
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert monitor.held  # the socket's reader waited while help was drawn
        now[0] += 0.5
        assert not monitor.held  # and no longer than that


async def test_the_input_waits_while_a_snapshot_is_drawn(monitor: Monitor) -> None:
    now = [50.0]
    monitor.hold_clock = lambda: now[0]
    app = VtmonApp(monitor)
    held_while_drawing: list[bool] = []
    async with app.run_test(size=(120, 36)) as pilot:
        draw = app.render_snapshot

        def render_snapshot(snap: Snapshot) -> None:
            held_while_drawing.append(monitor.held)
            draw(snap)

        app.render_snapshot = render_snapshot  # type: ignore[method-assign]
        await start(pilot, monitor)
        assert held_while_drawing == [True]  # the socket's reader waited while it was drawn,
        assert not monitor.held  # and reads on once the screen is painted (the clock stood still)


async def test_help_fits_a_100_column_terminal(monitor: Monitor) -> None:
    app = VtmonApp(monitor)
    async with app.run_test(size=(100, 36)) as pilot:
        await start(pilot, monitor)
        await pilot.press("question_mark")
        await pilot.pause()
        box = app.screen.query_one("#help-box").region
        assert box.x >= 0 and box.right <= 100  # its right border is on screen
        assert "╮" in screen_text(app).splitlines()[box.y]


async def test_bindings_and_palette_come_from_the_registry(monitor: Monitor) -> None:
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        bound = {b.id: b for b in app.BINDINGS}  # type: ignore[union-attr]
        for action in keys.ACTIONS:
            if action.builtin:
                continue
            assert bound[action.id].key == action.key
            assert bound[action.id].action == action.action
            assert hasattr(app, f"action_{action.action}"), action.action
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for action in keys.ACTIONS:
            if action.palette:
                assert any(t.startswith(action.description) for t in titles), action.id


async def test_t_cycles_themes_and_recolours_cells(monitor: Monitor, clock: ManualClock) -> None:
    feed(monitor, clock, {API: mixed_latencies()})
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        assert app.theme == "vtmon-dark"
        await pilot.press("t")
        await pilot.pause()
        assert app.theme == "vtmon-colorblind"
        table = app.query_one(LatencyTable)
        assert same_colour(table.get_cell(API_ID, "p50").style.color, app.current_theme.success)
        for _ in app.vtmon_themes[1:]:
            await pilot.press("t")
        assert app.theme == "vtmon-dark"


def test_shipped_themes_load_and_colourblind_avoids_green_and_red() -> None:
    loaded = load_themes([theme_dirs()[0]])
    assert not loaded.problems
    assert {"vtmon-dark", "vtmon-colorblind"} <= set(loaded.themes)
    cb = loaded.themes["vtmon-colorblind"]
    success_hue = Color.parse(cb.success).hsl.h * 360
    error_hue = Color.parse(cb.error).hsl.h * 360
    assert 180 <= success_hue <= 250  # blue
    assert 15 <= error_hue <= 45  # orange


async def test_broken_user_theme_is_skipped_not_fatal(monitor: Monitor) -> None:
    user = theme_dirs()[1]  # under the test's XDG_CONFIG_HOME
    user.mkdir(parents=True)
    (user / "broken.toml").write_text('name = "broken"\nprimary = "not-a-colour"\n')
    (user / "bad-toml.toml").write_text("name = \n")
    (user / "mine.toml").write_text('name = "mine"\nprimary = "#336699"\n')
    with pytest.raises(Exception, match="not a colour"):
        load_theme_file(user / "broken.toml")
    app = VtmonApp(monitor, theme="mine")
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        assert app.theme == "mine"
        assert "broken" not in app.available_themes
        messages = [n.message for n in app._notifications]
        assert any("broken.toml" in m for m in messages)
        assert any("bad-toml.toml" in m for m in messages)


# -- snapshots: threads, bursts, pause, unsubscribe ---------------------------------------


async def test_burst_of_snapshots_renders_only_the_newest(
    monitor: Monitor, clock: ManualClock
) -> None:
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        rendered = app.snapshots_rendered
        for i in range(5):
            clock.advance(1)
            feed(monitor, clock, {API: [float(10 * (i + 1))] * 10})
            monitor.tick()
        await pilot.pause()
        assert app.snapshots_rendered == rendered + 1
        assert app.shown is monitor.latest
        assert app.query_one(LatencyTable).get_cell(API_ID, "count").plain.strip() == "50"


async def test_snapshots_from_the_monitor_thread(monitor: Monitor, clock: ManualClock) -> None:
    feed(monitor, clock, {API: [12.5] * 10})
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        for _ in range(3):
            await asyncio.to_thread(monitor.tick)
        await pilot.pause()
        assert app.shown is monitor.latest
        assert app.query_one(LatencyTable).row_count == 1


async def test_pause_freezes_the_screen(monitor: Monitor, clock: ManualClock) -> None:
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        first = await start(pilot, monitor)
        await pilot.press("space")
        assert "PAUSED" in str(app.query_one("#header").render())
        clock.advance(1)
        monitor.tick()
        await pilot.pause()
        assert app.shown is first
        await pilot.press("space")
        assert app.shown is monitor.latest


async def test_unmount_unsubscribes(monitor: Monitor) -> None:
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
    rendered = app.snapshots_rendered
    monitor.tick()  # no subscriber left: nothing posted to a closed app
    assert app.snapshots_rendered == rendered
    assert not monitor._subscribers


# -- sizes --------------------------------------------------------------------------------


async def test_80x24_shows_latency_rows(monitor: Monitor, clock: ManualClock) -> None:
    feed(monitor, clock, {API: mixed_latencies(), VOICE: [200.0] * 10})
    app = VtmonApp(monitor)
    async with app.run_test(size=(80, 24)) as pilot:
        snap = await start(pilot, monitor)
        assert app.screen.has_class("-narrow") and app.screen.has_class("-short")
        assert not app.query_one("#latency-chart").display  # no room for charts
        text = screen_text(app)
        api = next(s for s in snap.series if s.id == API_ID).windows["1m"]
        row = next(line for line in text.splitlines() if "api.request_latency" in line)
        for value in (api.p50, api.p95, api.p99):
            assert fmt.latency(value) in row
        assert "voice.synth_latency" in text
        assert "rej" in text.splitlines()[0]  # the header keeps the counters


async def test_200x50_uses_the_room(monitor: Monitor, clock: ManualClock) -> None:
    feed(monitor, clock, {API: mixed_latencies(), VOICE: [200.0] * 10})
    app = VtmonApp(monitor)
    async with app.run_test(size=(200, 50)) as pilot:
        await start(pilot, monitor)
        assert app.screen.has_class("-wide")
        latency, side = app.query_one("#latency"), app.query_one("#side")
        assert latency.region.y == side.region.y  # side by side
        table = app.query_one(LatencyTable)
        assert {"component", "rate", "target"} <= {c.key for c in table.columns_in_use}
        assert table.get_cell(API_ID, "target").plain.strip() == "100 ms"
        chart = app.query_one("#latency-chart", Chart)
        assert chart.display and chart.content_size.height >= 20
        assert app.query_one("#cpu-chart").display
        await pilot.press("c")  # charts off: the table may take the room
        assert not chart.display and not app.query_one("#cpu-chart").display
        await pilot.press("c")
        assert chart.display


async def test_watched_process_is_shown_in_resources(tmp_path: Path, clock: ManualClock) -> None:
    # --pid: the real collector reads this test's own process through psutil.
    (tmp_path / "sys").mkdir()
    monitor = Monitor(
        Config(),
        clock=clock,
        socket_path=SOCK,
        collector=SystemCollector(pid=os.getpid()),
        sensors=SensorReader(tmp_path / "sys", use_psutil=False),
    )
    app = VtmonApp(monitor)
    async with app.run_test(size=(160, 45)) as pilot:
        snap = await start(pilot, monitor)
        text = app.main_screen.query_one("#resources-text", LiveStatic).shown_text
        me = snap.resources.process
        assert me is not None and me.running and me.rss
        proc = " ".join(text[text.index("Proc") :].split())
        assert f"Proc {me.name} {os.getpid()}" in proc
        assert f"rss {fmt.size(me.rss)}" in proc and f"threads {me.threads}" in proc


async def test_a_gone_process_says_so(tmp_path: Path, clock: ManualClock) -> None:
    (tmp_path / "sys").mkdir()
    gone = max(psutil.pids()) + 100_000
    monitor = Monitor(
        Config(),
        clock=clock,
        collector=SystemCollector(pid=gone),
        sensors=SensorReader(tmp_path / "sys", use_psutil=False),
    )
    app = VtmonApp(monitor)
    async with app.run_test(size=(160, 45)) as pilot:
        await start(pilot, monitor)
        text = app.main_screen.query_one("#resources-text", LiveStatic).shown_text
        assert f"gone No process has pid {gone}." in " ".join(text.split())


async def test_history_that_cannot_be_written_is_said_once_and_marked(
    tmp_path: Path, clock: ManualClock
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # no one, root included, can make a folder below it
    store = HistoryStore.open(blocker / "history", clock=clock)
    monitor = Monitor(Config(), clock=clock, socket_path=SOCK, store=store)
    app = VtmonApp(monitor)
    async with app.run_test(size=(160, 45)) as pilot:
        await start(pilot, monitor)
        await start(pilot, monitor)
        assert "⚠ history" in screen_text(app).splitlines()[0]
        said = [n.message for n in app._notifications if n.title == "History"]
        assert said == [store.warning]  # two snapshots, one notification
    monitor.stop()


async def test_every_footer_key_fits_at_80_columns(monitor: Monitor) -> None:
    app = VtmonApp(monitor)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot, monitor)
        footer = screen_text(app).splitlines()[-1]
        for shown in ("q Quit", "? Help", "b Bottlenecks", "space Pause", "c Charts"):
            assert shown in footer, footer
        before = app.theme
        await pilot.press("t")  # not in the footer, still a key
        assert app.theme != before
