"""The tuner's events: every decision -- proposed, applied, failed, kept, reverted, lost,
inconclusive -- as an alert of kind ``tuning`` with its numbers, newest first. Written on the
Monitor's thread, read from any."""

from __future__ import annotations

import logging
import threading
from collections import deque

from vtmon.model import Alert, Severity, TuningAction

log = logging.getLogger(__name__)

EVENTS = 200


class EventLog:
    """The last ``EVENTS`` events, and the analysis' alerts merged with them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: deque[Alert] = deque(maxlen=EVENTS)
        self._view: tuple[Alert, ...] = ()
        self._merged: tuple[tuple[Alert, ...], tuple[Alert, ...], tuple[Alert, ...]] | None = None

    def say(
        self,
        severity: Severity,
        message: str,
        a: TuningAction | None,
        now: float,
        value: float | None = None,
        threshold: float | None = None,
        component: str = "",
    ) -> None:
        """Log one event; ``a`` gives its component and metric (else ``component``)."""
        alert = Alert(
            t=now,
            severity=severity,
            kind="tuning",
            message=message,
            component=a.component if a is not None else component,
            metric=a.metric if a is not None else "",
            value=value,
            threshold=threshold,
        )
        log.info("%s", message)
        with self._lock:
            self._events.appendleft(alert)
            self._view = tuple(self._events)

    def view(self) -> tuple[Alert, ...]:
        """Every event kept, newest first."""
        with self._lock:
            return self._view

    def merge(self, alerts: tuple[Alert, ...]) -> tuple[Alert, ...]:
        """The analysis' alerts log with the events, newest first (cached)."""
        events = self.view()
        if not events:
            return alerts
        cached = self._merged
        if cached is not None and cached[0] is alerts and cached[1] is events:
            return cached[2]
        merged = tuple(sorted((*alerts, *events), key=lambda a: -a.t)[: max(len(alerts), 1000)])
        self._merged = (alerts, events, merged)
        return merged
