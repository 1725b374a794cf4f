"""The history writer with many series: what a flush and the rollups cost when thousands of
latency series close a second each second, old code against new in the same run.

python bench/history.py [--series 1000,10000] [--seconds 600] [--repeat 1]
                        [--baseline REV | --baseline none]

For each N in ``--series``: a real ``HistoryStore`` (a fresh SQLite file in a temporary
folder, default retention) on an injected clock is handed, every simulated second, the
closed seconds of N distribution series with one sample each (payloads made with
``Sketch.of``, drawn from a pool of log-normal latencies) and one machine reading (the
resource gauges a `vtmon serve` writes). As the writer thread does, it flushes every
``flush_interval_s`` (5 s: one transaction of what piled up) and runs ``maintain`` (rollups
into the coarser tiers, retention, the size bound) every ``rollup_interval_s`` (60 s), the
first rollups once a second is older than the rollup lag (about 5 min). Measured:

- flush: wall seconds per flush, over the seconds of data it wrote (the median and the
  largest flush); rows written per wall second of flushing;
- rollups: CPU seconds of ``maintain`` per second of data, over the minutes once rollups run
  (a fraction of one core);
- rows dropped (must stay 0) and the file's size after ``--seconds`` (closed, WAL folded in).

Old against new: ``--baseline`` (default: the commit before the writer encoded rows in bulk)
is taken out of git into a temporary folder and the same runs are made with it on
PYTHONPATH, each N old then new, ``--repeat`` times; the bench itself stays this file. Goals
(rows of `make bench`'s closing table): at 10,000 series a flush of 5 s takes at most 5 s,
rollups at most 10 % of a core, no row dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import machine, result

T0 = 1_700_000_000
POOL = 997  # distinct one-sample sketches, reused cyclically
# The writer before it encoded rows in bulk.
BASELINE = "3dd9ce6d1f362fbaedd565d0d837dde7115bcd87"
HERE = Path(__file__).resolve().parent


def file_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("vtmon.db*") if p.is_file())


def run(n: int, seconds: int, folder: Path) -> dict[str, Any]:
    """One run on the vtmon found on sys.path (see the module docstring)."""
    import numpy as np

    import vtmon
    from vtmon.clock import ManualClock
    from vtmon.config import RetentionConfig
    from vtmon.model import Kind, Resources, SeriesKey
    from vtmon.sketch import Sketch
    from vtmon.store.history import HistoryStore

    rng = np.random.default_rng(7)
    values = rng.lognormal(np.log(20), 0.6, POOL)
    pool = [Sketch.of([v]) for v in values]
    keys = [
        SeriesKey(
            f"svc.endpoint_{i:05d}.latency",
            (("component", f"comp{i % 20:02d}"),),
            Kind.DISTRIBUTION,
        )
        for i in range(n)
    ]
    dist = Kind.DISTRIBUTION
    retention = RetentionConfig()
    flush_every = int(retention.flush_interval_s)
    maint_every = int(retention.rollup_interval_s)
    clock = ManualClock(T0)
    store = HistoryStore.open(folder, retention, clock=clock)
    assert store.persistent, store.warning
    flushes: list[float] = []  # wall seconds
    flush_cpu = 0.0
    maint: list[tuple[float, int]] = []  # (CPU seconds, rows in the coarser tiers after it)
    conn = store._conn
    assert conn is not None
    for sec in range(seconds):
        t = T0 + sec
        store.add_seconds([(k, dist, t, pool[(i + sec) % POOL]) for i, k in enumerate(keys)])
        store.add_resources(
            Resources(
                t=t + 0.2,
                cpu_percent=float(values[sec % POOL]),
                mem_percent=40.0,
                disk_read_rate=1e5,
                net_rx_rate=1e4,
                net_tx_rate=1e4,
            )
        )
        clock.advance(1)
        if sec % flush_every == flush_every - 1:
            c0, w0 = time.process_time(), time.perf_counter()
            store.flush()
            flushes.append(time.perf_counter() - w0)
            flush_cpu += time.process_time() - c0
        if sec % maint_every == maint_every - 1:
            c0 = time.process_time()
            store.maintain()
            cpu = time.process_time() - c0
            (rolled,) = conn.execute(
                "SELECT count(*) FROM points JOIN series ON series.id = series_id "
                "WHERE layer = 'application' AND res > 1"
            ).fetchone()
            maint.append((cpu, rolled))
    store.flush()
    written, dropped = store.rows_written, store.rows_dropped
    store.close()
    rolling = [cpu for cpu, rolled in maint if rolled]  # once the series' rollups run
    return {
        "code": os.path.dirname(os.path.dirname(vtmon.__file__)),
        "series": n,
        "seconds": seconds,
        "flush_median_s": statistics.median(flushes),
        "flush_max_s": max(flushes),
        "flush_per_s": statistics.median(flushes) / flush_every,
        "flush_cpu_s": flush_cpu,
        "rows_per_s": written / sum(flushes),
        "rollup_core": sum(rolling) / (maint_every * len(rolling)) if rolling else None,
        "rollup_minutes": len(rolling),
        "rows_written": written,
        "rows_dropped": dropped,
        "file_mb": file_bytes(folder) / 1e6,
    }


def worker(code: Path, n: int, seconds: int) -> dict[str, Any]:
    """``run`` in a fresh interpreter with ``code`` first on its path."""
    env = dict(os.environ, PYTHONPATH=str(code))
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(n), "--seconds", str(seconds)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def old_code(rev: str, into: Path) -> Path | None:
    """The vtmon package of ``rev`` taken out of git into ``into`` (None: git cannot)."""
    repo = HERE.parent
    try:
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", rev, "vtmon"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"no baseline: cannot take {rev} out of git ({e})")
        return None
    return into


def line(label: str, r: dict[str, Any]) -> str:
    core = "-" if r["rollup_core"] is None else f"{r['rollup_core'] * 100:5.1f} %"
    return (
        f"  {label:4} flush {r['flush_per_s']:6.3f} s per s of data "
        f"(median {r['flush_median_s']:5.2f} s, largest {r['flush_max_s']:5.2f} s), "
        f"{r['rows_per_s']:9,.0f} rows/s; rollups {core} of a core "
        f"({r['rollup_minutes']} min); dropped {r['rows_dropped']}; file {r['file_mb']:6.1f} MB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", default="1000,10000", help="numbers of series (comma list)")
    ap.add_argument("--seconds", type=int, default=600, help="simulated seconds per run")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each code per N")
    ap.add_argument(
        "--baseline", default=BASELINE, help="git revision to compare with ('none': no baseline)"
    )
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        folder = Path(tempfile.mkdtemp(prefix="vtmon-bench-history-"))
        try:
            print(json.dumps(run(args.worker, args.seconds, folder)))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    tmp = Path(tempfile.mkdtemp(prefix="vtmon-bench-old-"))
    try:
        old = None if args.baseline == "none" else old_code(args.baseline, tmp)
        codes = ([("old", old)] if old else []) + [("new", HERE.parent)]
        print(f"machine: {machine()}, {time.strftime('%Y-%m-%d')}")
        print(f"{args.seconds} simulated seconds per run; old: {args.baseline[:10]}")
        for n in (int(s) for s in args.series.split(",")):
            print(f"{n:,} latency series, 1 sample/s each:")
            runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in codes}
            for _ in range(args.repeat):
                for label, code in codes:
                    r = worker(code, n, args.seconds)
                    runs[label].append(r)
                    print(line(label, r), flush=True)
            new = runs["new"]
            worst = max(new, key=lambda r: r["flush_max_s"])
            base = runs.get("old")
            ref = f"{statistics.median(r['flush_per_s'] for r in base):.3f} s (old)" if base else ""
            result(
                f"history flush, {n:,} series (s per s of data)",
                "flush of 5 s <= 5 s",
                f"{statistics.median(r['flush_per_s'] for r in new):.3f} s "
                f"(largest flush {worst['flush_max_s']:.2f} s)",
                ref,
                ok=worst["flush_max_s"] <= 5.0 and all(r["rows_dropped"] == 0 for r in new),
            )
            cores = [r["rollup_core"] for r in new if r["rollup_core"] is not None]
            old_cores = [r["rollup_core"] for r in base or [] if r["rollup_core"] is not None]
            result(
                f"history rollups, {n:,} series (share of a core)",
                "<= 10 %",
                f"{max(cores) * 100:.1f} %" if cores else "not reached",
                f"{statistics.median(old_cores) * 100:.1f} % (old)" if old_cores else "",
                ok=bool(cores) and max(cores) <= 0.10,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
