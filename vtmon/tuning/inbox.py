"""The tuner's inbox: what arrives from other threads, and what they may read back.

Commands (``approve``, ``reject``, ``revert``, ``revert_all``, ``set_mode``, ``cycle_mode``,
``set_recovery``) come from the screen or the socket; actuators' answers (``done``) and the knob
registry's news (``knobs_lost``, ``knob_registered``) from whatever thread has them. Each only
records intent under the lock and returns; the tuner's next step takes it (``take_commands``,
``take_answers``) and acts on it. A command answers with one sentence, or raises ValueError
with one sentence when it cannot be done, judged against the view the last step published
(``show``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from vtmon.config import TunerConfig
from vtmon.model import ACTUATORS, MODES, Knob, TuningAction
from vtmon.tuning.actuators.base import Outcome
from vtmon.tuning.record import S, id_number
from vtmon.tuning.strategies import value_text
from vtmon.tuning.wording import MODE_WORDS, count, minutes

Recovery = str  # "offer" | "revert" | "keep"
Answer = tuple[str, int, Outcome]  # (action id, token, outcome)
Lost = tuple[int, tuple[str, ...]]  # (connection id, knob names)


class Inbox:
    """Intent from any thread, under one lock, until the next step takes it."""

    def __init__(self, cfg: TunerConfig) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()  # the inbox, the modes and the published view
        self.wake = threading.Event()  # an answer arrived (stop waits for it)
        self._commands: list[tuple[str, str]] = []
        self._outcomes: list[Answer] = []
        self._lost: list[Lost] = []
        self._modes: dict[str, str] = {k: cfg.mode_of(k) for k in ACTUATORS}
        self._asked: set[str] = set()  # ids with a command waiting for the next step
        self._view: dict[str, TuningAction] = {}
        self._revertible: set[str] = set()  # ids that may be in effect
        self._proposals: tuple[TuningAction, ...] = ()
        self._actions: tuple[TuningAction, ...] = ()
        self.recovery: Recovery = "offer"

    # -- commands (any thread) -----------------------------------------------------------------

    def approve(self, action_id: str) -> str:
        with self._lock:
            a = self._find(action_id)
            if a.state is not S.PROPOSED:
                raise ValueError(f"{a.id} is {a.state.value}, not a proposal waiting for a key.")
            if self._modes.get(a.actuator) == "off":
                raise ValueError(
                    f"{a.actuator.capitalize()} actions are off (recommend only); set the mode "
                    f"to ask or auto first (m in the console, or tuner.mode)."
                )
            if a.id in self._asked:
                raise ValueError(f"{a.id} was already approved or rejected; wait a moment.")
            self._asked.add(a.id)
            self._commands.append(("approve", a.id))
        return f"Approved {a.id}: {a.title}."

    def reject(self, action_id: str) -> str:
        with self._lock:
            a = self._find(action_id)
            if a.state is not S.PROPOSED:
                raise ValueError(f"{a.id} is {a.state.value}, not a proposal waiting for a key.")
            if a.id in self._asked:
                raise ValueError(f"{a.id} was already approved or rejected; wait a moment.")
            self._asked.add(a.id)
            self._commands.append(("reject", a.id))
        mins = minutes(self.cfg.retry_after_s)
        return f"Rejected {a.id}; it is not proposed again for {mins}."

    def revert(self, action_id: str) -> str:
        with self._lock:
            a = self._find(action_id)
            if a.id not in self._revertible:
                raise ValueError(
                    f"{a.id} is {a.state.value}; it is not applied, so there is nothing to revert."
                )
            self._commands.append(("revert", a.id))
        if a.state is S.LOST:
            return (
                f"{a.id}'s application is not connected; {a.target} is set back to "
                f"{value_text(a.previous)} when it registers it again."
            )
        return f"Reverting {a.id}: {a.target} back to {value_text(a.previous)}."

    def revert_all(self) -> str:
        with self._lock:
            ids = sorted(self._revertible, key=id_number)
            if ids:
                self._commands.append(("revert_all", ""))
        if not ids:
            return "Nothing is applied, so there is nothing to revert."
        return f"Reverting {count(len(ids), 'action')}: {', '.join(ids)}."

    def set_mode(self, actuator: str, mode: str) -> str:
        _action_class(actuator)
        if mode not in MODES:
            raise ValueError(f"{mode!r} is not a mode; use one of {', '.join(MODES)}.")
        with self._lock:
            self._modes[actuator] = mode
            self._commands.append(("mode", actuator))
        return f"{actuator.capitalize()} actions: {mode} ({MODE_WORDS[mode]})."

    def cycle_mode(self, actuator: str) -> str:
        """off -> ask -> auto -> off; returns the new mode."""
        _action_class(actuator)
        with self._lock:
            cur = self._modes.get(actuator, "ask")
        new = MODES[(MODES.index(cur) + 1) % len(MODES)]
        self.set_mode(actuator, new)
        return new

    def modes(self) -> dict[str, str]:
        with self._lock:
            return dict(self._modes)

    def mode(self, actuator: str) -> str:
        with self._lock:
            return self._modes.get(actuator, "ask")

    def set_recovery(self, policy: Recovery) -> None:
        with self._lock:
            self.recovery = policy
            self._commands.append(("recovery", policy))

    # -- what the actuators and the knob registry tell (any thread) ----------------------------

    def done(self, action_id: str, token: int) -> Callable[[Outcome], None]:
        """The callback an actuator answers an apply or revert through."""

        def done(outcome: Outcome) -> None:
            with self._lock:
                self._outcomes.append((action_id, token, outcome))
            self.wake.set()

        return done

    def knobs_lost(self, conn_id: int, names: tuple[str, ...]) -> None:
        with self._lock:
            self._lost.append((conn_id, tuple(names)))

    def knob_registered(self, knob: Knob) -> None:
        self.wake.set()

    # -- what the step takes (the Monitor's thread) --------------------------------------------

    def take_commands(self) -> list[tuple[str, str]]:
        """The commands since the last step, oldest first; new ones may be asked again."""
        with self._lock:
            commands, self._commands = self._commands, []
            self._asked.clear()
        return commands

    def take_answers(self) -> tuple[list[Answer], list[Lost]]:
        """The actuators' answers and the connections lost since the last call."""
        with self._lock:
            outcomes, self._outcomes = self._outcomes, []
            lost, self._lost = self._lost, []
        return outcomes, lost

    # -- the published view (written by the step, read by any thread) ---------------------------

    def show(
        self,
        proposals: tuple[TuningAction, ...],
        actions: tuple[TuningAction, ...],
        revertible: set[str],
    ) -> None:
        with self._lock:
            self._proposals = proposals
            self._actions = actions
            self._view = {a.id: a for a in (*proposals, *actions)}
            self._revertible = revertible

    def proposals(self) -> tuple[TuningAction, ...]:
        with self._lock:
            return self._proposals

    def actions(self) -> tuple[TuningAction, ...]:
        with self._lock:
            return self._actions

    def get(self, action_id: str) -> TuningAction | None:
        with self._lock:
            return self._view.get(action_id)

    def _find(self, action_id: str) -> TuningAction:
        aid = str(action_id).strip()
        if aid.isdigit():
            aid = f"a{aid}"
        a = self._view.get(aid)
        if a is None:
            raise ValueError(
                f"There is no action {action_id}; `vtmon snapshot` lists proposals and actions."
            )
        return a


def _action_class(actuator: str) -> None:
    if actuator not in ACTUATORS:
        raise ValueError(f"{actuator!r} is not an action class; use one of {', '.join(ACTUATORS)}.")
