"""Bottleneck rules, the pending/firing/clearing state machine, and cause ranking, in isolation.

Snapshots are built by hand and the detector is called at evaluation times, as the Analyzer
does; the scenarios through the real engine are in test_scenarios.py.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vtmon.analysis.causes import SignalHistory, ks_distance, rank_causes
from vtmon.analysis.detector import RESOLVED_KEEP, Detector
from vtmon.analysis.rules import wilson_lower
from vtmon.config import Config, DetectorConfig
from vtmon.demo import demo_config
from vtmon.model import (
    SEVERITY_WEIGHT,
    TYPE_WEIGHT,
    DiskUsage,
    ErrorStats,
    Kind,
    Pressure,
    ProcessStats,
    Resources,
    SeriesStats,
    Severity,
    Snapshot,
    WindowStats,
)

MB = 1024 * 1024
T0 = 1_000_000.0


def gauge(component: str, mb: float, name: str = "memory_heap_used") -> SeriesStats:
    return SeriesStats(
        name=name,
        tags=(("component", component),),
        component=component,
        kind=Kind.GAUGE,
        windows={"1m": WindowStats(count=60)},
        last=mb * MB,
    )


def dist(name: str, component: str, p95: float, count: float = 500) -> SeriesStats:
    return SeriesStats(
        name=name,
        tags=(("component", component),),
        component=component,
        kind=Kind.DISTRIBUTION,
        windows={"1m": WindowStats(count=count, p95=p95)},
    )


def snap(t: float, series=(), errors=(), resources: Resources | None = None) -> Snapshot:
    return Snapshot(
        t=t,
        host="h",
        socket="",
        started=T0,
        series=tuple(series),
        errors=tuple(errors),
        resources=resources or Resources(t=t),
    )


class Driver:
    """Calls the detector every ``interval_s`` with whatever the script says at that time."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or demo_config()
        self.det = Detector(self.config)
        self.signals = SignalHistory()
        self.t = T0
        self.fired: list = []
        self.resolved: list = []

    def run(self, seconds: float, make, peaks=None, resources=None) -> None:
        step = self.config.detector.interval_s
        end = self.t + seconds
        while self.t < end:
            self.t += step
            s = make(self.t)
            if resources is not None:
                r = resources(self.t)
                self.signals.record(r)
                s = snap(self.t, s.series, s.errors, r)
            f, r_ = self.det.evaluate(s, self.signals, self.t, (peaks or {}))
            self.fired += [(self.t, b) for b in f]
            self.resolved += [(self.t, b) for b in r_]

    def active_ids(self) -> list[str]:
        return [b.id for b in self.det.active()]


# ---------------------------------------------------------------------------------------------
# the state machine, on the memory rule (terminal-processor: 50 MB budget, high above 40 MB)


def mem(mb: float):
    return lambda t: snap(t, [gauge("terminal-processor", mb)])


def test_fires_only_after_the_pending_period():
    d = Driver()
    d.run(15, mem(42))  # 84 %: above 80 %, seen at 3 evaluations: pending for 10 s
    assert d.fired == [] and d.det.active() == ()
    d.run(5, mem(42))  # held 15 s: fires
    assert len(d.fired) == 1
    t, b = d.fired[0]
    assert (b.id, b.type, b.component, b.severity) == (
        "memory:terminal-processor",
        "memory",
        "terminal-processor",
        Severity.HIGH,
    )
    assert b.started == T0 + 5 and t - b.started == 15
    assert b.impact == pytest.approx(SEVERITY_WEIGHT[Severity.HIGH] * TYPE_WEIGHT["memory"])
    assert "42.0 MB of its 50 MB budget" in b.description
    assert "garbage collection in terminal-processor" in b.suggested_action
    assert "42 MB of 50 MB" in b.suggested_action
    assert 0 < b.confidence <= 1


def test_a_dip_while_pending_starts_over():
    d = Driver()
    values = iter([42, 42, 39, 42, 42, 39, 42, 42, 42, 42])  # never 3 evaluations in a row above
    d.run(30, lambda t: mem(next(values))(t))
    assert d.fired == []
    d.run(20, mem(42))
    assert len(d.fired) == 1


def test_immediate_critical_skips_pending():
    d = Driver()
    d.run(5, mem(48))  # 96 %
    assert len(d.fired) == 1 and d.fired[0][1].severity is Severity.CRITICAL


def test_hysteresis_keeps_it_active_between_clear_and_fire_thresholds():
    d = Driver()
    d.run(20, mem(42))
    assert d.active_ids() == ["memory:terminal-processor"]
    d.run(120, mem(37))  # 74 %: below 80 % but above 72 % (clear_ratio 0.9): stays
    assert d.active_ids() == ["memory:terminal-processor"] and d.resolved == []
    d.run(15, mem(30))  # below 72 % at 3 evaluations, 10 s apart: still clearing
    assert d.resolved == []
    d.run(5, mem(30))  # held 15 s below: resolved
    assert d.active_ids() == []
    ((t, b),) = d.resolved
    assert b.resolved == t and d.det.resolved() == (b,)
    assert len(d.fired) == 1


def test_clearing_restarts_when_the_value_comes_back():
    d = Driver()
    d.run(20, mem(42))
    d.run(10, mem(30))
    d.run(5, mem(38))  # above the clearing level again: the clearing timer restarts
    d.run(15, mem(30))
    assert d.resolved == []
    d.run(5, mem(30))
    assert len(d.resolved) == 1


def test_severity_escalates_when_critical_holds_and_falls_back_with_hysteresis():
    d = Driver()
    d.run(20, mem(42))
    assert d.det.active()[0].severity is Severity.HIGH
    d.run(15, mem(46))  # 92 % > 90 %, held 10 s
    assert d.det.active()[0].severity is Severity.HIGH
    d.run(5, mem(46))  # critical held 15 s
    assert d.det.active()[0].severity is Severity.CRITICAL
    assert [b.id for b in d.det.escalated] == ["memory:terminal-processor"]
    crit = d.det.active()[0]
    assert crit.impact == pytest.approx(0.9 * 1.0)
    d.run(30, mem(42))  # 84 % > 81 % (critical x clear ratio): stays critical
    assert d.det.active()[0].severity is Severity.CRITICAL
    d.run(15, mem(40.2))  # 80.4 % < 81 %, held 10 s
    assert d.det.active()[0].severity is Severity.CRITICAL
    d.run(5, mem(40.2))  # held 15 s: back to high, still active
    assert d.det.active()[0].severity is Severity.HIGH
    assert len(d.fired) == 1


def test_confidence_grows_with_distance_and_time():
    d = Driver()
    d.run(20, mem(40.5))
    low = d.det.active()[0].confidence
    d.run(60, mem(44))
    assert d.det.active()[0].confidence > low


def test_missing_data_counts_as_calm():
    d = Driver()
    d.run(20, mem(42))
    d.run(20, lambda t: snap(t))  # the gauge is gone
    assert d.det.active() == () and len(d.resolved) == 1
    # the resolved one keeps the last description it had with data
    assert "42.0 MB" in d.resolved[0][1].description


def test_rss_gauge_and_dotted_names_and_per_component_limits():
    cfg = demo_config()
    d = Driver(cfg)
    d.run(
        20,
        lambda t: snap(
            t,
            [
                gauge("voice-engine", 170, "voice.memory_rss"),  # 85 % of 200
                gauge("api-server", 70),  # 70 % of 100: fine
                gauge("other", 420),  # 82 % of the 512 default
            ],
        ),
    )
    ids = sorted(b.id for _, b in d.fired)
    assert ids == ["memory:other", "memory:voice-engine"]
    ve = next(b for _, b in d.fired if b.component == "voice-engine")
    assert "resident memory" in ve.description and "voice.memory_rss" not in ve.id


def test_resolved_history_is_bounded_and_newest_first():
    d = Driver(replace(demo_config(), detector=DetectorConfig(for_s=5, clear_for_s=5)))
    for i in range(2 * (RESOLVED_KEEP + 5)):
        d.run(10, mem(48 if i % 2 == 0 else 20))
    hist = d.det.resolved()
    assert len(hist) == RESOLVED_KEEP
    assert all(a.resolved >= b.resolved for a, b in zip(hist, hist[1:], strict=False))


# ---------------------------------------------------------------------------------------------
# the other rules


def test_cpu_rule_averages_the_last_five_readings():
    d = Driver()
    readings = iter([50, 100] * 100)  # mean of 5 alternates 70 / 80

    def res(t):
        return Resources(t=t, cpu_percent=float(next(readings)))

    # one reading per evaluation here: mean of the last 5 is 70 or 80, never 75+ for long
    d.run(60, lambda t: snap(t), resources=res)
    assert d.fired == []
    d.run(20, lambda t: snap(t), resources=lambda t: Resources(t=t, cpu_percent=95.0))
    ((_, b),) = d.fired
    assert (b.id, b.type, b.component) == ("cpu:system", "cpu", "system")
    assert b.evidence[0].value > 75.0
    d.run(20, lambda t: snap(t), resources=lambda t: Resources(t=t, cpu_percent=95.0))
    assert d.det.active()[0].severity is Severity.CRITICAL


def test_watched_process_cpu_is_a_share_of_the_cores_it_can_use():
    def res(cpu: float, threads: int):
        return lambda t: Resources(
            t=t,
            cpu_percent=20.0,
            cpu_count=16,
            process=ProcessStats(4242, "vt-app", cpu_percent=cpu, threads=threads),
        )

    d = Driver()
    d.run(60, lambda t: snap(t), resources=res(400.0, 16))  # 4 of 16 cores: 25 %
    assert d.fired == []
    d.run(40, lambda t: snap(t), resources=res(99.0, 1))  # its one core, pinned
    ((_, b),) = d.fired
    assert (b.id, b.type, b.component) == ("cpu:pid-4242", "cpu", "vt-app")
    now = d.det.active()[0]
    assert now.severity is Severity.CRITICAL
    assert "vt-app (pid 4242) used 99 % of its one core" in now.description
    d.run(20, lambda t: snap(t), resources=lambda t: Resources(t=t, cpu_percent=20.0))
    assert [x.id for _, x in d.resolved] == ["cpu:pid-4242"]  # not watched any more: clears


def test_latency_names_the_worst_series_and_escalates():
    d = Driver()

    def make(p95_req: float, p95_db: float):
        return lambda t: snap(
            t,
            [
                dist("api.request_latency", "api-server", p95_req),
                dist("api.db_query_latency", "api-server", p95_db),
                dist("voice.transcribe_latency", "voice-engine", 250),  # target 300: fine
            ],
        )

    d.run(20, make(150, 260))  # db query 2.6x the 100 ms target
    ((_, b),) = d.fired
    assert (b.id, b.type, b.severity) == ("latency:api-server", "latency", Severity.HIGH)
    assert "api.db_query_latency" in b.evidence[0].name and b.evidence[0].value == 260
    assert "2.6x its 100 ms target" in b.description
    d.run(20, make(150, 600))
    assert d.det.active()[0].severity is Severity.CRITICAL


def test_latency_needs_enough_samples():
    d = Driver()
    d.run(60, lambda t: snap(t, [dist("api.request_latency", "api-server", 900, count=5)]))
    assert d.fired == []


def test_one_sample_above_ten_times_target_is_an_immediate_critical():
    d = Driver()
    ok = lambda t: snap(t, [dist("api.request_latency", "api-server", 80)])  # noqa: E731
    d.run(5, ok, peaks={"api-server": 1500.0})
    ((_, b),) = d.fired
    assert b.severity is Severity.CRITICAL and b.id == "latency:api-server"
    assert any(e.name == "largest sample" and e.value == 1500 for e in b.evidence)
    d.run(20, ok)  # p95 fine, no more outliers: it clears
    assert len(d.resolved) == 1


def test_a_critical_kept_by_hysteresis_still_says_why_it_is_critical():
    # One 1.5 s sample made it critical; p95 then sits at 3x target (high, not critical).
    # Critical stays until calm, and what made it critical stays in the text and evidence.
    d = Driver()
    d.run(
        5,
        lambda t: snap(t, [dist("api.request_latency", "api-server", 300)]),
        {"api-server": 1500.0},
    )
    d.run(5, lambda t: snap(t, [dist("api.request_latency", "api-server", 300)]))
    (b,) = d.det.active()
    assert b.severity is Severity.CRITICAL
    assert b.description.startswith("api-server p95 latency is 300 ms")
    assert "Still critical after:" in b.description and "sample took 1500 ms" in b.description
    assert any(e.name == "largest sample" and e.value == 1500 for e in b.evidence)


def err(component: str, errors: float, ops: float) -> ErrorStats:
    return ErrorStats(
        component, errors, ops, errors / ops if ops else None, {"timeout": errors} if errors else {}
    )


def test_error_rate_rule_with_minimum_operations():
    d = Driver()
    d.run(60, lambda t: snap(t, errors=[err("api-server", 1, 3)]))  # 33 % of 3 operations
    assert d.fired == []
    d.run(20, lambda t: snap(t, errors=[err("voice-engine", 150, 1900)]))  # 7.9 % vs 0.5 %
    ((_, b),) = d.fired
    assert (b.id, b.type, b.severity) == ("errors:voice-engine", "errors", Severity.CRITICAL)
    assert "7.9 % of 1900 operations" in b.description and "timeout" in b.description


def test_error_rate_needs_to_be_above_the_limit_with_confidence():
    # terminal-processor: limit 0.1 %, high above 0.2 %. 3 errors in 1,000 look like 0.3 %,
    # but that many happen by chance at 0.1 %; 30 in 10,000 do not.
    assert wilson_lower(3, 1000) < 0.002 < wilson_lower(30, 10_000)
    d = Driver()
    d.run(60, lambda t: snap(t, errors=[err("terminal-processor", 3, 1000)]))
    assert d.fired == []
    d.run(20, lambda t: snap(t, errors=[err("terminal-processor", 30, 10_000)]))
    assert [b.id for _, b in d.fired] == ["errors:terminal-processor"]


def test_saturation_rules():
    def res(t):
        return Resources(
            t=t,
            load=(1.0, 1.0, 1.0),
            cpu_count=4,
            pressure=(
                Pressure("cpu", 55.0, 40.0, 20.0),
                Pressure("memory", 1.0, 1.0, 1.0, 0.0, 0.0, 0.0),
                Pressure("io", 3.0, 3.0, 3.0, 1.0, 1.0, 1.0),
            ),
            swap_in_rate=3 * MB,
            swap_out_rate=0.0,
            iowait_percent=25.0,
            disks=(
                DiskUsage("/", 100 * MB, 50 * MB, 50.0),
                DiskUsage("/data", 100 * MB, 85 * MB, 85.0),
            ),
        )

    d = Driver()
    d.run(20, lambda t: snap(t), resources=res)
    got = {b.id: b for _, b in d.fired}
    assert set(got) == {
        "cpu_saturation:system",
        "memory_pressure:system",
        "io_pressure:system",
        "disk:/data",
    }
    assert got["cpu_saturation:system"].severity is Severity.CRITICAL  # PSI 55 % > 50 %
    assert got["memory_pressure:system"].type == "memory"
    assert "3.0 MB/s" in got["memory_pressure:system"].description
    assert got["io_pressure:system"].type == "io"
    disk = got["disk:/data"]
    assert (disk.type, disk.component, disk.severity) == ("io", "system", Severity.HIGH)
    assert "/data is 85 % full" in disk.description and "15.0 MB" in disk.suggested_action
    # most impact first: critical cpu (.9 x .9), high memory (.7 x 1), high io (.7 x .6)
    assert [b.id for b in d.det.active()][:2] == ["cpu_saturation:system", "memory_pressure:system"]


def test_latency_bottleneck_carries_the_cause():
    d = Driver()
    rng = np.random.default_rng(1)

    def res(t):
        psi = 60.0 if t > T0 + 400 else 3.0
        return Resources(
            t=t,
            cpu_percent=30 + rng.normal(0, 3),
            pressure=(Pressure("cpu", psi + rng.normal(0, 1), 0, 0),),
            mem_percent=50 + rng.normal(0, 0.2),
        )

    calm = lambda t: snap(t, [dist("api.request_latency", "api-server", 80)])  # noqa: E731
    d.config = replace(
        demo_config(), detector=DetectorConfig(interval_s=1.0)
    )  # a reading every second
    d.det = Detector(d.config)
    d.run(410, calm, resources=res)
    d.run(30, lambda t: snap(t, [dist("api.request_latency", "api-server", 320)]), resources=res)
    lat = next(b for _, b in d.fired if b.rule == "latency")
    assert lat.causes and lat.causes[0].signal == "psi_cpu_some"
    assert lat.cause_text.startswith("likely cause: CPU saturation (PSI cpu some) 3")
    assert "CPU saturation" in lat.suggested_action


# ---------------------------------------------------------------------------------------------
# causes


def _ks_brute(a: np.ndarray, b: np.ndarray) -> float:
    pts = np.concatenate((a, b))
    return max(abs((a <= x).mean() - (b <= x).mean()) for x in pts)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 20), min_size=1, max_size=40),
    st.lists(st.integers(0, 20), min_size=1, max_size=40),
)
def test_ks_distance_matches_the_definition(a, b):
    a_ = np.array(a, dtype=float)
    b_ = np.array(b, dtype=float)
    assert ks_distance(a_, b_) == pytest.approx(_ks_brute(a_, b_))


def test_ks_distance_bounds():
    x = np.arange(50.0)
    assert ks_distance(x, x) == 0.0
    assert ks_distance(x, x + 100) == 1.0


def test_signal_history_windows_last_and_bounds():
    h = SignalHistory(max_age_s=100, min_interval_s=1.0)
    for i in range(500):
        h.record(Resources(t=float(i), cpu_percent=float(i), mem_percent=None))
    assert "mem_percent" not in h.names()
    assert h.window("cpu", 450, 455).tolist() == [450, 451, 452, 453, 454, 455]
    assert h.window("cpu", 0, 499).min() >= 399  # older than max_age_s is gone
    assert h.last("cpu", 3).tolist() == [497, 498, 499]
    assert h._rings["cpu"].t.size <= 102  # bounded: capacity, not run length
    h.record(Resources(t=10.0, cpu_percent=1.0))  # the clock went back: start over
    assert h.last("cpu", 5).tolist() == [1.0]


def test_signal_history_derives_signals():
    h = SignalHistory()
    h.record(
        Resources(
            t=1.0,
            load=(6.0, 1.0, 1.0),
            cpu_count=4,
            swap_in_rate=MB,
            swap_out_rate=MB,
            pressure=(Pressure("cpu", 5, 0, 0, 0, 0, 0), Pressure("io", 7, 0, 0, 2, 0, 0)),
        )
    )
    assert h.last("load_per_core", 1).tolist() == [1.5]
    assert h.last("swap_activity", 1).tolist() == [2.0]
    assert h.last("psi_io_full", 1).tolist() == [2.0]
    assert h.last("psi_cpu_full", 1).size == 0


def _history(fn, seconds: int = 600) -> SignalHistory:
    h = SignalHistory()
    for i in range(seconds):
        h.record(fn(float(i)))
    return h


def test_rank_causes_puts_the_signal_that_rose_first():
    rng = np.random.default_rng(3)

    def res(t):
        hot = t >= 450
        return Resources(
            t=t,
            cpu_percent=35 + rng.normal(0, 4) + (8 if hot else 0),  # rose, but less than its floor
            iowait_percent=1 + rng.normal(0, 0.3) + (12 if hot else 0),
            pressure=(
                Pressure("cpu", 2 + rng.normal(0, 0.5), 0, 0),
                Pressure("io", 3 + rng.normal(0, 1) + (40 if hot else 0), 0, 0, 1, 0, 0),
            ),
            net_rx_rate=1e5 + rng.normal(0, 1e4),
        )

    h = _history(res)
    causes = rank_causes(h, incident_start=465, now=599)
    assert [c.signal for c in causes][:2] == ["psi_io_some", "iowait"]
    assert all(c.signal not in ("cpu", "psi_cpu_some", "net_rx") for c in causes)
    top = causes[0]
    assert top.score == 1.0 and top.before < 5 and top.after > 40
    assert top.label == "IO pressure (PSI io some)"


def test_rank_causes_ignores_noise_and_falls():
    rng = np.random.default_rng(4)

    def res(t):
        return Resources(
            t=t,
            cpu_percent=0.1 + abs(rng.normal(0, 0.05)) + (0.5 if t > 450 else 0),  # tiny rise
            mem_percent=80.0 - (30 if t > 450 else 0),  # a fall is no cause
        )

    assert rank_causes(_history(res), incident_start=465, now=599) == ()


def test_rank_causes_needs_history():
    h = _history(lambda t: Resources(t=t, cpu_percent=99.0 if t > 5 else 1.0), seconds=20)
    assert rank_causes(h, incident_start=18, now=19) == ()
