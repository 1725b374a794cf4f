"""What drawing a Snapshot of N series costs the console's panels, in process.

python bench/latency_panel.py [--series 1,1000,10000] [--snapshots 20]

For each N: a real Monitor on a manual clock (no socket, no history, no psutil sensors) holds
N distribution series (``svc.endpoint_00042.latency`` over 20 components, a few samples each
per second); the real app runs headless at 160x45 (Textual's test driver). For each of
``--snapshots`` Snapshots (one more second of samples each), the bench times, on the app's own
thread: the latency panel taking the Snapshot (its rows, the selected series' chart and
legend), the table's lines drawn again in full (a scroll or a resize), and the Errors & events
panel taking the Snapshot, then every panel taking it (the app's ``render_snapshot``, the
latency and events panels again among them, with nothing left to change). The Monitor's tick
is not timed. Figures: the median and the
largest, in ms. It runs on the vtmon it imports, so old code unpacked elsewhere can be
measured the same way (PYTHONPATH).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from common import machine

from vtmon.clock import ManualClock
from vtmon.demo import demo_config
from vtmon.engine.monitor import Monitor
from vtmon.engine.sensors import SensorReader
from vtmon.model import Batch, DistBuf, SeriesKey, make_tags
from vtmon.tui.app import VtmonApp
from vtmon.tui.events import EventsPanel
from vtmon.tui.latency import LatencyPanel

SIZE = (160, 45)


def keys(n: int) -> list[SeriesKey]:
    return [
        SeriesKey(f"svc.endpoint_{i:05d}.latency", make_tags({"component": f"comp{i % 20:02d}"}))
        for i in range(n)
    ]


def feed(monitor: Monitor, clock: ManualClock, ks: list[SeriesKey], second: int) -> None:
    batch = Batch(received=clock.time())
    for i, k in enumerate(ks):
        batch.dist[k] = DistBuf(values=[5.0 + (i * 7 + second) % 300, 9.0 + i % 250])
        batch.accepted += 2
    monitor.submit(batch)


def timed(fn: Callable[..., object], *args: object) -> float:
    t = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t) * 1000


async def run(n: int, snapshots: int) -> dict[str, list[float]]:
    clock = ManualClock()
    folder = Path(tempfile.mkdtemp(prefix="vtmon-bench-"))
    (folder / "sys").mkdir()
    config = replace(demo_config(), max_series=max(demo_config().max_series, n + 100))
    monitor = Monitor(
        config,
        clock=clock,
        socket_path=str(folder / "none.sock"),
        sensors=SensorReader(folder / "sys", use_psutil=False),
    )
    ks = keys(n)
    feed(monitor, clock, ks, 0)
    app = VtmonApp(monitor)
    out: dict[str, list[float]] = {
        "latency panel": [],
        "table redrawn": [],
        "events panel": [],
        "every panel": [],
    }
    async with app.run_test(size=SIZE) as pilot:
        app.paused = True  # the bench hands the panels each Snapshot itself
        monitor.tick()
        await pilot.pause()
        latency, events = app.query_one(LatencyPanel), app.query_one(EventsPanel)
        table = app.query_one("#latency-table")
        for second in range(1, snapshots + 1):
            clock.advance(1)
            feed(monitor, clock, ks, second)
            snap = monitor.tick()
            out["latency panel"].append(timed(latency.show, snap, "1m"))
            out["table redrawn"].append(timed(table.render_lines, table.size.region))
            out["events panel"].append(timed(events.show, snap, "1m"))
            out["every panel"].append(timed(app.render_snapshot, snap))
            await pilot.pause()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", default="1,1000,10000", help="comma-separated series counts")
    ap.add_argument("--snapshots", type=int, default=20)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"ms per Snapshot, median (largest) of {args.snapshots}, {SIZE[0]}x{SIZE[1]}")
    head = ("latency panel", "table redrawn", "events panel", "every panel")
    print(f"{'series':>8}  " + "  ".join(f"{h:>16}" for h in head))
    for n in (int(x) for x in args.series.split(",")):
        got = asyncio.run(run(n, args.snapshots))
        cells = [f"{statistics.median(got[h]):7.2f} ({max(got[h]):6.2f})" for h in head]
        print(f"{n:>8,}  " + "  ".join(f"{c:>16}" for c in cells))


if __name__ == "__main__":
    main()
