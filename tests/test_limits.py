"""What one client can make the socket server hold, and what happens to what it sends when the
engine is behind: a real socket, a real Monitor."""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RecordingMonitor
from tests.serve import poll
from tests.sockets import connect, connection_stats, read_json
from vtmon.clock import ManualClock
from vtmon.config import Config
from vtmon.export.prometheus import PrometheusExporter
from vtmon.export.replay import NullCollector, NullSensors
from vtmon.ingest import server as server_module
from vtmon.ingest.server import IngestServer
from vtmon.model import Batch, DistBuf, Kind, SeriesKey
from vtmon.protocol.jsonrpc import rpc_call
from vtmon.report import build_report, render_html
from vtmon.store.history import HistoryStore

PING = b'{"jsonrpc":"2.0","id":"p","method":"ping"}\n'


def _closed_by_vtmon(s: socket.socket) -> bool:
    """Whether vtmon closed the connection within 10 s: what it still had to say is read,
    then EOF (or a reset)."""
    s.settimeout(10)
    try:
        while s.recv(1 << 20):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def _server(sock_dir: Path, monitor: RecordingMonitor, **limits: object) -> IngestServer:
    srv = IngestServer(sock_dir / "vtmon.sock", monitor, **limits)  # type: ignore[arg-type]
    srv.start()
    return srv


# -- 7. a client that never reads its answers --------------------------------------------


def _busy(monitor: RecordingMonitor, series: int = 400) -> None:
    """A Snapshot of some hundreds of series: each answer to `snapshot` is a few hundred KB."""
    b = Batch()
    for i in range(series):
        key = SeriesKey(f"svc{i}.request_latency", (("component", f"svc{i}"),), Kind.DISTRIBUTION)
        b.dist[key] = DistBuf([float(i + 1)] * 3)
    b.accepted = 3 * series
    monitor.submit(b)
    monitor.tick()


def test_a_client_that_reads_no_answers_is_closed_and_others_are_answered_meanwhile(
    sock_dir, monitor
):
    now = [0.0]
    srv = _server(sock_dir, monitor, clock=lambda: now[0], frame_timeout_s=30)
    try:
        _busy(monitor)
        hoarder = connect(srv.path)
        # Far more answers than a connection may leave unread, asked in one write.
        hoarder.sendall(
            b"".join(b'{"jsonrpc":"2.0","id":%d,"method":"snapshot"}\n' % i for i in range(200))
        )
        (held,) = poll("the hoarder's connection", lambda: list(srv._conns))
        poll("the hoarder's answers to wait unread", lambda: held.unread_since is not None)
        good = connect(srv.path)
        worst = 0.0
        for _ in range(20):
            t0 = time.monotonic()
            good.sendall(PING)
            assert read_json(good)["result"] == "pong"
            worst = max(worst, time.monotonic() - t0)
        assert worst < 1.0  # generous: the hoarder's answers are built off the loop
        # No more answers are built while the hoarder reads none: what waits for it is at most
        # one trip of answers beyond the transport's high-water mark, not 200 Snapshots.
        assert held.transport.get_write_buffer_size() < 2 * 1024 * 1024
        assert held.requests and not monitor.connections.closed
        now[0] += 29.0
        srv.sweep()
        assert not monitor.connections.closed  # not yet: answers may wait a while
        now[0] += 1.0
        srv.sweep()
        assert _closed_by_vtmon(hoarder)
        assert monitor.tick().ingest.closed == {"unread answers": 1}
        # A client that asks for several answers at once and then reads them is served in
        # full, however large each is.
        good.sendall(
            b"".join(b'{"jsonrpc":"2.0","id":%d,"method":"snapshot"}\n' % i for i in range(5))
        )
        buf = b""
        while buf.count(b"\n") < 5:
            chunk = good.recv(1 << 20)
            assert chunk
            buf += chunk
        assert buf.count(b'"result":{') == 5
    finally:
        srv.stop()


def test_one_answer_larger_than_the_unread_limit_reaches_a_client_that_reads(sock_dir, monitor):
    # A Snapshot of many series may be larger than max_unread_kib: it is no unread answer.
    srv = _server(sock_dir, monitor, max_unread_kib=64)
    try:
        _busy(monitor, series=3000)  # an answer of a few MB
        got = rpc_call(srv.path, "snapshot", timeout=30)
        assert len(got["series"]) == 3000
        assert not monitor.connections.closed
    finally:
        srv.stop()


# -- 8. unfinished lines and frames -----------------------------------------------------------


def test_unfinished_frames_are_bounded_across_connections_and_the_biggest_holder_goes(
    sock_dir, monitor
):
    srv = _server(sock_dir, monitor, max_buffered_mb=1)  # 1,048,576 bytes for all of them
    try:
        small = connect(srv.path)
        small.sendall(b"api.request_latency:5|ms\napi.request_lat")  # a line under way
        poll("the small line held", lambda: srv.buffered == len(b"api.request_lat"))
        big = connect(srv.path)
        big.sendall(struct.pack("<I", 8_000_000) + b"x" * 600_000)  # a packet far from done
        poll("the big packet held", lambda: srv.buffered >= 600_000)
        other = connect(srv.path)
        other.sendall(struct.pack("<I", 8_000_000) + b"y" * 500_000)  # past the budget
        assert _closed_by_vtmon(big)  # the connection holding the most goes, not the asker
        poll("the budget kept", lambda: 500_000 <= srv.buffered <= srv.max_buffered)
        small.sendall(b"ency:7|ms\n")
        assert connection_stats(small) == {"accepted": 2, "rejected": {}}
        other.sendall(b"y" * 100)  # still read: the asker was not the one closed
        poll("the asker's bytes held", lambda: srv.buffered == 4 + 500_000 + 100)
        assert monitor.connections.closed == {"buffer full": 1}
    finally:
        srv.stop()


def test_a_connection_idle_inside_a_frame_is_closed_one_idle_between_frames_is_not(
    sock_dir, monitor
):
    now = [1000.0]
    srv = _server(sock_dir, monitor, clock=lambda: now[0], frame_timeout_s=30)
    try:
        idle_between = connect(srv.path)
        idle_between.sendall(b"api.request_latency:5|ms\n")
        assert connection_stats(idle_between)["accepted"] == 1
        idle_inside = connect(srv.path)
        idle_inside.sendall(b"api.request_latency:6|ms\napi.request_lat")
        packet = connect(srv.path)
        packet.sendall(struct.pack("<I", 100) + b"api.request_latency:7|ms")
        poll("both unfinished held", lambda: srv.buffered == len(b"api.request_lat") + 4 + 24)
        now[0] += 29
        assert srv.sweep() == 0
        now[0] += 2
        srv.sweep()
        assert monitor.connections.closed == {"frame timeout": 2}
        assert _closed_by_vtmon(idle_inside) and _closed_by_vtmon(packet)
        assert srv.buffered == 0
        idle_between.sendall(b"api.request_latency:8|ms\n")
        assert connection_stats(idle_between)["accepted"] == 2
    finally:
        srv.stop()
    # Everything sent is counted: two lines, one line and the cut one, the cut packet.
    assert monitor.lines_in == 5
    assert monitor.tick().ingest.rejected == {"bad syntax": 1, "bad frame": 1}


# -- 16. back-pressure instead of drops -------------------------------------------------------


class StalledMonitor(RecordingMonitor):
    """A running Monitor whose engine stops before applying each batch until ``go`` is set,
    with a small queue, as a busy engine far behind its socket would be."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._queue = queue.Queue(maxsize=4)
        self.go = threading.Event()

    def _apply(self, batch: Batch, now: float) -> None:
        self.go.wait(60)
        super()._apply(batch, now)


@pytest.fixture
def stalled(clock: ManualClock) -> Iterator[StalledMonitor]:
    m = StalledMonitor(Config(), clock=clock, socket_path="test.sock")
    m.start()
    yield m
    m.go.set()
    m.stop()


def test_a_stalled_engine_slows_the_sender_and_drops_nothing(sock_dir, stalled):
    srv = _server(sock_dir, stalled)
    try:
        n = 200_000  # ~5 MB: far more than the socket's buffers and the engine's queue hold
        payload = b"".join(b"bulk.request_latency:%d|ms\n" % (i % 500 + 1) for i in range(n))
        sender = connect(srv.path)
        sent = threading.Thread(target=sender.sendall, args=(payload,))
        sent.start()
        poll("the engine's queue full", stalled._queue.full)
        t0 = time.monotonic()
        assert rpc_call(srv.path, "ping", timeout=3) == "pong"  # the loop still answers
        assert time.monotonic() - t0 < 2
        poll("a batch kept for the engine", lambda: srv.waiting)
        assert sent.is_alive()  # the sender waits on the socket
        stalled.go.set()
        sent.join(30)
        assert connection_stats(sender) == {"accepted": n, "rejected": {}}
        ingest = poll("every line applied", lambda: _applied(stalled, n))
        assert ingest["samples_dropped"] == 0
    finally:
        srv.stop()


def test_what_waits_when_vtmon_stops_is_applied_or_counted(sock_dir, stalled, monkeypatch):
    monkeypatch.setattr(server_module, "STOP_WAIT_S", 0.2)
    srv = _server(sock_dir, stalled)
    payload = b"".join(b"bulk.request_latency:%d|ms\n" % (i % 500 + 1) for i in range(200_000))
    sender = connect(srv.path)
    sent = threading.Thread(target=_send_until_closed, args=(sender, payload))
    sent.start()
    poll("the engine's queue full", stalled._queue.full)
    poll("a batch kept for the engine", lambda: srv.waiting)
    srv.stop()  # the engine is still stalled: what the server kept cannot go in
    stalled.go.set()
    stalled.stop()
    sent.join(30)
    ingest = stalled.handle_rpc({"jsonrpc": "2.0", "id": 1, "method": "ingest"})["result"]
    assert ingest["samples_dropped"] > 0  # what was kept is counted, not lost
    # Every line vtmon read is applied, rejected (the line cut by the close) or counted as
    # dropped (one sample a line).
    counted = ingest["accepted"] + sum(ingest["rejected"].values()) + ingest["samples_dropped"]
    assert counted == stalled.lines_in


def _send_until_closed(s: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # vtmon stops reading: the rest is refused
        s.sendall(data)


def _applied(m: StalledMonitor, n: int) -> dict | None:
    ingest = m.handle_rpc({"jsonrpc": "2.0", "id": 1, "method": "ingest"})["result"]
    return ingest if ingest["accepted"] == n else None


# -- where the closes are counted -------------------------------------------------------------


def test_a_connection_closed_for_a_limit_is_counted_where_counts_are_shown(
    sock_dir, tmp_path, clock
):
    store = HistoryStore.open(tmp_path, clock=clock)
    monitor = RecordingMonitor(
        Config(), clock=clock, collector=NullCollector(), sensors=NullSensors(), store=store
    )
    exporter = PrometheusExporter(monitor, process_metrics=False)
    now = [0.0]
    srv = _server(sock_dir, monitor, clock=lambda: now[0], frame_timeout_s=30)
    try:
        s = connect(srv.path)
        s.sendall(b"api.request_latency:5|ms\napi.request_lat")
        poll("the unfinished line held", lambda: srv.buffered)
        now[0] += 31
        srv.sweep()
        assert _closed_by_vtmon(s)
        monitor.tick()
        # `vtmon snapshot`
        assert rpc_call(srv.path, "snapshot")["ingest"]["closed"] == {"frame timeout": 1}
    finally:
        srv.stop()
    text = exporter.exposition().decode()
    assert 'vtmon_ingest_connections_closed_total{reason="frame timeout"} 1.0' in text
    assert 'vtmon_ingest_connections_closed_total{reason="unread answers"} 0.0' in text
    monitor.stop()
    reopened = HistoryStore.open(tmp_path)
    try:
        report = build_report(reopened, clock.time() - 60, clock.time() + 1)
    finally:
        reopened.close()
    assert report["ingest"]["closed"] == {"frame timeout": 1}
    assert "vtmon closed 1 connection for its limits (1 frame timeout)." in render_html(report)
