"""The ``b`` screen: one bottleneck in full (evidence, ranked causes, action), what to change
(recommendations), and what came before (regressions, forecasts, resolved bottlenecks, the
alerts log). The main screen stays calm because the long text lives here.

It follows the live snapshots while open and keeps the chosen bottleneck by id, so a new
arrival ranked above it does not move the selection away from what is being read.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.events import Resize
from textual.screen import ModalScreen

from vtmon.model import Bottleneck, Recommendation, Snapshot
from vtmon.tui import fmt
from vtmon.tui.alerts import alert_line, newest_first
from vtmon.tui.bottlenecks import FOR_W, active, prediction_text, regression_text, since_text
from vtmon.tui.live import LiveStatic, drawn, set_border_title
from vtmon.tui.severity import PRIORITY_ORDER, badge, label, priority_style

MAX_RESOLVED = 30
MAX_ALERTS = 50
INDENT = "  "

Cell = str | Content


def _c(cell: Cell) -> Content:
    return cell if isinstance(cell, Content) else Content(cell)


def heading(text: str, note: str = "") -> Content:
    return Content.assemble((text, "bold $primary"), (f"  {note}" if note else "", "dim"))


def grid(
    header: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    width: int,
    right: frozenset[int] = frozenset(),
) -> list[Content]:
    """A plain aligned table (columns in ``right`` are right-aligned); a row wider than
    ``width`` is cut with an ellipsis."""
    cells = [[_c(c) for c in row] for row in rows]
    widths = [max([len(h)] + [r[i].cell_length for r in cells]) for i, h in enumerate(header)]

    def line(parts: list[Content], style: str = "") -> Content:
        out = Content(INDENT)
        for i, p in enumerate(parts):
            pad = widths[i] - p.cell_length
            p = Content(" " * pad) + p if i in right else p + Content(" " * pad)
            out = out + (Content("  ") if i else Content("")) + p
        out = out.stylize(style) if style else out
        return out.rstrip().truncate(width, ellipsis=True)

    return [line([Content(h) for h in header], "dim")] + [line(r) for r in cells]


def wrapped(text: str, width: int, indent: str = INDENT, style: str = "") -> list[Content]:
    lines = textwrap.wrap(text, max(20, width - len(indent)), break_on_hyphens=False) or [""]
    return [Content.assemble(indent, (line, style)) for line in lines]


def active_list(rows: list[Bottleneck], selected: int, now: float, width: int) -> list[Content]:
    out = [heading("Active bottlenecks", "most impact first · ↑↓ choose")]
    type_w = max(len(b.type) for b in rows)
    comp_w = max(len(b.component) for b in rows)
    for i, b in enumerate(rows):
        mark = ("▸ ", "bold $accent") if i == selected else "  "
        out.append(
            Content.assemble(
                mark,
                badge(b.severity),
                " ",
                (b.type.ljust(type_w), "bold"),
                f"  {b.component.ljust(comp_w)}  ",
                (f"{since_text(b, now):<{FOR_W}}  impact {b.impact:.2f}", "dim"),
            ).truncate(width, ellipsis=True)
        )
    return out


def bottleneck_section(b: Bottleneck, now: float, width: int) -> list[Content]:
    out = [
        Content.assemble(badge(b.severity), " ", (f"{b.type} in {b.component}", "bold")).truncate(
            width, ellipsis=True
        )
    ]
    out += wrapped(b.description, width)
    facts = (
        f"started {fmt.clock(b.started)} ({since_text(b, now)}) · impact {b.impact:.2f} · "
        f"confidence {b.confidence * 100:.0f} %" + (f" · rule {b.rule}" if b.rule else "")
    )
    out += wrapped(facts, width, style="dim")
    out += [Content(""), heading("Evidence")]
    if b.evidence:
        out += grid(
            ("name", "value", "threshold", "unit"),
            [(e.name, fmt.num(e.value), fmt.num(e.threshold), e.unit) for e in b.evidence],
            width,
            right=frozenset({1, 2}),
        )
    else:
        out.append(Content.styled(INDENT + "none recorded", "dim"))
    out += [Content(""), heading("Likely causes", "signals ranked by how much they changed")]
    if b.causes:
        out += grid(
            ("#", "signal", "before → after", "score"),
            [
                (
                    str(i),
                    c.label,
                    f"{fmt.num(c.before)}{c.unit} → {fmt.num(c.after)}{c.unit}",
                    f"{c.score:.2f}",
                )
                for i, c in enumerate(b.causes, 1)
            ],
            width,
            right=frozenset({2, 3}),
        )
    else:
        out.append(Content.styled(INDENT + "no resource signal changed enough to name one", "dim"))
    out += [Content(""), heading("Suggested action")]
    out += wrapped(b.suggested_action or "none", width)
    return out


def recommendation_lines(recs: tuple[Recommendation, ...], width: int) -> list[Content]:
    out = [heading("Recommendations", "highest priority first")]
    if not recs:
        return out + [Content.styled(INDENT + "none", "dim")]
    ordered = sorted(recs, key=lambda r: (PRIORITY_ORDER.get(r.priority, 9), r.component))
    for r in ordered:
        out.append(
            Content.assemble(
                INDENT,
                (f"{r.priority.upper():<8}", priority_style(r.priority)),
                (r.component, "dim"),
                "  ",
                (r.title, "bold"),
            ).truncate(width, ellipsis=True)
        )
        pad = INDENT + " " * 8
        out += wrapped(r.description, width, pad)
        out += wrapped(f"expected: {r.expected_improvement}", width, pad, "$success")
        out += wrapped(f"how: {r.implementation}", width, pad, "dim")
    return out


def history_lines(snap: Snapshot, width: int) -> list[Content]:
    out = [heading("Resolved", "newest first")]
    if not snap.resolved:
        return out + [Content.styled(INDENT + "nothing resolved yet", "dim")]
    rows = [
        (
            b.type,
            b.component,
            fmt.clock(b.started),
            fmt.clock(b.resolved) if b.resolved is not None else fmt.DASH,
            fmt.duration((b.resolved - b.started) if b.resolved is not None else None),
            label(b.severity),
        )
        for b in snap.resolved[:MAX_RESOLVED]
    ]
    out += grid(
        ("type", "component", "start", "end", "duration", "severity"),
        rows,
        width,
        right=frozenset({4}),
    )
    if len(snap.resolved) > MAX_RESOLVED:
        out.append(Content.styled(f"{INDENT}+{len(snap.resolved) - MAX_RESOLVED} older", "dim"))
    return out


def changes_lines(snap: Snapshot, width: int) -> list[Content]:
    out: list[Content] = []
    if snap.regressions:
        out += [Content(""), heading("Regressions", "step changes, newest first")]
        out += grid(
            ("change", "series", "before → after"),
            [
                (regression_text(r), r.series, f"{fmt.num(r.before)} → {fmt.num(r.after)}")
                for r in sorted(snap.regressions, key=lambda r: -r.detected)
            ],
            width,
        )
    if snap.predictions:
        out += [Content(""), heading("Forecasts")]
        rows = []
        for p in sorted(snap.predictions, key=lambda p: (p.eta_s is None, p.eta_s or 0)):
            reach = prediction_text(p) if p.eta_s is not None else "no limit within the horizon"
            rows.append(
                (
                    f"{p.component} {p.metric}",
                    f"{fmt.num(p.current)} → {fmt.num(p.forecast)} {p.unit}".rstrip(),
                    f"in {fmt.duration(p.horizon_s)}",
                    f"{p.confidence * 100:.0f} %",
                    reach,
                )
            )
        out += grid(
            ("what", "now → forecast", "horizon", "conf.", "limit"),
            rows,
            width,
            right=frozenset({1, 3}),
        )
    return out


def alerts_lines(snap: Snapshot, width: int) -> list[Content]:
    alerts = newest_first(snap.alerts)
    out = [heading("Alerts", f"newest first, last {MAX_ALERTS}")]
    if not alerts:
        return out + [Content.styled(INDENT + "none", "dim")]
    return out + [Content(INDENT) + alert_line(a, width - 2) for a in alerts[:MAX_ALERTS]]


def detail_text(snap: Snapshot, selected: int, width: int = 100) -> Content:
    rows = active(snap)
    lines: list[Content] = []
    if rows:
        lines += active_list(rows, selected, snap.t, width)
        lines += [Content("")]
        lines += bottleneck_section(rows[selected], snap.t, width)
    else:
        lines.append(Content.styled("No active bottlenecks.", "bold $success"))
    lines += [Content("")] + recommendation_lines(snap.recommendations, width)
    lines += changes_lines(snap, width)
    lines += [Content("")] + history_lines(snap, width)
    lines += [Content("")] + alerts_lines(snap, width)
    return Content("\n").join(lines)


class BottleneckScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,b,q", "dismiss", "Close", show=False),
        # Priority: the scrolling box would take up/down for itself otherwise.
        Binding("up", "choose(-1)", "Previous bottleneck", show=False, priority=True),
        Binding("down", "choose(1)", "Next bottleneck", show=False, priority=True),
    ]

    def __init__(self, snap: Snapshot) -> None:
        super().__init__()
        self.snapshot = snap
        rows = active(snap)
        self.selected_id: str | None = rows[0].id if rows else None

    @property
    def selected(self) -> int:
        ids = [b.id for b in active(self.snapshot)]
        return ids.index(self.selected_id) if self.selected_id in ids else 0

    @property
    def selected_bottleneck(self) -> Bottleneck | None:
        rows = active(self.snapshot)
        return rows[self.selected] if rows else None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-box") as box:
            box.border_subtitle = "↑↓ choose · pgup pgdn scroll · esc close"
            yield LiveStatic(id="detail-text")

    def on_mount(self) -> None:
        self.render_detail()

    def on_resize(self, _event: Resize) -> None:
        self.render_detail()

    def show(self, snap: Snapshot) -> None:
        """A newer snapshot: same bottleneck if it is still active, else the one in its place."""
        index = self.selected
        self.snapshot = snap
        rows = active(snap)
        if self.selected_id not in {b.id for b in rows}:
            self.selected_id = rows[min(index, len(rows) - 1)].id if rows else None
        if self.is_mounted:  # pushed but not composed yet: on_mount renders it
            self.render_detail()

    def action_choose(self, step: int) -> None:
        rows = active(self.snapshot)
        if not rows:
            return
        self.selected_id = rows[(self.selected + step) % len(rows)].id
        self.render_detail()
        self.query_one("#detail-box", VerticalScroll).scroll_home(animate=False)

    def render_detail(self) -> None:
        box = self.query_one("#detail-box", VerticalScroll)
        rows = active(self.snapshot)
        set_border_title(
            box, f"Bottleneck {self.selected + 1} of {len(rows)}" if rows else "Bottlenecks"
        )
        # One cell for the scrollbar: a line that fills the box would be wrapped again.
        width = (box.content_size.width or min(118, self.app.size.width - 10)) - 1
        text = drawn(self, lambda: detail_text(self.snapshot, self.selected, width))
        self.query_one("#detail-text", LiveStatic).show(text)  # or its failure
