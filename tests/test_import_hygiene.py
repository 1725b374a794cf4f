"""The headless entry points never load the screen: `vtmon serve` runs and an application
imports vtmon.client without Textual, each checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCREEN = ("textual", "vtmon.tui")

# The real `vtmon serve` in this interpreter's main thread; once it answers on its socket, a
# thread reads sys.modules, says what of the screen is loaded and stops it as SIGTERM would.
SERVE = f"""
import os, signal, sys, threading, time
from vtmon.protocol.jsonrpc import rpc_call

path = sys.argv[1]

def check():
    deadline = time.monotonic() + 60
    while True:
        try:
            if rpc_call(path, "ping") == "pong":
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # a polling step while it starts
    loaded = sorted(m for m in sys.modules if m.startswith({SCREEN!r}))
    print("loaded:", ",".join(loaded), file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=check, daemon=True).start()
from vtmon.cli import main
main(["serve", "--no-history", "--socket", path])
"""


def test_vtmon_serve_never_imports_textual(sock_dir: Path) -> None:
    path = sock_dir / "vtmon.sock"  # sock_dir is a 0700 temporary folder
    run = subprocess.run(
        [sys.executable, "-c", SERVE, str(path)], capture_output=True, text=True, timeout=120
    )
    said = [line for line in run.stderr.splitlines() if line.startswith("loaded:")]
    assert said == ["loaded: "], run.stderr
    assert "vtmon serving on" in run.stderr and "vtmon stopped." in run.stderr
    assert run.returncode == 0, run.stderr


def test_importing_the_client_never_imports_textual() -> None:
    code = (
        "import sys, vtmon.client; "
        f"print(','.join(sorted(m for m in sys.modules if m.startswith({SCREEN!r}))))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert run.stdout.strip() == ""
