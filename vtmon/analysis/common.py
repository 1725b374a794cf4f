"""What the analysis modules agree on: which gauges are memory, how much data makes a p95 or an
error rate worth judging, each component's worst p95 and largest memory gauge, and how numbers
read in messages."""

from __future__ import annotations

import math

from vtmon.model import Kind, SeriesStats, Snapshot

MIB = 1024.0 * 1024.0
MEMORY_GAUGES = ("memory_heap_used", "memory_rss")
P95_MIN_SAMPLES = 10  # a p95 of fewer samples is the maximum of a handful
ERROR_MIN_OPERATIONS = 20  # 1 error in 3 operations is not a rate to judge
# Latency against the target and error rate against the limit: high above 2x, critical above
# 5x (the detector's rules; health's recommendations and the p95 forecast's limit follow them).
LATENCY_HIGH_X = 2.0
LATENCY_CRITICAL_X = 5.0
ERROR_HIGH_X = 2.0
ERROR_CRITICAL_X = 5.0


def memory_gauge(name: str) -> str | None:
    """``memory_heap_used`` / ``memory_rss`` when ``name`` is (or ends in ``.``) one of them."""
    gauge = name.rsplit(".", 1)[-1]
    return gauge if gauge in MEMORY_GAUGES else None


def component_memory(snap: Snapshot) -> dict[str, tuple[float, str]]:
    """Per component, its largest memory gauge in MB and that gauge's kind."""
    out: dict[str, tuple[float, str]] = {}
    for s in snap.series:
        if s.kind is not Kind.GAUGE or s.last is None or not math.isfinite(s.last):
            continue
        gauge = memory_gauge(s.name)
        if gauge is None:
            continue
        mb = s.last / MIB
        if s.component not in out or mb > out[s.component][0]:
            out[s.component] = (mb, gauge)
    return out


def component_p95(snap: Snapshot) -> dict[str, tuple[float, SeriesStats]]:
    """Per component, the worst 1-minute p95 of its distributions (with enough samples) and
    the series it comes from."""
    out: dict[str, tuple[float, SeriesStats]] = {}
    for s in snap.series:
        if s.kind is not Kind.DISTRIBUTION:
            continue
        w = s.windows.get("1m")
        if w is None or w.p95 is None or w.count < P95_MIN_SAMPLES:
            continue
        if s.component not in out or w.p95 > out[s.component][0]:
            out[s.component] = (w.p95, s)
    return out


def ms_text(v: float) -> str:
    """A latency for a sentence: ``8.5 ms``, ``245 ms``, ``1.2 s``."""
    if v >= 1000:
        return f"{v / 1000:.1f} s"
    if v >= 10:
        return f"{v:.0f} ms"
    return f"{v:.1f} ms"


def share_text(fraction: float) -> str:
    """A rate as a percentage for a sentence: ``0.25 %``, ``1.5 %``, ``12 %``."""
    pct = 100.0 * fraction
    if pct >= 10:
        return f"{pct:.0f} %"
    if pct >= 1:
        return f"{pct:.1f} %"
    return f"{pct:.2g} %"
