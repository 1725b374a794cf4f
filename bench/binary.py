"""The binary fast path end to end: float64 frames from another process into `vtmon serve`.

Measures samples/s from the first byte sent until the running instance has counted every
sample (read back through the `ingest` RPC), checks that all of them are in the sketches, and
runs in the same run two ceilings: numpy alone bucketing the same samples
into sketch keys (Sketch.add, in this process), and the raw stream socket carrying the same
bytes to a reader that discards them.

    python bench/binary.py [--samples N] [--series K] [--frame VALUES]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import socket
import struct
import tempfile
import time

import numpy as np
import psutil
from common import in_sketches, machine, result, rpc, serving, started

HELLO = b'{"jsonrpc":"2.0","id":1,"method":"hello","params":{"format":"vtmon-binary/1"}}\n'
GOAL = 20e6


def frame(ftype: int, payload: bytes) -> bytes:
    return b"VT" + bytes((ftype, 0)) + struct.pack("<I", len(payload)) + payload


def make_stream(samples: int, series: int, per_frame: int) -> tuple[bytes, bytes, np.ndarray]:
    """(declare frames, one round of values frames, the values): the round is sent again and
    again until ``samples`` went out."""
    rng = np.random.default_rng(1)
    vals = rng.lognormal(3.0, 0.8, per_frame)
    head = b"".join(
        frame(
            1, struct.pack("<IB", i, 1) + f"bench.s{i}.request_latency|#component:bench{i}".encode()
        )
        for i in range(series)
    )
    body = vals.astype("<f8").tobytes()
    round_ = b"".join(frame(2, struct.pack("<I", i) + body) for i in range(series))
    return head, round_, vals


def rounds(samples: int, series: int, per_frame: int) -> int:
    return max(1, samples // (series * per_frame))


def sender(path: str, hello: bool, head: bytes, round_: bytes, n: int, ready, go) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    if hello:
        s.sendall(HELLO)
        buf = b""
        while b"\n" not in buf:
            buf += s.recv(4096)
        assert b'"result"' in buf, buf
    s.sendall(head)
    ready.set()
    go.wait()
    view = memoryview(round_)
    for _ in range(n):
        s.sendall(view)
    s.close()


def sink(path: str, expected: int, q) -> None:
    """The raw stream socket: read into one buffer and discard."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    q.put("ready")
    c, _ = srv.accept()
    buf = bytearray(1 << 20)
    got = 0
    while got < expected:
        n = c.recv_into(buf)
        if not n:
            break
        got += n
    q.put(time.perf_counter())
    c.close()
    srv.close()


def bench_socket(head: bytes, round_: bytes, n: int) -> float:
    tmp = tempfile.mkdtemp(prefix="vtmon-bench-")
    path = os.path.join(tmp, "sink.sock")
    q: mp.Queue = mp.Queue()
    total = len(head) + len(round_) * n
    srv = mp.Process(target=sink, args=(path, total, q))
    srv.start()
    q.get(timeout=20)
    p, t0 = started(sender, path, False, head, round_, n)
    t1 = q.get(timeout=120)
    p.join()
    srv.join()
    shutil.rmtree(tmp, ignore_errors=True)
    return len(round_) * n / (t1 - t0)  # bytes/s


def bench_numpy(vals: np.ndarray, total: int) -> float:
    from vtmon.sketch import Sketch

    s = Sketch()
    reps = max(1, total // vals.size)
    t0 = time.perf_counter()
    for _ in range(reps):
        s.add(vals)
    return reps * vals.size / (time.perf_counter() - t0)


def bench_vtmon(head: bytes, round_: bytes, n: int, samples: int) -> dict:
    with serving() as (path, proc, _tmp):
        base = rpc(path, "ingest")["accepted"]
        p, t0 = started(sender, path, True, head, round_, n)
        counted = 0
        ps = psutil.Process(proc.pid)
        rss0 = rss = ps.memory_info().rss
        while counted < samples and time.perf_counter() - t0 < 120:
            time.sleep(0.01)
            counted = rpc(path, "ingest")["accepted"] - base
            rss = max(rss, ps.memory_info().rss)
        elapsed = time.perf_counter() - t0  # polled every 10 ms: a slight underestimate
        p.join()
        return {
            "counted": counted,
            "in_sketches": in_sketches(path, samples),
            "elapsed_s": elapsed,
            "samples_per_s": counted / elapsed,
            "rss_before_mb": rss0 / 2**20,
            "rss_max_mb": rss / 2**20,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=200_000_000)
    ap.add_argument("--series", type=int, default=10)
    ap.add_argument("--frame", type=int, default=8192, help="values per frame")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    head, round_, vals = make_stream(args.samples, args.series, args.frame)
    n = rounds(args.samples, args.series, args.frame)
    samples = n * args.series * args.frame
    numpy_rate = bench_numpy(vals, 20_000_000)
    sock_rate = bench_socket(head, round_, n)
    vt = bench_vtmon(head, round_, n, samples)
    res = {
        "machine": machine(),
        "samples": samples,
        "series": args.series,
        "values_per_frame": args.frame,
        "vtmon": vt,
        "numpy_sketch_add_per_s": numpy_rate,
        "socket_bytes_per_s": sock_rate,
        "socket_samples_per_s": sock_rate / (len(round_) / (args.series * args.frame)),
    }
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"machine: {res['machine']}")
        print(
            f"{samples:,} float64 samples, {args.series} series, {args.frame} values a frame, "
            f"{len(round_) * n / 1e9:.1f} GB"
        )
        print(f"numpy alone, Sketch.add                {numpy_rate / 1e6:7.1f} M samples/s")
        print(
            f"raw stream socket, read and discard    {sock_rate / 1e6:7.0f} MB/s "
            f"({res['socket_samples_per_s'] / 1e6:.0f} M samples/s)"
        )
        print(
            f"vtmon serve end to end                 {vt['samples_per_s'] / 1e6:7.1f} M samples/s "
            f"({vt['counted']:,} counted, {vt['in_sketches']:,.0f} in the sketches)"
        )
        print(
            f"vtmon serve resident memory            {vt['rss_before_mb']:7.0f} MB before, "
            f"{vt['rss_max_mb']:.0f} MB at most while ingesting"
        )
    rate = vt["samples_per_s"]
    complete = vt["counted"] >= samples and vt["in_sketches"] >= samples
    result(
        "binary frames, socket to sketch",
        ">= 20 M samples/s, all counted",
        f"{rate / 1e6:.1f} M samples/s"
        + ("" if complete else f" (only {vt['counted']:,} counted)"),
        f"numpy Sketch.add {numpy_rate / 1e6:.0f} M/s; socket {sock_rate / 1e6:.0f} MB/s",
        ok=rate >= GOAL and complete,
    )
    if not complete:
        raise SystemExit(f"only {vt['counted']:,} of {samples:,} samples were counted")


if __name__ == "__main__":
    main()
