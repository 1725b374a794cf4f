"""The vtmon screen: renders Snapshots from the engine and turns keys into actions.

How snapshots arrive: the engine calls ``_on_snapshot`` from its own thread once a tick.
That callback only stores the snapshot as "newest" and posts a ``SnapshotReady`` message if
none is pending; the handler on the main thread takes whatever is newest at that moment. A
burst of ticks therefore collapses into one redraw (toolong does the same with
``can_replace``), and the screen never renders from the engine's thread.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import Event, Key, MouseDown, Resize
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker, WorkerState

from vtmon.model import WINDOWS, SeriesKey, Snapshot, TuningAction
from vtmon.tui import keys
from vtmon.tui.alerts import AlertsPanel
from vtmon.tui.bottlenecks import BottlenecksPanel
from vtmon.tui.detail import BottleneckScreen
from vtmon.tui.events import EventsPanel
from vtmon.tui.header import HeaderBar
from vtmon.tui.help import HelpScreen
from vtmon.tui.latency import CHART_SPANS_S, LIVE_SPAN_S, LatencyPanel, LatencyTable, duration
from vtmon.tui.resources import ResourcesPanel
from vtmon.tui.sensors import SensorsPanel
from vtmon.tui.source import EngineView, SnapshotSource, TuningDesk
from vtmon.tui.themes import DEFAULT_THEME, chart_defaults, load_themes
from vtmon.tui.tuning import (
    QUIT_KEEP,
    QUIT_REVERT,
    ConfirmScreen,
    QuitScreen,
    TuningPanel,
    applied_by_this_run,
    left_by_a_previous_run,
)
from vtmon.tui.tuning import applied as tuning_rows_applied

WINDOW_NAMES: tuple[str, ...] = tuple(name for name, _ in WINDOWS)
DEFAULT_WINDOW = "1m"
HISTORY_REFRESH_S = 15.0  # a long-span chart is read again this often, not every second
HISTORY_OFF = "History is off: only the last 5 minutes are kept"
REPORT_MIN_S = 3600.0  # `e` reports on the chart's span, and on at least this much
HELP_SCREEN = "help"
GC_FREEZE_AFTER_S = 3.0  # the screen is built and the first Snapshots are drawn by then


class SnapshotReady(Message):
    """A newer snapshot is waiting; carries nothing so a stale one can never be rendered."""


class VtmonApp(App[None]):
    CSS_PATH = "vtmon.tcss"
    TITLE = "vtmon"
    BINDINGS: ClassVar[list[BindingType]] = [*keys.bindings()]  # Textual's wider item type
    COMMAND_PALETTE_BINDING = keys.PALETTE_KEY
    # Side by side from 120 columns; charts only when there is height for them.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [
        (0, "-short"),
        (30, "-tall"),
        (45, "-huge"),
    ]

    def __init__(self, source: SnapshotSource, *, theme: str | None = None) -> None:
        super().__init__()
        self.source = source
        # What else it can do is known once: an engine holds its ingest for the screen, reads
        # its history, tunes and writes the report; a bare SnapshotSource only publishes.
        self.engine: EngineView | None = source if isinstance(source, EngineView) else None
        self.window = DEFAULT_WINDOW
        self.paused = False
        self.snapshots_rendered = 0  # how many snapshots reached the screen (tests, debugging)
        self.shown: Snapshot | None = None
        self._store_warning = ""  # the last one notified
        self._recovered_said = False  # "left applied by a previous run" was notified
        self._tuning_keys = (False, False)  # proposals to approve, actions to revert
        self.report_dir = Path.cwd()  # where `e` writes the HTML report
        self._lock = threading.Lock()
        self._newest: Snapshot | None = None
        self._pending = False
        self._unsubscribe: Callable[[], None] | None = None

        loaded = load_themes()
        for t in loaded.themes.values():
            self.register_theme(t)
        self.vtmon_themes: list[str] = sorted(loaded.themes, key=_theme_order)
        self._theme_problems = list(loaded.problems)
        wanted = theme or DEFAULT_THEME
        if wanted in self.available_themes:
            self.theme = wanted
        else:
            fallback = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
            if theme is not None:
                self._theme_problems.append(
                    f"Theme {theme!r} was not found; using {fallback}. "
                    f"Available: {', '.join(self.vtmon_themes) or 'none'}."
                )
            self.theme = fallback

    # -- theme variables -------------------------------------------------------------------

    def get_theme_variable_defaults(self) -> dict[str, str]:
        # Chart colours for themes that do not name them (Textual's built-ins), so $chart-*
        # always resolves in TCSS and markup.
        return {**super().get_theme_variable_defaults(), **chart_defaults(self.current_theme)}

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        with Horizontal(id="body"):
            with Vertical(id="main"):
                yield LatencyPanel(id="latency", classes="panel")
                # Under the latency rows at every size: what is wrong sits next to the numbers
                # that show it, and the chart gives way to it, never the other way round.
                yield BottlenecksPanel(id="bottlenecks", classes="panel")
                # What to do about them, right under them: proposals, applied actions.
                yield TuningPanel(id="tuning", classes="panel")
            with VerticalScroll(id="side"):
                yield ResourcesPanel(id="resources", classes="panel")
                yield AlertsPanel(id="alerts", classes="panel")
                # Errors and rejections matter more than fan speeds when the room runs out.
                yield EventsPanel(id="events", classes="panel")
                yield SensorsPanel(id="sensors", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        for problem in self._theme_problems:
            self.notify(problem, title="Theme skipped", severity="warning", timeout=10)
        self._unsubscribe = self.source.subscribe(self._on_snapshot)
        self.query_one(LatencyTable).focus()
        self.set_interval(HISTORY_REFRESH_S, self.refresh_chart_history)
        if not self.is_headless:
            self.set_timer(GC_FREEZE_AFTER_S, _freeze_startup_objects)
            # SIGTERM (and a SIGINT from outside: the terminal's ^C is a key here) quit at
            # once, without the dialog; whoever started the app reverts what was applied.
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, self.exit)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
        latest = self.source.latest
        if latest is not None:
            self._on_snapshot(latest)

    async def on_event(self, event: Event) -> None:
        # A key press or click goes ahead of the socket: the engine's reader waits while the
        # screen answers it (EngineView.hold_ingest; its senders wait on the socket meanwhile,
        # nothing is lost). Under a flood the reader would otherwise keep most of the
        # interpreter while the screen draws the new view.
        if isinstance(event, (Key, MouseDown)) and not event.is_forwarded:
            self._hold_ingest()
        await super().on_event(event)

    def _hold_ingest(self, *, until_released: bool = False) -> bool:
        return self.engine is not None and self.engine.hold_ingest(until_released=until_released)

    def on_resize(self, event: Resize) -> None:
        # Less space between the keys on a narrow screen, so all of them stay readable.
        footer = self.main_screen.query_one(Footer)
        footer.compact = event.size.width < 120
        # Below 100 columns every key must fit; ctrl+p still opens the palette.
        footer.show_command_palette = event.size.width >= 100

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # -- snapshots ---------------------------------------------------------------------------

    def _on_snapshot(self, snap: Snapshot) -> None:
        """Runs in the engine's thread: hand over, never render here."""
        with self._lock:
            self._newest = snap
            if self._pending:
                return
            self._pending = True
        self.post_message(SnapshotReady())

    def on_snapshot_ready(self, _message: SnapshotReady) -> None:
        with self._lock:
            snap = self._newest
            self._pending = False
        if snap is not None and not self.paused:
            # The reader waits while the panels are updated and painted, too: under a flood
            # that took many times longer, and a key pressed meanwhile waited for it.
            held = self._hold_ingest(until_released=True)
            self.render_snapshot(snap)
            if held and self.engine is not None:
                self.call_after_refresh(self.engine.release_ingest)

    def render_snapshot(self, snap: Snapshot) -> None:
        """Show ``snap`` on every panel (main thread only)."""
        if snap.store_warning and snap.store_warning != self._store_warning:
            # Said once in full; the header keeps a short mark while it lasts.
            self.notify(snap.store_warning, title="History", severity="warning", timeout=15)
        self._store_warning = snap.store_warning
        self.shown = snap
        self.snapshots_rendered += 1
        screen = self.main_screen
        screen.query_one(HeaderBar).show(snap)
        screen.query_one(LatencyPanel).show(snap, self.window)
        screen.query_one(BottlenecksPanel).show(snap, self.window)
        screen.query_one(TuningPanel).show(snap, self.window)
        self._update_tuning_keys(snap)
        screen.query_one(ResourcesPanel).show(snap, self.window)
        screen.query_one(AlertsPanel).show(snap, self.window)
        screen.query_one(SensorsPanel).show(snap, self.window)
        screen.query_one(EventsPanel).show(snap, self.window)
        for top in self.screen_stack[1:]:
            if isinstance(top, BottleneckScreen):
                top.show(snap)
        left = left_by_a_previous_run(snap.actions)
        if left and not self._recovered_said:
            self._recovered_said = True
            n = len(left)
            self.notify(
                f"{n} tuning action{'' if n == 1 else 's'} left applied by a previous run "
                f"({', '.join(a.id for a in left)}): select one in Tuning (tab, ↑↓) and press "
                "r to revert it, or R to revert all.",
                title="Tuning",
                severity="warning",
                timeout=20,
            )

    @property
    def main_screen(self) -> Screen:
        """The dashboard, even while help or the command palette is on top of it."""
        return self.screen_stack[0]

    def _rerender(self) -> None:
        if self.shown is not None:
            self.render_snapshot(self.shown)

    # -- actions (bound through keys.ACTIONS) ------------------------------------------------

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        # Kept once built: mounting it again costs each press most of its time on a busy
        # machine (every widget mounted waits its turn for the GIL), showing it again does not.
        if not self.is_screen_installed(HELP_SCREEN):
            self.install_screen(HelpScreen(), HELP_SCREEN)
        self.push_screen(HELP_SCREEN)

    def action_bottlenecks(self) -> None:
        if self.shown is None:
            self.notify("No snapshot yet: nothing to explain.", timeout=2)
            return
        if not any(isinstance(s, BottleneckScreen) for s in self.screen_stack):
            self.push_screen(BottleneckScreen(self.shown))

    def action_cycle_window(self) -> None:
        i = WINDOW_NAMES.index(self.window) if self.window in WINDOW_NAMES else 0
        self.window = WINDOW_NAMES[(i + 1) % len(WINDOW_NAMES)]
        self._rerender()
        self.notify(f"Latency window: {self.window}", timeout=2)

    def action_cycle_span(self) -> None:
        panel = self.main_screen.query_one(LatencyPanel)
        if not self._history_on():
            panel.set_span(LIVE_SPAN_S)
            self.notify(HISTORY_OFF, title="Chart span", timeout=4)
            return
        spans = CHART_SPANS_S
        i = spans.index(panel.span_s) if panel.span_s in spans else -1
        span = spans[(i + 1) % len(spans)]
        panel.set_span(span)
        live = " (live)" if span <= LIVE_SPAN_S else ""
        self.notify(f"Chart span: {duration(span)}{live}", timeout=2)

    # -- stored history for the long-span chart ----------------------------------------------

    def on_latency_panel_history_wanted(self, message: LatencyPanel.HistoryWanted) -> None:
        self._read_history(message.key, message.span_s)

    def refresh_chart_history(self) -> None:
        """Read the long-span chart again (a timer calls this every ``HISTORY_REFRESH_S``)."""
        if self.paused:
            return
        wanted = self.main_screen.query_one(LatencyPanel).history_wanted()
        if wanted is not None:
            self._read_history(*wanted)

    def _read_history(self, key: SeriesKey, span_s: float) -> None:
        # The engine reads the file in a thread: the event loop never waits for the disk. A
        # newer request cancels an older one still running (its result is dropped).
        if self.engine is not None:
            self.run_worker(
                partial(self.engine.chart_history, key, span_s),
                name="chart history",
                group="chart-history",
                thread=True,
                exclusive=True,
                exit_on_error=False,
            )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "report":
            self._report_written(worker, event.state)
            return
        if worker.group != "chart-history":
            return
        panel = self.main_screen.query_one(LatencyPanel)
        if event.state is WorkerState.SUCCESS:
            if worker.result is None:  # the history file went away: back to what is kept
                panel.set_span(LIVE_SPAN_S)
                self.notify(HISTORY_OFF, title="Chart span", severity="warning", timeout=6)
            else:
                panel.set_history(worker.result)
        elif event.state is WorkerState.ERROR:
            panel.set_span(LIVE_SPAN_S)
            self.notify(
                f"The history file could not be read ({worker.error}); showing the last 5 minutes.",
                title="Chart span",
                severity="error",
                timeout=10,
            )

    # -- the HTML report (`e`) -----------------------------------------------------------------

    def action_export_report(self) -> None:
        """Write the report of the chart's span, at least the last hour, from the history file,
        in a thread worker (it reads the file and renders charts: never on the event loop)."""
        if not self._history_on():
            self.notify(
                "History is off, and the report is built from the history file.",
                title="Report",
                severity="warning",
                timeout=6,
            )
            return
        span = max(self.main_screen.query_one(LatencyPanel).span_s, REPORT_MIN_S)
        self.notify(
            f"Writing the report of the last {duration(span)}...", title="Report", timeout=3
        )
        self.run_worker(
            partial(self._write_report, span),
            name="report",
            group="report",
            thread=True,
            exclusive=True,
            exit_on_error=False,
        )

    def _write_report(self, span_s: float) -> Path:
        from vtmon.report import ReportSource, write_recent

        if not isinstance(self.engine, ReportSource):
            raise TypeError("this engine keeps no history to report on")
        return write_recent(self.engine, span_s, self.report_dir)

    def _report_written(self, worker: Worker[Any], state: WorkerState) -> None:
        if state is WorkerState.SUCCESS:
            self.notify(str(worker.result), title="Report written", timeout=15)
        elif state is WorkerState.ERROR:
            from vtmon.report import NoData

            err = worker.error
            if isinstance(err, NoData):  # one sentence saying what the file holds
                text = str(err)
            elif isinstance(err, OSError):
                text = f"Cannot write it in {self.report_dir}: {err.strerror or err}."
            else:
                text = f"It failed: {err}."
            self.notify(text, title="Report", severity="error", timeout=15)

    def action_cycle_theme(self) -> None:
        names = self.vtmon_themes or list(self.available_themes)
        i = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(i + 1) % len(names)]
        self.notify(f"Theme: {self.theme}", timeout=2)

    def action_select_previous(self) -> None:
        self.main_screen.query_one(LatencyTable).action_cursor_up()

    def action_select_next(self) -> None:
        self.main_screen.query_one(LatencyTable).action_cursor_down()

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self.main_screen.query_one(HeaderBar).set_paused(self.paused)
        if not self.paused:
            # Catch up at once with whatever arrived while paused.
            with self._lock:
                snap = self._newest
            if snap is not None:
                self.render_snapshot(snap)

    def action_toggle_charts(self) -> None:
        self.main_screen.toggle_class("-no-charts")

    # -- tuning: keys become the tuner's commands (they only record intent) ------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # a, x and r are in the Footer only while there is something for them to act on
        if action in ("approve", "reject"):
            return self._tuning_keys[0]
        if action == "revert":
            return self._tuning_keys[1]
        return True

    def _update_tuning_keys(self, snap: Snapshot) -> None:
        now = (bool(snap.proposals), bool(tuning_rows_applied(snap)))
        if now != self._tuning_keys:
            self._tuning_keys = now
            self.refresh_bindings()

    def _history_on(self) -> bool:
        return self.engine is not None and self.engine.history_on

    def _tuner(self) -> TuningDesk | None:
        if self.engine is None:
            self.notify("Tuning is not available here.", title="Tuning", severity="warning")
            return None
        return self.engine.tuner

    def _tune(self, command: Callable[[], str]) -> None:
        try:
            said = command()
        except ValueError as e:
            self.notify(str(e), title="Tuning", severity="error", timeout=6)
            return
        self.notify(said, title="Tuning", timeout=4)

    def _selected(self, want: str) -> TuningAction | None:
        row = self.main_screen.query_one(TuningPanel).selected()
        if row is None:
            self.notify(f"Nothing to {want}: the Tuning panel is empty.", title="Tuning")
        return row

    def action_approve(self) -> None:
        tuner, row = self._tuner(), self._selected("approve")
        if tuner is not None and row is not None:
            self._tune(lambda: tuner.approve(row.id))

    def action_reject(self) -> None:
        tuner, row = self._tuner(), self._selected("reject")
        if tuner is not None and row is not None:
            self._tune(lambda: tuner.reject(row.id))

    def action_revert(self) -> None:
        tuner, row = self._tuner(), self._selected("revert")
        if tuner is not None and row is not None:
            self._tune(lambda: tuner.revert(row.id))

    def action_revert_all(self) -> None:
        tuner = self._tuner()
        if tuner is None:
            return
        n = sum(1 for a in tuner.actions() if a.in_effect)
        if not n:
            self.notify("Nothing is applied, so there is nothing to revert.", title="Tuning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._tune(tuner.revert_all)

        self.push_screen(
            ConfirmScreen(f"Revert all {n} applied tuning action{'' if n == 1 else 's'}?"),
            answered,
        )

    def action_cycle_mode(self) -> None:
        tuner = self._tuner()
        if tuner is None:
            return
        row = self.main_screen.query_one(TuningPanel).selected()
        actuator = row.actuator if row is not None else "knob"
        self._tune(lambda: tuner.set_mode(actuator, _next_mode(tuner.modes().get(actuator))))

    async def action_quit(self) -> None:
        tuner = self.engine.tuner if self.engine is not None else None
        applied = applied_by_this_run(tuner.actions()) if tuner is not None else []
        if tuner is None or not applied:
            self.exit()
            return

        def chosen(choice: str | None) -> None:
            if choice == QUIT_REVERT:
                tuner.keep_at_exit = False
                self.exit()
            elif choice == QUIT_KEEP:
                tuner.keep_at_exit = True
                self.exit()

        if not any(isinstance(s, QuitScreen) for s in self.screen_stack):
            self.push_screen(QuitScreen(applied), chosen)

    # -- command palette ---------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for a in keys.ACTIONS:
            if a.palette:
                yield SystemCommand(
                    f"{a.description} ({a.display})",
                    a.help,
                    lambda action=a.action: self.run_action(action),
                )
        # Textual's own commands (theme picker, screenshot, …), minus its duplicate Quit.
        for cmd in super().get_system_commands(screen):
            if cmd.title not in ("Quit", "Keys"):
                yield cmd


def _freeze_startup_objects() -> None:
    """Everything built to start (modules, the engine, the widgets) lives as long as the app:
    kept out of the cyclic collector's sight, a full collection under a flood is much shorter
    (a pause that a key press or a Snapshot would wait out)."""
    gc.collect()
    gc.freeze()


def _next_mode(mode: str | None) -> str:
    modes = ("off", "ask", "auto")
    return modes[(modes.index(mode) + 1) % len(modes)] if mode in modes else "ask"


def _theme_order(name: str) -> tuple[int, str]:
    # The default first, then the shipped variants, then user themes alphabetically.
    shipped = ("vtmon-dark", "vtmon-colorblind", "vtmon-light")
    return (shipped.index(name) if name in shipped else len(shipped), name)
