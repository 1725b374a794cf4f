"""What the engine's steps cost on this machine: sketch updates, windows, machine readings.

python bench/engine.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from vtmon.config import Config
from vtmon.engine.collector import SystemCollector
from vtmon.engine.sensors import SensorReader
from vtmon.engine.series import SeriesStore
from vtmon.engine.sketch import Sketch
from vtmon.model import Batch, DistBuf, Kind, SeriesKey


def timeit(fn, repeat: int) -> float:
    """Median seconds of one call."""
    costs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        costs.append(time.perf_counter() - t0)
    return statistics.median(costs)


def main() -> None:
    rng = np.random.default_rng(1)
    values = rng.lognormal(3, 1, 10_000)
    sk = Sketch()
    t = timeit(lambda: sk.add(values), 200)
    print(f"sketch add, batch of 10,000 values     {t * 1e6:8.0f} us  ({10_000 / t / 1e6:.0f} M/s)")

    cfg = Config()
    store = SeriesStore(cfg.target_ms)
    keys = [SeriesKey(f"s{i}.latency", (("component", f"c{i % 5}"),), Kind.DISTRIBUTION)
            for i in range(100)]  # fmt: skip
    now = 1_700_000_000.0
    for sec in range(300):  # five full minutes of 100 busy series
        b = Batch()
        for k in keys:
            b.dist[k] = DistBuf(list(rng.lognormal(3, 1, 200)))
        store.apply(b, now + sec)
        store.record_history(now + sec)
    end = now + 300
    steady = []
    for sec in range(30):
        b = Batch()
        for k in keys:
            b.dist[k] = DistBuf(list(rng.lognormal(3, 1, 200)))
        store.apply(b, end + sec)
        t0 = time.perf_counter()
        store.stats(end + sec)
        steady.append(time.perf_counter() - t0)
    print(
        f"stats(), 100 series, 5 full minutes    {statistics.median(steady) * 1e3:8.1f} ms median,"
        f" {max(steady) * 1e3:.1f} ms max"
    )

    c = SystemCollector()
    i = [0.0]

    def collect() -> None:
        i[0] += 1
        c.collect(i[0])

    print(f"SystemCollector.collect()              {timeit(collect, 200) * 1e3:8.2f} ms")
    r = SensorReader()
    print(
        f"SensorReader.read()                    {timeit(lambda: r.read(i[0]), 200) * 1e3:8.2f} ms"
    )


if __name__ == "__main__":
    main()
