"""The ``?`` screen: every key in the registry with what it does."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.events import Resize
from textual.screen import ModalScreen
from textual.widgets import Static

from vtmon.model import SEVERITY_ORDER
from vtmon.tui.keys import ACTIONS, KeyAction
from vtmon.tui.severity import badge
from vtmon.tui.tuning import LABEL, STYLE

TUNING_STYLE = {LABEL[state]: style for state, style in STYLE.items()}
HELP_MAX_W = 110  # as #help-box in vtmon.tcss


def help_text(actions: tuple[KeyAction, ...] = ACTIONS) -> Content:
    width = max(len(a.display) for a in actions) + 2
    desc_w = max(len(a.description) for a in actions)
    lines = [
        Content.assemble(
            (a.display.ljust(width), "bold $accent"),
            (a.description.ljust(desc_w), "bold"),
            "  ",
            a.help,
        )
        for a in actions
    ]
    lines += [
        Content(""),
        Content.styled(
            "Latency cells: within target, within twice the target, beyond it "
            "(colours follow the theme).",
            "dim",
        ),
        Content.assemble(
            ("  ", ""),
            (" ≤ target ", "reverse $success"),
            " ",
            (" ≤ 2× target ", "reverse $warning"),
            " ",
            (" > 2× target ", "reverse $error bold"),
        ),
        Content(""),
        Content.styled(
            "Bottlenecks and alerts: a word for each severity, so colour is never the only cue.",
            "dim",
        ),
        Content.assemble(
            "  ", *(part for sev in reversed(SEVERITY_ORDER) for part in (badge(sev), " "))
        ),
        Content.styled(
            "Health 0..1, per component and overall: good above 0.8, warning above 0.6, "
            "else critical.",
            "dim",
        ),
        Content(""),
        Content.styled(
            "Tuning: a proposal waits for a (approve) or x (reject); an applied action is "
            "evaluated (time left, effect so far) and kept or reverted by itself; r reverts "
            "the selected one now, R all (asks first).",
            "dim",
        ),
        Content.assemble(
            "  ",
            *(
                part
                for state in ("PROPOSED", "EVALUATING", "KEPT", "REVERTED", "FAILED", "LOST")
                for part in ((f" {state} ", TUNING_STYLE[state]), " ")
            ),
        ),
        Content.styled(
            "Modes per action class (knob, process, command): off recommends only, ask waits "
            "for a key, auto applies at once. q asks first when actions are applied; quitting "
            "reverts them unless you keep them.",
            "dim",
        ),
        Content(""),
        Content.styled("Press escape, ? or q to close.", "dim"),
    ]
    return Content("\n").join(lines)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "vtmon keys"
            yield Static(help_text(), id="help-text")

    def on_resize(self, event: Resize) -> None:
        # At most 110 cells (TCSS), and never wider than the screen: on an 80- or 100-column
        # terminal the box (and its right border) stayed partly off screen.
        self.query_one("#help-box").styles.max_width = min(HELP_MAX_W, event.size.width - 4)
