"""The vtmon screen: renders Snapshots from the engine and turns keys into actions.

How snapshots arrive: the monitor calls ``_on_snapshot`` from its own thread once a tick.
That callback only stores the snapshot as "newest" and posts a ``SnapshotReady`` message if
none is pending; the handler on the main thread takes whatever is newest at that moment. A
burst of ticks therefore collapses into one redraw (toolong does the same with
``can_replace``), and the screen never renders from the monitor's thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, ClassVar, Protocol

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import Resize
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer

from vtmon.model import WINDOWS, Snapshot
from vtmon.tui import keys
from vtmon.tui.alerts import AlertsPanel
from vtmon.tui.bottlenecks import BottlenecksPanel
from vtmon.tui.detail import BottleneckScreen
from vtmon.tui.events import EventsPanel
from vtmon.tui.header import HeaderBar
from vtmon.tui.help import HelpScreen
from vtmon.tui.latency import LatencyPanel, LatencyTable
from vtmon.tui.resources import ResourcesPanel
from vtmon.tui.sensors import SensorsPanel
from vtmon.tui.themes import DEFAULT_THEME, chart_defaults, load_themes

if TYPE_CHECKING:
    from vtmon.engine.monitor import Monitor

WINDOW_NAMES: tuple[str, ...] = tuple(name for name, _ in WINDOWS)
DEFAULT_WINDOW = "1m"


class SnapshotSource(Protocol):
    """What the screen needs from the engine (``vtmon.engine.monitor.Monitor`` is one)."""

    latest: Snapshot | None

    def subscribe(self, fn: Callable[[Snapshot], None]) -> Callable[[], None]: ...


class SnapshotReady(Message):
    """A newer snapshot is waiting; carries nothing so a stale one can never be rendered."""


class VtmonApp(App[None]):
    CSS_PATH = "vtmon.tcss"
    TITLE = "vtmon"
    BINDINGS: ClassVar[list[BindingType]] = keys.bindings()
    COMMAND_PALETTE_BINDING = keys.PALETTE_KEY
    # Side by side from 120 columns; charts only when there is height for them.
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [
        (0, "-short"),
        (30, "-tall"),
        (45, "-huge"),
    ]

    def __init__(self, monitor: Monitor | SnapshotSource, *, theme: str | None = None) -> None:
        super().__init__()
        self.monitor = monitor
        self.window = DEFAULT_WINDOW
        self.paused = False
        self.snapshots_rendered = 0  # how many snapshots reached the screen (tests, debugging)
        self.shown: Snapshot | None = None
        self._store_warning = ""  # the last one notified
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
        self._unsubscribe = self.monitor.subscribe(self._on_snapshot)
        self.query_one(LatencyTable).focus()
        if self.monitor.latest is not None:
            self._on_snapshot(self.monitor.latest)

    def on_resize(self, event: Resize) -> None:
        # Less space between the keys on a narrow screen, so all of them stay readable.
        self.main_screen.query_one(Footer).compact = event.size.width < 120

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # -- snapshots ---------------------------------------------------------------------------

    def _on_snapshot(self, snap: Snapshot) -> None:
        """Runs in the monitor's thread: hand over, never render here."""
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
            self.render_snapshot(snap)

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
        screen.query_one(ResourcesPanel).show(snap, self.window)
        screen.query_one(AlertsPanel).show(snap, self.window)
        screen.query_one(SensorsPanel).show(snap, self.window)
        screen.query_one(EventsPanel).show(snap, self.window)
        for top in self.screen_stack[1:]:
            if isinstance(top, BottleneckScreen):
                top.show(snap)

    @property
    def main_screen(self) -> Screen:
        """The dashboard, even while help or the command palette is on top of it."""
        return self.screen_stack[0]

    def _rerender(self) -> None:
        if self.shown is not None:
            self.render_snapshot(self.shown)

    # -- actions (bound through keys.ACTIONS) ------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

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


def _theme_order(name: str) -> tuple[int, str]:
    # The default first, then the shipped variants, then user themes alphabetically.
    shipped = ("vtmon-dark", "vtmon-colorblind", "vtmon-light")
    return (shipped.index(name) if name in shipped else len(shipped), name)
