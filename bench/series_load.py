"""The load bench/series.py puts on vtmon and on netdata, and how it reads their processes.

N StatsD timing series (``svc.endpoint_0042.latency:12.31|ms|#component:comp07``, over 20
components, each with a typical latency of its own) from one sender process over one stream
connection (vtmon's Unix socket, or netdata's statsd over TCP), at a rate per series spread
evenly over each second; a process's CPU and resident memory, with its children's.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import multiprocessing.synchronize
import random
import socket
import time
from dataclasses import dataclass

import psutil

COMPONENTS = 20
TICK_S = 0.02  # the sender writes what is due every tick: evenly spread, not a burst a second


def series_lines(n: int, seed: int = 1) -> tuple[list[bytes], list[float]]:
    """The N line heads (``name:``) with their tails (``|ms|#component:...``) already joined
    by a ``%.2f`` slot, and each series' typical latency in ms."""
    rng = random.Random(seed)
    width = max(4, len(str(n - 1)))
    heads = [
        b"svc.endpoint_%0*d.latency:%%.2f|ms|#component:comp%02d\n" % (width, i, i % COMPONENTS)
        for i in range(n)
    ]
    typical = [rng.lognormvariate(math.log(20), 0.8) for _ in range(n)]
    return heads, typical


def sender(
    address: str | tuple[str, int],
    n: int,
    rate: float,
    stop: mp.synchronize.Event,
    ready: mp.synchronize.Event,
    out: mp.Queue,
) -> None:
    """Send the lines of N series at ``rate`` per series per second until ``stop``; put
    (lines sent, the connection's own counts or None, start time, error or "")."""
    heads, typical = series_lines(n)
    rng = random.Random(2)
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(address)
    per_s = n * rate
    sent, error, counts = 0, "", None
    ready.set()
    t0 = time.monotonic()
    t0_wall = time.time()
    next_tick = t0
    try:
        while not stop.is_set():
            due = int((time.monotonic() - t0) * per_s)
            if due > sent:
                chunk = [
                    heads[i % n] % (typical[i % n] * rng.lognormvariate(0, 0.3))
                    for i in range(sent, due)
                ]
                s.sendall(b"".join(chunk))
                sent = due
            next_tick += TICK_S
            time.sleep(max(0.0, next_tick - time.monotonic()))
        if family == socket.AF_UNIX:
            counts = ask_counts(s)
    except OSError as e:
        error = f"{type(e).__name__}: {e}"
    finally:
        s.close()
    out.put((sent, counts, t0_wall, error))


def ask_counts(s: socket.socket) -> dict:
    """The connection's own counts (`connection.stats`), asked after its last line."""
    s.sendall(b'{"jsonrpc":"2.0","id":"stats","method":"connection.stats"}\n')
    buf = b""
    while not buf.endswith(b"\n"):
        data = s.recv(1 << 16)
        if not data:
            raise ConnectionError("vtmon closed the connection before answering")
        buf += data
    return json.loads(buf)["result"]


@dataclass
class Load:
    """The sender process, started and released."""

    proc: mp.Process
    stop: mp.synchronize.Event
    out: mp.Queue

    @classmethod
    def start(cls, address: str | tuple[str, int], n: int, rate: float) -> Load:
        stop, ready = mp.Event(), mp.Event()
        out: mp.Queue = mp.Queue()
        p = mp.Process(target=sender, args=(address, n, rate, stop, ready, out), daemon=True)
        p.start()
        if not ready.wait(30):
            p.kill()
            raise SystemExit(f"the sender could not connect to {address}")
        return cls(p, stop, out)

    def finish(self) -> tuple[int, dict | None, float, str]:
        self.stop.set()
        got = self.out.get(timeout=60)
        self.proc.join(10)
        return got


# -- reading a process ---------------------------------------------------------------------


def tree(p: psutil.Process) -> list[psutil.Process]:
    try:
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_s(p: psutil.Process) -> float:
    """User + system CPU seconds of ``p`` and its children alive now."""
    total = 0.0
    for q in tree(p):
        try:
            t = q.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def rss_mb(p: psutil.Process) -> float:
    total = 0
    for q in tree(p):
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def measure(p: psutil.Process, seconds: float) -> tuple[float, float]:
    """CPU (% of one core) and the largest RSS (MB, read every second) over ``seconds``."""
    c0, w0 = cpu_s(p), time.monotonic()
    end = w0 + seconds
    most = rss_mb(p)
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        most = max(most, rss_mb(p))
    return 100 * (cpu_s(p) - c0) / (time.monotonic() - w0), most
