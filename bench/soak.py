"""Soak: good and hostile clients at once, for minutes, against one `vtmon serve`.

python bench/soak.py [--seconds 600] [--connections 50] [--series 50] [--without KINDS]

Starts `vtmon serve` as a user runs it (history on, in a temporary folder) and keeps
``--connections`` client connections busy for ``--seconds``, from worker processes:

- good senders (most of them): StatsD timings and JSON lines over ``--series`` series each,
  at a steady rate, and one `vtmon.client` sending binary frames;
- hostile senders: lines of random bytes, bad UTF-8, NUL, over-long lines, NaN, infinities,
  numbers beyond the float range, sample rates of 0 and 1e-300, gauge deltas that overflow,
  event and check times far out of range, deep JSON;
- hoarders: JSON-RPC `snapshot` requests written without ever reading an answer;
- stallers: a length-prefixed packet (or a binary frame) begun and never finished;
- churners: connections opened and closed as fast as they go;
- RPC abusers: batches, requests without "jsonrpc", over-long requests, bad params; each
  request with an id must get an answer.

Every line-sending connection asks vtmon for its own counts (`connection.stats`) before it
closes: accepted + rejected must equal the lines it sent. Meanwhile this process reads
vtmon's resident memory, open file descriptors and threads every 30 s, and the Snapshot's
time four times a second (the largest gap between Snapshots; a request that fails counts
against it). Memory is judged after the first five minutes (the longest window fills until
then), or after half the run if it is shorter: the largest reading after that may be at
most 10 % above the first one after it.

This is about hostile input at a load the engine carries; how many series it carries is
bench/engine.py's subject.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import psutil
from common import machine, result, rpc, serving

READ_EVERY_S = 30.0
WARM_S = 300.0  # the five-minute windows fill until then
FLAT = 0.10
POLL_S = 0.25
SERIES = 50  # series per good sender kind: robustness here, not many series


# -- what a connection sends ------------------------------------------------------------


def good_statsd(rng: random.Random, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        i = rng.randrange(SERIES)
        v = rng.lognormvariate(3, 0.5)
        out.append(b"soak.api%d.request_latency:%.2f|ms|#component:soak%d" % (i, v, i % 4))
    return out


def good_json(rng: random.Random, n: int) -> list[bytes]:
    return [
        json.dumps(
            {
                "name": f"soak.json{rng.randrange(SERIES)}.duration",
                "value": round(rng.lognormvariate(3, 0.5), 3),
                "context": {"component": "soak-json", "requestId": f"r-{rng.getrandbits(32):x}"},
            }
        ).encode()
        for _ in range(n)
    ]


HOSTILE_FIXED = [
    b"_e{1,1}:a|b|d:1e308",
    b"_sc|chk|0|d:-1e300",
    b"soak.rate:1|c|@1e-300",
    b"soak.rate:1|c|@0",
    b"soak.rate:1|c|@-1",
    b"soak.gauge:+1e308|g",
    b"soak.gauge:+1e308|g",
    b"soak.big:1e308|ms",
    b"soak.nan:nan|ms",
    b"soak.inf:1e999|c",
    b"soak.t:1|ms|T99999999999999",
    b'{"name":"soak.j","value":1e400}',
    b'{"name":"soak.j","value":1,"timestamp":1e30}',
    b'{"name":"soak.j","value":' + b"9" * 400 + b"}",
    b"[" * 5000 + b"]" * 5000,
    b"soak.\xff\xfe:1|ms",
    b"soak.nul\x00:1|ms",
    b"soak.tags:1|ms|#" + b"k:v," * 2000,
    b"x" * 100_000,  # longer than a line may be
]


def hostile(rng: random.Random, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            out.append(rng.choice(HOSTILE_FIXED))
        else:
            raw = os.urandom(rng.randrange(1, 200)).replace(b"\n", b"?")
            out.append(b"r" + raw)  # never blank: every line sent is a line counted
    return out


def block(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


# -- the workers ---------------------------------------------------------------------------


@dataclass
class Tally:
    lines_sent: int = 0
    lines_counted: int = 0
    mismatches: list[str] = field(default_factory=list)
    rpc_sent: int = 0
    rpc_answered: int = 0
    closed_by_vtmon: int = 0
    connections: int = 0
    errors: list[str] = field(default_factory=list)


def connect(path: str, timeout: float = 30.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def ask(s: socket.socket, method: str, rid: str, buf: bytearray) -> dict:
    """One request on ``s``; its answer (others before it are skipped)."""
    s.sendall(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method}).encode() + b"\n")
    while True:
        while b"\n" not in buf:
            data = s.recv(1 << 16)
            if not data:
                raise ConnectionError("vtmon closed the connection before answering")
            buf.extend(data)
        i = buf.index(b"\n")
        line = bytes(buf[:i])
        del buf[: i + 1]
        msg = json.loads(line)
        if msg.get("id") == rid:
            return msg


def line_sender(path: str, make, rate: float, end: float, seed: int, t: Tally) -> None:
    """Rounds of ~1 s of lines on one connection, then its counts checked, then a new one."""
    rng = random.Random(seed)
    while time.monotonic() < end:
        t.connections += 1
        s = connect(path)
        buf = bytearray()
        sent = 0
        try:
            s.sendall(b"soak.first:1|c\n")  # the first bytes choose newline framing
            sent += 1
            for _ in range(10):
                lines = make(rng, max(1, int(rate / 10)))
                s.sendall(block(lines))
                sent += len(lines)
                time.sleep(0.1)
            got = ask(s, "connection.stats", "stats", buf)["result"]
            counted = got["accepted"] + sum(got["rejected"].values())
            t.lines_sent += sent
            t.lines_counted += counted
            if counted != sent:
                t.mismatches.append(f"sent {sent}, counted {counted}: {got}")
        except (OSError, ValueError) as e:
            t.errors.append(f"line sender: {e}")
        finally:
            s.close()


def hoarder(path: str, end: float, t: Tally) -> None:
    """Snapshot requests, never reading: vtmon must close the connection, not hold them."""
    req = b'{"jsonrpc":"2.0","id":1,"method":"snapshot"}\n' * 64
    while time.monotonic() < end:
        t.connections += 1
        s = connect(path, timeout=5.0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            while time.monotonic() < end:
                s.sendall(req)
                time.sleep(0.01)
        except TimeoutError:
            pass  # vtmon stopped reading this connection: it is slowed down, as it should be
        except OSError:
            t.closed_by_vtmon += 1
        finally:
            s.close()
        time.sleep(0.5)


def staller(path: str, end: float, seed: int, t: Tally) -> None:
    """A frame begun and never finished, then silence until vtmon gives up on it."""
    rng = random.Random(seed)
    while time.monotonic() < end:
        t.connections += 1
        s = connect(path)
        try:
            if rng.random() < 0.5:
                n = 8 * 1024 * 1024 - 1
                s.sendall(struct.pack("<I", n) + b"x" * rng.randrange(1, 1 << 20))
            else:
                s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"hello","params":'
                          b'{"format":"vtmon-binary/1"}}\n')  # fmt: skip
                s.sendall(b"VT\x02\x00" + struct.pack("<I", 1 << 20) + b"\x00" * 1000)
            s.settimeout(max(1.0, end - time.monotonic()))
            while s.recv(1 << 16):
                pass
            t.closed_by_vtmon += 1
        except TimeoutError:
            pass
        except OSError:
            t.closed_by_vtmon += 1
        finally:
            s.close()


def churner(path: str, end: float, t: Tally) -> None:
    """A line, its count asked for, closed; again, as fast as it goes."""
    while time.monotonic() < end:
        try:
            s = connect(path, timeout=5.0)
            t.connections += 1
            s.sendall(b"soak.churn:1|c\n")
            got = ask(s, "connection.stats", "stats", bytearray())["result"]
            s.close()
            counted = got["accepted"] + sum(got["rejected"].values())
            t.lines_sent += 1
            t.lines_counted += counted
            if counted != 1:
                t.mismatches.append(f"churner: sent 1, counted {counted}")
        except (OSError, ValueError) as e:
            t.errors.append(f"churner: {e}")
            time.sleep(0.1)


ABUSE = [
    b'[{"jsonrpc":"2.0","id":"b1","method":"ping"},{"jsonrpc":"2.0","id":"b2","method":"ping"}]',
    b'{"id":"n1","method":"snapshot"}',
    b'{"jsonrpc":"2.0","id":"p1","method":"client.dropped","params":{"count":' + b"9" * 400 + b"}}",
    b'{"jsonrpc":"2.0","id":"p2","method":"actions.approve","params":{"id":[1,2]}}',
    b'{"jsonrpc":"2.0","id":"p3","method":"tuner.mode","params":{"actuator":1,"mode":null}}',
    b'{"jsonrpc":"2.0","id":"p4","method":"knobs.register","params":{"name":"x","value":1e999}}',
    b'{"jsonrpc":"2.0","id":"p5","method":"no.such.method"}',
    b'{"jsonrpc":"2.0","id":"l1","method":"ping","params":{"pad":"' + b"x" * 70_000 + b'"}}',
]


def abuser(path: str, end: float, t: Tally) -> None:
    """Requests that deserve an error: each with an id must be answered."""
    while time.monotonic() < end:
        t.connections += 1
        s = connect(path, timeout=10.0)
        buf = bytearray()
        try:
            for req in ABUSE:
                s.sendall(req + b"\n")
                t.rpc_sent += 1
                while b"\n" not in buf:
                    data = s.recv(1 << 16)
                    if not data:
                        raise ConnectionError("closed without answering")
                    buf.extend(data)
                del buf[: buf.index(b"\n") + 1]
                t.rpc_answered += 1
        except (OSError, ValueError) as e:
            t.errors.append(f"abuser: {e}")
        finally:
            s.close()
        time.sleep(0.2)


def client_sender(path: str, end: float, t: Tally) -> None:
    from vtmon.client import Client

    c = Client(path)
    n = 0
    rng = random.Random(7)
    while time.monotonic() < end:
        for _ in range(1000):
            c.record(f"soak.client{rng.randrange(20)}.latency", rng.lognormvariate(3, 0.5))
        n += 1000
        time.sleep(0.1)
    c.close()
    t.connections += 1
    if c.dropped:  # samples, not lines: judged by the client's own count of what it dropped
        t.errors.append(f"vtmon.client dropped {c.dropped} of {n} samples")


def worker(path: str, plan: list[tuple[str, int]], seconds: float, out: mp.Queue) -> None:
    """Run the connections of ``plan`` (kind, seed) as threads, each with a Tally of its own
    (no count shared between threads); put their sums per kind."""
    end = time.monotonic() + seconds
    tallies: list[tuple[str, Tally]] = []
    threads = []
    for kind, seed in plan:
        t = Tally()
        tallies.append((kind, t))
        if kind == "statsd":
            args = (line_sender, (path, good_statsd, 2000, end, seed, t))
        elif kind == "json":
            args = (line_sender, (path, good_json, 500, end, seed, t))
        elif kind == "hostile":
            args = (line_sender, (path, hostile, 200, end, seed, t))
        elif kind == "hoarder":
            args = (hoarder, (path, end, t))
        elif kind == "staller":
            args = (staller, (path, end, seed, t))
        elif kind == "churner":
            args = (churner, (path, end, t))
        elif kind == "abuser":
            args = (abuser, (path, end, t))
        else:
            args = (client_sender, (path, end, t))
        th = threading.Thread(target=args[0], args=args[1], daemon=True)
        th.start()
        threads.append(th)
    for th in threads:
        th.join(seconds + 120)
    sums: dict[str, dict] = {}
    for kind, t in tallies:
        add_up(sums, kind, t.__dict__)
    out.put(sums)


def add_up(sums: dict[str, dict], kind: str, counts: dict) -> None:
    """Add one tally's counts (numbers, and lists of what went wrong) to ``sums[kind]``."""
    into = sums.setdefault(kind, {})
    for k, v in counts.items():
        into[k] = into.get(k, [] if isinstance(v, list) else 0) + v


def plan_for(connections: int) -> list[tuple[str, int]]:
    """The mix, scaled to ``connections``: most are good senders."""
    shares = [
        ("statsd", 0.40),
        ("json", 0.16),
        ("hostile", 0.16),
        ("hoarder", 0.08),
        ("staller", 0.08),
        ("churner", 0.04),
        ("abuser", 0.06),
    ]
    plan: list[tuple[str, int]] = [("client", 0)]
    for kind, share in shares:
        plan += [(kind, i) for i in range(max(1, round(connections * share)))]
    return plan[:connections]


# -- watching vtmon --------------------------------------------------------------------------


class Watch(threading.Thread):
    def __init__(self, sock: str, proc: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.sock, self.proc = sock, proc
        self.stop = threading.Event()
        self.snap_t: list[float] = []
        self.readings: list[tuple[float, float, int, int]] = []  # s, RSS MB, fds, threads
        self.rpc_max = 0.0
        self.failures: list[str] = []
        self.t0 = time.monotonic()

    def read(self) -> None:
        p = self.proc
        rss = p.memory_info().rss / 2**20
        self.readings.append((time.monotonic() - self.t0, rss, p.num_fds(), p.num_threads()))
        r = self.readings[-1]
        print(f"  {r[0]:5.0f} s  RSS {r[1]:6.1f} MB  fds {r[2]:4d}  threads {r[3]:3d}", flush=True)

    def run(self) -> None:
        next_read = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_read:
                next_read = now + READ_EVERY_S
                self.read()
            t0 = time.monotonic()
            try:
                t = rpc(self.sock, "snapshot", timeout=10)["t"]
            except (OSError, RuntimeError, ValueError) as e:
                self.failures.append(str(e))
            else:
                self.rpc_max = max(self.rpc_max, time.monotonic() - t0)
                if not self.snap_t or t != self.snap_t[-1]:
                    self.snap_t.append(t)
            self.stop.wait(POLL_S)


def counted(sock: str) -> int:
    ing = rpc(sock, "ingest")
    return int(ing["accepted"]) + sum(ing["rejected"].values())


def main() -> None:
    global SERIES
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="how long the soak lasts")
    ap.add_argument("--connections", type=int, default=50, help="client connections at once")
    ap.add_argument("--series", type=int, default=SERIES, help="series of each good kind")
    ap.add_argument("--without", default="", help="kinds left out, e.g. hoarder,staller")
    args = ap.parse_args()
    SERIES = args.series  # the workers are forked: they see it
    left_out = set(filter(None, args.without.split(",")))
    plan = [p for p in plan_for(args.connections) if p[0] not in left_out]
    with serving() as (sock, popen, _tmp):
        proc = psutil.Process(popen.pid)
        base = counted(sock)
        watch = Watch(sock, proc)
        watch.start()
        out: mp.Queue = mp.Queue()
        half = len(plan) // 2
        workers = [
            mp.Process(target=worker, args=(sock, part, args.seconds, out))
            for part in (plan[:half], plan[half:])
        ]
        t_start = time.monotonic()
        for w in workers:
            w.start()
        tallies: dict[str, dict] = {}
        for _ in workers:
            for kind, t in out.get(timeout=args.seconds + 300).items():
                add_up(tallies, kind, t)
        for w in workers:
            w.join(30)
        soak_s = time.monotonic() - t_start
        watch.read()
        watch.stop.set()
        watch.join(15)
        alive = popen.poll() is None
        try:
            total = counted(sock) - base  # every client's lines, for the record
        except (OSError, RuntimeError, ValueError) as e:
            alive, total = False, -1
            print(f"vtmon did not answer at the end: {e}")

    steps = [b - a for a, b in zip(watch.snap_t, watch.snap_t[1:], strict=False)]
    gap = max(steps) if steps else math.inf
    lines_sent = sum(t.get("lines_sent", 0) for t in tallies.values())
    per_conn = sum(t.get("lines_counted", 0) for t in tallies.values())
    mismatches = [m for t in tallies.values() for m in t.get("mismatches", [])]
    errors = [e for t in tallies.values() for e in t.get("errors", [])]
    rpc_sent = tallies.get("abuser", {}).get("rpc_sent", 0)
    rpc_answered = tallies.get("abuser", {}).get("rpc_answered", 0)
    warm = [r for r in watch.readings if r[0] >= min(WARM_S, soak_s / 2)]
    first, most = (warm[0][1], max(r[1] for r in warm)) if warm else (math.nan, math.nan)
    fds = [r[2] for r in watch.readings]
    threads = [r[3] for r in watch.readings]

    print(f"machine: {machine()}")
    print(f"vtmon serve, {len(plan)} connections for {soak_s:.0f} s:")
    for kind, t in sorted(tallies.items()):
        conns, lines = t.get("connections", 0), t.get("lines_sent", 0)
        closed = t.get("closed_by_vtmon", 0)
        print(f"  {kind:8s} connections {conns:6,}  lines {lines:9,}  closed by vtmon {closed:5,}")
    print(f"vtmon still running            {alive}")
    print(f"lines sent (line senders)      {lines_sent:,}")
    print(f"lines counted for them         {per_conn:,} (each connection's own counts)")
    print(f"lines counted in all           {total:,} (with the hoarders', stallers', abusers')")
    print(f"connections whose counts differ {len(mismatches)} {mismatches[:3]}")
    print(f"RPC requests answered          {rpc_answered:,} of {rpc_sent:,} (abusers)")
    print(f"client errors                  {len(errors)} {errors[:3]}")
    print(f"largest gap between Snapshots  {gap:.2f} s ({len(watch.snap_t)} Snapshots seen)")
    print(f"snapshot round trip            {watch.rpc_max * 1000:.0f} ms at most")
    print(f"snapshot requests that failed  {len(watch.failures)} {watch.failures[:3]}")
    print(f"resident memory after warm-up  {first:.1f} MB first, {most:.1f} MB at most")
    print(f"open fds                       {min(fds)}..{max(fds)}")
    print(f"threads                        {min(threads)}..{max(threads)}")

    flat = most <= first * (1 + FLAT)
    result("soak: vtmon alive, lines sent = counted", "equal", f"{per_conn:,} of {lines_sent:,}",
           ok=alive and per_conn == lines_sent and not mismatches)  # fmt: skip
    result("soak: resident memory after warm-up", "flat (+10 % at most)",
           f"{first:.1f} -> {most:.1f} MB", ok=flat)  # fmt: skip
    result("soak: RPC requests answered", "all", f"{rpc_answered} of {rpc_sent}",
           ok=rpc_answered == rpc_sent)  # fmt: skip
    failed = f", {len(watch.failures)} requests failed" if watch.failures else ""
    result("soak: largest gap between Snapshots", "<= 2 s", f"{gap:.2f} s{failed}",
           ok=gap <= 2.0 and not watch.failures)  # fmt: skip
    result("soak: fds, threads", "bounded", f"fds <= {max(fds)}, threads <= {max(threads)}")


if __name__ == "__main__":
    main()
