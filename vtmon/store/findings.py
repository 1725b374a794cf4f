"""What the analysis found, kept in the history file so a report can tell the story of any
past period: bottlenecks (when each fired, escalated and resolved), alerts, regressions,
forecasts that reached a limit, recommendations, health once a minute, and the ingest
counters once a minute.

The Snapshot says all of this about *now*; ``FindingsTracker`` turns the stream of Snapshots
into the few events worth keeping, each once: a bottleneck when it fires or escalates and
again when it resolves (as it was at its worst), every new alert and regression, a
prediction or recommendation when it appears, per-component health and the ingest counters'
growth at the first Snapshot of each minute (forecasts reaching a limit and recommendations
again then, while they last), and ``start`` / ``stop`` marks for the runs. It
runs on the Monitor's thread (``HistoryStore.observe``) and costs a few identity checks per
tick between evaluations; the store's writer thread writes the rows with the rest.

A finding is ``(t, kind, component, data)``; ``data`` is the finding's fields as plain JSON
(the same keys as in the Snapshot, docs/snapshot.md). Layout and use: docs/report.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from typing import Any

from vtmon.model import Alert, IngestStats, Snapshot, as_table

KINDS: tuple[str, ...] = (
    "start",  # a vtmon run began (its first Snapshot)
    "stop",  # it stopped cleanly
    "bottleneck",  # fired, or escalated (the same id and start again, with the new severity)
    "resolved",  # resolved, as it was at its worst
    "alert",
    "regression",
    "prediction",  # a forecast reaching its limit in the horizon: new, then once a minute
    "recommendation",  # when it appears, then once a minute while it lasts
    "health",  # per component and "overall", once a minute
    "ingest",  # lines accepted and rejected (by reason) since the previous one, once a minute
)
MINUTE_S = 60.0
ALERT_SLACK_S = 300.0  # alerts may be merged into the log out of order by this much


@dataclass(frozen=True, slots=True)
class Finding:
    t: float
    kind: str  # one of KINDS
    component: str
    data: dict[str, Any]


def plain(obj: Any) -> Any:
    """A dataclass (and what it holds) as JSON-ready values; NaN and infinities become None."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        if obj and isinstance(obj[0], tuple) and len(obj[0]) == 2 and isinstance(obj[0][0], str):
            return {str(k): v for k, v in obj}  # tags
        return [plain(v) for v in obj]
    return obj


class FindingsTracker:
    """See the module docstring. Not thread-safe: one caller (the Monitor's thread)."""

    def __init__(self) -> None:
        self._started = False
        self._last: Snapshot | None = None
        self._active: dict[tuple[str, float], int] = {}  # (id, started) -> severity rank kept
        self._resolved: set[tuple[str, float]] = set()
        self._resolved_src: tuple[Any, ...] | None = None
        self._alerts_src: tuple[Alert, ...] | None = None
        self._alerts_seen: set[Alert] = set()  # the recent ones, within ALERT_SLACK_S
        self._alert_top = -math.inf
        self._regressions: set[tuple[str, str, float]] = set()
        self._regressions_src: tuple[Any, ...] | None = None
        self._predictions: set[tuple[str, str]] = set()
        self._predictions_src: tuple[Any, ...] | None = None
        self._recommendations: set[tuple[str, str]] = set()
        self._recommendations_src: tuple[Any, ...] | None = None
        self._minute: float | None = None
        self._ingest = IngestStats()  # the counters of the Snapshot before

    def observe(self, snap: Snapshot) -> list[Finding]:
        """The findings that ``snap`` adds to what earlier Snapshots said."""
        out: list[Finding] = []
        t = snap.t
        if not self._started:
            self._started = True
            out.append(Finding(t, "start", "", {"host": snap.host, "started": snap.started}))
        self._bottlenecks(snap, out)
        self._alerts(snap, out)
        minute = math.floor(t / MINUTE_S)
        tick = minute != self._minute  # the first Snapshot of a minute
        self._minute = minute
        if snap.regressions is not self._regressions_src:
            self._regressions_src = snap.regressions
            regressions: set[tuple[str, str, float]] = set()
            for r in snap.regressions:
                rkey = (r.series, r.metric, r.detected)
                regressions.add(rkey)
                if rkey not in self._regressions:
                    out.append(Finding(r.detected, "regression", r.component, plain(r)))
            self._regressions = regressions
        # Forecasts reaching a limit and recommendations: when they appear, and again each
        # minute while they last, so that a report of any period they overlap has them.
        if tick or snap.predictions is not self._predictions_src:
            self._predictions_src = snap.predictions
            predictions: set[tuple[str, str]] = set()
            for p in snap.predictions:
                if p.eta_s is None:
                    continue
                pkey = (p.component, p.metric)
                predictions.add(pkey)
                if tick or pkey not in self._predictions:
                    out.append(Finding(t, "prediction", p.component, plain(p)))
            self._predictions = predictions
        if tick or snap.recommendations is not self._recommendations_src:
            self._recommendations_src = snap.recommendations
            recommendations: set[tuple[str, str]] = set()
            for rec in snap.recommendations:
                ckey = (rec.component, rec.title)
                recommendations.add(ckey)
                if tick or ckey not in self._recommendations:
                    out.append(Finding(t, "recommendation", rec.component, plain(rec)))
            self._recommendations = recommendations
        if tick:
            out.extend(self._health(snap))
            out.extend(self._ingest_delta(snap))
        self._last = snap
        return out

    def final(self, t: float | None = None) -> list[Finding]:
        """What is left to keep when the run stops: the ingest counters' last growth and a
        ``stop`` mark (nothing when no Snapshot was seen)."""
        snap = self._last
        if snap is None:
            return []
        stop_t = snap.t if t is None else max(t, snap.t)
        return [*self._ingest_delta(snap), Finding(stop_t, "stop", "", {})]

    # --- the parts ------------------------------------------------------------------------

    def _bottlenecks(self, snap: Snapshot, out: list[Finding]) -> None:
        active: dict[tuple[str, float], int] = {}
        for b in snap.bottlenecks:
            key = (b.id, b.started)
            rank = b.severity.rank
            kept = self._active.get(key)
            if kept is None or rank > kept:
                out.append(Finding(snap.t, "bottleneck", b.component, plain(b)))
                kept = rank
            active[key] = kept
        self._active = active
        if snap.resolved is self._resolved_src:
            return
        self._resolved_src = snap.resolved
        keys = set()
        for b in snap.resolved:
            key = (b.id, b.started)
            keys.add(key)
            if key not in self._resolved:
                out.append(Finding(b.resolved or snap.t, "resolved", b.component, plain(b)))
        self._resolved = keys

    def _alerts(self, snap: Snapshot, out: list[Finding]) -> None:
        if snap.alerts is self._alerts_src:
            return
        self._alerts_src = snap.alerts
        floor = self._alert_top - ALERT_SLACK_S
        new: list[Alert] = []
        for a in snap.alerts:  # newest first
            if a.t < floor:
                break
            if a not in self._alerts_seen:
                new.append(a)
        for a in reversed(new):  # oldest first
            out.append(Finding(a.t, "alert", a.component, plain(a)))
            self._alerts_seen.add(a)
            self._alert_top = max(self._alert_top, a.t)
        if new:
            floor = self._alert_top - ALERT_SLACK_S
            self._alerts_seen = {a for a in self._alerts_seen if a.t >= floor}

    def _health(self, snap: Snapshot) -> list[Finding]:
        targets = as_table(snap.series).component_targets()
        out = []
        for h in snap.health:
            data = plain(h)
            if h.component in targets:
                data["target_ms"] = targets[h.component]
            out.append(Finding(snap.t, "health", h.component, data))
        return out

    def _ingest_delta(self, snap: Snapshot) -> list[Finding]:
        ing, was = snap.ingest, self._ingest
        self._ingest = ing  # immutable, its mappings fresh in every Snapshot
        rejected = _grown(ing.rejected, was.rejected)
        closed = _grown(ing.closed, was.closed)
        accepted = ing.accepted - was.accepted
        dropped = ing.samples_dropped - was.samples_dropped
        client = ing.client_dropped - was.client_dropped
        refused = ing.refused - was.refused
        quiet = accepted <= 0 and dropped <= 0 and client <= 0 and refused <= 0
        if quiet and not rejected and not closed:
            return []
        data = {
            "accepted": max(accepted, 0),
            "rejected": rejected,
            "samples_dropped": max(dropped, 0),
            "client_dropped": max(client, 0),
            "refused": max(refused, 0),
            "closed": closed,
        }
        return [Finding(snap.t, "ingest", "", data)]


def _grown(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """What each count by reason grew by since ``before``."""
    return {r: n - before.get(r, 0) for r, n in now.items() if n > before.get(r, 0)}
