"""The tuner's own record of one action: the public TuningAction and what the tuner keeps
beside it while the action moves from proposed to kept, reverted, failed or lost."""

from __future__ import annotations

from dataclasses import dataclass

from vtmon.model import ActionState, TuningAction
from vtmon.tuning.actuators.base import ProcessControl
from vtmon.tuning.strategies import Strategy

S = ActionState
BUSY = (S.PROPOSED, S.APPLYING, S.EVALUATING, S.REVERTING)  # one of these per bottleneck


@dataclass(slots=True)
class ActionRecord:
    """One action as the tuner tracks it; ``a`` is what the Snapshot shows."""

    a: TuningAction
    strategy: Strategy
    situation: str = ""
    in_effect: bool = False  # the change may be in effect (what the journal's in_effect says)
    pid: int | None = None  # process actions
    pid_started: float | None = None
    actuator: ProcessControl | None = None  # recovered process actions act on their own pid
    knob_conn: int | None = None  # the connection that held the knob when it was set
    op: str = ""  # "apply" | "revert" while an actuator has not answered
    token: int = 0  # answers carrying another token are stale (timed out)
    deadline: float = 0.0
    started: float = 0.0  # when the apply started: the window before it ends here
    before_n: int = 0
    why: str = ""  # why the revert in flight was started
    revert_next: bool = False  # revert as soon as the apply in flight is answered
    knob_back: bool = False  # set the knob back when its application registers it again
    said_inconclusive: bool = False
    journaled: bool = False  # it has a row in the journal: every later change updates it


def id_number(action_id: str) -> int:
    """``"a12"`` -> 12; 0 for an id that is not one of the tuner's."""
    try:
        return int(action_id.lstrip("a"))
    except ValueError:
        return 0
