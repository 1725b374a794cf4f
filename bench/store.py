"""What the history file costs: bytes on disk per series over the full default retention, and
the time a flush and a rollup take.

    python bench/store.py            # the full retention of every case (about four minutes)
    python bench/store.py --days 1   # one simulated day per case, for a quick look

Budget: the whole default retention of one series receiving samples every second is simulated
for real into a fresh SQLite file with an injected clock (flushes every 5 simulated seconds,
rollups and retention every minute, exactly as the writer thread runs them); the bytes are the
file after the last checkpoint minus an empty file. The file never shrinks (freed pages are
reused), so its final size is also its high-water mark.

Flush cost: a busy instance (100 latency series at 100 samples/s, 50 counters, 50 gauges and the
machine's readings every second) writes 5 s per flush into a file on this disk.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
from common import cpu_name

from vtmon.config import RetentionConfig
from vtmon.engine.clock import ManualClock
from vtmon.engine.series import SeriesStore
from vtmon.engine.sketch import Sketch
from vtmon.model import Batch, DistBuf, Kind, Resources, SeriesKey
from vtmon.store.db import HistoryStore

T0 = 1_700_000_000
POOL = 599  # distinct seconds of data, reused cyclically (prime: no alignment with rollups)
MB = 1_000_000


def machine() -> str:
    ram = psutil.virtual_memory().total / 2**30
    return (
        f"{cpu_name()}, {os.cpu_count()} cores, {ram:.0f} GiB, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def disk_of(path: Path) -> str:
    best = None
    for p in psutil.disk_partitions(all=True):
        if str(path).startswith(p.mountpoint) and (
            best is None or len(p.mountpoint) > len(best.mountpoint)
        ):
            best = p
    return f"{best.device} ({best.fstype})" if best else "?"


def latencies(rng: np.random.Generator, n: int) -> np.ndarray:
    """Request latencies in ms: lognormal around 20 ms with 1 % ten times slower."""
    v = rng.lognormal(np.log(20), 0.6, n)
    slow = rng.random(n) < 0.01
    v[slow] *= 10
    return v


def file_bytes(folder: Path, name: str) -> int:
    return sum(
        (folder / f).stat().st_size
        for f in (name, name + "-wal", name + "-shm")
        if (folder / f).exists()
    )


def settle(store: HistoryStore) -> None:
    """Close the store and fold the WAL into the file, as a clean stop does."""
    store.close()
    assert store.path is not None
    conn = sqlite3.connect(store.path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def empty_size(root: Path) -> int:
    d = root / "empty"
    store = HistoryStore.open(d, clock=ManualClock(T0))
    settle(store)
    return file_bytes(d, "vtmon.db")


def simulate(root: Path, folder: str, label: str, days: float | None, feed, layer: str) -> dict:
    """Run one series through ``days`` (default: its layer's retention) of simulated time."""
    retention = RetentionConfig()
    total_s = int((days * 86400) if days else retention.retention_s(layer))
    d = root / folder
    clock = ManualClock(T0)
    store = HistoryStore.open(d, retention, clock=clock)
    assert store.persistent, store.warning
    flush_every = int(retention.flush_interval_s)
    maint_every = int(retention.rollup_interval_s)
    t0 = time.perf_counter()
    for i in range(total_s):
        feed(store, T0 + i, i)
        clock.advance(1)
        if i % flush_every == flush_every - 1:
            store.flush()
        if i % maint_every == maint_every - 1:
            store.maintain()
    store.flush()
    store.maintain()
    wall = time.perf_counter() - t0
    conn = store._conn
    assert conn is not None
    tiers = conn.execute(
        "SELECT res, count(*), avg(coalesce(length(sketch), 0)) FROM points GROUP BY res "
        "ORDER BY res"
    ).fetchall()
    settle(store)
    return {
        "label": label,
        "days": total_s / 86400,
        "bytes": file_bytes(d, "vtmon.db"),
        "tiers": tiers,
        "wall": wall,
    }


def budget(root: Path, days: float | None, rates: list[int]) -> None:
    rng = np.random.default_rng(1)
    base = empty_size(root)
    cases = []
    for rate in rates:
        pool = [Sketch.of(latencies(rng, rate)) for _ in range(POOL)]
        key = SeriesKey("api.request_latency", (("component", "api"),), Kind.DISTRIBUTION)

        def feed(store, t, i, pool=pool, key=key):  # noqa: ANN001
            store.add_seconds([(key, Kind.DISTRIBUTION, t, pool[i % POOL])])

        cases.append((f"latency, {rate} samples/s", feed, "application", 5 * MB))

    gauge = SeriesKey("api.heap_mb", (("component", "api"),), Kind.GAUGE)
    heap = rng.normal(300, 20, POOL)

    def feed_gauge(store, t, i):  # noqa: ANN001
        v = float(heap[i % POOL])
        store.add_seconds([(gauge, Kind.GAUGE, t, (1, v, v, v, v))])

    cases.append(("application gauge, 1 update/s", feed_gauge, "application", 1 * MB))
    cpu = rng.uniform(0, 100, POOL)

    def feed_cpu(store, t, i):  # noqa: ANN001
        store.add_resources(Resources(t=t + 0.3, cpu_percent=float(cpu[i % POOL])))

    cases.append(("system gauge (CPU %), 1 reading/s", feed_cpu, "system", 1 * MB))

    print(f"empty file: {base:,} bytes (subtracted below)")
    print()
    print(f"{'series':36} {'days':>5} {'bytes on disk':>14} {'budget':>8}  rows per resolution")
    for n, (label, feed, layer, limit) in enumerate(cases):
        r = simulate(root, f"case{n}", label, days, feed, layer)
        net = r["bytes"] - base
        rows = ", ".join(
            f"{res}s: {n:,}" + (f" x {blob:.0f} B sketch" if blob else "")
            for res, n, blob in r["tiers"]
        )
        ok = "ok" if net <= limit or days else "OVER"
        print(
            f"{label:36} {r['days']:5.1f} {net / MB:11.2f} MB {limit / MB:5.0f} MB {ok}  {rows}"
            f"   ({r['wall']:.0f} s to simulate)"
        )


def flush_cost(root: Path) -> None:
    rng = np.random.default_rng(2)
    lat = [
        SeriesKey(f"c{i % 10}.latency_{i}", (("component", f"c{i % 10}"),), Kind.DISTRIBUTION)
        for i in range(100)
    ]
    counters = [SeriesKey(f"c{i % 10}.requests_{i}", (), Kind.COUNTER) for i in range(50)]
    gauges = [SeriesKey(f"c{i % 10}.heap_{i}", (), Kind.GAUGE) for i in range(50)]
    pool = [Sketch.of(latencies(rng, 100)) for _ in range(97)]
    clock = ManualClock(T0)
    d = root / "flush"
    store = HistoryStore.open(d, clock=clock)
    flushes, maints = [], []
    reading = Resources(cpu_percent=10.0, mem_percent=50.0, disk_read_rate=1e5, net_rx_rate=1e4)
    for sec in range(15 * 60):  # fifteen minutes
        t = T0 + sec
        items = [(k, Kind.DISTRIBUTION, t, pool[(sec + j) % 97]) for j, k in enumerate(lat)]
        items += [(k, Kind.COUNTER, t, 3.0) for k in counters]
        items += [(k, Kind.GAUGE, t, (1, 5.0, 5.0, 5.0, 5.0)) for k in gauges]
        store.add_seconds(items)
        store.add_resources(replace(reading, t=t + 0.2))
        clock.advance(1)
        if sec % 5 == 4:
            t0 = time.perf_counter()
            store.flush()
            flushes.append(time.perf_counter() - t0)
        if sec % 60 == 59:
            t0 = time.perf_counter()
            store.maintain()
            maints.append(time.perf_counter() - t0)
    store.close()
    q = statistics.quantiles(flushes, n=20)
    print(
        f"flush of 5 s (1,000 rows: 100 latency, 50 counter, 50 gauge series + machine): "
        f"{statistics.median(flushes) * 1e3:.1f} ms median, {q[-1] * 1e3:.1f} ms p95, "
        f"{max(flushes) * 1e3:.1f} ms max"
    )
    steady = maints[7:]  # once the 10 s rollups run (after the late-sample lag)
    print(
        f"rollups + retention every minute, same series: "
        f"{statistics.median(steady) * 1e3:.1f} ms median, {max(steady) * 1e3:.1f} ms max"
    )

    # what the Monitor's thread pays per tick: the closed seconds of 1,000 series, handed over
    series = SeriesStore(lambda c: 100.0)
    keys = [
        SeriesKey(f"c{i % 10}.latency_{i}", (("component", f"c{i % 10}"),), Kind.DISTRIBUTION)
        for i in range(1000)
    ]
    tick = HistoryStore.open(root / "tick", clock=ManualClock(T0))
    costs = []
    for sec in range(60):
        b = Batch(dist={k: DistBuf(list(rng.lognormal(3, 1, 20))) for k in keys})
        series.apply(b, T0 + sec + 0.5)
        series.stats(T0 + sec + 0.5)  # the Snapshot bucketizes the second's values anyway
        t0 = time.perf_counter()
        tick.add_seconds(series.closed_seconds(T0 + sec))
        costs.append(time.perf_counter() - t0)
        tick.flush()  # the writer thread's part, not timed here
    tick.close()
    print(
        f"on the Monitor's thread per tick, 1,000 busy series: "
        f"{statistics.median(costs[1:]) * 1e3:.2f} ms median, {max(costs[1:]) * 1e3:.2f} ms max"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, help="simulate this many days instead of retention")
    ap.add_argument(
        "--rates",
        default="10,100,1000,10000",
        help="latency samples per second to try (comma list)",
    )
    args = ap.parse_args()
    here = Path(__file__).resolve().parent
    root = Path(tempfile.mkdtemp(prefix="vtmon-bench-store-", dir=here))
    try:
        print(f"machine: {machine()}")
        print(f"disk: {disk_of(root)}, {time.strftime('%Y-%m-%d')}")
        print()
        budget(root, args.days, [int(r) for r in args.rates.split(",")])
        print()
        flush_cost(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
