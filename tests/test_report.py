"""The HTML report, read as the person it is sent to would read it.

Stores are filled the way vtmon fills them: a recording replayed into a real Monitor with a
history file on a manual clock (tests/data/api-slowdown.vtmrec: api-server slows down at
second 20, its latency bottleneck fires), or batches applied by a Monitor that ticks. The
report is built from a freshly opened store, as `vtmon report` does, and the assertions read
the page's tables (parsed with the standard library's HTML parser), its embedded JSON, the
JSON format, the command's messages, and what headless Chromium shows.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import fields
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from tests.history import damage_middle, filled_file, listing
from tests.screen import start
from vtmon.cli import main, parse_duration
from vtmon.clock import ManualClock
from vtmon.config import Config
from vtmon.engine.monitor import Monitor
from vtmon.export.prometheus import PrometheusExporter
from vtmon.export.replay import NullCollector, NullSensors, replay_into
from vtmon.model import ActionState, Batch, DistBuf, Kind, SeriesKey, TuningAction, WindowStats
from vtmon.report import NoData, build_report, render_html, render_json
from vtmon.report.render import fmt_ms
from vtmon.sketch import Sketch
from vtmon.store.findings import Finding
from vtmon.store.history import HistoryStore
from vtmon.store.journal import Entry, SqliteJournal

FIXTURE = Path(__file__).parent / "data" / "api-slowdown.vtmrec"
START = 1_700_000_000.0  # ManualClock's default start, and the recording's
LATENCY = SeriesKey(
    "api.request_latency",
    (("component", "api-server"), ("endpoint", "/v1/chat")),
    Kind.DISTRIBUTION,
)
EVIL = "<script>alert(1)</script>"
EVIL_TAG = '"><img src=x onerror=alert(2)>'
T0, T1 = START - 60, START + 120  # a period around the recording


# --- reading a page ---------------------------------------------------------------------------


class Page(HTMLParser):
    """Tags with their attributes, the text of each section, and every table's rows."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.sections: dict[str, str] = {}
        self.tables: dict[str, list[list[list[str]]]] = {}  # section id -> tables -> rows
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._section: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._script: tuple[dict[str, str | None], list[str]] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "section":
            self._section = a.get("id")
            self.sections[self._section or ""] = ""
        elif tag == "table" and self._section:
            self.tables.setdefault(self._section, []).append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "script":
            self._script = (a, [])

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._section = None
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._section and self._section in self.tables:
                self.tables[self._section][-1].append(self._row)
            self._row = None
        elif tag == "script" and self._script is not None:
            self.scripts.append((self._script[0], "".join(self._script[1])))
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script[1].append(data)
            return
        if self._section is not None:
            self.sections[self._section] += data
        if self._cell is not None:
            self._cell.append(data)

    def text(self, section: str) -> str:
        return " ".join(self.sections.get(section, "").split())

    def rows(self, section: str, table: int = 0) -> list[list[str]]:
        return self.tables[section][table]

    def data(self) -> dict[str, Any]:
        (found,) = [text for a, text in self.scripts if a.get("id") == "vtmon-report-data"]
        return json.loads(found)


# --- stores -----------------------------------------------------------------------------------


def replayed(folder: Path) -> Monitor:
    """The fixture recording replayed into a Monitor writing ``folder/vtmon.db``; stopped
    (the history written, as a clean stop writes it)."""
    clock = ManualClock()
    store = HistoryStore.open(folder, clock=clock)
    assert store.persistent, store.warning
    monitor = Monitor(
        Config(), clock=clock, collector=NullCollector(), sensors=NullSensors(), store=store
    )
    stats = replay_into(monitor, FIXTURE, clock)
    assert stats.note == ""
    monitor.stop()
    return monitor


@pytest.fixture(scope="module")
def slowdown(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HistoryStore, Monitor]]:
    folder = tmp_path_factory.mktemp("slowdown")
    monitor = replayed(folder)
    store = HistoryStore.open(folder, clock=ManualClock(START + 120))
    yield store, monitor
    store.close()


@pytest.fixture(scope="module")
def slowdown_report(slowdown: tuple[HistoryStore, Monitor]) -> dict[str, Any]:
    return build_report(slowdown[0], T0, T1, now=START + 130)


@pytest.fixture(scope="module")
def slowdown_page(slowdown_report: dict[str, Any]) -> tuple[str, Page]:
    html = render_html(slowdown_report)
    return html, Page(html)


# --- content ----------------------------------------------------------------------------------


def test_the_latency_table_holds_the_stored_range_summary(
    slowdown: tuple[HistoryStore, Monitor], slowdown_page: tuple[str, Page]
) -> None:
    store, _ = slowdown
    _, page = slowdown_page
    want = store.summary(LATENCY, T0, T1)
    assert want is not None and want["count"] == 600
    head, *body = page.rows("latency")
    assert head == [
        "series", "component", "count", "rate", "p50", "p90", "p95", "p99", "p99.9", "max",
        "target", "status",
    ]  # fmt: skip
    (row,) = [r for r in body if r[0].startswith("api.request_latency")]
    cells = dict(zip(head, row, strict=True))
    assert "endpoint=/v1/chat" in cells["series"] and cells["component"] == "api-server"
    assert cells["count"] == "600"
    assert cells["rate"] == "3.33/s"  # 600 samples in the 180 s period
    for col, key in (("p50", "p50"), ("p90", "p90"), ("p95", "p95"), ("p99", "p99")):
        assert cells[col] == fmt_ms(want[key]), col
    assert cells["p99.9"] == fmt_ms(want["p999"]) and cells["max"] == fmt_ms(want["max"])
    assert cells["target"] == "100 ms"
    assert cells["status"] == "critical"  # p95 of the period above twice the target


def test_the_json_percentiles_are_the_store_s_and_use_the_snapshot_keys(
    slowdown: tuple[HistoryStore, Monitor], slowdown_report: dict[str, Any]
) -> None:
    store, _ = slowdown
    data = json.loads(render_json(slowdown_report))
    for key in (
        "report_type", "generated_at", "component", "summary", "metrics", "bottlenecks",
        "critical_bottlenecks", "recommendations", "predictions", "alerts", "actions",
        "regressions", "ingest", "charts", "period", "host",
    ):  # fmt: skip
        assert key in data, key
    assert data["summary"]["status"] in ("good", "warning", "critical")
    assert 0 <= data["summary"]["health_score"] <= 1
    (row,) = data["metrics"]["latency"]
    assert {f.name for f in fields(WindowStats)} <= set(row)  # count, rate, p50 ... max
    want = store.summary(LATENCY, T0, T1)
    assert want is not None
    for k in ("count", "p50", "p90", "p95", "p99", "p999", "mean", "min", "max"):
        assert row[k] == pytest.approx(want[k]), k
    assert row["tags"] == {"component": "api-server", "endpoint": "/v1/chat"}
    (counter,) = data["metrics"]["counters"]
    assert counter["name"] == "api.throughput" and counter["count"] == 600


def test_the_slowdown_bottleneck_is_on_the_timeline(
    slowdown_report: dict[str, Any], slowdown_page: tuple[str, Page]
) -> None:
    (b,) = slowdown_report["bottlenecks"]
    assert b["id"] == "latency:api-server" and b["severity"] == "high"
    assert START + 20 < b["started"] <= START + 30  # as detected live (test_recording.py)
    # the recording ends with it active; the replay's Monitor then stopped
    assert b["end"] == "vtmon stopped" and b["ended"] == pytest.approx(START + 60)
    assert slowdown_report["critical_bottlenecks"] == []
    _, page = slowdown_page
    rows = page.rows("bottlenecks")
    assert rows[0][0].startswith("when (the period: ")
    assert rows[0][1:] == ["type", "severity", "component", "start", "end", "impact"]
    first = rows[1]
    assert first[1:4] == ["latency", "high", "api-server"]
    assert "(vtmon stopped)" in first[5] and first[6] == f"{b['impact']:.2f}"
    detail = rows[2][1]
    assert "api-server p95 latency is" in detail and "Suggested action:" in detail


def test_summary_alerts_recommendations_and_ingest_come_from_the_stored_findings(
    slowdown: tuple[HistoryStore, Monitor],
    slowdown_report: dict[str, Any],
    slowdown_page: tuple[str, Page],
) -> None:
    _, monitor = slowdown
    snap = monitor.latest
    assert snap is not None
    r = slowdown_report
    # every alert of the run, as the Snapshot's log had them (newest first there)
    assert [a["message"] for a in r["alerts"]] == [a.message for a in reversed(snap.alerts)]
    assert r["summary"]["alerts"] == len(snap.alerts) >= 2
    assert r["summary"]["bottlenecks"] == 1 and r["summary"]["actions"] == 0
    assert r["ingest"]["accepted"] == snap.ingest.accepted == 660
    assert r["ingest"]["rejected_total"] == 0
    (rec,) = r["recommendations"]
    assert rec["title"] == "Cut api-server latency"
    assert r["summary"]["health_source"] == "recorded"
    (comp,) = r["summary"]["components"]
    assert comp["component"] == "api-server" and comp["lowest_status"] == "critical"
    assert r["host"] == snap.host
    _, page = slowdown_page
    summary = page.text("summary")
    assert f"raised {len(snap.alerts)} alerts" in summary and "1 bottleneck" in summary
    assert "660 lines accepted, 0 rejected" in page.text("ingest")
    assert "Cut api-server latency" in page.text("findings")
    assert page.text("tuning") == "Tuning No tuning action was proposed or applied in this period."
    assert "No machine readings were stored" in page.text("resources")


def test_the_data_behind_the_charts_is_embedded_and_equals_the_json(
    slowdown_report: dict[str, Any], slowdown_page: tuple[str, Page]
) -> None:
    html, page = slowdown_page
    data = page.data()
    assert data == json.loads(render_json(slowdown_report))
    (chart,) = data["charts"]["latency"]
    assert chart["component"] == "api-server" and chart["target_ms"] == 100
    assert len(chart["t"]) == len(chart["p95"]) > 10
    assert max(p for p in chart["p95"] if p is not None) > 300  # the slowdown
    (hist,) = data["charts"]["histograms"]
    assert sum(b[2] for b in hist["bins"]) == pytest.approx(600)
    # one chart per component and one distribution, inline SVG with axes and a legend
    assert html.count("<svg") == 2
    assert "api-server: latency percentiles" in html and "target 100 ms" in html
    assert "latency (ms)" in html and "time (UTC" in html


def test_actions_in_the_journal_are_shown_with_their_effect(tmp_path: Path) -> None:
    replayed(tmp_path)
    journal = SqliteJournal(tmp_path / "vtmon.db")
    action = TuningAction(
        id="a4",
        strategy="enable_caching",
        actuator="knob",
        target="api.cache_enabled",
        component="api-server",
        bottleneck="latency:api-server",
        bottleneck_type="latency",
        title="Enable caching in api-server: api.cache_enabled 0 -> 1",
        why="latency:api-server (high): api-server p95 latency is 359 ms.",
        expected="p95 down by about 60 %",
        previous=0,
        value=1,
        metric="p95 api-server",
        before=359.0,
        after=120.0,
        effectiveness=0.9,
        state=ActionState.KEPT,
        proposed_at=START + 41,
        applied_at=START + 42,
        decided_at=START + 58,
        message="Kept: p95 api-server 359 ms -> 120 ms.",
    )
    journal.record(Entry(action, in_effect=True))
    journal.record(
        Entry(replace_state(action, "a5", ActionState.REVERTED, START + 200), reverted=START + 260)
    )
    journal.close()
    store = HistoryStore.open(tmp_path)
    report = build_report(store, T0, T1)
    store.close()
    assert [a["id"] for a in report["actions"]] == ["a4"]  # a5 is after the period
    page = Page(render_html(report))
    head, row = page.rows("tuning")[:2]
    cells = dict(zip(head, row, strict=True))
    assert cells["action"].startswith("a4 Enable caching in api-server")
    assert "latency:api-server (high)" in cells["answered"]
    assert cells["metric: before → after"] == "p95 api-server: 359 ms → 120 ms"
    assert cells["effectiveness"] == "90 %"
    assert cells["decision"].startswith("kept")
    assert report["summary"]["actions"] == 1


def replace_state(a: TuningAction, aid: str, state: ActionState, t: float) -> TuningAction:
    from dataclasses import replace

    return replace(a, id=aid, state=state, proposed_at=t, applied_at=t + 1, decided_at=t + 60)


def test_a_bottleneck_that_started_before_the_period_is_on_its_timeline(
    slowdown: tuple[HistoryStore, Monitor],
) -> None:
    store, _ = slowdown
    late = build_report(store, START + 50, START + 55)
    (b,) = late["bottlenecks"]
    assert b["started"] < START + 50 and b["duration_s"] == pytest.approx(5.0)
    assert late["alerts"] == []  # the alerts came before


def test_bottlenecks_escalate_and_end_when_vtmon_stops(tmp_path: Path) -> None:
    clock = ManualClock()
    store = HistoryStore.open(tmp_path, clock=clock)
    b = {"id": "memory:api", "type": "memory", "severity": "high", "component": "api",
         "description": "api heap is 85 MB of its 100 MB budget.", "impact": 0.7,
         "started": START + 5, "resolved": None, "causes": []}  # fmt: skip
    store.add_findings(
        [
            Finding(START, "start", "", {"host": "h1"}),
            Finding(START + 20, "bottleneck", "api", b),
            Finding(START + 40, "bottleneck", "api", {**b, "severity": "critical", "impact": 0.9}),
            Finding(START + 60, "stop", "", {}),
            Finding(START + 100, "start", "", {"host": "h1"}),
            Finding(START + 110, "bottleneck", "api", {**b, "started": START + 105}),
        ]
    )
    store.flush()
    r = build_report(store, START, START + 200)
    first, second = r["bottlenecks"]
    assert first["severity"] == "critical" and first["impact"] == 0.9  # at its worst
    assert first["end"] == "vtmon stopped" and first["ended"] == START + 60
    assert first["duration_s"] == 55
    assert second["end"] == "active at the end of the period" and second["ended"] is None
    assert [b["id"] for b in r["critical_bottlenecks"]] == ["memory:api"]
    assert r["summary"]["health_source"] == "none" and r["summary"]["status"] is None
    text = Page(render_html(r)).text("bottlenecks")  # renders whatever fields a row lacks
    assert "api heap is 85 MB" in text and "vtmon stopped" in text
    # findings go with the longest retention
    store.maintain(now=START + 91 * 86400)
    assert store.findings() == []
    store.close()


def test_a_count_an_older_vtmon_stored_beyond_any_float_is_clamped_in_report_and_scrape(
    tmp_path: Path,
) -> None:
    # An older vtmon added a client.dropped count of any size to its total: its Snapshot, and
    # the minute's ingest finding in the history file, then held a 400-digit number, on which
    # the report's page and every /metrics scrape failed.
    clock = ManualClock()
    store = HistoryStore.open(tmp_path, clock=clock)
    monitor = Monitor(
        Config(), clock=clock, collector=NullCollector(), sensors=NullSensors(), store=store
    )
    exporter = PrometheusExporter(monitor)
    monitor.submit(Batch(accepted=5))
    monitor.connections.client_dropped = 10**400  # as the older client.dropped left it
    monitor.tick()
    text = exporter.exposition().decode()
    scraped = {f.name: f for f in text_string_to_metric_families(text)}
    dropped = {s.labels["by"]: s.value for s in scraped["vtmon_samples_dropped"].samples}
    assert dropped == {"engine": 0.0, "client": float(2**63 - 1)}
    clock.advance(61)
    monitor.tick()
    monitor.stop()
    reopened = HistoryStore.open(tmp_path)
    assert [f.data["client_dropped"] for f in reopened.findings(kinds=("ingest",))] == [10**400]
    report = build_report(reopened, START - 10, START + 100)
    reopened.close()
    assert report["ingest"]["client_dropped"] == 2**63 - 1
    assert report["ingest"]["accepted"] == 5
    ingest = Page(render_html(report)).text("ingest")
    assert "9,223,372,036,854,775,807 samples dropped by clients" in ingest
    assert json.loads(render_json(report))["ingest"]["client_dropped"] == 2**63 - 1


# --- safety -----------------------------------------------------------------------------------


def test_the_page_loads_nothing_from_anywhere(slowdown_page: tuple[str, Page]) -> None:
    html, page = slowdown_page
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            if name in ("src", "href", "xlink:href", "action", "data", "poster", "srcset"):
                v = (value or "").strip().lower()
                assert not v.startswith(("http:", "https:", "//")), (tag, name, value)
                assert "//" not in v, (tag, name, value)
        assert tag not in ("link", "iframe", "img", "object", "embed", "base"), tag
        if tag == "script":
            assert "src" not in attrs and attrs.get("type") == "application/json"
    assert "@import" not in html and "url(" not in html
    # the only absolute URLs are SVG's namespace names, which are never fetched
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg"}
    assert all(a.get("href", "").startswith("#") for t, a in page.tags if t == "a")
    assert "kozea" not in html.lower() and "pygal.js" not in html
    # nothing to run: the one script element is data
    assert [a.get("type") for a, _ in page.scripts] == ["application/json"]


def ninety_seconds(folder: Path, second: Callable[[Monitor, int], Batch]) -> dict[str, Any]:
    """The report of a history fed for 90 s, ``second(monitor, n)`` giving second n's batch."""
    clock = ManualClock()
    store = HistoryStore.open(folder, clock=clock)
    monitor = Monitor(
        Config(), clock=clock, collector=NullCollector(), sensors=NullSensors(), store=store
    )
    for n in range(90):
        monitor.submit(second(monitor, n))
        monitor.tick()
        clock.advance(1)
    monitor.stop()
    reopened = HistoryStore.open(folder)
    report = build_report(reopened, START - 10, START + 100)
    reopened.close()
    return report


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """A store fed a latency series whose name, tag and component are markup."""
    key = SeriesKey(EVIL, (("component", EVIL), ("note", EVIL_TAG)), Kind.DISTRIBUTION)

    def second(monitor: Monitor, n: int) -> Batch:  # 20x the default target
        batch = Batch(dist={key: DistBuf([2000.0] * 20)}, accepted=20)
        batch.rejected["bad syntax"] = 1
        return batch

    report = ninety_seconds(tmp_path_factory.mktemp("hostile"), second)
    return render_html(report), report


def test_names_tags_and_messages_from_the_socket_are_shown_as_text(
    hostile: tuple[str, dict[str, Any]],
) -> None:
    html, report = hostile
    assert EVIL not in html and "<img" not in html and "onerror=alert(2)>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    page = Page(html)
    # no element came from the data: one script (the JSON data), no img
    assert [t for t, _ in page.tags if t in ("script", "img")] == ["script"]
    head, row = page.rows("latency")[:2]
    cells = dict(zip(head, row, strict=True))
    assert cells["series"].startswith(EVIL) and EVIL_TAG in cells["series"]  # read as text
    assert cells["component"] == EVIL
    # the engine's own sentences quote the name: they are text too
    assert report["alerts"] and any(EVIL in a["message"] for a in report["alerts"])
    assert f"{EVIL} p95 latency is" in page.text("bottlenecks")
    # charts: the name is in their titles, escaped by the SVG writer
    assert f"{EVIL}: latency percentiles".replace("<", "&lt;").replace(">", "&gt;") in html
    # and the embedded data gives back the exact strings
    data = page.data()
    assert data["metrics"]["latency"][0]["name"] == EVIL
    assert data["metrics"]["latency"][0]["tags"]["note"] == EVIL_TAG
    assert report["ingest"]["rejected"] == {"bad syntax": 90}
    assert page.rows("ingest")[1] == ["bad syntax", "90"]


def test_connections_refused_at_the_cap_are_in_the_ingest_paragraph(tmp_path: Path) -> None:
    key = SeriesKey("api.request_latency")

    def second(monitor: Monitor, n: int) -> Batch:
        monitor.connections.refused = n // 30  # as the socket server counts them
        return Batch(dist={key: DistBuf([20.0])}, accepted=1)

    report = ninety_seconds(tmp_path, second)
    assert report["ingest"]["refused"] == 2
    text = Page(render_html(report)).text("ingest")
    assert "2 connections refused ([limits] max_connections were open)" in text


# --- the command ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    replayed(folder)
    return folder


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def one_sentence_error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_report_writes_html_and_json_files(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "incident.html"
    period = ["--from", "2023-11-14T22:13:00+00:00", "--to", "2023-11-14T22:15:00+00:00"]
    r = run("report", "--data-dir", str(data_dir), *period, "-o", str(out))
    assert r.exit_code == 0, r.output
    assert f"to {out}" in r.output
    page = Page(out.read_text())
    assert "api.request_latency" in page.text("latency")
    r = run("report", "--data-dir", str(data_dir), *period, "--format", "json", "-o", "-")
    assert r.exit_code == 0
    data = json.loads(r.output)
    assert data["period"]["start"] == START - 20 and data["period"]["duration_s"] == 120
    assert data["metrics"]["latency"][0]["count"] == 600


def test_report_default_file_name_has_the_time(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # the default end is now: the period holds the recording
    r = run("report", "--data-dir", str(data_dir), "--from", "2023-11-14T22:00:00+00:00")
    assert r.exit_code == 0, r.output
    (name,) = os.listdir(tmp_path)
    assert re.fullmatch(r"vtmon-report-\d{8}-\d{6}\.html", name)


def test_a_report_in_vtmon_s_place_is_private_one_named_with_o_follows_the_umask(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    period = ["--from", "2023-11-14T22:13:00+00:00", "--to", "2023-11-14T22:15:00+00:00"]
    old = os.umask(0o022)
    try:
        assert run("report", "--data-dir", str(data_dir), *period).exit_code == 0
        (made,) = tmp_path.glob("vtmon-report-*.html")
        assert made.stat().st_mode & 0o777 == 0o600
        out = tmp_path / "to-share.html"
        assert run("report", "--data-dir", str(data_dir), *period, "-o", str(out)).exit_code == 0
        assert out.stat().st_mode & 0o777 == 0o644  # the user named it: their umask decides
    finally:
        os.umask(old)


def test_a_report_leaves_an_open_default_data_folder_as_it_found_it(data_dir: Path) -> None:
    # A report changes nothing, not even modes (the next vtmon that keeps history there
    # narrows them: tests/test_files.py).
    own = Path(os.environ["XDG_DATA_HOME"]) / "vtmon"  # the user data folder, in the test
    own.mkdir(parents=True)
    shutil.copy(data_dir / "vtmon.db", own / "vtmon.db")
    own.chmod(0o755)
    (own / "vtmon.db").chmod(0o644)
    period = ["--from", "2023-11-14T22:13:00+00:00", "--to", "2023-11-14T22:15:00+00:00"]
    assert run("report", *period, "--format", "json", "-o", "-").exit_code == 0
    assert own.stat().st_mode & 0o777 == 0o755
    assert (own / "vtmon.db").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "soon"], "--since takes a duration such as 30m, 1h, 1h30m or 2d; got 'soon'."),
        (["--since", "0m"], "--since takes a duration"),
        (["--from", "yesterday"], "--from takes an ISO 8601 time"),
        (["--since", "1h", "--to", "2023-11-14T22:15"], "Give either --since or --from/--to"),
        (["--from", "2023-11-14T22:15", "--to", "2023-11-14T22:14"], "--from must be before"),
    ],
)
def test_report_refuses_a_bad_period_in_one_sentence(
    data_dir: Path, args: list[str], says: str
) -> None:
    line = one_sentence_error(run("report", "--data-dir", str(data_dir), *args))
    assert says in line


def test_report_of_a_period_with_no_data_says_what_the_file_holds(data_dir: Path) -> None:
    line = one_sentence_error(run("report", "--data-dir", str(data_dir), "--since", "1h"))
    assert line.startswith("Error: No data between ")
    assert "it holds data from 2023-11-14T22:13:20" in line


def test_report_without_a_history_file_says_so(tmp_path: Path) -> None:
    line = one_sentence_error(run("report", "--data-dir", str(tmp_path / "none")))
    assert "There is no history file" in line
    assert not (tmp_path / "none").exists()  # a report creates nothing


@pytest.mark.parametrize("where", ["middle", "header"])
def test_report_of_a_damaged_history_says_so_and_changes_nothing(
    tmp_path: Path, where: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    filled_file(data, ManualClock())
    if where == "middle":
        damage_middle(data / "vtmon.db")
    else:
        with open(data / "vtmon.db", "r+b") as f:
            f.write(b"this is no SQLite header")
    before = listing(data)
    out = tmp_path / "r.html"
    period = ["--from", "2023-11-14T22:00:00+00:00", "--to", "2023-11-14T23:00:00+00:00"]
    line = one_sentence_error(run("report", "--data-dir", str(data), *period, "-o", str(out)))
    assert line.startswith(f"Error: The history file {data / 'vtmon.db'} is damaged (")
    assert "no report was written" in line and "left as it is" in line
    assert not out.exists()
    assert listing(data) == before  # nothing moved aside, nothing written, no -wal left


def test_a_report_from_a_store_that_moved_its_damaged_file_aside_says_so(tmp_path: Path) -> None:
    clock = ManualClock()
    keys = filled_file(tmp_path, clock)
    damage_middle(tmp_path / "vtmon.db")
    store = HistoryStore.open(tmp_path, clock=clock)
    assert store.check()  # what the writer does as it starts: moved aside
    t = int(clock.time())
    store.add_seconds([(keys[0], Kind.DISTRIBUTION, t, Sketch.of([5.0]))])
    store.flush()
    report = build_report(store, t - 60, t + 60)
    assert "damaged" in store.notice and report["history_note"] == store.notice
    html = render_html(report)
    assert store.notice in html  # under the page's title
    store.close()


def test_report_where_only_the_demo_ran_points_to_demo(tmp_path: Path) -> None:
    (tmp_path / "demo.db").write_bytes(b"")  # `vtmon demo --data-dir` keeps demo.db there
    line = one_sentence_error(run("report", "--data-dir", str(tmp_path)))
    assert "only the demo's (demo.db): pass --demo" in line


def test_durations() -> None:
    assert parse_duration("90s") == 90 and parse_duration("1h30m") == 5400
    assert parse_duration("2d") == 172800 and parse_duration("45") == 45
    for bad in ("", "h", "1x", "-1h", "1h 2", "0"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_no_data_is_an_error_not_an_empty_report(tmp_path: Path) -> None:
    store = HistoryStore.open(tmp_path)
    with pytest.raises(NoData, match="it holds no data yet"):
        build_report(store, T0, T1)
    store.close()


# --- the console's `e` ------------------------------------------------------------------------


async def test_e_writes_the_report_and_says_where(tmp_path: Path) -> None:
    from vtmon.tui.app import VtmonApp

    clock = ManualClock()
    store = HistoryStore.open(tmp_path / "data", clock=clock)
    monitor = Monitor(
        Config(), clock=clock, collector=NullCollector(), sensors=NullSensors(), store=store
    )
    replay_into(monitor, FIXTURE, clock)  # not flushed: `e` writes what is pending first
    app = VtmonApp(monitor)
    app.report_dir = tmp_path
    async with app.run_test(size=(140, 40)) as pilot:
        await start(pilot, monitor)
        await pilot.press("e")
        await app.workers.wait_for_complete()
        await pilot.pause()
        said = [(n.title, n.message) for n in app._notifications]
    (path,) = tmp_path.glob("vtmon-report-*.html")
    assert ("Report written", str(path)) in said
    page = Page(path.read_text())
    assert "api.request_latency" in page.text("latency")
    assert page.data()["period"]["duration_s"] == 3600  # the live chart: the last hour
    assert page.data()["bottlenecks"][0]["id"] == "latency:api-server"
    monitor.stop()


async def test_e_with_nothing_stored_yet_says_so(tmp_path: Path) -> None:
    from vtmon.tui.app import VtmonApp

    clock = ManualClock()
    store = HistoryStore.open(tmp_path / "data", clock=clock)
    monitor = Monitor(
        Config(), clock=clock, collector=NullCollector(), sensors=NullSensors(), store=store
    )
    app = VtmonApp(monitor)
    app.report_dir = tmp_path
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("e")  # before the first Snapshot: the file holds nothing
        await app.workers.wait_for_complete()
        await pilot.pause()
        said = [(n.title, n.message) for n in app._notifications if n.severity == "error"]
    assert said == [("Report", said[0][1])] and "it holds no data yet" in said[0][1]
    assert list(tmp_path.glob("vtmon-report-*")) == []
    monitor.stop()


async def test_e_with_history_off_says_the_report_needs_it(tmp_path: Path) -> None:
    from vtmon.tui.app import VtmonApp

    clock = ManualClock()
    monitor = Monitor(Config(), clock=clock, collector=NullCollector(), sensors=NullSensors())
    app = VtmonApp(monitor)
    app.report_dir = tmp_path
    async with app.run_test(size=(140, 40)) as pilot:
        await start(pilot, monitor)
        await pilot.press("e")
        await pilot.pause()
        said = [n.message for n in app._notifications]
    assert said == ["History is off, and the report is built from the history file."]
    assert not app.workers and not list(tmp_path.iterdir())


# --- in a real browser ------------------------------------------------------------------------


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-
    pipe``: JSON messages ending in a NUL byte, commands on fd 3, answers on fd 4), with the
    standard library only. Every message that is not an answer (console entries, network
    requests, page events) is kept in ``events``."""

    def __init__(self, exe: str) -> None:
        cmd_r, self._w = os.pipe()
        self._r, ans_w = os.pipe()
        # Chromium wants the pipe ends as fds 3 and 4; bash moves them there in the
        # child. Numbered above 4 first, so neither move can overwrite the other.
        cmd_hi = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, 10)
        ans_hi = fcntl.fcntl(ans_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(cmd_r)
        os.close(ans_w)
        cmd_r, ans_w = cmd_hi, ans_hi
        self.profile = tempfile.mkdtemp(prefix="vt-chromium-")
        args = [
            exe, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
            "--remote-debugging-pipe", f"--user-data-dir={self.profile}", "about:blank",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            [
                "/bin/bash",  # dash takes single-digit fds only
                "-c",
                f'exec "$@" 3<&{cmd_r} 4>&{ans_w} {cmd_r}<&- {ans_w}>&-',
                "sh",
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(cmd_r, ans_w),
        )
        os.close(cmd_r)
        os.close(ans_w)
        self._buf = b""
        self._n = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        self._n += 1
        msg: dict[str, Any] = {"id": self._n, "method": method, "params": params or {}, **kw}
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._next()
            if m.get("id") == self._n:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]
            self.events.append(m)

    def wait_for(self, method: str) -> dict[str, Any]:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._next())
        return next(e for e in self.events if e.get("method") == method)

    def _next(self, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the pipe")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\0", 1)
        return json.loads(line)

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.proc.wait(10)
        except (OSError, TimeoutError, EOFError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(10)
        finally:
            os.close(self._w)
            os.close(self._r)
            shutil.rmtree(self.profile, ignore_errors=True)


def test_the_report_renders_in_chromium_without_javascript(
    slowdown_page: tuple[str, Page], tmp_path: Path
) -> None:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it).")
    html, _ = slowdown_page
    page = tmp_path / "report.html"
    page.write_text(html)
    browser = Chromium(exe)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]

        def tab(method: str, params: dict[str, Any] | None = None) -> Any:
            return browser.send(method, params, sessionId=session)

        for domain in ("Page", "Runtime", "Log", "Network"):
            tab(f"{domain}.enable")
        size = {"width": 1280, "height": 2000, "deviceScaleFactor": 1, "mobile": False}
        tab("Emulation.setDeviceMetricsOverride", size)
        # First as a reader's browser opens it, scripts allowed: it must fetch nothing and
        # log no error (a disabled browser would not even try to fetch a script).
        tab("Page.navigate", {"url": page.as_uri()})
        browser.wait_for("Page.loadEventFired")
        fetched = [
            e["params"]["request"]["url"]
            for e in browser.events
            if e.get("method") == "Network.requestWillBeSent"
        ]
        assert fetched == [page.as_uri()]  # the page itself, nothing else
        first_load = list(browser.events)
        # Then with JavaScript off: it must look the same.
        browser.events.clear()
        tab("Emulation.setScriptExecutionDisabled", {"value": True})
        tab("Page.reload")
        browser.wait_for("Page.loadEventFired")

        def js(expression: str) -> Any:
            # DevTools' own evaluation; the page's scripts stay disabled
            return tab("Runtime.evaluate", {"expression": expression, "returnByValue": True})[
                "result"
            ]["value"]

        boxes = js(
            "[...document.querySelectorAll('figure svg')]"
            ".map(e => {const r = e.getBoundingClientRect(); return [r.width, r.height]})"
        )
        assert len(boxes) == 2 and all(w > 400 and h > 100 for w, h in boxes), boxes
        assert js("document.querySelectorAll('figure svg path.line').length") > 0
        assert js("JSON.parse(document.getElementById('vtmon-report-data').textContent).host")
        light = js("getComputedStyle(document.body).color")
        shot = tab("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        png = base64.b64decode(shot["data"])
        assert png.startswith(b"\x89PNG") and len(png) > 20_000
        (tmp_path / "report.png").write_bytes(png)
        tab(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
        )
        assert js("getComputedStyle(document.body).color") != light  # the dark palette
        pdf = base64.b64decode(tab("Page.printToPDF", {"printBackground": True})["data"])
        assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
        problems = [
            e
            for e in (*first_load, *browser.events)
            if e.get("method") in ("Runtime.exceptionThrown", "Runtime.consoleAPICalled")
            or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
        ]
        assert problems == []
    finally:
        browser.close()
