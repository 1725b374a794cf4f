"""The bottleneck rules: what each one measures, for every subject it knows (a component, the
system, a process, a mount), against a firing threshold and a critical one.

A rule reports a ``Reading`` whose ``ratio`` is value / firing threshold, with the evidence, the
sentence and the suggested action a Bottleneck will show. ``measure`` runs them all on one
Snapshot; the state machine in vtmon/analysis/detector.py decides, from the ratios alone and
over time, what fires, escalates and resolves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from vtmon.analysis.causes import SignalHistory, process_cores
from vtmon.analysis.common import (
    ERROR_CRITICAL_X,
    ERROR_HIGH_X,
    ERROR_MIN_OPERATIONS,
    LATENCY_CRITICAL_X,
    LATENCY_HIGH_X,
    MIB,
    component_memory,
    component_p95,
    share_text,
)
from vtmon.config import Config
from vtmon.model import DiskUsage, Evidence, Resources, SeriesKey, SeriesStats, Snapshot

MEMORY_HIGH_PCT = 80.0
MEMORY_CRITICAL_PCT = 90.0
MEMORY_IMMEDIATE_PCT = 95.0
CPU_READINGS = 5  # the CPU rule averages this many system readings
LATENCY_IMMEDIATE_X = 10.0  # one sample above this many targets is an immediate critical
ERROR_Z = 1.2816  # one-sided 90 % Wilson bound: the rate must be above the limit, not just look so


@dataclass(frozen=True, slots=True)
class Reading:
    """What a rule measured for one subject at one evaluation."""

    rule: str
    subject: str  # component, "system" or a mount: the state machine's key with ``rule``
    type: str
    component: str
    ratio: float | None  # value / firing threshold; None: no data this time
    crit_ratio: float  # critical threshold / firing threshold
    critical: bool  # the critical condition holds
    immediate: bool = False  # skip the pending period, fire (or escalate) as critical now
    evidence: tuple[Evidence, ...] = ()
    description: str = ""
    action: str = ""
    support: float = 1.0  # 0..1: is there enough data behind the value
    wants_causes: bool = False

    @property
    def id(self) -> str:
        return f"{self.rule}:{self.subject}"

    @property
    def has_data(self) -> bool:
        return self.ratio is not None or self.immediate


def measure(
    config: Config, snap: Snapshot, signals: SignalHistory, peaks: Mapping[str, float]
) -> dict[str, Reading]:
    """Every rule's readings at this evaluation, by ``Reading.id``."""
    readings: dict[str, Reading] = {}
    for rule in _rules(config, snap, signals, peaks):
        for r in rule:
            readings[r.id] = r
    return readings


def _rules(
    config: Config, snap: Snapshot, signals: SignalHistory, peaks: Mapping[str, float]
) -> list[list[Reading]]:
    res = snap.resources
    return [
        _memory(config, snap),
        _cpu(config, signals),
        _process_cpu(config, res, signals),
        _latency(config, snap, peaks),
        _errors(config, snap),
        _cpu_saturation(config, res),
        _memory_pressure(config, res),
        _io_pressure(config, res),
        [_disk(config, d) for d in res.disks],
    ]


def _memory(config: Config, snap: Snapshot) -> list[Reading]:
    out = []
    for comp, (mb, gauge) in component_memory(snap).items():
        limit = config.limits(comp).max_memory_mb
        pct = 100.0 * mb / limit
        what = "heap" if gauge == "memory_heap_used" else "resident memory"
        if gauge == "memory_heap_used":
            action = (
                f"Reduce buffer sizes or trigger garbage collection in {comp}; "
                f"its heap is {mb:.0f} MB of {limit:g} MB."
            )
        else:
            action = (
                f"Shrink caches and buffers or recycle worker processes in {comp}; "
                f"its resident memory is {mb:.0f} MB of {limit:g} MB."
            )
        out.append(
            Reading(
                rule="memory",
                subject=comp,
                type="memory",
                component=comp,
                ratio=pct / MEMORY_HIGH_PCT,
                crit_ratio=MEMORY_CRITICAL_PCT / MEMORY_HIGH_PCT,
                critical=pct > MEMORY_CRITICAL_PCT,
                immediate=pct > MEMORY_IMMEDIATE_PCT,
                evidence=(
                    Evidence(gauge, round(mb, 1), round(limit * 0.8, 1), "MB"),
                    Evidence("memory budget", limit, None, "MB"),
                    Evidence("share of budget", round(pct, 1), MEMORY_HIGH_PCT, "%"),
                ),
                description=(
                    f"{comp} {what} is {mb:.1f} MB of its {limit:g} MB budget "
                    f"({pct:.0f} %, high above {MEMORY_HIGH_PCT:.0f} %)."
                ),
                action=action,
            )
        )
    return out


def _cpu(config: Config, signals: SignalHistory) -> list[Reading]:
    det = config.detector
    vals = signals.last("cpu", CPU_READINGS)
    if vals.size == 0:
        return []
    mean = float(vals.mean())
    return [
        Reading(
            rule="cpu",
            subject="system",
            type="cpu",
            component="system",
            ratio=mean / det.cpu_high,
            crit_ratio=det.cpu_critical / det.cpu_high,
            critical=mean > det.cpu_critical,
            evidence=(
                Evidence(f"CPU (mean of last {vals.size})", round(mean, 1), det.cpu_high, "%"),
                Evidence("CPU critical above", det.cpu_critical, None, "%"),
            ),
            description=(
                f"System CPU averaged {mean:.0f} % over the last {vals.size} readings "
                f"(high above {det.cpu_high:g} %, critical above {det.cpu_critical:g} %)."
            ),
            action=(
                "Find the processes using the CPU (the resources panel, top) and throttle, "
                "reschedule or move the heaviest; lower the worker or thread count if it is "
                "the monitored application."
            ),
            support=min(1.0, vals.size / CPU_READINGS),
        )
    ]


def _process_cpu(config: Config, res: Resources, signals: SignalHistory) -> list[Reading]:
    det = config.detector
    proc = res.process
    if proc is None or not proc.running or proc.cpu_percent is None:
        return []
    vals = signals.last("process_cpu", CPU_READINGS)
    if vals.size == 0:
        return []
    mean = float(vals.mean())
    cores = process_cores(res)
    name = proc.name or f"pid {proc.pid}"
    who = f"{proc.name} (pid {proc.pid})" if proc.name else f"process {proc.pid}"
    of = "its one core" if cores == 1 else f"the {cores} cores its threads can use"
    return [
        Reading(
            rule="cpu",
            subject=f"pid-{proc.pid}",
            type="cpu",
            component=name,
            ratio=mean / det.cpu_high,
            crit_ratio=det.cpu_critical / det.cpu_high,
            critical=mean > det.cpu_critical,
            evidence=(
                Evidence(
                    f"process CPU (mean of last {vals.size})", round(mean, 1), det.cpu_high, "%"
                ),
                Evidence("process CPU, one core = 100 %", round(proc.cpu_percent, 1), None, "%"),
                Evidence("cores it can use", cores),
            ),
            description=(
                f"{who} used {mean:.0f} % of {of} over the last {vals.size} readings "
                f"(high above {det.cpu_high:g} %)."
            ),
            action=(
                f"Profile {name} (py-spy, perf) for its hottest code path; move CPU-heavy "
                "work to worker processes, cache repeated results, or give it more threads "
                "if its work can run in parallel."
            ),
            support=min(1.0, vals.size / CPU_READINGS),
        )
    ]


def _latency(config: Config, snap: Snapshot, peaks: Mapping[str, float]) -> list[Reading]:
    # A component has one target, so its worst p95 is also its worst against the target.
    worst = {
        comp: (
            p95 / config.limits(comp).target_ms,
            _series_label(s),
            p95,
            s.windows["1m"].count,
        )
        for comp, (p95, s) in component_p95(snap).items()
    }
    out = []
    for comp in worst.keys() | peaks.keys():
        target = config.limits(comp).target_ms
        peak = peaks.get(comp)
        immediate = peak is not None and peak > LATENCY_IMMEDIATE_X * target
        if comp not in worst and not immediate:
            continue
        evidence: list[Evidence] = []
        sentences: list[str] = []
        ratio: float | None = None
        support = 0.0
        series = ""
        if comp in worst:
            x, series, p95, n = worst[comp]
            ratio = x / LATENCY_HIGH_X
            support = min(1.0, n / 100.0)
            evidence += [
                Evidence(f"p95 (1m) {series}", round(p95, 1), LATENCY_HIGH_X * target, "ms"),
                Evidence("target", target, None, "ms"),
                Evidence("samples (1m)", n),
            ]
            sentences.append(
                f"{comp} p95 latency is {p95:.0f} ms over the last minute, {x:.1f}x its "
                f"{target:g} ms target ({series})"
            )
        if immediate and peak is not None:
            evidence.append(
                Evidence("largest sample", round(peak, 1), LATENCY_IMMEDIATE_X * target, "ms")
            )
            sentences.append(
                f"one {comp} sample took {peak:.0f} ms, more than "
                f"{LATENCY_IMMEDIATE_X:g}x its {target:g} ms target"
            )
            support = max(support, 0.5)
        desc = "; ".join(sentences)
        where = series or f"{comp}'s slowest operation"
        out.append(
            Reading(
                rule="latency",
                subject=comp,
                type="latency",
                component=comp,
                ratio=ratio,
                crit_ratio=LATENCY_CRITICAL_X / LATENCY_HIGH_X,
                critical=ratio is not None and ratio * LATENCY_HIGH_X > LATENCY_CRITICAL_X,
                immediate=immediate,
                evidence=tuple(evidence),
                # a component name starts the sentence as it is spelled
                description=(desc if comp in worst else desc[0].upper() + desc[1:]) + ".",
                action=(
                    f"Profile {where}: look at downstream calls, lock contention and queue "
                    f"depth in {comp}; cache or batch repeated work, and add workers only "
                    "if the machine has headroom."
                ),
                support=support,
                wants_causes=True,
            )
        )
    return out


def _errors(config: Config, snap: Snapshot) -> list[Reading]:
    out = []
    for e in snap.errors:
        if e.error_rate is None or e.operations < ERROR_MIN_OPERATIONS:
            continue
        limit = config.limits(e.component).error_rate
        lower = wilson_lower(e.errors, e.operations, ERROR_Z)
        top = max(e.by_type.items(), key=lambda kv: kv[1]) if e.by_type else None
        mostly = f"; most are {top[0]} ({top[1]:.0f})" if top else ""
        first = f"{top[0]} errors" if top else "errors"
        out.append(
            Reading(
                rule="errors",
                subject=e.component,
                type="errors",
                component=e.component,
                ratio=lower / (ERROR_HIGH_X * limit),
                crit_ratio=ERROR_CRITICAL_X / ERROR_HIGH_X,
                critical=lower > ERROR_CRITICAL_X * limit,
                evidence=(
                    Evidence(
                        "error rate (1m)",
                        round(100 * e.error_rate, 3),
                        round(100 * ERROR_HIGH_X * limit, 3),
                        "%",
                    ),
                    Evidence("error rate, 90 % lower bound", round(100 * lower, 3), None, "%"),
                    Evidence("errors (1m)", e.errors),
                    Evidence("operations (1m)", e.operations),
                    Evidence("acceptable error rate", round(100 * limit, 3), None, "%"),
                ),
                description=(
                    f"{e.component} failed {share_text(e.error_rate)} of {e.operations:.0f} "
                    f"operations in the last minute ({e.errors:.0f} errors, acceptable "
                    f"{share_text(limit)}){mostly}."
                ),
                action=(
                    f"Look at {e.component}'s {first} first: check its log and the "
                    "dependencies it calls; add retries with backoff or a circuit breaker "
                    "if a dependency is failing, and roll back a recent change if it began "
                    "with one."
                ),
                support=min(1.0, e.operations / 200.0),
                wants_causes=True,
            )
        )
    return out


def _cpu_saturation(config: Config, res: Resources) -> list[Reading]:
    det = config.detector
    psi = _psi(res, "cpu")
    lpc = res.load[0] / res.cpu_count if res.load is not None and res.cpu_count else None
    parts = [
        _Part(psi, det.psi_cpu_high, det.psi_cpu_critical, "PSI cpu some avg10", "%"),
        _Part(lpc, det.load_per_core_high, det.load_per_core_critical, "load per core", ""),
    ]
    sentence = []
    if psi is not None:
        sentence.append(f"tasks waited for a CPU {psi:.0f} % of the last 10 s (PSI cpu some)")
    if lpc is not None:
        sentence.append(f"the 1-minute load is {lpc:.2f} per core")
    return _combined(
        "cpu_saturation",
        "cpu",
        parts,
        "CPU saturation: " + " and ".join(sentence) + ".",
        "The machine has more runnable work than cores: move batch jobs elsewhere, lower "
        "worker or thread counts, or add CPUs.",
    )


def _memory_pressure(config: Config, res: Resources) -> list[Reading]:
    det = config.detector
    psi = _psi(res, "memory")
    swap = None
    if res.swap_in_rate is not None or res.swap_out_rate is not None:
        swap = ((res.swap_in_rate or 0.0) + (res.swap_out_rate or 0.0)) / MIB
    parts = [
        _Part(psi, det.psi_memory_high, det.psi_memory_critical, "PSI memory some avg10", "%"),
        _Part(swap, det.swap_mb_s_high, det.swap_mb_s_critical, "swap in + out", "MB/s"),
    ]
    sentence = []
    if psi is not None:
        sentence.append(f"tasks stalled on memory {psi:.0f} % of the last 10 s")
    if swap is not None:
        sentence.append(f"the system swaps {swap:.1f} MB/s")
    return _combined(
        "memory_pressure",
        "memory",
        parts,
        "Memory pressure: " + " and ".join(sentence) + ".",
        "The machine is short of memory: shrink the largest processes' caches, stop what is "
        "not needed, or add RAM; every swapped page slows the applications down.",
    )


def _io_pressure(config: Config, res: Resources) -> list[Reading]:
    det = config.detector
    psi = _psi(res, "io")
    iowait = res.iowait_percent
    parts = [
        _Part(psi, det.psi_io_high, det.psi_io_critical, "PSI io some avg10", "%"),
        _Part(iowait, det.iowait_high, det.iowait_critical, "IO wait", "%"),
    ]
    sentence = []
    if psi is not None:
        sentence.append(f"tasks waited on storage {psi:.0f} % of the last 10 s")
    if iowait is not None:
        sentence.append(f"CPUs sat in IO wait {iowait:.0f} % of the time")
    return _combined(
        "io_pressure",
        "io",
        parts,
        "IO saturation: " + " and ".join(sentence) + ".",
        "Processes are waiting on storage: find the heaviest readers and writers (iotop), "
        "batch or defer writes, and move logs and temporary files to a faster disk.",
    )


def _disk(config: Config, d: DiskUsage) -> Reading:
    det = config.detector
    free = _size(max(0, d.total - d.used))
    return Reading(
        rule="disk",
        subject=d.mount,
        type="io",
        component="system",
        ratio=d.percent / det.disk_high,
        crit_ratio=det.disk_critical / det.disk_high,
        critical=d.percent > det.disk_critical,
        evidence=(
            Evidence(f"disk used {d.mount}", round(d.percent, 1), det.disk_high, "%"),
            Evidence("free", round(max(0, d.total - d.used) / MIB, 1), None, "MB"),
        ),
        description=(
            f"{d.mount} is {d.percent:.0f} % full ({free} free of {_size(d.total)}; "
            f"high above {det.disk_high:g} %)."
        ),
        action=(
            f"Free space on {d.mount}: rotate or compress logs, delete old build artifacts "
            f"and caches, or grow the volume; {free} left."
        ),
    )


# ---------------------------------------------------------------------------------------------
# helpers


@dataclass(frozen=True, slots=True)
class _Part:
    """One signal of a combined saturation rule."""

    value: float | None
    high: float
    critical: float
    name: str
    unit: str


def _combined(
    rule: str, type_: str, parts: list[_Part], description: str, action: str
) -> list[Reading]:
    """A rule over several signals: it fires on whichever is worst, relative to its threshold."""
    have = [(p, p.value) for p in parts if p.value is not None]
    if not have:
        return []
    worst, value = max(have, key=lambda pv: pv[1] / pv[0].high)
    return [
        Reading(
            rule=rule,
            subject="system",
            type=type_,
            component="system",
            ratio=value / worst.high,
            crit_ratio=worst.critical / worst.high,
            critical=any(v > p.critical for p, v in have),
            evidence=tuple(Evidence(p.name, round(v, 2), p.high, p.unit) for p, v in have),
            description=description,
            action=action,
        )
    ]


def wilson_lower(errors: float, operations: float, z: float = ERROR_Z) -> float:
    """Lower end of the Wilson score interval of errors / operations."""
    if operations <= 0:
        return 0.0
    p = min(1.0, max(0.0, errors / operations))
    n = operations
    denom = 1.0 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / denom)


def _series_label(s: SeriesStats) -> str:
    """The series' name and tags, without the component tag the sentence already names."""
    tags = [(k, v) for k, v in s.tags if k != "component"]
    return SeriesKey(s.name, tuple(tags), s.kind).id


def _psi(res: Resources, resource: str) -> float | None:
    for p in res.pressure:
        if p.resource == resource:
            return p.some_avg10
    return None


def _size(n: float) -> str:
    for unit, div in (("TB", 1024.0**4), ("GB", 1024.0**3), ("MB", MIB)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n / 1024:.0f} kB"


__all__ = ["ERROR_Z", "Reading", "measure", "wilson_lower"]
