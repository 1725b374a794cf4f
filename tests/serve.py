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


def send(sock: Path, text: str) -> subprocess.CompletedProcess[str]:
    """`vtmon send` of ``text`` to ``sock``, in a child process; its summary is on stderr."""
    return subprocess.run(
        [sys.executable, "-m", "vtmon.cli", "send", "--socket", str(sock)],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )


def serve(
    sock: Path,
    data: Path,
    *args: str,
    log: Path | None = None,
    open_files: tuple[int, int] | None = None,
) -> subprocess.Popen[str]:
    """`vtmon serve` on ``sock`` with history in ``data``, once it listens; what it said on
    stderr until then is in ``proc.said``. With ``log`` its stderr goes to that file instead
    (to be measured); ``open_files`` is its (soft, hard) limit on open files."""
    cmd = [sys.executable, "-m", "vtmon.cli"]
    if open_files is not None:  # set by the child itself: no preexec_fn in a threaded parent
        cmd = [
            sys.executable,
            "-c",
            "import resource, runpy, sys; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, {tuple(open_files)!r}); "
            "sys.argv[0] = 'vtmon'; runpy.run_module('vtmon.cli', run_name='__main__')",
        ]
    cmd += ["serve", "--socket", str(sock), "--data-dir", str(data), *args]
    if log is not None:
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, stderr=out, text=True)

        def listening_or_gone() -> str:
            text = log.read_text()
            return text if "vtmon serving on" in text or proc.poll() is not None else ""

        said = poll("vtmon serve to listen", listening_or_gone)
        assert "vtmon serving on" in said, said
        proc.said = said.splitlines(keepends=True)  # type: ignore[attr-defined]
        return proc
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:  # until it listens (or dies, ending stderr)
        lines.append(line)
        if "vtmon serving on" in line:
            break
    assert "vtmon serving on" in "".join(lines), "".join(lines)
    proc.said = lines  # type: ignore[attr-defined]
    return proc
