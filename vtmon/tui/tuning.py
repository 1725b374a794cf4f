"""The Tuning panel: proposals waiting for a key, actions applied and being judged, and what
became of the others -- plus the two dialogs that ask first (revert all, quit with actions
applied).

The panel keeps a cursor on one row (proposals first, then applied actions, then history);
``a``, ``x``, ``r`` and ``m`` act on that row. Tab focuses the panel and ``↑``/``↓`` move the
cursor there. It only renders Snapshots and hands keys to the tuner's commands (the App does
that); it computes nothing beyond the time left and the change so far of numbers the engine
measured.

Like the Bottlenecks panel it gets a line budget and picks the richest layout that fits:
proposals with their why and expected improvement on lines of their own; one line per row;
or, on a small screen, one summary line ("2 proposals · a approve · x reject").
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from vtmon.model import ACTUATORS, ActionState, Snapshot, TuningAction, metric_text
from vtmon.tui import fmt
from vtmon.tui.live import LiveStatic, Panel

S = ActionState
LABEL: dict[ActionState, str] = {
    S.PROPOSED: "PROPOSED",
    S.APPLYING: "APPLYING",
    S.EVALUATING: "EVALUATING",
    S.REVERTING: "REVERTING",
    S.KEPT: "KEPT",
    S.REVERTED: "REVERTED",
    S.REJECTED: "REJECTED",
    S.EXPIRED: "EXPIRED",
    S.FAILED: "FAILED",
    S.LOST: "LOST",
}
LABEL_W = max(len(v) for v in LABEL.values())
STYLE: dict[ActionState, str] = {
    S.PROPOSED: "bold $accent",
    S.APPLYING: "$primary",
    S.EVALUATING: "bold $primary",
    S.REVERTING: "$warning",
    S.KEPT: "bold $success",
    S.REVERTED: "$warning",
    S.REJECTED: "$foreground-muted",
    S.EXPIRED: "$foreground-muted",
    S.FAILED: "bold $error",
    S.LOST: "$error",
}
MODE_STYLE = {"off": "$foreground-muted", "ask": "$accent", "auto": "bold $warning"}
IN_EFFECT = (S.APPLYING, S.EVALUATING, S.REVERTING)
HISTORY = (S.KEPT, S.REVERTED, S.FAILED, S.LOST, S.REJECTED)  # expired ones are not shown
HISTORY_CAP = 4  # history lines before "+N more"
ID_W = 5  # "a123 "


# -- what the panel lists -----------------------------------------------------------------------


def proposals(snap: Snapshot) -> list[TuningAction]:
    return list(snap.proposals)


def applied(snap: Snapshot) -> list[TuningAction]:
    """In flight, being evaluated, or left applied by a previous run."""
    return [a for a in snap.actions if a.state in IN_EFFECT or (a.recovered and a.in_effect)]


def history(snap: Snapshot) -> list[TuningAction]:
    """Decided (kept ones are still in effect: r reverts them too)."""
    return [a for a in snap.actions if a.state in HISTORY and not (a.recovered and a.in_effect)]


def rows(snap: Snapshot) -> list[TuningAction]:
    """Every selectable row, in screen order."""
    return proposals(snap) + applied(snap) + history(snap)


def applied_by_this_run(actions: tuple[TuningAction, ...]) -> list[TuningAction]:
    """What quitting would revert (the quit dialog asks first when there is any)."""
    return [a for a in actions if a.in_effect and not a.recovered and a.state is not S.LOST]


def left_by_a_previous_run(actions: tuple[TuningAction, ...]) -> list[TuningAction]:
    return [a for a in actions if a.recovered and a.in_effect]


def unanswered(snap: Snapshot) -> list[str]:
    """Active bottlenecks with no proposal and no action open on them."""
    busy = {a.bottleneck for a in snap.proposals} | {
        a.bottleneck for a in snap.actions if a.state in IN_EFFECT
    }
    return [b.id for b in snap.bottlenecks if b.id not in busy]


def modes_text(modes: dict[str, str]) -> Content:
    parts: list[Content] = []
    for k in ACTUATORS:
        m = modes.get(k, "ask")
        parts.append(Content.assemble((k, "dim"), " ", (m, MODE_STYLE.get(m, ""))))
    return Content(" · ").join(parts)


def summary_text(snap: Snapshot) -> str:
    """``2 proposals · 1 applied · a approve · x reject`` (the one-line layout, the title)."""
    n_p, n_a = len(snap.proposals), len(applied(snap))
    parts = []
    if n_p:
        parts.append(f"{n_p} proposal{'' if n_p == 1 else 's'}")
    if n_a:
        parts.append(f"{n_a} applied")
    if not parts:
        return "no proposals"
    keys = []
    if n_p:
        keys += ["a approve", "x reject"]
    if n_a:
        keys += ["r revert"]
    return " · ".join(parts + keys)


# -- rows ---------------------------------------------------------------------------------------


def _state(a: TuningAction) -> Content:
    return Content.styled(LABEL[a.state].ljust(LABEL_W), STYLE[a.state])


def _head(a: TuningAction, selected: bool, focused: bool) -> Content:
    mark = Content.styled("▸ ", "bold $accent") if selected else Content("  ")
    style = "reverse bold" if selected and focused else "bold"
    ident = Content.styled(a.id.ljust(ID_W), style)
    return Content.assemble(mark, ident, _state(a), " ")


def change_text(a: TuningAction, so_far: bool = False) -> str:
    """``memory voice-engine 172 MB -> 140 MB (-19 %)``; empty before there is an after."""
    if a.before is None or a.after is None:
        if a.before is not None:
            return f"{a.metric} {metric_text(a.metric, a.before)} before"
        return ""
    pct = (a.after - a.before) / a.before * 100 if a.before else 0.0
    before, after = metric_text(a.metric, a.before), metric_text(a.metric, a.after)
    text = f"{a.metric} {before} -> {after} ({pct:+.0f} %)"
    return text + (" so far" if so_far else "")


def proposal_lines(
    a: TuningAction, width: int, detail: bool, sel: bool, foc: bool
) -> list[Content]:
    mode = Content.styled(f"[{a.actuator} {a.mode}] ", MODE_STYLE.get(a.mode, "dim"))
    head = Content.assemble(_head(a, sel, foc), mode, a.title)
    out = [head.truncate(width, ellipsis=True)]
    if detail:
        pad = " " * (2 + ID_W)
        out.append(Content.assemble(pad, ("why  ", "dim"), a.why).truncate(width, ellipsis=True))
        out.append(
            Content.assemble(pad, ("gain ", "dim"), a.expected).truncate(width, ellipsis=True)
        )
    return out


def applied_line(a: TuningAction, now: float, width: int, sel: bool, foc: bool) -> Content:
    if a.recovered:
        tail = Content.styled("left applied by a previous run · r reverts", "$warning")
    elif a.state is S.EVALUATING and a.evaluate_until is not None:
        left = max(0.0, a.evaluate_until - now)
        effect = change_text(a, so_far=True)
        tail = Content.assemble(
            (f"{fmt.duration(left)} left", "bold"), (f" · {effect}" if effect else "", "")
        )
    elif a.state is S.EVALUATING:
        tail = Content.styled("inconclusive: too little data; r reverts", "$warning")
    else:
        tail = Content.styled(a.message, "dim")
    # the numbers first: the title is in the proposal and in the detail, and may be cut here
    return Content.assemble(_head(a, sel, foc), tail, "  ", (a.title, "dim")).truncate(
        width, ellipsis=True
    )


def history_line(a: TuningAction, width: int, sel: bool, foc: bool) -> Content:
    eff = f"{a.effectiveness:.2f} " if a.effectiveness is not None else "     "
    change = change_text(a)
    tail = Content(change) if change else Content(a.message.rstrip("."))
    return Content.assemble(
        _head(a, sel, foc), (eff, "bold"), tail, "  ", (a.title, "dim")
    ).truncate(width, ellipsis=True)


def tuning_text(
    snap: Snapshot,
    width: int = 80,
    budget: int = 10,
    selected: str | None = None,
    focused: bool = False,
) -> Content:
    """The panel's text in at most ``budget`` lines."""
    props, live, done = proposals(snap), applied(snap), history(snap)
    sel = selected if selected is not None else (rows(snap)[0].id if rows(snap) else None)
    if budget <= 2 and (props or live):
        return Content.styled(summary_text(snap), "bold").truncate(width, ellipsis=True)
    silent = [
        Content.styled(f"No applicable action for {b} (the alerts say why).", "dim").truncate(
            width, ellipsis=True
        )
        for b in unanswered(snap)
    ]
    if not props and not live and not done:
        first = Content.assemble(
            ("No tuning proposals.", "bold $success"),
            (" Bottlenecks with a knob, --pid or a configured command get one.", "dim"),
        ).truncate(width, ellipsis=True)
        return Content("\n").join([first, *silent][: max(1, budget)])
    for detail, cap in ((True, HISTORY_CAP), (False, HISTORY_CAP), (False, 1), (False, 0)):
        lines: list[Content] = []
        for a in props:
            lines += proposal_lines(a, width, detail, a.id == sel, focused)
        for a in live:
            lines.append(applied_line(a, snap.t, width, a.id == sel, focused))
        shown = done[:cap] if len(done) <= cap else done[: max(0, cap - 1)]
        if sel is not None and cap and sel not in {a.id for a in shown}:
            chosen = next((a for a in done if a.id == sel), None)
            if chosen is not None:  # the selected row stays in sight
                shown = [*shown[:-1], chosen] if shown else [chosen]
        for a in shown:
            lines.append(history_line(a, width, a.id == sel, focused))
        if len(shown) < len(done) and cap:
            lines.append(Content.styled(f"  +{len(done) - len(shown)} more in the history", "dim"))
        lines += silent
        if len(lines) <= budget:
            return Content("\n").join(lines)
    return Content.styled(summary_text(snap), "bold").truncate(width, ellipsis=True)


def line_budget(screen_height: int, wide: bool) -> int:
    """A fifth of a tall screen; one summary line on a small one (80x24)."""
    if screen_height < 30:
        return 1
    return max(2, screen_height // 5 if wide else screen_height // 4)


class TuningPanel(Panel):
    """The panel; focusable so that ↑/↓ move its cursor (tab gets here)."""

    can_focus = True
    BINDINGS = [
        Binding("up", "cursor(-1)", "Previous", show=False),
        Binding("down", "cursor(1)", "Next", show=False),
    ]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.selected_id: str | None = None

    def compose(self) -> ComposeResult:
        yield LiveStatic(id="tuning-text")

    def on_mount(self) -> None:
        self.border_title = "Tuning"

    def on_focus(self) -> None:
        self.redraw()

    def on_blur(self) -> None:
        self.redraw()

    def selected(self) -> TuningAction | None:
        """The row the keys act on: the chosen one while it is listed, else the first."""
        if self.snapshot is None:
            return None
        listed = rows(self.snapshot)
        for a in listed:
            if a.id == self.selected_id:
                return a
        return listed[0] if listed else None

    def action_cursor(self, step: int) -> None:
        if self.snapshot is None:
            return
        listed = rows(self.snapshot)
        if not listed:
            return
        cur = self.selected()
        i = listed.index(cur) if cur in listed else 0
        self.selected_id = listed[max(0, min(len(listed) - 1, i + step))].id
        self.redraw()

    def render_snapshot(self, snap: Snapshot, window: str) -> None:
        width = self.content_size.width or 76
        budget = line_budget(self.app.size.height, self.screen.has_class("-wide"))
        cur = self.selected()
        text = tuning_text(snap, width, budget, cur.id if cur else None, self.has_focus)
        self.query_one("#tuning-text", LiveStatic).show(text)
        n_p, n_a = len(snap.proposals), len(applied(snap))
        counts = []
        if n_p:
            counts.append(f"{n_p} proposal{'' if n_p == 1 else 's'}")
        if n_a:
            counts.append(f"{n_a} applied")
        self.set_titles(
            " · ".join(["Tuning", *counts]), modes_text(snap.tuner_modes).markup + " · m mode"
        )
        self.set_class(bool(n_p), "-proposals")
        self.set_class(not rows(snap) and not unanswered(snap), "-empty")


# -- asking first ---------------------------------------------------------------------------------


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question (revert all)."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes", show=False),
        Binding("n,escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, question: str, yes: str = "Yes (y)", no: str = "No (n)") -> None:
        super().__init__()
        self.question = question
        self.yes, self.no = yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = "Tuning"
            yield Static(self.question, classes="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.yes, id="yes", variant="warning")
                yield Button(self.no, id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


QUIT_REVERT, QUIT_KEEP = "revert", "keep"


class QuitScreen(ModalScreen[str | None]):
    """Quitting with actions applied: revert and quit, keep and quit, or cancel."""

    BINDINGS = [
        Binding("r", "choose('revert')", "Revert and quit", show=False),
        Binding("k", "choose('keep')", "Keep and quit", show=False),
        Binding("escape,c", "choose('')", "Cancel", show=False),
    ]

    def __init__(self, actions: list[TuningAction]) -> None:
        super().__init__()
        self.actions = actions

    def compose(self) -> ComposeResult:
        n = len(self.actions)
        ids = ", ".join(a.id for a in self.actions)
        them = "it" if n == 1 else "them"
        text = (
            f"{n} tuning action{'' if n == 1 else 's'} applied ({ids}).\n"
            f"Revert {them} before quitting, or keep {them} (the next start offers to revert "
            f"{them})?"
        )
        with Vertical(classes="dialog") as box:
            box.border_title = "Quit vtmon"
            yield Static(text, classes="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Revert and quit (r)", id="revert", variant="primary")
                yield Button("Keep and quit (k)", id="keep", variant="warning")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#revert", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_choose(event.button.id or "")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice if choice in (QUIT_REVERT, QUIT_KEEP) else None)
