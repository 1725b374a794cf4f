"""Reading the screen as a person would, shared by the screen tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.color import Color

from vtmon.clock import ManualClock
from vtmon.demo import demo_config
from vtmon.engine.monitor import Monitor
from vtmon.engine.sensors import SensorReader
from vtmon.model import Batch, DistBuf, Event, SeriesKey, Snapshot
from vtmon.store.history import HistoryStore
from vtmon.tui.app import VtmonApp

SOCK = "/tmp/vtmon-test/vtmon.sock"  # only shown: nothing listens there


def screen_text(app: VtmonApp) -> str:
    """The composited screen as plain lines (what a person would read)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def same_colour(rich_color: Any, css: str) -> bool:
    """Textual may blend a component colour by a unit or two; a different theme colour is far."""
    want = Color.parse(css).rich_color.triplet
    return all(abs(a - b) <= 3 for a, b in zip(rich_color.triplet, want, strict=True))


async def start(pilot: Any, monitor: Monitor) -> Snapshot:
    """Publish one Snapshot and let the app render it."""
    snap = monitor.tick()
    await pilot.pause()
    return snap


def screen_monitor(
    tmp_path: Path,
    clock: ManualClock,
    *,
    watching: str = "test workload",
    store: HistoryStore | None = None,
) -> Monitor:
    """The engine a screen test drives: the real Monitor on the injected clock, with an empty
    fake /sys (the sensor reader finds nothing and says why: no real hardware)."""
    (tmp_path / "sys").mkdir(exist_ok=True)
    return Monitor(
        demo_config(),
        clock=clock,
        socket_path=SOCK,
        watching=watching,
        sensors=SensorReader(tmp_path / "sys", use_psutil=False),
        store=store,
    )


def feed(
    monitor: Monitor,
    clock: ManualClock,
    series: dict[SeriesKey, list[float]],
    rejected: dict[str, int] | None = None,
    events: list[Event] | None = None,
) -> None:
    """Hand the engine one batch of latencies (and rejections, events) as the socket would."""
    batch = Batch(received=clock.time())
    for key, values in series.items():
        batch.dist[key] = DistBuf(values=list(values))
        batch.accepted += len(values)
    for reason, n in (rejected or {}).items():
        batch.rejected[reason] += n
    batch.events.extend(events or [])
    monitor.submit(batch)


def count_drawn(monkeypatch: Any) -> list[int]:
    """The lines the latency table draws from now on, as they are drawn (y, in order)."""
    from textual.strip import Strip

    from vtmon.tui.latency_table import LatencyTable

    drawn: list[int] = []
    original = LatencyTable.render_line

    def render_line(self: LatencyTable, y: int) -> Strip:
        drawn.append(y)
        return original(self, y)

    monkeypatch.setattr(LatencyTable, "render_line", render_line)
    return drawn
