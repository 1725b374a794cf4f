"""The analysis on screen: bottlenecks, alerts, regressions, forecasts, health and the ``b``
detail screen, driven as a user would (real Monitor on a ManualClock, real app, Pilot keys).

The engine that fills the analysis fields is tested on its own; here a test decides what it
found, and ``WithAnalysis`` lays that over every snapshot the real Monitor publishes, through
the same subscription the app always uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.screen import feed, same_colour, screen_monitor, screen_text, start
from vtmon.clock import ManualClock
from vtmon.engine.monitor import Monitor
from vtmon.model import (
    Alert,
    Bottleneck,
    Cause,
    Evidence,
    Health,
    Prediction,
    Recommendation,
    Regression,
    SeriesKey,
    Severity,
    Snapshot,
    make_tags,
)
from vtmon.tui import fmt, keys
from vtmon.tui.app import VtmonApp
from vtmon.tui.detail import BottleneckScreen
from vtmon.tui.help import HelpScreen
from vtmon.tui.latency import LatencyTable
from vtmon.tui.live import LiveStatic

API = SeriesKey("api.request_latency", make_tags({"component": "api-server"}))
VOICE = SeriesKey("voice.synth_latency", make_tags({"component": "voice-engine"}))
TERM = SeriesKey("terminal.command_latency", make_tags({"component": "terminal-processor"}))
START = 1_700_000_000.0


class WithAnalysis:
    """A real Monitor's snapshots with analysis fields chosen by the test."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.fields: dict[str, Any] = {}

    def overlay(self, snap: Snapshot) -> Snapshot:
        return replace(snap, **self.fields)

    @property
    def latest(self) -> Snapshot | None:
        snap = self.monitor.latest
        return None if snap is None else self.overlay(snap)

    def subscribe(self, fn: Callable[[Snapshot], None]) -> Callable[[], None]:
        return self.monitor.subscribe(lambda snap: fn(self.overlay(snap)))


@pytest.fixture
def monitor(tmp_path: Path, clock: ManualClock) -> Monitor:
    m = screen_monitor(tmp_path, clock)
    feed(m, clock, {API: [50.0] * 60 + [520.0] * 40, VOICE: [120.0] * 20, TERM: [20.0] * 30})
    return m


@pytest.fixture
def source(monitor: Monitor) -> WithAnalysis:
    return WithAnalysis(monitor)


# -- what the engine might have found ------------------------------------------------------

CPU_CAUSE = Cause("psi_cpu_some", "CPU saturation (PSI cpu some)", 4.0, 61.0, 0.82)


def latency_bn(now: float) -> Bottleneck:
    return Bottleneck(
        id="latency_p95:api-server",
        type="latency",
        severity=Severity.CRITICAL,
        component="api-server",
        description="api-server p95 latency is 520 ms over the last minute, 5.2x its 100 ms "
        "target.",
        impact=0.72,
        confidence=0.85,
        evidence=(
            Evidence("p95 (1m) api.request_latency", 520.0, 200.0, "ms"),
            Evidence("PSI cpu some avg10", 61.0, 10.0, "%"),
        ),
        suggested_action="Profile api.request_latency for lock contention.",
        started=now - 130,
        causes=(CPU_CAUSE, Cause("iowait", "IO wait", 1.0, 3.0, 0.2)),
        rule="latency_p95",
    )


def memory_bn(now: float) -> Bottleneck:
    return Bottleneck(
        id="memory:voice-engine",
        type="memory",
        severity=Severity.HIGH,
        component="voice-engine",
        description="voice-engine heap is 172 MB of its 200 MB budget (86 %).",
        impact=0.70,
        confidence=0.9,
        evidence=(Evidence("memory_heap_used", 172.0, 160.0, "MB"),),
        suggested_action="Trigger garbage collection in voice-engine.",
        started=now - 45,
        rule="memory",
    )


def errors_bn(now: float) -> Bottleneck:
    return Bottleneck(
        id="errors:terminal-processor",
        type="errors",
        severity=Severity.MEDIUM,
        component="terminal-processor",
        description="terminal-processor failed 0.3 % of its operations.",
        impact=0.32,
        confidence=0.7,
        evidence=(Evidence("error rate", 0.3, 0.1, "%"),),
        suggested_action="Read terminal-processor's parse_error log lines.",
        started=now - 600,
        rule="errors",
    )


def disk_bn(now: float) -> Bottleneck:
    return Bottleneck(
        id="disk:/",
        type="io",
        severity=Severity.LOW,
        component="system",
        description="/ is 81 % full.",
        impact=0.12,
        confidence=0.95,
        evidence=(Evidence("disk used /", 81.0, 80.0, "%"),),
        suggested_action="Rotate logs on /.",
        started=now - 30,
        rule="disk",
    )


def resolved_bn(now: float) -> Bottleneck:
    return replace(
        memory_bn(now),
        id="memory:api-server",
        component="api-server",
        started=now - 2000,
        resolved=now - 1500,
    )


def findings(now: float) -> dict[str, Any]:
    """Three active bottlenecks handed over out of impact order, and everything else."""
    return {
        "bottlenecks": (errors_bn(now), latency_bn(now), memory_bn(now)),
        "resolved": (resolved_bn(now),),
        "alerts": (
            Alert(now - 900, Severity.LOW, "resolved", "resolved: memory in api-server", "api"),
            Alert(now - 5, Severity.CRITICAL, "bottleneck", "latency in api-server", "api"),
            Alert(now - 200, Severity.MEDIUM, "regression", "api p95 +38 % since", "api"),
        ),
        "regressions": (
            Regression("api.request_latency", "api-server", "p95", 120, 166, 0.38, now - 700, now),
        ),
        "predictions": (
            Prediction("voice-engine", "memory", "MB", 172, 230, 900, 0.8, limit=200, eta_s=720),
            Prediction("api-server", "p95", "ms", 500, 520, 900, 0.5),
        ),
        "health": (
            Health("api-server", 0.45, "critical"),
            Health("terminal-processor", 0.7, "warning"),
            Health("voice-engine", 0.85, "good"),
            Health("overall", 0.58, "critical"),
        ),
        "recommendations": (
            Recommendation(
                "all",
                "medium",
                "Cross-component communication",
                "The worst p95 is above 500 ms.",
                "fewer timeouts",
                "Batch calls between components.",
            ),
            Recommendation(
                "api-server",
                "high",
                "Cut api-server latency",
                "p95 is 5.2x the target.",
                "p95 back under 200 ms",
                "Cache the user lookup.",
            ),
        ),
    }


# -- helpers --------------------------------------------------------------------------------


def panel_text(app: VtmonApp, widget_id: str) -> str:
    return app.main_screen.query_one(f"#{widget_id}", LiveStatic).shown_text


def style_of(app: VtmonApp, word: str):
    """The style of the first cell on screen that starts ``word``."""
    for strip in app.screen._compositor.render_strips():
        for seg in strip:
            if word in seg.text:
                return seg.style
    raise AssertionError(f"{word!r} is not on screen")


# -- the Bottlenecks panel ------------------------------------------------------------------


async def test_rows_most_impact_first_with_cause_and_action(
    monitor: Monitor, source: WithAnalysis, clock: ManualClock
) -> None:
    now = clock.time()
    source.fields = findings(now)
    app = VtmonApp(source)
    async with app.run_test(size=(160, 45)) as pilot:
        await start(pilot, monitor)
        text = panel_text(app, "bottlenecks-text")
        lines = text.splitlines()
        order = [next(i for i, ln in enumerate(lines) if w in ln) for w in ("CRIT", "HIGH", "MED")]
        assert order == sorted(order)  # impact 0.72, 0.70, 0.32, whatever order they came in
        crit = lines[order[0]]
        assert "latency" in crit and "api-server" in crit and "for 2m10s" in crit
        assert "api-server p95 latency is 520 ms" in crit
        assert "likely cause: CPU saturation (PSI cpu some) 4% -> 61%" in text
        assert "Profile api.request_latency for lock contention." in text
        assert "Trigger garbage collection in voice-engine." in text
        panel = app.query_one("#bottlenecks")
        assert "3 active" in str(panel.border_title)
        assert "1 resolved in 1h" in str(panel.border_subtitle)
        assert "likely cause: CPU saturation" in screen_text(app)  # on screen, not scrolled off
        assert app.query_one("#latency-chart").display  # the chart gives way, not away


async def test_severity_colours_follow_the_theme_and_words_tell_them_apart(
    monitor: Monitor, source: WithAnalysis, clock: ManualClock
) -> None:
    source.fields = {
        "bottlenecks": (
            latency_bn(clock.time()),
            memory_bn(clock.time()),
            errors_bn(clock.time()),
            disk_bn(clock.time()),
        )
    }
    app = VtmonApp(source)
    async with app.run_test(size=(160, 45)) as pilot:
        await start(pilot, monitor)
        for theme in ("vtmon-dark", "vtmon-colorblind"):
            app.theme = theme
            await pilot.pause()
            t = app.current_theme
            crit = style_of(app, "CRIT")
            assert crit.reverse and same_colour(crit.color, t.error)
            assert same_colour(style_of(app, "HIGH").color, t.error)
            assert style_of(app, "HIGH").bold
            assert same_colour(style_of(app, "MED").color, t.warning)
            assert not same_colour(style_of(app, "LOW").color, t.error)
        # Critical and high share a colour; the word and the reversed block tell them apart.
        assert app.query_one("#bottlenecks").has_class("-bad")


async def test_empty_panel_counts_what_resolved_in_the_last_hour(
    monitor: Monitor, source: WithAnalysis, clock: ManualClock
) -> None:
    now = clock.time()
    old = replace(resolved_bn(now), id="old", started=now - 9000, resolved=now - 8000)
    source.fields = {"resolved": (resolved_bn(now), old)}
    app = VtmonApp(source)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        text = panel_text(app, "bottlenecks-text")
        assert text.startswith("No bottlenecks. 1 resolved in the last hour.")
        assert "bottleneck" not in app.query_one("#header").render().plain


async def test_regressions_line(monitor: Monitor, source: WithAnalysis, clock: ManualClock) -> None:
    now = clock.time()
    source.fields = {"regressions": findings(now)["regressions"]}
    app = VtmonApp(source)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        text = panel_text(app, "bottlenecks-text")
        assert f"Regressions api-server p95 +38 % since {fmt.clock_short(now - 700)}" in text


async def test_prediction_line_only_when_a_limit_is_near(
    monitor: Monitor, source: WithAnalysis, clock: ManualClock
) -> None:
    now = clock.time()
    near, far = findings(now)["predictions"]
    source.fields = {"predictions": (near, far)}
    app = VtmonApp(source)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        text = panel_text(app, "bottlenecks-text")
        assert "voice-engine memory reaches its 200 MB limit in ~12 min" in text
        assert "api-server p95" not in text  # no eta: nothing to warn about
        source.fields = {"predictions": (far,)}
        clock.advance(1)
        await start(pilot, monitor)
        assert "Forecast" not in panel_text(app, "bottlenecks-text")


# -- the detail screen ----------------------------------------------------------------------


async def test_b_opens_the_detail_and_escape_closes(
    monitor: Monitor, source: WithAnalysis, clock: ManualClock
) -> None:
    now = clock.time()
    source.fields = findings(now)
    app = VtmonApp(source)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        await pilot.press("b")
        assert isinstance(app.screen, BottleneckScreen)
        detail = app.screen
        assert detail.selected_bottleneck.id == "latency_p95:api-server"  # most impact
        text = app.screen.query_one("#detail-text", LiveStatic).shown_text
        # evidence: name, value, threshold, unit
        row = next(ln for ln in text.splitlines() if "p95 (1m) api.request_latency" in ln)
        assert row.split()[-3:] == ["520", "200", "ms"]
        # every ranked cause with before → after and its score
        assert "1  CPU saturation (PSI cpu some)" in text and "4% → 61%" in text
        assert "2  IO wait" in text and "1% → 3%" in text
        assert "Profile api.request_latency for lock contention." in text
        # recommendations, highest priority first, with what to expect and how
        high, medium = text.index("Cut api-server latency"), text.index("Cross-component")
        assert high < medium
        assert "expected: p95 back under 200 ms" in text and "how: Cache the user lookup." in text
        # resolved history: type, component, start, end, duration, severity
        rb = resolved_bn(now)
        hist = next(ln for ln in text.splitlines() if fmt.clock(rb.started) in ln)
        assert hist.split() == [
            "memory",
            "api-server",
            fmt.clock(rb.started),
            fmt.clock(rb.resolved),
            "8m20s",
            "HIGH",
        ]
        assert "Bottleneck 1 of 3" in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, BottleneckScreen)


async def test_up_down_choose_the_bottleneck_and_it_stays_chosen(
    monitor: Monitor, source: WithAnalysis, clock: ManualClock
) -> None:
    now = clock.time()
    source.fields = findings(now)
    app = VtmonApp(source)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        await pilot.press("b")
        detail = app.screen
        assert isinstance(detail, BottleneckScreen)
        await pilot.press("down")
        assert detail.selected_bottleneck.id == "memory:voice-engine"
        text = detail.query_one("#detail-text", LiveStatic).shown_text
        assert "memory_heap_used" in text and "Trigger garbage collection" in text
        assert "Bottleneck 2 of 3" in str(detail.query_one("#detail-box").border_title)
        # A new, worse bottleneck arrives while reading: the selection stays on what is read.
        worse = replace(latency_bn(now), id="latency_p95:voice-engine", impact=0.9)
        source.fields = {**findings(now), "bottlenecks": (*findings(now)["bottlenecks"], worse)}
        clock.advance(1)
        await start(pilot, monitor)
        assert detail.selected_bottleneck.id == "memory:voice-engine"
        assert "Bottleneck 3 of 4" in str(detail.query_one("#detail-box").border_title)
        await pilot.press("up", "up", "up", "up")  # four rows: round to the start
        assert detail.selected_bottleneck.id == "memory:voice-engine"
        await pilot.press("b")  # b closes it too
        assert not isinstance(app.screen, BottleneckScreen)


async def test_detail_without_active_bottlenecks_still_shows_history(
    monitor: Monitor, source: WithAnalysis, clock: ManualClock
) -> None:
    source.fields = {"resolved": (resolved_bn(clock.time()),)}
    app = VtmonApp(source)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        await pilot.press("b")
        text = app.screen.query_one("#detail-text", LiveStatic).shown_text
        assert text.startswith("No active bottlenecks.")
        assert "memory  api-server" in text


# -- alerts ----------------------------------------------------------------------------------


async def test_alerts_log_newest_first_with_times(
    monitor: Monitor, source: WithAnalysis, clock: ManualClock
) -> None:
    now = clock.time()
    source.fields = {"alerts": findings(now)["alerts"]}
    app = VtmonApp(source)
    async with app.run_test(size=(160, 45)) as pilot:
        await start(pilot, monitor)
        lines = panel_text(app, "alerts-text").splitlines()
        assert lines == [
            f"{fmt.clock(now - 5)} CRIT latency in api-server",
            f"{fmt.clock(now - 200)} MED  api p95 +38 % since",
            f"{fmt.clock(now - 900)} LOW  resolved: memory in api-server",
        ]
        assert lines[0] in screen_text(app)


async def test_alerts_log_keeps_to_what_fits_and_counts_the_rest(
    monitor: Monitor, source: WithAnalysis, clock: ManualClock
) -> None:
    now = clock.time()
    source.fields = {
        "alerts": tuple(
            Alert(now - i, Severity.HIGH, "high_latency", f"alert {i}", "api") for i in range(40)
        )
    }
    app = VtmonApp(source)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        lines = panel_text(app, "alerts-text").splitlines()
        assert lines[0].endswith("alert 0") and len(lines) <= 8
        assert lines[-1] == f"+{40 - (len(lines) - 1)} older · b for all"
        await pilot.press("b")
        text = app.screen.query_one("#detail-text", LiveStatic).shown_text
        assert "alert 39" in text  # the older ones are one key away


# -- health ----------------------------------------------------------------------------------


async def test_health_in_header_and_per_component(
    monitor: Monitor, source: WithAnalysis, clock: ManualClock
) -> None:
    source.fields = {"health": findings(clock.time())["health"]}
    app = VtmonApp(source)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        header = screen_text(app).splitlines()[0]
        assert "health 0.58 critical" in header
        assert same_colour(style_of(app, "0.58 critical").color, app.current_theme.error)
        table = app.query_one(LatencyTable)
        assert "health" in {c.key for c in table.columns_in_use}
        assert table.get_cell(API.id, "health").plain.strip() == "0.45"
        assert table.severity_at(API.id, "health") is fmt.Severity.BAD
        assert table.get_cell(VOICE.id, "health").plain.strip() == "0.85"
        assert table.severity_at(VOICE.id, "health") is fmt.Severity.OK
        assert table.severity_at(TERM.id, "health") is fmt.Severity.WARN


async def test_the_engines_own_health_scores_are_shown(monitor: Monitor) -> None:
    # No overlay: the real Analyzer scores the fixture's data at the first tick. api-server's
    # p95 is 520 ms against 100 ms, so it loses the full 0.4 latency penalty: 0.60.
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        snap = await start(pilot, monitor)
        scores = {h.component: h.score for h in snap.health}
        assert scores["api-server"] == pytest.approx(0.6)
        table = app.query_one(LatencyTable)
        assert "health" in {c.key for c in table.columns_in_use}
        row = next(ln for ln in screen_text(app).splitlines() if "api.request_latency" in ln)
        assert row.split("│")[1].split()[-1] == "0.60"  # the latency panel's last column
        assert f"health {snap.overall_health.score:.2f}" in screen_text(app).splitlines()[0]


# -- sizes and keys -------------------------------------------------------------------------


async def test_80x24_shows_latency_rows_and_one_line_per_bottleneck(
    monitor: Monitor, source: WithAnalysis, clock: ManualClock
) -> None:
    source.fields = findings(clock.time())
    app = VtmonApp(source)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot, monitor)
        lines = screen_text(app).splitlines()
        assert "▲ 3 bottlenecks" in lines[0] and "health 0.58 crit" in lines[0]
        for name in ("api.request_latency", "voice.synth_latency", "terminal.command_latency"):
            assert any(name in ln for ln in lines), name
        for sev, comp in (("CRIT", "api-server"), ("HIGH", "voice-engine"), ("MED", "terminal")):
            assert any(sev in ln and comp in ln for ln in lines), sev
        assert any("reaches its 200 MB limit" in ln for ln in lines)
        health = next(ln for ln in lines if "api.request_latency" in ln)
        assert health.rstrip(" │").endswith("0.45")


async def test_more_bottlenecks_than_room_are_counted_never_dropped(
    monitor: Monitor, source: WithAnalysis, clock: ManualClock
) -> None:
    now = clock.time()
    many = tuple(
        replace(errors_bn(now), id=f"errors:c{i}", component=f"c{i}", impact=0.3 - i / 100)
        for i in range(12)
    )
    source.fields = {"bottlenecks": many}
    app = VtmonApp(source)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot, monitor)
        text = panel_text(app, "bottlenecks-text")
        shown = sum(1 for ln in text.splitlines() if " MED " in ln)
        assert 1 <= shown < 12
        assert f"+{12 - shown} more, lower impact · b for details" in text
        assert "▲ 12 bottlenecks" in screen_text(app).splitlines()[0]


async def test_b_is_in_the_registry_help_footer_and_palette(monitor: Monitor) -> None:
    app = VtmonApp(monitor)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot, monitor)
        action = keys.BY_ID["bottlenecks"]
        assert action.key == "b"
        assert "b Bottlenecks" in screen_text(app).splitlines()[-1]
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Bottlenecks (b)" in titles
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = str(app.screen.query_one("#help-text").render())
        assert action.help in help_text
