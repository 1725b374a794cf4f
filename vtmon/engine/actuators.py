"""Where a tuning action takes effect: an application's knob, a watched process, a command.

The tuner (vtmon/engine/tuner.py) decides *what* to change; an actuator changes it and reports
back. Every actuator is non-blocking: ``apply`` and ``revert`` start the change and return at
once; ``done`` is called later with the ``Outcome`` -- possibly from another thread (a knob's
answer arrives on the socket server's thread), so the tuner must hand it over under its lock
and never act on it inside the callback. Timeouts are the tuner's business, with its injected
clock: an actuator never sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from vtmon.model import TuningAction


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one apply or revert."""

    ok: bool
    message: str = ""  # one sentence; why it failed, or what was set
    value: Any = None  # the value now in effect, when the actuator knows it


Done = Callable[[Outcome], None]


class Actuator(Protocol):
    kind: str  # one of vtmon.model.ACTUATORS: "knob", "process", "command"

    def apply(self, action: TuningAction, done: Done) -> None:
        """Set ``action.value`` on ``action.target``; ``action.previous`` was saved first."""
        ...

    def revert(self, action: TuningAction, done: Done) -> None:
        """Set ``action.previous`` back."""
        ...


class Connection(Protocol):
    """One application connection on the socket, as the engine sees it (the server owns it)."""

    id: int

    def send(self, message: dict[str, Any]) -> bool:
        """Queue one JSON-RPC message to the application (any thread); False when closed."""
        ...
