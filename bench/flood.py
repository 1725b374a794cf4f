"""The console under a flood: StatsD lines pushed into its socket as fast as a sender can.

python bench/flood.py [--seconds 60] [--presses 10] [--series 10]

Starts `vtmon` as a user runs it (history on, in a temporary folder) in a detached 200x50
tmux session, then a sender process writes StatsD lines on one stream connection as fast as
the socket takes them for ``--seconds`` (timings of ``--series`` series, as bench/ingest.py
sends them). Meanwhile, from this process:

- every 250 ms a second connection asks for the ``snapshot`` and keeps each new Snapshot's
  time ``t``: the largest step between consecutive ones is the longest the screen (which is
  fed the same Snapshots) went without news;
- ``--presses`` times, spread over the flood, ``?`` is sent with ``tmux send-keys`` and the
  pane is read until the help screen shows, then ``?`` again until it is gone: each is the
  time from a key press to the screen answering it (worst and median);
- the console's resident memory is read every second: flat means the largest reading of the
  last 20 s is no more than a few MB above that of the first 20 s (a queue growing without
  bound would show here; the socket's back-pressure must slow the sender instead);
- at the end, the lines sent are compared with what vtmon counted (accepted + rejected,
  the ``ingest`` method): on a stream socket none may be lost.

Needs tmux.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time

from common import machine, result, rpc
from console import Console, compile_vtmon, counted, need_tmux, statsd_lines, vtmon_command

HELP_TITLE = "vtmon keys"  # the help screen's border title
FLAT_MB = 5.0  # "flat": the last 20 s may not exceed the first 20 s by more than this
WINDOW_S = 20.0
# Each Snapshot lives a second: asking four times a second sees every one (their own times
# ``t`` give the gaps), and asks little of the process measured.
POLL_S = 0.25


def flooder(
    path: str, seconds: float, series: int, sent: mp.Value, ready: mp.Event, go: mp.Event
) -> None:
    """Whole lines, as fast as the socket takes them, for ``seconds``; ``sent`` counts them."""
    lines = 8192
    payloads = [statsd_lines(lines, series, start=i * lines) for i in range(4)]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    ready.set()
    go.wait()
    end = time.monotonic() + seconds
    k = 0
    while time.monotonic() < end:
        s.sendall(payloads[k % len(payloads)])  # blocks while vtmon is behind: back-pressure
        k += 1
        with sent.get_lock():
            sent.value += lines
    s.close()


class Watch(threading.Thread):
    """Polls in the background until stopped: Snapshot times, memory, the ingest queue."""

    def __init__(self, sock: str, pid_rss: callable) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.rss_of = pid_rss
        self.stop = threading.Event()
        self.snap_t: list[float] = []
        self.rpc_s: list[float] = []  # round trip of each snapshot request
        self.rss: list[tuple[float, int]] = []
        self.queued = 0
        self.dropped = 0

    def run(self) -> None:
        next_rss = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_rss:
                next_rss = now + 1.0
                self.rss.append((now, self.rss_of()))
                ing = rpc(self.sock, "ingest")
                self.queued = max(self.queued, int(ing.get("queued_batches", 0)))
                self.dropped = int(ing.get("samples_dropped", 0))
            t0 = time.monotonic()
            t = rpc(self.sock, "snapshot")["t"]
            self.rpc_s.append(time.monotonic() - t0)
            if not self.snap_t or t != self.snap_t[-1]:
                self.snap_t.append(t)
            self.stop.wait(POLL_S)


def press(c: Console, key: str, *, shown: bool) -> float:
    """Seconds from sending ``key`` until the help screen is shown (or gone)."""
    t0 = time.monotonic()
    c.keys(key)
    return c.wait_for(HELP_TITLE, timeout=10, gone=not shown) - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the flood lasts")
    ap.add_argument("--presses", type=int, default=10, help="help screen opened and closed")
    ap.add_argument("--series", type=int, default=10, help="as bench/ingest.py sends")
    args = ap.parse_args()
    if not need_tmux("bench/flood.py"):
        return
    compile_vtmon()
    tmp = tempfile.mkdtemp(prefix="vtmon-bench-")
    sock = os.path.join(tmp, "flood.sock")
    c = Console("flood", vtmon_command(sock, "--data-dir", tmp))
    sender: mp.Process | None = None
    try:
        c.first_frame()
        proc = c.proc
        time.sleep(2.0)
        base = counted(sock)
        sent = mp.Value("q", 0)
        ready, go = mp.Event(), mp.Event()
        sender = mp.Process(target=flooder, args=(sock, args.seconds, args.series, sent, ready, go))
        sender.start()
        ready.wait(10)
        watch = Watch(sock, lambda: proc.memory_info().rss)
        cpu0 = sum(proc.cpu_times()[:2])
        t_start = time.monotonic()
        go.set()
        watch.start()

        latencies: list[float] = []
        step = args.seconds / (args.presses + 1)
        for i in range(args.presses):
            wait = t_start + step * (i + 0.5) - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            latencies.append(press(c, "?", shown=True))
            latencies.append(press(c, "?", shown=False))

        sender.join(args.seconds + 30)
        flood_s = time.monotonic() - t_start
        cpu = (sum(proc.cpu_times()[:2]) - cpu0) / flood_s * 100
        lines_sent = sent.value
        # Every line sent must be counted; give the engine a moment to apply the last batches.
        deadline = time.monotonic() + 30
        got = counted(sock) - base
        while got < lines_sent and time.monotonic() < deadline:
            time.sleep(0.2)
            got = counted(sock) - base
        watch.stop.set()
        watch.join(10)

        steps = [b - a for a, b in zip(watch.snap_t, watch.snap_t[1:], strict=False)]
        gap = max(steps) if steps else float("inf")
        t_first = watch.rss[0][0]
        first = [r for t, r in watch.rss if t - t_first <= WINDOW_S]
        last = [r for t, r in watch.rss if t >= watch.rss[-1][0] - WINDOW_S]
        rss_a, rss_b = max(first) / 2**20, max(last) / 2**20
        ms = sorted(x * 1000 for x in latencies)
        worst, median = ms[-1], statistics.median(ms)

        print(f"machine: {machine()}")
        print(f"vtmon console, 200x50 tmux, StatsD flood on one stream connection, {flood_s:.0f} s")
        print(
            f"lines sent                     {lines_sent:,} ({lines_sent / flood_s / 1e6:.2f} "
            "M lines/s: what the socket took)"
        )
        print(f"lines counted by vtmon         {got:,} (samples dropped: {watch.dropped:,})")
        print(f"largest gap between Snapshots  {gap:.2f} s ({len(watch.snap_t)} Snapshots seen)")
        print(f"snapshot request round trip    {max(watch.rpc_s) * 1000:.0f} ms at most")
        print(f"key press to screen            worst {worst:.0f} ms, median {median:.0f} ms")
        each = ", ".join(f"{x:.0f}" for x in ms)
        print(f"                               ({len(ms)} presses, ms: {each})")
        print(f"resident memory                first {WINDOW_S:.0f} s max {rss_a:.1f} MB, "
              f"last {WINDOW_S:.0f} s max {rss_b:.1f} MB")  # fmt: skip
        print(f"engine queue                   at most {watch.queued} batches waiting")
        print(f"console CPU                    {cpu:.0f} % of a core")

        result(
            "flood: largest gap between Snapshots",
            "<= 1.2 s",
            f"{gap:.2f} s",
            ok=gap <= 1.2,
        )
        result(
            "flood: key press to screen, worst (median)",
            "<= 200 ms",
            f"{worst:.0f} ms ({median:.0f} ms), {len(ms)} presses",
            ok=worst <= 200,
        )
        result(
            "flood: resident memory, first 20 s -> last 20 s",
            f"flat (+{FLAT_MB:.0f} MB at most)",
            f"{rss_a:.1f} -> {rss_b:.1f} MB (engine queue <= {watch.queued} batches)",
            ok=rss_b - rss_a <= FLAT_MB,
        )
        result(
            "flood: lines sent = lines counted",
            "equal",
            f"{lines_sent:,} sent, {got:,} counted ({lines_sent / flood_s / 1e6:.2f} M/s)",
            ok=got == lines_sent,
        )
    finally:
        if sender is not None and sender.is_alive():
            sender.terminate()
        c.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
