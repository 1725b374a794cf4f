"""History files for the store and report tests: a few megabytes of real data written the way
vtmon writes them, and the damage a disk can do to one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vtmon.clock import ManualClock
from vtmon.config import RetentionConfig
from vtmon.model import Kind, SeriesKey
from vtmon.sketch import Sketch
from vtmon.store.history import HistoryStore

PAGE = 4096  # SQLite's default page size, which the history file uses


def latency_keys(n: int) -> list[SeriesKey]:
    return [
        SeriesKey(f"api.latency_{i}", (("component", "api"),), Kind.DISTRIBUTION) for i in range(n)
    ]


def fill(
    store: HistoryStore,
    clock: ManualClock,
    keys: list[SeriesKey],
    seconds: int,
    samples: int = 100,
    maintain: bool = True,
) -> None:
    """``seconds`` of ``samples`` latencies a second in every series of ``keys``, flushed every
    5 s and rolled up every minute as the writer thread does, with the clock moving along."""
    rng = np.random.default_rng(7)
    pool = [Sketch.of(rng.lognormal(3, 1, samples)) for _ in range(31)]
    flush_every = int(store.retention.flush_interval_s)
    maint_every = int(store.retention.rollup_interval_s)
    for i in range(seconds):
        t = int(clock.time())
        store.add_seconds(
            [(k, Kind.DISTRIBUTION, t, pool[(t + j) % len(pool)]) for j, k in enumerate(keys)]
        )
        clock.advance(1)
        if i % flush_every == flush_every - 1:
            store.flush()
        if maintain and i % maint_every == maint_every - 1:
            store.maintain()
    store.flush()


def filled_file(folder: Path, clock: ManualClock, seconds: int = 600) -> list[SeriesKey]:
    """A closed history file in ``folder`` holding 20 busy series for ``seconds`` (600: about
    2.5 MB)."""
    store = HistoryStore.open(folder, RetentionConfig(), clock=clock)
    assert store.persistent, store.warning
    keys = latency_keys(20)
    fill(store, clock, keys, seconds)
    store.close()
    return keys


def damage_middle(path: Path) -> int:
    """Overwrite 8 KiB in the middle of the file, on page boundaries (two whole table pages,
    never the header): what a bad sector or a stray write does. Returns the offset."""
    size = path.stat().st_size
    assert size >= 16 * PAGE, f"{path} is too small to damage in the middle ({size} bytes)"
    offset = size // 2 // PAGE * PAGE
    junk = np.random.default_rng(13).integers(0, 256, 2 * PAGE, dtype=np.uint8).tobytes()
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(junk)
    return offset


def listing(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` with its bytes: to show that nothing was changed or moved."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
