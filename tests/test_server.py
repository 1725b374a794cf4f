"""The socket, end to end: real clients from PyPI, raw sockets, both framings, rejections."""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import time

import pytest
import statsd
from datadog.dogstatsd import DogStatsd

from tests.conftest import RecordingMonitor
from tests.sockets import connect, connection_stats, read_json
from vtmon.clock import ManualClock
from vtmon.ingest.server import IngestServer, SocketError, SocketInUse, prepare_path
from vtmon.protocol.jsonrpc import rpc_call


def _series(snap, name):
    return [s for s in snap.series if s.name == name]


def test_socat_style_line_shows_percentiles(server, monitor):
    s = connect(server.path)
    s.sendall(b"api.request_latency:12.5|ms|#component:api-server\n")
    assert connection_stats(s) == {"accepted": 1, "rejected": {}}
    snap = monitor.tick()
    (row,) = _series(snap, "api.request_latency")
    assert row.component == "api-server"
    assert row.windows["1m"].count == 1
    assert row.windows["1m"].p50 == pytest.approx(12.5, rel=0.01)
    assert row.target_ms == 100


def test_socket_and_folder_permissions(server):
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600


def test_default_folder_created_private(tmp_path):
    path = tmp_path / "run" / "vtmon" / "vtmon.sock"
    prepare_path(path)
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_pystatsd_unix_client_unchanged(server, monitor):
    client = statsd.UnixSocketStatsClient(os.fspath(server.path))
    for v in (5, 10, 15, 20):
        client.timing("terminal.command_latency", v)
    client.incr("terminal.throughput", 4)
    client.gauge("terminal.queue_depth", 7)
    client.close()
    monitor.wait_lines(6)
    snap = monitor.tick()
    (lat,) = _series(snap, "terminal.command_latency")
    assert lat.component == "terminal"
    assert lat.windows["1m"].count == 4
    assert lat.windows["1m"].max == pytest.approx(20, rel=0.01)
    (thr,) = _series(snap, "terminal.throughput")
    assert thr.windows["1m"].count == 4
    (gauge,) = _series(snap, "terminal.queue_depth")
    assert gauge.last == 7


def test_datadog_client_length_prefixed_stream(server, monitor):
    client = DogStatsd(socket_path=os.fspath(server.path), disable_telemetry=True)
    for v in (100, 200, 300):
        client.distribution("voice.transcribe_latency", v, tags=["component:voice-engine"])
    client.increment("voice.error_count", tags=["component:voice-engine", "error_type:timeout"])
    client.event("Deploy", "voice 1.2 rolled out", tags=["component:voice-engine"])
    client.service_check("voice.up", 2, message="model failed to load")
    client.flush()
    client.close_socket()
    monitor.wait_lines(6)
    snap = monitor.tick()
    (lat,) = _series(snap, "voice.transcribe_latency")
    assert lat.component == "voice-engine"
    assert lat.windows["1m"].count == 3
    assert lat.windows["1m"].p50 == pytest.approx(200, rel=0.01)
    assert lat.target_ms == 300
    (err,) = [e for e in snap.errors if e.component == "voice-engine"]
    assert err.by_type == {"timeout": 1}
    kinds = {e.kind: e for e in snap.events}
    assert kinds["event"].title == "Deploy"
    assert kinds["service_check"].status == 2
    assert snap.ingest.rejected == {}


def test_length_framing_detected_from_first_bytes(server, monitor):
    s = connect(server.path)
    packets = [b"a.latency:1|ms", b"a.latency:2|ms\na.latency:3|ms"]
    data = b"".join(struct.pack("<I", len(p)) + p for p in packets)
    # Split in awkward places: inside the length, inside a packet.
    for piece in (data[:2], data[2:9], data[9:]):
        s.sendall(piece)
    s.close()
    monitor.wait_lines(3)
    (lat,) = _series(monitor.tick(), "a.latency")
    assert lat.windows["1m"].count == 3


def test_lines_split_across_reads_are_reassembled(server, monitor):
    s = connect(server.path)
    for piece in (b"b.lat", b"ency:4", b"2|ms\nb.latency:", b"8|ms\n"):
        s.sendall(piece)
    assert connection_stats(s)["accepted"] == 2
    (lat,) = _series(monitor.tick(), "b.latency")
    assert lat.windows["1m"].count == 2
    assert lat.windows["1m"].max == pytest.approx(42, rel=0.01)


def test_bad_lines_counted_and_connection_stays_open(server, monitor):
    s = connect(server.path)
    s.sendall(b"good.latency:1|ms\nnope\nx:abc|ms\ny:1|zz\nz:nan|ms\n" + b"w" * 70_000 + b"\n")
    s.sendall(b"good.latency:2|ms\n")
    stats = connection_stats(s)
    assert stats["accepted"] == 2
    assert stats["rejected"] == {
        "bad syntax": 1,
        "bad number": 2,
        "unknown type": 1,
        "too long": 1,
    }
    snap = monitor.tick()
    assert snap.ingest.accepted == 2  # control requests are not metric lines
    assert snap.ingest.rejected_total == 5


def test_unterminated_last_line_counts_at_close(server, monitor):
    s = connect(server.path)
    s.sendall(b"c.latency:5|ms\nc.latency:6|ms")
    s.close()
    monitor.wait_lines(2)
    (lat,) = _series(monitor.tick(), "c.latency")
    assert lat.windows["1m"].count == 2


def test_json_lines_and_snapshot_rpc(server, monitor):
    s = connect(server.path)
    line = {
        "name": "request_latency",
        "value": 0.25,
        "timestamp": monitor.clock.time() * 1000,
        "unit": "ms",
        "context": {"component": "api-server", "requestId": "r1"},
    }
    s.sendall(json.dumps(line).encode() + b"\n")
    connection_stats(s)
    monitor.tick()
    result = rpc_call(server.path, "snapshot")
    (row,) = [r for r in result["series"] if r["name"] == "request_latency"]
    assert row["component"] == "api-server"
    assert row["windows"]["1m"]["p50"] == pytest.approx(0.25, rel=0.01)  # sub-millisecond kept
    assert "history" not in row
    assert set(result) >= {"series", "resources", "sensors", "ingest"}


def test_a_snapshot_can_carry_only_some_series_and_columns_of_all(server, monitor):
    # What a console showing forty rows of 300 series asks for: those rows, and two numbers
    # of every series to sort by; the same values as in the whole Snapshot.
    s = connect(server.path)
    s.sendall(b"".join(f"svc.op{i:03d}.latency:{i + 1}|ms\n".encode() for i in range(300)))
    s.sendall(b"svc.queue:4|g\n")
    connection_stats(s)
    monitor.tick()
    full = rpc_call(server.path, "snapshot")
    ids = [r["name"] for r in full["series"]]
    assert len(ids) == 301
    some = rpc_call(server.path, "snapshot", {"series": ["svc.op007.latency", "nope", ids[0]]})
    assert [r["name"] for r in some["series"]] == [ids[0], "svc.op007.latency"]  # in order
    assert some["series"][1] == next(r for r in full["series"] if r["name"] == "svc.op007.latency")
    assert some["resources"] == full["resources"] and some["ingest"] == full["ingest"]
    cols = rpc_call(
        server.path, "snapshot", {"series": "none", "columns": ["1m.p95", "1m.count", "last"]}
    )
    assert cols["series"] == []
    assert cols["columns"]["ids"] == ids
    assert cols["columns"]["1m.p95"] == [r["windows"]["1m"]["p95"] for r in full["series"]]
    assert cols["columns"]["1m.count"] == [r["windows"]["1m"]["count"] for r in full["series"]]
    assert cols["columns"]["last"][-1] == 4.0 and cols["columns"]["last"][0] is None
    for bad, said in (
        ({"series": "some"}, '"series" is "all", "none" or a list'),
        ({"series": [1, 2]}, '"series" is "all", "none" or a list'),
        ({"columns": ["2m.p95"]}, '"columns" is a list of column names'),
        ({"columns": "1m.p95"}, '"columns" is a list of column names'),
    ):
        with pytest.raises(RuntimeError, match=said):
            rpc_call(server.path, "snapshot", bad)


def test_unknown_rpc_method_is_an_error_not_a_hangup(server):
    with pytest.raises(RuntimeError, match="Method not found"):
        rpc_call(server.path, "nope")


def test_requests_vtmon_cannot_take_are_answered_with_an_error_and_counted(server, monitor):
    s = connect(server.path)
    # Longer than a line may be: answered as soon as vtmon sees it cannot take it.
    s.sendall(
        b'{"jsonrpc":"2.0","id":1,"method":"knobs.register","params":{"name":"' + b"x" * 70_000
    )
    too_long = read_json(s)
    assert too_long["id"] is None and too_long["error"]["code"] == -32600
    assert "longer than the 65536 bytes" in too_long["error"]["message"]
    s.sendall(b'"}}\n')
    s.sendall(
        b'[{"jsonrpc":"2.0","id":2,"method":"ping"},{"jsonrpc":"2.0","id":3,"method":"ping"}]\n'
    )
    batch = read_json(s)
    assert batch["id"] is None and batch["error"]["code"] == -32600
    assert "batches are not supported" in batch["error"]["message"]
    s.sendall(b'{"id":4,"method":"snapshot"}\n')  # no "jsonrpc": "2.0"
    unversioned = read_json(s)
    assert unversioned["id"] == 4 and unversioned["error"]["code"] == -32600
    # A metric sender's over-long line is counted, never answered: the next answer is this one.
    s.sendall(b"api." + b"x" * 70_000 + b":1|ms\n")
    assert connection_stats(s) == {"accepted": 0, "rejected": {"too long": 2, "bad request": 2}}


def test_second_instance_refused(server, sock_dir, clock):
    other = IngestServer(server.path, RecordingMonitor(clock=clock))
    with pytest.raises(SocketInUse, match="Another vtmon is already listening"):
        other.start()
    # The first one still serves.
    assert rpc_call(server.path, "ping") == "pong"


def test_stale_socket_replaced(sock_dir, monitor):
    path = sock_dir / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(os.fspath(path))
    dead.close()  # the file stays, nothing listens
    with IngestServer(path, monitor):
        assert rpc_call(path, "ping") == "pong"
    assert not path.exists()


def test_regular_file_in_the_way_is_refused(sock_dir, monitor):
    path = sock_dir / "file.sock"
    path.write_text("not a socket")
    with pytest.raises(SocketError, match="is not a socket"):
        IngestServer(path, monitor).start()
    assert path.read_text() == "not a socket"


def test_many_lines_all_counted(server, monitor):
    n = 50_000
    payload = b"".join(b"bulk.latency:%d|ms\n" % (i % 500 + 1) for i in range(n))
    s = connect(server.path)
    s.sendall(payload)
    assert connection_stats(s)["accepted"] == n
    (lat,) = _series(monitor.tick(), "bulk.latency")
    assert lat.windows["1m"].count == n


def test_times_from_before_1970_or_after_2100_are_rejected_as_bad_time(server, monitor):
    # Each of these once reached the console, whose time.localtime overflowed on it.
    s = connect(server.path)
    s.sendall(
        b"_e{1,1}:a|b|d:1e308\n"
        b"_sc|chk|0|d:-1e300\n"
        b"api.latency:5|ms|T1e308\n"
        b'{"name": "request_latency", "value": 1, "timestamp": 1e20}\n'
        b"_e{6,2}:deploy|ok|d:1700000000\n"
    )
    assert connection_stats(s) == {"accepted": 1, "rejected": {"bad time": 4}}
    snap = monitor.tick()
    assert [(e.title, e.ts) for e in snap.events] == [("deploy", 1700000000.0)]
    assert snap.ingest.rejected == {"bad time": 4}


@pytest.mark.parametrize("count", [10**400, 2**53 + 1, -1, True, 1.5, "5", None, [1]], ids=repr)
def test_client_dropped_takes_a_count_from_0_to_2_53_only(server, monitor, count):
    with pytest.raises(RuntimeError, match=r"client.dropped needs params with a count"):
        rpc_call(server.path, "client.dropped", {"count": count})
    assert rpc_call(server.path, "client.dropped", {"count": 2**53}) is True
    assert monitor.tick().ingest.client_dropped == 2**53


def test_client_dropped_total_stops_at_what_sqlite_holds(server, monitor):
    s = connect(server.path)
    notify = b'{"jsonrpc": "2.0", "method": "client.dropped", "params": {"count": %d}}\n'
    s.sendall(notify % 2**53 * 1100 + notify % 10**400)  # notifications get no answer
    connection_stats(s)
    assert monitor.tick().ingest.client_dropped == 2**63 - 1


def test_monitor_clock_is_injected(clock: ManualClock, server, monitor):
    s = connect(server.path)
    s.sendall(b"d.latency:5|ms\n")
    connection_stats(s)
    monitor.tick()
    clock.advance(61)
    (lat,) = _series(monitor.tick(), "d.latency")
    assert lat.windows["1m"].count == 0
    assert lat.windows["5m"].count == 1


# -- a person's key press goes first ------------------------------------------------------


def test_a_hold_for_the_screen_stops_reading_and_loses_nothing(server, monitor) -> None:
    now = [100.0]  # the hold's clock stands still: only release_ingest ends it
    monitor.hold_clock = lambda: now[0]
    assert monitor.hold_ingest(until_released=True)
    s = connect(server.path)
    s.sendall(b"api.request_latency:12.5|ms|#component:api-server\n" * 1000)
    deadline = time.monotonic() + 10
    while monitor.holds == 0 and time.monotonic() < deadline:
        time.sleep(0.005)  # until the reader waits: another thread's progress, not a clock
    assert monitor.holds == 1 and monitor.lines_in == 0  # read, parsed, not handed over
    monitor.release_ingest()
    monitor.wait_lines(1000)
    assert connection_stats(s) == {"accepted": 1000, "rejected": {}}
    (row,) = _series(monitor.tick(), "api.request_latency")
    assert row.windows["1m"].count == 1000


def test_a_hold_lasts_a_second_at_most_then_rests_as_long(monitor) -> None:
    now = [0.0]
    monitor.hold_clock = lambda: now[0]
    assert monitor.hold_ingest() and monitor.held
    now[0] = 0.15
    assert monitor.held  # a key answered within HOLD_S
    now[0] = 0.25
    assert not monitor.held
    assert monitor.hold_ingest()  # a new key: a new hold
    for t in (0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95, 1.05, 1.15):
        now[0] = t
        monitor.hold_ingest()  # keys keep coming (one held down): each extends the hold
    now[0] = 1.24
    assert monitor.held
    now[0] = 1.26  # a second in a row since 0.25: the input runs again,
    assert not monitor.held
    assert not monitor.hold_ingest()  # and keeps running for as long,
    now[0] = 2.2
    assert not monitor.hold_ingest()
    now[0] = 2.26
    assert monitor.hold_ingest()  # then keys go first again
    now[0] = 2.3
    monitor.release_ingest()
    assert monitor.held  # a key's hold runs its time
    now[0] = 2.5
    assert not monitor.held
    assert monitor.hold_ingest(until_released=True)  # a short hold leaves no rest
    now[0] = 2.55
    monitor.release_ingest()
    assert not monitor.held  # one taken until released ends then
