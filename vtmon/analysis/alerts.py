"""The alerts log and the per-sample alert rules of the original design.

Rules on incoming samples (``AlertLog.observe_batch``), each with its suppression window per
component, counted from the last alert that was logged (not from the last one suppressed):

    high latency   a distribution sample above the component's alert threshold
                   (``alert_latency_ms``, default 2x target)                  HIGH      5 min
    memory         a ``memory_heap_used`` / ``memory_rss`` gauge above 90 % of the
                   component's ``max_memory_mb``                              CRITICAL  3 min
    error spike    more than 5 errors for one component in one batch           HIGH     10 min

Everything else (bottleneck fired / resolved, regressions) comes in through ``add``. No alert is
logged before ``started + [detector] warmup_s``: the first seconds after start see half-filled
windows and whatever backlog a client flushes when it connects.

Cost: ``observe_batch`` runs for every batch, so its work is per series, not per sample. Per
distribution series it does one C-level ``max()`` over the batch's values, and none at all while the
component's latency alert is suppressed (which is exactly when a slow component floods it);
per gauge and counter series it does a cached name check. Timed samples come in runs (one per
series and batch from the bulk parsers), each also one C-level ``max()``.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from vtmon.analysis.common import MIB, memory_gauge, ms_text
from vtmon.config import Config
from vtmon.model import Alert, Batch, Kind, SeriesKey, Severity, finite_max, is_error_counter

MEMORY_ALERT_FRACTION = 0.9
ERROR_SPIKE_COUNT = 5  # more than this many errors in one batch
LATENCY_SUPPRESS_S = 300.0
MEMORY_SUPPRESS_S = 180.0
ERROR_SUPPRESS_S = 600.0
_CACHE_MAX = 50_000  # per-key caches are cleared beyond this (series churn must not grow them)


class AlertLog:
    """The last ``max_len`` alerts, newest first, with suppression and warm-up."""

    def __init__(self, config: Config, started: float, max_len: int = 1000) -> None:
        self.config = config
        self.started = started
        self.quiet_until = started + config.detector.warmup_s
        self._log: deque[Alert] = deque(maxlen=max_len)
        self._view: tuple[Alert, ...] = ()
        self._last: dict[str, float] = {}  # suppression key -> time of the last logged alert
        # Batches are applied on the engine thread while the Analyzer adds alerts on the tick;
        # one lock around the few writes is far cheaper than anything per sample.
        self._lock = threading.Lock()
        self._alert_ms: dict[str, float] = {}
        self._memory_mb: dict[str, float] = {}
        self._is_memory: dict[SeriesKey, bool] = {}
        self._is_error: dict[SeriesKey, bool] = {}

    # -- the log ---------------------------------------------------------------------------

    def add(self, alert: Alert, key: str | None = None, suppress_s: float = 0.0) -> bool:
        """Log ``alert`` unless it falls in the warm-up or ``key`` alerted within ``suppress_s``
        before it; True when it was logged."""
        t = alert.t
        if t < self.quiet_until:
            return False
        with self._lock:
            if key is not None:
                last = self._last.get(key)
                if last is not None and suppress_s > 0 and t - last < suppress_s:
                    return False
                self._last[key] = t
            self._log.appendleft(alert)
            self._view = tuple(self._log)
        return True

    def alerts(self) -> tuple[Alert, ...]:
        """Newest first; the same tuple object until something is logged."""
        return self._view

    def _suppressed(self, key: str, now: float, suppress_s: float) -> bool:
        last = self._last.get(key)
        return last is not None and now - last < suppress_s

    # -- per-sample rules ------------------------------------------------------------------

    def observe_batch(self, batch: Batch, now: float) -> None:
        """Apply the per-sample rules to one batch received at ``now``."""
        if now < self.quiet_until:
            return
        if batch.dist or batch.timed:
            self._latency(batch, now)
        if batch.gauges:
            self._memory(batch, now)
        if batch.counts or batch.timed:
            self._error_spike(batch, now)

    def _threshold_ms(self, comp: str) -> float:
        thr = self._alert_ms.get(comp)
        if thr is None:
            if len(self._alert_ms) > _CACHE_MAX:
                self._alert_ms.clear()
            thr = self._alert_ms[comp] = self.config.limits(comp).alert_ms
        return thr

    def _latency(self, batch: Batch, now: float) -> None:
        worst: dict[str, tuple[float, SeriesKey, float]] = {}  # comp -> (value, series, thr)
        skip: set[str] = set()  # components whose alert is suppressed: no max() for them
        for key, buf in batch.dist.items():
            values = buf.values
            if not len(values):
                continue
            comp = key.component
            if comp in skip:
                continue
            if self._suppressed("high_latency:" + comp, now, LATENCY_SUPPRESS_S):
                skip.add(comp)
                continue
            thr = self._threshold_ms(comp)
            m = finite_max(values)
            if m is not None and m > thr and (comp not in worst or m > worst[comp][0]):
                worst[comp] = (m, key, thr)
        for run in batch.timed:
            key = run.key
            if key.kind is not Kind.DISTRIBUTION or not run.values:
                continue
            comp = key.component
            if comp in skip:
                continue
            v = finite_max(run.values)  # the run's largest sample decides, as one by one
            if v is None:
                continue
            thr = self._threshold_ms(comp)
            if v > thr and (comp not in worst or v > worst[comp][0]):
                if self._suppressed("high_latency:" + comp, now, LATENCY_SUPPRESS_S):
                    skip.add(comp)
                    continue
                worst[comp] = (v, key, thr)
        for comp, (v, key, thr) in worst.items():
            self.add(
                Alert(
                    t=now,
                    severity=Severity.HIGH,
                    kind="high_latency",
                    message=f"{comp} {_label(key)} took {ms_text(v)}, above its {ms_text(thr)} "
                    "alert threshold",
                    component=comp,
                    metric=key.id,
                    value=v,
                    threshold=thr,
                ),
                key="high_latency:" + comp,
                suppress_s=LATENCY_SUPPRESS_S,
            )

    def _memory(self, batch: Batch, now: float) -> None:
        is_memory = self._is_memory
        worst: dict[str, tuple[float, SeriesKey]] = {}  # comp -> (MB, series)
        for key, ops in batch.gauges.items():
            hit = is_memory.get(key)
            if hit is None:
                if len(is_memory) > _CACHE_MAX:
                    is_memory.clear()
                hit = is_memory[key] = memory_gauge(key.name) is not None
            if not hit:
                continue
            # The value the gauge was last set to; a relative change (+/-) says nothing alone.
            last = _last_set(ops)
            if last is None or not math.isfinite(last):
                continue
            mb = last / MIB
            comp = key.component
            if comp not in worst or mb > worst[comp][0]:
                worst[comp] = (mb, key)
        for comp, (mb, key) in worst.items():
            budget = self._memory_mb.get(comp)
            if budget is None:
                budget = self._memory_mb[comp] = self.config.limits(comp).max_memory_mb
            thr = MEMORY_ALERT_FRACTION * budget
            if mb <= thr:
                continue
            self.add(
                Alert(
                    t=now,
                    severity=Severity.CRITICAL,
                    kind="memory",
                    message=f"{comp} memory is {mb:.1f} MB ({100 * mb / budget:.0f} % of its "
                    f"{budget:g} MB budget), above the {thr:g} MB alert threshold",
                    component=comp,
                    metric=key.id,
                    value=round(mb, 2),
                    threshold=thr,
                ),
                key="memory:" + comp,
                suppress_s=MEMORY_SUPPRESS_S,
            )

    def _error_spike(self, batch: Batch, now: float) -> None:
        is_error = self._is_error
        errors: dict[str, dict[str, float]] = {}  # comp -> error type -> count
        names: dict[str, str] = {}

        def count(key: SeriesKey, n: float) -> None:
            hit = is_error.get(key)
            if hit is None:
                if len(is_error) > _CACHE_MAX:
                    is_error.clear()
                hit = is_error[key] = is_error_counter(key.name)
            if not hit or not n > 0 or not math.isfinite(n):
                return
            comp = key.component
            etype = "unknown"
            for k, v in key.tags:
                if k == "error_type" and v:
                    etype = v
            types = errors.setdefault(comp, {})
            types[etype] = types.get(etype, 0.0) + n
            names.setdefault(comp, key.name)

        for key, inc in batch.counts.items():
            count(key, inc)
        for run in batch.timed:
            if run.key.kind is Kind.COUNTER and run.values:
                w = run.weight
                n = sum(run.values) * w if min(run.values) > 0 else math.nan
                if not math.isfinite(n):  # only finite positive increments count
                    n = sum(x for x in (v * w for v in run.values) if 0 < x < math.inf)
                count(run.key, n)
        for comp, types in errors.items():
            total = sum(types.values())
            if total <= ERROR_SPIKE_COUNT:
                continue
            self.add(
                Alert(
                    t=now,
                    severity=Severity.HIGH,
                    kind="error_spike",
                    message=f"{comp} reported {total:.0f} errors at once "
                    f"({_types(types.items())}), more than {ERROR_SPIKE_COUNT}",
                    component=comp,
                    metric=names[comp],
                    value=total,
                    threshold=float(ERROR_SPIKE_COUNT),
                ),
                key="error_spike:" + comp,
                suppress_s=ERROR_SUPPRESS_S,
            )


def _label(key: SeriesKey) -> str:
    """The series name, with its tags other than ``component`` when it has any."""
    extra = [f"{k}={v}" if v else k for k, v in key.tags if k != "component"]
    return f"{key.name}{{{','.join(extra)}}}" if extra else key.name


def _types(items: Iterable[tuple[str, float]]) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in sorted(items, key=lambda kv: (-kv[1], kv[0])))


def _last_set(ops: list[tuple[bool | None, Any]]) -> float | None:
    """The value a gauge's updates last set it to (deltas aside); None when they set none."""
    for is_delta, v in reversed(ops):
        if is_delta is None:  # a run of values set one after another
            if len(v):
                return float(v[-1])
        elif not is_delta:
            return v
    return None
