"""The state machine that keeps the bottleneck rules from crying wolf.

Each rule (vtmon/analysis/rules.py) measures, for every subject it knows (a component, the
system, a mount), one value against a firing threshold and a critical one, and reports it as a
``Reading`` whose ``ratio`` is value / firing threshold. The state machine per (rule, subject)
then works on the ratio alone, the way Prometheus' ``for`` and ``keep_firing_for`` and
Netdata's status-dependent thresholds do:

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

from vtmon.analysis.causes import SignalHistory, rank_causes
from vtmon.analysis.rules import Reading, measure
from vtmon.config import Config
from vtmon.model import TYPE_WEIGHT, Bottleneck, Cause, Severity, Snapshot

RESOLVED_KEEP = 200


@dataclass(slots=True)
class _State:
    reading: Reading
    since: float  # when the condition was first seen (the pending start; Bottleneck.started)
    firing: bool = False
    severity: Severity = Severity.HIGH
    crit_since: float | None = None
    calm_since: float | None = None  # below the critical clearing level since
    clear_since: float | None = None  # below the clearing level since
    causes: tuple[Cause, ...] = ()
    crit_reading: Reading | None = None  # the last reading that was critical
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
        readings = measure(self.config, snap, signals, peaks)
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
        r: Reading,
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

    def _refresh(self, state: _State, r: Reading, signals: SignalHistory, now: float) -> None:
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


def _impact(severity: Severity, type_: str) -> float:
    return round(severity.weight * TYPE_WEIGHT.get(type_, 0.5), 3)


def _confidence(r: Reading, since: float, now: float, for_s: float) -> float:
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

__all__ = ["CAUSE_HINTS", "RESOLVED_KEEP", "Detector"]
