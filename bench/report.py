"""What the HTML report costs: the time to build and render a 24-hour report of 20 latency
series, and the size of the file.

    python bench/report.py              # fill a day into a fresh file, then time the report
    python bench/report.py --hours 2    # a shorter day, for a quick look
    python bench/report.py --demo DIR   # the demo workload's report and screenshot, see below

Budget: a 24-hour report of 20 series renders in under 2 s and is under 1.5 MB.

The file is filled for real, with an injected clock: 20 latency series (5 components x 4, 50
samples a second each, lognormal with a slow hour in the afternoon), the machine's readings
every second, and what the engine would have found in such a day (24 bottlenecks, 500
alerts, health and ingest counters each minute) -- written by the store's own writer code,
rolled up and expired every minute as the writer thread does. Then the report of the last
24 hours is built from a freshly opened store (as ``vtmon report`` does) and rendered,
several times; the figures are the median and the largest.

``--demo DIR`` runs the demo workload (vtmon/demo.py) through a real Monitor for 20 minutes
of simulated time, with the tuner in auto mode and the demo's knobs answered in process, and
writes DIR/report.html and, with Debian's chromium, DIR/report.png and DIR/report-small.png
(the README's screenshot: ``cp DIR/report*.png screenshots/``).
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from common import machine

from vtmon.clock import ManualClock
from vtmon.config import Config, TunerConfig
from vtmon.engine.monitor import Monitor
from vtmon.model import Batch, Kind, Pressure, ResourceHistory, Resources, SeriesKey
from vtmon.report import build_report, render_html
from vtmon.sketch import Sketch
from vtmon.store.findings import Finding
from vtmon.store.history import HistoryStore

T0 = 1_700_000_000  # a Tuesday, 22:13 UTC
COMPONENTS = ("voice-engine", "terminal-processor", "api-server", "db", "cache")
POOL = 599  # distinct seconds of samples, reused (prime: no alignment with rollups)
BUDGET_S = 2.0
BUDGET_BYTES = 1_500_000


def series_keys(n: int) -> list[SeriesKey]:
    return [
        SeriesKey(
            f"{COMPONENTS[i % len(COMPONENTS)].split('-')[0]}.op{i}_latency",
            (("component", COMPONENTS[i % len(COMPONENTS)]),),
            Kind.DISTRIBUTION,
        )
        for i in range(n)
    ]


def fill(folder: Path, hours: float, n_series: int) -> tuple[float, float]:
    """A day (``hours``) of ``n_series`` latency series and machine readings in
    ``folder/vtmon.db``; returns the range filled."""
    rng = np.random.default_rng(5)
    keys = series_keys(n_series)
    pools = [
        [Sketch.of(rng.lognormal(math.log(20 + 10 * j), 0.5, 50)) for _ in range(POOL)]
        for j in range(4)
    ]
    slow = [Sketch.of(rng.lognormal(math.log(300), 0.4, 50)) for _ in range(POOL)]
    clock = ManualClock(T0)
    store = HistoryStore.open(folder, clock=clock)
    assert store.persistent, store.warning
    total = int(hours * 3600)
    slow_from, slow_to = total * 0.6, total * 0.6 + 3600
    cpu = 20 + 15 * np.sin(np.arange(total) / 3600.0)
    for i in range(total):
        t = T0 + i
        incident = slow_from <= i < slow_to
        items = [
            (k, Kind.DISTRIBUTION, t, (slow if incident and j % 5 == 2 else pools[j % 4])[i % POOL])
            for j, k in enumerate(keys)
        ]
        store.add_seconds(items)
        store.add_resources(
            Resources(
                t=t + 0.5,
                cpu_percent=float(cpu[i]) + (40 if incident else 0),
                mem_percent=55.0 + 10 * (i / total),
                disk_read_rate=2e6 + 1e5 * (i % 60),
                disk_write_rate=4e6,
                net_rx_rate=1.5e6,
                net_tx_rate=9e5,
                pressure=(
                    Pressure("cpu", 2.0 + (30 if incident else 0), 0, 0),
                    Pressure("memory", 0.5, 0, 0),
                    Pressure("io", 1.0, 0, 0),
                ),
            )
        )
        if i % 60 == 0:
            store.add_findings(findings_of_minute(t, i, total, incident))
        clock.advance(1)
        if i % 5 == 4:
            store.flush()
        if i % 60 == 59:
            store.maintain()
    store.flush()
    store.maintain()
    store.close()
    return float(T0), float(T0 + total)


def findings_of_minute(t: float, i: int, total: int, incident: bool) -> list[Finding]:
    """What the engine would have kept in such a minute (a bottleneck an hour, alerts)."""
    out = [
        Finding(t, "health", c, {"component": c, "score": 0.55 if incident else 0.97})
        for c in (*COMPONENTS, "overall")
    ]
    out.append(Finding(t, "ingest", "", {"accepted": 60_000, "rejected": {"bad syntax": 3}}))
    minute = i // 60
    if minute % 60 == 10:  # one bottleneck an hour, for 20 minutes
        comp = COMPONENTS[minute // 60 % len(COMPONENTS)]
        b = {
            "id": f"latency:{comp}",
            "type": "latency",
            "severity": "critical" if incident else "high",
            "component": comp,
            "description": f"{comp} p95 latency is 321 ms over the last minute, 3.2x its target.",
            "impact": 0.56,
            "confidence": 0.8,
            "evidence": [],
            "suggested_action": f"Profile {comp}.",
            "started": t - 20,
            "resolved": None,
            "causes": [
                {"signal": "psi_cpu_some", "label": "CPU saturation (PSI cpu some)",
                 "before": 2.2, "after": 55.0, "score": 0.9, "unit": "%"}
            ],
            "rule": "latency",
        }  # fmt: skip
        out.append(Finding(t, "bottleneck", comp, b))
        out.append(Finding(t + 1200, "resolved", comp, {**b, "resolved": t + 1200}))
    if minute % 3 == 0 or incident:  # about 500 alerts a day
        out.append(
            Finding(
                t,
                "alert",
                "api-server",
                {"t": t, "severity": "high", "kind": "high_latency", "component": "api-server",
                 "message": "api-server api.request_latency took 359 ms, above its 200 ms alert."},
            )
        )  # fmt: skip
    return out


def bench(hours: float, n_series: int, runs: int) -> None:
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="vtmon-bench-report-") as d:
        folder = Path(d)
        t0 = time.perf_counter()
        start, end = fill(folder, hours, n_series)
        print(
            f"filled {hours:g} h of {n_series} latency series in {time.perf_counter() - t0:.0f} s"
        )
        db_mb = (folder / "vtmon.db").stat().st_size / 1e6
        times: list[tuple[float, float, float]] = []
        size = 0
        for _ in range(runs):
            t0 = time.perf_counter()
            store = HistoryStore.open(folder)
            report = build_report(store, start, end, now=end)
            t1 = time.perf_counter()
            html = render_html(report)
            t2 = time.perf_counter()
            store.close()
            times.append((t1 - t0, t2 - t1, t2 - t0))
            size = len(html.encode())
        (folder / "report.html").write_text(html)
        build = statistics.median(x[0] for x in times)
        render = statistics.median(x[1] for x in times)
        total = statistics.median(x[2] for x in times)
        worst = max(x[2] for x in times)
        charts = html.count("<svg")
        print(f"history file: {db_mb:.1f} MB; {len(report['metrics']['latency'])} series rows, "
              f"{charts} charts, {len(report['alerts'])} alerts, "
              f"{len(report['bottlenecks'])} bottlenecks")  # fmt: skip
        print(
            f"report of {hours:g} h x {n_series} series, {runs} runs: build {build:.2f} s + "
            f"render {render:.2f} s = {total:.2f} s (median; slowest {worst:.2f} s), "
            f"{size / 1e6:.2f} MB"
        )
        ok_t = "ok" if worst < BUDGET_S else "OVER"
        ok_b = "ok" if size < BUDGET_BYTES else "OVER"
        print(f"budget: under {BUDGET_S:g} s ({ok_t}), under {BUDGET_BYTES / 1e6:g} MB ({ok_b})")


# --- the demo's report ---------------------------------------------------------------------


class DemoMachine:
    """Readings that follow the demo's incidents: CPU and pressure rise in a latency spike."""

    history_len = 300

    def __init__(self) -> None:
        self.t0: float | None = None

    def collect(self, now: float) -> Resources:
        from vtmon.demo import incident_at

        if self.t0 is None:
            self.t0 = now
        x = now - self.t0
        inc = incident_at(x)
        spike = inc is not None and inc[0] == "latency spike"
        growth = inc[1] if inc is not None and inc[0] == "memory growth" else 0.0
        wave = math.sin(x / 47.0)
        return Resources(
            t=now,
            cpu_percent=28 + 6 * wave + (45 if spike else 0),
            mem_percent=48 + 12 * growth,
            load=(1.2, 1.0, 0.9),
            cpu_count=2,
            disk_read_rate=1.2e6 * (1.5 + wave),
            disk_write_rate=2.5e6 + 4e5 * wave,
            net_rx_rate=8e5 * (1.2 + math.sin(x / 31.0)),
            net_tx_rate=5e5 * (1.2 + math.cos(x / 29.0)),
            pressure=(
                Pressure("cpu", 3 + (38 if spike else 0), 0, 0),
                Pressure("memory", 0.4 + 6 * growth, 0, 0),
                Pressure("io", 1.5 + wave, 0, 0),
            ),
        )

    def history(self) -> ResourceHistory:
        return ResourceHistory()


class InProcessApp:
    """The demo application's side of its connection: answers vtmon's ``knobs.set`` at once
    by changing the workload, as the demo's vtmon.client connection does over the socket."""

    id = 1
    owner = False  # vtmon.engine.rpc.Caller: a peer's methods are all it calls
    peer_uid = None

    def __init__(self, monitor: Monitor, workload: Any) -> None:
        self.monitor = monitor
        self.workload = workload
        self.inbox: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> bool:
        self.inbox.append(message)  # answered after the tick, as the socket's reader would
        return True

    def answer(self) -> None:
        inbox, self.inbox = self.inbox, []
        for message in inbox:
            if message.get("method") == "knobs.set":
                p = message["params"]
                value = self.workload.set_knob(p["name"], float(p["value"]))
                self.monitor.handle_rpc_response(
                    {"jsonrpc": "2.0", "id": message["id"], "result": value}, self
                )


def demo(out: Path, minutes: int = 20) -> Path:
    from vtmon.demo import DEMO_KNOBS, DemoWorkload
    from vtmon.export.replay import NullSensors
    from vtmon.ingest.parse import parse_block

    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    shutil.rmtree(data, ignore_errors=True)
    clock = ManualClock(T0)
    store = HistoryStore.open(data, clock=clock)
    cfg = replace(Config(), tuner=TunerConfig(mode="auto", evaluation_s=45.0))
    monitor = Monitor(
        cfg,
        clock=clock,
        socket_path="/run/user/1000/vtmon/vtmon.sock",
        collector=DemoMachine(),  # type: ignore[arg-type]
        sensors=NullSensors(),  # type: ignore[arg-type]
        store=store,
    )
    monitor.host = "voice-terminal-01"
    workload = DemoWorkload(seed=3)
    app = InProcessApp(monitor, workload)
    for i, k in enumerate(DEMO_KNOBS):
        params = {"name": k.name, "value": k.value, "min": k.min, "max": k.max, "step": k.step,
                  "unit": k.unit, "component": k.component, "kind": k.kind}  # fmt: skip
        monitor.handle_rpc({"jsonrpc": "2.0", "id": i + 1, "method": "knobs.register",
                            "params": params}, app)  # fmt: skip
    lines = "demo.bad line without a value\napi.request_latency:abc|ms\n"
    for i in range(minutes * 60):
        batch = Batch()
        text = "\n".join(workload.lines(float(i), 1.0)) + "\n"
        if i % 97 == 0:
            text += lines  # a client with a bug: rejected lines, counted by reason
        parse_block(text.encode(), batch)
        monitor.submit(batch)
        clock.advance(1.0)
        monitor.tick()
        app.answer()
        if i % 5 == 4:
            store.flush()
        if i % 60 == 59:
            store.maintain()
    monitor.stop_tuning(revert=False)  # keep what it applied: the report shows it in effect
    monitor.stop()
    store = HistoryStore.open(data, clock=clock)
    report = build_report(store, T0, clock.time(), now=clock.time(), source="demo.db")
    store.close()
    path = out / "report.html"
    path.write_text(render_html(report))
    print(f"wrote {path}: {len(report['bottlenecks'])} bottlenecks, {len(report['actions'])} "
          f"actions, {len(report['alerts'])} alerts")  # fmt: skip
    exe = shutil.which("chromium")
    if exe is not None:  # the top of the page, and the same at half the pixels
        for name, scale in (("report.png", 1.0), ("report-small.png", 0.5)):
            png = out / name
            subprocess.run(
                [exe, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                 f"--force-device-scale-factor={scale}", f"--screenshot={png}",
                 "--window-size=1280,2300", path.resolve().as_uri()],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            print(f"wrote {png} ({png.stat().st_size / 1000:.0f} kB)")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--series", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--demo", type=Path, metavar="DIR", help="write the demo's report to DIR")
    args = ap.parse_args()
    if args.demo is not None:
        demo(args.demo)
        return
    bench(args.hours, args.series, args.runs)


if __name__ == "__main__":
    sys.exit(main())
