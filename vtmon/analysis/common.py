"""What the analysis modules agree on: which gauges are memory, how much data makes a p95 or an
error rate worth judging, each component's worst p95 and largest memory gauge, and how numbers
read in messages."""

from __future__ import annotations

import math

import numpy as np

from vtmon.model import Kind, SeriesStats, Snapshot, Tags, as_table

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
    table = as_table(snap.series)
    for i in table.of_kind(Kind.GAUGE).tolist():
        s = table[i]
        if s.last is None or not math.isfinite(s.last):
            continue
        gauge = memory_gauge(s.name)
        if gauge is None:
            continue
        mb = s.last / MIB
        if s.component not in out or mb > out[s.component][0]:
            out[s.component] = (mb, gauge)
    return out


def component_p95(
    snap: Snapshot, window: str = "1m", min_samples: float = P95_MIN_SAMPLES
) -> dict[str, tuple[float, SeriesStats]]:
    """Per component, the worst p95 over ``window`` of its distributions (with at least
    ``min_samples``) and the series it comes from (the first in the Snapshot's order on a
    tie), components in the order of their first such series. Read from the columns: one
    pass over all series."""
    table = as_table(snap.series)
    dist = table.of_kind(Kind.DISTRIBUTION)
    p95 = table.column(window, "p95")[dist]
    ok = ~np.isnan(p95) & (table.column(window, "count")[dist] >= min_samples)
    pos, p95 = dist[ok], p95[ok]
    if not pos.size:
        return {}
    comps = table.component_codes[pos]
    order = np.lexsort((pos, -p95, comps))  # by component, worst first, earliest first
    comps = comps[order]
    first = np.flatnonzero(np.concatenate(([True], comps[1:] != comps[:-1])))
    best = order[first]
    firsts = np.minimum.reduceat(pos[order], first)  # each component's first such series
    out: dict[str, tuple[float, SeriesStats]] = {}
    for j in np.argsort(firsts, kind="stable").tolist():
        i = int(best[j])
        s = table[int(pos[i])]
        out[s.component] = (float(p95[i]), s)
    return out


def distribution_components(snap: Snapshot) -> list[str]:
    """Components that have distributions, in the Snapshot's order."""
    table = as_table(snap.series)
    codes = table.component_codes[table.of_kind(Kind.DISTRIBUTION)]
    _, first = np.unique(codes, return_index=True)
    names = table.components
    return [names[c] for c in codes[np.sort(first)].tolist()]


def series_label(name: str, tags: Tags) -> str:
    """A series' name and tags for a sentence, without the component tag the sentence names."""
    extra = [f"{k}={v}" if v else k for k, v in tags if k != "component"]
    return f"{name}{{{','.join(extra)}}}" if extra else name


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
