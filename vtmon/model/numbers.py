"""Numbers: what a client may send (checked where it enters), how a number read back from a file
or an older vtmon is made safe to compute with, and how a number is written for a person."""

from __future__ import annotations

import math

# What a client may send (docs/protocol.md, "Numbers"), checked where it enters. Within these,
# no sum the engine, the store or an exporter makes can leave the float64 range: values up to
# 1e100 weighed up to 1e6 leave more than 200 orders of magnitude for the number of samples.
TIME_MAX_S = 4102444800.0  # 2100-01-01 UTC: times lie in [0, TIME_MAX_S), seconds
VALUE_MAX = 1e100  # |value| <= VALUE_MAX, finite
RATE_MIN = 1e-6  # a sample rate lies in [RATE_MIN, 1]: a sample weighs at most 1e6
COUNT_MAX = 2**63 - 1  # SQLite's largest integer: no count kept or reported goes beyond
CLIENT_COUNT_MAX = 2**53  # a count one message may report (exact as a float)


def bounded(v: object) -> float | None:
    """A number a client sent (a JSON value: int or float, not bool) as a float within
    ``VALUE_MAX``, else None (NaN, infinities, integers beyond the float range)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:  # an integer beyond float range
        return None
    return f if -VALUE_MAX <= f <= VALUE_MAX else None


def as_float(v: object) -> float | None:
    """``v`` as a finite float, or None: for a number read back from where anything may have
    been written (a history file, an older vtmon's Snapshot) before an exporter or a report
    computes with it. Not numbers (bools and strings neither), NaN, infinities and integers
    beyond the float range give None."""
    if type(v) is float:
        return v if math.isfinite(v) else None
    if isinstance(v, (bool, str, bytes)) or v is None:
        return None
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def as_count(v: object) -> int:
    """``v`` read back as a count (see ``as_float``): a whole number clamped to
    ``[0, COUNT_MAX]``; 0 when it is no number."""
    if type(v) is int:
        return min(max(v, 0), COUNT_MAX)
    f = as_float(v)
    return 0 if f is None else min(int(max(f, 0.0)), COUNT_MAX)


def short_number(v: float) -> str:
    """A number as the screen and the report write it: ``320``, ``17.5``, ``0.25``."""
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.2f}".rstrip("0").rstrip(".") or "0"
