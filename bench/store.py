"""What the history file costs: bytes on disk per series over the full default retention, the
time a flush and a rollup take, the writer's idle work with a 1 GB file, and trimming that file
to a size bound.

    python bench/store.py                   # everything (about twelve minutes)
    python bench/store.py --days 1          # one simulated day per retention case
    python bench/store.py --parts idle,trim --idle-mb 300   # a smaller big file

Budget: the whole default retention of one series receiving samples every second is simulated
for real into a fresh SQLite file with an injected clock (flushes every 5 simulated seconds,
rollups and retention every minute, exactly as the writer thread runs them); the bytes are the
file after the last checkpoint minus an empty file. Below its size bound the file never
shrinks (freed pages are reused), so its final size is also its high-water mark.

Flush cost: a busy instance (100 latency series at 100 samples/s, 50 counters, 50 gauges and the
machine's readings every second) writes 5 s per flush into a file on this disk.

Idle cost with a big file: a file of about ``--idle-mb`` MB (default 1,000) is built the way a
high-cardinality run writes one (2,000 latency series every second, 5 s per transaction, with
their 10 s, 1 min and 10 min rollups; the rows are inserted directly, with real sketch blobs,
so that building it takes a minute rather than an hour). Then the store runs idle on it as the
writer thread does: the machine's readings every second, a flush every 5 s, rollups and
retention every minute, on an injected clock, and the CPU seconds of that work are summed over
``--idle-min`` minutes (default 10), against the same on a fresh file. Twice: while the busy
hour's 1 s points age out (retention deleting them: work in proportion to what was written,
not to the file), and two hours later, when nothing is left to do but the idle work itself.

Trim: copies of the big file, opened with ``max_size_mb`` = ``--trim-mb`` (default 500), are
trimmed by one ``maintain``: how long in all, and the longest the writer held the file in one
step; once as a file made now (incremental vacuum) and once as one made before the size bound
(without it), which one VACUUM rewrites. docs/performance.md has the figures.
"""

from __future__ import annotations

import argparse
import math
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
from common import cpu_name, result

from vtmon.clock import ManualClock
from vtmon.config import RetentionConfig
from vtmon.engine.series import SeriesStore
from vtmon.model import Batch, DistBuf, Kind, Resources, SeriesKey
from vtmon.sketch import Sketch
from vtmon.store.history import HistoryStore
from vtmon.store.rollup import Row, merge

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


BUSY_SERIES = 2000


def build_big(folder: Path, mb: float, clock: ManualClock) -> tuple[int, int]:
    """A history file of about ``mb`` MB as a busy run leaves it (see the module docstring),
    its data from the clock's time on; the clock ends at the last second written. Returns the
    first and last second of data."""
    rng = np.random.default_rng(5)
    seconds = [Row.of_sketch(Sketch.of(latencies(rng, 100))) for _ in range(61)]
    pools = {1: seconds}
    for res in (10, 60, 600):
        pools[res] = [merge([seconds[(i + j) % 61] for j in range(res)]) for i in range(7)]
    cols = {r: [(p.n, p.sum, p.min, p.max, p.blob()) for p in pool] for r, pool in pools.items()}
    store = HistoryStore.open(folder, clock=clock)
    conn = store._conn
    assert conn is not None
    first = int(clock.time())
    conn.execute("BEGIN")
    sids = [
        conn.execute(
            "INSERT INTO series (layer, kind, name, tags, component, first_t, last_t) "
            "VALUES ('application', 'distribution', ?, ?, ?, ?, ?)",
            (f"c{i % 20}.latency_{i}", f'[["component","c{i % 20}"]]', f"c{i % 20}", first, first),
        ).lastrowid
        for i in range(BUSY_SERIES)
    ]
    conn.execute("COMMIT")
    path = folder / "vtmon.db"
    t = first
    while True:  # 5 s a transaction, as flushes write them, with the rollups when they fall due
        rows = [
            (sid, 1, sec, *cols[1][(sec + j) % 61][:4], None, cols[1][(sec + j) % 61][4])
            for sec in range(t, t + 5)
            for j, sid in enumerate(sids)
        ]
        for res in (10, 60, 600):
            if (t + 5) % res == 0:
                c = cols[res]
                rows += [
                    (sid, res, t + 5 - res, *c[(t + j) % 7][:4], None, c[(t + j) % 7][4])
                    for j, sid in enumerate(sids)
                ]
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO points (series_id, res, t, n, total, lo, hi, last, sketch) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("UPDATE series SET last_t = ?", (t + 4,))
        conn.execute("COMMIT")
        t += 5
        if (t - first) % 300 == 0 and file_bytes(folder, path.name) >= mb * MB:
            break
    for res in (10, 60, 600):
        conn.execute(
            "UPDATE tiers SET rolled_upto = ? WHERE layer = 'application' AND res = ?",
            (t - t % res, res),
        )
    clock.advance(t - clock.time())
    settle(store)
    return first, t - 1


def idle_minutes(store: HistoryStore, clock: ManualClock, minutes: int) -> float:
    """CPU seconds of ``minutes`` of the writer's idle work: a machine reading every second,
    a flush every 5 s, rollups and retention every minute."""
    cpu = 0.0
    for _ in range(minutes):
        t0 = time.process_time()
        for sec in range(60):
            store.add_resources(
                Resources(t=clock.time(), cpu_percent=5.0, mem_percent=40.0, net_rx_rate=1e3)
            )
            clock.advance(1)
            if sec % 5 == 4:
                store.flush()
        store.maintain()
        cpu += time.process_time() - t0
    return cpu


def idle_cost(root: Path, big: Path, first: int, last: int, minutes: int) -> None:
    clock = ManualClock(last + 1)
    size = file_bytes(big, "vtmon.db")
    print(f"idle work over {minutes} min, with the big file and with a fresh one:")
    # A bound far above the file: trimming (what the default bound may do on a small disk)
    # is measured apart, below; here only the idle routine is.
    unbounded = RetentionConfig(max_size_mb=1e9)
    fresh = HistoryStore.open(root / "fresh", unbounded, clock=clock)
    store = HistoryStore.open(big, unbounded, clock=clock)
    figures = []
    # while the busy hour's 1 s points age out, then when only idle work is left
    for label, at in (("1 s points ageing out", first + 3660), ("two hours on", last + 7200)):
        clock.advance(at - clock.time())
        c0 = time.process_time()
        store.maintain()  # the catch-up a writer does as it starts, not counted
        fresh.maintain()
        catch_up = time.process_time() - c0
        fresh_cpu = idle_minutes(fresh, clock, minutes)
        clock.advance(-minutes * 60)  # the same minutes for both files
        big_cpu = idle_minutes(store, clock, minutes)
        ratio = big_cpu / fresh_cpu if fresh_cpu else math.inf
        print(
            f"  {label}: {big_cpu * 1e3 / minutes:.1f} ms CPU a minute with the big file, "
            f"{fresh_cpu * 1e3 / minutes:.1f} ms with a fresh one ({ratio:.2f}x); "
            f"catching up first: {catch_up:.1f} s"
        )
        figures.append((label, big_cpu / minutes, fresh_cpu / minutes, ratio))
    store.close()
    fresh.close()
    label, big_m, fresh_m, ratio = figures[-1]
    result(
        f"history idle work, {size / MB:,.0f} MB file vs fresh (CPU a minute)",
        "within 10 %",
        f"{big_m * 1e3:.1f} ms ({ratio:.2f}x)",
        f"{fresh_m * 1e3:.1f} ms",
        ok=ratio <= 1.1,
    )


def trim_cost(folder: Path, last: int, bound_mb: float, made_before: bool) -> None:
    """The big file trimmed to ``bound_mb`` by one ``maintain``, as the writer does when the
    file passes its bound; ``made_before``: a file without incremental vacuum (as vtmon made
    them before the bound), which one VACUUM rewrites."""
    if made_before:
        conn = sqlite3.connect(folder / "vtmon.db")
        conn.execute("PRAGMA auto_vacuum = NONE")
        conn.execute("VACUUM")
        conn.close()
    clock = ManualClock(last + 60)
    store = HistoryStore.open(folder, RetentionConfig(max_size_mb=bound_mb), clock=clock)
    c0 = time.process_time()
    store.maintain()
    cpu = time.process_time() - c0
    s = store.last_trim
    assert s is not None, "the file was not above the bound"
    store.close()
    kind = "a file made before the bound (one VACUUM)" if made_before else "a file made now"
    print(
        f"trimmed {kind} from {s.before / MB:,.0f} to {s.after / MB:,.0f} MB in {s.seconds:.1f} s "
        f"({cpu:.1f} s CPU): {s.steps} delete steps, the longest {s.longest_step_s:.2f} s; "
        f"{s.vacuum_steps} vacuum steps, the longest {s.longest_vacuum_s:.2f} s"
    )
    what = "VACUUM of the older file" if made_before else "longest lock held while trimming"
    longest = s.longest_vacuum_s if made_before else max(s.longest_step_s, s.longest_vacuum_s)
    result(
        f"history trim {s.before / MB:,.0f} -> {bound_mb:,.0f} MB: {what}",
        "",
        f"{longest:.2f} s",
        f"{s.seconds:.1f} s in all",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, help="simulate this many days instead of retention")
    ap.add_argument(
        "--rates",
        default="10,100,1000,10000",
        help="latency samples per second to try (comma list)",
    )
    ap.add_argument("--idle-mb", type=float, default=1000, help="size of the big file (MB)")
    ap.add_argument("--idle-min", type=int, default=10, help="idle minutes measured per case")
    ap.add_argument("--trim-mb", type=float, default=500, help="the bound to trim the big file to")
    ap.add_argument(
        "--parts",
        default="budget,flush,idle,trim",
        help="which measurements to run (comma list of budget, flush, idle, trim)",
    )
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    here = Path(__file__).resolve().parent
    root = Path(tempfile.mkdtemp(prefix="vtmon-bench-store-", dir=here))
    try:
        print(f"machine: {machine()}")
        print(f"disk: {disk_of(root)}, {time.strftime('%Y-%m-%d')}")
        if "budget" in parts:
            print()
            budget(root, args.days, [int(r) for r in args.rates.split(",")])
        if "flush" in parts:
            print()
            flush_cost(root)
        if parts & {"idle", "trim"}:
            print()
            big = root / "big"
            t0 = time.perf_counter()
            first, last = build_big(big, args.idle_mb, ManualClock(T0))
            print(
                f"big file: {file_bytes(big, 'vtmon.db') / MB:,.0f} MB, {BUSY_SERIES:,} latency "
                f"series for {(last - first + 1) / 60:.0f} min (built in "
                f"{time.perf_counter() - t0:.0f} s)"
            )
            copies = []
            if "trim" in parts:
                for made_before in (False, True):
                    copy = root / f"trim-{made_before}"
                    shutil.copytree(big, copy)
                    copies.append((copy, made_before))
            if "idle" in parts:
                idle_cost(root, big, first, last, args.idle_min)
            shutil.rmtree(big)
            for copy, made_before in copies:
                trim_cost(copy, last, args.trim_mb, made_before)
                shutil.rmtree(copy)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
