"""End-to-end ingest benchmark: text lines from another process into `vtmon serve`.

Measures lines/s from the first byte sent until the running instance has counted every line
(read back through `snapshot`) and every sample has reached the sketches, the largest gap
between published Snapshots while ingesting, and, in the same run and on the same lines, two
bare asyncio servers that do nothing with the lines:

* `StreamReader.readline` per line, appending each line to a list: the usual asyncio line
  server, and the baseline the parser is judged against (docs/performance.md gives its figures);
* `bytes.split` per read in a Protocol: no per-line Python at all, a ceiling no parser
  reaches, shown for scale.

    python bench/ingest.py [--format statsd|json|json-context|json-context-ts|all]
                           [--lines N] [--context-lines N] [--series K] [--prometheus]

StatsD lines are DogStatsD timings (`bench.s3.request_latency:12.345|ms|#component:bench3`),
JSON lines the metric objects of docs/protocol.md
(`{"name":"bench.s3.request_latency","value":12.345,"context":{"component":"bench3"}}`).
`json-context` lines are the whole object of docs/protocol.md as an application sends it, with
a unit, tags and a context whose ids differ from line to line (a request id in every line);
`json-context-ts` adds its `timestamp` in milliseconds: the send time, written by the sender
into each 256 KiB piece just before it goes out (one `bytes.replace`, for every server alike),
as an application stamps a sample when it records it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import socket
import tempfile
import time

from common import in_sketches, machine, result, rpc, serving, started

GOAL = 0.8  # of the readline server's rate on the same lines


CONTEXT_FORMATS = ("json-context", "json-context-ts")
STAMP = b"1111111111111"  # a timestamp in ms, replaced by the send time as the lines go out


def make_payload(lines: int, series: int, fmt: str = "statsd") -> bytes:
    out = []
    for i in range(lines):
        c = i % series
        v = (i % 997) * 0.37 + 0.5
        if fmt == "json":
            out.append(
                f'{{"name":"bench.s{c}.request_latency","value":{v:.3f},'
                f'"context":{{"component":"bench{c}"}}}}'
            )
        elif fmt in CONTEXT_FORMATS:
            ts = f'"timestamp":{STAMP.decode()},' if fmt == "json-context-ts" else ""
            out.append(
                f'{{"name":"bench.s{c}.request_latency","value":{v:.3f},{ts}"unit":"ms",'
                f'"tags":{{"endpoint":"/v1/chat"}},"context":{{"component":"bench{c}",'
                f'"userId":"u{i * 7919 % 5000}","sessionId":"s{i * 104729 % 20000:05d}",'
                f'"requestId":"{i:08x}-{i * 2654435761 % 2**32:08x}","operation":"chat"}}}}'
            )
        else:
            out.append(f"bench.s{c}.request_latency:{v:.3f}|ms|#component:bench{c}")
    return ("\n".join(out) + "\n").encode()


def sender(path: str, payload: bytes, ready: mp.Event, go: mp.Event) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    ready.set()
    go.wait()
    step = 1 << 18
    if STAMP in payload[: 1 << 16]:
        # Pieces end at a line's end, so no timestamp is cut in two.
        start = 0
        while start < len(payload):
            end = payload.find(b"\n", start + step) + 1 or len(payload)
            now = b"%d" % (time.time() * 1000)
            s.sendall(payload[start:end].replace(STAMP, now))
            start = end
        s.close()
        return
    view = memoryview(payload)
    for i in range(0, len(view), step):
        s.sendall(view[i : i + step])
    s.close()


def bench_vtmon(lines: int, series: int, payload: bytes, serve_args: tuple[str, ...] = ()) -> dict:
    with serving(*serve_args) as (path, _proc, _tmp):
        base = rpc(path, "ingest")["accepted"]
        p, t0 = started(sender, path, payload)
        snap_times: list[float] = []
        counted = 0
        next_snap = 0.0
        while True:
            if time.perf_counter() >= next_snap:
                next_snap = time.perf_counter() + 0.2
                snap = rpc(path, "snapshot")
                if not snap_times or snap["t"] != snap_times[-1]:
                    snap_times.append(snap["t"])
            counted = rpc(path, "ingest")["accepted"] - base
            if counted >= lines:
                break
            if time.perf_counter() - t0 > 120:
                break
            time.sleep(0.02)
        # Polled every 20 ms, so the rate is a slight underestimate.
        elapsed = time.perf_counter() - t0
        p.join()
        sketched = in_sketches(path, lines)
        gaps = [b - a for a, b in zip(snap_times, snap_times[1:], strict=False)]
        return {
            "counted": counted,
            "in_sketches": sketched,
            "elapsed_s": elapsed,
            "lines_per_s": counted / elapsed,
            "max_snapshot_gap_s": max(gaps) if gaps else None,
            "snapshots_seen": len(snap_times),
        }


def bare_server(path: str, expected: int, result: mp.Queue) -> None:
    """The ceiling: an asyncio Protocol that only splits the lines it gets into a list."""

    async def main() -> None:
        done = asyncio.Event()
        state = {"n": 0, "t0": None}

        class P(asyncio.Protocol):
            pending = b""

            def data_received(self, data: bytes) -> None:
                if state["t0"] is None:
                    state["t0"] = time.perf_counter()
                data = self.pending + data
                last = data.rfind(b"\n")
                self.pending = data[last + 1 :]
                parts = data[:last].split(b"\n")
                state["n"] += len(parts)
                if state["n"] >= expected:
                    done.set()

        loop = asyncio.get_running_loop()
        srv = await loop.create_unix_server(P, path)
        result.put("ready")
        await done.wait()
        result.put(time.perf_counter())
        srv.close()

    asyncio.run(main())


def readline_server(path: str, expected: int, result: mp.Queue) -> None:
    """The usual asyncio line server: StreamReader.readline, one line at a time, into a list."""

    async def main() -> None:
        done = asyncio.Event()
        got: list[bytes] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while line := await reader.readline():
                got.append(line)
                if len(got) >= expected:
                    done.set()
                    break
            writer.close()

        srv = await asyncio.start_unix_server(handle, path, limit=1 << 20)
        result.put("ready")
        await done.wait()
        result.put(time.perf_counter())
        srv.close()

    asyncio.run(main())


def bench_bare(lines: int, payload: bytes, server=None) -> dict:
    tmp = tempfile.mkdtemp(prefix="vtmon-bench-")
    path = os.path.join(tmp, "bare.sock")
    q: mp.Queue = mp.Queue()
    srv = mp.Process(target=server or bare_server, args=(path, lines, q))
    srv.start()
    q.get(timeout=20)
    p, t0 = started(sender, path, payload)
    t1 = q.get(timeout=120)
    p.join()
    srv.join()
    shutil.rmtree(tmp, ignore_errors=True)
    return {"lines_per_s": lines / (t1 - t0), "elapsed_s": t1 - t0}


def run(fmt: str, lines: int, series: int, serve_args: tuple[str, ...]) -> dict:
    payload = make_payload(lines, series, fmt)
    bare = bench_bare(lines, payload)
    readline = bench_bare(lines, payload, readline_server)
    vt = bench_vtmon(lines, series, payload, serve_args)
    return {
        "format": fmt,
        "lines": lines,
        "series": series,
        "bytes": len(payload),
        "vtmon": vt,
        "bare_asyncio_split": bare,
        "bare_asyncio_readline": readline,
        "ratio_split": vt["lines_per_s"] / bare["lines_per_s"],
        "ratio_readline": vt["lines_per_s"] / readline["lines_per_s"],
    }


def report(res: dict) -> bool:
    """Print one format's figures and write its row of the closing table; True when every
    line was counted and reached the sketches."""
    fmt, lines = res["format"], res["lines"]
    vt, bare, rl = res["vtmon"], res["bare_asyncio_split"], res["bare_asyncio_readline"]
    what = {
        "statsd": "StatsD timing",
        "json": "JSON metric",
        "json-context": "JSON metric (ids in the context)",
        "json-context-ts": "JSON metric (ids in the context, timestamp)",
    }[fmt]
    print(
        f"{lines:,} {what} lines, {res['series']} series, {res['bytes'] / 1e6:.0f} MB "
        f"({res['bytes'] / lines:.0f} bytes a line)"
    )
    print(f"  bare asyncio, bytes.split per read  {bare['lines_per_s'] / 1e6:6.2f} M lines/s")
    print(f"  bare asyncio, readline per line     {rl['lines_per_s'] / 1e6:6.2f} M lines/s")
    print(
        f"  vtmon serve end to end              {vt['lines_per_s'] / 1e6:6.2f} M lines/s "
        f"({vt['counted']:,} counted; {res['ratio_readline']:.0%} of readline, "
        f"{res['ratio_split']:.0%} of split)"
    )
    gap = vt["max_snapshot_gap_s"]
    print(
        f"  largest gap between Snapshots while ingesting: {gap:.2f} s" if gap else "  no gaps seen"
    )
    print(f"  samples in the sketches: {vt['in_sketches']:,.0f}")
    complete = vt["counted"] >= lines and vt["in_sketches"] >= lines
    label = {
        "statsd": "StatsD lines",
        "json": "JSON lines",
        "json-context": "JSON lines with ids in the context",
        "json-context-ts": "JSON lines with ids in the context and a timestamp",
    }[fmt]
    result(
        f"{label}, socket to sketch, every line counted",
        f">= {GOAL:.0%} of readline server",
        f"{vt['lines_per_s'] / 1e6:.2f} M lines/s = {res['ratio_readline']:.0%}"
        + ("" if complete else f" (only {vt['counted']:,} counted)"),
        f"readline {rl['lines_per_s'] / 1e6:.2f} M/s; "
        f"bytes.split {bare['lines_per_s'] / 1e6:.1f} M/s (no parsing, a ceiling)",
        ok=complete and res["ratio_readline"] >= GOAL,
    )
    return complete


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--format",
        choices=("statsd", "json", *CONTEXT_FORMATS, "both", "all"),
        default="all",
        help="both: statsd and json; all: every format",
    )
    ap.add_argument("--lines", type=int, default=6_000_000)
    ap.add_argument(
        "--context-lines",
        type=int,
        default=2_000_000,
        help="lines of the json-context formats (about 250 bytes each)",
    )
    ap.add_argument("--series", type=int, default=10)
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument(
        "--prometheus",
        action="store_true",
        help="run vtmon serve with its Prometheus exporter on (--prometheus 127.0.0.1:0)",
    )
    args = ap.parse_args()
    serve_args = ("--prometheus", "127.0.0.1:0") if args.prometheus else ()
    formats = {"both": ("statsd", "json"), "all": ("statsd", "json", *CONTEXT_FORMATS)}.get(
        args.format, (args.format,)
    )
    runs = [
        run(
            fmt,
            args.context_lines if fmt in CONTEXT_FORMATS else args.lines,
            args.series,
            serve_args,
        )
        for fmt in formats
    ]
    if args.json:
        out = {"machine": machine(), "prometheus": args.prometheus, "runs": runs}
        print(json.dumps(out, indent=2))
        return
    print(f"machine: {machine()}")
    print(f"goal: vtmon at least {GOAL:.0%} of the readline server on the same lines")
    complete = [report(res) for res in runs]
    if not all(complete):
        raise SystemExit("not every line was counted and reached the sketches")


if __name__ == "__main__":
    main()
