"""Many series: what `vtmon serve` costs as series grow, next to netdata's statsd.

python bench/series.py [--series 1,1000,5000,10000] [--rate 1] [--seconds 40] [--warmup 20]
                       [--netdata-series 5000,10000] [--no-netdata] [--idle 10] [--rows 40]
                       [--quiet 15]

For each N in ``--series``: a real `vtmon serve` as a user runs it (history on, in a temporary
--data-dir; detection on; defaults, with ``[limits] max_series`` raised when N is above it),
its socket in a private temporary folder. One sender process writes StatsD timing lines
(``svc.endpoint_0042.latency:12.31|ms|#component:comp07``: N names over 20 components, each
series with a typical latency of its own and random values around it) through the Unix
socket, ``--rate`` lines per series per second, spread evenly over each second. After
``--warmup`` seconds (the first windows fill, the history file takes its first rows) the
bench measures for ``--seconds``:

- vtmon's CPU (user + system of its process, over wall time; % of one core) and the largest
  resident memory read once a second;
- the Snapshot cadence: a reader thread asks `snapshot` about once a second (timed from the
  last Snapshot seen, see Reader) for what an attached console shows: ``--rows`` series (the
  first in the Snapshot's order) and two numbers of every series to sort by (``"columns":
  ["1m.p95", "1m.rate"]``, docs/snapshot.md); it records each Snapshot's ``t`` and how long
  the answer took (sent to last byte read); the largest gap between consecutive distinct
  ``t`` and the slowest answer;
- the whole Snapshot (every series, as `vtmon snapshot` asks): after the window, three
  requests, the slowest answer and its size;
- what was lost: the Snapshot's ingest counters over the window (samples dropped, lines
  rejected), series missing from the Snapshot (refused), and, at the end, whether the
  sender's connection counted every line it sent (`connection.stats`);
- the cost per series per second: CPU seconds / (N x seconds), busy (the load above) and
  quiet: the sender stops and vtmon's CPU is measured for ``--quiet`` seconds more, its N
  series still in every window, nothing arriving;
- the analysis: in this process, a Monitor (injected clock, no history file) gets the same N
  series for 70 s, then the slowest of its 5-second evaluations (detection, health,
  regressions, forecasts) is timed.

netdata is the peer (for N in ``--netdata-series``): when its binary is missing and the
bench runs as root on Debian or alike, it is installed with `apt-get install -y netdata`.
It runs in the foreground with a temporary netdata.conf: every collector off but statsd
(TCP on a free loopback port) and netdata's own monitoring (which holds the statsd
counters the check reads), the web API on another free loopback port, a private chart for
every series (the hard limit raised to N) in its default database. Its idle CPU is measured
for ``--idle`` seconds, then the same lines at the same rate go to its statsd over TCP; the
figure is its CPU above idle. That it received them is checked through its API: the
``netdata.statsd_events`` timers summed over the sending time (= lines sent) and
``netdata.statsd_metrics`` timers (= N).

Goals (rows of `make bench`'s closing table): at 5,000 series vtmon's CPU at most twice
netdata's statsd cost in the same run, RSS <= 400 MB, Snapshot gaps <= 1.2 s, a snapshot
answered within 1 s, nothing dropped; at 10,000 series <= 25 % of a core and <= 600 MB.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from common import machine, result, rpc, serving
from netdata import Netdata, netdata_binary, run_netdata
from series_load import Load, measure, series_lines

from vtmon.config import Config

POLL_S = 1.0  # the Snapshot interval, vtmon's default
LAG_S = 0.3
REPOLL_S = 0.2
SATURATED = 90.0  # % of a core


# -- vtmon ---------------------------------------------------------------------------------

T_FIELD = re.compile(rb'"result":\{"t":([-0-9.eE+]+)')


def snapshot_raw(
    path: str, params: dict | None = None, timeout: float = 30.0
) -> tuple[bytes, float]:
    """One `snapshot` answer as bytes, and the seconds from request to its last byte."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    request = {"jsonrpc": "2.0", "id": 1, "method": "snapshot"}
    if params is not None:
        request["params"] = params
    try:
        s.connect(path)
        t0 = time.monotonic()
        s.sendall(json.dumps(request).encode() + b"\n")
        chunks = []
        while True:
            data = s.recv(1 << 20)
            if not data:
                raise ConnectionError("vtmon closed the connection before answering")
            chunks.append(data)
            if data.endswith(b"\n"):
                break
        return b"".join(chunks), time.monotonic() - t0
    finally:
        s.close()


class Reader(threading.Thread):
    """Asks for a Snapshot about once a second, timed from the last one seen: ``LAG_S`` after
    the next one is due (its ``t`` + 1 s), and again every ``REPOLL_S`` while the answer is
    still the Snapshot seen before. A steady poll once a second would alias with Snapshots
    published once a second: as the answer's delay varies it sees one Snapshot twice, or
    misses one, and reports a 2 s gap that is not there. Keeps each distinct Snapshot time,
    the slowest answer, the largest answer, and requests that failed."""

    def __init__(self, path: str, params: dict | None = None) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.params = params
        self.stop = threading.Event()
        self.times: list[float] = []
        self.slowest = 0.0
        self.largest = 0
        self.requests = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            self.requests += 1
            wait = REPOLL_S
            try:
                raw, took = snapshot_raw(self.path, self.params)
                m = T_FIELD.search(raw, 0, 200)
                t = float(m.group(1)) if m else json.loads(raw)["result"]["t"]
            except (OSError, ValueError, KeyError) as e:
                self.failures.append(f"{type(e).__name__}: {e}")
            else:
                self.slowest = max(self.slowest, took)
                self.largest = max(self.largest, len(raw))
                if not self.times or t != self.times[-1]:
                    self.times.append(t)
                    wait = min(POLL_S + LAG_S, t + POLL_S + LAG_S - time.time())
            self.stop.wait(max(0.0, wait))

    def largest_gap(self) -> float:
        steps = [b - a for a, b in zip(self.times, self.times[1:], strict=False)]
        return max(steps) if steps else math.inf


@dataclass
class Run:
    """One N against vtmon, and netdata's figures for the same N when it ran."""

    n: int
    seconds: float = 0.0
    cpu: float = math.nan  # % of one core
    rss: float = math.nan  # MB, largest
    gap: float = math.inf  # s, largest between Snapshots
    slowest: float = math.inf  # s, slowest snapshot answer
    largest_answer: int = 0  # bytes
    quiet: float = math.nan  # % of one core, nothing arriving
    evaluation_ms: float = math.nan  # the slowest 5-s evaluation, in-process
    whole: float = math.inf  # s, slowest answer with every series
    whole_size: int = 0  # bytes
    seen: int = 0  # distinct Snapshots
    requests: int = 0
    snapshot_failures: list[str] = field(default_factory=list)
    dropped: int = -1  # samples dropped by the engine in the window
    rejected: int = -1  # lines rejected in the window
    missing: int = -1  # series not in the last Snapshot (refused)
    queued: int = -1  # batches read but not yet in the engine at the end of the window
    sent: int = 0
    counted: int = -1  # the sender connection's accepted + rejected
    sender_error: str = ""
    stop_s: float = math.nan
    exit_code: int | None = None
    netdata: Netdata | None = None

    @property
    def saturated(self) -> bool:
        """One interpreter runs vtmon: near a whole core it can do no more, and the cost per
        series-second is only a lower bound."""
        return self.cpu >= SATURATED

    @property
    def cost_us(self) -> float:
        """CPU microseconds per series per second."""
        return self.cpu / 100 / self.n * 1e6

    @property
    def quiet_us(self) -> float:
        """CPU microseconds per series per second with nothing arriving."""
        return self.quiet / 100 / self.n * 1e6

    @property
    def lost(self) -> int:
        """Everything that did not arrive whole: dropped, rejected, refused, uncounted."""
        uncounted = self.sent - self.counted if self.counted >= 0 else self.sent
        parts = (self.dropped, self.rejected, self.missing, uncounted)
        return sum(abs(x) for x in parts) if min(parts) >= 0 else -1


def snapshot_dict(path: str) -> dict:
    return rpc(path, "snapshot", timeout=60)


def svc_series(snap: dict) -> int:
    return sum(1 for s in snap["series"] if s["name"].startswith("svc."))


def evaluation_ms(n: int, rate: float) -> float:
    """The slowest 5-s evaluation of the analysis over N series (see the module docstring)."""
    from vtmon.clock import ManualClock
    from vtmon.engine.monitor import Monitor
    from vtmon.export.replay import NullCollector, NullSensors
    from vtmon.ingest.parse import parse_block
    from vtmon.model import Batch

    clock = ManualClock(1_800_000_000.0)
    cfg = Config(max_series=max(Config().max_series, n))
    m = Monitor(cfg, clock=clock, collector=NullCollector(), sensors=NullSensors())
    heads, typical = series_lines(n)
    rng = random.Random(3)
    analyzer = m.analyzer
    every = analyzer.evaluate
    took: list[float] = []

    def timed(snap: Any, now: float) -> Any:
        runs = analyzer.evaluations
        t0 = time.perf_counter()
        out = every(snap, now)
        if analyzer.evaluations > runs:  # an evaluation was due and ran
            took.append(time.perf_counter() - t0)
        return out

    analyzer.evaluate = timed  # type: ignore[method-assign]
    # 70 s: the windows fill and the once-a-minute regression check runs (its cost is per
    # series; five minutes of it need not be waited for)
    for _ in range(70):
        due = [i for i in range(n) if rng.random() < rate]
        block = b"".join(heads[i] % (typical[i] * rng.lognormvariate(0, 0.3)) for i in due)
        b = Batch()
        parse_block(block, b)
        m.offer(b)
        m.drain()
        m.tick(drain=False)
        clock.advance(1.0)
    return max(took[2:]) * 1e3  # the first ones see windows still filling


def run_vtmon(n: int, args: argparse.Namespace) -> Run:
    run = Run(n)
    run.evaluation_ms = evaluation_ms(n, min(args.rate, 1.0))
    limit = Config().max_series
    with tempfile.TemporaryDirectory(prefix="vtmon-bench-cfg-") as cfg_dir:
        cfg = Path(cfg_dir) / "config.toml"
        cfg.write_text(f"[limits]\nmax_series = {n}\n" if n > limit else "")
        with serving("--config", str(cfg)) as (path, popen, _tmp):
            proc = psutil.Process(popen.pid)
            load = Load.start(path, n, args.rate)
            time.sleep(args.warmup)
            first = snapshot_dict(path)
            before = first["ingest"]
            shown = [r["name"] for r in first["series"][: args.rows]]
            reader = Reader(path, {"series": shown, "columns": ["1m.p95", "1m.rate"]})
            reader.start()
            t0 = time.monotonic()
            run.cpu, run.rss = measure(proc, args.seconds)
            run.seconds = time.monotonic() - t0
            if popen.poll() is not None:
                raise SystemExit(f"vtmon serve exited ({popen.returncode}) under {n:,} series")
            reader.stop.set()
            reader.join(60)
            for _ in range(3):
                raw, took = snapshot_raw(path, timeout=60)
                run.whole = took if run.whole == math.inf else max(run.whole, took)
                run.whole_size = max(run.whole_size, len(raw))
            snap = snapshot_dict(path)
            after = snap["ingest"]
            run.queued = rpc(path, "ingest")["queued_batches"]
            run.sent, counts, _t0, run.sender_error = load.finish()
            if counts is not None:
                run.counted = counts["accepted"] + sum(counts["rejected"].values())
            if args.quiet > 0:
                run.quiet, _ = measure(proc, args.quiet)
            run.gap, run.slowest = reader.largest_gap(), reader.slowest
            run.largest_answer, run.snapshot_failures = reader.largest, reader.failures
            run.seen, run.requests = len(reader.times), reader.requests
            run.dropped = after["samples_dropped"] - before["samples_dropped"]
            run.rejected = sum(after["rejected"].values()) - sum(before["rejected"].values())
            run.missing = n - svc_series(snap)
            t_stop = time.monotonic()
            popen.terminate()
            try:
                run.exit_code = popen.wait(120)
            except subprocess.TimeoutExpired:
                run.exit_code = None
            run.stop_s = time.monotonic() - t_stop
    return run


# -- the table --------------------------------------------------------------------------------


def fmt_s(x: float) -> str:
    return f"{x:.2f} s" if math.isfinite(x) else "none"


def netdata_cell(r: Run, skipped: str) -> str:
    if r.netdata is None:
        return "skipped" if skipped else "not run"
    nd = r.netdata
    if math.isnan(nd.loaded):
        return "failed"
    unseen = "" if nd.received else f", counted {nd.events:,.0f} of {nd.sent:,} lines"
    return f"{nd.above_idle:.1f} % (idle {nd.idle:.1f} %, RSS {nd.rss:.0f} MB){unseen}"


def cost_cell(r: Run) -> str:
    return f">= {r.cost_us:.1f} us (saturated)" if r.saturated else f"{r.cost_us:.1f} us"


def lost_cell(r: Run) -> str:
    if r.lost < 0:
        return "unknown"
    if r.lost == 0:
        return "0"
    return (
        f"{r.dropped} dropped, {r.rejected} rejected, {r.missing} series refused, "
        f"{r.sent - r.counted} uncounted"
    )


def print_table(runs: list[Run], skipped: str) -> None:
    head = (
        "series",
        "vtmon CPU",
        "RSS",
        "largest Snapshot gap",
        "slowest snapshot answer",
        "whole Snapshot",
        "dropped",
        "cost per series-second",
        "quiet",
        "5-s evaluation",
        "netdata CPU above idle",
    )
    rows = [
        (
            f"{r.n:,}",
            f"{r.cpu:.1f} % of a core",
            f"{r.rss:.0f} MB",
            fmt_s(r.gap),
            fmt_s(r.slowest),
            f"{fmt_s(r.whole)}, {r.whole_size / 2**20:.1f} MB",
            lost_cell(r),
            cost_cell(r),
            f"{r.quiet:.1f} %, {r.quiet_us:.1f} us" if math.isfinite(r.quiet) else "not run",
            f"{r.evaluation_ms:.0f} ms",
            netdata_cell(r, skipped),
        )
        for r in runs
    ]
    widths = [max(len(c[i]) for c in [head, *rows]) for i in range(len(head))]
    print()
    for c in [head, *rows]:
        print("  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)).rstrip())


def report(runs: list[Run], skipped: str) -> None:
    """The closing table's rows: one per N (no goal), then the goals at 5,000 and 10,000."""
    for each in runs:
        result(
            f"series: vtmon serve at {each.n:,} series",
            "",
            f"CPU {each.cpu:.1f} % of a core, RSS {each.rss:.0f} MB, "
            f"{cost_cell(each)} per series-s, gap {fmt_s(each.gap)}, "
            f"answer {fmt_s(each.slowest)}, whole Snapshot {fmt_s(each.whole)}, quiet "
            f"{each.quiet:.1f} % ({each.quiet_us:.1f} us per series-s), 5-s evaluation "
            f"{each.evaluation_ms:.0f} ms",
            f"netdata statsd {netdata_cell(each, skipped)}" if each.netdata else "",
        )
    by_n = {r.n: r for r in runs}
    if (r := by_n.get(5000)) is not None:
        nd = r.netdata
        ok: bool | None = None
        if nd is None:
            base = f"netdata: {skipped or 'not run'}"
        elif not math.isfinite(nd.above_idle):
            base = f"netdata failed: {nd.note}"
        elif not nd.received:  # a peer that did not get the load is no measure
            base = f"netdata statsd counted {nd.events:,.0f} of {nd.sent:,} lines"
        else:
            ok = r.cpu <= 2 * max(nd.above_idle, 0.0)
            base = f"netdata statsd {nd.above_idle:.1f} % above its idle"
        result("series: vtmon CPU at 5,000 series", "<= 2x netdata's statsd",
               f"{r.cpu:.1f} % of a core", base, ok)  # fmt: skip
        result("series: vtmon RSS at 5,000 series", "<= 400 MB", f"{r.rss:.0f} MB",
               ok=r.rss <= 400)  # fmt: skip
        failed = f", {len(r.snapshot_failures)} requests failed" if r.snapshot_failures else ""
        result("series: largest Snapshot gap at 5,000 series", "<= 1.2 s", fmt_s(r.gap) + failed,
               ok=r.gap <= 1.2 and not r.snapshot_failures)  # fmt: skip
        result("series: slowest snapshot answer at 5,000 series", "<= 1 s",
               f"{fmt_s(r.whole)} with every series, {fmt_s(r.slowest)} for a console's view",
               ok=max(r.whole, r.slowest) <= 1.0)  # fmt: skip
        result("series: dropped at 5,000 series", "nothing", lost_cell(r),
               ok=r.lost == 0)  # fmt: skip
    if (r := by_n.get(10000)) is not None:
        result("series: vtmon CPU at 10,000 series", "<= 25 % of a core",
               f"{r.cpu:.1f} % of a core", ok=r.cpu <= 25)  # fmt: skip
        result("series: 5-s evaluation of 10,000 series", "<= 50 ms",
               f"{r.evaluation_ms:.0f} ms", ok=r.evaluation_ms <= 50)  # fmt: skip
        result("series: vtmon RSS at 10,000 series", "<= 600 MB", f"{r.rss:.0f} MB",
               ok=r.rss <= 600)  # fmt: skip


# -- main ------------------------------------------------------------------------------------


def counts(text: str) -> list[int]:
    out = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of series counts, each >= 1")
    return out


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(
        description=doc.split("\n\n", 2)[2],
        usage=doc.split("\n\n")[1].removeprefix("python "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--series",
        type=counts,
        default=[1, 1000, 5000, 10000],
        help="series counts to run, one vtmon each (default 1,1000,5000,10000)",
    )
    ap.add_argument(
        "--rate", type=float, default=1.0, help="samples per series per second (default 1)"
    )
    ap.add_argument(
        "--seconds",
        type=float,
        default=40.0,
        help="measured seconds per run, after the warm-up (default 40)",
    )
    ap.add_argument(
        "--warmup",
        type=float,
        default=20.0,
        help="seconds of load before measuring (default 20; netdata: 10 at most)",
    )
    ap.add_argument(
        "--netdata-series",
        type=counts,
        default=[5000, 10000],
        help="the series counts also run against netdata, when in --series (default 5000,10000)",
    )
    ap.add_argument("--no-netdata", action="store_true", help="leave netdata out")
    ap.add_argument(
        "--quiet",
        type=float,
        default=15.0,
        help="seconds measured after the sender stops, the series still present (default 15)",
    )
    ap.add_argument(
        "--rows",
        type=int,
        default=40,
        help="series the once-a-second reader asks for, as a console shows them (default 40)",
    )
    ap.add_argument(
        "--idle",
        type=float,
        default=10.0,
        help="seconds netdata's idle CPU is measured (default 10)",
    )
    args = ap.parse_args()

    with_netdata = [n for n in args.series if n in args.netdata_series]
    binary, skipped = None, ""
    if args.no_netdata:
        skipped = "--no-netdata"
    elif with_netdata:
        binary, skipped = netdata_binary()
        if binary is None:
            print(f"netdata is skipped: {skipped}", flush=True)

    print(f"machine: {machine()}")
    print(f"load average before: {load_avg()}", flush=True)
    runs: list[Run] = []
    for n in args.series:
        print(f"\n{n:,} series at {args.rate:g}/s each: vtmon serve ...", flush=True)
        r = run_vtmon(n, args)
        runs.append(r)
        print(
            f"  CPU {r.cpu:.1f} % of a core over {r.seconds:.0f} s, RSS {r.rss:.0f} MB at most, "
            f"{cost_cell(r)} per series-second"
        )
        print(
            f"  Snapshots: {fmt_s(r.gap)} largest gap ({r.seen} seen in {r.requests} requests), "
            f"slowest answer {fmt_s(r.slowest)} ({r.largest_answer / 2**20:.1f} MB at most), "
            f"{len(r.snapshot_failures)} requests failed {r.snapshot_failures[:2]}; "
            f"the whole Snapshot {fmt_s(r.whole)} ({r.whole_size / 2**20:.1f} MB)"
        )
        print(
            f"  in the window: {r.dropped} samples dropped, {r.rejected} lines rejected; "
            f"{r.queued} batches still queued at its end; {n - r.missing:,} of {n:,} series "
            f"in the Snapshot; the sender's connection "
            f"counted {r.counted:,} of {r.sent:,} lines {r.sender_error}"
        )
        print(f"  stopped in {r.stop_s:.1f} s, exit code {r.exit_code}; load {load_avg()}")
        if binary and n in with_netdata:
            print(f"{n:,} series: netdata statsd ...", flush=True)
            nd = r.netdata = run_netdata(
                binary, n, args.rate, min(args.warmup, 10), args.seconds, args.idle
            )
            print(
                f"  idle {nd.idle:.1f} %, loaded {nd.loaded:.1f} % of a core: "
                f"{nd.above_idle:.1f} % above idle; RSS {nd.rss:.0f} MB at most"
            )
            print(
                f"  its statsd counted {nd.events:,.0f} timer events of {nd.sent:,} lines sent "
                f"and holds {nd.metrics:,.0f} timers (netdata.statsd_events, "
                f"netdata.statsd_metrics) {nd.note}"
            )
            print(f"  load {load_avg()}", flush=True)

    print_table(runs, skipped)
    if skipped:
        print(f"netdata skipped: {skipped}")
    print(f"load average after: {load_avg()}")
    report(runs, skipped)


if __name__ == "__main__":
    main()
