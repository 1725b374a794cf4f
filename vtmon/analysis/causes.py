"""Why an incident happens: the machine's resource signals, remembered, and ranked by change.

``SignalHistory`` keeps every resource signal of the last ``max_age_s`` seconds in a numpy ring
per signal (memory depends on the age limit, never on how long vtmon runs). ``rank_causes``
compares, for each signal, the readings of the incident window with those of a baseline window
before it, with the two-sample Kolmogorov-Smirnov distance -- the largest gap between the two
empirical distribution functions, 0 when they match and 1 when every incident reading is above
every baseline reading. That is what Netdata's metric correlations do: the KS distance needs no
model of a signal, is bounded, and is not fooled by a single outlier the way a mean is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vtmon.analysis.common import MIB
from vtmon.model import Cause, Resources


@dataclass(frozen=True, slots=True)
class SignalSpec:
    label: str  # names the resource, for "likely cause: <label> 4 % -> 61 %"
    unit: str  # of the displayed values (after ``scale``)
    floor: float  # smallest rise of the median that counts, in the stored unit
    scale: float = 1.0  # stored value x scale = displayed value


# Floors keep noise from becoming a suspect: CPU wandering from 3 % to 5 % moves the KS distance
# to 1 on a quiet machine, but nobody would call it a cause.
SIGNALS: dict[str, SignalSpec] = {
    "psi_cpu_some": SignalSpec("CPU saturation (PSI cpu some)", "%", 3.0),
    "cpu": SignalSpec("CPU use", "%", 10.0),
    "load_per_core": SignalSpec("load per core", "", 0.3),
    "process_cpu": SignalSpec("CPU of the watched process", "%", 10.0),
    "psi_memory_some": SignalSpec("memory pressure (PSI memory some)", "%", 2.0),
    "psi_memory_full": SignalSpec("memory stalls (PSI memory full)", "%", 1.0),
    "swap_activity": SignalSpec("swap activity", " MB/s", 0.5),
    "mem_percent": SignalSpec("memory use", "%", 3.0),
    "psi_io_some": SignalSpec("IO pressure (PSI io some)", "%", 3.0),
    "psi_io_full": SignalSpec("IO stalls (PSI io full)", "%", 2.0),
    "iowait": SignalSpec("IO wait", "%", 3.0),
    "disk_read": SignalSpec("disk reads", " MB/s", 5.0 * MIB, 1.0 / MIB),
    "disk_write": SignalSpec("disk writes", " MB/s", 5.0 * MIB, 1.0 / MIB),
    "net_rx": SignalSpec("network receive", " MB/s", 1.0 * MIB, 1.0 / MIB),
    "net_tx": SignalSpec("network send", " MB/s", 1.0 * MIB, 1.0 / MIB),
}

MIN_SAMPLES = 5  # per window; fewer readings say nothing about a distribution
MIN_SCORE = 0.3  # two windows of the same noise differ by ~0.1-0.2 at a few dozen readings


class _Ring:
    """Times and values of one signal, oldest overwritten first."""

    __slots__ = ("t", "v", "n", "head")

    def __init__(self, capacity: int) -> None:
        self.t = np.empty(capacity, dtype=np.float64)
        self.v = np.empty(capacity, dtype=np.float64)
        self.n = 0
        self.head = 0  # next slot to write

    def append(self, t: float, v: float) -> None:
        self.t[self.head] = t
        self.v[self.head] = v
        self.head = (self.head + 1) % self.t.size
        self.n = min(self.n + 1, self.t.size)

    def ordered(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n < self.t.size:
            return self.t[: self.n], self.v[: self.n]
        h = self.head
        return np.concatenate((self.t[h:], self.t[:h])), np.concatenate((self.v[h:], self.v[:h]))


class SignalHistory:
    """The resource signals of the last ``max_age_s`` seconds, one reading per collection.

    Capacity is ``max_age_s / min_interval_s`` readings per signal; collections more frequent
    than ``min_interval_s`` shorten the span kept, never grow the memory.
    """

    def __init__(self, max_age_s: float = 1800, min_interval_s: float = 1.0) -> None:
        self.max_age_s = float(max_age_s)
        self._capacity = max(16, math.ceil(self.max_age_s / max(0.05, min_interval_s)) + 1)
        self._rings: dict[str, _Ring] = {}
        self._last_t: float | None = None

    def record(self, r: Resources) -> None:
        """One system reading. ``process_cpu`` is the watched process' CPU as a percentage of
        the cores it can use (``process_cores``)."""
        if self._last_t is not None and r.t < self._last_t:
            # The wall clock went back: windows are found by time, so older readings would be
            # "in the future" for ever. Starting over costs one baseline.
            self._rings.clear()
        self._last_t = r.t
        for name, value in _signals(r).items():
            if value is None or not math.isfinite(value):
                continue
            ring = self._rings.get(name)
            if ring is None:
                ring = self._rings[name] = _Ring(self._capacity)
            ring.append(r.t, value)

    def names(self) -> tuple[str, ...]:
        return tuple(self._rings)

    def window(self, name: str, t0: float, t1: float) -> np.ndarray:
        """Values of ``name`` read at times t0 <= t <= t1, oldest first (a copy)."""
        ring = self._rings.get(name)
        if ring is None:
            return np.empty(0)
        t, v = ring.ordered()
        lo = int(np.searchsorted(t, max(t0, t1 - self.max_age_s), "left"))
        hi = int(np.searchsorted(t, t1, "right"))
        return v[lo:hi].copy()

    def last(self, name: str, n: int) -> np.ndarray:
        """The last ``n`` values of ``name`` (fewer when fewer were read), oldest first."""
        ring = self._rings.get(name)
        if ring is None or n <= 0:
            return np.empty(0)
        _, v = ring.ordered()
        return v[-n:].copy()


def _signals(r: Resources) -> dict[str, float | None]:
    out: dict[str, float | None] = {
        "cpu": r.cpu_percent,
        "iowait": r.iowait_percent,
        "mem_percent": r.mem_percent,
        "net_rx": r.net_rx_rate,
        "net_tx": r.net_tx_rate,
        "disk_read": r.disk_read_rate,
        "disk_write": r.disk_write_rate,
    }
    if r.load is not None and r.cpu_count > 0:
        out["load_per_core"] = r.load[0] / r.cpu_count
    if r.swap_in_rate is not None or r.swap_out_rate is not None:
        out["swap_activity"] = ((r.swap_in_rate or 0.0) + (r.swap_out_rate or 0.0)) / MIB
    proc = r.process
    if proc is not None and proc.running and proc.cpu_percent is not None:
        out["process_cpu"] = proc.cpu_percent / process_cores(r)
    for p in r.pressure:
        out[f"psi_{p.resource}_some"] = p.some_avg10
        if p.full_avg10 is not None and p.resource != "cpu":  # cpu "full" is 0 by definition
            out[f"psi_{p.resource}_full"] = p.full_avg10
    return out


def process_cores(r: Resources) -> int:
    """How many cores the watched process can keep busy: one per thread, at most all of them.

    Its CPU is judged as a share of these, so a single-threaded process pinning its one core is
    saturated even on a 32-core machine, and a 16-thread server at 400 % is not.
    """
    threads = r.process.threads if r.process is not None and r.process.threads else 1
    return max(1, min(threads, r.cpu_count or threads))


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: max |F_a(x) - F_b(x)| over all samples."""
    if a.size == 0 or b.size == 0:
        return 0.0
    a = np.sort(a)
    b = np.sort(b)
    pts = np.concatenate((a, b))
    fa = np.searchsorted(a, pts, side="right") / a.size
    fb = np.searchsorted(b, pts, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def rank_causes(
    h: SignalHistory,
    incident_start: float,
    now: float,
    baseline_s: float = 300.0,
    top: int = 3,
    lead_s: float = 15.0,
) -> tuple[Cause, ...]:
    """The resource signals that went up when the incident started, most changed first.

    Incident window: ``[incident_start - lead_s, now]``; the lead covers the lag of the rule
    that found the incident (a 1-minute p95 crosses its threshold well after the cause began,
    and the pending period comes on top). Baseline: the ``baseline_s`` seconds before it.
    Only signals whose median rose by more than the signal's floor are suspects; the score is
    the KS distance, ties (several fully separated signals) broken by the rise in floors.
    """
    split = incident_start - lead_s
    found: list[tuple[float, float, Cause]] = []
    for name in h.names():
        spec = SIGNALS.get(name)
        if spec is None:
            continue
        inc = h.window(name, split, now)
        base = h.window(name, split - baseline_s, math.nextafter(split, -math.inf))
        if inc.size < MIN_SAMPLES or base.size < MIN_SAMPLES:
            continue
        before = float(np.median(base))
        after = float(np.median(inc))
        rise = after - before
        if rise <= spec.floor:
            continue
        score = ks_distance(base, inc)
        if score < MIN_SCORE:
            continue
        cause = Cause(
            signal=name,
            label=spec.label,
            before=round(before * spec.scale, 3),
            after=round(after * spec.scale, 3),
            score=round(score, 3),
            unit=spec.unit,
        )
        found.append((score, rise / spec.floor, cause))
    found.sort(key=lambda x: (x[0], x[1]), reverse=True)
    return tuple(c for _, _, c in found[:top])
