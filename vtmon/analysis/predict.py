"""Forecasts: where memory, disk usage and latency are heading, and when they reach a limit.

What is tracked (one point per ``STEP_S``, the last ``WINDOW_S`` kept):

    memory   per component: its largest ``memory_heap_used`` / ``memory_rss`` gauge, in MB;
             limit = the component's ``max_memory_mb`` (the budget the application declares)
    disk     per mount: percent used; limit = ``[detector] disk_critical`` (90 % by default),
             where the detector turns critical -- by 100 % writes already fail, so the warning
             has to come while there is still room to act
    p95      per component: the worst 1-minute p95 of its distributions (with at least
             ``P95_MIN_SAMPLES`` values); limit = 5x the component's target, the detector's
             critical latency level

The model is an ordinary least-squares line over the window rather than Holt's smoothing: with
irregular evaluation times it needs no tuning constants, and its residuals give a confidence
directly. A trend is believed when its slope is at least ``T_MIN`` standard errors from 0 and it
moves the value materially over the horizon (5 % of the current value or 1 % of the limit);
otherwise the series is "steady" and its forecast is its mean.

Confidence = data x fit: data = sqrt(span / window) (two minutes of points give 0.45, the full
ten minutes 1); fit = R^2 for a trend (how much of the movement the line explains), and
1 / (1 + 4 cv) for a steady series (cv = residual spread / mean: a flat, quiet series is a
confident "steady"). There is no prediction with less than ``MIN_SPAN_S`` of points, nor for a
series that has sent nothing for ``STALE_S``.

``predictions`` returns every tracked series with enough data; those that reach their limit
within the horizon come first, soonest first, then rising ones, then the rest.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from vtmon.analysis.common import LATENCY_CRITICAL_X, component_memory, component_p95
from vtmon.config import Config
from vtmon.model import Prediction, Snapshot

STEP_S = 10.0
WINDOW_S = 600.0
MIN_SPAN_S = 110.0  # ~2 minutes of points (12 at one per 10 s)
MIN_POINTS = 10
STALE_S = 60.0
T_MIN = 3.0
_METRIC_ORDER = {"memory": 0, "disk": 1, "p95": 2}


@dataclass(frozen=True, slots=True)
class _Fit:
    level: float  # the line at ``now``
    slope: float  # per second
    mean: float
    significant: bool
    r2: float
    cv: float
    span: float


class Forecaster:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.horizon_s = config.detector.forecast_horizon_s
        self._next = -math.inf
        # (metric, subject) -> points (t, value); subject is a component or a mount
        self._tracks: dict[tuple[str, str], deque[tuple[float, float]]] = {}

    def update(self, snap: Snapshot, now: float) -> None:
        """Record one point per tracked series, at most every ``STEP_S``."""
        if now < self._next:
            return
        self._next = now + STEP_S
        for comp, (mb, _) in component_memory(snap).items():
            self._record(("memory", comp), now, mb)
        for comp, (p95, _) in component_p95(snap).items():
            self._record(("p95", comp), now, p95)
        for d in snap.resources.disks:
            self._record(("disk", d.mount), now, d.percent)
        # Tracks of components and mounts that went away: dropped once they hold nothing recent.
        for key in [k for k, pts in self._tracks.items() if now - pts[-1][0] > WINDOW_S]:
            del self._tracks[key]

    def _record(self, key: tuple[str, str], now: float, v: float) -> None:
        pts = self._tracks.get(key)
        if pts is None:
            pts = self._tracks[key] = deque()
        pts.append((now, v))
        while pts and pts[0][0] < now - WINDOW_S:
            pts.popleft()

    def predictions(self, now: float) -> tuple[Prediction, ...]:
        ranked: list[tuple[tuple[bool, float, bool, int, str, str], Prediction]] = []
        for (metric, subject), pts in self._tracks.items():
            if now - pts[-1][0] > STALE_S:
                continue
            recent = [p for p in pts if p[0] >= now - WINDOW_S]
            if len(recent) < MIN_POINTS or recent[-1][0] - recent[0][0] < MIN_SPAN_S:
                continue
            found = self._predict(metric, subject, recent, now)
            if found is None:
                continue
            pred, rising = found
            rank = (
                pred.eta_s is None,
                pred.eta_s or 0.0,
                not rising,
                _METRIC_ORDER.get(metric, 9),
                pred.component,
                pred.message,
            )
            ranked.append((rank, pred))
        ranked.sort(key=lambda rp: rp[0])
        return tuple(p for _, p in ranked)

    # -- one series ------------------------------------------------------------------------

    def _predict(
        self, metric: str, subject: str, pts: list[tuple[float, float]], now: float
    ) -> tuple[Prediction, bool] | None:
        """The prediction, and whether it is a rising trend."""
        fit = _fit(pts, now)
        if fit is None:
            return None
        horizon = self.horizon_s
        current = pts[-1][1]
        if metric == "memory":
            limit = self.config.limits(subject).max_memory_mb
            unit, component = "MB", subject
        elif metric == "disk":
            limit = self.config.detector.disk_critical
            unit, component = "%", "system"
        else:
            limit = LATENCY_CRITICAL_X * self.config.limits(subject).target_ms
            unit, component = "ms", subject
        moves = abs(fit.slope * horizon) >= max(0.05 * abs(current), 0.01 * limit)
        trend = fit.significant and moves
        if trend:
            forecast = fit.level + fit.slope * horizon
            confidence_fit = fit.r2
        else:
            forecast = fit.mean
            confidence_fit = 1.0 / (1.0 + 4.0 * fit.cv)
        forecast = max(0.0, forecast)
        if metric == "disk":
            forecast = min(100.0, forecast)
        eta: float | None = None
        if current >= limit:
            eta = 0.0
        elif trend and fit.slope > 0:
            t = max(0.0, (limit - fit.level) / fit.slope)
            if t <= horizon:
                eta = t
        data = math.sqrt(min(1.0, fit.span / WINDOW_S))
        confidence = round(max(0.0, min(1.0, data * confidence_fit)), 2)
        target = self.config.limits(subject).target_ms if metric == "p95" else 0.0
        message = _message(
            metric, subject, unit, current, forecast, limit, eta, trend, horizon, target
        )
        pred = Prediction(
            component=component,
            metric=metric,
            unit=unit,
            current=round(current, 3),
            forecast=round(forecast, 3),
            horizon_s=horizon,
            confidence=confidence,
            limit=limit,
            eta_s=None if eta is None else round(eta, 1),
            message=message,
        )
        return pred, trend and fit.slope > 0


def _fit(pts: list[tuple[float, float]], now: float) -> _Fit | None:
    n = len(pts)
    if n < 3:
        return None
    ts = [t - now for t, _ in pts]
    ys = [v for _, v in pts]
    tbar = sum(ts) / n
    ybar = sum(ys) / n
    sxx = sum((t - tbar) ** 2 for t in ts)
    if sxx <= 0:
        return None
    sxy = sum((t - tbar) * (y - ybar) for t, y in zip(ts, ys, strict=True))
    slope = sxy / sxx
    level = ybar - slope * tbar  # the line at t = now
    sse = sum((y - (level + slope * t)) ** 2 for t, y in zip(ts, ys, strict=True))
    sst = sum((y - ybar) ** 2 for y in ys)
    resid = math.sqrt(sse / (n - 2))
    se = resid / math.sqrt(sxx)
    if se > 0:
        significant = abs(slope) / se >= T_MIN
    else:
        significant = slope != 0  # an exact line: any slope is real
    r2 = 1.0 - sse / sst if sst > 0 else 1.0
    cv = resid / abs(ybar) if ybar else (0.0 if resid == 0 else 1.0)
    return _Fit(level, slope, ybar, significant, max(0.0, r2), cv, pts[-1][0] - pts[0][0])


def _message(
    metric: str,
    subject: str,
    unit: str,
    current: float,
    forecast: float,
    limit: float,
    eta: float | None,
    trend: bool,
    horizon: float,
    target: float,
) -> str:
    if metric == "memory":
        what, lim = f"{subject} memory", f"its {limit:g} MB limit"
    elif metric == "disk":
        what, lim = f"disk {subject}", f"{limit:g} % (critical)"
    else:
        what, lim = (
            f"{subject} p95",
            f"{LATENCY_CRITICAL_X:g}x its {target:g} ms target ({limit:g} ms)",
        )
    if eta == 0.0 and current >= limit:
        return f"{what} is at {_v(current, unit)}, over {lim}"
    if eta is not None:
        return f"{what} reaches {lim} in {_eta(eta)}"
    if trend:
        way = "rising" if forecast > current else "falling"
        mins = round(horizon / 60)
        return (
            f"{what} {way}, {_v(current, unit)} -> {_v(forecast, unit)} in {mins} min "
            f"(limit {_v(limit, unit)})"
        )
    return f"{what} steady at {_v(current, unit)}"


def _v(v: float, unit: str) -> str:
    if unit == "%":
        return f"{v:.0f} %"
    if unit == "ms" and v >= 1000:
        return f"{v / 1000:.1f} s"
    if abs(v) >= 10:
        return f"{v:.0f} {unit}"
    return f"{v:.1f} {unit}"


def _eta(s: float) -> str:
    if s < 60:
        return "under a minute"
    return f"~{round(s / 60)} min"
