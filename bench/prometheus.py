"""What the Prometheus exporter costs: on the engine thread per batch, and per scrape.

    python bench/prometheus.py [--repeat N] [--slow] [--concurrent-series N] [--json]

* ``observe``: the exporter's ``on_batch`` listener for a batch of 10,000 latency values over
  10 series (the shape the socket reader hands over under a flood), over 1,000 series with 10
  values each (many series, few values), and with sample rates (weights).
* ``scrape``: building ``/metrics`` for 100, 1,000 and 10,000 busy latency series, with the
  coarse boundaries (the default, 10 a decade) and the fine ones (30 a decade): as ``/metrics``
  builds it (``exposition()``), and through prometheus-client's ``generate_latest``, sample by
  sample, as it was built before (at 10,000 series only with ``--slow``: a minute or more per
  scrape). Also 10,000 series whose counts are in the millions, each one different (a busy
  service after days): every number is then formatted, none shared. Seconds, MB, lines.
* ``http``: one scrape of 10,000 series over HTTP, gzip as Prometheus asks for it.
* ``concurrent``: the engine on its own thread, every series receiving one sample a second;
  four scrapers at once over HTTP, a few rounds each: how long each scrape takes, and the
  largest gap between two Snapshots, beside the same while nobody scrapes.

The same file runs against an older vtmon (``PYTHONPATH=old-tree``): it uses only what the
exporter has always had.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable

import numpy as np
from common import machine, result
from prometheus_client import generate_latest

from vtmon.clock import ManualClock
from vtmon.config import Config
from vtmon.engine.monitor import Monitor
from vtmon.export.prometheus import PrometheusExporter, latency_buckets
from vtmon.model import Batch, DistBuf, SeriesKey

GRIDS = {"coarse": 10, "fine": 30}  # boundaries per decade
SCRAPERS = 4


def keys(series: int) -> list[SeriesKey]:
    return [
        SeriesKey(f"bench.s{i}.request_latency", (("component", f"bench{i % 10}"),))
        for i in range(series)
    ]


def make_batch(
    series: int,
    per_series: int,
    rate: float | None,
    seed: int = 0,
    heavy: bool = False,
    names: list[SeriesKey] | None = None,
) -> Batch:
    """Lognormal latencies (median 20 ms); ``heavy``: each value weighs 5,000 to 50,000
    (sample rates), so that counts run into the millions and differ from series to series."""
    rng = np.random.default_rng(seed)
    b = Batch(accepted=series * per_series)
    for key in names or keys(series):
        values = rng.lognormal(np.log(20), 0.8, per_series).tolist()
        weights = None if rate is None else [1 / rate] * per_series
        if heavy:
            weights = rng.integers(5_000, 50_000, per_series).astype(float).tolist()
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


def loaded(series: int, grid: str, heavy: bool = False) -> PrometheusExporter:
    clock = ManualClock()
    monitor = Monitor(Config(), clock=clock)
    ex = PrometheusExporter(monitor, buckets=latency_buckets(GRIDS[grid]), process_metrics=False)
    per_series = 2_000 if series <= 1_000 else 200
    monitor.submit(make_batch(series, per_series, None, heavy=heavy))
    monitor.tick()
    return ex


def bench_scrape(series: int, grid: str, how: str, repeat: int, heavy: bool = False) -> dict:
    ex = loaded(series, grid, heavy)
    build = ex.exposition if how == "bulk" else lambda: generate_latest(ex.registry)
    first = time.perf_counter()
    text = build()  # the first also renders each series' labels (kept while it lives)
    first = time.perf_counter() - first
    t = timed(build, repeat)
    return {
        "series": series,
        "grid": grid,
        "how": how,
        "heavy": heavy,
        "first_s": first,
        "median_s": statistics.median(t),
        "worst_s": max(t),
        "mb": len(text) / 1e6,
        "lines": text.count(b"\n"),
    }


def fetch(url: str) -> tuple[float, int]:
    """One scrape as Prometheus asks for it (gzip); seconds and bytes on the wire."""
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as resp:
        body = resp.read()
    return time.perf_counter() - t0, len(body)


def bench_http(series: int, repeat: int) -> dict:
    ex = loaded(series, "coarse")
    ex.serve("127.0.0.1", 0)
    try:
        url = ex.url or ""
        fetch(url)
        runs = [fetch(url) for _ in range(repeat)]
    finally:
        ex.stop()
    return {
        "series": series,
        "median_s": statistics.median(r[0] for r in runs),
        "worst_s": max(r[0] for r in runs),
        "gzip_mb": runs[0][1] / 1e6,
    }


def bench_concurrent(series: int, rounds: int, quiet_s: float = 5.0) -> dict:
    """The real engine thread and clock; a feeder sends one sample per series a second."""
    monitor = Monitor(Config())
    ex = PrometheusExporter(monitor, process_metrics=False)
    names = keys(series)
    published: list[float] = []
    monitor.subscribe(lambda snap: published.append(time.monotonic()))
    stop = threading.Event()

    def feed() -> None:
        seed = 0
        while not stop.is_set():
            seed += 1
            monitor.submit(make_batch(series, 1, None, seed=seed, names=names))
            stop.wait(1.0)

    feeder = threading.Thread(target=feed, daemon=True)
    monitor.start()
    feeder.start()
    ex.serve("127.0.0.1", 0)
    url = ex.url or ""
    try:
        while len(ex._rows) < series:  # every series has arrived
            time.sleep(0.1)
        fetch(url)  # the first scrape renders each series' labels
        t0 = time.monotonic()
        time.sleep(quiet_s)
        quiet = (t0, time.monotonic())
        scrapes: list[float] = []

        def scraper() -> None:
            for _ in range(rounds):
                scrapes.append(fetch(url)[0])

        threads = [threading.Thread(target=scraper) for _ in range(SCRAPERS)]
        t1 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        busy = (t1, time.monotonic())
    finally:
        stop.set()
        ex.stop()
        monitor.stop()
    return {
        "series": series,
        "scrapers": SCRAPERS,
        "rounds": rounds,
        "quiet_gap_s": largest_gap(published, *quiet),
        "busy_gap_s": largest_gap(published, *busy),
        "busy_s": busy[1] - busy[0],
        "scrape_median_s": statistics.median(scrapes),
        "scrape_worst_s": max(scrapes),
        "builds": getattr(getattr(ex, "builds", None), "builds", None),
    }


def largest_gap(times: list[float], start: float, end: float) -> float:
    """The longest time without a Snapshot between ``start`` and ``end``."""
    inside = [start] + [t for t in times if start < t < end] + [end]
    return max(b - a for a, b in zip(inside, inside[1:], strict=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument(
        "--slow",
        action="store_true",
        help="also time prometheus-client's own formatting at 10,000 series (minutes)",
    )
    ap.add_argument("--concurrent-series", type=int, default=10_000)
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    scrape = []
    for series, repeat in ((100, 20), (1_000, 5), (10_000, 3)):
        for grid in GRIDS:
            scrape.append(bench_scrape(series, grid, "bulk", repeat))
            if series < 10_000 or args.slow:
                scrape.append(bench_scrape(series, grid, "prometheus-client", 1))
    scrape.append(bench_scrape(10_000, "coarse", "bulk", 3, heavy=True))
    res = {
        "machine": machine(),
        "observe": [
            bench_observe(10, 1_000, None, args.repeat),
            bench_observe(10, 1_000, 0.5, args.repeat),
            bench_observe(1_000, 10, None, max(20, args.repeat // 5)),
        ],
        "scrape": scrape,
        "http": bench_http(10_000, 3),
        "concurrent": bench_concurrent(args.concurrent_series, 3),
    }
    report(res)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(res["machine"])
    print("exporter on the engine thread, per batch (median)")
    for r in res["observe"]:
        what = f"{r['values']:,} values over {r['series']:,} series" + (
            ", with sample rates" if r["weighted"] else ""
        )
        print(
            f"  {what:<48} {r['exporter_us']:6.0f} µs ({r['exporter_ns_per_value']:.0f} ns/value)"
        )
    print("scrape: /metrics built (first scrape / median / worst of the next)")
    for r in res["scrape"]:
        what = f"{r['series']:>6,} series, {r['grid']:<6} {r['how']:<17}"
        if r["heavy"]:
            what += " counts in millions"
        print(
            f"  {what:<60} {r['first_s']:7.3f} / {r['median_s']:7.3f} / {r['worst_s']:7.3f} s, "
            f"{r['lines']:>9,} lines, {r['mb']:6.1f} MB"
        )
    h = res["http"]
    print(
        f"http: {h['series']:,} series, one scrape with gzip: {h['median_s']:.2f} s median, "
        f"{h['worst_s']:.2f} s worst, {h['gzip_mb']:.1f} MB on the wire"
    )
    c = res["concurrent"]
    print(
        f"concurrent: {c['scrapers']} scrapers x {c['rounds']} of {c['series']:,} series while "
        f"the engine ticks: scrapes {c['scrape_median_s']:.2f} s median, "
        f"{c['scrape_worst_s']:.2f} s worst ({c['builds']} builds in all); largest gap "
        f"between Snapshots {c['busy_gap_s']:.2f} s (nobody scraping: {c['quiet_gap_s']:.2f} s)"
    )


def report(res: dict) -> None:
    """The closing table's rows: one scrape of 10,000 series, and Snapshots while four scrape."""
    (big,) = [
        r
        for r in res["scrape"]
        if (r["series"], r["grid"], r["how"], r["heavy"]) == (10_000, "coarse", "bulk", False)
    ]
    old = [
        r
        for r in res["scrape"]
        if (r["series"], r["grid"], r["how"]) == (10_000, "fine", "prometheus-client")
    ]
    result(
        "prometheus: one scrape of 10,000 latency series",
        "<= 2 s, <= 30 MB",
        f"{big['median_s']:.2f} s, {big['mb']:.0f} MB, {big['lines']:,} lines",
        f"before: {old[0]['median_s']:.0f} s, {old[0]['mb']:.0f} MB" if old else "",
        big["median_s"] <= 2 and big["mb"] <= 30,
    )
    c = res["concurrent"]
    result(
        f"prometheus: largest Snapshot gap, {c['scrapers']} scrapers of {c['series']:,} series",
        "<= 2 s",
        f"{c['busy_gap_s']:.2f} s",
        f"nobody scraping: {c['quiet_gap_s']:.2f} s",
        c["busy_gap_s"] <= 2,
    )


if __name__ == "__main__":
    main()
