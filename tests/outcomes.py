"""What the actuator tests wait on."""

from __future__ import annotations

import threading

from vtmon.tuning.actuators import Outcome


class Outcomes:
    """A ``done`` callback that a test can wait on."""

    def __init__(self) -> None:
        self.got: list[Outcome] = []
        self._cond = threading.Condition()

    def __call__(self, outcome: Outcome) -> None:
        with self._cond:
            self.got.append(outcome)
            self._cond.notify_all()

    def wait(self, n: int = 1, timeout: float = 10.0) -> Outcome:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.got) >= n, timeout), self.got
            return self.got[n - 1]
