"""What the console itself costs: CPU share and memory of `vtmon` in a 200x50 tmux terminal.

python bench/console.py [--seconds 30] [--load-seconds 20] [--rate 100000]
                        [--series 10000] [--series-warmup 20]

Starts, each in its own detached 200x50 tmux session and on its own socket: `vtmon` as a user
runs it (history on, in a temporary folder), `vtmon --no-history`, and, as the baseline in the
same run, a minimal Textual app that refreshes one table and one sparkline each second. It
reports vtmon's first frame, lets everything settle, then measures each process's CPU time
and resident memory over the same ``--seconds`` with no metrics arriving: the cost a person
pays for leaving the console open. Then a paced sender puts ``--rate`` StatsD samples a second
on the socket of the first console (every 10 ms a batch of lines) and the console's CPU share
is measured again over ``--load-seconds``.

Then, with ``--series N`` (0: skipped), the same with N series present: a sender process puts
N StatsD timing series on the socket (``svc.endpoint_00042.latency``, over 20 components, one
sample per series per second, spread evenly over each second: bench/series_load.py). First
`vtmon serve` (history on) gets them, as the baseline: the engine's own cost with N series.
Then a fresh console (history on, its own socket) gets them; after ``--series-warmup``
seconds (every series registered, its windows filling, the rows on screen) its CPU is
measured over ``--seconds`` while the samples go on at one a second each, then again under the
flood of ``--rate`` samples/s on top. The console's CPU less `vtmon serve`'s is what the
screen costs with N series. Needs tmux.

The consoles run the vtmon the bench imports (PYTHONPATH is passed on to them, so that old
code unpacked elsewhere can be measured the same way).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from common import machine, result, rpc, serving
from series_load import Load, measure

from vtmon.config import Config

WIDTH, HEIGHT = 200, 50
# Textual, numpy and plotext alone import to about 51 MB (docs/performance.md).
RSS_GOAL_MB = 75.0
SETTLE_S = 5.0  # first readings, themes, charts drawn

# The peer the console is compared with: one table cleared and refilled, one sparkline, each second.
MINIMAL_APP = """
import random
from textual.app import App
from textual.widgets import DataTable, Sparkline


class Minimal(App):
    def compose(self):
        yield DataTable()
        yield Sparkline([])

    def on_mount(self):
        self.query_one(DataTable).add_columns("name", "value")
        self.set_interval(1.0, self.tick)

    def tick(self):
        table = self.query_one(DataTable)
        table.clear()
        for i in range(20):
            table.add_row(f"row {i}", f"{random.random():.3f}")
        self.query_one(Sparkline).data = [random.random() for _ in range(60)]


Minimal().run()
"""


def counted(path: str) -> int:
    """Lines vtmon has counted so far: accepted and rejected (every line is one or the other)."""
    ing = rpc(path, "ingest")
    return int(ing["accepted"]) + sum(int(n) for n in ing["rejected"].values())


def statsd_lines(n: int, series: int = 24, start: int = 0) -> bytes:
    """``n`` StatsD timing lines over ``series`` series in 4 components, values spread so the
    percentiles on screen move."""
    out = []
    for i in range(start, start + n):
        c = i % series
        out.append(
            f"bench.s{c}.request_latency:{(i * 7919 % 1000) * 0.29 + 0.5:.2f}|ms"
            f"|#component:svc{c % 4}"
        )
    return ("\n".join(out) + "\n").encode()


def compile_vtmon() -> None:
    """vtmon's bytecode, as an installed vtmon has it (see Console)."""
    import vtmon

    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", os.path.dirname(vtmon.__file__)], check=True
    )


class Console:
    """A command in its own detached WIDTHxHEIGHT tmux session, and the process it runs."""

    def __init__(self, name: str, command: list[str]) -> None:
        self.session = f"vtmon-bench-{name}-{os.getpid()}"
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)
        self.started = time.monotonic()
        # As a user's installed vtmon runs: from its compiled bytecode (a development shell
        # may set PYTHONDONTWRITEBYTECODE, which makes every start compile from source).
        env = "env -u PYTHONDONTWRITEBYTECODE"
        if os.environ.get("PYTHONPATH"):  # the tmux server has its own environment
            env += " " + shlex.quote("PYTHONPATH=" + os.environ["PYTHONPATH"])
        line = f"{env} {shlex.join(command)}"  # through the shell
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.session, "-x", str(WIDTH), "-y", str(HEIGHT),
             line],
            check=True,
        )  # fmt: skip
        self._proc: psutil.Process | None = None

    @property
    def proc(self) -> psutil.Process:
        """The process the pane runs (not the shell that may start it)."""
        if self._proc is None:
            pane = int(self.tmux("display-message", "-p", "#{pane_pid}").strip())
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                for p in [psutil.Process(pane), *psutil.Process(pane).children(recursive=True)]:
                    try:
                        if p.name().startswith("python") or "python" in p.cmdline()[0]:
                            self._proc = p
                            return p
                    except (psutil.NoSuchProcess, IndexError):
                        continue
                time.sleep(0.05)
            raise SystemExit(f"{self.session}: no process started")
        return self._proc

    def tmux(self, command: str, *args: str) -> str:
        return subprocess.run(
            ["tmux", command, "-t", self.session, *args], capture_output=True, text=True
        ).stdout

    def pane(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.session], capture_output=True, text=True
        ).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.session, *keys], check=True)

    def wait_for(self, *texts: str, timeout: float = 20.0, gone: bool = False) -> float:
        """When (monotonic) the pane first shows all ``texts`` (or none, ``gone``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pane = self.pane()
            shown = all(t in pane for t in texts) if not gone else not any(t in pane for t in texts)
            if shown:
                return time.monotonic()
            time.sleep(0.005)
        raise SystemExit(f"{self.session}: {texts} not {'gone' if gone else 'shown'}:\n{pane}")

    def first_frame(self) -> float:
        """Seconds from launch until the panels are on screen."""
        return self.wait_for("Latency", "Resources") - self.started

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


def vtmon_command(sock: str, *args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("vtmon")), "--socket", sock, *args]


def need_tmux(script: str) -> bool:
    if shutil.which("tmux") is None:
        print(f"{script}: tmux is not installed; skipped (it needs a real terminal to draw in).")
        return False
    return True


class Meter:
    """CPU seconds and resident memory of some processes over the same stretch of time."""

    def __init__(self, procs: dict[str, psutil.Process]) -> None:
        self.procs = procs
        self.rss: dict[str, list[int]] = {k: [] for k in procs}
        self.t0 = time.monotonic()
        self.c0 = {k: _cpu(p) for k, p in procs.items()}

    def sample(self) -> None:
        for k, p in self.procs.items():
            self.rss[k].append(p.memory_info().rss)

    def run(self, seconds: float) -> None:
        while time.monotonic() - self.t0 < seconds:
            self.sample()
            time.sleep(1.0)
        self.wall = time.monotonic() - self.t0
        self.c1 = {k: _cpu(p) for k, p in self.procs.items()}

    def cpu_percent(self, k: str) -> float:
        return (self.c1[k] - self.c0[k]) / self.wall * 100

    def rss_mb(self, k: str) -> float:
        return max(self.rss[k]) / 2**20


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def paced_sender(path: str, rate: int, seconds: float, sent: mp.Value, go: mp.Event) -> None:
    """``rate`` lines a second as a batch every 10 ms, on one stream connection."""
    per_tick = max(1, rate // 100)
    batches = [statsd_lines(per_tick, start=i * per_tick) for i in range(8)]  # values move
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    go.wait()
    t0 = next_t = time.monotonic()
    k = 0
    while next_t - t0 < seconds:
        s.sendall(batches[k % len(batches)])
        k += 1
        with sent.get_lock():
            sent.value += per_tick
        next_t += 0.01
        wait = next_t - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    s.close()


def under_load(c: Console, sock: str, rate: int, seconds: float) -> tuple[float, float]:
    """The console's CPU share (% of a core) while ``rate`` samples/s arrive, and the rate
    vtmon counted meanwhile."""
    sent = mp.Value("q", 0)
    go = mp.Event()
    p = mp.Process(target=paced_sender, args=(sock, rate, seconds + 3.0, sent, go))
    p.start()
    go.set()
    time.sleep(3.0)  # new series registered, rows and chart on screen
    n0, t0 = counted(sock), time.monotonic()
    m = Meter({"vtmon": c.proc})
    m.run(seconds)
    n1, t1 = counted(sock), time.monotonic()
    p.join(10)
    return m.cpu_percent("vtmon"), (n1 - n0) / (t1 - t0)


@dataclass
class Many:
    """The console and `vtmon serve` with N series present (see the module docstring)."""

    series: int
    serve_cpu: float
    serve_rss: float
    cpu: float
    rss: float
    load_cpu: float
    load_rate: float
    screen: str  # the pane at the end of the quiet stretch


def series_config(folder: str, n: int) -> str:
    """A config file whose series cap leaves room for N series and the flood's own."""
    cfg = Path(folder) / "many.toml"
    cfg.write_text(f"[limits]\nmax_series = {max(Config().max_series, n + 100)}\n")
    return str(cfg)


def warm_up(sock: str, n: int, seconds: float) -> None:
    """Wait ``seconds`` and until vtmon has counted a line of every series."""
    deadline = time.monotonic() + max(seconds, 60.0)
    time.sleep(seconds)
    while counted(sock) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"vtmon counted {counted(sock)} of the first {n} lines")
        time.sleep(0.5)


def with_series(n: int, args: argparse.Namespace, tmp: str) -> Many:
    cfg = series_config(tmp, n)
    with serving("--config", cfg) as (path, popen, _):
        load = Load.start(path, n, 1.0)
        warm_up(path, n, args.series_warmup)
        serve_cpu, serve_rss = measure(psutil.Process(popen.pid), args.seconds)
        load.finish()
    sock = os.path.join(tmp, "many.sock")
    data = os.path.join(tmp, "many")
    os.mkdir(data)
    c = Console("many", vtmon_command(sock, "--data-dir", data, "--config", cfg))
    try:
        c.first_frame()
        load = Load.start(sock, n, 1.0)
        warm_up(sock, n, args.series_warmup)
        c.wait_for("svc.endpoint_")
        m = Meter({"vtmon": c.proc})
        m.run(args.seconds)
        screen = c.pane()
        load_cpu, load_rate = under_load(c, sock, args.rate, args.load_seconds)
        sent, counts, _, error = load.finish()
        took = None if counts is None else counts["accepted"] + sum(counts["rejected"].values())
        if error or took != sent:
            print(f"the series sender sent {sent:,} lines, vtmon took {took}; {error}")
        return Many(
            n,
            serve_cpu,
            serve_rss,
            m.cpu_percent("vtmon"),
            m.rss_mb("vtmon"),
            load_cpu,
            load_rate,
            screen,
        )
    finally:
        c.close()


def report_many(many: Many, args: argparse.Namespace) -> None:
    n = f"{many.series:,}"
    print(f"with {n} series, one sample a second each, {args.seconds:.0f} s:")
    print(f"CPU, console (history on)           {many.cpu:6.2f} % of a core")
    print(f"CPU, vtmon serve (the engine alone) {many.serve_cpu:6.2f} % of a core")
    print(f"CPU, the screen (the difference)    {many.cpu - many.serve_cpu:6.2f} % of a core")
    print(f"resident memory, console            {many.rss:6.1f} MB (max)")
    print(f"resident memory, vtmon serve        {many.serve_rss:6.1f} MB (max)")
    print(
        f"CPU at {args.rate:,} samples/s on top  {many.load_cpu:6.1f} % of a core "
        f"(vtmon counted {many.load_rate:,.0f} lines/s of both senders over "
        f"{args.load_seconds:.0f} s)"
    )  # fmt: skip
    print("the console's screen meanwhile:")
    print(many.screen)
    result(
        f"console CPU, {n} series at 1/s each, history on",
        "<= 25 % of a core",
        f"{many.cpu:.2f} % of a core",
        f"vtmon serve {many.serve_cpu:.2f} % of a core",
        ok=many.cpu <= 25.0,
    )
    result(
        f"console CPU at {args.rate // 1000}k samples/s, {n} series present",
        "<= 25 % of a core",
        f"{many.load_cpu:.1f} % of a core ({many.load_rate / 1000:.0f}k lines/s counted)",
        ok=many.load_cpu <= 25.0 and many.load_rate >= 0.9 * args.rate,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="idle measurement")
    ap.add_argument("--load-seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=int, default=100_000, help="samples/s for the loaded case")
    ap.add_argument("--series", type=int, default=10_000, help="series present (0: skip)")
    ap.add_argument("--series-warmup", type=float, default=20.0)
    args = ap.parse_args()
    if not need_tmux("bench/console.py"):
        return
    compile_vtmon()
    tmp = tempfile.mkdtemp(prefix="vtmon-bench-")
    sock, bare_sock = os.path.join(tmp, "history.sock"), os.path.join(tmp, "bare.sock")
    minimal = os.path.join(tmp, "minimal.py")
    Path(minimal).write_text(MINIMAL_APP)
    consoles: list[Console] = []
    try:
        # One at a time to the first frame, so each start has the machine to itself.
        full = Console("console", vtmon_command(sock, "--data-dir", tmp))
        consoles.append(full)
        frame = full.first_frame()
        bare = Console("bare", vtmon_command(bare_sock, "--no-history"))
        consoles.append(bare)
        bare_frame = bare.first_frame()
        peer = Console("minimal", [sys.executable, minimal])
        consoles.append(peer)
        peer.wait_for("name", "value")
        time.sleep(SETTLE_S)
        idle = Meter({"vtmon": full.proc, "no-history": bare.proc, "minimal": peer.proc})
        idle.run(args.seconds)
        bare.close()
        peer.close()
        load_cpu, load_rate = under_load(full, sock, args.rate, args.load_seconds)

        cpu, rss = idle.cpu_percent("vtmon"), idle.rss_mb("vtmon")
        bare_cpu, bare_rss = idle.cpu_percent("no-history"), idle.rss_mb("no-history")
        peer_cpu, peer_rss = idle.cpu_percent("minimal"), idle.rss_mb("minimal")
        peer_line = f"minimal Textual app {peer_cpu:.2f} % of a core"
        print(f"machine: {machine()}")
        print(f"vtmon console, {WIDTH}x{HEIGHT} tmux, idle, 1 s refresh, {idle.wall:.0f} s")
        print(
            f"first frame after launch            {frame:6.2f} s (--no-history {bare_frame:.2f} s)"
        )
        print(f"CPU, history on (as a user runs it) {cpu:6.2f} % of a core")
        print(f"CPU, --no-history                   {bare_cpu:6.2f} % of a core")
        print(f"CPU, minimal Textual app (baseline) {peer_cpu:6.2f} % of a core")
        print(f"resident memory, history on         {rss:6.1f} MB (max)")
        print(f"resident memory, --no-history       {bare_rss:6.1f} MB (max)")
        print(f"resident memory, minimal app        {peer_rss:6.1f} MB (max)")
        print(
            f"CPU at {args.rate:,} samples/s           {load_cpu:6.1f} % of a core "
            f"(vtmon counted {load_rate:,.0f} lines/s over {args.load_seconds:.0f} s)"
        )  # fmt: skip
        result("console first frame, 200x50 tmux", "<= 1 s", f"{frame:.2f} s", ok=frame <= 1.0)
        result(
            "console idle CPU, 200x50 tmux, history on",
            "<= 1.3 % of a core",
            f"{cpu:.2f} % of a core",
            peer_line,
            ok=cpu <= 1.3,
        )
        result(
            "console idle CPU, --no-history",
            "<= 1.3 % of a core",
            f"{bare_cpu:.2f} % of a core",
            ok=bare_cpu <= 1.3,
        )
        result(
            "console resident memory, history on",
            f"<= {RSS_GOAL_MB:.0f} MB",
            f"{rss:.1f} MB",
            f"minimal Textual app {peer_rss:.1f} MB",
            ok=rss <= RSS_GOAL_MB,
        )
        result(
            "console resident memory, --no-history",
            f"<= {RSS_GOAL_MB:.0f} MB",
            f"{bare_rss:.1f} MB",
            ok=bare_rss <= RSS_GOAL_MB,
        )
        result(
            f"console CPU at {args.rate // 1000}k samples/s",
            "<= 25 % of a core",
            f"{load_cpu:.1f} % of a core ({load_rate / 1000:.0f}k lines/s counted)",
            ok=load_cpu <= 25.0 and load_rate >= 0.9 * args.rate,
        )
        if args.series:
            report_many(with_series(args.series, args, tmp), args)
    finally:
        for c in consoles:
            c.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
