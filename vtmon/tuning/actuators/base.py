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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from vtmon.config import ActionCommand
from vtmon.model import Knob, TuningAction

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


class KnobLookup(Protocol):
    """The registered knobs, as the tuner reads them (``KnobRegistry``)."""

    def knobs(self) -> tuple[Knob, ...]:
        """Every registered knob, by name."""
        ...

    def get(self, name: str) -> Knob | None: ...


class KnobControl(Actuator, Protocol):
    """What the tuner needs of the knob actuator (``KnobActuator``)."""

    @property
    def kind(self) -> Literal["knob"]: ...

    @property
    def registry(self) -> KnobLookup:
        """The knobs registered now, and which connection holds each."""
        ...

    def read(self, target: str) -> float | None:
        """The knob's current value, None when it is not registered."""
        ...


class ProcessControl(Actuator, Protocol):
    """What the tuner needs of a process actuator (``ProcessActuator``)."""

    @property
    def kind(self) -> Literal["process"]: ...

    @property
    def pid(self) -> int: ...

    def read(self, target: str) -> Any:
        """The current value of ``target``; raises ValueError with one sentence when it cannot
        be read."""
        ...


class CommandControl(Actuator, Protocol):
    """What the tuner needs of the command actuator (``CommandActuator``)."""

    @property
    def kind(self) -> Literal["command"]: ...

    @property
    def commands(self) -> Mapping[str, ActionCommand]:
        """The configured ``[[actions]]`` commands, by name."""
        ...


TunerActuator = KnobControl | ProcessControl | CommandControl


@dataclass(frozen=True, slots=True)
class Actuators:
    """The actuators a tuner may use, at most one of each kind."""

    knob: KnobControl | None = None
    process: ProcessControl | None = None
    command: CommandControl | None = None

    @classmethod
    def of(cls, actuators: Iterable[TunerActuator]) -> Actuators:
        """One of each kind; a later one of the same kind replaces an earlier one."""
        knob: KnobControl | None = None
        process: ProcessControl | None = None
        command: CommandControl | None = None
        for a in actuators:
            if a.kind == "knob":
                knob = a
            elif a.kind == "process":
                process = a
            elif a.kind == "command":
                command = a
        return cls(knob, process, command)

    def get(self, kind: str) -> TunerActuator | None:
        """The actuator of ``kind`` (vtmon.model.ACTUATORS), None when there is none."""
        if kind == "knob":
            return self.knob
        if kind == "process":
            return self.process
        if kind == "command":
            return self.command
        return None


def call_done(done: Done, outcome: Outcome) -> None:
    """Hand ``outcome`` to ``done``; a bug in it is logged, never raised into the caller."""
    try:
        done(outcome)
    except Exception:  # the tuner's bug must not break the socket server or the engine
        log.exception("actuator callback failed")
