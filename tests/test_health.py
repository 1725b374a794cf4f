"""Health scores (hand-computed, one penalty at a time) and recommendations for each trigger.

Defaults from the config: api-server target 100 ms, 100 MB, error rate 1 %; voice-engine 300 ms,
200 MB, 0.5 %; terminal-processor 50 ms, 50 MB, 0.1 %.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from vtmon.analysis.health import health, recommendations
from vtmon.config import Config, ConfigError, load_config
from vtmon.demo import demo_config
from vtmon.model import (
    Bottleneck,
    Cause,
    ErrorStats,
    Health,
    Kind,
    Resources,
    SeriesStats,
    Severity,
    Snapshot,
    WindowStats,
)

T0 = 1_700_000_000.0
MB = 1024 * 1024
CFG = demo_config()


def lat(comp: str, p95: float, count: float = 100, name: str = "") -> SeriesStats:
    return SeriesStats(
        name=name or f"{comp.split('-')[0]}.request_latency",
        tags=(("component", comp),),
        component=comp,
        kind=Kind.DISTRIBUTION,
        windows={"1m": WindowStats(count=count, p95=p95)},
    )


def mem(comp: str, mb: float) -> SeriesStats:
    return SeriesStats(
        name="memory_heap_used",
        tags=(("component", comp),),
        component=comp,
        kind=Kind.GAUGE,
        windows={},
        last=mb * MB,
    )


def err(comp: str, errors: float, ops: float) -> ErrorStats:
    return ErrorStats(comp, errors, ops, errors / ops if ops else None, {"timeout": errors})


def bn(comp: str, severity: Severity = Severity.CRITICAL, type_: str = "latency", causes=()):
    return Bottleneck(
        id=f"{type_}:{comp}",
        type=type_,
        severity=severity,
        component=comp,
        description="",
        impact=0.7,
        confidence=1.0,
        evidence=(),
        suggested_action="",
        started=T0,
        causes=tuple(causes),
    )


def snap(series=(), errors=()) -> Snapshot:
    return Snapshot(
        t=T0, host="h", socket="s", started=T0, series=tuple(series), errors=tuple(errors)
    )


def scores(s: Snapshot, bottlenecks=()) -> dict[str, Health]:
    out = health(s, CFG, bottlenecks)
    assert out[-1].component == "overall"
    assert [h.component for h in out[:-1]] == sorted(h.component for h in out[:-1])
    return {h.component: h for h in out}


# -- each penalty ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p95", "score", "status"),
    [
        (90.0, 1.0, "good"),  # under target: nothing
        (150.0, 0.9, "good"),  # (1.5 - 1) x 0.2 = 0.1
        (200.0, 0.8, "warning"),  # 0.2 off: exactly 0.8 is not "above 0.8"
        (250.0, 0.7, "warning"),
        (300.0, 0.6, "critical"),  # 0.4 cap reached at 3x; 0.6 is not "above 0.6"
        (5000.0, 0.6, "critical"),
    ],
)
def test_latency_penalty(p95: float, score: float, status: str) -> None:
    h = scores(snap([lat("api-server", p95)]))["api-server"]
    assert h.score == pytest.approx(score) and h.status == status
    assert h.penalties == ({} if score == 1.0 else {"latency": pytest.approx(1.0 - score)})


def test_the_worst_p95_of_a_component_counts_and_a_handful_of_samples_does_not() -> None:
    s = snap(
        [
            lat("api-server", 150.0, name="api.request_latency"),
            lat("api-server", 250.0, name="api.db_query_latency"),
            lat("api-server", 9000.0, count=9, name="api.rare_latency"),  # fewer than 10
        ]
    )
    assert scores(s)["api-server"].score == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("mb", "score"),
    [
        (160.0, 1.0),  # exactly the 80 % threshold
        (180.0, 0.95),  # use 0.9: (0.9 - 0.8) x 0.5 = 0.05
        (200.0, 0.9),  # the full budget: 0.1
        (300.0, 0.7),  # 150 %: 0.35, capped at 0.3
    ],
)
def test_memory_penalty(mb: float, score: float) -> None:
    h = scores(snap([mem("voice-engine", mb)]))["voice-engine"]
    assert h.score == pytest.approx(score)
    if score < 1:
        assert h.penalties == {"memory": pytest.approx(1 - score)}


@pytest.mark.parametrize(
    ("errors", "ops", "score", "status"),
    [
        (0, 1000, 1.0, "good"),
        (1, 1000, 0.92, "good"),  # 0.1 % of a 0.5 % threshold: 0.2 x 0.4 = 0.08
        (2.5, 1000, 0.8, "warning"),  # half the threshold: 0.2
        (5, 1000, 0.6, "critical"),  # at the threshold: the 0.4 cap
        (50, 1000, 0.6, "critical"),
    ],
)
def test_error_penalty(errors: float, ops: float, score: float, status: str) -> None:
    h = scores(snap(errors=[err("voice-engine", errors, ops)]))["voice-engine"]
    assert h.score == pytest.approx(score) and h.status == status


def test_critical_bottlenecks_take_a_tenth_each_up_to_three() -> None:
    s = snap([lat("api-server", 50.0)])
    one = [bn("api-server")]
    assert scores(s, one)["api-server"].score == pytest.approx(0.9)
    two = [bn("api-server"), bn("api-server", type_="errors")]
    assert scores(s, two)["api-server"].penalties == {"bottlenecks": pytest.approx(0.2)}
    four = [bn("api-server", type_=t) for t in ("latency", "errors", "memory", "cpu")]
    assert scores(s, four)["api-server"].score == pytest.approx(0.7)
    high = [bn("api-server", Severity.HIGH)]  # only critical ones count
    assert scores(s, high)["api-server"].score == 1.0


def test_penalties_add_up_and_the_score_stays_in_range() -> None:
    s = snap(
        [lat("terminal-processor", 1000.0), mem("terminal-processor", 70.0)],
        [err("terminal-processor", 50, 100)],
    )
    bs = [bn("terminal-processor", type_=t) for t in ("latency", "errors", "memory")]
    h = scores(s, bs)["terminal-processor"]
    assert h.penalties == {
        "latency": 0.4,
        "memory": 0.3,
        "errors": 0.4,
        "bottlenecks": pytest.approx(0.3),
    }
    assert h.score == 0.0 and h.status == "critical"


def test_mixed_case_by_hand() -> None:
    # api-server: p95 180 ms -> 0.16; 88 MB of 100 -> (0.88 - 0.8) x 0.5 = 0.04;
    # 4 errors in 1,000 (0.4 % of 1 %) -> 0.16; one critical bottleneck -> 0.1. 1 - 0.46 = 0.54
    s = snap([lat("api-server", 180.0), mem("api-server", 88.0)], [err("api-server", 4, 1000)])
    h = scores(s, [bn("api-server")])["api-server"]
    assert h.score == pytest.approx(0.54) and h.status == "critical"
    assert set(h.penalties) == {"latency", "memory", "errors", "bottlenecks"}


# -- overall -----------------------------------------------------------------------------------


def test_overall_is_the_plain_mean_minus_system_critical_bottlenecks() -> None:
    s = snap(
        [lat("api-server", 250.0), lat("voice-engine", 100.0), mem("terminal-processor", 10.0)],
        [err("voice-engine", 0, 500)],
    )
    # 0.7, 1.0 and 1.0: each component weighs the same
    sc = scores(s)
    assert sc["overall"].score == pytest.approx(0.9)
    assert sc["overall"].penalties == {"components": pytest.approx(0.1)}
    system = [bn("system", type_="cpu"), bn("system", type_="io"), bn("system", Severity.HIGH)]
    sc = scores(s, system)
    assert sc["overall"].score == pytest.approx(0.7) and sc["overall"].status == "warning"
    assert sc["overall"].penalties["system bottlenecks"] == pytest.approx(0.2)
    assert "system" not in sc  # the machine is not a component


def test_nothing_to_score_is_healthy() -> None:
    (overall,) = health(snap(), CFG, ())
    assert overall == Health("overall", 1.0, "good", {})
    (overall,) = health(snap(), CFG, [bn("system", type_="cpu")])
    assert overall.score == pytest.approx(0.9)


def test_a_component_with_only_a_bottleneck_is_scored() -> None:
    sc = scores(snap(), [bn("voice-engine", type_="memory")])
    assert sc["voice-engine"].score == pytest.approx(0.9)


# -- recommendations ---------------------------------------------------------------------------


def recs(s: Snapshot, bottlenecks=()):
    return recommendations(s, CFG, bottlenecks)


def test_nothing_wrong_nothing_recommended() -> None:
    s = snap(
        [lat("api-server", 150.0), mem("api-server", 70.0)],  # 1.5x target, 70 %
        [err("api-server", 5, 1000)],  # 0.5 % of a 1 % allowance
    )
    assert recs(s) == ()


def test_memory_above_its_threshold() -> None:
    (r,) = recs(snap([mem("voice-engine", 170.0)]))  # 85 % of 200 MB
    assert r.component == "voice-engine" and r.priority == "medium"
    assert r.title == "Reduce voice-engine memory use"
    assert "170 MB, 85 % of its 200 MB budget" in r.description
    assert "10 MB less" in r.expected_improvement  # back under 160 MB
    assert "audio frame buffers" in r.implementation  # pooling, as the original design has it
    (r,) = recs(snap([mem("voice-engine", 190.0)]))
    assert r.priority == "high"


def test_a_components_advice_comes_from_its_config(tmp_path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[components.cart]\nmax_memory_mb = 100\nmemory_advice = "bound the cart cache"\n'
        "[components.search]\nmax_memory_mb = 100\n"
    )
    cfg = load_config(path)
    by_comp = {
        r.component: r.implementation
        for r in recommendations(snap([mem("cart", 95.0), mem("search", 95.0)]), cfg, ())
    }
    assert "bound the cart cache" in by_comp["cart"]
    assert "pool and reuse large buffers" in by_comp["search"]  # the general advice
    # no component of the demo's is known to a product without a config
    assert "audio" not in str(recommendations(snap([mem("voice-engine", 600.0)]), Config(), ()))
    path.write_text('[components.cart]\nlatency_advice = ""\n')
    with pytest.raises(
        ConfigError, match="components.cart.latency_advice must be a non-empty string"
    ):
        load_config(path)


def test_latency_above_twice_the_target_with_its_cause() -> None:
    assert recs(snap([lat("api-server", 200.0)])) == ()  # exactly 2x: not above
    cause = Cause("psi_cpu_some", "CPU saturation (PSI cpu some)", 4.0, 61.0, 0.9)
    (r,) = recs(snap([lat("api-server", 400.0)]), [bn("api-server", causes=[cause])])
    assert r.priority == "medium" and r.title == "Cut api-server latency"
    assert "400 ms over the last minute, 4.0x its 100 ms target" in r.description
    assert "Likely cause: CPU saturation (PSI cpu some) 4% -> 61%." in r.description
    assert "75 % lower" in r.expected_improvement
    assert "cache" in r.implementation and "connections" in r.implementation
    r, cross = recs(snap([lat("api-server", 600.0)]))
    assert r.priority == "high" and r.component == "api-server"  # above 5x
    assert cross.component == "all"  # and above 500 ms, see the cross-component rule


def test_error_rate_above_its_threshold() -> None:
    assert recs(snap(errors=[err("api-server", 10, 1000)])) == ()  # 1 %: at, not above
    (r,) = recs(snap(errors=[err("api-server", 15, 1000)]))
    assert r.priority == "low" and r.title == "Bring api-server errors down"
    assert "mostly timeout" in r.description
    assert "5 fewer failures a minute" in r.expected_improvement
    assert "backoff" in r.implementation and "validate input" in r.implementation
    assert recs(snap(errors=[err("api-server", 30, 1000)]))[0].priority == "medium"
    assert recs(snap(errors=[err("api-server", 60, 1000)]))[0].priority == "high"
    assert recs(snap(errors=[err("api-server", 5, 10)])) == ()  # too few operations to judge


def test_slow_path_across_components() -> None:
    out = recs(snap([lat("voice-engine", 550.0), lat("api-server", 90.0)]))
    assert [r.component for r in out] == ["all"]  # voice-engine is under 2x its 300 ms target
    (r,) = out
    assert r.title == "Optimize cross-component communication" and r.priority == "medium"
    assert "voice-engine voice.request_latency, has a p95 of 550 ms" in r.description
    assert "stream partial results" in r.implementation


def test_total_memory_pressure_across_components() -> None:
    # voice-engine alone is over its threshold; together the three hold 83 % of 350 MB
    s = snap([mem("voice-engine", 190.0), mem("api-server", 70.0), mem("terminal-processor", 30.0)])
    out = recs(s)
    assert [(r.component, r.priority, r.title) for r in out] == [
        ("voice-engine", "high", "Reduce voice-engine memory use"),
        ("all", "medium", "Relieve total memory pressure"),
    ]
    assert out[1].description == (
        "The 3 components use 290 MB together, 83 % of their combined 350 MB budget."
    )
    assert "10 MB freed" in out[1].expected_improvement  # down to 280 MB
    assert "bounded buffer pool" in out[1].implementation


def test_a_full_machine_is_memory_pressure_even_within_budgets() -> None:
    s = snap([mem("voice-engine", 100.0), mem("api-server", 50.0)])
    assert recs(s) == ()
    s = replace(s, resources=Resources(mem_total=1024 * MB, mem_percent=96.0))
    (r,) = recs(s)
    assert r.component == "all" and r.priority == "high"
    assert "The machine's memory is 96 % used, 15 % of it held by them." in r.description


def test_recommendations_are_sorted_by_priority() -> None:
    s = snap(
        [lat("api-server", 1200.0), mem("voice-engine", 170.0)],
        [err("terminal-processor", 2, 1000)],  # 0.2 % of a 0.1 % allowance: 2x, low
    )
    out = recs(s)
    assert [(r.priority, r.component) for r in out] == [
        ("high", "api-server"),
        ("high", "all"),
        ("medium", "voice-engine"),
        ("low", "terminal-processor"),
    ]
