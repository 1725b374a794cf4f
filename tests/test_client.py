"""vtmon.client against the real socket: samples arrive (in binary frames, every one counted in
the sketches), measurements carry their context, nothing blocks, drops are reported."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vtmon.client import Client
from vtmon.tui.events import events_text


def _row(snap, name, **tags):
    want = tuple(sorted(tags.items()))
    rows = [s for s in snap.series if s.name == name and (not tags or s.tags == want)]
    assert len(rows) == 1, [(s.name, s.tags) for s in snap.series]
    return rows[0]


def test_record_timer_count_gauge_error_arrive(server, monitor):
    with Client(server.path) as c:
        for v in (1.0, 2.0, 3.0):
            c.record("app.op_latency", v, component="app")
        with c.timer("app.block_latency", component="app"):
            pass
        c.count("app.throughput", 4, component="app")
        c.gauge("memory_heap_used", 1024, component="app")
        c.error(TimeoutError(), component="app")
        assert c.flush()
        assert c.binary  # this vtmon speaks binary frames
    monitor.wait_lines(7)
    snap = monitor.tick()
    rows = {s.name: s for s in snap.series}
    assert rows["app.op_latency"].windows["1m"].count == 3
    assert rows["app.op_latency"].windows["1m"].p50 == pytest.approx(2.0, rel=0.01)
    assert rows["app.block_latency"].windows["1m"].count == 1
    assert rows["memory_heap_used"].last == 1024
    (err,) = snap.errors
    assert err.by_type == {"TimeoutError": 1}
    assert err.operations == 4


def test_every_sample_reaches_the_sketches(server, monitor):
    rng = np.random.default_rng(3)
    lat = rng.lognormal(3.0, 0.7, 120_000)
    levels = [5.0, -3.0, 12.5, 7.0]
    with Client(server.path) as c:
        for i, v in enumerate(lat.tolist()):
            c.record("api.request_latency", v)  # the hot path: no tags
            if i % 3 == 0:
                c.record("voice.transcribe_latency", v * 2, component="voice-engine")
        for _ in range(2500):
            c.count("api.throughput")
        c.count("api.bytes", 0.5, component="api")
        c.count("api.bytes", 2, component="api")
        for g in levels:
            c.gauge("api.queue_depth", g)
        assert c.flush()
        assert (c.sent, c.dropped, c.invalid) == (120_000 + 40_000 + 2500 + 2 + 4, 0, 0)
    monitor.wait_lines(c.sent)
    snap = monitor.tick()
    assert snap.ingest.rejected == {}
    api = _row(snap, "api.request_latency").windows["1m"]
    assert api.count == 120_000
    assert api.p99 == pytest.approx(float(np.quantile(lat, 0.99)), rel=0.02)
    assert api.max == pytest.approx(lat.max(), rel=0.01)
    voice = _row(snap, "voice.transcribe_latency")
    assert voice.component == "voice-engine"
    assert voice.windows["1m"].count == 40_000
    assert _row(snap, "api.throughput").windows["1m"].count == 2500
    assert _row(snap, "api.bytes").windows["1m"].count == 2.5
    depth = _row(snap, "api.queue_depth")
    assert depth.last == 7.0  # the last value set, in order
    assert (depth.windows["1m"].min, depth.windows["1m"].max) == (-3.0, 12.5)


def test_tags_in_any_order_are_one_series(server, monitor):
    with Client(server.path) as c:
        c.record("api.op_latency", 1.0, component="api", region="eu")
        c.record("api.op_latency", 2.0, region="eu", component="api")
        c.record("api.op_latency", 3.0, region="us", component="api")
        c.count("api.throughput", component="api", region="eu")
    monitor.wait_lines(4)
    snap = monitor.tick()
    eu = _row(snap, "api.op_latency", component="api", region="eu")
    assert eu.windows["1m"].count == 2
    assert _row(snap, "api.op_latency", component="api", region="us").windows["1m"].count == 1


def test_timer_nests_and_records_when_the_block_raises(server, monitor):
    with Client(server.path) as c:
        with c.timer("app.outer_latency"), c.timer("app.outer_latency"):  # the same, nested
            pass
        with pytest.raises(KeyError), c.timer("app.failing_latency"):
            raise KeyError("x")
        reused = c.timer("app.reused_latency")
        with reused:
            pass
        with reused:  # one timer times one block: a second records nothing
            pass
        assert c.flush()
        assert c.invalid == 1
    monitor.wait_lines(4)
    snap = monitor.tick()
    outer = _row(snap, "app.outer_latency").windows["1m"]
    assert outer.count == 2 and outer.min <= outer.max
    assert _row(snap, "app.failing_latency").windows["1m"].count == 1
    assert _row(snap, "app.reused_latency").windows["1m"].count == 1


def test_measurement_carries_its_context(server, monitor):
    with Client(server.path) as c:
        m = c.start_measurement(
            "request_latency", component="api-server", operation="chat", user="u1",
            session="s1", request="r1", endpoint="/v1/chat",
        )  # fmt: skip
        ms = c.end_measurement(m)
        assert ms >= 0 and m.value == ms
        assert m.context() == {"component": "api-server", "userId": "u1", "sessionId": "s1",
                               "requestId": "r1", "operation": "chat"}  # fmt: skip
        failed = c.start_measurement(
            "request_latency", component="api-server", operation="upload", user="u2",
            request="r2", endpoint="/v1/chat",
        )  # fmt: skip
        c.end_measurement(failed, error=ConnectionResetError())
        with pytest.raises(ValueError, match="already ended"):
            c.end_measurement(failed)
    monitor.wait_lines(3)
    snap = monitor.tick()
    # vtmon keeps the component and the tags; user, session, request and operation arrive but
    # are not kept: both requests are one series of api-server.
    row = _row(snap, "request_latency")
    assert row.component == "api-server"
    assert dict(row.tags) == {"component": "api-server", "endpoint": "/v1/chat"}
    assert row.windows["1m"].count == 2
    assert row.windows["1m"].max == pytest.approx(max(ms, failed.value), rel=0.01)
    (err,) = snap.errors
    assert err.component == "api-server" and err.by_type == {"ConnectionResetError": 1}


def test_bad_names_and_values_are_counted_not_sent(server, monitor):
    with Client(server.path) as c:
        c.record("ok.op_latency", 1.0)
        c.record("bad|name", 1.0)
        c.record("ok.op_latency", float("nan"))
        c.record("ok.op_latency", "12")  # type: ignore[arg-type]
        c.record(["no", "name"], 1.0)  # type: ignore[arg-type]
        c.gauge("ok.level", float("inf"))
        assert c.flush()
        assert (c.sent, c.invalid) == (1, 5)
    monitor.wait_lines(1)
    snap = monitor.tick()
    assert snap.ingest.rejected == {}  # vtmon never saw them
    assert _row(snap, "ok.op_latency").windows["1m"].count == 1


def test_threads_record_at_once_and_nothing_is_lost(server, monitor):
    per_thread = 40_000
    c = Client(server.path)
    start = threading.Barrier(4)

    def work(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            c.record("mt.op_latency", float(i % 100 + 1))
            if i % 4 == 0:
                c.count("mt.throughput")
                with c.timer("mt.timer_latency", thread=str(t)):
                    pass

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.close()
    assert c.dropped == 0
    total = 4 * per_thread + 2 * 4 * per_thread // 4
    assert c.sent == total
    monitor.wait_lines(total)
    snap = monitor.tick()
    assert _row(snap, "mt.op_latency").windows["1m"].count == 4 * per_thread
    assert _row(snap, "mt.throughput").windows["1m"].count == per_thread
    timers = [s for s in snap.series if s.name == "mt.timer_latency"]
    assert sorted(r.windows["1m"].count for r in timers) == [per_thread // 4] * 4


def test_vtmon_away_drops_oldest_then_reports(sock_dir, server, monitor):
    c = Client(sock_dir / "nobody.sock", max_buffer=10, flush_interval=3600)
    for i in range(25):
        c.record("x.latency", float(i))
    assert c.dropped == 15  # the application was never blocked; the oldest went
    assert not c.flush(timeout=0.5)  # nobody listens
    c.socket_path = str(server.path)  # vtmon comes (back) at that path
    assert c.flush()
    c.close()
    assert c.reported == 15
    monitor.wait_lines(10)
    monitor.wait_rpcs(1)  # the client's report of what it dropped
    snap = monitor.tick()
    (row,) = [s for s in snap.series if s.name == "x.latency"]
    assert row.windows["1m"].count == 10
    assert row.windows["1m"].min == pytest.approx(15, rel=0.01)  # the newest were kept
    assert snap.ingest.client_dropped == 15
    # ... and the console says so, in the Errors & events panel.
    assert "15 by clients while away" in str(events_text(snap, "1m"))
