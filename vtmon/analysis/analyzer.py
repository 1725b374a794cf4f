"""The Analyzer: what is wrong, why, and what next -- composed once per tick for the Snapshot.

The Monitor feeds it every applied batch (for per-sample alert rules and the largest latency
sample per component) and every system reading (for cause ranking), and asks it for an
``Analysis`` each tick. The rules, the change detector and the forecaster run every
``[detector] interval_s``; between evaluations the previous Analysis is handed out again, with
the alerts log, which per-sample rules may change at any time, always current.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, replace
from typing import Any

from vtmon.analysis.alerts import AlertLog
from vtmon.analysis.causes import SignalHistory
from vtmon.analysis.detector import Detector
from vtmon.analysis.health import health, recommendations
from vtmon.analysis.predict import Forecaster
from vtmon.analysis.regress import RegressionDetector
from vtmon.config import Config
from vtmon.model import (
    Alert,
    Batch,
    Bottleneck,
    Health,
    Kind,
    Prediction,
    Recommendation,
    Regression,
    Resources,
    Severity,
    Snapshot,
    finite_max,
)

log = logging.getLogger(__name__)

SIGNAL_AGE_S = 1800.0  # resource history kept for cause ranking (baseline + long incidents)


@dataclass(frozen=True)
class Analysis:
    """The analysis part of a Snapshot; field names are the Snapshot's."""

    bottlenecks: tuple[Bottleneck, ...] = ()
    resolved: tuple[Bottleneck, ...] = ()
    alerts: tuple[Alert, ...] = ()
    regressions: tuple[Regression, ...] = ()
    predictions: tuple[Prediction, ...] = ()
    health: tuple[Health, ...] = ()
    recommendations: tuple[Recommendation, ...] = ()

    def as_fields(self) -> dict[str, Any]:
        """For ``dataclasses.replace(snapshot, **analysis.as_fields())`` (shallow, no copies)."""
        return {
            "bottlenecks": self.bottlenecks,
            "resolved": self.resolved,
            "alerts": self.alerts,
            "regressions": self.regressions,
            "predictions": self.predictions,
            "health": self.health,
            "recommendations": self.recommendations,
        }


class Analyzer:
    def __init__(self, config: Config, started: float) -> None:
        self.config = config
        self.started = started
        self.signals = SignalHistory(SIGNAL_AGE_S, min_interval_s=config.system_interval_s)
        self.detector = Detector(config)
        self.alert_log = AlertLog(config, started)
        self.regressions = RegressionDetector(min_change=config.detector.regression_min_change)
        self.forecaster = Forecaster(config)
        self.evaluations = 0
        # Batches may be applied on another thread than the one that ticks (tests, embedders);
        # the peaks are swapped out under this lock, everything else is evaluation-only.
        self._lock = threading.Lock()
        self._peaks: dict[str, float] = {}
        self._next_eval: float | None = None
        self._cached = Analysis()

    # -- input -----------------------------------------------------------------------------

    def observe_batch(self, batch: Batch, now: float) -> None:
        """Every batch the engine applies: the largest latency sample per component, and the
        per-sample alert rules."""
        found: dict[str, float] = {}
        for key, buf in batch.dist.items():
            if len(buf.values):
                _peak(found, key.component, buf.values)
        for run in batch.timed:
            if run.key.kind is Kind.DISTRIBUTION and run.values:
                _peak(found, run.key.component, run.values)
        if found:
            with self._lock:
                peaks = self._peaks
                for comp, v in found.items():
                    if v > peaks.get(comp, -math.inf):
                        peaks[comp] = v
        self.alert_log.observe_batch(batch, now)

    def observe_resources(self, r: Resources) -> None:
        """Every system collection."""
        self.signals.record(r)

    # -- output ----------------------------------------------------------------------------

    def evaluate(self, snap: Snapshot, now: float) -> Analysis:
        """Every tick; the rules run when an evaluation is due."""
        if self._next_eval is None or now >= self._next_eval:
            self._run(snap, now)
            interval = self.config.detector.interval_s
            nxt = (self._next_eval if self._next_eval is not None else now) + interval
            # After a stall start again from now rather than evaluating in a burst.
            self._next_eval = nxt if nxt > now else now + interval
        return replace(self._cached, alerts=self.alert_log.alerts())

    def _run(self, snap: Snapshot, now: float) -> None:
        self.evaluations += 1
        with self._lock:
            peaks, self._peaks = self._peaks, {}
        cached = self._cached
        # Each part is guarded on its own: a bug in one (say the forecaster) must not take the
        # bottlenecks, which a person needs most, down with it.
        try:
            fired, resolved = self.detector.evaluate(snap, self.signals, now, peaks)
            for b in fired:
                self._alert_bottleneck(b, now, "")
            for b in self.detector.escalated:
                self._alert_bottleneck(b, now, "escalated to critical: ")
            for b in resolved:
                self._alert_resolved(b, now)
        except Exception:
            log.exception("bottleneck detection failed")
        active = self.detector.active()
        regressions = cached.regressions
        try:
            for reg in self.regressions.update(snap, now):
                self._alert_regression(reg, now)
            regressions = self.regressions.recent()
        except Exception:
            log.exception("regression detection failed")
        predictions = cached.predictions
        try:
            self.forecaster.update(snap, now)
            predictions = self.forecaster.predictions(now)
        except Exception:
            log.exception("forecasting failed")
        scores, recs = cached.health, cached.recommendations
        try:
            scores = health(snap, self.config, active)
            recs = recommendations(snap, self.config, active)
        except Exception:
            log.exception("health scoring failed")
        self._cached = Analysis(
            bottlenecks=active,
            resolved=self.detector.resolved(),
            alerts=(),
            regressions=tuple(regressions),
            predictions=tuple(predictions),
            health=tuple(scores),
            recommendations=tuple(recs),
        )

    # -- alerts ----------------------------------------------------------------------------

    def _alert_bottleneck(self, b: Bottleneck, now: float, how: str) -> None:
        ev = b.evidence[0] if b.evidence else None
        self.alert_log.add(
            Alert(
                t=now,
                severity=b.severity,
                kind="bottleneck",
                message=f"{b.type} bottleneck in {b.component} ({b.severity.value}), "
                f"{how}{b.description}",
                component=b.component,
                metric=ev.name if ev else b.rule,
                value=ev.value if ev else None,
                threshold=ev.threshold if ev else None,
            )
        )

    def _alert_resolved(self, b: Bottleneck, now: float) -> None:
        ev = b.evidence[0] if b.evidence else None
        lasted = _duration(now - b.started)
        self.alert_log.add(
            Alert(
                t=now,
                severity=Severity.LOW,
                kind="resolved",
                message=f"resolved: {b.type} bottleneck in {b.component} after {lasted} ({b.id})",
                component=b.component,
                metric=ev.name if ev else b.rule,
                value=ev.value if ev else None,
                threshold=ev.threshold if ev else None,
            )
        )

    def _alert_regression(self, reg: Regression, now: float) -> None:
        message = reg.message or (
            f"{reg.series} {reg.metric} {reg.change:+.0%} ({reg.before:.4g} -> {reg.after:.4g})"
        )
        self.alert_log.add(
            Alert(
                t=now,
                severity=Severity.MEDIUM,
                kind="regression",
                message=message,
                component=reg.component,
                metric=reg.metric,
                value=reg.after,
                threshold=reg.before,
            )
        )


def _peak(found: dict[str, float], comp: str, values: Any) -> None:
    m = finite_max(values)
    if m is not None and m > found.get(comp, -math.inf):
        found[comp] = m


def _duration(s: float) -> str:
    s = max(0, round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
