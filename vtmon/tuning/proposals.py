"""Which strategy answers a bottleneck now, and the proposal that says so.

``choose`` looks at every strategy that fits the bottleneck (type, severity), keeps those that
have something to act on -- a registered knob of their kind, the watched process, a configured
command -- that is not taken by another open action nor tried in the last few minutes, and
returns the one with the best learned effectiveness minus cost; or, when none is left, the
reasons in one clause each ("no caching or connection_pools knob registered by api-server").
``proposal`` turns the choice into the TuningAction a person reads: what, why, how much better.
``Proposer`` is the tuner's part that does it every step: one proposal per bottleneck with no
action open, the reason said once when there is none, proposals expired when their bottleneck
resolves, and applied at once in auto mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from vtmon.config import TunerConfig
from vtmon.model import ActionState, Bottleneck, Knob, Severity, Snapshot, TuningAction
from vtmon.tuning.actuators.base import Actuators
from vtmon.tuning.changes import Changes
from vtmon.tuning.evaluation import Learning
from vtmon.tuning.inbox import Inbox
from vtmon.tuning.ledger import Ledger
from vtmon.tuning.record import BUSY, ActionRecord
from vtmon.tuning.strategies import (
    STRATEGIES,
    Strategy,
    command_strategy,
    knob_value,
    matching_knobs,
    metric_for,
    process_value,
    situation,
    strategies_for,
    value_text,
)
from vtmon.tuning.wording import minutes

WAITING = {
    "ask": "Waiting for a key (a approves, x rejects).",
    "off": "Recommendation only: {actuator} actions are off.",
}


@dataclass(frozen=True, slots=True)
class Choice:
    """A strategy, what it acts on, the value there now and the one it would set."""

    strategy: Strategy
    target: str
    current: Any = None
    value: Any = None
    knob: Knob | None = None
    pid: int | None = None


def choose(
    b: Bottleneck,
    table: Iterable[Strategy],
    actuators: Actuators,
    knobs: Iterable[Knob],
    taken: set[tuple[str, str]],
    recently: Callable[[Strategy, str], bool],
    learned: Callable[[Strategy], float],
    tried_text: str = "tried recently",
) -> tuple[Choice | None, str]:
    """The best applicable choice for ``b`` (``table`` holds the strategies that fit its type
    and severity), or None and why nothing applies."""
    table = list(table)
    if not table:
        return None, f"no strategy answers {b.type} bottlenecks of {b.severity.value} severity"
    knobs = tuple(knobs)
    cands: list[tuple[float, int, Choice]] = []
    why: list[str] = []
    no_knob: list[str] = []
    recent: list[str] = []
    for order, s in enumerate(table):
        act = actuators.get(s.actuator)
        if act is None:
            if s.actuator == "process":
                _note(why, "no watched process (--pid) to change")
            continue
        found: Choice | None = None
        if act.kind == "knob":
            mine = matching_knobs(s, b, knobs)
            if not mine:
                no_knob.append(s.knob_kind)
                continue
            for k in mine:
                new = knob_value(s, k)
                if ("knob", k.name) in taken:
                    _note(why, f"{k.name} is being changed for another bottleneck")
                elif new is None:
                    _note(why, f"{k.name} is already at its limit")
                elif recently(s, k.name):
                    recent.append(f"{s.name} on {k.name}")
                else:
                    found = Choice(s, k.name, k.value, new, knob=k)
                    break
        elif act.kind == "process":
            try:
                current = act.read(s.target)
            except (ValueError, AttributeError) as e:
                _note(why, str(e).rstrip("."))
                continue
            new = process_value(s, current)
            if any(kind == "process" for kind, _ in taken):
                # one change at a time: two would be judged on the same CPU reading
                _note(why, "the process is being changed for another bottleneck")
            elif new is None:
                _note(why, f"the process' {s.target} cannot go further")
            elif recently(s, s.target):
                recent.append(s.name)
            else:
                found = Choice(s, s.target, current, new, pid=act.pid)
        elif ("command", s.target) in taken:
            _note(why, f"{s.target} is running for another bottleneck")
        elif recently(s, s.target):
            recent.append(s.name)
        else:
            found = Choice(s, s.target)
        if found is not None:
            cands.append((s.score(learned(s)), -order, found))
    if cands:
        return max(cands, key=lambda c: (c[0], c[1]))[2], ""
    if no_knob:
        kinds = " or ".join(dict.fromkeys(no_knob))
        _note(why, f"no {kinds} knob registered by {b.component}")
    if recent:
        _note(why, f"{tried_text}: {', '.join(recent)}")
    return None, "; ".join(why) or "no actuator for it"


def proposal(
    b: Bottleneck,
    c: Choice,
    snap: Snapshot,
    action_id: str,
    mode: str,
    learned: float,
    now: float,
) -> TuningAction:
    """The proposal a person reads: what changes, the bottleneck it answers, what to expect."""
    s = c.strategy
    metric = metric_for(b, s, c.pid)
    change = f"{value_text(c.current)} -> {value_text(c.value)}"
    component = b.component
    if c.knob is not None:
        unit = f" {c.knob.unit}" if c.knob.unit else ""
        component = c.knob.component or b.component
        title = f"{s.title} in {component}: {c.knob.name} {change}{unit}"
    elif s.actuator == "process":
        component = process_name(snap, c.pid)
        title = f"{s.title.format(proc=component)}: {c.target} {change}"
    else:
        title = s.title
    what = "error rate" if metric.startswith("error rate") else metric.split(" ", 1)[0]
    return TuningAction(
        id=action_id,
        strategy=s.name,
        actuator=s.actuator,
        target=c.target,
        component=component,
        bottleneck=b.id,
        bottleneck_type=b.type,
        title=title,
        why=f"{b.id} ({b.severity.value}): {b.description}",
        expected=(
            f"{what} down by about {s.expected * 100:.0f} % (learned effectiveness {learned:.2f})"
        ),
        previous=c.current,
        value=c.value,
        metric=metric,
        state=ActionState.PROPOSED,
        mode=mode,
        proposed_at=now,
        message=WAITING.get(mode, "").format(actuator=s.actuator),
    )


def process_name(snap: Snapshot, pid: int | None) -> str:
    """``python3 (pid 4242)`` when the Snapshot knows the watched process, else ``pid 4242``."""
    p = snap.resources.process
    if p is not None and p.pid == pid and p.name:
        return f"{p.name} (pid {pid})"
    return f"pid {pid}"


def _note(why: list[str], text: str) -> None:
    if text not in why:
        why.append(text)


class Proposer:
    """Proposes, expires and (in auto mode) applies, once a step."""

    def __init__(
        self,
        cfg: TunerConfig,
        ledger: Ledger,
        inbox: Inbox,
        changes: Changes,
        actuators: Actuators,
        learning: Learning,
        new_id: Callable[[], str],
    ) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.inbox = inbox
        self.changes = changes
        self.actuators = actuators
        self.learning = learning
        self.new_id = new_id  # the next action's id
        self._said: dict[str, str] = {}  # bottleneck (with its start) -> "no action" reason said

    def expire(self, snap: Snapshot, now: float) -> None:
        """A proposal whose bottleneck resolved expires."""
        active = {b.id for b in snap.bottlenecks}
        for rec in list(self.ledger.recs.values()):
            if rec.a.state is ActionState.PROPOSED and rec.a.bottleneck not in active:
                self.ledger.finish(
                    rec, ActionState.EXPIRED, now, f"Expired: {rec.a.bottleneck} resolved."
                )

    def propose(self, snap: Snapshot, now: float) -> None:
        """One proposal for each bottleneck with no action open (or why there is none, said
        once); then every proposal of a class in auto mode is applied."""
        ledger = self.ledger
        busy = {r.a.bottleneck for r in ledger.recs.values() if r.a.state in BUSY}
        sit = situation(snap)
        live = set()
        for b in snap.bottlenecks:
            key = f"{b.id}@{b.started:.0f}"
            live.add(key)
            if b.id in busy:
                continue
            choice, reason = self._choose(b, sit, now)
            if choice is None:
                if self._said.get(key) != reason:
                    self._said[key] = reason
                    ledger.events.say(
                        Severity.LOW,
                        f"No tuning action for {b.id}: {reason}.",
                        None,
                        now,
                        component=b.component,
                    )
                continue
            self._said.pop(key, None)
            rec = self._proposal(b, choice, snap, now)
            ledger.recs[rec.a.id] = rec
            ledger.events.say(
                Severity.LOW,
                f"Proposed {rec.a.id}: {rec.a.title} ({rec.a.mode}); {rec.a.expected}.",
                rec.a,
                now,
            )
        self._said = {k: v for k, v in self._said.items() if k in live}
        for rec in list(ledger.recs.values()):
            if rec.a.state is ActionState.PROPOSED and self.inbox.mode(rec.a.actuator) == "auto":
                ledger.update(rec, now, message="Applied at once (auto mode).")
                self.changes.apply(rec, snap, now)

    def ranking(self, snap: Snapshot) -> list[tuple[str, float]]:
        """Every strategy with its score (learned effectiveness minus cost) in the situation of
        ``snap``, best first."""
        sit = situation(snap)
        return sorted(
            ((s.name, s.score(self.learning.effectiveness(s, sit))) for s in self.table()),
            key=lambda x: -x[1],
        )

    def table(self) -> list[Strategy]:
        """The built-in strategies and one per configured command."""
        table = list(STRATEGIES)
        cmd = self.actuators.command
        for c in cmd.commands.values() if cmd is not None else ():
            table.append(command_strategy(c))
        return table

    def _choose(self, b: Bottleneck, sit: str, now: float) -> tuple[Choice | None, str]:
        # a target with an action open on it (another bottleneck's) is left to that action
        taken = {(r.a.actuator, r.a.target) for r in self.ledger.recs.values() if r.a.state in BUSY}
        knob_act = self.actuators.knob
        return choose(
            b,
            strategies_for(b, self.table()),
            self.actuators,
            knob_act.registry.knobs() if knob_act is not None else (),
            taken,
            lambda s, target: self._recently(s, target, now),
            lambda s: self.learning.effectiveness(s, sit),
            f"tried in the last {minutes(self.cfg.retry_after_s)}",
        )

    def _proposal(self, b: Bottleneck, choice: Choice, snap: Snapshot, now: float) -> ActionRecord:
        s = choice.strategy
        a = proposal(
            b,
            choice,
            snap,
            self.new_id(),
            self.inbox.mode(s.actuator),
            self.learning.effectiveness(s, situation(snap)),
            now,
        )
        return ActionRecord(a, s, pid=choice.pid)

    def _recently(self, s: Strategy, target: str, now: float) -> bool:
        t = self.ledger.tried.get((s.name, target))
        return t is not None and now - t < self.cfg.retry_after_s
