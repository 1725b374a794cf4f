"""What recording costs: the ingest benchmark's flood into `vtmon serve`, `vtmon record FILE` and
`vtmon record FILE.gz`, then how fast the recording replays (at --speed max, in-process).

A separate process writes StatsD timing lines as fast as it can; each run ends when the running
instance has counted every line (read back through the socket), as in bench/ingest.py.

    python bench/record.py [--lines N] [--series K] [--runs R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import machine, rpc, started, wait_for_socket  # noqa: E402
from ingest import make_payload, sender  # noqa: E402

from vtmon.clock import ManualClock  # noqa: E402
from vtmon.config import Config  # noqa: E402
from vtmon.engine.monitor import Monitor  # noqa: E402
from vtmon.export.replay import NullCollector, NullSensors, replay_into  # noqa: E402


def flood(args: list[str], sock: str, lines: int, payload: bytes) -> tuple[float, str]:
    """lines/s into a vtmon started with ``args``; returns it and what vtmon said at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vtmon.cli", *args, "--socket", sock],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_socket(sock)
        base = rpc(sock, "ingest")["accepted"]
        p, t0 = started(sender, sock, payload)
        while rpc(sock, "ingest")["accepted"] - base < lines:
            if time.perf_counter() - t0 > 300:
                raise SystemExit("vtmon did not count every line within 300 s")
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        p.join()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    said = [line for line in err.splitlines() if line.startswith(("Recorded", "Error"))]
    return lines / elapsed, said[-1] if said else ""


def replay_rate(path: Path, lines: int) -> float:
    clock = ManualClock(0.0)
    m = Monitor(Config(), clock=clock, collector=NullCollector(), sensors=NullSensors())
    t0 = time.perf_counter()
    replay_into(m, path, clock)
    elapsed = time.perf_counter() - t0
    assert m.latest is not None
    counted = m.latest.ingest.accepted
    if counted < lines:
        raise SystemExit(f"the replay counted {counted} of {lines} lines")
    return counted / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--series", type=int, default=10)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    payload = make_payload(args.lines, args.series)
    tmp = Path(tempfile.mkdtemp(prefix="vtmon-bench-"))
    print(f"machine: {machine()}")
    print(f"{args.lines:,} StatsD timing lines, {len(payload) / 1e6:.0f} MB, {args.runs} runs")
    try:
        for run in range(args.runs):
            for label, extra in (
                ("vtmon serve", []),
                ("vtmon record FILE", ["FILE"]),
                ("vtmon record FILE.gz", ["FILE.gz"]),
            ):
                rec = None
                cmd = ["serve"]
                if extra:
                    rec = tmp / extra[0].replace("FILE", "bench.vtmrec")
                    cmd = ["record", str(rec), "--force"]
                rate, said = flood(cmd, str(tmp / "b.sock"), args.lines, payload)
                line = f"run {run + 1}  {label:22} {rate / 1e6:5.2f} M lines/s"
                if rec is not None:
                    size = rec.stat().st_size
                    replayed = replay_rate(rec, args.lines)
                    line += (
                        f"  file {size / 1e6:6.1f} MB"
                        f"  replay --speed max {replayed / 1e6:5.2f} M lines/s"
                    )
                    os.unlink(rec)
                print(line, flush=True)
                if rec is not None and not said.startswith("Recorded"):  # an error
                    print(f"    vtmon said: {said}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
