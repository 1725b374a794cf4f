"""The tuner: proposes a change for each bottleneck, applies it when a person (or auto mode)
approves, measures whether it helped, keeps it or undoes it, and learns from the result.

Threads. ``step`` runs on the Monitor's thread after each analysis; it alone changes the
tuner's state, calls actuators and writes the journal. Everything else -- the commands
(``approve``, ``reject``, ``revert``, ``revert_all``, ``set_mode``, ``cycle_mode``) from the
screen or the socket, and the actuators' ``done`` callbacks from whatever thread answers --
only records intent under ``_lock`` and returns; the next ``step`` acts on it. Commands answer
with one sentence, or raise ValueError with one sentence when they cannot be done.

Time. The tuner has no clock: every call that needs the time takes ``now`` (the engine's
injected clock), so tests run an hour of tuning in milliseconds. Only ``stop`` waits, in real
time and bounded, for applications to answer the reverts it sends as vtmon exits.

Safety. Before an actuator is asked to make a change, the journal holds the action with the
value to set back (``Journal.record`` is synchronous and fsynced). Every decision -- proposed,
applied, failed, kept, reverted, lost, inconclusive -- is an event with its numbers
(``events``: alerts of kind ``tuning``). docs/tuning.md has the whole flow.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from typing import Any

from vtmon.config import Config
from vtmon.model import (
    ACTUATORS,
    MODES,
    ActionState,
    Alert,
    Bottleneck,
    Knob,
    Severity,
    Snapshot,
    TuningAction,
    metric_text,
)
from vtmon.store.journal import Entry, JournalError, Learned
from vtmon.tuning.actuators.base import (
    Actuators,
    KnobControl,
    Outcome,
    ProcessControl,
    TunerActuator,
)
from vtmon.tuning.actuators.process import ProcessActuator
from vtmon.tuning.evaluation import Learning, MetricHistory, judge
from vtmon.tuning.journaling import ActionJournal
from vtmon.tuning.proposals import Choice, choose, proposal
from vtmon.tuning.strategies import (
    BY_NAME,
    STRATEGIES,
    Strategy,
    command_strategy,
    knob_value,
    process_value,
    situation,
    strategies_for,
    value_text,
)

log = logging.getLogger(__name__)

S = ActionState
BUSY = (S.PROPOSED, S.APPLYING, S.EVALUATING, S.REVERTING)  # one of these per bottleneck
KEEP_DECIDED = 100  # decided actions kept for the screen and the Snapshot
EVENTS = 200
STOP_WAIT_MAX_S = 15.0  # the longest ``stop`` waits for answers, whatever the timeouts
Recovery = str  # "offer" | "revert" | "keep"


@dataclass(slots=True)
class _Rec:
    """The tuner's own record of one action: the public TuningAction and what it needs beside."""

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


class Tuner:
    def __init__(
        self,
        config: Config,
        journal: ActionJournal,
        actuators: Iterable[TunerActuator] = (),
        *,
        process_factory: Callable[[int, float | None], ProcessControl | None] | None = None,
        run: str = "",
    ) -> None:
        self.config = config
        self.cfg = config.tuner
        self.journal = journal
        self.actuators = Actuators.of(actuators)
        self.process_factory = process_factory or _process_actuator
        self.run = run  # written into the journal: which vtmon applied it
        self._lock = threading.Lock()  # the inbox, the modes and the published view
        self._step_lock = threading.Lock()  # one step (or stop) at a time
        self._wake = threading.Event()  # an answer arrived (stop waits for it)
        self._commands: list[tuple[str, str]] = []
        self._outcomes: list[tuple[str, int, Outcome]] = []
        self._lost: list[tuple[int, tuple[str, ...]]] = []
        self._modes: dict[str, str] = {k: self.cfg.mode_of(k) for k in ACTUATORS}
        self._asked: set[str] = set()  # ids with a command waiting for the next step
        self._view: dict[str, TuningAction] = {}
        self._revertible: set[str] = set()  # ids that may be in effect
        self._proposals: tuple[TuningAction, ...] = ()
        self._actions: tuple[TuningAction, ...] = ()
        self._events: deque[Alert] = deque(maxlen=EVENTS)
        self._events_view: tuple[Alert, ...] = ()
        self._merged: tuple[tuple[Alert, ...], tuple[Alert, ...], tuple[Alert, ...]] | None = None
        self._recs: dict[str, _Rec] = {}
        self._tried: dict[tuple[str, str], float] = {}  # (strategy, target) -> last tried
        self._said: dict[str, str] = {}  # bottleneck (with its start) -> "no action" reason said
        self._history = MetricHistory(2 * self.cfg.evaluation_s + self.cfg.settle_s + 5.0)
        self._learning = Learning(journal, self.cfg.revert_below)
        self._next = journal.next_number()
        self._token = 0
        self._stopped = False
        self._recovery: Recovery = "offer"
        self.keep_at_exit = False  # the console's "keep and quit"

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
        mins = _minutes(self.cfg.retry_after_s)
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
            ids = sorted(self._revertible, key=_num)
            if ids:
                self._commands.append(("revert_all", ""))
        if not ids:
            return "Nothing is applied, so there is nothing to revert."
        return f"Reverting {_count(len(ids), 'action')}: {', '.join(ids)}."

    def set_mode(self, actuator: str, mode: str) -> str:
        if actuator not in ACTUATORS:
            raise ValueError(
                f"{actuator!r} is not an action class; use one of {', '.join(ACTUATORS)}."
            )
        if mode not in MODES:
            raise ValueError(f"{mode!r} is not a mode; use one of {', '.join(MODES)}.")
        with self._lock:
            self._modes[actuator] = mode
            self._commands.append(("mode", actuator))
        return f"{actuator.capitalize()} actions: {mode} ({MODE_WORDS[mode]})."

    def cycle_mode(self, actuator: str) -> str:
        """off -> ask -> auto -> off; returns the new mode."""
        if actuator not in ACTUATORS:
            raise ValueError(
                f"{actuator!r} is not an action class; use one of {', '.join(ACTUATORS)}."
            )
        with self._lock:
            cur = self._modes.get(actuator, "ask")
        new = MODES[(MODES.index(cur) + 1) % len(MODES)]
        self.set_mode(actuator, new)
        return new

    def modes(self) -> dict[str, str]:
        with self._lock:
            return dict(self._modes)

    def set_recovery(self, policy: Recovery) -> None:
        """What to do with actions a previous run left applied: ``offer`` (the console: list
        them; knob ones are set back when their application registers again), ``revert``
        (``vtmon serve``: process and command ones at the first step, knob ones on
        registration) or ``keep`` (``--keep-applied``: listed, nothing undone by itself)."""
        with self._lock:
            self._recovery = policy
            self._commands.append(("recovery", policy))

    # -- what the actuators and the knob registry tell (any thread) ----------------------------

    def _done(self, action_id: str, token: int) -> Callable[[Outcome], None]:
        def done(outcome: Outcome) -> None:
            with self._lock:
                self._outcomes.append((action_id, token, outcome))
            self._wake.set()

        return done

    def knobs_lost(self, conn_id: int, names: tuple[str, ...]) -> None:
        """``KnobRegistry.on_lost``: a connection closed with these knobs."""
        with self._lock:
            self._lost.append((conn_id, tuple(names)))

    def knob_registered(self, knob: Knob) -> None:
        """``KnobRegistry.on_registered``; the next step looks for actions to set back."""
        self._wake.set()

    # -- what the Snapshot shows (the Monitor's thread, or any after a step) ---------------------

    def proposals(self) -> tuple[TuningAction, ...]:
        with self._lock:
            return self._proposals

    def actions(self) -> tuple[TuningAction, ...]:
        with self._lock:
            return self._actions

    def events(self) -> tuple[Alert, ...]:
        """Every decision, newest first (alerts of kind ``tuning``)."""
        with self._lock:
            return self._events_view

    def merge_alerts(self, alerts: tuple[Alert, ...]) -> tuple[Alert, ...]:
        """The analysis' alerts log with the tuner's events, newest first (cached)."""
        events = self.events()
        if not events:
            return alerts
        cached = self._merged
        if cached is not None and cached[0] is alerts and cached[1] is events:
            return cached[2]
        merged = tuple(sorted((*alerts, *events), key=lambda a: -a.t)[: max(len(alerts), 1000)])
        self._merged = (alerts, events, merged)
        return merged

    def get(self, action_id: str) -> TuningAction | None:
        with self._lock:
            return self._view.get(action_id)

    # -- the step (the Monitor's thread) -------------------------------------------------------

    def step(self, snap: Snapshot, now: float) -> None:
        """Called every tick after the analysis: collect answers, time out, propose, apply what
        was approved, evaluate, revert what did not help, and publish."""
        with self._step_lock:
            if self._stopped:
                return
            self._history.record(snap, now)
            self._drain(now)
            self._timeouts(now)
            self._watch_knobs(now)
            self._take_commands(snap, now)
            self._expire(snap, now)
            self._propose(snap, now)
            self._evaluate(now)
            self._drain(now)  # actuators that answered at once
            self._publish()

    # -- recovery --------------------------------------------------------------------------------

    def recover(self, entries: Iterable[Entry], now: float) -> list[TuningAction]:
        """Take in the actions a previous run left applied (the journal's open rows); returns
        them as they now show. What happens to them is ``set_recovery``'s policy."""
        found = []
        with self._step_lock:
            for e in entries:
                old = e.action
                state = old.state if old.state in (S.LOST, S.FAILED) else S.KEPT
                a = replace(
                    old,
                    state=state,
                    recovered=True,
                    message=f"Left applied by a previous run ({old.state.value} when it "
                    "stopped); r reverts it.",
                )
                strategy = BY_NAME.get(a.strategy) or _fallback_strategy(a)
                rec = _Rec(
                    a,
                    strategy,
                    situation=e.situation,
                    in_effect=True,
                    pid=e.pid,
                    pid_started=e.pid_started,
                    knob_back=a.actuator == "knob",
                    journaled=True,
                )
                self._recs[a.id] = rec
                if a.actuator == "process" and e.pid is not None:
                    rec.actuator = self.process_factory(e.pid, e.pid_started)
                    if rec.actuator is None:
                        self._finish(
                            rec,
                            S.LOST,
                            now,
                            f"Process {e.pid} has exited, so its {a.target} no longer needs "
                            "setting back.",
                            in_effect=False,
                        )
                        found.append(rec.a)
                        continue
                self._event(
                    Severity.MEDIUM,
                    f"{a.id} was left applied by a previous run: {a.title}.",
                    rec.a,
                    now,
                )
                found.append(rec.a)
            self._publish()
        return found

    # -- stopping (the main thread, after the Monitor's thread stopped ticking) -----------------

    def stop(self, now: float, revert: bool | None = None, wait_s: float | None = None) -> str:
        """Revert every action this run applied (unless ``revert`` is False, or the console's
        "keep and quit" set ``keep_at_exit``), wait up to ``wait_s`` real seconds (default: the
        longest timeout) for the answers, and return what happened in one sentence."""
        revert = (not self.keep_at_exit) if revert is None else revert
        with self._step_lock:
            if self._stopped:
                return ""
            self._stopped = True
            self._drain(now)
            mine = [
                r
                for r in self._recs.values()
                if r.in_effect and not r.a.recovered and r.a.state is not S.LOST
            ]
            if not revert:
                for r in mine:
                    self._update(
                        r,
                        now,
                        message="Left applied when vtmon stopped; the next start offers to "
                        "revert it.",
                    )
                self._publish()
                return _stopped_text(len(mine), kept=True)
            for r in mine:
                if r.op == "apply":
                    r.revert_next = True
                elif not r.op:
                    self._start_revert(r, now, "stop")
            wait = min(STOP_WAIT_MAX_S, wait_s if wait_s is not None else self._longest_timeout())
            deadline = time.monotonic() + wait
            self._drain(now)
            while any(r.op for r in self._recs.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.wait(min(0.05, left))
                self._wake.clear()
                self._drain(now)
            for r in self._recs.values():
                if r.op:
                    r.op, r.token = "", -1
                    self._finish(
                        r,
                        S.FAILED,
                        now,
                        f"No answer before vtmon stopped; {r.a.target} may still be "
                        f"{value_text(r.a.value)}, and the next start offers to revert it.",
                        in_effect=True,
                    )
            self._publish()
            undone = sum(1 for r in mine if not r.in_effect)
            text = _stopped_text(undone, kept=False, failed=len(mine) - undone)
            if mine:
                log.info("%s", text)
            return text

    # -- inside a step ---------------------------------------------------------------------------

    def _drain(self, now: float) -> None:
        for _ in range(1000):  # answers may start reverts that answer at once: bounded
            with self._lock:
                outcomes, self._outcomes = self._outcomes, []
                lost, self._lost = self._lost, []
            if not outcomes and not lost:
                return
            for conn_id, names in lost:
                self._connection_lost(conn_id, names, now)
            for action_id, token, outcome in outcomes:
                rec = self._recs.get(action_id)
                if rec is None or token != rec.token or not rec.op:
                    log.info("a late answer for %s was ignored: %s", action_id, outcome.message)
                    continue
                op, rec.op = rec.op, ""
                if op == "apply":
                    self._applied(rec, outcome, now)
                else:
                    self._reverted(rec, outcome, now)

    def _timeouts(self, now: float) -> None:
        for rec in list(self._recs.values()):
            if rec.op and now >= rec.deadline:
                op, rec.op, rec.token = rec.op, "", -1
                t = self._timeout(rec.a.actuator)
                outcome = Outcome(False, f"No answer within {t:g} s.")
                if op == "apply":
                    self._applied(rec, outcome, now)
                else:
                    self._reverted(rec, outcome, now)

    def _watch_knobs(self, now: float) -> None:
        act = self.actuators.knob
        if act is None:
            return
        for rec in list(self._recs.values()):
            a = rec.a
            if a.actuator != "knob" or rec.op or not rec.in_effect:
                continue
            current = _read(act, a.target)
            if current is None:
                if a.state in (S.EVALUATING, S.KEPT) and not a.recovered:
                    self._lose(rec, now)
                continue
            if not rec.knob_back:
                continue
            if a.recovered and self._recovery == "keep":
                continue
            if _same(current, a.previous):
                self._finish(
                    rec,
                    S.REVERTED,
                    now,
                    f"{a.target} was registered again with its previous value "
                    f"{value_text(a.previous)}; nothing to undo.",
                    in_effect=False,
                )
            else:
                self._start_revert(rec, now, "registered")

    def _connection_lost(self, conn_id: int, names: tuple[str, ...], now: float) -> None:
        for rec in list(self._recs.values()):
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

    def _lose(self, rec: _Rec, now: float) -> None:
        a = rec.a
        rec.knob_back = True
        self._finish(
            rec,
            S.LOST,
            now,
            f"The application's connection closed; {a.target} is set back to "
            f"{value_text(a.previous)} when it registers it again.",
            in_effect=True,
            severity=Severity.MEDIUM,
        )

    def _take_commands(self, snap: Snapshot, now: float) -> None:
        with self._lock:
            commands, self._commands = self._commands, []
            self._asked.clear()
        for what, arg in commands:
            rec = self._recs.get(arg)
            if what == "approve" and rec is not None and rec.a.state is S.PROPOSED:
                if self._mode(rec.a.actuator) == "off":
                    continue
                self._update(rec, now, message=f"Approved at {_hms(now)}.")
                self._apply(rec, snap, now)
            elif what == "reject" and rec is not None and rec.a.state is S.PROPOSED:
                self._tried[(rec.strategy.name, rec.a.target)] = now
                self._finish(
                    rec,
                    S.REJECTED,
                    now,
                    f"Rejected; not proposed again for {_minutes(self.cfg.retry_after_s)}.",
                    journal=True,
                )
            elif what == "revert" and rec is not None:
                self._revert_asked(rec, now, "you")
            elif what == "revert_all":
                for r in list(self._recs.values()):
                    if r.in_effect or r.op == "apply":
                        self._revert_asked(r, now, "you")
            elif what == "mode":
                mode = self._mode(arg)
                self._event(
                    Severity.LOW,
                    f"{arg.capitalize()} actions: mode {mode} ({MODE_WORDS[mode]}).",
                    None,
                    now,
                )
            elif what == "recovery" and arg == "revert":
                for r in list(self._recs.values()):
                    if r.a.recovered and r.in_effect and r.a.actuator != "knob" and not r.op:
                        self._start_revert(r, now, "recovered")

    def _revert_asked(self, rec: _Rec, now: float, why: str) -> None:
        a = rec.a
        if rec.op == "apply":
            rec.revert_next = True
        elif rec.op:
            return  # a revert is already in flight
        elif a.state is S.LOST or (
            a.actuator == "knob" and _read(self.actuators.knob, a.target) is None
        ):
            rec.knob_back = True
            self._update(
                rec,
                now,
                message=f"Its application is not connected; {a.target} is set back to "
                f"{value_text(a.previous)} when it registers it again.",
            )
        elif rec.in_effect:
            self._start_revert(rec, now, why)

    def _expire(self, snap: Snapshot, now: float) -> None:
        active = {b.id for b in snap.bottlenecks}
        for rec in list(self._recs.values()):
            if rec.a.state is S.PROPOSED and rec.a.bottleneck not in active:
                self._finish(rec, S.EXPIRED, now, f"Expired: {rec.a.bottleneck} resolved.")

    def _propose(self, snap: Snapshot, now: float) -> None:
        busy = {r.a.bottleneck for r in self._recs.values() if r.a.state in BUSY}
        sit = situation(snap)
        live = set()
        for b in snap.bottlenecks:
            key = f"{b.id}@{b.started:.0f}"
            live.add(key)
            if b.id in busy:
                continue
            choice, reason = self._choose(b, snap, sit, now)
            if choice is None:
                if self._said.get(key) != reason:
                    self._said[key] = reason
                    self._event(
                        Severity.LOW,
                        f"No tuning action for {b.id}: {reason}.",
                        None,
                        now,
                        component=b.component,
                    )
                continue
            self._said.pop(key, None)
            rec = self._proposal(b, choice, snap, now)
            self._recs[rec.a.id] = rec
            self._event(
                Severity.LOW,
                f"Proposed {rec.a.id}: {rec.a.title} ({rec.a.mode}); {rec.a.expected}.",
                rec.a,
                now,
            )
        self._said = {k: v for k, v in self._said.items() if k in live}
        for rec in list(self._recs.values()):
            if rec.a.state is S.PROPOSED and self._mode(rec.a.actuator) == "auto":
                self._update(rec, now, message="Applied at once (auto mode).")
                self._apply(rec, snap, now)

    def _choose(
        self, b: Bottleneck, snap: Snapshot, sit: str, now: float
    ) -> tuple[Choice | None, str]:
        # a target with an action open on it (another bottleneck's) is left to that action
        taken = {(r.a.actuator, r.a.target) for r in self._recs.values() if r.a.state in BUSY}
        knob_act = self.actuators.knob
        return choose(
            b,
            strategies_for(b, self._table()),
            self.actuators,
            knob_act.registry.knobs() if knob_act is not None else (),
            taken,
            lambda s, target: self._recently(s, target, now),
            lambda s: self._learned_eff(s, sit),
            f"tried in the last {_minutes(self.cfg.retry_after_s)}",
        )

    def _proposal(self, b: Bottleneck, choice: Choice, snap: Snapshot, now: float) -> _Rec:
        n = self._next
        self._next += 1
        s = choice.strategy
        a = proposal(
            b,
            choice,
            snap,
            f"a{n}",
            self._mode(s.actuator),
            self._learned_eff(s, situation(snap)),
            now,
        )
        return _Rec(a, s, pid=choice.pid)

    def _apply(self, rec: _Rec, snap: Snapshot, now: float) -> None:
        """Journal first, then ask the actuator."""
        a, s = rec.a, rec.strategy
        act = self._act(rec)
        if act is None:
            self._finish(rec, S.FAILED, now, f"No {a.actuator} actuator is available.")
            return
        current: Any = a.previous
        value: Any = a.value
        if act.kind == "knob" or act.kind == "process":
            try:
                current = _read(act, a.target, strict=True)
            except ValueError as e:
                self._finish(rec, S.FAILED, now, f"Not applied: {e}", journal=True)
                return
            if current is None:
                self._finish(
                    rec,
                    S.FAILED,
                    now,
                    f"Not applied: {a.target} is not registered any more; nothing was changed.",
                    journal=True,
                )
                return
            if not _same(current, a.previous):  # it moved since the proposal: the same rule
                if act.kind == "knob":
                    knob = next((k for k in act.registry.knobs() if k.name == a.target), None)
                    value = knob_value(s, replace(knob, value=current)) if knob else None
                else:
                    value = process_value(s, current)
                if value is None:
                    self._finish(
                        rec,
                        S.FAILED,
                        now,
                        f"Not applied: {a.target} is now {value_text(current)}, so there is "
                        "nothing to change.",
                        journal=True,
                    )
                    return
        before, n = self._history.mean(a.metric, now - self.cfg.evaluation_s, now)
        rec.before_n = n
        rec.started = now
        rec.situation = situation(snap)
        rec.in_effect = True
        if act.kind == "process":
            rec.pid = act.pid
            rec.pid_started = _process_started(rec.pid)
        elif act.kind == "knob":
            rec.knob_conn = _knob_conn(act, a.target)
        rec.a = replace(
            a,
            state=S.APPLYING,
            previous=current,
            value=value,
            before=before if n >= self.cfg.min_samples else None,
            message=f"Applying: {a.target} {value_text(current)} -> {value_text(value)}.",
        )
        try:
            self._write(rec)
        except JournalError as e:
            rec.in_effect = False
            self._finish(
                rec, S.FAILED, now, f"Not applied: {e}; nothing was changed.", journal=False
            )
            return
        self._tried[(s.name, a.target)] = now
        self._call(rec, act, "apply", now)

    def _call(self, rec: _Rec, act: TunerActuator, op: str, now: float) -> None:
        self._token += 1
        rec.op, rec.token = op, self._token
        rec.deadline = now + self._timeout(rec.a.actuator)
        done = self._done(rec.a.id, rec.token)
        try:
            (act.apply if op == "apply" else act.revert)(rec.a, done)
        except Exception as e:  # an actuator's bug is a failed action, not a dead engine
            log.exception("%s actuator failed", rec.a.actuator)
            done(Outcome(False, f"The {rec.a.actuator} actuator failed: {e}."))

    def _applied(self, rec: _Rec, outcome: Outcome, now: float) -> None:
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
            self._journal(rec)
            before = (
                metric_text(a.metric, a.before)
                if a.before is not None
                else f"too few readings ({rec.before_n})"
            )
            self._event(
                Severity.LOW,
                f"Applied {a.id}: {a.title}; {a.metric} before: {before}.",
                rec.a,
                now,
                value=a.before,
            )
            if rec.revert_next:
                rec.revert_next = False
                self._start_revert(rec, now, "stop" if self._stopped else "you")
            return
        rec.revert_next = False
        if a.actuator == "knob":
            if _read(self.actuators.knob, a.target) is None:  # its application went away
                rec.knob_back = True
                self._finish(
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
                self._start_revert(rec, now, "failed")
                return
            # A refusal (an error answer, or vtmon refused to send it): nothing was changed.
        self._finish(
            rec,
            S.FAILED,
            now,
            f"Failed: {outcome.message} Nothing was changed.",
            in_effect=False,
            severity=Severity.MEDIUM,
        )

    def _start_revert(self, rec: _Rec, now: float, why: str) -> None:
        act = self._act(rec)
        if act is None:
            self._finish(
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
            message=f"Reverting ({REVERT_WHY.get(why, why)}): {rec.a.target} back to "
            f"{value_text(rec.a.previous)}."
            if why != "failed"
            else f"{rec.a.message} Setting {rec.a.target} back to {value_text(rec.a.previous)}.",
        )
        self._journal(rec)
        self._call(rec, act, "revert", now)

    def _reverted(self, rec: _Rec, outcome: Outcome, now: float) -> None:
        a = rec.a
        if outcome.ok:
            if rec.why == "failed":
                self._finish(
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
            self._finish(
                rec,
                S.REVERTED,
                now,
                f"Reverted ({REVERT_WHY.get(rec.why, rec.why)}){note}; {a.target} is "
                f"{value_text(a.previous)} again.",
                in_effect=False,
                value=a.after,
                threshold=a.before,
            )
            return
        if a.actuator == "knob" and _read(self.actuators.knob, a.target) is None:
            rec.knob_back = True
            self._finish(
                rec,
                S.LOST,
                now,
                f"Lost while reverting: {outcome.message} {a.target} is set back to "
                f"{value_text(a.previous)} when it registers it again.",
                in_effect=True,
                severity=Severity.MEDIUM,
            )
            return
        if a.actuator == "process" and a.recovered and _process_started(rec.pid) is None:
            self._finish(
                rec,
                S.LOST,
                now,
                f"Process {rec.pid} has exited; its {a.target} no longer needs setting back.",
                in_effect=False,
            )
            return
        self._finish(
            rec,
            S.FAILED,
            now,
            f"Could not set {a.target} back to {value_text(a.previous)}: {outcome.message} "
            "It is still in effect; r tries again.",
            in_effect=True,
            severity=Severity.MEDIUM,
        )

    def _evaluate(self, now: float) -> None:
        cfg = self.cfg
        for rec in list(self._recs.values()):
            a = rec.a
            if a.state is not S.EVALUATING or rec.op or a.applied_at is None or a.recovered:
                continue
            start = a.applied_at + cfg.settle_s
            if a.evaluate_until is None or now < start:
                continue
            if now < a.evaluate_until:
                lo = max(start, a.evaluate_until - cfg.evaluation_s)
                so_far, _ = self._history.mean(a.metric, lo, now)
                if so_far is not None:
                    rec.a = replace(a, after=so_far)
                continue
            lo = max(start, a.evaluate_until - cfg.evaluation_s)
            after, n = self._history.mean(a.metric, lo, a.evaluate_until)
            if a.before is None:
                if not rec.said_inconclusive:
                    rec.said_inconclusive = True
                    msg = (
                        f"Inconclusive: {_count(rec.before_n, 'reading')} of {a.metric} in the "
                        f"{cfg.evaluation_s:g} s before the change (needs {cfg.min_samples}); "
                        "it stays applied, unjudged, until you revert it (r)."
                    )
                    rec.a = replace(a, after=after, evaluate_until=None, message=msg)
                    self._journal(rec)
                    self._event(Severity.LOW, f"{a.id} {msg[0].lower()}{msg[1:]}", rec.a, now)
                continue
            if after is None or n < cfg.min_samples:
                msg = (
                    f"Inconclusive: {_count(n, 'reading')} of {a.metric} in the evaluation "
                    f"window (needs {cfg.min_samples}); evaluating another "
                    f"{cfg.evaluation_s:g} s."
                )
                until = a.evaluate_until + cfg.evaluation_s
                rec.a = replace(a, after=after, evaluate_until=until, message=msg)
                self._journal(rec)
                self._event(Severity.LOW, f"{a.id} {msg[0].lower()}{msg[1:]}", rec.a, now)
                continue
            self._decide(rec, a.before, after, now)

    def _decide(self, rec: _Rec, before: float, after: float, now: float) -> None:
        a, s, cfg = rec.a, rec.strategy, self.cfg
        verdict = judge(before, after, s.expected)
        eff, change = verdict.effectiveness, verdict.change
        self._learning.learn(s, rec.situation, eff, now)
        numbers = (
            f"{a.metric} {metric_text(a.metric, before)} -> {metric_text(a.metric, after)} "
            f"({change * 100:+.0f} %, expected -{s.expected * 100:.0f} %), effectiveness {eff:.2f}"
        )
        rec.a = replace(a, after=after, effectiveness=eff)
        if eff < cfg.revert_below:
            self._event(
                Severity.MEDIUM,
                f"{a.id} did not help: {numbers} < {cfg.revert_below:g}; reverting.",
                rec.a,
                now,
                value=after,
                threshold=before,
            )
            self._start_revert(rec, now, "ineffective")
            return
        self._finish(
            rec, S.KEPT, now, f"Kept: {numbers}.", in_effect=True, value=after, threshold=before
        )

    def _learned_eff(self, s: Strategy, sit: str) -> float:
        return self._learning.effectiveness(s, sit)

    def learned(self) -> dict[tuple[str, str], Learned]:
        return self._learning.all()

    def ranking(self, snap: Snapshot) -> list[tuple[str, float]]:
        """Every strategy with its score (learned effectiveness minus cost) in the situation of
        ``snap``, best first (tests, docs)."""
        sit = situation(snap)
        table = self._table()
        return sorted(
            ((s.name, s.score(self._learned_eff(s, sit))) for s in table), key=lambda x: -x[1]
        )

    # -- bookkeeping -----------------------------------------------------------------------------

    def _finish(
        self,
        rec: _Rec,
        state: ActionState,
        now: float,
        message: str,
        *,
        in_effect: bool | None = None,
        journal: bool | None = None,
        severity: Severity = Severity.LOW,
        value: float | None = None,
        threshold: float | None = None,
    ) -> None:
        """Move ``rec`` to a final (or lost) state, journal it and say so."""
        undone = rec.in_effect and in_effect is False  # its change is not in effect any more
        if in_effect is not None:
            rec.in_effect = in_effect
        rec.a = replace(rec.a, state=state, decided_at=now, message=message)
        if journal is None:
            journal = rec.journaled or rec.in_effect
        if journal:
            self._journal(rec, reverted=now if undone else None)
        if message.lower().startswith(state.value):  # "Kept: ..." -> "a3 kept: ..."
            said = f"{rec.a.id} {message[0].lower()}{message[1:]}"
        else:
            said = f"{rec.a.id} {state.value}: {message}"
        self._event(severity, said, rec.a, now, value, threshold)

    def _update(self, rec: _Rec, now: float, *, message: str) -> None:
        rec.a = replace(rec.a, message=message)
        if rec.in_effect or rec.journaled:
            self._journal(rec)

    def _write(self, rec: _Rec, reverted: float | None = None) -> None:
        self.journal.record(
            Entry(
                rec.a,
                situation=rec.situation,
                in_effect=rec.in_effect,
                pid=rec.pid,
                pid_started=rec.pid_started,
                run=self.run,
                reverted=reverted,
            )
        )
        rec.journaled = True

    def _journal(self, rec: _Rec, reverted: float | None = None) -> None:
        """Journal an update; a failure is said (the change itself is already made)."""
        try:
            self._write(rec, reverted)
        except JournalError as e:
            log.warning("the journal could not record %s (%s)", rec.a.id, e)

    def _event(
        self,
        severity: Severity,
        message: str,
        a: TuningAction | None,
        now: float,
        value: float | None = None,
        threshold: float | None = None,
        component: str = "",
    ) -> None:
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
            self._events_view = tuple(self._events)

    def _publish(self) -> None:
        for r in self._recs.values():
            if r.a.in_effect != r.in_effect:
                r.a = replace(r.a, in_effect=r.in_effect)
        decided = sorted(
            (r for r in self._recs.values() if not r.in_effect and not r.a.state.open),
            key=lambda r: -(r.a.decided_at or 0.0),
        )
        for r in decided[KEEP_DECIDED:]:
            del self._recs[r.a.id]
        recs = sorted(self._recs.values(), key=lambda r: -_num(r.a.id))
        proposals = tuple(r.a for r in recs if r.a.state is S.PROPOSED)
        applied = tuple(r.a for r in recs if r.a.state is not S.PROPOSED and (r.in_effect or r.op))
        rest = tuple(r.a for r in recs if r.a.state is not S.PROPOSED and not (r.in_effect or r.op))
        with self._lock:
            self._proposals = proposals
            self._actions = applied + rest
            self._view = {a.id: a for a in (*proposals, *self._actions)}
            self._revertible = {r.a.id for r in recs if r.in_effect or r.op == "apply"}

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

    def _mode(self, actuator: str) -> str:
        with self._lock:
            return self._modes.get(actuator, "ask")

    def _table(self) -> list[Strategy]:
        table = list(STRATEGIES)
        cmd = self.actuators.command
        for c in cmd.commands.values() if cmd is not None else ():
            table.append(command_strategy(c))
        return table

    def _act(self, rec: _Rec) -> TunerActuator | None:
        if rec.actuator is not None:
            return rec.actuator
        return self.actuators.get(rec.a.actuator)

    def _recently(self, s: Strategy, target: str, now: float) -> bool:
        t = self._tried.get((s.name, target))
        return t is not None and now - t < self.cfg.retry_after_s

    def _timeout(self, actuator: str) -> float:
        if actuator == "command":
            # a command is killed at its own timeout_s and then answers; this is a backstop
            cmd = self.actuators.command
            own = [c.timeout_s + 5.0 for c in cmd.commands.values()] if cmd is not None else []
            return max([self.cfg.command_timeout_s, *own])
        return self.cfg.knob_timeout_s

    def _longest_timeout(self) -> float:
        kinds = {r.a.actuator for r in self._recs.values() if r.op or r.in_effect}
        return max((self._timeout(k) for k in kinds), default=self.cfg.knob_timeout_s)


MODE_WORDS = {"off": "recommend only", "ask": "wait for a key", "auto": "apply without asking"}
REVERT_WHY = {
    "ineffective": "it did not help",
    "you": "asked",
    "stop": "vtmon is stopping",
    "recovered": "left applied by a previous run",
    "registered": "its application registered it again",
    "failed": "the change failed",
}


def _read(act: KnobControl | ProcessControl | None, target: str, strict: bool = False) -> Any:
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


def _knob_conn(act: KnobControl, name: str) -> int | None:
    knob = act.registry.get(name)
    return knob.connection if knob is not None else None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def _process_started(pid: int | None) -> float | None:
    if pid is None:
        return None
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def _process_actuator(pid: int, started: float | None) -> ProcessControl | None:
    """A ProcessActuator for a recovered action's process; None when it has exited (or its
    pid now belongs to another process)."""
    now_started = _process_started(pid)
    if now_started is None:
        return None
    if started is not None and abs(now_started - started) > 1.0:
        return None
    return ProcessActuator(pid)


def _fallback_strategy(a: TuningAction) -> Strategy:
    return Strategy(
        name=a.strategy,
        title=a.title,
        actuator=a.actuator,
        types=(a.bottleneck_type,),
        min_severity=Severity.MEDIUM,
        effectiveness=0.5,
        cost=0.3,
        expected=0.2,
        target=a.target,
    )


def _num(action_id: str) -> int:
    try:
        return int(action_id.lstrip("a"))
    except ValueError:
        return 0


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _minutes(s: float) -> str:
    return f"{s / 60:g} min" if s >= 60 else f"{s:g} s"


def _hms(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _stopped_text(n: int, kept: bool, failed: int = 0) -> str:
    if kept:
        return (
            f"Left {_count(n, 'action')} applied; the next start offers to revert them."
            if n
            else "Nothing was applied."
        )
    text = f"Reverted {_count(n, 'action')} as vtmon stopped." if n else ""
    if failed:
        text += f" {_count(failed, 'action')} could not be reverted; the next start offers it."
    return text.strip() or "Nothing was applied."


def action_dict(a: TuningAction) -> dict[str, Any]:
    """An action as JSON (the RPC ``actions.list``), with the Snapshot's extra keys."""
    d: dict[str, Any] = {}
    for f in fields(a):
        v = getattr(a, f.name)
        if isinstance(v, ActionState):
            v = v.value
        elif isinstance(v, float) and not math.isfinite(v):
            v = None
        elif isinstance(v, tuple):
            v = list(v)
        d[f.name] = v
    d["status"] = d["state"]
    d["decision"] = None if a.state.open else a.state.value
    return d
