"""What the Prometheus exporter costs: on the engine thread per batch, and per scrape.

    python bench/prometheus.py [--repeat N] [--json]

* ``observe``: the exporter's ``on_batch`` listener for a batch of 10,000 latency values over
  10 series (the shape the socket reader hands over under a flood), over 1,000 series with 10
  values each (many series, few values), and with sample rates (weights).
* ``scrape``: building ``/metrics`` (``generate_latest``) for 100 and 1,000 busy latency series,
  with the snapshot-derived metrics, and its size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np

from vtmon.clock import ManualClock
from vtmon.config import Config
from vtmon.engine.monitor import Monitor
from vtmon.export.prometheus import PrometheusExporter
from vtmon.model import Batch, DistBuf, SeriesKey


def make_batch(series: int, per_series: int, rate: float | None, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    b = Batch(accepted=series * per_series)
    for i in range(series):
        key = SeriesKey(f"bench.s{i}.request_latency", (("component", f"bench{i % 10}"),))
        values = rng.lognormal(np.log(20), 0.8, per_series).tolist()
        weights = None if rate is None else [1 / rate] * per_series
        b.dist[key] = DistBuf(values, weights)
    return b


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_observe(series: int, per_series: int, rate: float | None, repeat: int) -> dict:
    clock = ManualClock()
    monitor = Monitor(Config(), clock=clock)
    ex = PrometheusExporter(monitor, process_metrics=False)
    batch = make_batch(series, per_series, rate)
    now = clock.time()
    ex.observe(batch, now)  # create the rows
    exp = timed(lambda: ex.observe(batch, now), repeat)
    n = series * per_series
    return {
        "series": series,
        "values": n,
        "weighted": rate is not None,
        "exporter_us": statistics.median(exp) * 1e6,
        "exporter_ns_per_value": statistics.median(exp) * 1e9 / n,
    }


def bench_scrape(series: int, repeat: int) -> dict:
    clock = ManualClock()
    monitor = Monitor(Config(), clock=clock)
    ex = PrometheusExporter(monitor, process_metrics=False)
    monitor.submit(make_batch(series, 2_000, None))
    monitor.tick()
    text = ex.exposition()
    t = timed(ex.exposition, repeat)
    return {
        "series": series,
        "median_ms": statistics.median(t) * 1e3,
        "worst_ms": max(t) * 1e3,
        "bytes": len(text),
        "lines": text.count(b"\n"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    res = {
        "observe": [
            bench_observe(10, 1_000, None, args.repeat),
            bench_observe(10, 1_000, 0.5, args.repeat),
            bench_observe(1_000, 10, None, max(20, args.repeat // 5)),
        ],
        "scrape": [bench_scrape(100, 50), bench_scrape(1_000, 10)],
    }
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print("exporter on the engine thread, per batch (median)")
    for r in res["observe"]:
        what = f"{r['values']:,} values over {r['series']:,} series" + (
            ", with sample rates" if r["weighted"] else ""
        )
        print(
            f"  {what:<48} {r['exporter_us']:6.0f} µs ({r['exporter_ns_per_value']:.0f} ns/value)"
        )
    print("scrape: /metrics built by prometheus-client")
    for r in res["scrape"]:
        print(
            f"  {r['series']:>5,} latency series: {r['median_ms']:7.1f} ms median, "
            f"{r['worst_ms']:.1f} ms worst, {r['lines']:,} lines, {r['bytes'] / 1e6:.2f} MB"
        )


if __name__ == "__main__":
    main()
