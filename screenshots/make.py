"""Regenerate the README's screenshots from the demo workload (deterministic: seeded, manual clock).

python screenshots/make.py
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

from vtmon.clock import ManualClock
from vtmon.demo import DemoWorkload
from vtmon.engine.collector import SystemCollector
from vtmon.engine.monitor import Monitor
from vtmon.ingest.parse import parse_block
from vtmon.model import Batch, ResourceHistory, Resources
from vtmon.tui.app import VtmonApp

HERE = Path(__file__).parent


class ReadOnce:
    """This machine, read for real once before the feeding loop: the loop simulates minutes in
    a second and keeps a core busy, which is not what a person running the demo sees."""

    def __init__(self) -> None:
        self.collector = SystemCollector()
        self.collector.collect(time.time())
        time.sleep(1.0)  # rates and CPU need two readings a moment apart
        self.reading = self.collector.collect(time.time())

    def collect(self, now: float) -> Resources:
        return replace(self.reading, t=now)

    def history(self) -> ResourceHistory:
        return self.collector.history()


def fed_monitor(seconds: int, start_at: float = 0.0) -> Monitor:
    clock = ManualClock()
    monitor = Monitor(
        clock=clock,
        socket_path="/run/user/1000/vtmon/vtmon.sock",
        watching="demo",
        collector=ReadOnce(),  # type: ignore[arg-type]
    )
    workload = DemoWorkload(seed=3)
    for i in range(seconds):
        batch = Batch()
        parse_block(("\n".join(workload.lines(start_at + i, 1.0)) + "\n").encode(), batch)
        monitor.submit(batch)
        clock.advance(1.0)
        monitor.tick()
    return monitor


async def shoot(
    name: str, size: tuple[int, int], seconds: int, start_at: float = 0.0, keys: str = ""
) -> None:
    monitor = fed_monitor(seconds, start_at)
    app = VtmonApp(monitor)
    async with app.run_test(size=size) as pilot:
        monitor.tick()
        await pilot.pause()
        await pilot.press("down")  # select api.request_latency
        for key in keys:
            await pilot.press(key)
        await pilot.pause()
        app.save_screenshot(filename=f"{name}.svg", path=str(HERE))
    print(f"wrote {HERE / (name + '.svg')}")


def main() -> None:
    # 150 s in: the api-server latency spike of the first incident is under way.
    asyncio.run(shoot("demo", (160, 45), 150))
    asyncio.run(shoot("demo-80x24", (80, 24), 150))
    # The same moment with `b`: the bottleneck's evidence, likely cause and history.
    asyncio.run(shoot("bottleneck", (160, 45), 150, keys="b"))


if __name__ == "__main__":
    main()
