"""Recovery at start and the clean stop: the two ends of the journal.

At start the journal's open rows -- changes a previous run left in effect -- are taken in as
recovered actions; the recovery policy (``Tuner.set_recovery``) decides what becomes of them.
At stop every change this run applied is reverted (or, by choice, left applied and said so),
and ``stop`` waits, in real time and bounded, for the answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from vtmon.model import Severity, TuningAction
from vtmon.store.journal import Entry
from vtmon.tuning.actuators.base import ProcessControl
from vtmon.tuning.actuators.process import ProcessActuator
from vtmon.tuning.changes import Changes, process_started
from vtmon.tuning.inbox import Inbox
from vtmon.tuning.ledger import Ledger
from vtmon.tuning.record import ActionRecord, S
from vtmon.tuning.strategies import BY_NAME, Strategy, value_text
from vtmon.tuning.wording import stopped_text

log = logging.getLogger(__name__)

STOP_WAIT_MAX_S = 15.0  # the longest ``stop`` waits for answers, whatever the timeouts

ProcessFactory = Callable[[int, float | None], ProcessControl | None]


def recover(
    ledger: Ledger,
    entries: Iterable[Entry],
    now: float,
    process_factory: ProcessFactory,
) -> list[TuningAction]:
    """Take in the actions a previous run left applied (the journal's open rows); returns
    them as they now show."""
    found = []
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
        strategy = BY_NAME.get(a.strategy) or fallback_strategy(a)
        rec = ActionRecord(
            a,
            strategy,
            situation=e.situation,
            in_effect=True,
            pid=e.pid,
            pid_started=e.pid_started,
            knob_back=a.actuator == "knob",
            journaled=True,
        )
        ledger.recs[a.id] = rec
        if a.actuator == "process" and e.pid is not None:
            rec.actuator = process_factory(e.pid, e.pid_started)
            if rec.actuator is None:
                ledger.finish(
                    rec,
                    S.LOST,
                    now,
                    f"Process {e.pid} has exited, so its {a.target} no longer needs setting back.",
                    in_effect=False,
                )
                found.append(rec.a)
                continue
        ledger.events.say(
            Severity.MEDIUM,
            f"{a.id} was left applied by a previous run: {a.title}.",
            rec.a,
            now,
        )
        found.append(rec.a)
    return found


def stop(
    ledger: Ledger,
    changes: Changes,
    inbox: Inbox,
    now: float,
    revert: bool,
    wait_s: float | None,
) -> str:
    """Revert every action this run applied (unless ``revert`` is False), wait up to
    ``wait_s`` real seconds (default: the longest timeout) for the answers, and return what
    happened in one sentence. The caller publishes."""
    changes.stopped = True
    changes.drain(now)
    mine = [
        r
        for r in ledger.recs.values()
        if r.in_effect and not r.a.recovered and r.a.state is not S.LOST
    ]
    if not revert:
        for r in mine:
            ledger.update(
                r,
                now,
                message="Left applied when vtmon stopped; the next start offers to revert it.",
            )
        return stopped_text(len(mine), kept=True)
    for r in mine:
        if r.op == "apply":
            r.revert_next = True
        elif not r.op:
            changes.start_revert(r, now, "stop")
    wait = min(STOP_WAIT_MAX_S, wait_s if wait_s is not None else changes.longest_timeout())
    deadline = time.monotonic() + wait
    changes.drain(now)
    while any(r.op for r in ledger.recs.values()):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        inbox.wake.wait(min(0.05, left))
        inbox.wake.clear()
        changes.drain(now)
    for r in ledger.recs.values():
        if r.op:
            r.op, r.token = "", -1
            ledger.finish(
                r,
                S.FAILED,
                now,
                f"No answer before vtmon stopped; {r.a.target} may still be "
                f"{value_text(r.a.value)}, and the next start offers to revert it.",
                in_effect=True,
            )
    undone = sum(1 for r in mine if not r.in_effect)
    text = stopped_text(undone, kept=False, failed=len(mine) - undone)
    if mine:
        log.info("%s", text)
    return text


def process_actuator(pid: int, started: float | None) -> ProcessControl | None:
    """A ProcessActuator for a recovered action's process; None when it has exited (or its
    pid now belongs to another process)."""
    now_started = process_started(pid)
    if now_started is None:
        return None
    if started is not None and abs(now_started - started) > 1.0:
        return None
    return ProcessActuator(pid)


def fallback_strategy(a: TuningAction) -> Strategy:
    """A recovered action's strategy when this vtmon does not know its name."""
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
