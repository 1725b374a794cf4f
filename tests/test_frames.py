"""Binary frames (docs/protocol.md, "Binary frames"): through the real socket, and the frame
reader against any bytes (property-based)."""

from __future__ import annotations

import json
import math
import struct
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_parse import assert_within_rules, edge_lines, nonblank, simple_lines

from tests.sockets import HELLO, binary, connect, declare, frame, lines, read_json, values
from vtmon.engine.monitor import QUEUE_BATCHES
from vtmon.ingest.frames import FrameReader
from vtmon.ingest.parse import parse_block
from vtmon.ingest.server import IngestServer
from vtmon.model import VALUE_MAX, Batch, Kind, SeriesKey
from vtmon.protocol.frames import FORMAT


def stats(s) -> dict:
    """This connection's counters, asked in a lines frame (answered after all before it)."""
    s.sendall(lines(b'{"jsonrpc":"2.0","id":99,"method":"connection.stats"}'))
    return read_json(s)["result"]


def _series(snap, name):
    (row,) = [r for r in snap.series if r.name == name]
    return row


def test_samples_reach_the_sketch_with_their_percentiles(server, monitor):
    rng = np.random.default_rng(7)
    lat = rng.lognormal(3.0, 0.6, 50_000)
    s = binary(server.path)
    s.sendall(declare(7, 1, b"api.request_latency|#component:api-server"))
    # split into frames of different sizes, as a client flushing as it goes would
    for part in np.array_split(lat, 5):
        s.sendall(values(7, part))
    assert stats(s) == {"accepted": 50_000, "rejected": {}}
    row = _series(monitor.tick(), "api.request_latency")
    assert row.component == "api-server"
    w = row.windows["1m"]
    assert w.count == 50_000
    for q, got in ((0.5, w.p50), (0.95, w.p95), (0.99, w.p99)):
        exact = np.quantile(lat, q, method="inverted_cdf")
        assert got == pytest.approx(exact, rel=0.01)
    assert w.max == pytest.approx(lat.max())


def test_counters_and_gauges(server, monitor):
    s = binary(server.path)
    s.sendall(declare(1, 2, b"api.throughput"))
    s.sendall(declare(2, 3, b"api.queue_depth"))
    s.sendall(values(1, [1, 1, 3]) + values(2, [4, 9, 2]) + values(1, [5]))
    assert stats(s)["accepted"] == 7
    snap = monitor.tick()
    assert _series(snap, "api.throughput").windows["1m"].count == 10
    gauge = _series(snap, "api.queue_depth")
    assert gauge.last == 2


def test_gauge_frames_land_as_the_same_values_in_lines_would(server, monitor):
    s = binary(server.path)
    s.sendall(declare(2, 3, b"api.queue_depth"))
    depths = [4.0, 9.0, 2.5, 7.0, 3.0]
    s.sendall(values(2, depths[:3]) + values(2, depths[3:]))
    assert stats(s)["accepted"] == 5
    t = connect(server.path)
    t.sendall(b"".join(b"api.queue_depth_lines:%g|g\n" % d for d in depths))
    monitor.wait_lines(10)
    snap = monitor.tick()
    framed, lined = _series(snap, "api.queue_depth"), _series(snap, "api.queue_depth_lines")
    assert framed.last == lined.last == 3.0
    assert framed.windows["1m"] == lined.windows["1m"]  # count 5, least 2.5, greatest 9


def test_a_batch_dropped_for_a_full_queue_counts_each_value_of_a_gauge_run(monitor):
    for _ in range(QUEUE_BATCHES):  # the engine is not running: its queue fills up
        assert monitor.submit(Batch(), timeout=0)
    b = Batch()
    b.gauges[SeriesKey("api.queue_depth", (), Kind.GAUGE)] = [(False, 1.0), (None, np.ones(5))]
    assert not monitor.submit(b, timeout=0)
    ingest = monitor.handle_rpc({"jsonrpc": "2.0", "id": 1, "method": "ingest"})["result"]
    assert ingest["samples_dropped"] == 6


def test_lines_frames_carry_statsd_json_and_rpc(server, monitor):
    s = binary(server.path)
    s.sendall(lines(b"terminal.command_latency:12|ms\nterminal.command_latency:14|ms"))
    s.sendall(lines(b'{"jsonrpc":"2.0","id":5,"method":"ping"}'))
    assert read_json(s) == {"jsonrpc": "2.0", "id": 5, "result": "pong"}
    assert stats(s) == {"accepted": 2, "rejected": {}}
    row = _series(monitor.tick(), "terminal.command_latency")
    assert row.windows["1m"].count == 2


def test_unusable_frames_are_counted_and_skipped(server, monitor):
    s = binary(server.path)
    s.sendall(declare(1, 1, b"voice.latency"))
    s.sendall(values(9, [1.0, 2.0]))  # never declared
    s.sendall(frame(2, struct.pack("<I", 1) + b"\x00" * 7))  # not 4 + 8n
    s.sendall(frame(9, b"whatever"))  # no such type
    s.sendall(declare(2, 7, b"voice.other"))  # no such kind
    s.sendall(declare(3, 1, b"bad|name"))  # not a series name
    s.sendall(values(1, [1.0, math.nan, math.inf, 4.0]))
    assert stats(s) == {
        "accepted": 2,
        "rejected": {
            "unknown series": 1,
            "bad length": 1,
            "unknown frame": 1,
            "bad series": 2,
            "bad number": 2,
        },
    }
    row = _series(monitor.tick(), "voice.latency")
    assert row.windows["1m"].count == 2
    assert row.windows["1m"].max == pytest.approx(4.0)
    assert monitor.tick().ingest.rejected["bad number"] == 2


def test_values_beyond_1e100_are_bad_numbers_and_no_sum_overflows(server, monitor):
    s = binary(server.path)
    s.sendall(declare(1, 1, b"api.latency") + declare(2, 2, b"api.ops") + declare(3, 3, b"api.q"))
    for sid in (1, 2, 3):  # two of 1e308 made every sum infinite, a gauge run's too
        s.sendall(values(sid, [1e308, 1e308, 1e100, -1e100, 2.0, -1e101]))
    assert stats(s) == {"accepted": 9, "rejected": {"bad number": 9}}
    snap = monitor.tick()
    for name in ("api.latency", "api.ops", "api.q"):
        w = _series(snap, name).windows["1m"]
        shown = [w.count, w.rate, w.mean, w.min, w.max, w.p50, w.p99]
        assert all(v is None or math.isfinite(v) for v in shown), name
    gauge = _series(snap, "api.q")
    assert gauge.last == 2.0
    assert (gauge.windows["1m"].min, gauge.windows["1m"].max) == (-1e100, 1e100)


def test_declared_names_follow_the_line_rules_and_are_bounded(sock_dir, monitor):
    srv = IngestServer(sock_dir / "vtmon.sock", monitor, max_declared_series=2)
    srv.start()
    try:
        s = binary(srv.path)
        s.sendall(declare(1, 1, b"api.request_latency|#component:api"))
        s.sendall(declare(2, 1, b"api." + b"x" * srv.max_line))  # longer than a line may be
        s.sendall(declare(2, 2, b"api.requests"))
        s.sendall(declare(3, 1, b"api.third_latency"))  # a third id on this connection
        s.sendall(declare(1, 1, b"api.renamed_latency"))  # an id declared again: a rename
        s.sendall(values(1, [4.0]) + values(3, [5.0]))
        assert stats(s) == {
            "accepted": 1,
            "rejected": {"bad series": 1, "too many series": 1, "unknown series": 1},
        }
        assert _series(monitor.tick(), "api.renamed_latency").windows["1m"].count == 1
    finally:
        srv.stop()


def test_declarations_count_against_the_memory_all_connections_share(sock_dir, monitor):
    srv = IngestServer(sock_dir / "vtmon.sock", monitor, max_buffered_mb=1)
    srv.start()
    try:
        s = binary(srv.path)
        name = b"api.request_latency_%05d|#component:api-server,endpoint:/v1/chat"
        s.sendall(b"".join(declare(i, 1, name % i) for i in range(1_000)))
        assert stats(s) == {"accepted": 0, "rejected": {}}
        assert 500_000 < srv.buffered < srv.max_buffered  # a thousand declared: still room
        s.sendall(b"".join(declare(i, 1, name % i) for i in range(1_000, 3_000)))
        assert s.recv(1 << 20) == b""  # closed by vtmon past the budget
        assert monitor.connections.closed == {"buffer full": 1}
        assert srv.buffered == 0
    finally:
        srv.stop()


def test_a_broken_header_closes_the_connection(server, monitor):
    s = binary(server.path)
    s.sendall(declare(1, 1, b"voice.latency") + values(1, [3.0]))
    s.sendall(b"XX" + b"\x02\x00" + struct.pack("<I", 8) + b"\x00" * 8)
    assert s.recv(10) == b""  # closed by vtmon
    monitor.wait_lines(1)
    snap = monitor.tick()
    assert snap.ingest.rejected["bad frame"] == 1
    assert _series(snap, "voice.latency").windows["1m"].count == 1


def test_an_unknown_format_leaves_a_line_connection(server, monitor):
    s = connect(server.path)
    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"hello","params":{"format":"msgpack/9"}}\n')
    answer = read_json(s)
    assert answer["error"]["code"] == -32602
    assert "vtmon-binary/1" in answer["error"]["message"]
    s.sendall(b"api.request_latency:12|ms\n")
    monitor.wait_lines(1)
    assert _series(monitor.tick(), "api.request_latency").windows["1m"].count == 1


def test_hello_later_on_a_line_connection_is_refused(server, monitor):
    s = connect(server.path)
    s.sendall(b"api.request_latency:12|ms\n" + json.dumps(HELLO).encode() + b"\n")
    answer = read_json(s)
    assert answer["error"]["code"] == -32600
    assert "first line" in answer["error"]["message"]


def test_hello_split_across_writes(server, monitor):
    s = connect(server.path)
    hello = json.dumps(HELLO).encode() + b"\n"
    s.sendall(hello[:10])
    s.sendall(hello[10:] + declare(1, 1, b"api.request_latency") + values(1, [5.0])[:9])
    assert read_json(s)["result"]["format"] == FORMAT
    s.sendall(values(1, [5.0])[9:])
    assert stats(s)["accepted"] == 1


# -- the frame reader on any input --------------------------------------------------------------


def _feed_all(chunks: list[bytes]) -> tuple[Batch, bool]:
    reader = FrameReader(max_frame=1 << 16, max_line=4096)
    total = Batch()
    ok = True
    for c in chunks:
        b = Batch()
        ok = reader.feed(c, b)
        assert_within_rules(b)
        _merge(total, b)
        if not ok:
            break
    if ok:
        b = Batch()
        reader.close(b)
        _merge(total, b)
    return total, ok


def _merge(into: Batch, b: Batch) -> None:
    into.accepted += b.accepted
    into.rejected.update(b.rejected)
    for k, buf in b.dist.items():
        into.dist.setdefault(k, type(buf)([])).values.extend(list(buf.values))
    for k, inc in b.counts.items():
        into.counts[k] = into.counts.get(k, 0.0) + inc


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6))
def test_any_bytes_are_counted_never_raise(data, cuts):
    batch, ok = _feed_all(_split(data, cuts))
    if not ok:  # the reader gave the connection up: that is one "bad frame", counted
        assert batch.rejected["bad frame"] == 1
    if not data:
        assert ok and batch.accepted == 0 and not batch.rejected
    elif len(data) < 8:  # a header cut short by the close
        assert ok and batch.accepted == 0 and batch.rejected == {"bad frame": 1}
    elif data[:2] != b"VT":  # no frame starts here: refused at its header, nothing taken
        assert not ok
        assert batch.accepted == 0 and batch.rejected == {"bad frame": 1}


_series_names = st.sampled_from([b"a.latency", b"b.latency|#component:x", b"c.throughput"])
_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([VALUE_MAX, -VALUE_MAX, math.nextafter(VALUE_MAX, math.inf), 1e300, 5e-324]),
)
_frame = st.one_of(
    st.tuples(st.just("declare"), st.integers(0, 4), st.sampled_from([1, 2, 3]), _series_names),
    st.tuples(st.just("values"), st.integers(0, 4), st.lists(_value, max_size=20)),
    st.tuples(
        st.just("lines"),
        st.lists(st.one_of(edge_lines(), simple_lines().map(str.encode)), max_size=6),
    ),
    st.tuples(st.just("garbage"), st.integers(0, 255), st.binary(max_size=30)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frame, max_size=25), st.lists(st.integers(0, 5000), max_size=8))
def test_a_valid_stream_reads_the_same_however_it_is_split(frames_, cuts):
    """Every sample is accepted or rejected exactly once, whatever the read boundaries; every
    value within the bound of a declared series is in the batch, the others are bad numbers;
    lines frames count their lines as a line connection does; nothing in any batch is beyond
    the rules (docs/protocol.md, "Numbers")."""
    data = b""
    declared: dict[int, bytes] = {}
    expect_ok = 0
    expect = Counter()
    for f in frames_:
        if f[0] == "declare":
            _, sid, kind, name = f
            data += declare(sid, kind, name)
            declared[sid] = name
        elif f[0] == "values":
            _, sid, vals = f
            data += values(sid, vals)
            if sid not in declared:
                expect["unknown series"] += 1
            else:
                good = sum(1 for v in vals if abs(v) <= VALUE_MAX)
                expect_ok += good
                if len(vals) - good:
                    expect["bad number"] += len(vals) - good
        elif f[0] == "lines":
            text = b"\n".join(f[1])
            data += lines(text)
            as_lines = Batch()
            parse_block(text, as_lines)
            assert as_lines.accepted + sum(as_lines.rejected.values()) == nonblank(text)
            expect_ok += as_lines.accepted
            expect.update(as_lines.rejected)
        else:
            _, ftype, payload = f
            if ftype in (1, 2, 3):
                ftype = 200  # garbage of a known type is tested elsewhere
            data += frame(ftype, payload)
            expect["unknown frame"] += 1
    whole, ok_whole = _feed_all([data])
    split, ok_split = _feed_all(_split(data, cuts))
    assert ok_whole and ok_split
    for b in (whole, split):
        assert b.accepted == expect_ok
        assert b.rejected == expect
    assert {k: sorted(v.values) for k, v in whole.dist.items()} == {
        k: sorted(v.values) for k, v in split.dist.items()
    }
