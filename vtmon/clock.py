"""Time, injected: the engine asks a clock, so tests run an hour in milliseconds."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def sleep_until(self, deadline: float, stop: threading.Event) -> bool:
        """Wait until monotonic() >= deadline or ``stop`` is set; True when stopped."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep_until(self, deadline: float, stop: threading.Event) -> bool:
        return stop.wait(max(0.0, deadline - time.monotonic()))


class ManualClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._t = start
        self._m = 1000.0

    def time(self) -> float:
        return self._t

    def monotonic(self) -> float:
        return self._m

    def advance(self, seconds: float) -> None:
        self._t += seconds
        self._m += seconds

    def sleep_until(self, deadline: float, stop: threading.Event) -> bool:
        if deadline > self._m:
            self.advance(deadline - self._m)
        return stop.is_set()
