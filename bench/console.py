"""What the console itself costs: CPU share and memory of `vtmon` in a 200x50 tmux terminal.

python bench/console.py [--seconds 30]

Starts `vtmon --no-history` on its own socket in a detached tmux session, waits for its first
frame (reported), lets it settle, then measures the process's CPU time and resident memory over
the period with psutil. No metrics arrive: this is the idle cost a person pays for leaving it
open. Needs tmux.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from common import machine

SESSION = "vtmon-bench-console"


def find_vtmon(tmux_pid: int, timeout: float = 20.0) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(tmux_pid).children(recursive=True):
            try:
                if "vtmon" in " ".join(child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)
    raise SystemExit("vtmon did not start in tmux")


def first_frame(deadline: float) -> float:
    """When (monotonic) the pane first shows the panels."""
    while time.monotonic() < deadline:
        pane = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", SESSION], capture_output=True, text=True
        ).stdout
        if "Latency" in pane and "Resources" in pane:
            return time.monotonic()
        time.sleep(0.02)
    raise SystemExit("no frame within the deadline")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    if shutil.which("tmux") is None:
        raise SystemExit("bench/console.py needs tmux")
    tmp = tempfile.mkdtemp(prefix="vtmon-bench-")
    sock = os.path.join(tmp, "bench.sock")
    vtmon = str(Path(sys.executable).with_name("vtmon"))
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    started = time.monotonic()
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", SESSION, "-x", "200", "-y", "50",
         f"{vtmon} --no-history --socket {sock}"],
        check=True,
    )  # fmt: skip
    try:
        frame = first_frame(started + 20) - started  # from launch
        server_pid = int(
            subprocess.run(
                ["tmux", "display-message", "-p", "-t", SESSION, "#{pane_pid}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        proc = psutil.Process(server_pid)  # the pane's command, or the shell running it
        if "vtmon" not in " ".join(proc.cmdline()):
            proc = find_vtmon(server_pid)
        time.sleep(5.0)  # settle: first readings, themes, charts drawn
        c0 = proc.cpu_times()
        t0 = time.monotonic()
        rss = []
        while time.monotonic() - t0 < args.seconds:
            rss.append(proc.memory_info().rss)
            time.sleep(1.0)
        c1 = proc.cpu_times()
        wall = time.monotonic() - t0
        cpu = (c1.user + c1.system - c0.user - c0.system) / wall * 100
        print(f"machine: {machine()}")
        print(f"vtmon console, 200x50 tmux, idle, 1 s refresh, {wall:.0f} s")
        print(f"first frame after launch       {frame:6.2f} s")
        print(f"CPU                            {cpu:6.2f} % of a core")
        print(f"resident memory                {max(rss) / 2**20:6.1f} MB (max)")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
