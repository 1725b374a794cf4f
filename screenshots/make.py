"""Regenerate the README's screenshots from the demo workload (deterministic: seeded, manual clock).

python screenshots/make.py
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from vtmon.demo import DemoWorkload
from vtmon.engine.clock import ManualClock
from vtmon.engine.monitor import Monitor
from vtmon.ingest.parse import parse_block
from vtmon.model import Batch
from vtmon.tui.app import VtmonApp

HERE = Path(__file__).parent


def fed_monitor(seconds: int, start_at: float = 0.0) -> Monitor:
    clock = ManualClock()
    monitor = Monitor(clock=clock, socket_path="/run/user/1000/vtmon/vtmon.sock", watching="demo")
    workload = DemoWorkload(seed=3)
    for i in range(seconds):
        batch = Batch()
        parse_block(("\n".join(workload.lines(start_at + i, 1.0)) + "\n").encode(), batch)
        monitor.submit(batch)
        clock.advance(1.0)
        monitor.tick()
    return monitor


async def shoot(name: str, size: tuple[int, int], seconds: int, start_at: float = 0.0) -> None:
    monitor = fed_monitor(seconds, start_at)
    app = VtmonApp(monitor)
    async with app.run_test(size=size) as pilot:
        monitor.tick()
        await pilot.pause()
        await pilot.press("down")  # select api.request_latency
        await pilot.pause()
        app.save_screenshot(filename=f"{name}.svg", path=str(HERE))
    print(f"wrote {HERE / (name + '.svg')}")


def main() -> None:
    # 150 s in: the api-server latency spike of the first incident is under way.
    asyncio.run(shoot("demo", (160, 45), 150))
    asyncio.run(shoot("demo-80x24", (80, 24), 150))


if __name__ == "__main__":
    main()
