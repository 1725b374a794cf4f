"""What the engine's steps cost on this machine: sketch updates, windows, machine readings.

python bench/engine.py

Two shapes of load for the windows, each over five full minutes: 1,000 quiet series (5
samples a second each, as per-endpoint or per-customer series are), built in a child process
so that the memory it takes is its own, then 100 busy ones (200 a second each) in this
process, for their memory, bucket arrays, window statistics and analysis.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from dataclasses import replace

import numpy as np
import psutil

from vtmon.analysis.analyzer import Analyzer
from vtmon.config import Config
from vtmon.engine.collector import SystemCollector
from vtmon.engine.sensors import SensorReader
from vtmon.engine.series import SeriesStore
from vtmon.ingest.frames import _hand_over
from vtmon.model import Batch, DistBuf, Kind, SeriesKey, Snapshot
from vtmon.sketch import Sketch


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
    print_quiet_series()

    cfg = Config()
    rss0 = psutil.Process().memory_info().rss
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
    grown = (psutil.Process().memory_info().rss - rss0) / 2**20
    print(
        f"100 busy series (200/s), 5 minutes     {grown:8.1f} MB process memory "
        f"(about {grown * 2**20 / (100 * 300):.0f} bytes a series-second)"
    )
    # Every distribution is a row of the engine's columns (vtmon/engine/columns.py).
    held, entries = store._dist.nbytes()
    print(
        f"columns, 100 series, 5 minutes         {held / 2**20:8.1f} MiB "
        f"({entries:,} second-and-bucket entries, windows, blocks and chart points)"
    )
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

    analysis(cfg, store, keys, rng, end + 30)
    binary_gauges(cfg, rng)

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


def series_load(n: int, rate: int, sigma: float) -> dict[str, float]:
    """``n`` series with ``rate`` samples a second each over five full minutes, built in a
    forked child so that its memory growth is this store's alone: the process memory it takes
    and the window statistics of each following second."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    child = ctx.Process(target=_load, args=(n, rate, sigma, q))
    child.start()
    result = q.get()
    child.join()
    return result


def _load(n: int, rate: int, sigma: float, q: mp.Queue) -> None:
    rng = np.random.default_rng(2)
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    store = SeriesStore(Config().target_ms)
    keys = [SeriesKey(f"q{i}.latency", (("component", f"c{i % 5}"),), Kind.DISTRIBUTION)
            for i in range(n)]  # fmt: skip
    pool = [rng.lognormal(3, sigma, rate).tolist() for _ in range(97)]
    now = 1_700_000_000.0
    steady = []
    for sec in range(330):
        b = Batch()
        for i, k in enumerate(keys):
            b.dist[k] = DistBuf(list(pool[(i + sec) % 97]))
        store.apply(b, now + sec)
        store.closed_seconds(int(now + sec))  # as the history writer takes them
        if sec >= 305:  # the windows full and their blocks cached
            t0 = time.perf_counter()
            store.stats(now + sec)
            steady.append(time.perf_counter() - t0)
        elif sec == 300:
            store.stats(now + sec)
    q.put(
        {
            "mb": (proc.memory_info().rss - rss0) / 2**20,
            "median_ms": statistics.median(steady) * 1e3,
            "worst_ms": max(steady) * 1e3,
        }
    )


def print_quiet_series(n: int = 1_000, rate: int = 5) -> None:
    """Many quiet series (per-endpoint or per-customer series are), built in a child."""
    r = series_load(n, rate, 0.5)
    per = r["mb"] * 2**20 / (n * 300)
    label = f"{n:,} quiet series ({rate}/s), 5 minutes"
    print(f"{label:39s}{r['mb']:8.1f} MB process memory (about {per:.0f} bytes a series-second)")
    label = f"stats(), {n:,} quiet series"
    print(f"{label:39s}{r['median_ms']:8.1f} ms median, {r['worst_ms']:.1f} ms max")


def binary_gauges(cfg: Config, rng: np.random.Generator, frames: int = 200) -> None:
    """Gauge values from binary frames (8,192 a frame, as vtmon.client sends them) from the
    frame reader's hand-over to the gauge's slot: a run of values set one after another."""
    store = SeriesStore(cfg.target_ms)
    key = SeriesKey("q.depth", (), Kind.GAUGE)
    arr = rng.uniform(0, 100, 8192)
    now = 1_700_000_000.0
    t0 = time.perf_counter()
    for i in range(frames):
        b = Batch()
        _hand_over({key: [arr]}, b)
        store.apply(b, now + i / frames)
    t = time.perf_counter() - t0
    print(f"gauge values from binary frames         {frames * arr.size / t / 1e6:8.1f} M values/s")


def analysis(cfg: Config, store: SeriesStore, keys: list[SeriesKey], rng, now: float) -> None:
    """The Analyzer on those 100 series: the per-batch hook and one full evaluation (every rule,
    regressions, forecasts, health) -- what the Monitor adds to a tick every 5 s."""
    an = Analyzer(cfg, now - 1800)
    b = Batch()
    for k in keys[:25]:  # 5,000 samples, the size of a busy read
        b.dist[k] = DistBuf(list(rng.lognormal(3, 1, 200)))
    t = timeit(lambda: an.observe_batch(b, now), 200)
    print(f"Analyzer.observe_batch, 5,000 samples  {t * 1e6:8.0f} us")
    c = SystemCollector()
    reading = c.collect(now)
    for sec in range(0, 1800, 5):  # half an hour of readings for cause ranking
        an.observe_resources(replace(reading, t=now - 1800 + sec))
    snap = Snapshot(
        t=now,
        host="bench",
        socket="",
        started=now - 1800,
        series=store.stats(now),
        errors=store.errors(now),
        resources=reading,
    )
    costs = []
    for i in range(60):
        an._next_eval = None  # force an evaluation each call
        t0 = time.perf_counter()
        an.evaluate(snap, now + 5 * i)
        costs.append(time.perf_counter() - t0)
    print(
        f"Analyzer.evaluate, 100 series          {statistics.median(costs) * 1e3:8.2f} ms median,"
        f" {max(costs) * 1e3:.2f} ms max"
    )


if __name__ == "__main__":
    main()
