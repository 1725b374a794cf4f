"""The history file's bound on its total size, and the words and steps for keeping to it.

``[retention] max_size_mb`` bounds the file with its WAL; without it the bound is 2 GB or a
tenth of the free space of the data folder's file system when the store opens, whichever is
less. ``HistoryStore.maintain`` trims when the file passes it: the oldest points go first,
whatever their layer, in steps of a transaction each (docs/history.md says the order), until
the points fill ``TRIM_TO`` of the bound, and the freed pages are given back to the file
system in steps of ``VACUUM_STEP_PAGES``. What is here holds no connection: sizes, the
bound, the next step's cutoff and the sentences that say what happened.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

MB = 1_000_000
DEFAULT_MAX_BYTES = 2_000 * MB
FREE_SHARE = 0.10  # of the free space, when it is less than the default
MIN_BYTES = 1 * MB  # as [retention] max_size_mb allows at least
TRIM_TO = 0.9  # a trim brings the points down to this share of the bound
CLEAR_BELOW = 0.75  # the notice that history is trimmed goes when the points are below this
MIN_KEEP_S = 600  # the last ten minutes are never trimmed, whatever the bound
STEP_BYTES = 16 * MB  # a trim step (one transaction) aims to free about this much
VACUUM_STEP_PAGES = 2048  # pages given back per step (8 MiB; docs/performance.md times it)


@dataclass(slots=True)
class TrimStats:
    """What the last trim did and how long the writer held the file for each step."""

    before: int = 0  # bytes on disk (the file and its WAL) when it started
    after: int = 0  # and when it ended
    steps: int = 0  # transactions that deleted points
    longest_step_s: float = 0.0
    vacuum_steps: int = 0  # incremental vacuum steps, or 1 for the VACUUM of an older file
    longest_vacuum_s: float = 0.0
    seconds: float = 0.0  # all of it, the checkpoint included


def size_bound(max_size_mb: float | None, folder: Path | None) -> int:
    """The bound in bytes: the configured one, else 2 GB or 10 % of the free space of
    ``folder``'s file system, whichever is less (never below 1 MB)."""
    if max_size_mb is not None:
        return int(max_size_mb * MB)
    bound = DEFAULT_MAX_BYTES
    if folder is not None:
        try:
            bound = min(bound, int(shutil.disk_usage(folder).free * FREE_SHARE))
        except OSError:
            pass
    return max(MIN_BYTES, bound)


def on_disk(path: Path) -> int:
    """Bytes of the file and its WAL."""
    total = 0
    for p in (path, path.with_name(path.name + "-wal")):
        try:
            total += os.stat(p).st_size
        except OSError:
            pass
    return total


def next_cutoff(cutoff: int, floor: int, step_s: float) -> int:
    return int(min(floor, cutoff + max(60.0, step_s)))


def next_step(step_s: float, freed: int, need: int) -> float:
    """How far the next step moves the cutoff: as far as the last step's bytes per second
    say frees ``min(need, STEP_BYTES)``, between 60 s and four times the last step (points are
    denser towards now, where finer tiers still hold them)."""
    if freed <= 0:
        return step_s * 4
    want = min(need, STEP_BYTES) * step_s / freed
    return min(max(60.0, want), step_s * 4)


def size_text(n: float) -> str:
    """``2 GB``, ``500 MB``, ``1.5 MB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v >= 10 or v == int(v) else f"{v:.1f} {unit}"
    return f"{n:.0f} bytes"


def res_text(res: int) -> str:
    """A resolution as a person says it: ``1 s``, ``10 min``, ``5 h``."""
    if res % 3600 == 0:
        return f"{res // 3600} h"
    if res % 60 == 0:
        return f"{res // 60} min"
    return f"{res} s"


def trim_notice(bound: int, finest: int | None, floor_reached: bool) -> str:
    """One sentence for the console: the file is at its bound and what goes."""
    if floor_reached:
        return (
            f"History is at its {size_text(bound)} bound and keeps only its last "
            f"{MIN_KEEP_S // 60} min; raise [retention] max_size_mb to keep more."
        )
    what = f"the oldest {res_text(finest)} points" if finest else "the oldest points"
    return f"History is at its {size_text(bound)} bound; trimming {what}."
