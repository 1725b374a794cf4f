"""What every benchmark prints with its figures: the machine they came from."""

from __future__ import annotations

import os
import platform
from pathlib import Path


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

    ``figure`` names what was measured, ``goal`` is the issue's target in words ("<= 0.3 us"),
    ``measured`` the figure with its unit, ``baseline`` what ran in the same run to compare with
    ("" when none), ``ok`` whether the goal was met (None when there is no goal). Rows are
    appended as JSON lines to the file named by $VTMON_BENCH_RESULTS; without it nothing is
    written (a script run on its own prints its own lines).
    """
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    import json

    row = {"figure": figure, "goal": goal, "measured": measured, "baseline": baseline, "ok": ok}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
