"""Which strategy answers a bottleneck now, and the proposal that says so.

``choose`` looks at every strategy that fits the bottleneck (type, severity), keeps those that
have something to act on -- a registered knob of their kind, the watched process, a configured
command -- that is not taken by another open action nor tried in the last few minutes, and
returns the one with the best learned effectiveness minus cost; or, when none is left, the
reasons in one clause each ("no caching or connection_pools knob registered by api-server").
``proposal`` turns the choice into the TuningAction a person reads: what, why, how much better.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from vtmon.model import ActionState, Bottleneck, Knob, Snapshot, TuningAction
from vtmon.tuning.actuators.base import Actuators
from vtmon.tuning.strategies import (
    Strategy,
    knob_value,
    matching_knobs,
    metric_for,
    process_value,
    value_text,
)

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
