"""The demo workload: everything it sends is accepted, and its incidents are visible."""

from __future__ import annotations

import threading

from vtmon.clock import ManualClock
from vtmon.demo import INCIDENT_PERIOD_S, DemoWorkload, incident_at
from vtmon.demo import run as run_demo
from vtmon.engine.monitor import Monitor
from vtmon.ingest.parse import parse_block
from vtmon.model import Batch


def _feed(monitor: Monitor, clock: ManualClock, workload: DemoWorkload, t0: float, secs: int):
    for i in range(secs):
        batch = Batch()
        parse_block(("\n".join(workload.lines(t0 + i, 1.0)) + "\n").encode(), batch)
        assert not batch.rejected, batch.rejected
        monitor.submit(batch)
        monitor.drain()
        clock.advance(1)
    return monitor.tick()


def _p95(snap, name):
    (row,) = [s for s in snap.series if s.name == name]
    return row.windows["1m"].p95


def test_three_components_near_their_targets():
    clock = ManualClock()
    m = Monitor(clock=clock)
    snap = _feed(m, clock, DemoWorkload(1), t0=0, secs=50)  # before the first incident
    comps = {s.component for s in snap.series}
    assert {"voice-engine", "terminal-processor", "api-server"} <= comps
    # Healthy: p95 below each target, p50 well above zero.
    assert _p95(snap, "voice.transcribe_latency") < 300
    assert _p95(snap, "terminal.command_latency") < 50
    assert _p95(snap, "api.request_latency") < 100
    errs = {e.component: e for e in snap.errors}
    assert errs["api-server"].operations > 1000
    mem = [s for s in snap.series if s.name == "memory_heap_used"]
    assert len(mem) == 3


def test_incidents_rotate_every_period():
    kinds = [incident_at(k * INCIDENT_PERIOD_S + 100)[0] for k in range(3)]
    assert kinds == ["latency spike", "error burst", "memory growth"]
    assert incident_at(10) is None


def test_latency_spike_raises_api_p95_past_target():
    clock = ManualClock()
    m = Monitor(clock=clock)
    snap = _feed(m, clock, DemoWorkload(2), t0=90, secs=30)  # mid-spike
    assert _p95(snap, "api.request_latency") > 150


def test_demo_sends_through_the_real_socket(server, monitor):
    stop = threading.Event()
    t = threading.Thread(target=run_demo, args=(str(server.path), stop, 0.01))
    t.start()
    try:
        monitor.wait_lines(200)
    finally:
        stop.set()
        t.join(10)
    snap = monitor.tick()
    assert snap.ingest.rejected == {}
    assert {s.component for s in snap.series} >= {"voice-engine", "api-server"}
