"""Where a JSON line's parsing time goes, per line, with no socket and no engine.

python bench/parse.py [--lines 200000] [--runs 5]

The lines are bench/ingest.py's (plain JSON metrics, the protocol.md line with ids in its
context, and that line with a timestamp), cut into 64 KiB blocks at line ends as vtmon's
reader gets them. For each: the whole of `parse_block`, then its steps (the context split at
its ids; the templates joined and the numbers found; the rest, which groups the lines and
converts the numbers), and, for scale, a regex split that only finds `"context":` (one pass
of the regex engine over the same bytes) and `bytes.split` on newlines. Median of the runs.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections.abc import Callable

from common import machine
from ingest import make_payload

from vtmon.ingest.parse import parse_block
from vtmon.ingest.parse.json_bulk import _JCTX, _jsplit
from vtmon.model import Batch

CONTEXT = re.compile(rb'"context":')


def blocks_of(payload: bytes, size: int = 65536) -> list[bytes]:
    out, i = [], 0
    while i < len(payload):
        j = payload.rfind(b"\n", i, i + size) + 1
        out.append(payload[i:j])
        i = j
    return out


def per_line(blocks: list[bytes], lines: int, runs: int, fn: Callable[[bytes], object]) -> float:
    """Microseconds a line, median of ``runs`` passes over every block."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for b in blocks:
            fn(b)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / lines * 1e6


def one(fmt: str, lines: int, runs: int) -> None:
    payload = make_payload(lines, 24, fmt)
    blocks = blocks_of(payload)
    n = payload.count(b"\n")
    blank = fmt != "json"

    def step(fn: Callable[[bytes], object]) -> float:
        return per_line(blocks, n, runs, fn)

    whole = step(lambda b: parse_block(b, Batch()))
    split = step(lambda b: _jsplit(b, blank))
    cut = step(_JCTX.split) if blank else 0.0
    print(f"\n{fmt} ({len(payload) / n:.0f} bytes a line)")
    print(f"  parse_block, the whole                      {whole:6.3f}")
    if blank:
        print(f"    the context split at its ids (one regex)  {cut:6.3f}")
    print(f"    templates joined, numbers found           {split - cut:6.3f}")
    print(f"    lines grouped, numbers converted, rest    {whole - split:6.3f}")
    print(f'  for scale: a regex split finding "context": {step(CONTEXT.split):6.3f}')
    newlines = step(lambda b: b.split(b"\n"))
    print(f"  for scale: bytes.split on newlines          {newlines:6.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"{args.lines:,} lines over 24 series, µs a line, median of {args.runs} runs")
    for fmt in ("json", "json-context", "json-context-ts"):
        one(fmt, args.lines, args.runs)


if __name__ == "__main__":
    main()
