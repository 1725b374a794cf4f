"""A sending round's samples: what of them can go to vtmon, and which go back to the buffer
when the connection broke part-way through a write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from vtmon.protocol import wire
from vtmon.protocol.frames import DIST
from vtmon.protocol.wire import Series

MAX_KEYS = 100_000  # cached series (tag sets); beyond, the caches start afresh


def prepare(
    batch: wire.Batch, binary: bool, names: dict[Any, Series], warn: Callable[[str], None]
) -> tuple[list[tuple[Any, Series, np.ndarray]], list[str], int]:
    """The batch's series to send, its text lines, and how many samples cannot be sent
    (a name vtmon refuses, a value that is no number; ``warn`` is told why). ``names``: the
    sender's cache of record()'s names as series."""
    series = []
    invalid = 0
    for key, a in batch.series.items():
        if type(key) is Series:
            s = key
        else:
            named = names.get(key)
            if named is None:
                if len(names) >= MAX_KEYS:
                    names.clear()
                named = names[key] = Series(DIST, key)
            s = named
        # Without an error the name is a str (Series.error says why it would not be).
        why = s.error or ("" if binary or ":" not in str(s.name) else "a ':' in a StatsD name")
        if why:
            invalid += len(a) + batch.bad.pop(key, 0)
            warn(why)
        elif len(a):
            series.append((key, s, a))
    for key in [k for k in batch.bad if k not in batch.series]:
        invalid += batch.bad.pop(key)  # unhashable names
        warn(f"{key} is no series name")
    lines = []
    for item in batch.lines:
        try:
            lines.append(item if isinstance(item, str) else item.line())
        except Exception as e:  # a measurement whose context cannot be written
            invalid += 1
            warn(f"cannot write {item!r}: {e}")
    return series, lines, invalid


def unsent_pairs(items: list[Any], keys: set[Any]) -> list[Any]:
    """The pairs of ``items`` (key, value, key, value, ...) whose key is one of ``keys``."""
    back: list[Any] = []
    for key, value in zip(items[0::2], items[1::2], strict=True):
        if _key_in(key, keys):
            back += (key, value)
    return back


def _key_in(key: Any, keys: set[Any]) -> bool:
    try:
        return key in keys
    except TypeError:
        return False
