"""The tuner: proposes a change for each bottleneck, applies it when a person (or auto mode)
approves, measures whether it helped, keeps it or undoes it, and learns from the result.

``Tuner`` is the one object the engine talks to; it is composed of parts, each in a module of
its own:

* ``Inbox`` (inbox.py): commands, answers and knob news from other threads, and the view
  they read back;
* ``Ledger`` (ledger.py): the records of the actions, and what moves one on, journaled
  (journaling.py) and said as events (events.py);
* ``Changes`` (changes.py): the apply/revert state machine that talks to the actuators;
* ``Evaluator`` (evaluator.py): judges an applied action and keeps or reverts it;
* ``Proposer`` (proposals.py): which action to propose now, and auto mode;
* recovery.py: the previous run's open actions at start, and the clean stop.

Threads. ``step`` runs on the Monitor's thread after each analysis; it alone changes the
tuner's state, calls actuators and writes the journal. Everything else -- the commands
(``approve``, ``reject``, ``revert``, ``revert_all``, ``set_mode``, ``cycle_mode``) from the
screen or the socket, and the actuators' ``done`` callbacks from whatever thread answers --
only records intent in the inbox, under its lock, and returns; the next ``step`` acts on it.
Commands answer with one sentence, or raise ValueError with one sentence when they cannot be
done.

Time. The tuner has no clock: every call that needs the time takes ``now`` (the engine's
injected clock), so tests run an hour of tuning in milliseconds. Only ``stop`` waits, in real
time and bounded, for applications to answer the reverts it sends as vtmon exits.

Safety. Before an actuator is asked to make a change, the journal holds the action with the
value to set back (``Journal.record`` is synchronous and fsynced). Every decision -- proposed,
applied, failed, kept, reverted, lost, inconclusive -- is an event with its numbers
(``events``: alerts of kind ``tuning``). docs/tuning.md has the whole flow.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from vtmon.config import Config
from vtmon.model import ActionState, Alert, Knob, Severity, Snapshot, TuningAction
from vtmon.store.journal import Entry, Learned
from vtmon.tuning import recovery
from vtmon.tuning.actuators.base import Actuators, TunerActuator
from vtmon.tuning.changes import Changes
from vtmon.tuning.evaluation import Learning, MetricHistory
from vtmon.tuning.evaluator import Evaluator
from vtmon.tuning.events import EventLog
from vtmon.tuning.inbox import Inbox, Recovery
from vtmon.tuning.journaling import ActionJournal, JournalWriter
from vtmon.tuning.ledger import Ledger
from vtmon.tuning.proposals import Proposer
from vtmon.tuning.record import S
from vtmon.tuning.wording import MODE_WORDS, hms, minutes


class Tuner:
    def __init__(
        self,
        config: Config,
        journal: ActionJournal,
        actuators: Iterable[TunerActuator] = (),
        *,
        process_factory: recovery.ProcessFactory | None = None,
        run: str = "",
    ) -> None:
        self.config = config
        self.cfg = config.tuner
        self.journal = journal
        self.actuators = Actuators.of(actuators)
        self.process_factory = process_factory or recovery.process_actuator
        self.run = run  # written into the journal: which vtmon applied it
        self._step_lock = threading.Lock()  # one step (or stop) at a time
        self._next = journal.next_number()  # the number of the next action's id
        self._inbox = Inbox(self.cfg)
        self._events = EventLog()
        self._ledger = Ledger(JournalWriter(journal, run), self._events)
        self._history = MetricHistory(2 * self.cfg.evaluation_s + self.cfg.settle_s + 5.0)
        self._learning = Learning(journal, self.cfg.revert_below)
        self._changes = Changes(self.cfg, self._ledger, self._inbox, self.actuators, self._history)
        self._evaluator = Evaluator(
            self.cfg, self._ledger, self._changes, self._history, self._learning
        )
        self._proposer = Proposer(
            self.cfg,
            self._ledger,
            self._inbox,
            self._changes,
            self.actuators,
            self._learning,
            self._new_id,
        )
        self.keep_at_exit = False  # the console's "keep and quit"

    # -- commands (any thread) -----------------------------------------------------------------

    def approve(self, action_id: str) -> str:
        return self._inbox.approve(action_id)

    def reject(self, action_id: str) -> str:
        return self._inbox.reject(action_id)

    def revert(self, action_id: str) -> str:
        return self._inbox.revert(action_id)

    def revert_all(self) -> str:
        return self._inbox.revert_all()

    def set_mode(self, actuator: str, mode: str) -> str:
        return self._inbox.set_mode(actuator, mode)

    def cycle_mode(self, actuator: str) -> str:
        """off -> ask -> auto -> off; returns the new mode."""
        return self._inbox.cycle_mode(actuator)

    def modes(self) -> dict[str, str]:
        return self._inbox.modes()

    def set_recovery(self, policy: Recovery) -> None:
        """What to do with actions a previous run left applied: ``offer`` (the console: list
        them; knob ones are set back when their application registers again), ``revert``
        (``vtmon serve``: process and command ones at the first step, knob ones on
        registration) or ``keep`` (``--keep-applied``: listed, nothing undone by itself)."""
        self._inbox.set_recovery(policy)

    # -- what the knob registry tells (any thread) ---------------------------------------------

    def knobs_lost(self, conn_id: int, names: tuple[str, ...]) -> None:
        """``KnobRegistry.on_lost``: a connection closed with these knobs."""
        self._inbox.knobs_lost(conn_id, names)

    def knob_registered(self, knob: Knob) -> None:
        """``KnobRegistry.on_registered``; the next step looks for actions to set back."""
        self._inbox.knob_registered(knob)

    # -- what the Snapshot shows (the Monitor's thread, or any after a step) ---------------------

    def proposals(self) -> tuple[TuningAction, ...]:
        return self._inbox.proposals()

    def actions(self) -> tuple[TuningAction, ...]:
        return self._inbox.actions()

    def events(self) -> tuple[Alert, ...]:
        """Every decision, newest first (alerts of kind ``tuning``)."""
        return self._events.view()

    def merge_alerts(self, alerts: tuple[Alert, ...]) -> tuple[Alert, ...]:
        """The analysis' alerts log with the tuner's events, newest first (cached)."""
        return self._events.merge(alerts)

    def get(self, action_id: str) -> TuningAction | None:
        return self._inbox.get(action_id)

    def learned(self) -> dict[tuple[str, str], Learned]:
        return self._learning.all()

    def ranking(self, snap: Snapshot) -> list[tuple[str, float]]:
        """Every strategy with its score (learned effectiveness minus cost) in the situation of
        ``snap``, best first (tests, docs)."""
        return self._proposer.ranking(snap)

    # -- the step (the Monitor's thread) -------------------------------------------------------

    def step(self, snap: Snapshot, now: float) -> None:
        """Called every tick after the analysis: collect answers, time out, propose, apply what
        was approved, evaluate, revert what did not help, and publish."""
        with self._step_lock:
            if self._changes.stopped:
                return
            self._history.record(snap, now)
            self._changes.drain(now)
            self._changes.timeouts(now)
            self._changes.watch_knobs(now)
            self._take_commands(snap, now)
            self._proposer.expire(snap, now)
            self._proposer.propose(snap, now)
            self._evaluator.evaluate(now)
            self._changes.drain(now)  # actuators that answered at once
            self._ledger.publish(self._inbox)

    def _take_commands(self, snap: Snapshot, now: float) -> None:
        ledger, changes = self._ledger, self._changes
        for what, arg in self._inbox.take_commands():
            rec = ledger.recs.get(arg)
            if what == "approve" and rec is not None and rec.a.state is S.PROPOSED:
                if self._inbox.mode(rec.a.actuator) == "off":
                    continue
                ledger.update(rec, now, message=f"Approved at {hms(now)}.")
                changes.apply(rec, snap, now)
            elif what == "reject" and rec is not None and rec.a.state is S.PROPOSED:
                ledger.tried[(rec.strategy.name, rec.a.target)] = now
                ledger.finish(
                    rec,
                    S.REJECTED,
                    now,
                    f"Rejected; not proposed again for {minutes(self.cfg.retry_after_s)}.",
                    journal=True,
                )
            elif what == "revert" and rec is not None:
                changes.revert_asked(rec, now, "you")
            elif what == "revert_all":
                for r in list(ledger.recs.values()):
                    if r.in_effect or r.op == "apply":
                        changes.revert_asked(r, now, "you")
            elif what == "mode":
                mode = self._inbox.mode(arg)
                self._events.say(
                    Severity.LOW,
                    f"{arg.capitalize()} actions: mode {mode} ({MODE_WORDS[mode]}).",
                    None,
                    now,
                )
            elif what == "recovery" and arg == "revert":
                for r in list(ledger.recs.values()):
                    if r.a.recovered and r.in_effect and r.a.actuator != "knob" and not r.op:
                        changes.start_revert(r, now, "recovered")

    def _new_id(self) -> str:
        n = self._next
        self._next += 1
        return f"a{n}"

    # -- recovery and stopping -----------------------------------------------------------------

    def recover(self, entries: Iterable[Entry], now: float) -> list[TuningAction]:
        """Take in the actions a previous run left applied (the journal's open rows); returns
        them as they now show. What happens to them is ``set_recovery``'s policy."""
        with self._step_lock:
            found = recovery.recover(self._ledger, entries, now, self.process_factory)
            self._ledger.publish(self._inbox)
        return found

    def stop(self, now: float, revert: bool | None = None, wait_s: float | None = None) -> str:
        """Revert every action this run applied (unless ``revert`` is False, or the console's
        "keep and quit" set ``keep_at_exit``), wait up to ``wait_s`` real seconds (default: the
        longest timeout) for the answers, and return what happened in one sentence. Runs on
        the main thread, after the Monitor's thread stopped ticking."""
        revert = (not self.keep_at_exit) if revert is None else revert
        with self._step_lock:
            if self._changes.stopped:
                return ""
            text = recovery.stop(self._ledger, self._changes, self._inbox, now, revert, wait_s)
            self._ledger.publish(self._inbox)
            return text


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
