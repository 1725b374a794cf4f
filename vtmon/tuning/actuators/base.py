"""What every actuator is, and what it reports.

An actuator changes what a tuning action names and reports back. Every actuator is
non-blocking: ``apply`` and ``revert`` start the change and return at once; ``done`` is called
later with the ``Outcome`` -- possibly from another thread (a knob's answer arrives on the
socket server's thread), so the tuner must hand it over under its lock and never act on it
inside the callback. An actuator never sleeps: a knob's answer is awaited by
``KnobRegistry.expire(now)``, which its caller drives with the injected clock, and a command
waits for its process on a thread of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from vtmon.model import TuningAction

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one apply or revert."""

    ok: bool
    message: str = ""  # one sentence; why it failed, or what was set
    value: Any = None  # the value now in effect, when the actuator knows it


Done = Callable[[Outcome], None]


class Actuator(Protocol):
    @property
    def kind(self) -> str:
        """One of vtmon.model.ACTUATORS: "knob", "process", "command"."""
        ...

    def apply(self, action: TuningAction, done: Done) -> None:
        """Set ``action.value`` on ``action.target``; ``action.previous`` was saved first."""
        ...

    def revert(self, action: TuningAction, done: Done) -> None:
        """Set ``action.previous`` back."""
        ...


def call_done(done: Done, outcome: Outcome) -> None:
    """Hand ``outcome`` to ``done``; a bug in it is logged, never raised into the caller."""
    try:
        done(outcome)
    except Exception:  # the tuner's bug must not break the socket server or the engine
        log.exception("actuator callback failed")
