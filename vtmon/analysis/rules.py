"""Bottleneck rules and the state machine that keeps them from crying wolf.

Each rule measures, for every subject it knows (a component, the system, a mount), one value
against a firing threshold and a critical one, and reports it as a ``_Reading`` whose ``ratio``
is value / firing threshold. The state machine per (rule, subject) then works on the ratio
alone, the way Prometheus' ``for`` and ``keep_firing_for`` and Netdata's status-dependent
thresholds do:

    inactive --ratio > 1--> pending --held for_s--> firing
        firing --ratio < clear_ratio for clear_for_s--> resolved (moves to the history)
        an immediate critical goes from inactive or pending straight to firing

A pending condition that dips to or below its threshold once goes back to inactive; a firing one
that dips below the threshold but stays above ``clear_ratio`` x threshold stays firing. Severity
is HIGH when it fires and CRITICAL once the critical condition has also held ``for_s`` (at once
for an immediate critical); it falls back to HIGH only after the value stayed below
``clear_ratio`` x the critical threshold for ``clear_for_s``.

The detector only sees evaluation times (every ``[detector] interval_s``); the Analyzer calls it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from vtmon.analysis.causes import SignalHistory, process_cores, rank_causes
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
from vtmon.model import (
    TYPE_WEIGHT,
    Bottleneck,
    Cause,
    DiskUsage,
    Evidence,
    Resources,
    SeriesKey,
    SeriesStats,
    Severity,
    Snapshot,
)

MEMORY_HIGH_PCT = 80.0
MEMORY_CRITICAL_PCT = 90.0
MEMORY_IMMEDIATE_PCT = 95.0
CPU_READINGS = 5  # the CPU rule averages this many system readings
LATENCY_IMMEDIATE_X = 10.0  # one sample above this many targets is an immediate critical
ERROR_Z = 1.2816  # one-sided 90 % Wilson bound: the rate must be above the limit, not just look so
RESOLVED_KEEP = 200


@dataclass(frozen=True, slots=True)
class _Reading:
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


@dataclass(slots=True)
class _State:
    reading: _Reading
    since: float  # when the condition was first seen (the pending start; Bottleneck.started)
    firing: bool = False
    severity: Severity = Severity.HIGH
    crit_since: float | None = None
    calm_since: float | None = None  # below the critical clearing level since
    clear_since: float | None = None  # below the clearing level since
    causes: tuple[Cause, ...] = ()
    crit_reading: _Reading | None = None  # the last reading that was critical
    bottleneck: Bottleneck | None = None
    worst: Bottleneck | None = None  # as it was at its highest ratio: what the history keeps
    worst_ratio: float = -math.inf
    top_severity: Severity = Severity.HIGH


@dataclass(slots=True)
class _Outcome:
    fired: list[Bottleneck] = field(default_factory=list)
    resolved: list[Bottleneck] = field(default_factory=list)
    escalated: list[Bottleneck] = field(default_factory=list)


class Detector:
    """Turns Snapshots into active and resolved bottlenecks."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._states: dict[str, _State] = {}
        self._resolved: deque[Bottleneck] = deque(maxlen=RESOLVED_KEEP)
        self._active: tuple[Bottleneck, ...] = ()
        self.escalated: list[Bottleneck] = []  # those that became critical at the last evaluation

    # -- public ----------------------------------------------------------------------------

    def evaluate(
        self, snap: Snapshot, signals: SignalHistory, now: float, peaks: Mapping[str, float]
    ) -> tuple[list[Bottleneck], list[Bottleneck]]:
        """Run every rule once; returns (newly fired, newly resolved)."""
        readings: dict[str, _Reading] = {}
        for rule in self._rules(snap, signals, peaks):
            for r in rule:
                readings[r.id] = r
        out = _Outcome()
        for key in sorted(self._states.keys() | readings.keys()):  # a stable order of alerts
            state = self._states.get(key)
            reading = readings.get(key)
            if reading is None:
                assert state is not None
                # No data any more (series forgotten, disk unmounted): it counts as calm.
                reading = replace(state.reading, ratio=None, critical=False, immediate=False)
            self._step(key, state, reading, signals, now, out)
        self._active = tuple(
            sorted(
                (s.bottleneck for s in self._states.values() if s.bottleneck is not None),
                key=lambda b: (-b.impact, -b.confidence, b.started, b.id),
            )
        )
        self.escalated = out.escalated
        return out.fired, out.resolved

    def active(self) -> tuple[Bottleneck, ...]:
        """Firing bottlenecks, most impact first."""
        return self._active

    def resolved(self) -> tuple[Bottleneck, ...]:
        """Resolved bottlenecks, newest first (the last ``RESOLVED_KEEP``)."""
        return tuple(self._resolved)

    # -- the state machine -----------------------------------------------------------------

    def _step(
        self,
        key: str,
        state: _State | None,
        r: _Reading,
        signals: SignalHistory,
        now: float,
        out: _Outcome,
    ) -> None:
        det = self.config.detector
        above = r.ratio is not None and r.ratio > 1.0
        if state is None:
            if not (above or r.immediate):
                return
            state = self._states[key] = _State(reading=r, since=now)
        if r.has_data or state.bottleneck is None:
            state.reading = r  # without data the last description and evidence stay on show
        if r.critical or r.immediate:
            state.crit_since = state.crit_since if state.crit_since is not None else now
            state.crit_reading = r
        else:
            state.crit_since = None
        crit_held = r.immediate or (
            state.crit_since is not None and now - state.crit_since >= det.for_s
        )

        if not state.firing:
            if not (above or r.immediate):
                del self._states[key]  # one dip ends a pending condition: no crying wolf
                return
            if not (r.immediate or now - state.since >= det.for_s):
                return
            state.firing = True
            state.severity = Severity.CRITICAL if crit_held else Severity.HIGH
            self._refresh(state, r, signals, now)
            assert state.bottleneck is not None
            out.fired.append(state.bottleneck)
            return

        # Firing: escalate, de-escalate, clear -- each with its own hysteresis.
        escalated = False
        if state.severity is not Severity.CRITICAL and crit_held:
            state.severity = Severity.CRITICAL
            state.calm_since = None
            escalated = True
        elif state.severity is Severity.CRITICAL:
            calm = not r.immediate and (r.ratio is None or r.ratio < r.crit_ratio * det.clear_ratio)
            if not calm:
                state.calm_since = None
            elif state.calm_since is None:
                state.calm_since = now
            elif now - state.calm_since >= det.clear_for_s:
                state.severity = Severity.HIGH
                state.calm_since = None
        clearing = not r.immediate and (r.ratio is None or r.ratio < det.clear_ratio)
        if not clearing:
            state.clear_since = None
        elif state.clear_since is None:
            state.clear_since = now
        if state.clear_since is not None and now - state.clear_since >= det.clear_for_s:
            assert state.bottleneck is not None and state.worst is not None
            # The history shows what happened -- the bottleneck at its worst, at the highest
            # severity it reached -- not the calm reading that cleared it.
            sev = state.top_severity
            done = replace(
                state.worst,
                severity=sev,
                impact=_impact(sev, state.worst.type),
                causes=state.causes or state.worst.causes,
                resolved=now,
            )
            del self._states[key]
            self._resolved.appendleft(done)
            out.resolved.append(done)
            return
        self._refresh(state, r, signals, now)
        if escalated:
            assert state.bottleneck is not None
            out.escalated.append(state.bottleneck)

    def _refresh(self, state: _State, r: _Reading, signals: SignalHistory, now: float) -> None:
        """(Re)build the Bottleneck from the latest reading; causes re-ranked every time."""
        det = self.config.detector
        if r.wants_causes:
            causes = rank_causes(signals, state.since, now, lead_s=det.for_s)
            # Keep the last ranking when the windows say nothing new (e.g. history too short).
            state.causes = causes or state.causes
        shown = state.reading  # the last reading with data
        action = shown.action
        description, evidence = shown.description, shown.evidence
        crit = state.crit_reading
        if (
            state.severity is Severity.CRITICAL
            and crit is not None
            and crit is not shown
            and not (shown.critical or shown.immediate)
        ):
            # Critical stays until calm for a while (hysteresis); say what made it critical,
            # or the description and evidence on show would not explain the severity.
            description = f"{description} Still critical after: {crit.description}"
            names = {e.name for e in evidence}
            evidence += tuple(e for e in crit.evidence if e.name not in names)
        if state.causes:
            hint = CAUSE_HINTS.get(state.causes[0].signal)
            if hint:
                action = f"{action} {hint}"
        state.bottleneck = Bottleneck(
            id=shown.id,
            type=shown.type,
            severity=state.severity,
            component=shown.component,
            description=description,
            impact=_impact(state.severity, shown.type),
            confidence=_confidence(shown, state.since, now, det.for_s),
            evidence=evidence,
            suggested_action=action,
            started=state.since,
            causes=state.causes,
            rule=shown.rule,
        )
        if state.severity.rank > state.top_severity.rank:
            state.top_severity = state.severity
        level = shown.ratio if shown.ratio is not None else 0.0
        if shown.immediate:
            level = max(level, shown.crit_ratio)
        if shown.has_data and level >= state.worst_ratio:
            state.worst, state.worst_ratio = state.bottleneck, level
        elif state.worst is None:
            state.worst = state.bottleneck

    # -- rules -----------------------------------------------------------------------------

    def _rules(
        self, snap: Snapshot, signals: SignalHistory, peaks: Mapping[str, float]
    ) -> list[list[_Reading]]:
        res = snap.resources
        return [
            self._memory(snap),
            self._cpu(signals),
            self._process_cpu(res, signals),
            self._latency(snap, peaks),
            self._errors(snap),
            self._cpu_saturation(res),
            self._memory_pressure(res),
            self._io_pressure(res),
            [self._disk(d) for d in res.disks],
        ]

    def _memory(self, snap: Snapshot) -> list[_Reading]:
        out = []
        for comp, (mb, gauge) in component_memory(snap).items():
            limit = self.config.limits(comp).max_memory_mb
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
                _Reading(
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

    def _cpu(self, signals: SignalHistory) -> list[_Reading]:
        det = self.config.detector
        vals = signals.last("cpu", CPU_READINGS)
        if vals.size == 0:
            return []
        mean = float(vals.mean())
        return [
            _Reading(
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

    def _process_cpu(self, res: Resources, signals: SignalHistory) -> list[_Reading]:
        det = self.config.detector
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
            _Reading(
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
                    Evidence(
                        "process CPU, one core = 100 %", round(proc.cpu_percent, 1), None, "%"
                    ),
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

    def _latency(self, snap: Snapshot, peaks: Mapping[str, float]) -> list[_Reading]:
        # A component has one target, so its worst p95 is also its worst against the target.
        worst = {
            comp: (
                p95 / self.config.limits(comp).target_ms,
                _series_label(s),
                p95,
                s.windows["1m"].count,
            )
            for comp, (p95, s) in component_p95(snap).items()
        }
        out = []
        for comp in worst.keys() | peaks.keys():
            target = self.config.limits(comp).target_ms
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
                _Reading(
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

    def _errors(self, snap: Snapshot) -> list[_Reading]:
        out = []
        for e in snap.errors:
            if e.error_rate is None or e.operations < ERROR_MIN_OPERATIONS:
                continue
            limit = self.config.limits(e.component).error_rate
            lower = wilson_lower(e.errors, e.operations, ERROR_Z)
            top = max(e.by_type.items(), key=lambda kv: kv[1]) if e.by_type else None
            mostly = f"; most are {top[0]} ({top[1]:.0f})" if top else ""
            first = f"{top[0]} errors" if top else "errors"
            out.append(
                _Reading(
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

    def _cpu_saturation(self, res: Resources) -> list[_Reading]:
        det = self.config.detector
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

    def _memory_pressure(self, res: Resources) -> list[_Reading]:
        det = self.config.detector
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

    def _io_pressure(self, res: Resources) -> list[_Reading]:
        det = self.config.detector
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

    def _disk(self, d: DiskUsage) -> _Reading:
        det = self.config.detector
        free = _size(max(0, d.total - d.used))
        return _Reading(
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
) -> list[_Reading]:
    """A rule over several signals: it fires on whichever is worst, relative to its threshold."""
    have = [p for p in parts if p.value is not None]
    if not have:
        return []
    worst = max(have, key=lambda p: p.value / p.high)  # type: ignore[operator]
    assert worst.value is not None
    return [
        _Reading(
            rule=rule,
            subject="system",
            type=type_,
            component="system",
            ratio=worst.value / worst.high,
            crit_ratio=worst.critical / worst.high,
            critical=any(p.value > p.critical for p in have),  # type: ignore[operator]
            evidence=tuple(
                Evidence(p.name, round(p.value, 2), p.high, p.unit)  # type: ignore[arg-type]
                for p in have
            ),
            description=description,
            action=action,
        )
    ]


def _impact(severity: Severity, type_: str) -> float:
    return round(severity.weight * TYPE_WEIGHT.get(type_, 0.5), 3)


def _confidence(r: _Reading, since: float, now: float, for_s: float) -> float:
    """0..1 from how far above threshold (0 at the firing one, 1 at the critical one), how long
    the condition has held (full at 3 pending periods) and how much data backs the value."""
    if r.immediate:
        far = 1.0
    elif r.ratio is None:
        far = 0.0
    else:
        span = max(1e-9, r.crit_ratio - 1.0)
        far = min(1.0, max(0.0, (r.ratio - 1.0) / span))
    held = min(1.0, max(0.0, (now - since) / (3.0 * for_s))) if for_s > 0 else 1.0
    base = 0.4 + 0.3 * far + 0.3 * held
    return round(base * (0.7 + 0.3 * min(1.0, max(0.0, r.support))), 2)


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


# A sentence appended to a latency or error bottleneck's action when the top cause is known.
CAUSE_HINTS: dict[str, str] = {
    "psi_cpu_some": "The likely cause is CPU saturation: free CPU first (other processes, worker "
    "count).",
    "cpu": "The likely cause is CPU use: free CPU first (other processes, worker count).",
    "load_per_core": "The likely cause is more runnable work than cores: free CPU first.",
    "process_cpu": "The likely cause is the watched process' own CPU use: profile it first.",
    "psi_memory_some": "The likely cause is memory pressure: free memory first.",
    "psi_memory_full": "The likely cause is memory stalls: free memory first.",
    "swap_activity": "The likely cause is swapping: free memory first.",
    "mem_percent": "The likely cause is growing memory use: find what grows.",
    "psi_io_some": "The likely cause is IO pressure: find the heaviest disk users first.",
    "psi_io_full": "The likely cause is IO stalls: find the heaviest disk users first.",
    "iowait": "The likely cause is IO wait: find the heaviest disk users first.",
    "disk_read": "The likely cause is heavy disk reads: find the reader first.",
    "disk_write": "The likely cause is heavy disk writes: find the writer first.",
    "net_rx": "The likely cause is incoming network traffic: check for a flood or a large "
    "transfer.",
    "net_tx": "The likely cause is outgoing network traffic: check for a large transfer.",
}

__all__ = ["Detector", "wilson_lower", "CAUSE_HINTS"]
