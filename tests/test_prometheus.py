"""The Prometheus exposition: parsed back with prometheus-client's own parser, served over HTTP,
and scraped by a real Prometheus server whose ``histogram_quantile`` must agree with vtmon."""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import statsd
from click.testing import CliRunner
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.sockets import binary, declare, lines
from tests.sockets import values as values_frame
from vtmon.cli import main
from vtmon.config import Config, ConfigError, PrometheusConfig, config_from_dict
from vtmon.engine.monitor import Monitor
from vtmon.export.labels import label_name
from vtmon.export.prometheus import (
    COARSE_BUCKETS,
    FINE_BUCKETS,
    PrometheusExporter,
    latency_buckets,
    parse_listen,
)
from vtmon.model import (
    Batch,
    Bottleneck,
    DistBuf,
    Fan,
    Health,
    Kind,
    PowerReading,
    Sensors,
    SeriesKey,
    Severity,
    Temperature,
    TimedRun,
)
from vtmon.protocol.jsonrpc import rpc_call
from vtmon.sketch import Sketch


def timed_sample(key: SeriesKey, value: float, weight: float, ts: float) -> TimedRun:
    """One timed sample, as a run of one."""
    return TimedRun(key, [value], [ts], weight)


LATENCY = "vtmon_latency_milliseconds"
BUCKETS = COARSE_BUCKETS  # the default


def families(exporter: PrometheusExporter) -> dict[str, Any]:
    text = exporter.exposition().decode("utf-8")
    return {f.name: f for f in text_string_to_metric_families(text)}


def histogram(fams: dict[str, Any], series: str) -> dict[str, Any]:
    """Buckets (le -> cumulative count), sum, count and labels of one series' histogram."""
    out: dict[str, Any] = {"buckets": {}}
    for s in fams[LATENCY].samples:
        if s.labels.get("series") != series:
            continue
        if s.name.endswith("_bucket"):
            out["buckets"][s.labels["le"]] = s.value
            out["labels"] = {k: v for k, v in s.labels.items() if k != "le"}
        else:
            out[s.name.rsplit("_", 1)[1]] = s.value
    return out


def values_of(fams: dict[str, Any], name: str, key: str) -> dict[str, float]:
    return {s.labels[key]: s.value for s in fams[name].samples}


@pytest.fixture
def exporter(monitor) -> PrometheusExporter:
    return PrometheusExporter(monitor)


def send(path: Path, text: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(os.fspath(path))
        s.sendall(text.encode())


# ---------------------------------------------------------------------------------------------
# the exposition, parsed back


def test_histogram_counts_are_exact_through_the_real_socket(server, monitor, exporter):
    rng = np.random.default_rng(1)
    values = np.round(rng.lognormal(np.log(30), 1.0, 2000), 3)
    values[:4] = [BUCKETS[10], BUCKETS[50], 0.0, 200_000.0]  # on a boundary (le is inclusive)
    lines = [f"api.request_latency:{v}|ms|#component:api-server,region:eu" for v in values]
    lines.append("api.request_latency:40|ms|@0.25|#component:api-server,region:eu")  # weight 4
    send(server.path, "\n".join(lines) + "\n")
    monitor.wait_lines(len(lines))
    monitor.tick()

    h = histogram(families(exporter), "api.request_latency")
    assert h["labels"] == {
        "series": "api.request_latency",
        "component": "api-server",
        "region": "eu",
    }
    sent = np.append(values, [40.0] * 4)
    assert h["count"] == len(values) + 4
    assert h["sum"] == pytest.approx(sent.sum(), rel=1e-12)
    les = [float(le) for le in h["buckets"]]
    assert les == [*BUCKETS, math.inf]
    got = list(h["buckets"].values())
    assert got == sorted(got), "cumulative buckets never decrease"
    want = [float(np.count_nonzero(sent <= le)) for le in les]
    assert got == want
    assert h["buckets"]["+Inf"] == h["count"]


def test_binary_frames_count_like_lines(server, monitor, exporter):
    rng = np.random.default_rng(2)
    values = np.round(rng.lognormal(np.log(30), 1.0, 5000), 3)
    values[:2] = [BUCKETS[10], BUCKETS[50]]
    s = binary(server.path)
    s.sendall(declare(4, 1, b"api.request_latency|#component:api-server"))
    s.sendall(values_frame(4, values[:3000]) + values_frame(4, values[3000:]))
    s.sendall(lines(b"api.request_latency:40|ms|#component:api-server"))
    monitor.wait_lines(5001)
    monitor.tick()
    h = histogram(families(exporter), "api.request_latency")
    sent = np.append(values, 40.0)
    assert h["count"] == 5001
    assert h["sum"] == pytest.approx(sent.sum(), rel=1e-12)
    want = [float(np.count_nonzero(sent <= float(le))) for le in h["buckets"]]
    assert list(h["buckets"].values()) == want


def test_boundaries_are_geometric_grids_and_coarse_is_every_third_fine_one():
    for grid, ratio in ((COARSE_BUCKETS, 10 ** (1 / 10)), (FINE_BUCKETS, 10 ** (1 / 30))):
        assert grid[0] == 0.1 and grid[-1] == 125_900
        ratios = np.asarray(grid[1:]) / np.asarray(grid[:-1])
        assert np.allclose(ratios, ratio, rtol=1e-3)
    assert (len(COARSE_BUCKETS), len(FINE_BUCKETS)) == (62, 184)
    assert FINE_BUCKETS[::3] == COARSE_BUCKETS  # a coarse histogram is a sum of fine buckets
    assert latency_buckets(10, 1.0, 1000.0)[10::10] == (10.0, 100.0, 1000.0)


def test_the_config_picks_the_bucket_set_and_refuses_others(clock):
    fine = config_from_dict({"prometheus": {"buckets": "fine"}})
    assert fine.prometheus == PrometheusConfig("fine")
    assert config_from_dict({}).prometheus.buckets == "coarse"
    b = Batch(accepted=1)
    b.dist[SeriesKey("f.latency")] = DistBuf([3.0])
    for config, grid in ((Config(), COARSE_BUCKETS), (fine, FINE_BUCKETS)):
        monitor = Monitor(config, clock=clock)
        ex = PrometheusExporter(monitor, process_metrics=False)
        monitor.submit(b)
        monitor.tick()
        les = [float(le) for le in histogram(families(ex), "f.latency")["buckets"]]
        assert les == [*grid, math.inf]
    with pytest.raises(ConfigError) as bad:
        config_from_dict({"prometheus": {"buckets": "medium"}}, source="c.toml")
    assert str(bad.value) == (
        "c.toml: prometheus.buckets must be one of coarse, fine, not 'medium'."
    )
    with pytest.raises(ConfigError, match="has no setting 'bucket'"):
        config_from_dict({"prometheus": {"bucket": "fine"}})


@pytest.mark.parametrize(
    ("buckets", "table"),
    [
        (COARSE_BUCKETS, True),
        (FINE_BUCKETS, True),
        ([1, 2, 5, 10, 100], True),  # any increasing positive grid, not only geometric
        ([0.5, 0.502, 0.6], False),  # boundaries 0.4 % apart: searchsorted instead
        ([-1, 0, 1], False),
    ],
)
def test_bucket_of_a_value_matches_the_inclusive_bound(monitor, buckets, table):
    ex = PrometheusExporter(monitor, buckets=buckets, process_metrics=False)
    assert (ex._table is not None) == table
    b = np.asarray(buckets, dtype=np.float64)
    v = np.concatenate(
        [
            b,
            np.nextafter(b, math.inf),
            np.nextafter(b, -math.inf),
            np.random.default_rng(2).lognormal(0, 4, 50_000),
            [0.0, -0.0, -5.0, -1e300, 1e-300, 5e-324, 1e300, 2e5, 1.7e308],
        ]
    )
    assert np.array_equal(ex._bucket_of(v), np.searchsorted(b, v, side="left"))


def test_non_finite_values_and_bad_weights_are_skipped_like_the_engine(monitor, exporter):
    key = SeriesKey("w.latency", (("component", "w"),))
    b = Batch(accepted=6)
    b.dist[key] = DistBuf([10.0, math.nan, math.inf, 20.0, 30.0, 5.0], [1, 1, 1, 0, 2, -1])
    monitor.submit(b)
    snap = monitor.tick()
    h = histogram(families(exporter), "w.latency")
    (eng,) = [s for s in snap.series if s.name == "w.latency"]
    assert h["count"] == eng.windows["1m"].count == 3.0
    assert h["sum"] == 10.0 + 60.0


def test_hostile_tag_values_and_names_survive_escaping(monitor, exporter):
    hostile = 'say "hi"\nthen \\ leave'
    tags = (
        ("component", "c"),
        ("evil", hostile),
        ("http.status", "200"),
        ("9lives", "x"),
        ("le", "0.5"),
        ("job", "mine"),
        ("__name__", "sneaky"),
        ("flag", ""),
    )
    b = Batch(accepted=1)
    b.dist[SeriesKey("hostile.latency", tags)] = DistBuf([1.0])
    monitor.submit(b)
    monitor.tick()
    text = exporter.exposition().decode()
    assert 'evil="say \\"hi\\"\\nthen \\\\ leave"' in text
    labels = histogram(families(exporter), "hostile.latency")["labels"]
    assert labels == {
        "series": "hostile.latency",
        "component": "c",
        "evil": hostile,
        "http_status": "200",
        "_9lives": "x",
        "tag_le": "0.5",
        "tag_job": "mine",
        "tag___name__": "sneaky",
        "flag": "true",
    }


def test_the_bulk_text_is_what_prometheus_client_writes_byte_for_byte(monitor):
    """The histograms are written in bulk; prometheus-client writes the same family from its
    samples: every line, label order and escaping, and numbers as Go writes them (whole
    counts, fractions from sample rates, counts of a million and more, negative sums)."""
    ex = PrometheusExporter(monitor, process_metrics=False)
    empty = ex.exposition()
    assert empty == generate_latest(ex.registry)
    assert f"# TYPE {LATENCY} histogram\n# HELP" in empty.decode()  # a family without series
    b = Batch(accepted=8)
    tags = (("component", "c"), ("evil", 'a "b"\n\\'), ("zone", "é"), ("flag", ""))
    b.dist[SeriesKey("hostile.latency", tags)] = DistBuf([1.0, 5.0, 5.0], [1.0, 1 / 3, 3.0])
    b.dist[SeriesKey("busy.latency")] = DistBuf([0.5, 40.0, 9e5], [1_234_567.0, 3e6, 1e15])
    b.dist[SeriesKey("neg.latency", (("alpha", "1"),))] = DistBuf([-7.5, 0.25])
    monitor.submit(b)
    monitor.tick()
    text = ex.exposition()
    assert text == generate_latest(ex.registry)
    for number in (b"} 1.234567e+06\n", b"} 4.234567e+06\n", b"} 1.000000004234567e+15\n"):
        assert number in text
    h = histogram(families(ex), "busy.latency")
    assert h["count"] == 1_234_567.0 + 3e6 + 1e15
    assert (h["buckets"]["0.5012"], h["buckets"]["50.12"]) == (1_234_567.0, 4_234_567.0)
    assert histogram(families(ex), "neg.latency")["sum"] == -7.25


def test_label_names():
    assert label_name("ok_name1") == "ok_name1"
    assert label_name("a-b.c/d") == "a_b_c_d"
    assert label_name("série") == "s_rie"
    assert label_name("") == "_"
    assert label_name("series") == "tag_series"
    assert label_name("instance") == "tag_instance"


def test_counters_gauges_and_sets(server, monitor, exporter):
    send(server.path, "api.requests:5|c|@0.5\n")  # 5 / 0.5 = 10 (pystatsd would sample it)
    client = statsd.UnixSocketStatsClient(os.fspath(server.path))
    client.incr("api.requests", 3)
    client.gauge("api.queue_depth", 7)
    client.gauge("api.queue_depth", 3, delta=True)
    client.set("api.users", "alice")
    client.set("api.users", "bob")
    client.close()
    monitor.wait_lines(6)
    monitor.tick()
    fams = families(exporter)
    assert values_of(fams, "vtmon_counter", "series") == {"api.requests": 13.0}
    assert fams["vtmon_counter"].type == "counter"
    assert values_of(fams, "vtmon_gauge", "series") == {"api.queue_depth": 10.0}
    assert values_of(fams, "vtmon_set_members", "series") == {"api.users": 2.0}
    lines = {
        (s.labels["result"], s.labels.get("reason")): s.value
        for s in fams["vtmon_ingest_lines"].samples
    }
    assert lines == {("accepted", None): 6.0}


def test_timed_samples_count_unless_the_engine_would_drop_them(clock, monitor, exporter):
    now = clock.time()
    lat = SeriesKey("t.latency")
    ops = SeriesKey("t.requests", kind=Kind.COUNTER)
    b = Batch(accepted=4)
    b.timed = [
        timed_sample(lat, 12.0, 1.0, now - 30),
        timed_sample(lat, 99.0, 1.0, now - 400),  # older than the 5-minute window: dropped
        timed_sample(ops, 2.0, 10.0, now - 5),  # increment 2 at rate 0.1: 20
        timed_sample(ops, 1.0, 1.0, math.nan),
    ]
    monitor.submit(b)
    monitor.tick()
    fams = families(exporter)
    assert histogram(fams, "t.latency")["count"] == 1.0
    assert values_of(fams, "vtmon_counter", "series") == {"t.requests": 20.0}


def test_rejected_lines_by_reason(server, monitor, exporter):
    send(server.path, "a.latency:1|ms\na.latency:x|ms\nnot a metric\na.latency:2|zz\n")
    monitor.wait_lines(4)
    monitor.tick()
    fams = families(exporter)
    got = {
        (s.labels["result"], s.labels.get("reason")): s.value
        for s in fams["vtmon_ingest_lines"].samples
    }
    assert got[("accepted", None)] == 1.0
    assert sum(v for (r, _), v in got.items() if r == "rejected") == 3.0
    assert set(got) - {("accepted", None)} == {
        ("rejected", r) for r in monitor.latest.ingest.rejected
    }


def test_connections_refused_at_the_cap_are_exported(monitor, exporter):
    monitor.connections.refused = 7  # as the socket server counts them
    monitor.tick()
    fams = families(exporter)
    assert fams["vtmon_ingest_connections_refused"].samples[0].value == 7.0


def test_series_beyond_the_limit_are_dropped_and_counted(clock):
    monitor = Monitor(Config(max_series=2), clock=clock)
    ex = PrometheusExporter(monitor)
    b = Batch(accepted=4)
    for i in range(3):
        b.dist[SeriesKey(f"s{i}.latency")] = DistBuf([1.0, 2.0])
    b.counts[SeriesKey("s.requests", kind=Kind.COUNTER)] = 1.0
    monitor.submit(b)
    monitor.tick()
    fams = families(ex)
    assert {s.labels["series"] for s in fams[LATENCY].samples} == {"s0.latency", "s1.latency"}
    assert "vtmon_counter" not in fams or not fams["vtmon_counter"].samples
    assert fams["vtmon_exporter_samples_dropped"].samples[0].value == 3.0


def test_idle_series_are_forgotten_and_start_again_from_zero(clock, monitor, exporter):
    def batch(name: str, v: float) -> Batch:
        b = Batch(accepted=1)
        b.dist[SeriesKey(name)] = DistBuf([v])
        b.counts[SeriesKey(name + "_total", kind=Kind.COUNTER)] = 1.0
        return b

    monitor.submit(batch("old.latency", 5.0))
    monitor.submit(batch("kept.latency", 5.0))
    monitor.tick()
    for _ in range(7):  # 700 s; "kept" keeps arriving
        clock.advance(100)
        monitor.submit(batch("kept.latency", 6.0))
        monitor.tick()
    fams = families(exporter)
    assert {s.labels["series"] for s in fams[LATENCY].samples} == {"kept.latency"}
    assert histogram(fams, "kept.latency")["count"] == 8.0
    assert values_of(fams, "vtmon_counter", "series") == {"kept.latency_total": 8.0}
    monitor.submit(batch("old.latency", 7.0))
    monitor.tick()
    assert histogram(families(exporter), "old.latency")["count"] == 1.0
    assert len(exporter._rows) == 2  # the freed row was reused, not a new one grown


def test_resources_health_and_bottlenecks_from_the_real_engine(server, monitor, exporter):
    send(server.path, "voice.transcribe_latency:250|ms|#component:voice-engine\n")
    monitor.wait_lines(1)
    snap = monitor.tick()
    fams = families(exporter)
    r = snap.resources
    assert fams["vtmon_memory_total_bytes"].samples[0].value == r.mem_total > 0
    assert fams["vtmon_memory_used_bytes"].samples[0].value == r.mem_used
    assert values_of(fams, "vtmon_disk_used_bytes", "mount") == {d.mount: d.used for d in r.disks}
    if r.pressure:
        assert set(values_of(fams, "vtmon_pressure_some_avg10_percent", "resource")) == {
            p.resource for p in r.pressure
        }
    health = values_of(fams, "vtmon_health_score", "component")
    assert health == {h.component: h.score for h in snap.health}
    assert {"voice-engine", "overall"} <= set(health)
    assert values_of(fams, "vtmon_bottlenecks", "severity") == {s.value: 0.0 for s in Severity}
    assert values_of(fams, "vtmon_latency_target_milliseconds", "component") == {
        "voice-engine": 300.0
    }
    assert fams["vtmon_info"].samples[0].labels["host"] == snap.host
    assert "process_resident_memory_bytes" in fams  # vtmon's own, deliberately included


def test_sensors_process_and_bottleneck_counts_follow_the_snapshot(monitor, exporter):
    snap = monitor.tick()

    def bn(i: int, sev: Severity) -> Bottleneck:
        return Bottleneck(f"r:{i}", "latency", sev, "api", "", 0.5, 1.0, (), "", 0.0)

    monitor.latest = replace(
        snap,
        sensors=Sensors(
            temperatures=(Temperature("coretemp", "Package id 0", 61.5, 90.0, 100.0),),
            fans=(Fan("nct6798", "fan1", 1200.0),),
            power=(PowerReading("powercap", "package-0", 14.25),),
        ),
        bottlenecks=(bn(1, Severity.HIGH), bn(2, Severity.HIGH), bn(3, Severity.CRITICAL)),
        health=(Health("api", 0.4, "critical"), Health("overall", 0.4, "critical")),
    )
    fams = families(exporter)
    temps = fams["vtmon_temperature_celsius"].samples
    assert [(s.labels, s.value) for s in temps] == [
        ({"chip": "coretemp", "label": "Package id 0"}, 61.5)
    ]
    assert values_of(fams, "vtmon_fan_rpm", "label") == {"fan1": 1200.0}
    assert values_of(fams, "vtmon_power_watts", "label") == {"package-0": 14.25}
    assert values_of(fams, "vtmon_bottlenecks", "severity") == {
        "low": 0.0,
        "medium": 0.0,
        "high": 2.0,
        "critical": 1.0,
    }
    assert values_of(fams, "vtmon_health_score", "component") == {"api": 0.4, "overall": 0.4}


def test_watched_process(clock):
    from vtmon.engine.collector import SystemCollector

    monitor = Monitor(Config(), clock=clock, collector=SystemCollector(pid=os.getpid()))
    ex = PrometheusExporter(monitor)
    monitor.tick()
    fams = families(ex)
    (rss,) = fams["vtmon_watched_process_resident_memory_bytes"].samples
    assert rss.labels["pid"] == str(os.getpid())
    assert rss.value > 0


# ---------------------------------------------------------------------------------------------
# HTTP and the command line


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("9108", ("127.0.0.1", 9108)),
        (":9108", ("127.0.0.1", 9108)),
        ("0.0.0.0:9108", ("0.0.0.0", 9108)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:9108", ("::1", 9108)),
    ],
)
def test_parse_listen(spec, want):
    assert parse_listen(spec) == want


@pytest.mark.parametrize("spec", ["", "host", "host:", "host:99999", "::1:9108", "[::1]", "a:b"])
def test_parse_listen_refuses(spec):
    with pytest.raises(ValueError):
        parse_listen(spec)


def test_http_endpoint_serves_and_stops(monitor, exporter):
    b = Batch(accepted=1)
    b.dist[SeriesKey("h.latency")] = DistBuf([3.0])
    monitor.submit(b)
    monitor.tick()
    host, port = exporter.serve("127.0.0.1", 0)
    assert (host, exporter.url) == ("127.0.0.1", f"http://127.0.0.1:{port}/metrics")
    try:
        with urllib.request.urlopen(exporter.url, timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = resp.read().decode()
    finally:
        exporter.stop()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert histogram(fams, "h.latency")["count"] == 1.0
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)


PROMETHEUS_ACCEPT = (  # what Prometheus 2.42 sends: OpenMetrics first
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def test_http_answers_text_0_0_4_gzipped_when_asked_with_exact_counts(monitor):
    ex = PrometheusExporter(monitor, process_metrics=False)
    rng = np.random.default_rng(5)
    sent = {f"g{i}.latency": np.round(rng.lognormal(np.log(20), 1.0, 300), 2) for i in range(50)}
    b = Batch(accepted=300 * len(sent))
    for name, values in sent.items():
        b.dist[SeriesKey(name)] = DistBuf(values.tolist())
    monitor.submit(b)
    monitor.tick()
    ex.serve("127.0.0.1", 0)
    try:
        asked = urllib.request.Request(
            ex.url or "", headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}
        )
        with urllib.request.urlopen(asked, timeout=10) as resp:
            headers, body = resp.headers, resp.read()
        with urllib.request.urlopen(ex.url or "", timeout=10) as resp:
            plain = resp.read()
    finally:
        ex.stop()
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(body)
    assert text == plain == ex.exposition()
    fams = {f.name: f for f in text_string_to_metric_families(text.decode())}
    for name, values in sent.items():
        h = histogram(fams, name)
        want = [float(np.count_nonzero(values <= float(le))) for le in h["buckets"]]
        assert list(h["buckets"].values()) == want
        assert h["count"] == len(values)


def test_concurrent_scrapes_share_one_build(monitor, exporter):
    """Four scrapers at once: the three that arrive while /metrics is being built get that
    same text; /metrics is built once, not four times."""
    entered, release = threading.Event(), threading.Event()
    calls: list[int] = []

    class Slow:
        def collect(self) -> list[Any]:
            calls.append(1)
            entered.set()
            release.wait(10)
            return []

    exporter.registry.register(Slow())  # type: ignore[arg-type]
    exporter.serve("127.0.0.1", 0)
    bodies: list[bytes] = []

    def scrape() -> None:
        with urllib.request.urlopen(exporter.url or "", timeout=10) as resp:
            bodies.append(resp.read())

    scrapers = [threading.Thread(target=scrape) for _ in range(4)]
    try:
        scrapers[0].start()
        assert entered.wait(10)
        for t in scrapers[1:]:
            t.start()
        _poll(
            "three scrapes waiting",
            lambda: exporter.builds.waiting == 3 or None,
            time.monotonic() + 10,
        )
        release.set()
        for t in scrapers:
            t.join(10)
    finally:
        release.set()
        exporter.stop()
    assert len(bodies) == 4 and len(set(bodies)) == 1
    assert calls == [1] and exporter.builds.builds == 1
    assert refused(exporter)["busy"] == 0


def refused(exporter: PrometheusExporter) -> dict[str, float]:
    return values_of(families(exporter), "vtmon_exporter_connections_refused", "reason")


def test_half_open_connections_cost_no_thread_a_scrape_is_answered_and_they_are_closed(
    monitor, exporter
):
    host, port = exporter.serve("127.0.0.1", 0, timeout=0.2)
    threads = threading.active_count()
    half_open = []
    try:
        for i in range(300):
            s = socket.create_connection((host, port), timeout=10)
            if i % 2:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # half a request
            half_open.append(s)
        assert threading.active_count() == threads
        with urllib.request.urlopen(exporter.url, timeout=10) as resp:
            assert resp.status == 200
            assert "vtmon_exporter_connections_refused_total" in resp.read().decode()
        for s in half_open:  # closed by vtmon: after the timeout, or as the oldest of 64
            with contextlib.suppress(ConnectionResetError):
                while s.recv(4096):
                    pass
        counts = refused(exporter)
    finally:
        for s in half_open:
            s.close()
        exporter.stop()
    assert counts["timeout"] + counts["too many waiting"] == 300
    assert counts["timeout"] > 0 and counts["busy"] == counts["too large"] == 0


def test_scrapes_beyond_max_requests_get_503_and_are_counted(monitor, exporter):
    entered, release = threading.Event(), threading.Event()

    class Slow:
        def collect(self) -> list[Any]:
            entered.set()
            release.wait(10)
            return []

    exporter.registry.register(Slow())  # type: ignore[arg-type]
    exporter.serve("127.0.0.1", 0, max_requests=1)
    first: list[int] = []
    t = threading.Thread(
        target=lambda: first.append(urllib.request.urlopen(exporter.url, timeout=10).status)
    )
    try:
        t.start()
        assert entered.wait(10)
        with pytest.raises(urllib.error.HTTPError) as busy:
            urllib.request.urlopen(exporter.url, timeout=10)
        assert busy.value.code == 503
        assert busy.value.read() == b"vtmon is answering other scrapes; try again.\n"
        release.set()
        t.join(10)
    finally:
        release.set()
        exporter.stop()
    assert first == [200]
    assert refused(exporter)["busy"] == 1


@pytest.mark.parametrize("before_command", [False, True])
def test_port_in_use_is_one_sentence_and_exit_2(sock_dir, before_command):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        opt = ["--prometheus", f"127.0.0.1:{port}"]
        sock = ["--socket", str(sock_dir / "p.sock")]
        args = [*opt, "serve", *sock] if before_command else ["serve", *sock, *opt]
        res = CliRunner().invoke(main, args)
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"Error: Cannot serve Prometheus metrics on 127.0.0.1:{port}: the port is in use; "
        "pick another with --prometheus HOST:PORT."
    )
    assert not (sock_dir / "p.sock").exists()  # nothing was started


def test_bad_listen_address_is_a_usage_error(sock_dir):
    res = CliRunner().invoke(main, ["serve", "--socket", str(sock_dir / "s"), "--prometheus", "x"])
    assert res.exit_code == 2
    assert "is not HOST:PORT" in res.output and "Traceback" not in res.output
    for cmd in (["--help"], ["demo", "--help"], ["serve", "--help"]):
        assert "--prometheus HOST:PORT" in CliRunner().invoke(main, cmd).output


# ---------------------------------------------------------------------------------------------
# a real Prometheus server scraping `vtmon serve`

PROMETHEUS = shutil.which("prometheus")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Serve:
    """`vtmon serve --prometheus 127.0.0.1:0` in a subprocess; stderr read by a thread."""

    def __init__(self, path: Path, config: Path | None = None) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vtmon.cli", "serve", "--socket", str(path)]
            + ["--prometheus", "127.0.0.1:0"]
            + ([] if config is None else ["--config", str(config)]),
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put("")

    def metrics_address(self, deadline: float) -> str:
        """HOST:PORT of /metrics, once the socket is listening as well."""
        seen: list[str] = []
        address = ""
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            seen.append(line)
            if "Prometheus metrics on http://" in line:
                address = line.split("http://", 1)[1].split("/", 1)[0]
            if address and f"vtmon serving on {self.path}" in line:
                return address
            if not line or time.monotonic() > deadline:
                raise AssertionError(f"vtmon serve did not start: {''.join(seen)}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def _poll(what: str, fn: Any, deadline: float, log: Path | None = None) -> Any:
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except OSError as e:  # the server is not listening yet
            last = e
        else:
            if last is not None:
                return last
        time.sleep(0.1)
    extra = log.read_text()[-2000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what} (last: {last!r}) {extra}")


@pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the prometheus binary is missing (Debian: apt-get install prometheus; .ci/run does)",
)
@pytest.mark.parametrize("buckets", ["coarse", "fine"])
def test_real_prometheus_histogram_quantile_agrees_with_vtmon(sock_dir, tmp_path, buckets):
    """Two vtmon instances (a fleet) with different latency distributions and maxima; a real
    Prometheus scrapes both. Per instance, histogram_quantile(0.99) must be within 5 % of the
    p99 vtmon itself reports; across the fleet, within 5 % of the p99 of everything sent.
    With the default set of boundaries (no config) and with ``[prometheus] buckets = "fine"``.
    """
    assert PROMETHEUS is not None
    vt_config = None
    if buckets == "fine":
        vt_config = tmp_path / "vtmon.toml"
        vt_config.write_text('[prometheus]\nbuckets = "fine"\n')
    rng = np.random.default_rng(42)
    workloads = {
        "a": np.round(rng.lognormal(np.log(20), 0.6, 20_000), 3),  # max ~250 ms
        "b": np.round(rng.lognormal(np.log(90), 0.9, 6_000), 3),  # slower, max seconds
    }
    name = "fleet.request_latency"
    deadline = time.monotonic() + 60
    vt = {k: _Serve(sock_dir / f"{k}.sock", vt_config) for k in workloads}
    prom: subprocess.Popen[bytes] | None = None
    log = tmp_path / "prometheus.log"
    try:
        targets = {k: v.metrics_address(deadline) for k, v in vt.items()}
        prom_port = _free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: vtmon\n    static_configs:\n"
            f"      - targets: {json.dumps(sorted(targets.values()))}\n"
        )
        with log.open("wb") as log_file:
            prom = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--log.level=warn",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        # the workload, through the real socket, while Prometheus starts
        for k, values in workloads.items():
            send(vt[k].path, "".join(f"{name}:{v}|ms|#component:api,fleet:{k}\n" for v in values))
        own_p99 = {}
        for k, values in workloads.items():

            def snapshot_p99(k: str = k, n: int = len(values)) -> float | None:
                snap = rpc_call(vt[k].path, "snapshot", {"history": False})
                for s in snap["series"]:
                    if s["name"] == name and s["windows"]["5m"]["count"] == n:
                        return s["windows"]["5m"]["p99"]
                return None

            own_p99[k] = _poll(f"vtmon {k} to count every sample", snapshot_p99, deadline)

        def scraped_everything() -> bool | None:
            want = sum(len(v) for v in workloads.values())
            got = _query(prom_port, f'sum(vtmon_latency_milliseconds_count{{series="{name}"}})')
            return True if got and float(got[0]["value"][1]) == want else None

        _poll("Prometheus to scrape every sample", scraped_everything, deadline, log)
        les = _query(prom_port, f'count({LATENCY}_bucket{{series="{name}"}}) by (instance)')
        grid = COARSE_BUCKETS if vt_config is None else FINE_BUCKETS
        assert [float(r["value"][1]) for r in les] == [len(grid) + 1] * 2  # +Inf too

        def hq(selector: str) -> float:
            q = f"histogram_quantile(0.99, sum by (le) ({LATENCY}_bucket{{{selector}}}))"
            (res,) = _query(prom_port, q)
            return float(res["value"][1])

        for k, values in workloads.items():
            prom_p99 = hq(f'series="{name}",instance="{targets[k]}"')
            exact = float(np.quantile(values, 0.99, method="inverted_cdf"))
            print(
                f"{buckets} {k}: prometheus {prom_p99:.3f}, vtmon {own_p99[k]:.3f} "
                f"({prom_p99 / own_p99[k] - 1:+.1%}), "
                f"exact {exact:.3f} ({prom_p99 / exact - 1:+.1%})"
            )
            assert prom_p99 == pytest.approx(own_p99[k], rel=0.05)
            assert prom_p99 == pytest.approx(exact, rel=0.05)
        everything = np.concatenate(list(workloads.values()))
        fleet = hq(f'series="{name}"')
        exact = float(np.quantile(everything, 0.99, method="inverted_cdf"))
        merged = Sketch.of(everything).quantile(0.99)
        print(
            f"{buckets} fleet: prometheus {fleet:.3f}, merged sketch {merged:.3f} "
            f"({fleet / merged - 1:+.1%}), exact {exact:.3f} ({fleet / exact - 1:+.1%})"
        )
        assert fleet == pytest.approx(exact, rel=0.05)
        assert fleet == pytest.approx(merged, rel=0.05)
    finally:
        if prom is not None:
            prom.terminate()
            try:
                prom.wait(10)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait(5)
        for v in vt.values():
            v.stop()
