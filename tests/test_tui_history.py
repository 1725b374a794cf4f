"""The charts after a restart, driven as a user would: real Monitors on a ManualClock write
simulated hours into a real history file, a second Monitor on the same file feeds the real
app, Pilot presses `h`, and the assertions read what the chart and its legend show.

Nothing sleeps: the chart's history is read in a Textual thread worker, which the tests wait
for; the history writer's seed is waited for through its ``seeded`` event.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.screen import screen_monitor, screen_text, start
from vtmon.clock import ManualClock
from vtmon.engine.collector import SystemCollector
from vtmon.engine.monitor import Monitor, chart_resolution
from vtmon.model import Batch, DistBuf, ResourceHistory, SeriesKey, make_tags
from vtmon.store.history import HistoryStore
from vtmon.tui.app import HISTORY_OFF, VtmonApp
from vtmon.tui.charts import Chart, _x_ticks
from vtmon.tui.latency import LatencyPanel
from vtmon.tui.live import LiveStatic

API = SeriesKey("api.request_latency", make_tags({"component": "api-server"}))
VOICE = SeriesKey("voice.synth_latency", make_tags({"component": "voice-engine"}))
STEP_S = 10  # one tick every 10 s of simulated time: continuous at the 10 s resolution
BEFORE_MS, AFTER_MS = 40.0, 200.0  # what the first and the second run measured


def new_monitor(tmp_path: Path, clock: ManualClock, history: bool = True) -> Monitor:
    store = HistoryStore.open(tmp_path / "data", clock=clock) if history else None
    assert store is None or store.persistent, store.warning
    return screen_monitor(tmp_path, clock, watching="", store=store)


def run_for(monitor: Monitor, clock: ManualClock, seconds: int, api_ms: float) -> None:
    """Feed and tick every STEP_S seconds, writing to the file as the writer thread would."""
    assert monitor.store is not None
    for i in range(seconds // STEP_S):
        batch = Batch(dist={API: DistBuf([api_ms] * 20), VOICE: DistBuf([300.0] * 5)})
        batch.accepted = 25
        monitor.submit(batch)
        monitor.tick()
        clock.advance(STEP_S)
        if i % 60 == 59:
            monitor.store.flush()
    monitor.store.flush()
    monitor.store.maintain()  # rollups into the coarser tiers, as every minute


def legend(app: VtmonApp) -> str:
    return app.main_screen.query_one("#latency-legend", LiveStatic).shown_text


def plotted(app: VtmonApp) -> list[tuple[float, float]]:
    """(seconds before now, p50) of every p50 point the latency chart was given."""
    p50 = app.main_screen.query_one("#latency-chart", Chart).data.lines[0]
    return [(x, y) for x, y in zip(p50.x, p50.y, strict=True) if y is not None]


def drawn_left_of(app: VtmonApp, label: str) -> bool:
    """Whether the latency chart on screen has plotted dots left of an x-axis label."""
    lines = str(app.main_screen.query_one("#latency-chart", Chart).render()).splitlines()
    col = lines[-1].index(f" {label} ")
    return any("\u2800" < ch <= "\u28ff" for line in lines[:-2] for ch in line[:col])


async def press_and_wait(app: VtmonApp, pilot: Pilot[None], key: str) -> None:
    await pilot.press(key)
    await app.workers.wait_for_complete()
    await pilot.pause()  # the worker's result message reaches the panel


@pytest.fixture
def restarted(tmp_path: Path, clock: ManualClock) -> Monitor:
    """Two hours of a first run, 10 minutes down, 20 minutes of a second run on the file."""
    first = new_monitor(tmp_path, clock)
    run_for(first, clock, 2 * 3600, BEFORE_MS)
    first.stop()
    clock.advance(600)
    second = new_monitor(tmp_path, clock)
    run_for(second, clock, 20 * 60, AFTER_MS)
    return second


async def test_h_spans_hours_of_history_from_before_the_restart(
    restarted: Monitor, clock: ManualClock
) -> None:
    monitor = restarted
    app = VtmonApp(monitor)
    async with app.run_test(size=(160, 45)) as pilot:
        await start(pilot, monitor)
        assert "last 5 min, each point: the 10 s before it" in legend(app)
        assert all(y == AFTER_MS for _, y in plotted(app))  # live: the second run only

        await press_and_wait(app, pilot, "h")
        assert "last 1 h, each point 10 s" in legend(app)
        pts = plotted(app)
        # 20 minutes of the second run, 10 minutes down, then the first run's last 30 minutes
        before = [x for x, y in pts if y == pytest.approx(BEFORE_MS, rel=0.01)]
        after = [x for x, y in pts if y == pytest.approx(AFTER_MS, rel=0.01)]
        assert len(before) + len(after) == len(pts) <= 400
        assert min(before) == pytest.approx(-3600, abs=20) and max(before) <= -30 * 60
        assert min(after) >= -20 * 60 - STEP_S and max(after) >= -2 * STEP_S
        screen = screen_text(app)
        for label in ("-1h", "-45m", "-30m", "-15m", "now"):
            assert f" {label} " in f" {screen} ".replace("\n", " "), label
        assert drawn_left_of(app, "-30m")  # the first run, plotted on screen

        await press_and_wait(app, pilot, "h")
        assert "last 6 h, each point 1 min" in legend(app)
        pts = plotted(app)
        # everything the first run wrote, two and a half hours ago at the start
        assert min(x for x, _ in pts) == pytest.approx(-(2 * 3600 + 30 * 60), abs=60)
        assert {round(y) for _, y in pts} == {round(BEFORE_MS), round(AFTER_MS)}
        assert "-6h" in screen_text(app) and "-2h" in screen_text(app)
        assert drawn_left_of(app, "-2h")

        await press_and_wait(app, pilot, "h")
        assert "last 24 h, each point 5 min" in legend(app)
        assert "-24h" in screen_text(app) and "-12h" in screen_text(app)
        await press_and_wait(app, pilot, "h")
        assert "last 7 d, each point 30 min" in legend(app)
        assert "-6d" in screen_text(app)
        assert min(x for x, _ in plotted(app)) <= -2 * 3600
        await press_and_wait(app, pilot, "h")
        assert "last 5 min, each point: the 10 s before it" in legend(app)
        said = [n.message for n in app._notifications]
        assert said[-5:] == [
            "Chart span: 1 h",
            "Chart span: 6 h",
            "Chart span: 24 h",
            "Chart span: 7 d",
            "Chart span: 5 min (live)",
        ]
    monitor.stop()


async def test_the_long_chart_follows_the_selection_and_refreshes(
    restarted: Monitor, clock: ManualClock
) -> None:
    monitor = restarted
    app = VtmonApp(monitor)
    async with app.run_test(size=(160, 45)) as pilot:
        await start(pilot, monitor)
        await press_and_wait(app, pilot, "h")
        panel = app.main_screen.query_one(LatencyPanel)
        assert panel.stored is not None and panel.stored.key == API
        await press_and_wait(app, pilot, "down")
        assert panel.stored is not None and panel.stored.key == VOICE
        assert VOICE.id in legend(app) and "last 1 h" in legend(app)
        voice = [y for _, y in plotted(app)]
        assert voice and all(y == pytest.approx(300.0, rel=0.01) for y in voice)
        await press_and_wait(app, pilot, "up")
        newest = max(x for x, _ in plotted(app))

        # a minute later, with a new level written: the timer's refresh reads it
        batch = Batch(dist={API: DistBuf([900.0] * 20)}, accepted=20)
        for _ in range(6):
            monitor.submit(batch)
            monitor.tick()
            clock.advance(STEP_S)
        assert monitor.store is not None
        monitor.store.flush()
        await start(pilot, monitor)
        assert max(y for _, y in plotted(app)) == AFTER_MS  # not re-read every second
        app.refresh_chart_history()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert max(y for _, y in plotted(app)) == pytest.approx(900.0, rel=0.01)
        assert max(x for x, _ in plotted(app)) >= newest - STEP_S
    monitor.stop()


async def test_with_history_off_h_says_so_and_stays_live(
    tmp_path: Path, clock: ManualClock
) -> None:
    monitor = new_monitor(tmp_path, clock, history=False)
    monitor.submit(Batch(dist={API: DistBuf([BEFORE_MS] * 20)}, accepted=20))
    app = VtmonApp(monitor)
    async with app.run_test(size=(160, 45)) as pilot:
        await start(pilot, monitor)
        await pilot.press("h")
        await pilot.pause()
        assert [n.message for n in app._notifications] == [HISTORY_OFF]
        assert app.main_screen.query_one(LatencyPanel).span_s == 300
        assert "last 5 min, each point: the 10 s before it" in legend(app)
        assert monitor.chart_history(API, 3600) is None
        assert not app.workers  # nothing was read
    monitor.stop()


async def test_resource_charts_continue_after_a_restart(tmp_path: Path, clock: ManualClock) -> None:
    first = new_monitor(tmp_path, clock)
    for _ in range(240):  # four minutes of machine readings, one a second
        first.tick()
        clock.advance(1)
    first.stop()
    stopped = clock.time()
    clock.advance(60)

    second = new_monitor(tmp_path, clock)
    second.start_store()  # as Monitor.start does: the writer thread reads the seed
    assert second.store is not None and second.store.seeded.wait(10)
    app = VtmonApp(second)
    async with app.run_test(size=(160, 45)) as pilot:
        await start(pilot, second)  # the seed arrives in this tick, for the next Snapshot
        snap = await start(pilot, second)
        h = snap.resource_history
        older = [t for t in h.t if t < stopped]
        assert len(older) >= 20  # the first run's readings, 10 s apart
        assert min(older) <= stopped - 200 and h.t[-1] == clock.time()
        cpu = app.main_screen.query_one("#cpu-chart", Chart).data
        assert cpu.x_span >= 240  # minutes back, not the one live reading
        assert len(cpu.lines[0].x) == len(h.t)
        assert "-5m" in str(app.main_screen.query_one("#cpu-chart", Chart).render())
        assert "collecting…" not in screen_text(app)
    second.stop()


def test_seeded_readings_leave_by_age() -> None:
    collector = SystemCollector(history_len=300)
    t0 = 1_700_000_000.0
    seed = ResourceHistory(
        t=tuple(t0 - 300 + 10 * i for i in range(25)),
        cpu=(50.0,) * 25,
        mem=(60.0,) * 25,
        disk_read=(0.0,) * 25,
        disk_write=(0.0,) * 25,
        net_rx=(0.0,) * 25,
        net_tx=(0.0,) * 25,
    )
    collector.collect(t0)
    assert collector.seed_history(seed, span_s=300) == 25
    assert collector.history().t[:2] == (t0 - 300, t0 - 290)
    for i in range(1, 200):
        collector.collect(t0 + i)
    h = collector.history()
    # 25 + 200 readings fit in 300 by count; by age only the last five minutes stay
    assert h.t[0] >= h.t[-1] - 300 and h.t[0] < t0
    assert len(h.t) == 200 + sum(1 for t in seed.t if t >= t0 + 199 - 300)


def test_chart_resolution_keeps_a_few_hundred_points() -> None:
    assert [chart_resolution(s) for s in (3600, 6 * 3600, 86400, 7 * 86400)] == [
        10,
        60,
        300,
        1800,
    ]
    assert _x_ticks(6 * 3600, 2)[1] == ["-6h", "-3h", "now"]
    assert _x_ticks(6 * 3600)[1] == ["-6h", "-4h", "-2h", "now"]
    assert _x_ticks(300)[1] == ["-5m", "-4m", "-3m", "-2m", "-1m", "now"]
    assert _x_ticks(7 * 86400)[1] == ["-6d", "-4d", "-2d", "now"]
