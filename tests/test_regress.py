"""The change detector: steps in p95 and error rates are found, with their size and start, and
steady noise never is.

Each simulated minute draws real lognormal latency samples (seeded) and puts their p95 into a
Snapshot, as the series store's 1-minute window would; ``update`` is called every 5 s like the
Analyzer does. Time is passed in as numbers; nothing sleeps.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from vtmon.analysis.regress import RegressionDetector
from vtmon.model import ErrorStats, Kind, Regression, SeriesStats, Snapshot, WindowStats

T0 = 1_700_000_040.0  # a whole minute (epoch seconds divisible by 60)
SIGMA = 0.5  # lognormal samples; the sd of the log of their p95 is 2.11 SIGMA / sqrt(n):
NOISY = 100  # 100 a minute: the p95 jitters with an sd of 10 %
STEADY = 300  # 300 a minute: an sd of 6 %, +-12 % for 95 % of the minutes


def series(
    name: str, comp: str, p95: float | None, count: float, p50: float | None = None
) -> SeriesStats:
    return SeriesStats(
        name=name,
        tags=(("component", comp),),
        component=comp,
        kind=Kind.DISTRIBUTION,
        windows={"1m": WindowStats(count=count, p50=p50, p95=p95)},
    )


def snap(t: float, stats=(), errors=()) -> Snapshot:
    return Snapshot(
        t=t, host="h", socket="s", started=T0, series=tuple(stats), errors=tuple(errors)
    )


class Sim:
    """Minute m covers [T0 + 60 m, T0 + 60 (m + 1)); its p95 is what update() sees during
    minute m + 1 (the last minute's window), called every 5 s."""

    def __init__(self, seed: int, medians: dict[str, float], per_min: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.medians = dict(medians)
        self.per_min = per_min
        self.det = RegressionDetector(min_change=0.2)
        self.found: list[tuple[int, Regression]] = []  # (minute of the update, regression)
        self.calls = 0

    def minute(self, m: int, errors: tuple[ErrorStats, ...] = ()) -> None:
        stats = []
        for name, median in self.medians.items():
            x = self.rng.lognormal(math.log(median), SIGMA, self.per_min)
            p50, p95 = (float(q) for q in np.quantile(x, (0.5, 0.95)))
            stats.append(series(name, name.split(".")[0], p95, x.size, p50))
        s = snap(T0 + 60 * (m + 1), stats, errors)
        for k in range(12):
            t = T0 + 60 * (m + 1) + 5 * k + 0.5
            self.calls += 1
            for reg in self.det.update(s, t):
                self.found.append((m + 1, reg))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_steady_noise_raises_nothing_in_30_minutes(seed: int) -> None:
    medians = {f"svc{i}.latency": 20.0 * (i + 1) for i in range(10)}
    sim = Sim(seed, medians, NOISY)
    for m in range(30):
        sim.minute(m)
    assert sim.found == []
    assert sim.det.recent() == ()


def test_a_40_percent_step_is_found_within_four_minutes_with_its_size_and_start() -> None:
    for seed in range(5):
        sim = Sim(seed, {"api.request_latency": 50.0, "api.db_query_latency": 8.0}, STEADY)
        for m in range(30):
            if m == 12:
                sim.medians["api.request_latency"] = 70.0  # +40 % from minute 12 on
            sim.minute(m)
        assert len(sim.found) == 1, (seed, sim.found)  # once, and never the quiet series
        at, reg = sim.found[0]
        assert at - 12 <= 3, (seed, at)  # three minutes: the least a step must last
        assert reg.series == "api.request_latency{component=api-server}".replace(
            "api-server", "api"
        )
        assert reg.component == "api" and reg.metric == "p95"
        assert 0.25 <= reg.change <= 0.6, reg
        assert reg.after / reg.before == pytest.approx(1 + reg.change)
        # the step began at minute 12; a noisy minute right before it may be counted in
        assert 11 <= (reg.since - T0) // 60 <= 12, reg
        assert reg.detected == T0 + 60 * at + 0.5
        hhmm = time.strftime("%H:%M", time.localtime(reg.since))
        assert reg.message.startswith(f"api api.request_latency p95 +{round(reg.change * 100)} %")
        assert f"since {hhmm}" in reg.message and " ms -> " in reg.message
        assert sim.det.recent() == (reg,)


def test_a_step_below_min_change_is_not_a_regression() -> None:
    sim = Sim(4, {"api.request_latency": 50.0}, NOISY)
    for m in range(30):
        if m == 10:
            sim.medians["api.request_latency"] = 54.0  # +8 %
        sim.minute(m)
    assert sim.found == []


def test_an_improvement_then_a_return_is_measured_against_the_new_level() -> None:
    sim = Sim(5, {"api.request_latency": 100.0}, STEADY)
    for m in range(40):
        if m == 10:
            sim.medians["api.request_latency"] = 60.0  # faster: nothing to report
        if m == 22:
            sim.medians["api.request_latency"] = 100.0  # back up by +67 %: a regression
        sim.minute(m)
    assert len(sim.found) == 1
    at, reg = sim.found[0]
    assert 22 < at <= 26 and reg.change > 0.4


def test_a_spike_is_not_a_regression_and_leaves_the_detector_ready() -> None:
    # A 90 s incident touches two minute windows; the bottleneck rules report it, not this.
    sim = Sim(6, {"api.request_latency": 50.0}, STEADY)
    for m in range(40):
        sim.medians["api.request_latency"] = 150.0 if m in (12, 13) else 50.0
        if m >= 25:
            sim.medians["api.request_latency"] = 75.0  # a real step afterwards: +50 %
        sim.minute(m)
    assert len(sim.found) == 1, sim.found
    at, reg = sim.found[0]
    assert 25 < at <= 28 and reg.change == pytest.approx(0.5, abs=0.15)
    assert reg.before == pytest.approx(sim.det.recent()[0].before)
    assert (reg.since - T0) // 60 in (24, 25)


def test_sparse_series_are_not_judged() -> None:
    det = RegressionDetector()
    for m in range(30):
        p95 = 50.0 if m < 10 else 500.0
        det.update(snap(T0 + 60 * m, [series("api.latency", "api", p95, 19)]), T0 + 60 * m)
    assert det.recent() == ()


def test_it_acts_once_a_minute() -> None:
    det = RegressionDetector()
    high = snap(T0, [series("api.latency", "api", 50.0, 100)])
    for m in range(10):
        det.update(high, T0 + 60 * m)
    step = snap(T0, [series("api.latency", "api", 100.0, 100)])
    # many calls within one minute are one point, not many: no alarm from repetition
    assert all(det.update(step, T0 + 600 + k) == [] for k in range(59))
    assert det.update(step, T0 + 660) == []
    # the third elevated minute: a step has to last three minutes to be told from a spike
    (reg,) = det.update(step, T0 + 720)
    assert reg.change == pytest.approx(1.0) and reg.since == T0 + 600 - 60
    assert det.update(step, T0 + 721) == []


def test_recent_keeps_the_newest_hundred() -> None:
    det = RegressionDetector()
    names = [f"svc{i:03d}.latency" for i in range(120)]
    for m in range(14):
        p95 = 50.0 if m < 8 else 80.0
        stats = [series(n, n.split(".")[0], p95 * (1 + i / 1000), 100) for i, n in enumerate(names)]
        det.update(snap(T0 + 60 * m, stats), T0 + 60 * m)
    recent = det.recent()
    assert len(recent) == 100
    assert len({r.series for r in recent}) == 100
    assert all(r.change == pytest.approx(0.6, abs=0.01) for r in recent)


# -- error rates -------------------------------------------------------------------------------


def err_sim(seed: int, rate_at, minutes: int, ops: float = 480.0) -> list[tuple[int, Regression]]:
    rng = np.random.default_rng(seed)
    det = RegressionDetector(min_change=0.2)
    found = []
    for m in range(minutes):
        n = int(rng.poisson(ops))
        e = float(rng.binomial(n, rate_at(m)))
        es = ErrorStats("voice-engine", e, float(n), e / n)
        t = T0 + 60 * (m + 1) + 1
        found += [(m + 1, r) for r in det.update(snap(t, errors=(es,)), t)]
    return found


@pytest.mark.parametrize("seed", range(6))
def test_a_steady_error_rate_is_not_a_regression(seed: int) -> None:
    # about 1.4 errors a minute: a rate that is often 0 and sometimes 4 in a minute
    assert err_sim(seed, lambda m: 0.003, 30) == []


def test_an_error_rate_step_is_found_with_its_size() -> None:
    for seed in range(4):
        found = err_sim(seed, lambda m: 0.003 if m < 12 else 0.015, 30)
        assert found, seed
        at, reg = found[0]
        assert at - 12 <= 5, (seed, at)
        assert reg.series == "voice-engine error rate" and reg.metric == "error_rate"
        assert reg.component == "voice-engine"
        assert 0.001 < reg.before < 0.005 and 0.007 < reg.after < 0.025, reg
        assert reg.change > 1.0
        hhmm = time.strftime("%H:%M", time.localtime(reg.since))
        # from a doubling on, the size reads as a factor
        assert reg.message.startswith(f"voice-engine error rate {1 + reg.change:.1f}x since {hhmm}")
        assert reg.message.endswith(f"({100 * reg.before:.2g} % -> {100 * reg.after:.2g} %)")
        assert 6 <= (reg.since - T0) // 60 <= 12


def test_an_error_burst_is_not_a_regression() -> None:
    def rate(m: int) -> float:
        if m in (12, 13):
            return 0.08  # the demo's error burst: 90 s at 8 %
        return 0.003 if m < 25 else 0.015

    found = err_sim(2, rate, 40)
    assert len(found) == 1, found
    at, reg = found[0]
    assert 25 < at <= 33 and (reg.since - T0) // 60 == 25
    assert reg.before < 0.005  # the burst did not become the baseline


def test_errors_from_nothing_are_reported_without_a_percentage() -> None:
    found = err_sim(0, lambda m: 0.0 if m < 10 else 0.02, 20)
    assert found
    reg = found[0][1]
    assert reg.before == 0 and reg.after > 0.01
    assert "error rate up from 0 to " in reg.message


def test_many_series_are_checked_a_twelfth_at_a_time_each_once_a_minute() -> None:
    # 120 steady series and one that doubles at minute 10; update() every 5 s as the Analyzer
    # calls it: each call reads a twelfth of them, each series once a minute, and the step in
    # the one series is still found with its size.
    rng = np.random.default_rng(9)
    det = RegressionDetector()
    names = [f"svc.op{i:03d}.latency" for i in range(121)]
    checked: list[int] = []
    point = det._p95_point  # white box: count the series each call reads

    def counted(*a, **kw):
        checked[-1] += 1
        return point(*a, **kw)

    det._p95_point = counted  # type: ignore[method-assign]
    found = []
    for m in range(16):
        stats = []
        for i, name in enumerate(names):
            level = 100.0 if i == 77 and m >= 10 else 50.0
            p95 = level * float(np.exp(rng.normal(0, 0.03)))
            stats.append(series(name, "svc", p95, 300, p95 / 2))
        s = snap(T0 + 60 * m, stats)
        for k in range(12):
            checked.append(0)
            found += det.update(s, T0 + 60 * m + 5 * k + 0.5)
        if m >= 1:
            assert sum(checked[-12:]) == len(names)  # every series once in the minute
            assert max(checked[-12:]) <= -(-len(names) // 12)  # a twelfth per call
    assert [r.series for r in found] == ["svc.op077.latency{component=svc}"]
    assert found[0].change == pytest.approx(1.0, abs=0.1)
