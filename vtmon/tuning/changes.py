"""Applying and reverting: the part of the tuner that talks to actuators.

An approved action is journaled with the value to set back, then its actuator is asked
(``apply``); the answer -- or its absence by the deadline -- moves it on to evaluating, failed
or lost. A revert (asked, ineffective, stopping, recovered, re-registered) goes the same way
back. A knob action whose application disconnects is lost, and set back when the knob is
registered again. Every answer carries a token: one that arrives after its timeout is stale
and ignored. All of it runs inside the tuner's step, on the Monitor's thread.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

from vtmon.config import TunerConfig
from vtmon.model import Severity, Snapshot, metric_text
from vtmon.store.journal import JournalError
from vtmon.tuning.actuators.base import (
    Actuators,
    KnobControl,
    Outcome,
    ProcessControl,
    TunerActuator,
)
from vtmon.tuning.evaluation import MetricHistory
from vtmon.tuning.inbox import Inbox
from vtmon.tuning.ledger import Ledger
from vtmon.tuning.record import ActionRecord, S
from vtmon.tuning.strategies import knob_value, process_value, situation, value_text
from vtmon.tuning.wording import revert_why

log = logging.getLogger(__name__)

ANSWER_ROUNDS = 1000  # answers may start reverts that answer at once: bounded


class Changes:
    """The apply/revert state machine over the ledger's records."""

    def __init__(
        self,
        cfg: TunerConfig,
        ledger: Ledger,
        inbox: Inbox,
        actuators: Actuators,
        history: MetricHistory,
    ) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.inbox = inbox
        self.actuators = actuators
        self.history = history
        self.stopped = False  # the tuner is stopping: a revert after an apply says so
        self._token = 0

    # -- answers, timeouts and knobs coming and going ----------------------------------------

    def drain(self, now: float) -> None:
        """Act on the answers and lost connections the inbox holds."""
        for _ in range(ANSWER_ROUNDS):
            outcomes, lost = self.inbox.take_answers()
            if not outcomes and not lost:
                return
            for conn_id, names in lost:
                self._connection_lost(conn_id, names, now)
            for action_id, token, outcome in outcomes:
                rec = self.ledger.recs.get(action_id)
                if rec is None or token != rec.token or not rec.op:
                    log.info("a late answer for %s was ignored: %s", action_id, outcome.message)
                    continue
                op, rec.op = rec.op, ""
                if op == "apply":
                    self._applied(rec, outcome, now)
                else:
                    self._reverted(rec, outcome, now)

    def timeouts(self, now: float) -> None:
        """An apply or revert not answered by its deadline fails (its token goes stale)."""
        for rec in list(self.ledger.recs.values()):
            if rec.op and now >= rec.deadline:
                op, rec.op, rec.token = rec.op, "", -1
                t = self.timeout(rec.a.actuator)
                outcome = Outcome(False, f"No answer within {t:g} s.")
                if op == "apply":
                    self._applied(rec, outcome, now)
                else:
                    self._reverted(rec, outcome, now)

    def watch_knobs(self, now: float) -> None:
        """A knob in effect that is gone loses its action; one registered again is set back
        when its action waits for that."""
        act = self.actuators.knob
        if act is None:
            return
        for rec in list(self.ledger.recs.values()):
            a = rec.a
            if a.actuator != "knob" or rec.op or not rec.in_effect:
                continue
            current = read_value(act, a.target)
            if current is None:
                if a.state in (S.EVALUATING, S.KEPT) and not a.recovered:
                    self._lose(rec, now)
                continue
            if not rec.knob_back:
                continue
            if a.recovered and self.inbox.recovery == "keep":
                continue
            if same_value(current, a.previous):
                self.ledger.finish(
                    rec,
                    S.REVERTED,
                    now,
                    f"{a.target} was registered again with its previous value "
                    f"{value_text(a.previous)}; nothing to undo.",
                    in_effect=False,
                )
            else:
                self.start_revert(rec, now, "registered")

    def _connection_lost(self, conn_id: int, names: tuple[str, ...], now: float) -> None:
        for rec in list(self.ledger.recs.values()):
            a = rec.a
            if (
                a.actuator == "knob"
                and a.target in names
                and rec.in_effect
                and not rec.op
                and (rec.knob_conn is None or rec.knob_conn == conn_id)
                and a.state in (S.EVALUATING, S.KEPT)
            ):
                self._lose(rec, now)

    def _lose(self, rec: ActionRecord, now: float) -> None:
        a = rec.a
        rec.knob_back = True
        self.ledger.finish(
            rec,
            S.LOST,
            now,
            f"The application's connection closed; {a.target} is set back to "
            f"{value_text(a.previous)} when it registers it again.",
            in_effect=True,
            severity=Severity.MEDIUM,
        )

    # -- apply ---------------------------------------------------------------------------------

    def apply(self, rec: ActionRecord, snap: Snapshot, now: float) -> None:
        """Journal first, then ask the actuator."""
        a, s = rec.a, rec.strategy
        act = self.actuator(rec)
        if act is None:
            self.ledger.finish(rec, S.FAILED, now, f"No {a.actuator} actuator is available.")
            return
        current: Any = a.previous
        value: Any = a.value
        if act.kind == "knob" or act.kind == "process":
            try:
                current = read_value(act, a.target, strict=True)
            except ValueError as e:
                self.ledger.finish(rec, S.FAILED, now, f"Not applied: {e}", journal=True)
                return
            if current is None:
                self.ledger.finish(
                    rec,
                    S.FAILED,
                    now,
                    f"Not applied: {a.target} is not registered any more; nothing was changed.",
                    journal=True,
                )
                return
            if not same_value(current, a.previous):  # it moved since the proposal: same rule
                if act.kind == "knob":
                    knob = next((k for k in act.registry.knobs() if k.name == a.target), None)
                    value = knob_value(s, replace(knob, value=current)) if knob else None
                else:
                    value = process_value(s, current)
                if value is None:
                    self.ledger.finish(
                        rec,
                        S.FAILED,
                        now,
                        f"Not applied: {a.target} is now {value_text(current)}, so there is "
                        "nothing to change.",
                        journal=True,
                    )
                    return
        before, n = self.history.mean(a.metric, now - self.cfg.evaluation_s, now)
        rec.before_n = n
        rec.started = now
        rec.situation = situation(snap)
        rec.in_effect = True
        if act.kind == "process":
            rec.pid = act.pid
            rec.pid_started = process_started(rec.pid)
        elif act.kind == "knob":
            rec.knob_conn = knob_connection(act, a.target)
        rec.a = replace(
            a,
            state=S.APPLYING,
            previous=current,
            value=value,
            before=before if n >= self.cfg.min_samples else None,
            message=f"Applying: {a.target} {value_text(current)} -> {value_text(value)}.",
        )
        try:
            self.ledger.writer.write(rec)
        except JournalError as e:
            rec.in_effect = False
            self.ledger.finish(
                rec, S.FAILED, now, f"Not applied: {e}; nothing was changed.", journal=False
            )
            return
        self.ledger.tried[(s.name, a.target)] = now
        self._call(rec, act, "apply", now)

    def _call(self, rec: ActionRecord, act: TunerActuator, op: str, now: float) -> None:
        self._token += 1
        rec.op, rec.token = op, self._token
        rec.deadline = now + self.timeout(rec.a.actuator)
        done = self.inbox.done(rec.a.id, rec.token)
        try:
            (act.apply if op == "apply" else act.revert)(rec.a, done)
        except Exception as e:  # an actuator's bug is a failed action, not a dead engine
            log.exception("%s actuator failed", rec.a.actuator)
            done(Outcome(False, f"The {rec.a.actuator} actuator failed: {e}."))

    def _applied(self, rec: ActionRecord, outcome: Outcome, now: float) -> None:
        a = rec.a
        if outcome.ok:
            value = outcome.value if outcome.value is not None else a.value
            cfg = self.cfg
            rec.a = replace(
                a,
                state=S.EVALUATING,
                value=value,
                applied_at=now,
                evaluate_until=now + cfg.settle_s + cfg.evaluation_s,
                message=f"Applied: {outcome.message or 'done.'} Evaluating "
                f"{a.metric} for {cfg.evaluation_s:g} s after {cfg.settle_s:g} s to settle.",
            )
            self.ledger.writer.update(rec)
            before = (
                metric_text(a.metric, a.before)
                if a.before is not None
                else f"too few readings ({rec.before_n})"
            )
            self.ledger.events.say(
                Severity.LOW,
                f"Applied {a.id}: {a.title}; {a.metric} before: {before}.",
                rec.a,
                now,
                value=a.before,
            )
            if rec.revert_next:
                rec.revert_next = False
                self.start_revert(rec, now, "stop" if self.stopped else "you")
            return
        rec.revert_next = False
        if a.actuator == "knob":
            if read_value(self.actuators.knob, a.target) is None:  # its application went away
                rec.knob_back = True
                self.ledger.finish(
                    rec,
                    S.LOST,
                    now,
                    f"Lost: {outcome.message} {a.target} is set back to "
                    f"{value_text(a.previous)} when it registers it again.",
                    in_effect=True,
                    severity=Severity.MEDIUM,
                )
                return
            if now >= rec.deadline:
                # No answer in time: it may still be made, late. Set the value back to be sure.
                rec.a = replace(a, message=f"Failed: {outcome.message}")
                self.start_revert(rec, now, "failed")
                return
            # A refusal (an error answer, or vtmon refused to send it): nothing was changed.
        self.ledger.finish(
            rec,
            S.FAILED,
            now,
            f"Failed: {outcome.message} Nothing was changed.",
            in_effect=False,
            severity=Severity.MEDIUM,
        )

    # -- revert --------------------------------------------------------------------------------

    def revert_asked(self, rec: ActionRecord, now: float, why: str) -> None:
        """A person (or revert all) asked: revert now, after the apply in flight, or when the
        knob's application registers it again."""
        a = rec.a
        if rec.op == "apply":
            rec.revert_next = True
        elif rec.op:
            return  # a revert is already in flight
        elif a.state is S.LOST or (
            a.actuator == "knob" and read_value(self.actuators.knob, a.target) is None
        ):
            rec.knob_back = True
            self.ledger.update(
                rec,
                now,
                message=f"Its application is not connected; {a.target} is set back to "
                f"{value_text(a.previous)} when it registers it again.",
            )
        elif rec.in_effect:
            self.start_revert(rec, now, why)

    def start_revert(self, rec: ActionRecord, now: float, why: str) -> None:
        act = self.actuator(rec)
        if act is None:
            self.ledger.finish(
                rec,
                S.FAILED,
                now,
                f"Cannot revert: no {rec.a.actuator} actuator; it is still in effect.",
                in_effect=True,
                severity=Severity.MEDIUM,
            )
            return
        rec.why = why
        rec.a = replace(
            rec.a,
            state=S.REVERTING,
            message=f"Reverting ({revert_why(why)}): {rec.a.target} back to "
            f"{value_text(rec.a.previous)}."
            if why != "failed"
            else f"{rec.a.message} Setting {rec.a.target} back to {value_text(rec.a.previous)}.",
        )
        self.ledger.writer.update(rec)
        self._call(rec, act, "revert", now)

    def _reverted(self, rec: ActionRecord, outcome: Outcome, now: float) -> None:
        a = rec.a
        if outcome.ok:
            if rec.why == "failed":
                self.ledger.finish(
                    rec,
                    S.FAILED,
                    now,
                    f"{a.message.split(' Setting ')[0]} {a.target} was set back to "
                    f"{value_text(a.previous)}.",
                    in_effect=False,
                    severity=Severity.MEDIUM,
                )
                return
            note = ""
            if a.effectiveness is not None and rec.why == "ineffective":
                note = (
                    f": {a.metric} {metric_text(a.metric, a.before)} -> "
                    f"{metric_text(a.metric, a.after)}, effectiveness {a.effectiveness:.2f} "
                    f"< {self.cfg.revert_below:g}"
                )
            self.ledger.finish(
                rec,
                S.REVERTED,
                now,
                f"Reverted ({revert_why(rec.why)}){note}; {a.target} is "
                f"{value_text(a.previous)} again.",
                in_effect=False,
                value=a.after,
                threshold=a.before,
            )
            return
        if a.actuator == "knob" and read_value(self.actuators.knob, a.target) is None:
            rec.knob_back = True
            self.ledger.finish(
                rec,
                S.LOST,
                now,
                f"Lost while reverting: {outcome.message} {a.target} is set back to "
                f"{value_text(a.previous)} when it registers it again.",
                in_effect=True,
                severity=Severity.MEDIUM,
            )
            return
        if a.actuator == "process" and a.recovered and process_started(rec.pid) is None:
            self.ledger.finish(
                rec,
                S.LOST,
                now,
                f"Process {rec.pid} has exited; its {a.target} no longer needs setting back.",
                in_effect=False,
            )
            return
        self.ledger.finish(
            rec,
            S.FAILED,
            now,
            f"Could not set {a.target} back to {value_text(a.previous)}: {outcome.message} "
            "It is still in effect; r tries again.",
            in_effect=True,
            severity=Severity.MEDIUM,
        )

    # -- which actuator, how long --------------------------------------------------------------

    def actuator(self, rec: ActionRecord) -> TunerActuator | None:
        """The actuator that acts for ``rec``: a recovered process action's own, else the one
        of its kind."""
        if rec.actuator is not None:
            return rec.actuator
        return self.actuators.get(rec.a.actuator)

    def timeout(self, actuator: str) -> float:
        if actuator == "command":
            # a command is killed at its own timeout_s and then answers; this is a backstop
            cmd = self.actuators.command
            own = [c.timeout_s + 5.0 for c in cmd.commands.values()] if cmd is not None else []
            return max([self.cfg.command_timeout_s, *own])
        return self.cfg.knob_timeout_s

    def longest_timeout(self) -> float:
        """The longest an answer to what is in flight or in effect may take."""
        kinds = {r.a.actuator for r in self.ledger.recs.values() if r.op or r.in_effect}
        return max((self.timeout(k) for k in kinds), default=self.cfg.knob_timeout_s)


def read_value(act: KnobControl | ProcessControl | None, target: str, strict: bool = False) -> Any:
    """The current value through the actuator's ``read`` (None when there is no actuator or
    the target is gone); with ``strict`` a ValueError from it propagates."""
    if act is None:
        return None
    try:
        return act.read(target)
    except ValueError:
        if strict:
            raise
        return None


def knob_connection(act: KnobControl, name: str) -> int | None:
    """The connection that holds the knob ``name`` now."""
    knob = act.registry.get(name)
    return knob.connection if knob is not None else None


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def process_started(pid: int | None) -> float | None:
    """The start time of process ``pid``; None when there is no such process."""
    if pid is None:
        return None
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None
