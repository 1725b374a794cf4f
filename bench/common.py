"""What the benchmarks share: the machine they ran on, the closing table's rows, and a
`vtmon serve` on a temporary socket to talk to."""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from vtmon.protocol.jsonrpc import rpc_call


def cpu_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}"


RESULTS_ENV = "VTMON_BENCH_RESULTS"


def result(
    figure: str, goal: str, measured: str, baseline: str = "", ok: bool | None = None
) -> None:
    """One row of `make bench`'s closing table (bench/table.py prints it).

    ``figure`` names what was measured, ``goal`` is the target in words ("<= 0.3 us"),
    ``measured`` the figure with its unit, ``baseline`` what ran in the same run to compare with
    ("" when none), ``ok`` whether the goal was met (None when there is no goal). Rows are
    appended as JSON lines to the file named by $VTMON_BENCH_RESULTS; without it nothing is
    written (a script run on its own prints its own lines).
    """
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return

    row = {"figure": figure, "goal": goal, "measured": measured, "baseline": baseline, "ok": ok}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def rpc(path: str, method: str, timeout: float = 30.0) -> dict:
    """One JSON-RPC call on a fresh connection to vtmon's socket: its result (vtmon's own
    rpc_call, with a timeout long enough for a busy vtmon's snapshot)."""
    return rpc_call(path, method, timeout=timeout)


def wait_for_socket(path: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            rpc(path, "ping")
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"vtmon serve did not come up on {path}")


@contextlib.contextmanager
def serving(*args: str) -> Iterator[tuple[str, subprocess.Popen, str]]:
    """`vtmon serve` with history on, as by default, in a temporary folder (not the user's
    own file): (socket path, process, folder). Stopped and removed afterwards."""
    tmp = tempfile.mkdtemp(prefix="vtmon-bench-")
    path = os.path.join(tmp, "bench.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vtmon.cli", "serve", "--socket", path, "--data-dir", tmp, *args],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_socket(path)
        yield path, proc, tmp
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def in_sketches(path: str, want: float, prefix: str = "bench.") -> float:
    """Samples of the ``prefix`` series in vtmon's 5-minute windows, read until ``want`` are
    there (counted is not enough: they must have reached the sketches) or 5 s passed."""
    got = 0.0
    for _ in range(20):
        snap = rpc(path, "snapshot")
        got = sum(
            r["windows"]["5m"]["count"] for r in snap["series"] if r["name"].startswith(prefix)
        )
        if got >= want:
            break
        time.sleep(0.25)
    return got


def started(target: Callable[..., object], *args: object) -> tuple[mp.Process, float]:
    """Start ``target(*args, ready, go)`` in a process and release it once it is ready (its
    set-up, a connection say, is not timed): the process and the time it was released."""
    ready, go = mp.Event(), mp.Event()
    p = mp.Process(target=target, args=(*args, ready, go))
    p.start()
    ready.wait(10)
    t0 = time.perf_counter()
    go.set()
    return p, t0
