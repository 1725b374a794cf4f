"""vtmon.client when vtmon is away, restarts, breaks a send off, or is an older vtmon: the
bounded buffer's accounting (property-based), reconnecting on its own, samples going back to
the buffer, and the fallback to text lines."""

from __future__ import annotations

import itertools
import json
import math
import os
import socket
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vtmon.client.connection as client_connection
from tests.conftest import RecordingMonitor
from tests.serve import poll, serve
from vtmon.client import Client
from vtmon.clock import ManualClock
from vtmon.config import Config
from vtmon.engine.monitor import Monitor
from vtmon.ingest.parse import parse_block
from vtmon.ingest.server import IngestServer
from vtmon.model import VALUE_MAX, Batch, Kind, SeriesKey
from vtmon.protocol.jsonrpc import rpc_call
from vtmon.runtime import Runtime

_names = itertools.count()


def _row(snap, name):
    (row,) = [s for s in snap.series if s.name == name]
    return row


class PlainServer:
    """A plain Unix socket server playing a vtmon that is not (quite) there: ``hello`` is what
    it answers the hello with (None: nothing), ``refuse_reads`` shuts its reading side right
    after answering (so the client's next write fails). It keeps what each connection sent
    after its first line."""

    def __init__(self, path: Path, hello: bytes | None, refuse_reads: bool = False) -> None:
        self.path = path
        self.hello = hello
        self.refuse_reads = refuse_reads
        self.received: list[bytearray] = []
        self.cond = threading.Condition()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(os.fspath(path))
        self.sock.listen(8)
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        got = bytearray()
        with self.cond:
            self.received.append(got)
        buf = b""
        while b"\n" not in buf:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
        first, rest = buf.split(b"\n", 1)
        assert json.loads(first)["method"] == "hello"
        if self.refuse_reads:
            conn.shutdown(socket.SHUT_RD)
        if self.hello is not None:
            conn.sendall(self.hello + b"\n")
        if self.refuse_reads:
            return
        data = rest
        while True:
            with self.cond:
                got += data
                self.cond.notify_all()
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return

    def wait(self, what: bytes, timeout: float = 10.0) -> bytes:
        with self.cond:
            ok = self.cond.wait_for(lambda: any(what in r for r in self.received), timeout)
            assert ok, f"{what!r} never arrived: {self.received}"
            return b"".join(bytes(r) for r in self.received)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


OLD_VTMON = b'{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found: hello."}}'
NEW_VTMON = b'{"jsonrpc":"2.0","id":1,"result":{"format":"vtmon-binary/1","max_frame":8388608}}'


# -- the bounded buffer ------------------------------------------------------------------------


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cap=st.integers(1, 400), bursts=st.lists(st.integers(0, 700), min_size=1, max_size=5))
def test_a_full_buffer_drops_the_oldest_counts_them_and_vtmon_hears_of_it(
    sock_dir, server, monitor, cap, bursts
):
    name = f"prop{next(_names)}.op_latency"
    c = Client(sock_dir / "away.sock", max_buffer=cap, flush_interval=3600)
    recorded = 0
    for n in bursts:
        for _ in range(n):
            c.record(name, float(recorded))
            recorded += 1
        # Exact accounting whatever happened: every sample is buffered or counted as dropped.
        assert c.buffered + c.dropped == recorded
        assert c.buffered <= cap
        if recorded >= cap:  # a full buffer drops its oldest eighth at once
            assert c.buffered >= cap - cap // 8
    kept = c.buffered
    lines0, dropped0 = monitor.lines_in, monitor.connections.client_dropped
    c.socket_path = os.fspath(server.path)  # vtmon comes
    assert c.flush()
    c.close()
    assert c.reported == c.dropped
    if kept:
        monitor.wait_lines(lines0 + kept)
    if c.dropped:
        poll("the dropped report", lambda: monitor.connections.client_dropped > dropped0)
    snap = monitor.tick()
    assert snap.ingest.client_dropped - dropped0 == recorded - kept
    if kept:
        w = _row(snap, name).windows["1m"]
        assert w.count == kept
        # the newest were kept: recorded - kept, ..., recorded - 1
        assert w.min == pytest.approx(recorded - kept, rel=0.01, abs=0.01)
        assert w.max == pytest.approx(recorded - 1, rel=0.01)


def test_threads_filling_a_small_buffer_account_for_every_sample(sock_dir, server, monitor):
    c = Client(sock_dir / "away.sock", max_buffer=1000, flush_interval=3600)
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        for i in range(25_000):
            c.record("mt.op_latency", 1.0)
            if i % 2:
                c.count("mt.throughput")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorded = 4 * 25_000 * 3 // 2
    assert c.buffered + c.dropped == recorded  # exact, with four threads at once
    assert c.buffered <= 1000 + 4
    kept = c.buffered
    c.socket_path = os.fspath(server.path)
    c.close()
    monitor.wait_lines(kept)
    monitor.wait_rpcs(1)
    snap = monitor.tick()
    assert snap.ingest.client_dropped == c.dropped == recorded - kept


def test_the_application_never_waits_for_a_vtmon_that_does_not_read(sock_dir):
    # A vtmon that answers the hello and then reads nothing: the client's writes block (its
    # sender thread), the buffer fills and drops, and recording stays as fast as ever.
    path = sock_dir / "stuck.sock"
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.bind(os.fspath(path))
    stuck.listen(1)
    c = Client(path, max_buffer=5000)
    conn, _ = stuck.accept()
    conn.recv(65536)
    conn.sendall(NEW_VTMON + b"\n")
    try:
        poll("connected", lambda: c.connected)
        for i in range(400_000):  # about 3 MB: more than the socket takes
            c.record("stuck.op_latency", float(i))
        assert c.dropped > 0 and c.buffered <= 5000
    finally:
        conn.close()
        stuck.close()
        c.close(timeout=0.2)


# -- reconnecting ----------------------------------------------------------------------------


def test_reconnects_on_its_own_and_delivers_what_vtmon_missed(sock_dir):
    path = sock_dir / "vtmon.sock"
    clock = ManualClock()
    rt = Runtime(Config(), path, clock=clock, engine=RecordingMonitor, run_engine=False)
    rt.start()
    first = rt.monitor
    assert isinstance(first, RecordingMonitor)
    c = Client(path)
    try:
        for i in range(1000):
            c.record("re.op_latency", float(i))
        assert c.flush()
        first.wait_lines(1000)
        rt.stop()  # vtmon goes away ...
        poll("the client to notice", lambda: not c.connected)
        for i in range(1000, 3000):
            c.record("re.op_latency", float(i))
        c.count("re.throughput", 7)
        rt = Runtime(Config(), path, clock=clock, engine=RecordingMonitor, run_engine=False)
        second = rt.monitor
        assert isinstance(second, RecordingMonitor)
        rt.start()  # ... and comes back; nobody calls flush
        second.wait_lines(2001, timeout=20)
        w = _row(second.tick(), "re.op_latency").windows["1m"]
        assert (w.count, w.min, w.max) == (2000, pytest.approx(1000, rel=0.01), 2999)
        assert c.dropped == 0
    finally:
        c.close()
        rt.stop()


def test_vtmon_serve_killed_and_started_again(sock_dir, tmp_path, procs):
    path = sock_dir / "vtmon.sock"

    def counted() -> float:
        snap = rpc_call(path, "snapshot")
        rows = [r for r in snap["series"] if r["name"] == "kill.op_latency"]
        return rows[0]["windows"]["5m"]["count"] if rows else 0

    procs.append(serve(path, tmp_path / "data"))
    c = Client(path)
    try:
        for i in range(5000):
            c.record("kill.op_latency", float(i))
        assert c.flush()
        poll("the first 5,000", lambda: counted() == 5000)
        procs[-1].kill()
        procs[-1].wait(10)
        poll("the client to notice", lambda: not c.connected)
        for i in range(5000, 12_000):
            c.record("kill.op_latency", float(i))
        procs.append(serve(path, tmp_path / "data"))
        poll("the other 7,000 in the new vtmon", lambda: counted() == 7000)
        assert c.dropped == 0
    finally:
        c.close()


def test_a_send_that_breaks_off_goes_back_to_the_buffer(sock_dir, server, monitor):
    # This vtmon answers the hello, then stops reading: every write fails.
    broken = PlainServer(sock_dir / "broken.sock", NEW_VTMON, refuse_reads=True)
    c = Client(broken.path, flush_interval=3600)
    try:
        for i in range(500):
            c.record("back.op_latency", float(i))
            c.gauge("back.level", float(i))
        m = c.start_measurement("back.request_latency", component="back")
        c.end_measurement(m)
        assert not c.flush(timeout=1)
        assert "sending to vtmon failed" in c.last_error or "cannot reach" in c.last_error
        assert (c.dropped, c.sent) == (0, 0)  # nothing went out, nothing was lost
        c.socket_path = os.fspath(server.path)
        assert c.flush()
    finally:
        c.close()
        broken.close()
    monitor.wait_lines(1001)
    snap = monitor.tick()
    assert _row(snap, "back.op_latency").windows["1m"].count == 500
    assert _row(snap, "back.level").last == 499  # the order survived
    assert _row(snap, "back.request_latency").windows["1m"].count == 1


# -- an older vtmon, or none that answers ---------------------------------------------------------


def test_an_older_vtmon_gets_text_lines(sock_dir):
    old = PlainServer(sock_dir / "old.sock", OLD_VTMON)
    c = Client(sock_dir / "not-yet.sock", max_buffer=3)
    try:
        for v in (1.0, 2.0, 3.0, 4.0):  # one more than fits: dropped, and reported
            c.record("old.op_latency", v)
        c.socket_path = os.fspath(old.path)
        assert c.flush()
        assert c.connected and not c.binary
        c.record("old.op_latency", 2.5, component="api")
        c.count("old.throughput", 3)
        c.gauge("old.level", -4.5)  # a negative gauge is no change in StatsD
        assert c.flush()  # (three fit in this buffer)
        c.error(ValueError(), component="api")
        c.end_measurement(c.start_measurement("old.request_latency", component="api", user="u"))
        c.knob("old.pool", 4, 1, 8)
        assert c.flush()
        assert c.dropped == 1
        text = old.wait(b"knobs.register")
    finally:
        c.close()
        old.close()
    # What arrived is what the vtmon of before parses.
    batch = Batch()
    parse_block(text, batch)
    assert dict(batch.rejected) == {}
    dist = {k: list(v.values) for k, v in batch.dist.items()}
    assert dist[SeriesKey("old.op_latency", (), Kind.DISTRIBUTION)] == [2.0, 3.0, 4.0]
    assert dist[SeriesKey("old.op_latency", (("component", "api"),), Kind.DISTRIBUTION)] == [2.5]
    assert dist[SeriesKey("old.request_latency", (("component", "api"),), Kind.DISTRIBUTION)]
    assert batch.counts[SeriesKey("old.throughput", (), Kind.COUNTER)] == 3
    errors = SeriesKey(
        "api.error_count", (("component", "api"), ("error_type", "ValueError")), Kind.COUNTER
    )
    assert batch.counts[errors] == 1
    ops = batch.gauges[SeriesKey("old.level", (), Kind.GAUGE)]
    level = 0.0
    for is_delta, x in ops:
        level = level + x if is_delta else x
    assert level == -4.5
    methods = [r.get("method") for r in batch.rpc]
    assert "knobs.register" in methods
    (report,) = [r for r in batch.rpc if r.get("method") == "client.dropped"]
    assert report["params"] == {"count": 1}


def test_an_older_vtmon_end_to_end(sock_dir, clock):
    # The same lines into a real engine: the snapshot an older vtmon would show.
    old = PlainServer(sock_dir / "old.sock", OLD_VTMON)
    c = Client(old.path)
    for i in range(2000):
        c.record("old.op_latency", float(i % 100))
    assert c.flush()
    text = old.wait(b"old.op_latency")
    c.close()
    old.close()
    m = Monitor(Config(), clock=clock)
    batch = Batch()
    parse_block(text, batch)
    m.submit(batch)
    assert _row(m.tick(), "old.op_latency").windows["1m"].count == 2000


def test_no_answer_to_the_hello_sends_nothing(sock_dir, monkeypatch):
    monkeypatch.setattr(client_connection, "HELLO_TIMEOUT_S", 0.2)
    silent = PlainServer(sock_dir / "silent.sock", None)
    c = Client(silent.path, flush_interval=3600)
    try:
        c.record("silent.op_latency", 1.0)
        assert not c.flush(timeout=0.5)
        assert not c.connected and "hello" in c.last_error
        assert c.buffered == 1  # kept for a vtmon that answers
        assert all(not r for r in silent.received)  # nothing after the hello
    finally:
        c.close(timeout=0.1)
        silent.close()


# -- whatever the application passes ------------------------------------------------------------

_VALID = ("ok.a_latency", "ok.b_latency")
_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([VALUE_MAX, -VALUE_MAX, 1.0000000000000002e100, 1e101, 1e308]),  # vtmon's bound
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.sampled_from((*_VALID, "bad|name", "", "a#b")), _values), max_size=60))
def test_anything_recorded_is_sent_or_counted_invalid_never_a_crash(server, monitor, samples):
    def good(name: object, v: object) -> bool:
        ok = isinstance(v, (int, float)) and math.isfinite(float(v))
        return name in _VALID and ok and abs(float(v)) <= VALUE_MAX

    lines0 = monitor.lines_in
    rejected0 = dict(monitor.tick().ingest.rejected)
    with Client(server.path) as c:
        for name, v in samples:
            c.record(name, v)  # type: ignore[arg-type]
        assert c.flush()
        expected = sum(good(n, v) for n, v in samples)
        assert (c.sent, c.invalid, c.dropped) == (expected, len(samples) - expected, 0)
    monitor.wait_lines(lines0 + expected)
    assert dict(monitor.tick().ingest.rejected) == rejected0  # vtmon refused nothing


def test_series_beyond_what_a_connection_may_declare_still_arrive(sock_dir, monitor):
    # [limits] max_declared_series below what the application sends at once: the hello says
    # so, and the series beyond it go as lines on the same connection, none refused.
    srv = IngestServer(sock_dir / "cap.sock", monitor, max_declared_series=2)
    srv.start()
    try:
        with Client(str(srv.path)) as c:
            for _ in range(3):
                for i in range(5):
                    c.record(f"cap.s{i}_latency", float(i + 1))
                assert c.flush()
            assert (c.sent, c.dropped, c.invalid) == (15, 0, 0)
        monitor.wait_lines(15)  # each sample a value of a frame or a line of its own
        snap = monitor.tick()
        assert dict(snap.ingest.rejected) == {}
        assert snap.ingest.connections_total == 1  # no reconnecting to get new ids
        for i in range(5):
            assert _row(snap, f"cap.s{i}_latency").windows["1m"].count == 3
    finally:
        srv.stop()
