"""The alerts log: per-sample rules on real parsed batches, suppression windows, warm-up, bound.

Time is passed in as numbers; nothing sleeps.
"""

from __future__ import annotations

import json
import math

import numpy as np

from vtmon.analysis.alerts import AlertLog
from vtmon.config import Config, config_from_dict
from vtmon.demo import demo_config
from vtmon.ingest.parse import parse_block
from vtmon.model import Alert, Batch, DistBuf, Kind, SeriesKey, Severity, make_tags

T0 = 1_700_000_000.0
WARM = T0 + Config().detector.warmup_s  # the first moment alerts are logged
MB = 1024 * 1024


def batch(*lines: str) -> Batch:
    b = Batch()
    parse_block(("\n".join(lines) + "\n").encode(), b)
    assert not b.rejected, b.rejected
    return b


def latency(comp: str, *ms: float, metric: str = "api.request_latency") -> Batch:
    return batch(*(f"{metric}:{v}|ms|#component:{comp}" for v in ms))


def memory(comp: str, mb: float, name: str = "memory_heap_used") -> str:
    return json.dumps(
        {"name": name, "value": mb * MB, "unit": "bytes", "context": {"component": comp}}
    )


def errors(comp: str, n: int, etype: str = "timeout") -> str:
    return f"{comp.split('-')[0]}.error_count:{n}|c|#component:{comp},error_type:{etype}"


def log(config: Config | None = None, max_len: int = 1000) -> AlertLog:
    return AlertLog(config or demo_config(), started=T0, max_len=max_len)


# -- high latency ------------------------------------------------------------------------------


def test_a_slow_sample_alerts_once_then_is_suppressed_for_five_minutes() -> None:
    a = log()
    # api-server: target 100 ms, so the alert threshold defaults to 200 ms
    a.observe_batch(latency("api-server", 40, 1200, 150, 900), WARM + 1)
    (alert,) = a.alerts()
    assert alert.kind == "high_latency" and alert.severity is Severity.HIGH
    assert alert.component == "api-server"
    assert alert.value == 1200 and alert.threshold == 200  # the largest sample
    assert alert.metric == "api.request_latency{component=api-server}"
    assert alert.t == WARM + 1
    assert alert.message == (
        "api-server api.request_latency took 1.2 s, above its 200 ms alert threshold"
    )

    for dt in (10, 120, 299):  # still inside the 5-minute window: nothing new
        a.observe_batch(latency("api-server", 5000), WARM + 1 + dt)
    assert len(a.alerts()) == 1
    a.observe_batch(latency("api-server", 450), WARM + 1 + 300)
    assert len(a.alerts()) == 2 and a.alerts()[0].value == 450  # newest first


def test_suppression_is_per_component_and_fast_samples_never_alert() -> None:
    a = log()
    a.observe_batch(latency("api-server", 250), WARM)
    a.observe_batch(latency("terminal-processor", 101, metric="terminal.command_latency"), WARM + 1)
    a.observe_batch(latency("voice-engine", 550, metric="voice.transcribe_latency"), WARM + 2)
    assert [x.component for x in a.alerts()] == ["terminal-processor", "api-server"]
    assert a.alerts()[0].message.startswith(
        "terminal-processor terminal.command_latency took 101 ms"
    )


def test_the_slowest_series_of_a_component_is_named() -> None:
    a = log()
    b = batch(
        "api.request_latency:300|ms|#component:api-server",
        "api.db_query_latency:800|ms|#component:api-server",
    )
    a.observe_batch(b, WARM)
    (alert,) = a.alerts()
    assert alert.metric == "api.db_query_latency{component=api-server}" and alert.value == 800


def test_configured_alert_threshold_and_timed_samples() -> None:
    cfg = config_from_dict({"components": {"api-server": {"alert_latency_ms": 1000}}})
    a = log(cfg)
    a.observe_batch(latency("api-server", 900), WARM)
    assert a.alerts() == ()
    # a JSON sample with its own timestamp arrives as a timed sample
    line = json.dumps(
        {
            "name": "api.request_latency",
            "value": 1500,
            "unit": "ms",
            "timestamp": (WARM - 2) * 1000,
            "context": {"component": "api-server"},
        }
    )
    b = batch(line)
    assert b.timed and not b.dist
    a.observe_batch(b, WARM + 1)
    (alert,) = a.alerts()
    assert alert.value == 1500 and alert.threshold == 1000


def test_a_leading_nan_does_not_hide_a_slow_sample() -> None:
    a = log()
    key = SeriesKey("api.request_latency", make_tags({"component": "api-server"}))
    a.observe_batch(Batch(dist={key: DistBuf([math.nan, 50.0, 700.0])}), WARM)
    assert a.alerts()[0].value == 700.0
    a2 = log()
    a2.observe_batch(Batch(dist={key: DistBuf([math.nan, math.inf])}), WARM)
    assert a2.alerts() == ()


# -- memory ------------------------------------------------------------------------------------


def test_memory_above_90_percent_of_the_budget_is_critical_and_suppressed_three_minutes() -> None:
    a = log()
    a.observe_batch(batch(memory("terminal-processor", 44.9)), WARM)  # 89.8 % of 50 MB
    assert a.alerts() == ()
    a.observe_batch(batch(memory("terminal-processor", 46.0)), WARM + 10)
    (alert,) = a.alerts()
    assert alert.kind == "memory" and alert.severity is Severity.CRITICAL
    assert alert.component == "terminal-processor"
    assert alert.value == 46.0 and alert.threshold == 45.0
    assert "46.0 MB" in alert.message and "50 MB budget" in alert.message
    a.observe_batch(batch(memory("terminal-processor", 49.0)), WARM + 10 + 179)
    assert len(a.alerts()) == 1
    a.observe_batch(batch(memory("terminal-processor", 49.0)), WARM + 10 + 180)
    assert len(a.alerts()) == 2


def test_memory_rss_with_a_dotted_name_and_delta_gauges() -> None:
    a = log()
    # voice-engine's budget is 200 MB; the component comes from the name's first part here
    a.observe_batch(batch("voice-engine.memory_rss:199229440|g"), WARM)  # 190 MB
    (alert,) = a.alerts()
    assert alert.metric == "voice-engine.memory_rss" and alert.component == "voice-engine"
    # a relative change says nothing about the level by itself
    b = log()
    b.observe_batch(batch("voice-engine.memory_rss:+199229440|g"), WARM)
    assert b.alerts() == ()
    # other gauges are not memory
    b.observe_batch(batch("voice-engine.queue_depth:999999999|g"), WARM)
    assert b.alerts() == ()


def test_memory_set_by_a_binary_frame_run_is_judged_by_its_last_value() -> None:
    # vtmon.client's gauges arrive as runs of values (binary frames), not one line each.
    key = SeriesKey("memory_heap_used", make_tags({"component": "terminal-processor"}), Kind.GAUGE)
    a = log()
    a.observe_batch(Batch(gauges={key: [(None, np.array([49.0, 20.0]) * MB)]}), WARM)
    assert a.alerts() == ()  # it was high, but the last value set is 20 MB
    a.observe_batch(Batch(gauges={key: [(None, np.array([20.0, 46.0]) * MB)]}), WARM + 1)
    (alert,) = a.alerts()
    assert alert.kind == "memory" and alert.value == 46.0


# -- error spike -------------------------------------------------------------------------------


def test_more_than_five_errors_in_one_batch_is_a_spike() -> None:
    a = log()
    a.observe_batch(batch(errors("voice-engine", 3), errors("voice-engine", 2, "decode")), WARM)
    assert a.alerts() == ()  # five is not more than five
    a.observe_batch(batch(errors("voice-engine", 4), errors("voice-engine", 2, "decode")), WARM + 1)
    (alert,) = a.alerts()
    assert alert.kind == "error_spike" and alert.severity is Severity.HIGH
    assert alert.value == 6 and alert.threshold == 5
    assert alert.message == (
        "voice-engine reported 6 errors at once (timeout 4, decode 2), more than 5"
    )
    a.observe_batch(batch(errors("voice-engine", 50)), WARM + 1 + 599)
    assert len(a.alerts()) == 1
    a.observe_batch(batch(errors("voice-engine", 50)), WARM + 1 + 600)
    assert len(a.alerts()) == 2


def test_timestamped_error_lines_in_bulk_count_as_one_by_one() -> None:
    # Timestamped JSON error lines with a request id each reach the rule as one run of the
    # series; only positive increments count, as they would one at a time.
    lines = [
        json.dumps(
            {
                "name": "voice-engine.error_count",
                "value": v,
                "timestamp": (WARM - 1) * 1000 + i,
                "context": {"component": "voice-engine", "error_type": "io", "requestId": f"r{i}"},
            }
        )
        for i, v in enumerate([1, 1, 0, 2, -3, 1, 1, 1] * 20)
    ]
    b = batch(*lines)
    assert len(b.timed) == 1 and not b.counts
    a = log()
    a.observe_batch(b, WARM)
    (alert,) = a.alerts()
    assert alert.kind == "error_spike" and alert.value == 7 * 20


def test_error_counters_are_recognised_by_name_only() -> None:
    a = log()
    a.observe_batch(batch("api.throughput:100|c|#component:api-server"), WARM)
    a.observe_batch(batch("api.errors:7|c|#component:api-server"), WARM)
    (alert,) = a.alerts()
    assert alert.component == "api-server" and alert.metric == "api.errors"


# -- the log -----------------------------------------------------------------------------------


def test_nothing_is_logged_during_warm_up_and_it_starts_no_window() -> None:
    a = log()
    a.observe_batch(latency("api-server", 5000), WARM - 0.5)
    alert = Alert(WARM - 1, Severity.HIGH, "bottleneck", "x", "api-server")
    assert a.add(alert, key="k", suppress_s=100) is False
    assert a.alerts() == ()
    # right after warm-up the same things alert: warm-up did not open suppression windows
    a.observe_batch(latency("api-server", 5000), WARM)
    assert a.add(Alert(WARM, Severity.HIGH, "bottleneck", "x", "api-server"), "k", 100)
    assert len(a.alerts()) == 2


def test_add_suppresses_by_key_within_its_window() -> None:
    a = log()
    mk = lambda t: Alert(t, Severity.MEDIUM, "regression", "m", "api-server")  # noqa: E731
    assert a.add(mk(WARM), "r:api", 60)
    assert not a.add(mk(WARM + 59), "r:api", 60)
    assert a.add(mk(WARM + 59), "r:other", 60)
    assert a.add(mk(WARM + 60), "r:api", 60)  # the window counts from the last one logged
    assert a.add(mk(WARM + 61))  # no key: never suppressed
    assert a.add(mk(WARM + 61))
    assert len(a.alerts()) == 5


def test_the_log_is_bounded_newest_first_and_cheap_to_share() -> None:
    a = log(max_len=1000)
    for i in range(1200):
        a.add(Alert(WARM + i, Severity.LOW, "resolved", f"#{i}", "api-server"))
    view = a.alerts()
    assert len(view) == 1000
    assert view[0].message == "#1199" and view[-1].message == "#200"
    assert a.alerts() is view  # nothing changed: the very same tuple
    a.observe_batch(latency("api-server", 10), WARM + 2000)  # nothing to alert about
    assert a.alerts() is view
    a.add(Alert(WARM + 2001, Severity.LOW, "resolved", "new", "api-server"))
    assert a.alerts() is not view and a.alerts()[0].message == "new"


def test_empty_and_unrelated_batches_cost_nothing_and_alert_nothing() -> None:
    a = log()
    a.observe_batch(Batch(), WARM)
    a.observe_batch(batch("api.throughput:5|c", "users:alice|s"), WARM)
    key = SeriesKey("api.request_latency", (), Kind.DISTRIBUTION)
    a.observe_batch(Batch(dist={key: DistBuf([])}), WARM)
    assert a.alerts() == ()
