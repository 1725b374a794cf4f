"""vtmon.client against the real socket: samples arrive, nothing blocks, drops are reported."""

from __future__ import annotations

import pytest

from vtmon.client import Client


def test_record_timer_count_gauge_error_arrive(server, monitor):
    with Client(server.path) as c:
        for v in (1.0, 2.0, 3.0):
            c.record("app.op_latency", v, component="app")
        with c.timer("app.block_latency", component="app"):
            pass
        c.count("app.throughput", 4, component="app")
        c.gauge("memory_heap_used", 1024, component="app")
        c.error(TimeoutError(), component="app")
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


def test_vtmon_away_drops_oldest_then_reports(sock_dir, server, monitor):
    c = Client(sock_dir / "nobody.sock", max_buffer=10, flush_interval=3600)
    for i in range(25):
        c.record("x.latency", float(i))
    assert c.dropped == 15  # the application was never blocked; the oldest went
    assert not c.flush(timeout=0.5)  # nobody listens
    c.socket_path = str(server.path)  # vtmon comes (back) at that path
    assert c.flush()
    c.close()
    monitor.wait_lines(10)
    monitor.wait_rpcs(1)  # the client's report of what it dropped
    snap = monitor.tick()
    (row,) = [s for s in snap.series if s.name == "x.latency"]
    assert row.windows["1m"].count == 10
    assert row.windows["1m"].min == pytest.approx(15, rel=0.01)  # the newest were kept
    assert snap.ingest.client_dropped == 15
