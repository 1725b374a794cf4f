"""Application knobs through the real socket: registration, sets, answers, timeouts, disconnects.

The application side is written with plain sockets and JSON, as docs/protocol.md describes it
for any language; `vtmon.client`'s Knob is tested against the same server afterwards. Time for
the set timeout is the injected clock; the only real waits are short polls for socket I/O.
"""

from __future__ import annotations

import json
import math
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.outcomes import Outcomes
from tests.sockets import connect, connection_stats
from vtmon.client import Client
from vtmon.clock import ManualClock
from vtmon.config import Config
from vtmon.demo import DEMO_KNOBS, DemoWorkload
from vtmon.demo import run as run_demo
from vtmon.engine.monitor import Monitor
from vtmon.ingest.parse import parse_block
from vtmon.ingest.server import IngestServer
from vtmon.model import Batch, Knob, TuningAction
from vtmon.runtime import Runtime
from vtmon.tuning.actuators import KnobActuator, Outcome

QUIET_S = 0.2  # how long "nothing arrives" is watched for


class App:
    """An application speaking the documented protocol with nothing but a socket."""

    def __init__(self, path: Path) -> None:
        self.s = connect(path)
        self.buf = b""
        self.next_id = 0

    def send(self, obj: dict[str, Any]) -> None:
        self.s.sendall(json.dumps(obj).encode() + b"\n")

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        self.s.settimeout(timeout)
        while b"\n" not in self.buf:
            data = self.s.recv(65536)
            if not data:
                raise ConnectionError("vtmon closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def nothing_arrives(self) -> bool:
        try:
            msg = self.recv(QUIET_S)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected message {msg}")

    def call(self, method: str, params: Any = None) -> dict[str, Any]:
        self.next_id += 1
        req: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            req["params"] = params
        self.send(req)
        resp = self.recv()
        assert resp["id"] == self.next_id, resp
        return resp

    def register(self, **params: Any) -> dict[str, Any]:
        return self.call("knobs.register", params)

    def answer(self, request: dict[str, Any], result: Any = None, error: str | None = None):
        if error is not None:
            self.send(
                {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -1, "message": error}}
            )
        else:
            self.send({"jsonrpc": "2.0", "id": request["id"], "result": result})

    def settled(self) -> None:
        """Everything sent so far on this connection was handled by vtmon."""
        connection_stats(self.s)

    def close(self) -> None:
        self.s.close()


def action(target: str, value: Any, previous: Any = None, aid: str = "a1") -> TuningAction:
    return TuningAction(
        id=aid,
        strategy="test",
        actuator="knob",
        target=target,
        component="api-server",
        bottleneck="latency:api-server",
        bottleneck_type="latency",
        title="test",
        why="test",
        expected="test",
        previous=previous,
        value=value,
    )


POOL = {
    "name": "api.db_pool_size",
    "value": 16,
    "min": 4,
    "max": 64,
    "step": 1,
    "unit": "connections",
    "component": "api-server",
    "kind": "connection_pools",
}


@pytest.fixture
def app(server: IngestServer):
    a = App(server.path)
    yield a
    a.close()


def _one_sentence(message: str) -> None:
    assert message and "\n" not in message
    assert message.endswith(".")
    assert ". " not in message.rstrip("."), message


# -- registration -------------------------------------------------------------------------------


def test_register_list_and_snapshot(server, monitor, app):
    resp = app.register(**POOL)
    knob = resp["result"]
    assert knob["name"] == "api.db_pool_size"
    assert (knob["value"], knob["min"], knob["max"], knob["step"]) == (16, 4, 64, 1)
    assert all(type(knob[k]) is int for k in ("value", "min", "max", "step"))
    assert knob["kind"] == "connection_pools" and knob["component"] == "api-server"
    (held,) = monitor.knobs.knobs()
    assert held.connection == knob["connection"] > 0

    other = App(server.path)  # any connection may list
    try:
        listed = other.call("knobs.list")["result"]
    finally:
        other.close()
    assert [k["name"] for k in listed] == ["api.db_pool_size"]
    assert monitor.tick().knobs == (held,)
    assert monitor.tick().to_dict()["knobs"][0]["name"] == "api.db_pool_size"


def test_same_connection_updates_and_unregisters(monitor, app):
    app.register(**POOL)
    resp = app.register(**{**POOL, "value": 20, "max": 32})
    assert resp["result"]["value"] == 20
    (k,) = monitor.knobs.knobs()
    assert (k.value, k.max) == (20, 32)
    assert app.call("knobs.unregister", {"name": POOL["name"]})["result"] is True
    assert monitor.knobs.knobs() == ()
    assert app.call("knobs.unregister", {"name": POOL["name"]})["result"] is False


BAD = [
    ({**POOL, "min": 70}, "min 70 is above max 64"),
    ({**POOL, "value": 100}, "outside [4, 64]"),
    ({**POOL, "kind": "turbo"}, "kind 'turbo' is not one of"),
    ({**POOL, "name": ""}, "non-empty string"),
    ({**POOL, "name": "x" * 201}, "longer than 200"),
    ({**POOL, "step": 0}, "step must be a number from 1e-100 to 1e100"),
    ({k: v for k, v in POOL.items() if k != "max"}, "needs 'max'"),
    ({**POOL, "value": "16"}, "value must be a number from -1e100 to 1e100"),
    ({**POOL, "value": True}, "value must be a number from -1e100 to 1e100"),
    # Beyond these the tuner's steps overflowed (x2 of 1e308, a step of 1e-300): refused.
    ({**POOL, "max": 1e308}, "max must be a number from -1e100 to 1e100, not 1e+308"),
    ({**POOL, "min": -(10**400)}, "min must be a number from -1e100 to 1e100, not -1000000"),
    ({**POOL, "step": 1e-300}, "step must be a number from 1e-100 to 1e100"),
    ({**POOL, "step": 1e101}, "step must be a number from 1e-100 to 1e100"),
]


@pytest.mark.parametrize(("params", "words"), BAD)
def test_register_errors_are_one_sentence(monitor, app, params, words):
    resp = app.register(**params)
    assert resp["error"]["code"] == -32602
    assert words in resp["error"]["message"]
    _one_sentence(resp["error"]["message"])
    assert monitor.knobs.knobs() == ()


@pytest.mark.parametrize("raw", [b"NaN", b"Infinity", b"1e999"])
def test_register_refuses_nan_and_infinities(monitor, app, raw):
    # Python's json writes NaN for nan; other encoders may send 1e999. Both are refused.
    line = (
        b'{"jsonrpc":"2.0","id":5,"method":"knobs.register","params":'
        b'{"name":"k","value":' + raw + b',"min":0,"max":10}}\n'
    )
    app.s.sendall(line)
    resp = app.recv()
    assert resp["error"]["code"] == -32602
    assert "must be a number from -1e100 to 1e100" in resp["error"]["message"]
    assert monitor.knobs.knobs() == ()


def test_params_must_be_an_object(app):
    resp = app.call("knobs.register", [1, 2])
    assert resp["error"]["code"] == -32602
    _one_sentence(resp["error"]["message"])


def test_a_name_taken_by_another_connection_is_refused(server, monitor, app):
    app.register(**POOL)
    thief = App(server.path)
    try:
        resp = thief.register(**{**POOL, "value": 8})
    finally:
        thief.close()
    assert resp["error"]["code"] == -32000
    assert "another connection" in resp["error"]["message"]
    _one_sentence(resp["error"]["message"])
    (k,) = monitor.knobs.knobs()
    assert k.value == 16


def test_a_response_from_the_application_is_not_answered(app):
    # An answer nobody waits for (a late one, say) is dropped, not treated as a bad request.
    app.send({"jsonrpc": "2.0", "id": 12345, "result": {"value": 1}})
    app.send({"jsonrpc": "2.0", "id": 12346, "error": {"code": -1, "message": "no"}})
    stats = connection_stats(app.s)  # the very next line back is this answer
    assert stats == {"accepted": 0, "rejected": {}}


# -- sets -------------------------------------------------------------------------------------


def test_a_set_reaches_only_the_registering_connection(server, monitor, app):
    app.register(**POOL)
    bystander = App(server.path)
    try:
        bystander.register(name="voice.buffer_mb", value=64, min=8, max=128, kind="buffers")
        done = Outcomes()
        KnobActuator(monitor.knobs).apply(action("api.db_pool_size", 32, 16, aid="a7"), done)
        req = app.recv()
        assert req["method"] == "knobs.set"
        assert req["params"] == {"name": "api.db_pool_size", "value": 32, "action": "a7"}
        assert isinstance(req["id"], int)
        assert type(req["params"]["value"]) is int  # a whole number is written as one
        assert bystander.nothing_arrives()
        app.answer(req, {"value": 32})
        got = done.wait()
    finally:
        bystander.close()
    assert got == Outcome(True, "api.db_pool_size set to 32.", 32.0)
    assert monitor.knobs.get("api.db_pool_size").value == 32
    assert monitor.knobs.in_flight() == 0


def test_revert_sets_the_previous_value_and_the_app_may_round(monitor, app):
    app.register(**POOL)
    done = Outcomes()
    KnobActuator(monitor.knobs).revert(action("api.db_pool_size", 32, 16), done)
    req = app.recv()
    assert req["params"]["value"] == 16
    app.answer(req, {"value": 15})  # what the application really did
    assert done.wait().value == 15
    assert KnobActuator(monitor.knobs).read("api.db_pool_size") == 15


@pytest.mark.parametrize("said", [1e308, -1e101, 10**400, "15", True])
def test_a_value_in_effect_beyond_the_rules_is_taken_as_the_one_sent(monitor, app, said):
    app.register(**POOL)
    done = Outcomes()
    KnobActuator(monitor.knobs).apply(action("api.db_pool_size", 32, 16), done)
    app.answer(app.recv(), {"value": said})
    assert done.wait().value == 32
    assert monitor.knobs.get("api.db_pool_size").value == 32


@pytest.mark.parametrize("value", [65, 3.99, -1, math.nan, math.inf, "32", None])
def test_values_outside_the_bounds_are_never_sent(monitor, app, value):
    app.register(**POOL)
    done = Outcomes()
    KnobActuator(monitor.knobs).apply(action("api.db_pool_size", value, 16), done)
    got = done.wait(timeout=0)  # refused at once, in the caller's thread
    assert not got.ok
    _one_sentence(got.message)
    if isinstance(value, (int, float)) and math.isfinite(value):
        assert "outside" in got.message and "[4, 64]" in got.message
    assert app.nothing_arrives()
    assert monitor.knobs.in_flight() == 0


def test_a_knob_nobody_registered_fails_at_once(monitor):
    done = Outcomes()
    KnobActuator(monitor.knobs).apply(action("nope", 1), done)
    got = done.wait(timeout=0)
    assert not got.ok and "not registered" in got.message


def test_an_error_reply_fails_the_action_with_its_message(monitor, app):
    app.register(**POOL)
    done = Outcomes()
    KnobActuator(monitor.knobs).apply(action("api.db_pool_size", 32, 16), done)
    req = app.recv()
    app.answer(req, error="the pool cannot grow while draining")
    got = done.wait()
    assert not got.ok
    assert "the pool cannot grow while draining" in got.message
    _one_sentence(got.message)
    assert monitor.knobs.get("api.db_pool_size").value == 16  # unchanged
    assert monitor.knobs.in_flight() == 0


def test_no_answer_times_out_on_the_clock_and_a_late_answer_is_ignored(
    monitor, clock: ManualClock, app
):
    app.register(**POOL)
    done = Outcomes()
    KnobActuator(monitor.knobs).apply(action("api.db_pool_size", 32, 16), done)
    req = app.recv()  # received, not answered
    clock.advance(4.9)
    monitor.tick()
    assert done.got == [] and monitor.knobs.in_flight() == 1
    clock.advance(0.2)
    monitor.tick()  # the engine's tick expires what is overdue
    got = done.wait(timeout=0)
    assert got == Outcome(False, "No answer from the application within 5 s.")
    app.answer(req, {"value": 32})  # too late
    app.settled()
    assert len(done.got) == 1
    assert monitor.knobs.get("api.db_pool_size").value == 16
    assert monitor.knobs.in_flight() == 0


def test_the_timeout_comes_from_the_config(clock: ManualClock):
    from vtmon.config import config_from_dict

    m = Monitor(config_from_dict({"tuner": {"knob_timeout_s": 2}}), clock=clock)
    assert m.knobs.timeout_s == 2


def test_a_disconnect_fails_what_is_in_flight_and_loses_the_knobs(server, monitor, app):
    lost: list[tuple[int, tuple[str, ...]]] = []
    gone = threading.Event()
    monitor.knobs.on_lost = lambda conn, names: (lost.append((conn, names)), gone.set())
    conn = app.register(**POOL)["result"]["connection"]
    app.register(name="api.cache_enabled", value=0, min=0, max=1, kind="caching")
    done = Outcomes()
    KnobActuator(monitor.knobs).apply(action("api.db_pool_size", 32, 16), done)
    app.recv()
    app.close()
    got = done.wait()
    assert got == Outcome(False, "The application disconnected before answering.")
    assert gone.wait(10)
    assert lost == [(conn, ("api.cache_enabled", "api.db_pool_size"))]
    assert monitor.knobs.knobs() == () and monitor.knobs.in_flight() == 0
    late = Outcomes()
    KnobActuator(monitor.knobs).revert(action("api.db_pool_size", 32, 16), late)
    assert not late.wait(timeout=0).ok  # nothing to send to


def test_registering_again_after_a_disconnect_is_heard(server, monitor, app):
    seen: list[Knob] = []
    gone = threading.Event()
    monitor.knobs.on_registered = seen.append
    monitor.knobs.on_lost = lambda conn, names: gone.set()
    first = app.register(**POOL)["result"]["connection"]
    app.close()
    assert gone.wait(10)
    again = App(server.path)  # the application restarted
    try:
        second = again.register(**{**POOL, "value": 32})["result"]["connection"]
        assert second != first
        assert [(k.name, k.value, k.connection) for k in seen] == [
            ("api.db_pool_size", 16, first),
            ("api.db_pool_size", 32, second),
        ]
        # and the set goes to the new connection
        done = Outcomes()
        KnobActuator(monitor.knobs).revert(action("api.db_pool_size", 32, 16), done)
        req = again.recv()
        again.answer(req, {"value": 16})
        assert done.wait().ok
    finally:
        again.close()


def test_a_closed_connection_refuses_to_send(server, monitor, app):
    app.register(**POOL)
    (k,) = monitor.knobs.knobs()
    conn = monitor.knobs._conns[k.connection]
    assert conn.send({"jsonrpc": "2.0", "method": "hello"}) is True
    assert app.recv() == {"jsonrpc": "2.0", "method": "hello"}
    gone = threading.Event()
    monitor.knobs.on_lost = lambda c, names: gone.set()
    app.close()
    assert gone.wait(10)
    assert conn.send({"jsonrpc": "2.0", "method": "hello"}) is False


def test_an_engine_that_takes_no_connection_still_serves(sock_dir: Path):
    # A replay's endpoint answers with handle_rpc(request) alone and hears no responses.
    class OneArg:
        def __init__(self) -> None:
            self.connections = Monitor().connections
            self.calls: list[dict] = []

        def submit(self, batch: Batch, timeout: float = 5.0) -> bool:
            return True

        def handle_rpc(self, request: dict) -> dict | None:
            self.calls.append(request)
            return {"jsonrpc": "2.0", "id": request.get("id"), "result": "ok"}

    engine = OneArg()
    with IngestServer(sock_dir / "one.sock", engine) as srv:
        a = App(srv.path)
        try:
            a.send({"jsonrpc": "2.0", "id": 9, "result": 1})  # not answered, not handed over
            assert a.register(**POOL)["result"] == "ok"
        finally:
            a.close()
    assert [c["method"] for c in engine.calls] == ["knobs.register"]


def test_register_needs_a_connection(monitor):
    resp = monitor.handle_rpc({"jsonrpc": "2.0", "id": 1, "method": "knobs.register"})
    assert resp["error"]["code"] == -32602
    assert "connection" in resp["error"]["message"]


# -- vtmon.client ---------------------------------------------------------------------------


def test_client_knob_on_change_value_and_reply(server, monitor):
    changes: list[float] = []

    def on_change(v: float) -> None:
        if v > 48:
            raise RuntimeError("more than 48 connections exhaust the database")
        changes.append(v)

    client = Client(server.path)
    try:
        knob = client.knob(
            "api.db_pool_size", 16, 4, 64, step=1, component="api-server",
            kind="connection_pools", on_change=on_change,
        )  # fmt: skip
        assert knob.wait_registered(10), knob.error
        assert knob.value == 16.0
        (held,) = monitor.knobs.knobs()
        assert (held.kind, held.component, held.step) == ("connection_pools", "api-server", 1)

        done = Outcomes()
        act = KnobActuator(monitor.knobs)
        act.apply(action("api.db_pool_size", 32, 16), done)
        assert done.wait() == Outcome(True, "api.db_pool_size set to 32.", 32.0)
        assert changes == [32.0] and knob.value == 32.0

        act.apply(action("api.db_pool_size", 60, 32), done)
        got = done.wait(2)
        assert not got.ok and "more than 48 connections exhaust the database" in got.message
        assert knob.value == 32.0  # refused: unchanged

        with pytest.raises(ValueError, match="outside"):
            client.knob("bad", 5, 10, 20)
        # What vtmon refuses, the client refuses at once, in vtmon's words.
        with pytest.raises(ValueError, match="max must be a number from -1e100 to 1e100"):
            client.knob("huge", 1, 0, 1e200)
        with pytest.raises(ValueError, match="step must be a number from 1e-100 to 1e100"):
            client.knob("fine", 1, 0, 2, step=1e-300)
        with pytest.raises(ValueError, match="already has"):
            client.knob("api.db_pool_size", 16, 4, 64)
    finally:
        client.close()


def test_client_knob_registers_again_after_vtmon_restarts(sock_dir: Path, clock: ManualClock):
    path = sock_dir / "vtmon.sock"
    rt = Runtime(Config(), path, clock=clock, run_engine=False)
    rt.start()
    client = Client(path)
    try:
        knob = client.knob("voice.buffer_mb", 64, 8, 128, kind="buffers")
        assert knob.wait_registered(10)
        rt.stop()  # vtmon goes away ...
        rt = Runtime(Config(), path, clock=clock, run_engine=False)
        second = rt.monitor
        rt.start()  # ... and a new one comes on the same path
        for _ in range(200):  # short polls while the client notices, reconnects, registers
            if second.knobs.get("voice.buffer_mb") is not None:
                break
            threading.Event().wait(0.05)
        assert second.knobs.get("voice.buffer_mb") is not None
        assert knob.wait_registered(10)
        done = Outcomes()
        KnobActuator(second.knobs).apply(action("voice.buffer_mb", 32, 64), done)
        assert done.wait().ok and knob.value == 32
    finally:
        client.close()
        rt.stop()


def test_client_refuses_a_bad_set_itself(server, monitor):
    # vtmon never sends these; a client still checks what it is asked.
    client = Client(server.path)
    try:
        knob = client.knob("k", 1, 0, 2)
        assert knob.wait_registered(10)
        held = monitor.knobs.get("k")
        conn = monitor.knobs._conns[held.connection]
        replies = Outcomes()
        monitor.knobs.handle_response = lambda cid, msg: replies(msg)  # type: ignore[method-assign]
        conn.send({"jsonrpc": "2.0", "id": 1, "method": "knobs.set",
                   "params": {"name": "k", "value": 5}})  # fmt: skip
        conn.send({"jsonrpc": "2.0", "id": 2, "method": "knobs.set",
                   "params": {"name": "zz", "value": 1}})  # fmt: skip
        conn.send({"jsonrpc": "2.0", "id": 3, "method": "nope"})
        got = [replies.wait(n) for n in (1, 2, 3)]
        assert [g["error"]["code"] for g in got] == [-32602, -32602, -32601]
        assert "outside" in got[0]["error"]["message"]
        assert knob.value == 1
    finally:
        client.close()


# -- the demo's knobs -------------------------------------------------------------------------


def _run_workload(knobs: dict[str, float], t0: float, secs: int, seed: int = 3) -> Monitor:
    clock = ManualClock()
    m = Monitor(clock=clock)
    w = DemoWorkload(seed, knobs=knobs)
    for i in range(secs):
        batch = Batch()
        parse_block(("\n".join(w.lines(t0 + i, 1.0)) + "\n").encode(), batch)
        assert not batch.rejected
        m.submit(batch)
        m.drain()
        clock.advance(1)
    return m


def _window(m: Monitor, name: str, component: str | None = None):
    snap = m.tick()
    rows = [s for s in snap.series if s.name == name]
    if component is not None:
        rows = [s for s in rows if s.component == component]
    (row,) = rows
    return row


def test_demo_cache_cuts_api_latency():
    base = _window(_run_workload({}, 0, 60), "api.request_latency").windows["1m"]
    cached = _window(_run_workload({"api.cache_enabled": 1}, 0, 60), "api.request_latency")
    c = cached.windows["1m"]
    assert c.p50 < 0.5 * base.p50
    assert c.p99 < 0.5 * base.p99


def test_demo_bigger_pool_cuts_latency_most_in_the_spike():
    calm = _window(_run_workload({}, 0, 60), "api.request_latency").windows["1m"].p50
    calm64 = _window(_run_workload({"api.db_pool_size": 64}, 0, 60), "api.request_latency")
    spike = _window(_run_workload({}, 80, 50), "api.request_latency").windows["1m"].p95
    spike64 = _window(_run_workload({"api.db_pool_size": 64}, 80, 50), "api.request_latency")
    assert calm64.windows["1m"].p50 < 0.9 * calm
    assert spike64.windows["1m"].p95 < 0.6 * spike
    assert spike - spike64.windows["1m"].p95 > calm - calm64.windows["1m"].p50


def test_demo_smaller_buffers_cut_voice_memory():
    def voice_mb(knobs: dict[str, float]) -> float:
        row = _window(_run_workload(knobs, 0, 20), "memory_heap_used", "voice-engine")
        return row.last / 1024 / 1024

    assert voice_mb({}) == pytest.approx(120, abs=2.5)
    assert voice_mb({"voice.buffer_mb": 16}) == pytest.approx(72, abs=2.5)


def test_demo_more_workers_cut_terminal_latency():
    base = _window(_run_workload({}, 0, 60), "terminal.command_latency").windows["1m"].p50
    more = _window(_run_workload({"terminal.workers": 16}, 0, 60), "terminal.command_latency")
    assert more.windows["1m"].p50 < 0.6 * base


def test_demo_useless_knob_changes_nothing():
    for seed in (1, 7):
        a, b = DemoWorkload(seed), DemoWorkload(seed, knobs={"voice.gc_level": 5})
        for i in range(240):
            assert a.lines(i * 0.5, 0.5) == b.lines(i * 0.5, 0.5)


def test_demo_knob_values_are_whole_steps_within_bounds():
    w = DemoWorkload()
    assert w.set_knob("api.db_pool_size", 31.6) == 32
    assert w.set_knob("voice.buffer_mb", 30) == 32
    with pytest.raises(ValueError):
        w.set_knob("api.db_pool_size", 100)
    with pytest.raises(ValueError):
        w.set_knob("nope", 1)


def test_demo_registers_its_knobs_and_obeys_a_set(server, monitor):
    stop = threading.Event()
    t = threading.Thread(target=run_demo, args=(str(server.path), stop, 0.01))
    t.start()
    try:
        names = {k.name for k in DEMO_KNOBS}
        for _ in range(200):  # short polls while the demo connects and registers
            if {k.name for k in monitor.knobs.knobs()} == names:
                break
            stop.wait(0.05)
        assert {k.name for k in monitor.knobs.knobs()} == names
        done = Outcomes()
        KnobActuator(monitor.knobs).apply(action("api.cache_enabled", 1, 0), done)
        assert done.wait().ok
        assert monitor.knobs.get("api.cache_enabled").value == 1
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()


def test_plain_socket_example_from_the_docs_works(server, monitor):
    # The "client in a few lines" of docs/protocol.md, run as written (in a thread).
    doc = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    code = doc.split("without `vtmon.client`:\n\n```python\n", 1)[1].split("```", 1)[0]
    code = code.replace("while True:", "while not stop.is_set():")
    code = code.replace(
        "    buf += s.recv(65536)",
        "    data = s.recv(65536)\n    if not data:\n        break\n    buf += data",
    )
    stop = threading.Event()
    scope: dict[str, Any] = {"path": str(server.path), "stop": stop}

    def app() -> None:
        try:
            exec(code, scope)
        except OSError:
            pass

    t = threading.Thread(target=app, daemon=True)
    t.start()
    try:
        for _ in range(200):
            if monitor.knobs.get("api.db_pool_size") is not None:
                break
            stop.wait(0.05)
        done = Outcomes()
        KnobActuator(monitor.knobs).apply(action("api.db_pool_size", 40, 16), done)
        assert done.wait() == Outcome(True, "api.db_pool_size set to 40.", 40.0)
        assert scope["pool_size"] == 40
    finally:
        stop.set()
        s = scope.get("s")
        if isinstance(s, socket.socket):
            s.shutdown(socket.SHUT_RDWR)
        t.join(5)
