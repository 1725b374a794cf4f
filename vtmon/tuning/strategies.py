"""What the tuner may do about a bottleneck, and how it measures whether it helped.

The strategies table holds the original design's six knob strategies (each changes one kind of
application knob), two for a watched process (its nice value and its CPU affinity), and one
per configured command (``[[actions]]``). Each has a prior effectiveness and a cost; the tuner
ranks the applicable ones by learned effectiveness minus cost (docs/tuning.md).

Metrics are read from Snapshots: every tick the tuner keeps each metric's value, so that the
window before a change is there when the change is made. A metric key names what and whose:

=====================  ================================================  =====
key                    value                                             unit
=====================  ================================================  =====
``memory <comp>``      the component's largest memory gauge              MB
``memory system``      the machine's memory use                          %
``cpu``                the machine's CPU use                             %
``cpu pid <N>``        the watched process' CPU, of one core             %
``p95 <comp>``         the component's worst 10 s p95 (>= 5 samples)     ms
``error rate <comp>``  errors / operations over the last minute          %
``iowait``             CPU time waiting for IO                           %
=====================  ================================================  =====

Lower is better for every one of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vtmon.analysis.common import ERROR_MIN_OPERATIONS, component_memory, component_p95
from vtmon.config import ActionCommand
from vtmon.model import Bottleneck, Knob, Severity, Snapshot

P95_WINDOW = "10s"
P95_MIN_COUNT = 5  # a p95 of fewer samples in 10 s is not worth averaging
SITUATION_TYPES = ("latency", "memory", "cpu", "errors")
NICE_STEP = 5
NICE_MAX = 19


@dataclass(frozen=True, slots=True)
class Strategy:
    """One way of answering a bottleneck."""

    name: str  # stable: the journal and the learning table use it
    title: str  # "Reduce buffer sizes"
    actuator: str  # knob | process | command
    types: tuple[str, ...]  # bottleneck types it answers
    min_severity: Severity
    effectiveness: float  # prior, 0..1, until something is learned
    cost: float  # 0..1: risk and side effects
    expected: float  # relative improvement of the metric it should bring (0.2 = 20 % lower)
    knob_kind: str = ""  # knob strategies: the Knob.kind it changes
    change: str = ""  # scale | add | max (knobs); nice | affinity (process); run (command)
    amount: float = 0.0  # the factor or the step
    target: str = ""  # process: nice / affinity; command: its name
    how: str = ""  # the change in words, for docs and the proposal

    def score(self, learned: float) -> float:
        return learned - self.cost


STRATEGIES: tuple[Strategy, ...] = (
    Strategy(
        "reduce_buffers", "Reduce buffer sizes", "knob", ("memory",), Severity.HIGH,
        0.7, 0.2, 0.2, "buffers", "scale", 0.7, how="x0.7",
    ),
    Strategy(
        "aggressive_gc", "Collect garbage more aggressively", "knob", ("memory",), Severity.HIGH,
        0.6, 0.3, 0.15, "gc", "max", how="to its max (most aggressive)",
    ),
    Strategy(
        "reduce_complexity", "Reduce processing complexity", "knob", ("cpu",), Severity.HIGH,
        0.8, 0.1, 0.2, "quality", "add", -0.1, how="-0.1",
    ),
    Strategy(
        "more_workers", "Add workers", "knob", ("cpu",), Severity.MEDIUM,
        0.9, 0.4, 0.2, "workers", "scale", 2.0, how="x2",
    ),
    Strategy(
        "enable_caching", "Enable caching", "knob", ("latency",), Severity.MEDIUM,
        0.85, 0.3, 0.3, "caching", "max", how="to its max (on)",
    ),
    Strategy(
        "grow_pools", "Grow connection pools", "knob", ("latency", "throughput"),
        Severity.MEDIUM, 0.7, 0.5, 0.3, "connection_pools", "scale", 1.5, how="x1.5",
    ),
    Strategy(
        "renice", "Lower the CPU priority of {proc}", "process", ("cpu",), Severity.HIGH,
        0.5, 0.1, 0.2, change="nice", amount=NICE_STEP, target="nice", how="nice +5",
    ),
    Strategy(
        "pin_cpus", "Pin {proc} to half of its CPUs", "process", ("cpu",), Severity.HIGH,
        0.4, 0.2, 0.3, change="affinity", target="affinity", how="affinity: the first half",
    ),
)  # fmt: skip
BY_NAME: dict[str, Strategy] = {s.name: s for s in STRATEGIES}

COMMAND_EFFECTIVENESS = 0.5
COMMAND_COST = 0.3
COMMAND_EXPECTED = 0.2


def command_strategy(cmd: ActionCommand) -> Strategy:
    """A configured ``[[actions]]`` command as a strategy: its name and the bottleneck types it
    applies to; severity, prior effectiveness, cost and expected improvement are the same for
    every command (docs/tuning.md)."""
    return Strategy(
        name=cmd.name,
        title=f"Run {cmd.name}",
        actuator="command",
        types=tuple(cmd.applies_to),
        min_severity=Severity.MEDIUM,
        effectiveness=COMMAND_EFFECTIVENESS,
        cost=COMMAND_COST,
        expected=COMMAND_EXPECTED,
        change="run",
        target=cmd.name,
        how="its apply command",
    )


def strategies_for(b: Bottleneck, table: Iterable[Strategy]) -> list[Strategy]:
    """The strategies whose type and minimum severity fit ``b``."""
    return [s for s in table if b.type in s.types and b.severity.rank >= s.min_severity.rank]


# -- the change ---------------------------------------------------------------------------------


def knob_value(s: Strategy, knob: Knob) -> float | None:
    """The value ``s`` would set on ``knob``, within its bounds and on its step; None when that
    changes nothing (already at the limit)."""
    cur = knob.value
    if s.change == "scale":
        new = cur * s.amount
    elif s.change == "add":
        new = cur + s.amount
    elif s.change == "max":
        new = knob.max
    else:
        return None
    if knob.step:
        stepped = knob.min + round((new - knob.min) / knob.step) * knob.step
        if stepped == cur and new != cur:  # rounding undid it: one whole step that way
            stepped = cur + math.copysign(knob.step, new - cur)
        new = stepped
    new = min(knob.max, max(knob.min, new))
    new = round(new, 9)
    return None if math.isclose(new, cur, rel_tol=1e-9, abs_tol=1e-12) else new


def process_value(s: Strategy, current: Any) -> Any:
    """The nice value or CPU list ``s`` would set; None when that changes nothing."""
    if s.change == "nice":
        if not isinstance(current, int) or current >= NICE_MAX:
            return None
        return min(NICE_MAX, current + int(s.amount))
    if s.change == "affinity":
        if not isinstance(current, (list, tuple)) or len(current) < 2:
            return None
        cpus = sorted(int(c) for c in current)
        return cpus[: max(1, len(cpus) // 2)]
    return None


def matching_knobs(s: Strategy, b: Bottleneck, knobs: Iterable[Knob]) -> list[Knob]:
    """Knobs of the strategy's kind that belong to the bottleneck's component; for a system
    bottleneck, any component's."""
    return sorted(
        (
            k
            for k in knobs
            if k.kind == s.knob_kind and (k.component == b.component or b.component == "system")
        ),
        key=lambda k: k.name,
    )


# -- what is measured ---------------------------------------------------------------------------


def process_pid(b: Bottleneck) -> int | None:
    """The pid of a watched-process CPU bottleneck (``cpu:pid-1234``)."""
    _, _, subject = b.id.partition(":")
    if subject.startswith("pid-"):
        try:
            return int(subject[4:])
        except ValueError:
            return None
    return None


def metric_for(b: Bottleneck, s: Strategy, pid: int | None = None) -> str:
    """The metric key the evaluation compares for ``s`` answering ``b``."""
    if s.actuator == "process" and pid is not None:
        return f"cpu pid {pid}"
    t = b.type
    if t == "memory":
        return f"memory {b.component}"
    if t == "cpu":
        bp = process_pid(b)
        return f"cpu pid {bp}" if bp is not None else "cpu"
    if t in ("latency", "throughput"):
        return f"p95 {b.component}"
    if t == "errors":
        return f"error rate {b.component}"
    return "iowait"


def metric_values(snap: Snapshot) -> dict[str, float]:
    """Every metric key the Snapshot has a value for now."""
    out: dict[str, float] = {}
    r = snap.resources
    if r.cpu_percent is not None:
        out["cpu"] = r.cpu_percent
    if r.iowait_percent is not None:
        out["iowait"] = r.iowait_percent
    if r.mem_percent is not None:
        out["memory system"] = r.mem_percent
    p = r.process
    if p is not None and p.running and p.cpu_percent is not None:
        out[f"cpu pid {p.pid}"] = p.cpu_percent
    for comp, (mb, _) in component_memory(snap).items():
        out[f"memory {comp}"] = mb
    for comp, (p95, _) in component_p95(snap, P95_WINDOW, P95_MIN_COUNT).items():
        out[f"p95 {comp}"] = p95
    for e in snap.errors:
        if e.error_rate is not None and e.operations >= ERROR_MIN_OPERATIONS:
            out[f"error rate {e.component}"] = 100.0 * e.error_rate
    return {k: v for k, v in out.items() if math.isfinite(v)}


def situation(snap: Snapshot) -> str:
    """What is high right now: the learning key (``latency high, memory normal, ...``)."""
    high = {b.type for b in snap.bottlenecks}
    return ", ".join(f"{t} {'high' if t in high else 'normal'}" for t in SITUATION_TYPES)


def value_text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v) if v else "-"
    return "-" if v is None else str(v)
