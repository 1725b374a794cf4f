"""What the application pays per recorded sample, and whether every sample arrives.

Runs a real `vtmon serve` (history in a temporary folder) and, in this process, times tight
loops of calls as an application makes them:

* vtmon.client: `client.record(name, value)`, a `with client.timer(name): pass` block,
  `client.count(name)` and `client.gauge(name, value)`, with the client's sender thread
  connected and sending as in an application: in a loop that never waits, the sender's work
  (grouping, converting, writing; about 30-40 ns a sample) takes the interpreter from the
  loop, so it is part of these figures;
* the same record and timer calls alone: a client whose vtmon is away and whose buffer holds
  the run, so its sender stays idle (runs of 50,000 calls);
* in the same run, for comparison: a `time.perf_counter()` pair, `list.append`, pystatsd's
  `UnixSocketStatsClient` and datadog's `DogStatsd` (buffered and unbuffered), both sending
  to the same `vtmon serve` socket.

Each figure is the median of several runs of N calls, the loop's own cost included (it is the
same for every line; "empty loop" shows it); the range is the fastest and the slowest run.
Afterwards the client flushes and the benchmark reads back through the socket that vtmon
counted every sample the client recorded (the `ingest` counters and the series' sketches).
Gauges get fewer calls a run (100,000): vtmon serve applies gauge values one at a time, and a
longer burst of millions of gauge sets a second outruns it, after which the client drops the
oldest, as it should when vtmon is too slow.

    python bench/client.py [--calls N] [--gauge-calls N] [--runs R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

from common import machine, result, rpc, serving

from vtmon.client import Client

RECORD_GOAL_US = 0.3
TIMER_GOAL_US = 0.3  # above the two clock reads
PREFIX = "bench.client."


# Each loop is a function of its own so its names are fast locals, as in an application's
# hot path. Every loop returns seconds per call.


def loop_empty(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        pass
    return (time.perf_counter() - t0) / n


def loop_clock_pair(n: int) -> float:
    perf_counter = time.perf_counter
    t0 = perf_counter()
    for _ in range(n):
        a = perf_counter()
        b = perf_counter()
    _ = a, b
    return (perf_counter() - t0) / n


def loop_list_append(n: int) -> float:
    out: list[float] = []
    t0 = time.perf_counter()
    for _ in range(n):
        out.append(1.5)
    return (time.perf_counter() - t0) / n


def loop_record(client: Client, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        client.record("bench.client.record_latency", 1.5)
    return (time.perf_counter() - t0) / n


def loop_timer(client: Client, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        with client.timer("bench.client.timer_latency"):
            pass
    return (time.perf_counter() - t0) / n


def loop_count(client: Client, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        client.count("bench.client.throughput")
    return (time.perf_counter() - t0) / n


def loop_gauge(client: Client, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        client.gauge("bench.client.queue_depth", 7.0)
    return (time.perf_counter() - t0) / n


def loop_call(fn: Callable[[str, float], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn("bench.other.request_latency", 1.5)
    return (time.perf_counter() - t0) / n


def runs_of(fn: Callable[[], float], runs: int, before: Callable[[], object] = lambda: None):
    got = []
    for _ in range(runs):
        before()
        got.append(fn() * 1e6)
    return {"median": statistics.median(got), "min": min(got), "max": max(got), "runs": got}


def fmt(r: dict) -> str:
    return f"{r['median']:.3f} us ({r['min']:.3f}-{r['max']:.3f})"


def others(path: str, n: int, runs: int) -> dict:
    """The client libraries a user would pick instead, to the same socket."""
    out = {}
    import statsd
    from datadog.dogstatsd import DogStatsd

    ps = statsd.UnixSocketStatsClient(path)
    out["pystatsd UnixSocketStatsClient.timing"] = runs_of(lambda: loop_call(ps.timing, n), runs)
    ps.close()
    dd = DogStatsd(socket_path=path, disable_telemetry=True, disable_buffering=True)
    out["datadog DogStatsd.distribution, unbuffered"] = runs_of(
        lambda: loop_call(dd.distribution, n), runs
    )
    dd.close_socket()
    dd = DogStatsd(socket_path=path, disable_telemetry=True, disable_buffering=False)
    out["datadog DogStatsd.distribution, buffered"] = runs_of(
        lambda: loop_call(dd.distribution, n), runs, before=dd.flush
    )
    dd.flush()
    dd.close_socket()
    return out


def series_counts(path: str) -> dict[str, float]:
    """Samples per bench series in vtmon's 5-minute window (a counter's is its sum)."""
    snap = rpc(path, "snapshot")
    return {
        r["name"][len(PREFIX) :]: r["windows"]["5m"]["count"]
        for r in snap["series"]
        if r["name"].startswith(PREFIX)
    }


def call_alone(path: str, loop: Callable[[Client, int], float], n: int, runs: int) -> dict:
    """The call alone: a client whose vtmon is away and whose buffer holds the whole run, so
    its sender never takes the interpreter from the loop. Runs are short (``n`` calls, 50,000)
    so that the buffer stays about as small as a sending client's."""

    def one() -> float:
        idle = Client(path, max_buffer=n + 1, flush_interval=3600)
        try:
            return loop(idle, n)
        finally:
            idle.close(timeout=0)

    return runs_of(one, runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=1_000_000, help="calls per run, vtmon.client")
    ap.add_argument("--gauge-calls", type=int, default=100_000, help="calls per run, gauge")
    ap.add_argument("--other-calls", type=int, default=100_000, help="calls per run, others")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    n, ng, runs = args.calls, args.gauge_calls, args.runs

    with serving() as (path, _proc, tmp):
        base = rpc(path, "ingest")["accepted"]
        client = Client(path)
        deadline = time.monotonic() + 10
        while not client.connected and time.monotonic() < deadline:
            time.sleep(0.01)  # the sender connects at once, as in an application
        res: dict[str, dict] = {}
        res["empty loop"] = runs_of(lambda: loop_empty(n), runs)
        res["perf_counter pair"] = runs_of(lambda: loop_clock_pair(n), runs)
        res["list.append"] = runs_of(lambda: loop_list_append(n), runs)
        res["client.record"] = runs_of(lambda: loop_record(client, n), runs, client.flush)
        res["with client.timer"] = runs_of(lambda: loop_timer(client, n), runs, client.flush)
        res["client.count"] = runs_of(lambda: loop_count(client, n), runs, client.flush)
        res["client.gauge"] = runs_of(lambda: loop_gauge(client, ng), runs, client.flush)
        away = os.path.join(tmp, "nobody.sock")
        alone = min(n, 50_000)
        res["client.record, the call alone"] = call_alone(away, loop_record, alone, 3 * runs)
        res["with client.timer, the call alone"] = call_alone(away, loop_timer, alone, 3 * runs)
        flushed = client.flush(60)
        want = {
            "record_latency": n * runs,
            "timer_latency": n * runs,
            "throughput": n * runs,
            "queue_depth": ng * runs,
        }
        recorded = sum(want.values())
        t0 = time.monotonic()
        counted = 0
        while time.monotonic() - t0 < 60:
            counted = rpc(path, "ingest")["accepted"] - base
            if counted >= recorded:
                break
            time.sleep(0.05)
        in_sketches: dict[str, float] = {}
        for _ in range(40):  # the next Snapshots show them
            in_sketches = series_counts(path)
            if all(in_sketches.get(k, 0) >= v for k, v in want.items()):
                break
            time.sleep(0.25)
        stats = {
            "recorded": recorded,
            "flushed": flushed,
            "sent": client.sent,
            "dropped": client.dropped,
            "invalid": client.invalid,
            "counted_by_vtmon": counted,
            "in_sketches": in_sketches,
            "binary": client.binary,
        }
        client.close()
        res.update(others(path, args.other_calls, runs))

    pair = res["perf_counter pair"]

    def over_pair(timer: dict) -> dict:
        """The timer's runs minus the pair's median."""
        p = pair["median"]
        return {"median": timer["median"] - p, "min": timer["min"] - p, "max": timer["max"] - p}

    timer_over = over_pair(res["with client.timer"])
    timer_alone = over_pair(res["with client.timer, the call alone"])
    record = res["client.record"]
    complete = (
        counted == recorded
        and stats["dropped"] == 0
        and all(in_sketches.get(k) == v for k, v in want.items())
    )
    if args.json:
        out = {"machine": machine(), "calls": n, "gauge_calls": ng, "runs": runs}
        print(json.dumps({**out, **res, **stats}))
    else:
        print(f"machine: {machine()}")
        print(
            f"{n:,} calls a run (gauge {ng:,}, others {args.other_calls:,}), "
            f"median of {runs} runs (fastest-slowest)"
        )
        for name, r in res.items():
            print(f"  {name:48s} {fmt(r)}")
        print(f"  {'with client.timer, above the perf_counter pair':48s} {fmt(timer_over)}")
        print(f"  {'  the call alone, above the pair':48s} {fmt(timer_alone)}")
        print(
            f"delivery: {recorded:,} recorded, {stats['sent']:,} sent "
            f"({'binary frames' if stats['binary'] else 'text lines'}), "
            f"{stats['dropped']:,} dropped, {counted:,} counted by vtmon; in the sketches "
            + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(in_sketches.items()))
        )
    others_text = "; ".join(
        f"{k.split(' ', 1)[0]}{' ' + k.rsplit(', ', 1)[1] if ', ' in k else ''} "
        f"{r['median']:.2f} us"
        for k, r in res.items()
        if k.startswith(("pystatsd", "datadog"))
    )
    alone = res["client.record, the call alone"]
    result(
        "vtmon.client record(name, value), per call, its sender running",
        f"<= {RECORD_GOAL_US} us",
        fmt(record),
        f"call alone {alone['median']:.3f} us; list.append {res['list.append']['median']:.3f} us; "
        + others_text,
        ok=record["median"] <= RECORD_GOAL_US,
    )
    result(
        "vtmon.client timer block above two perf_counter reads, its sender running",
        f"<= {TIMER_GOAL_US} us",
        fmt(timer_over),
        f"call alone {timer_alone['median']:.3f} us above; pair {fmt(pair)}",
        ok=timer_over["median"] <= TIMER_GOAL_US,
    )
    result(
        "vtmon.client count / gauge, per call",
        "",
        f"{res['client.count']['median']:.3f} / {res['client.gauge']['median']:.3f} us",
        "",
        ok=None,
    )
    result(
        "vtmon.client delivery after flush",
        "every sample counted",
        f"{counted:,} of {recorded:,} counted, {stats['dropped']:,} dropped",
        "",
        ok=complete,
    )
    if not complete:
        raise SystemExit(f"vtmon counted {counted:,} of {recorded:,} samples")


if __name__ == "__main__":
    main()
