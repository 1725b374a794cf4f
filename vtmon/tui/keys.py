"""The one registry of keys. BINDINGS, the Footer, the command palette and the ``?`` help
screen are all generated from ``ACTIONS``, so a key can never be documented in one place and
bound differently in another (dolphie keeps one command table for the same reason).

Every entry has a stable ``id`` (as posting does) so a later keymap file can remap keys by id
with ``App.set_keymap`` without touching this list.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True, slots=True)
class KeyAction:
    id: str  # stable name for keymaps
    key: str  # Textual key name(s), comma separated
    action: str  # App action (without the ``action_`` prefix)
    description: str  # short, for the Footer
    help: str  # one sentence, for the help screen, tooltips and the command palette
    key_display: str | None = None  # how the key reads on screen when its name is unclear
    show: bool = True  # in the Footer
    palette: bool = True  # offered in the command palette
    # Bound by Textual itself (the palette key); listed in help, not bound twice.
    builtin: bool = False
    priority: bool = False

    @property
    def display(self) -> str:
        return self.key_display or self.key.split(",")[0]


ACTIONS: tuple[KeyAction, ...] = (
    KeyAction(
        "quit",
        "q",
        "quit",
        "Quit",
        "Leave vtmon (the engine stops with it); tuning actions it applied are reverted "
        "(it asks first when there are some).",
    ),
    KeyAction(
        "help",
        "question_mark",
        "help",
        "Help",
        "Show every key and what it does.",
        key_display="?",
    ),
    KeyAction(
        "bottlenecks",
        "b",
        "bottlenecks",
        "Bottlenecks",
        "Why: evidence, ranked causes, advice, history and alerts (↑↓ choose, esc closes).",
    ),
    KeyAction(
        "approve",
        "a",
        "approve",
        "Approve",
        "Approve the selected tuning proposal: vtmon applies it, measures it, keeps or undoes it.",
    ),
    KeyAction(
        "reject",
        "x",
        "reject",
        "Reject",
        "Reject the selected tuning proposal; it is not proposed again for 5 minutes.",
    ),
    KeyAction(
        "revert",
        "r",
        "revert",
        "Revert",
        "Revert the selected applied tuning action at once (its previous value is set back).",
    ),
    KeyAction(
        "revert-all",
        "R",
        "revert_all",
        "Revert all",
        "Revert every applied tuning action (asks first).",
        show=False,
    ),
    KeyAction(
        "mode",
        "m",
        "cycle_mode",
        "Mode",
        "Cycle the tuning mode (off: recommend only, ask: wait for a key, auto: apply at once) "
        "of the selected row's action class (knob, process, command); of knob with no row.",
        show=False,  # the Tuning panel's border says "m mode"
    ),
    KeyAction(
        "tuning",
        "tab",
        "focus_next",
        "Tuning rows",
        "Tab to the Tuning panel; there ↑ ↓ choose the row a, x, r and m act on.",
        show=False,
        palette=False,
        builtin=True,
    ),
    KeyAction(
        "window",
        "w",
        "cycle_window",
        "Window",
        "Cycle the latency window: 10s, 1m, 5m.",
    ),
    KeyAction(
        "span",
        "h",
        "cycle_span",
        "Span",
        "Cycle the latency chart's span: 5 min (live), 1 h, 6 h, 24 h, 7 d (stored).",
    ),
    KeyAction(
        "report",
        "e",
        "export_report",
        "Report",
        "Write the HTML report of the chart's span (at least the last hour) from the history "
        "file; the notification says where.",
    ),
    KeyAction(
        "theme",
        "t",
        "cycle_theme",
        "Theme",
        "Cycle through the vtmon themes (the colour-blind safe one included).",
        show=False,  # rarely needed: in help and the palette, and the footer keeps its room
    ),
    KeyAction(
        "select-up",
        "up",
        "select_previous",
        "Previous",
        "Select the previous latency series (its chart is shown).",
        key_display="↑",
        show=False,
    ),
    KeyAction(
        "select-down",
        "down",
        "select_next",
        "Next",
        "Select the next latency series (its chart is shown).",
        key_display="↓",
        show=False,
    ),
    KeyAction(
        "pause",
        "space",
        "toggle_pause",
        "Pause",
        "Freeze the screen to read it; the engine keeps collecting.",
        key_display="space",
    ),
    KeyAction(
        "charts",
        "c",
        "toggle_charts",
        "Charts",
        "Hide or show the charts to give the tables more room.",
    ),
    KeyAction(
        "palette",
        "ctrl+p",
        "command_palette",
        "Commands",
        "Open the command palette to search every action.",
        key_display="^p",
        show=False,
        palette=False,
        builtin=True,
    ),
)

BY_ID: dict[str, KeyAction] = {a.id: a for a in ACTIONS}
PALETTE_KEY: str = BY_ID["palette"].key


def bindings() -> list[Binding]:
    """The App's BINDINGS, generated from the registry."""
    return [
        Binding(
            a.key,
            a.action,
            a.description,
            show=a.show,
            key_display=a.key_display,
            priority=a.priority,
            tooltip=a.help,
            id=a.id,
        )
        for a in ACTIONS
        if not a.builtin
    ]
