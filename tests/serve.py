"""A real `vtmon serve` in a subprocess, and waiting on it with a deadline (never a fixed sleep):
shared by the restart and crash-recovery tests."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def poll(what: str, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    """``fn()`` once it gives something true; an error meanwhile counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = fn()
        except (OSError, sqlite3.Error, RuntimeError, ValueError, StopIteration):
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # a polling step, not a wait for time to pass


def serve(sock: Path, data: Path, *args: str) -> subprocess.Popen[str]:
    """`vtmon serve` on ``sock`` with history in ``data``, once it listens; what it said on
    stderr until then is in ``proc.said``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vtmon.cli", "serve", "--socket", str(sock)]
        + ["--data-dir", str(data), *args],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:  # until it listens (or dies, ending stderr)
        lines.append(line)
        if "vtmon serving on" in line:
            break
    assert "vtmon serving on" in "".join(lines), "".join(lines)
    proc.said = lines  # type: ignore[attr-defined]
    return proc
