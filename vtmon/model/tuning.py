"""Tuning: the knobs applications register, the actions the tuner proposes and applies with
how to undo them, and the words for the metrics an action is judged on."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from vtmon.model.numbers import short_number


class ActionState(StrEnum):
    """Where a tuning action is in its life.

    proposed -> (approved by a key, or at once in auto mode) applying -> evaluating -> kept,
    or -> reverting -> reverted. A proposal may be rejected or expire (its bottleneck resolved);
    applying or reverting may fail; an action on a knob whose connection closed is lost.
    """

    PROPOSED = "proposed"
    APPLYING = "applying"
    EVALUATING = "evaluating"
    KEPT = "kept"
    REVERTING = "reverting"
    REVERTED = "reverted"
    REJECTED = "rejected"
    EXPIRED = "expired"
    FAILED = "failed"
    LOST = "lost"

    @property
    def open(self) -> bool:
        """Still in flight or still applied (not a final decision)."""
        return self in (
            ActionState.PROPOSED,
            ActionState.APPLYING,
            ActionState.EVALUATING,
            ActionState.REVERTING,
        )


ACTUATORS = ("knob", "process", "command")  # action classes, each with its own mode
MODES = ("off", "ask", "auto")  # off: recommend only; ask: wait for a key; auto: apply


@dataclass(frozen=True, slots=True)
class Knob:
    """A tunable value an application registered on its connection (``knobs.register``)."""

    name: str
    value: float
    min: float
    max: float
    step: float | None = None
    unit: str = ""
    component: str = ""
    kind: str = "custom"  # buffers | caching | connection_pools | workers | quality | gc | custom
    connection: int = 0  # the connection that registered it; only it receives sets


@dataclass(frozen=True, slots=True)
class TuningAction:
    """One proposed or applied change, with how to undo it and what it did."""

    id: str  # short and stable, what `vtmon approve ID` takes: "a1", "a2", ...
    strategy: str  # e.g. "enable_caching", "renice", or a configured command's name
    actuator: str  # one of ACTUATORS
    target: str  # the knob's name, "nice" / "ionice" / "affinity" of the pid, the command's name
    component: str
    bottleneck: str  # the id of the bottleneck it answers
    bottleneck_type: str
    title: str  # "Enable caching in api-server"
    why: str  # one sentence: the bottleneck and its numbers
    expected: str  # "p95 down by about 85 %"
    previous: Any = None  # saved before the change; what a revert sets back
    value: Any = None  # what the change sets
    metric: str = ""  # what the evaluation compares: "p95 api-server", "memory api-server", "cpu"
    before: float | None = None
    after: float | None = None
    effectiveness: float | None = None  # 0..1 once evaluated
    state: ActionState = ActionState.PROPOSED
    mode: str = "ask"  # the mode it was proposed in
    proposed_at: float = 0.0
    applied_at: float | None = None
    evaluate_until: float | None = None  # when its evaluation window ends
    decided_at: float | None = None
    message: str = ""  # the last thing that happened to it, one sentence
    recovered: bool = False  # left applied by a previous run (found in the journal at start)
    in_effect: bool = False  # the change may be in effect now: quitting or `r` would undo it


def metric_unit(key: str) -> str:
    """The unit of a tuning metric key: `memory *` reads in MB, `p95 *` in ms, the rest in %."""
    if key.startswith("memory ") and key != "memory system":
        return "MB"
    if key.startswith("p95 "):
        return "ms"
    return "%"


def metric_text(key: str, v: float | None) -> str:
    """``320 ms``, ``172 MB``, ``55 %``."""
    if v is None:
        return "?"
    return f"{short_number(v)} {metric_unit(key)}"
