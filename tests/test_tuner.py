"""The tuner on its own: proposals, approval, journal-first apply, evaluation, automatic revert,
failures, learning, modes, stop and recovery -- with an injected time and a test double at the
actuator boundary.

``FakeKnobs`` implements the ``Actuator`` protocol in process: it records every call (and what
the journal held at that moment), and answers at once or when the test says. The real
actuators through the real socket are tested in tests/test_tuner_e2e.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from vtmon.analysis.common import MIB
from vtmon.config import Config, TunerConfig, config_from_dict
from vtmon.model import (
    ActionState,
    Bottleneck,
    Evidence,
    Kind,
    Knob,
    Resources,
    SeriesStats,
    Severity,
    Snapshot,
    TuningAction,
    WindowStats,
)
from vtmon.store.history import HistoryStore
from vtmon.store.journal import Entry, MemoryJournal, SqliteJournal, open_journal
from vtmon.tuning.actuators import Outcome
from vtmon.tuning.tuner import Tuner

T0 = 1_700_000_000.0
S = ActionState


@dataclass
class Call:
    op: str
    id: str
    value: Any
    journal_state: str | None  # the action's row in the journal when the actuator was called
    journal_in_effect: bool | None


@dataclass
class FakeRegistry:
    table: dict[str, Knob]

    def knobs(self) -> tuple[Knob, ...]:
        return tuple(self.table[n] for n in sorted(self.table))

    def get(self, name: str) -> Knob | None:
        return self.table.get(name)


@dataclass
class FakeKnobs:
    """An in-process knob actuator: the application's knobs are a dict."""

    journal: Any
    knobs: dict[str, Knob] = field(default_factory=dict)
    answer: str = "ok"  # ok | error | hold
    calls: list[Call] = field(default_factory=list)
    held: list[tuple[str, TuningAction, Any]] = field(default_factory=list)
    kind: str = "knob"

    @property
    def registry(self) -> FakeRegistry:
        return FakeRegistry(self.knobs)  # what the tuner asks of KnobActuator.registry

    def read(self, target: str) -> float | None:
        k = self.knobs.get(target)
        return None if k is None else k.value

    def apply(self, action: TuningAction, done: Any) -> None:
        self._call("apply", action, action.value, done)

    def revert(self, action: TuningAction, done: Any) -> None:
        self._call("revert", action, action.previous, done)

    def _call(self, op: str, action: TuningAction, value: Any, done: Any) -> None:
        row = next((e for e in self.journal.rows() if e.action.id == action.id), None)
        self.calls.append(
            Call(
                op,
                action.id,
                value,
                row.action.state.value if row else None,
                row.in_effect if row else None,
            )
        )
        if self.answer == "hold":
            self.held.append((action.target, action, (value, done)))
            return
        if self.answer == "error":
            done(Outcome(False, "The application refused it: draining."))
            return
        self._set(action.target, value)
        done(Outcome(True, f"{action.target} set to {value}.", value))

    def _set(self, name: str, value: Any) -> None:
        k = self.knobs.get(name)
        if k is not None:
            self.knobs[name] = replace(k, value=float(value))

    def release(self, ok: bool = True) -> None:
        held, self.held = self.held, []
        for name, _action, (value, done) in held:
            if ok:
                self._set(name, value)
                done(Outcome(True, f"{name} set to {value}.", value))
            else:
                done(Outcome(False, "The application refused it."))

    def disconnect(self, name: str) -> None:
        self.knobs.pop(name)


@dataclass
class FakeProcess:
    """A process actuator double: a nice value and a CPU list."""

    pid: int = 4242
    nice: int = 0
    cpus: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    calls: list[tuple[str, Any]] = field(default_factory=list)
    kind: str = "process"

    def read(self, target: str) -> Any:
        return self.nice if target == "nice" else list(self.cpus)

    def apply(self, action: TuningAction, done: Any) -> None:
        self._set(action.target, action.value)
        self.calls.append(("apply", action.value))
        done(Outcome(True, "set", action.value))

    def revert(self, action: TuningAction, done: Any) -> None:
        self._set(action.target, action.previous)
        self.calls.append(("revert", action.previous))
        done(Outcome(True, "set back", action.previous))

    def _set(self, target: str, v: Any) -> None:
        if target == "nice":
            self.nice = v
        else:
            self.cpus = list(v)


def knob(name: str, kind: str, value: float, lo: float, hi: float, comp: str, step=None) -> Knob:
    return Knob(name, value, lo, hi, step=step, component=comp, kind=kind, connection=1)


def memory_bn(comp: str = "voice-engine", started: float = T0) -> Bottleneck:
    return Bottleneck(
        id=f"memory:{comp}",
        type="memory",
        severity=Severity.HIGH,
        component=comp,
        description=f"{comp} heap is 172 MB of its 200 MB budget (86 %).",
        impact=0.7,
        confidence=0.9,
        evidence=(Evidence("memory_heap_used", 172.0, 160.0, "MB"),),
        suggested_action="Reduce buffer sizes.",
        started=started,
        rule="memory",
    )


def latency_bn(comp: str = "api-server", started: float = T0) -> Bottleneck:
    return Bottleneck(
        id=f"latency:{comp}",
        type="latency",
        severity=Severity.HIGH,
        component=comp,
        description=f"{comp} p95 latency is 320 ms over the last minute, 3.2x its target.",
        impact=0.56,
        confidence=0.9,
        evidence=(Evidence("p95 (1m)", 320.0, 200.0, "ms"),),
        suggested_action="Enable caching.",
        started=started,
        rule="latency",
    )


def cpu_bn(pid: int, started: float = T0) -> Bottleneck:
    return Bottleneck(
        id=f"cpu:pid-{pid}",
        type="cpu",
        severity=Severity.HIGH,
        component="worker",
        description="worker (pid 4242) uses 95 % of its CPUs.",
        impact=0.63,
        confidence=0.9,
        evidence=(Evidence("process CPU", 95.0, 75.0, "%"),),
        suggested_action="",
        started=started,
        rule="cpu",
    )


def snapshot(
    now: float,
    bottlenecks: tuple[Bottleneck, ...] = (),
    knobs: tuple[Knob, ...] = (),
    memory: dict[str, float] | None = None,
    p95: dict[str, float] | None = None,
    process_cpu: tuple[int, float] | None = None,
) -> Snapshot:
    series = []
    for comp, mb in (memory or {}).items():
        series.append(
            SeriesStats(
                f"{comp}.memory_heap_used",
                (("component", comp),),
                comp,
                Kind.GAUGE,
                {},
                last=mb * MIB,
            )
        )
    for comp, ms in (p95 or {}).items():
        series.append(
            SeriesStats(
                f"{comp}.latency",
                (("component", comp),),
                comp,
                Kind.DISTRIBUTION,
                {"10s": WindowStats(count=50, p95=ms)},
            )
        )
    res = Resources(t=now)
    if process_cpu is not None:
        from vtmon.model import ProcessStats

        res = Resources(
            t=now, process=ProcessStats(process_cpu[0], "worker", cpu_percent=process_cpu[1])
        )
    return Snapshot(
        t=now,
        host="h",
        socket="s",
        started=T0,
        series=tuple(series),
        resources=res,
        bottlenecks=bottlenecks,
        knobs=knobs,
    )


class Rig:
    """A tuner, its journal and its fake actuator, stepped once a second."""

    def __init__(
        self,
        tuner_cfg: TunerConfig | None = None,
        journal: Any = None,
        knobs: tuple[Knob, ...] = (),
        process: FakeProcess | None = None,
    ) -> None:
        self.journal = journal if journal is not None else MemoryJournal()
        self.act = FakeKnobs(self.journal, {k.name: k for k in knobs})
        self.config = Config(tuner=tuner_cfg or TunerConfig())
        acts: list[Any] = [self.act] + ([process] if process else [])
        self.tuner = Tuner(self.config, self.journal, acts)
        self.now = T0
        self.bottlenecks: tuple[Bottleneck, ...] = ()
        self.memory: dict[str, float] = {}
        self.p95: dict[str, float] = {}
        self.process_cpu: tuple[int, float] | None = None

    def snap(self) -> Snapshot:
        return snapshot(
            self.now,
            self.bottlenecks,
            tuple(self.act.knobs.values()),
            self.memory,
            self.p95,
            self.process_cpu,
        )

    def tick(self, seconds: int = 1) -> Snapshot:
        snap = self.snap()
        for _ in range(seconds):
            self.now += 1.0
            snap = self.snap()
            self.tuner.step(snap, self.now)
        return snap

    def action(self, aid: str) -> TuningAction:
        a = self.tuner.get(aid)
        assert a is not None, aid
        return a

    def row(self, aid: str) -> Entry:
        return next(e for e in self.journal.rows() if e.action.id == aid)


BUFFERS = knob("voice.audio_buffer_kb", "buffers", 64, 8, 256, "voice-engine", step=1)
CACHE = knob("api.cache_entries", "caching", 0, 0, 10_000, "api-server")
POOL = knob("api.db_pool_size", "connection_pools", 16, 4, 64, "api-server", step=1)


def memory_rig(**kw: Any) -> Rig:
    rig = Rig(knobs=(BUFFERS,), **kw)
    rig.memory = {"voice-engine": 172.0}
    rig.tick(70)  # a minute of readings before anything happens
    rig.bottlenecks = (memory_bn(),)
    rig.tick()
    return rig


def test_a_bottleneck_with_a_knob_gets_one_proposal_and_one_without_is_said_as_such() -> None:
    rig = Rig(knobs=(BUFFERS,))
    rig.memory = {"voice-engine": 172.0}
    rig.bottlenecks = (memory_bn(), latency_bn())
    rig.tick()
    (p,) = rig.tuner.proposals()
    assert p.id == "a1" and p.state is S.PROPOSED and p.strategy == "reduce_buffers"
    assert p.title == "Reduce buffer sizes in voice-engine: voice.audio_buffer_kb 64 -> 45"
    assert p.previous == 64 and p.value == 45.0  # x0.7 on the knob's step
    assert p.why.startswith("memory:voice-engine (high): voice-engine heap is 172 MB")
    assert p.expected.startswith("memory down by about 20 %")
    assert p.metric == "memory voice-engine" and p.mode == "ask"
    said = [e.message for e in rig.tuner.events() if e.message.startswith("No tuning action")]
    assert said == [
        "No tuning action for latency:api-server: no caching or connection_pools knob "
        "registered by api-server."
    ]
    rig.tick(5)  # still one proposal, said once
    assert [p.id for p in rig.tuner.proposals()] == ["a1"]
    assert len([e for e in rig.tuner.events() if e.message.startswith("No tuning")]) == 1


def test_approve_journals_first_then_applies_evaluates_and_keeps() -> None:
    rig = memory_rig()
    assert rig.tuner.approve("a1") == (
        "Approved a1: Reduce buffer sizes in voice-engine: voice.audio_buffer_kb 64 -> 45."
    )
    assert not rig.act.calls  # only intent: the step acts
    rig.tick()
    (call,) = rig.act.calls
    # the journal held the action, with the value to set back, before the actuator was called
    assert call == Call("apply", "a1", 45.0, "applying", True)
    assert rig.row("a1").action.previous == 64
    a = rig.action("a1")
    assert a.state is S.EVALUATING and a.before == pytest.approx(172.0)
    assert a.evaluate_until == a.applied_at + 10 + 60
    assert rig.act.knobs["voice.audio_buffer_kb"].value == 45
    rig.memory = {"voice-engine": 140.0}  # -18.6 %: expected -20 % -> effectiveness 0.93
    rig.tick(30)
    a = rig.action("a1")
    assert a.state is S.EVALUATING and a.after == pytest.approx(140.0)  # the effect so far
    rig.tick(41)
    a = rig.action("a1")
    assert a.state is S.KEPT
    assert a.effectiveness == pytest.approx((172 - 140) / 172 / 0.2)
    assert a.message.startswith("Kept: memory voice-engine 172 MB -> 140 MB (-19 %")
    assert rig.row("a1").action.state is S.KEPT and rig.row("a1").in_effect
    learned = rig.tuner.learned()
    (key,) = learned
    assert key == ("reduce_buffers", "latency normal, memory high, cpu normal, errors normal")
    assert learned[key].tries == 1 and learned[key].mean == pytest.approx(a.effectiveness)
    kept = [e for e in rig.tuner.events() if e.message.startswith("a1 kept")]
    assert kept and kept[0].value == pytest.approx(140.0) and kept[0].threshold == 172.0


def test_an_ineffective_action_is_reverted_with_the_previous_value() -> None:
    rig = memory_rig()
    rig.tuner.approve("a1")
    rig.tick(71)  # memory stays at 172 MB
    a = rig.action("a1")
    assert a.state is S.REVERTED and a.effectiveness == 0.0
    assert [(c.op, c.value) for c in rig.act.calls] == [("apply", 45.0), ("revert", 64)]
    assert rig.act.knobs["voice.audio_buffer_kb"].value == 64
    assert "it did not help" in a.message and "effectiveness 0.00 < 0.2" in a.message
    assert not rig.row("a1").in_effect and rig.row("a1").reverted == rig.now
    assert any(e.message.startswith("a1 did not help") for e in rig.tuner.events())


def test_too_little_data_is_inconclusive_and_stays_evaluating() -> None:
    rig = memory_rig()
    rig.tuner.approve("a1")
    rig.tick()
    rig.memory = {}  # the component stops reporting its memory
    rig.tick(70)
    a = rig.action("a1")
    assert a.state is S.EVALUATING and a.effectiveness is None
    assert a.message.startswith("Inconclusive: 0 readings of memory voice-engine")
    assert not rig.tuner.learned()
    rig.memory = {"voice-engine": 120.0}
    rig.tick(60)
    assert rig.action("a1").state is S.KEPT


def test_nothing_before_the_change_is_inconclusive_for_good() -> None:
    rig = Rig(knobs=(BUFFERS,))
    rig.bottlenecks = (memory_bn(),)
    rig.memory = {"voice-engine": 172.0}
    rig.tick()
    rig.tuner.approve("a1")
    rig.tick(100)
    a = rig.action("a1")
    assert a.state is S.EVALUATING and a.before is None and a.evaluate_until is None
    assert "before the change" in a.message and "until you revert it" in a.message


def test_an_error_answer_is_a_failure_with_a_record_and_nothing_in_effect() -> None:
    rig = memory_rig()
    rig.act.answer = "error"
    rig.tuner.approve("a1")
    rig.tick()
    a = rig.action("a1")
    assert a.state is S.FAILED
    assert a.message == "Failed: The application refused it: draining. Nothing was changed."
    assert [c.op for c in rig.act.calls] == ["apply"]
    row = rig.row("a1")
    assert row.action.state is S.FAILED and not row.in_effect
    assert any(
        e.message.startswith("a1 failed: The application refused") for e in rig.tuner.events()
    )


def test_no_answer_times_out_on_the_clock_and_nothing_is_applied_without_a_record() -> None:
    rig = memory_rig()
    rig.act.answer = "hold"
    rig.tuner.approve("a1")
    rig.tick()
    assert rig.action("a1").state is S.APPLYING and rig.row("a1").in_effect
    rig.tick(4)
    assert rig.action("a1").state is S.APPLYING
    rig.tick()  # 5 s: knob_timeout_s
    assert rig.action("a1").state is S.REVERTING
    assert "No answer within 5 s." in rig.action("a1").message
    rig.act.answer = "ok"
    late = rig.act.held.pop(0)  # the apply's answer comes late: ignored
    late[2][1](Outcome(True, "late", 45.0))
    rig.act.release()  # the revert is answered
    rig.tick()
    a = rig.action("a1")
    assert a.state is S.FAILED and "was set back to 64" in a.message
    assert not rig.row("a1").in_effect


def test_a_disconnect_loses_the_action_and_the_knob_is_set_back_when_registered_again() -> None:
    rig = memory_rig()
    rig.tuner.approve("a1")
    rig.tick(5)
    rig.act.disconnect("voice.audio_buffer_kb")
    rig.tuner.knobs_lost(1, ("voice.audio_buffer_kb",))
    rig.tick()
    a = rig.action("a1")
    assert a.state is S.LOST and rig.row("a1").in_effect
    assert "set back to 64 when it registers it again" in a.message
    # the application comes back with the value vtmon had set: vtmon sets it back
    rig.act.knobs["voice.audio_buffer_kb"] = replace(BUFFERS, value=45.0, connection=2)
    rig.tick()
    a = rig.action("a1")
    assert a.state is S.REVERTED and rig.act.knobs["voice.audio_buffer_kb"].value == 64
    assert not rig.row("a1").in_effect


def test_a_disconnect_while_applying_is_lost_not_failed() -> None:
    rig = memory_rig()
    rig.act.answer = "hold"
    rig.tuner.approve("a1")
    rig.tick()
    rig.act.disconnect("voice.audio_buffer_kb")
    rig.act.release(ok=False)
    rig.tick()
    assert rig.action("a1").state is S.LOST and rig.row("a1").in_effect


def test_the_same_action_is_not_proposed_again_within_five_minutes() -> None:
    rig = memory_rig()
    assert rig.tuner.reject("a1") == "Rejected a1; it is not proposed again for 5 min."
    rig.tick()
    assert rig.action("a1").state is S.REJECTED and not rig.tuner.proposals()
    assert any("tried in the last 5 min: reduce_buffers" in e.message for e in rig.tuner.events())
    rig.bottlenecks = ()
    rig.tick(10)
    rig.bottlenecks = (memory_bn(started=rig.now),)
    rig.tick(200)
    assert not rig.tuner.proposals()
    rig.tick(100)
    (p,) = rig.tuner.proposals()
    assert p.strategy == "reduce_buffers" and p.id == "a2"


def test_a_proposal_expires_when_its_bottleneck_resolves() -> None:
    rig = memory_rig()
    rig.bottlenecks = ()
    rig.tick()
    assert not rig.tuner.proposals() and rig.action("a1").state is S.EXPIRED
    with pytest.raises(ValueError, match="a1 is expired, not a proposal"):
        rig.tuner.approve("a1")


def test_commands_answer_one_sentence_or_refuse_with_one() -> None:
    rig = memory_rig()
    with pytest.raises(ValueError, match=r"^There is no action a9; `vtmon snapshot` lists"):
        rig.tuner.approve("a9")
    with pytest.raises(ValueError, match="not applied, so there is nothing to revert"):
        rig.tuner.revert("a1")
    assert rig.tuner.revert_all() == "Nothing is applied, so there is nothing to revert."
    with pytest.raises(ValueError, match="is not an action class"):
        rig.tuner.set_mode("gpu", "auto")
    with pytest.raises(ValueError, match="is not a mode"):
        rig.tuner.set_mode("knob", "sometimes")
    rig.tuner.approve("1")  # the number alone is the same id
    with pytest.raises(ValueError, match="already approved"):
        rig.tuner.approve("a1")


def two_strategy_rig(journal: Any = None) -> Rig:
    rig = Rig(knobs=(CACHE, POOL), journal=journal)
    rig.p95 = {"api-server": 320.0}
    rig.tick(70)
    rig.bottlenecks = (latency_bn(),)
    rig.tick()
    return rig


def test_learning_changes_the_ranking_and_persists_across_tuners(tmp_path: Path) -> None:
    store = HistoryStore.open(tmp_path)
    journal = open_journal(store)
    assert isinstance(journal, SqliteJournal)
    rig = two_strategy_rig(journal)
    (p,) = rig.tuner.proposals()
    assert p.strategy == "enable_caching"  # 0.85 - 0.3 beats 0.7 - 0.5
    rig.tuner.approve(p.id)
    rig.tick(71)  # p95 stays: caching did nothing here
    assert rig.action(p.id).state is S.REVERTED
    rig.tick()
    (p2,) = rig.tuner.proposals()
    assert p2.strategy == "grow_pools"
    ranking = dict(rig.tuner.ranking(rig.snap()))
    assert ranking["enable_caching"] == pytest.approx((0.85 + 0.0) / 2 - 0.3)
    journal.close()
    store.close()

    # a new run on the same file starts from what was learned
    store = HistoryStore.open(tmp_path)
    rig2 = two_strategy_rig(open_journal(store))
    (p3,) = rig2.tuner.proposals()
    assert p3.strategy == "grow_pools"
    assert int(p3.id[1:]) > int(p.id[1:])  # ids continue after the journal's
    rig2.tuner.journal.close()
    store.close()


def test_mode_off_only_recommends_and_auto_applies_without_a_key() -> None:
    rig = memory_rig(tuner_cfg=TunerConfig(modes={"knob": "off"}))
    (p,) = rig.tuner.proposals()
    assert p.mode == "off" and p.message == "Recommendation only: knob actions are off."
    with pytest.raises(ValueError, match="Knob actions are off"):
        rig.tuner.approve(p.id)
    rig.tick(30)
    assert not rig.act.calls
    assert rig.tuner.cycle_mode("knob") == "ask"
    assert rig.tuner.cycle_mode("knob") == "auto"
    rig.tick()
    assert rig.act.calls[0].op == "apply" and rig.action(p.id).state is S.EVALUATING
    assert rig.tuner.modes() == {"knob": "auto", "process": "ask", "command": "ask"}


def test_auto_mode_from_the_config_applies_at_the_first_step() -> None:
    cfg = config_from_dict({"tuner": {"mode": "ask", "modes": {"knob": "auto"}}})
    rig = memory_rig(tuner_cfg=cfg.tuner)
    assert not rig.tuner.proposals()
    (a,) = rig.tuner.actions()
    assert a.state is S.EVALUATING and a.mode == "auto"


def test_stop_reverts_everything_applied() -> None:
    rig = Rig(knobs=(BUFFERS, CACHE))
    rig.memory, rig.p95 = {"voice-engine": 172.0}, {"api-server": 320.0}
    rig.tick(70)
    rig.bottlenecks = (memory_bn(), latency_bn())
    rig.tick()
    for p in rig.tuner.proposals():
        rig.tuner.approve(p.id)
    rig.tick()
    assert {a.state for a in rig.tuner.actions()} == {S.EVALUATING}
    text = rig.tuner.stop(rig.now)
    assert text == "Reverted 2 actions as vtmon stopped."
    assert rig.act.knobs["voice.audio_buffer_kb"].value == 64
    assert rig.act.knobs["api.cache_entries"].value == 0
    assert all(not e.in_effect for e in rig.journal.rows())
    rig.tick()  # a stopped tuner does nothing more
    assert len(rig.act.calls) == 4


def test_stop_keeping_leaves_the_journal_open_for_the_next_start() -> None:
    rig = memory_rig()
    rig.tuner.approve("a1")
    rig.tick()
    rig.tuner.keep_at_exit = True
    assert rig.tuner.stop(rig.now) == (
        "Left 1 action applied; the next start offers to revert them."
    )
    (row,) = rig.journal.open_actions()
    assert row.action.id == "a1" and "next start offers" in row.action.message


def test_renice_on_a_cpu_bottleneck_of_the_watched_process() -> None:
    proc = FakeProcess(cpus=[0])
    rig = Rig(process=proc)
    rig.process_cpu = (proc.pid, 95.0)
    rig.tick(70)
    rig.bottlenecks = (cpu_bn(proc.pid),)
    rig.tick()
    (p,) = rig.tuner.proposals()
    assert p.strategy == "renice" and p.actuator == "process"
    assert p.title == "Lower the CPU priority of worker (pid 4242): nice 0 -> 5"
    assert p.metric == "cpu pid 4242"
    rig.tuner.approve(p.id)
    rig.tick()
    assert proc.nice == 5
    rig.process_cpu = (proc.pid, 60.0)
    rig.tick(71)
    a = rig.action(p.id)
    assert a.state is S.KEPT and a.effectiveness == 1.0


def test_pinning_takes_half_of_the_cpus() -> None:
    proc = FakeProcess(nice=19)  # renice cannot go further
    rig = Rig(process=proc)
    rig.process_cpu = (proc.pid, 95.0)
    rig.tick(70)
    rig.bottlenecks = (cpu_bn(proc.pid),)
    rig.tick()
    (p,) = rig.tuner.proposals()
    assert p.strategy == "pin_cpus" and p.previous == [0, 1, 2, 3] and p.value == [0, 1]


def test_recovery_lists_what_a_previous_run_left_and_reverts_it_when_asked(
    tmp_path: Path,
) -> None:
    store = HistoryStore.open(tmp_path)
    journal = open_journal(store)
    rig = memory_rig(journal=journal)
    rig.tuner.approve("a1")
    rig.tick()
    # the process dies here: no stop, nothing reverted
    journal.close()
    store.close()

    store = HistoryStore.open(tmp_path)
    journal = open_journal(store)
    (entry,) = journal.open_actions()
    assert entry.action.id == "a1" and entry.action.previous == 64
    act = FakeKnobs(journal, {BUFFERS.name: replace(BUFFERS, value=45.0)})
    tuner = Tuner(Config(), journal, [act])
    (found,) = tuner.recover(journal.open_actions(), rig.now + 100)
    assert found.recovered and found.state is S.KEPT
    assert found.message.startswith("Left applied by a previous run (evaluating when it stopped)")
    tuner.set_recovery("keep")
    tuner.step(snapshot(rig.now + 101), rig.now + 101)
    assert not act.calls  # kept, as asked; listed
    assert [a.id for a in tuner.actions()] == ["a1"]
    assert tuner.revert("a1").startswith("Reverting a1")
    tuner.step(snapshot(rig.now + 102), rig.now + 102)
    assert act.knobs[BUFFERS.name].value == 64 and tuner.get("a1").state is S.REVERTED
    assert not journal.open_actions()
    journal.close()
    store.close()


def test_recovered_knob_actions_are_set_back_when_the_knob_registers_again() -> None:
    journal = MemoryJournal()
    a = TuningAction(
        id="a7",
        strategy="enable_caching",
        actuator="knob",
        target=CACHE.name,
        component="api-server",
        bottleneck="latency:api-server",
        bottleneck_type="latency",
        title="Enable caching",
        why="",
        expected="",
        previous=0,
        value=10_000.0,
        state=S.EVALUATING,
        applied_at=T0 - 50,
    )
    journal.record(Entry(a, in_effect=True))
    act = FakeKnobs(journal)
    tuner = Tuner(Config(), journal, [act])
    tuner.recover(journal.open_actions(), T0)
    tuner.step(snapshot(T0 + 1), T0 + 1)
    assert not act.calls  # not registered yet
    act.knobs[CACHE.name] = replace(CACHE, value=10_000.0)
    tuner.step(snapshot(T0 + 2), T0 + 2)
    assert act.knobs[CACHE.name].value == 0 and tuner.get("a7").state is S.REVERTED
    assert tuner.proposals() == () and tuner._next == 8  # ids continue after the journal's


def test_journal_write_is_durable_and_quick(tmp_path: Path) -> None:
    store = HistoryStore.open(tmp_path)
    journal = open_journal(store)
    assert isinstance(journal, SqliteJournal)
    a = TuningAction(
        id="a1",
        strategy="s",
        actuator="knob",
        target="k",
        component="c",
        bottleneck="b",
        bottleneck_type="memory",
        title="t",
        why="w",
        expected="e",
        previous=1,
        value=2,
    )
    costs = []
    for i in range(50):
        t0 = time.perf_counter()
        journal.record(Entry(replace(a, id=f"a{i + 1}"), in_effect=True))
        costs.append(time.perf_counter() - t0)
    costs.sort()
    # fsynced writes; the median is around a millisecond on the development machine
    print(f"journal write: median {costs[25] * 1000:.2f} ms, worst {costs[-1] * 1000:.2f} ms")
    assert costs[25] < 0.05
    # another connection (the next process) sees every row
    other = SqliteJournal(tmp_path / "vtmon.db")
    assert len(other.open_actions()) == 50
    other.close()
    journal.close()
    store.close()


def test_a_journal_that_cannot_be_written_means_nothing_is_changed(tmp_path: Path) -> None:
    rig = memory_rig()

    def broken(entry: Entry) -> None:
        from vtmon.store.journal import JournalError

        raise JournalError("the disk is full")

    rig.journal.record = broken  # type: ignore[method-assign]
    rig.tuner.approve("a1")
    rig.tick()
    a = rig.action("a1")
    assert (
        a.state is S.FAILED and "Not applied: the disk is full; nothing was changed." in a.message
    )
    assert not rig.act.calls


def test_an_old_file_gets_the_journal_columns(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "vtmon.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE actions (id INTEGER PRIMARY KEY, proposed REAL NOT NULL, applied REAL, "
        "reverted REAL, strategy TEXT NOT NULL, target_kind TEXT NOT NULL, target TEXT NOT NULL,"
        " component TEXT, previous_value TEXT, new_value TEXT, state TEXT NOT NULL, metric TEXT,"
        " before_value REAL, after_value REAL, effectiveness REAL, decision TEXT, note TEXT);"
        "CREATE TABLE strategy_effectiveness (strategy TEXT NOT NULL, component TEXT NOT NULL "
        "DEFAULT '', tries INTEGER NOT NULL DEFAULT 0, successes INTEGER NOT NULL DEFAULT 0, "
        "mean_effectiveness REAL, updated REAL NOT NULL, PRIMARY KEY (strategy, component));"
    )
    conn.close()
    j = SqliteJournal(db)
    assert j.open_actions() == [] and j.learned() == {} and j.next_number() == 1
    j.close()


def test_a_change_cut_off_before_its_answer_was_journaled_is_still_recorded_as_undone() -> None:
    # killed between the journal row (applying) and the actuator's answer: recovered, reverted
    journal = MemoryJournal()
    a = TuningAction(
        id="a4",
        strategy="renice",
        actuator="process",
        target="nice",
        component="worker (pid 4242)",
        bottleneck="cpu:pid-4242",
        bottleneck_type="cpu",
        title="Lower the CPU priority of worker (pid 4242): nice 0 -> 5",
        why="",
        expected="",
        previous=0,
        value=5,
        state=S.APPLYING,
    )
    journal.record(Entry(a, in_effect=True, pid=4242))
    proc = FakeProcess(nice=5)
    tuner = Tuner(Config(), journal, [], process_factory=lambda pid, started: proc)
    tuner.recover(journal.open_actions(), T0)
    assert [x.id for x in tuner.actions() if x.in_effect and x.recovered] == ["a4"]
    tuner.set_recovery("revert")  # what `vtmon serve` does
    tuner.step(snapshot(T0 + 1), T0 + 1)
    assert proc.nice == 0 and proc.calls == [("revert", 0)]
    (row,) = journal.rows()
    assert row.action.state is S.REVERTED and not row.in_effect and row.reverted == T0 + 1
