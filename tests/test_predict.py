"""Forecasts: a climb toward a limit gives the right time to reach it, flat data gives none.

Snapshots are built from the model dataclasses; time is passed in as numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from vtmon.analysis.predict import Forecaster
from vtmon.demo import demo_config
from vtmon.model import (
    DiskUsage,
    Kind,
    Prediction,
    Resources,
    SeriesStats,
    Snapshot,
    WindowStats,
)

T0 = 1_700_000_000.0
MB = 1024 * 1024


def mem(comp: str, mb: float, name: str = "memory_heap_used") -> SeriesStats:
    return SeriesStats(
        name=name,
        tags=(("component", comp),),
        component=comp,
        kind=Kind.GAUGE,
        windows={},
        last=mb * MB,
    )


def lat(comp: str, p95: float, count: float = 200, name: str = "") -> SeriesStats:
    return SeriesStats(
        name=name or f"{comp}.latency",
        tags=(),
        component=comp,
        kind=Kind.DISTRIBUTION,
        windows={"1m": WindowStats(count=count, p95=p95)},
    )


def snap(t: float, series=(), disks=()) -> Snapshot:
    return Snapshot(
        t=t,
        host="h",
        socket="s",
        started=T0,
        series=tuple(series),
        resources=Resources(t=t, disks=tuple(disks)),
    )


def feed(f: Forecaster, seconds: float, make, every: float = 5.0, start: float = T0) -> float:
    """Call update() every ``every`` seconds for ``seconds``; returns the last time."""
    t = start
    for i in range(int(seconds / every) + 1):
        t = start + i * every
        f.update(snap(t, *make(t - start)), t)
    return t


def by(preds: tuple[Prediction, ...], component: str, metric: str) -> Prediction:
    hits = [p for p in preds if p.component == component and p.metric == metric]
    assert len(hits) == 1, preds
    return hits[0]


def test_a_linear_memory_climb_gives_the_time_to_the_limit() -> None:
    rng = np.random.default_rng(1)
    f = Forecaster(demo_config())

    # voice-engine (200 MB budget) grows 6 MB a minute from 120 MB, with +-1 MB of noise
    def make(dt: float):
        return ([mem("voice-engine", 120 + 6 * dt / 60 + rng.uniform(-1, 1))],)

    now = feed(f, 300, make)  # five minutes: at ~150 MB, 50 MB to go, ~8.3 min
    p = by(f.predictions(now), "voice-engine", "memory")
    assert p.unit == "MB" and p.limit == 200 and p.horizon_s == 900
    assert p.eta_s == pytest.approx(50 / 6 * 60, rel=0.1)
    assert p.current == pytest.approx(150, abs=1.5)
    assert p.forecast == pytest.approx(150 + 6 * 15, abs=5)  # the line, 15 minutes on
    assert p.confidence > 0.6
    assert (
        p.message == f"voice-engine memory reaches its 200 MB limit in ~{round(p.eta_s / 60)} min"
    )
    assert p.message.endswith("in ~8 min")


def test_flat_data_predicts_no_limit() -> None:
    rng = np.random.default_rng(2)
    f = Forecaster(demo_config())

    def make(dt: float):
        return (
            [
                mem("api-server", 60 + rng.uniform(-2, 2)),
                lat("api-server", 45 * rng.uniform(0.9, 1.1)),
            ],
        )

    now = feed(f, 600, make)
    preds = f.predictions(now)
    m = by(preds, "api-server", "memory")
    assert m.eta_s is None and m.limit == 100
    assert m.forecast == pytest.approx(60, abs=1.5)
    assert m.message.startswith("api-server memory steady at 6")
    assert m.confidence > 0.8  # a quiet, flat series is a confident "steady"
    p = by(preds, "api-server", "p95")
    assert p.eta_s is None and p.limit == 500  # 5x the 100 ms target
    assert p.message.startswith("api-server p95 steady at 4") and p.message.endswith(" ms")


def test_no_prediction_before_two_minutes_of_points() -> None:
    f = Forecaster(demo_config())
    now = feed(f, 100, lambda dt: ([mem("voice-engine", 120 + dt)],))
    assert f.predictions(now) == ()
    now = feed(f, 30, lambda dt: ([mem("voice-engine", 220 + dt)],), start=now + 5)
    assert f.predictions(now) != ()


def test_points_are_kept_one_per_ten_seconds() -> None:
    # 3 minutes of updates every second is 19 points, not 181: cost does not follow the tick
    f = Forecaster(demo_config())
    feed(f, 180, lambda dt: ([mem("voice-engine", 120 + dt / 60)],), every=1.0)
    (track,) = f._tracks.values()
    assert len(track) == 19


def test_disk_filling_and_sorting_soonest_first() -> None:
    f = Forecaster(demo_config())

    def make(dt: float):
        disks = [
            DiskUsage("/data", 100, 0, 72 + dt / 60),  # +1 %/min: 90 % (critical) in 13 min
            DiskUsage("/", 100, 0, 40.0),
        ]
        series = [mem("terminal-processor", 30 + 2 * dt / 60)]  # 50 MB budget: 5 min after t=300
        return series, disks

    now = feed(f, 300, make)
    preds = f.predictions(now)
    assert [(p.component, p.metric) for p in preds[:2]] == [
        ("terminal-processor", "memory"),
        ("system", "disk"),
    ]
    disk = preds[1]
    assert disk.unit == "%" and disk.limit == 90
    assert disk.eta_s == pytest.approx(13 * 60, rel=0.05)
    assert disk.message == "disk /data reaches 90 % (critical) in ~13 min"
    assert preds[0].eta_s == pytest.approx(5 * 60, rel=0.05)
    root = [p for p in preds if p.metric == "disk" and p.eta_s is None]
    assert root and root[0].message == "disk / steady at 40 %"


def test_rising_p95_toward_five_times_its_target() -> None:
    f = Forecaster(demo_config())
    # terminal-processor: target 50 ms, so its limit is 250 ms; +20 ms a minute from 60 ms;
    # its faster series does not count (the worst p95 of the component is tracked)

    def make(dt: float):
        return (
            [
                lat("terminal-processor", 60 + 20 * dt / 60, name="terminal.command_latency"),
                lat("terminal-processor", 5.0, name="terminal.parse_latency"),
                lat("terminal-processor", 9999.0, count=3, name="terminal.rare_latency"),
            ],
        )

    now = feed(f, 240, make)
    p = by(f.predictions(now), "terminal-processor", "p95")
    assert p.limit == 250 and p.current == pytest.approx(140)
    assert p.eta_s == pytest.approx(110 / 20 * 60, rel=0.05)
    assert p.message == "terminal-processor p95 reaches 5x its 50 ms target (250 ms) in ~6 min"


def test_slow_growth_beyond_the_horizon_is_rising_without_an_eta() -> None:
    f = Forecaster(demo_config())
    now = feed(f, 600, lambda dt: ([mem("voice-engine", 100 + 2 * dt / 60)],))
    p = by(f.predictions(now), "voice-engine", "memory")
    assert p.eta_s is None  # 120 MB + 2 MB/min: 200 MB is 40 minutes away
    assert p.forecast == pytest.approx(150)
    assert p.message == "voice-engine memory rising, 120 MB -> 150 MB in 15 min (limit 200 MB)"


def test_over_the_limit_already_and_gone_quiet() -> None:
    f = Forecaster(demo_config())
    now = feed(f, 180, lambda dt: ([mem("terminal-processor", 52.0)],))
    p = by(f.predictions(now), "terminal-processor", "memory")
    assert (
        p.eta_s == 0 and p.message == "terminal-processor memory is at 52 MB, over its 50 MB limit"
    )
    # a component that stopped reporting a minute ago is not forecast
    assert f.predictions(now + 61) == ()
