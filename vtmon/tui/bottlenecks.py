"""The Bottlenecks panel: what is wrong now, how bad, since when, why and what to do; then
recent regressions and forecasts of limits about to be reached.

The panel gets a line budget from the screen's height and picks the richest layout that fits
every active bottleneck: description, cause and action wrapped in full; one line each; or
the one-line summary alone. Only when even that does not fit are the lowest-impact rows
folded into "+N more", and the header counts them anyway. The full story is one key away
(``b``, the detail screen).
"""

from __future__ import annotations

import textwrap

from textual.app import ComposeResult
from textual.content import Content

from vtmon.model import Bottleneck, Prediction, Regression, Severity, Snapshot
from vtmon.tui import fmt
from vtmon.tui.live import LiveStatic, Panel
from vtmon.tui.severity import BADGE_W, badge

HOUR_S = 3600.0
LABEL_W = 12  # "Regressions "
FOOT_CAP = 2  # lines each for regressions and forecasts before "+N more"
FOR_W = 9  # "for 2m10s"


def active(snap: Snapshot) -> list[Bottleneck]:
    """Active bottlenecks, most impact first (the engine sorts too; the screen does not rely
    on it), then the more severe, then the older."""
    return sorted(snap.bottlenecks, key=lambda b: (-b.impact, -b.severity.rank, b.started, b.id))


def resolved_recently(snap: Snapshot, within_s: float = HOUR_S) -> list[Bottleneck]:
    return [b for b in snap.resolved if b.resolved is not None and snap.t - b.resolved <= within_s]


def recent_regressions(snap: Snapshot, within_s: float = HOUR_S) -> list[Regression]:
    regs = [r for r in snap.regressions if snap.t - r.detected <= within_s]
    return sorted(regs, key=lambda r: -r.detected)


def near_limits(snap: Snapshot) -> list[Prediction]:
    """Forecasts that reach a limit within their horizon, soonest first."""
    near = [p for p in snap.predictions if p.eta_s is not None]
    return sorted(near, key=lambda p: p.eta_s or 0.0)


def regression_text(r: Regression) -> str:
    """``api-server p95 +38 % since 14:03`` (the detail screen names the series)."""
    metric = "error rate" if r.metric == "error_rate" else r.metric
    pct = r.change * 100
    return f"{r.component} {metric} {pct:+.0f} % since {fmt.clock_short(r.since)}"


def prediction_text(p: Prediction) -> str:
    """``voice-engine memory reaches its 200 MB limit in ~12 min``."""
    unit = f" {p.unit}" if p.unit and p.unit != "%" else p.unit
    limit = f"its {fmt.num(p.limit)}{unit} limit" if p.limit is not None else "its limit"
    when = fmt.eta(p.eta_s) if p.eta_s is not None else "later"
    return f"{p.component} {p.metric} reaches {limit} in {when}"


def since_text(b: Bottleneck, now: float) -> str:
    return f"for {fmt.duration(now - b.started)}"


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, max(10, width), break_on_hyphens=False) or [""]


class Rows:
    """Column widths shared by every row, so severity, type, component and age line up."""

    def __init__(self, rows: list[Bottleneck], width: int) -> None:
        self.width = width
        self.type_w = max((len(b.type) for b in rows), default=4)
        self.comp_w = min(18, max((len(b.component) for b in rows), default=6))
        self.desc_x = BADGE_W + 1 + self.type_w + 2 + self.comp_w + 2 + FOR_W + 2
        self.desc_w = max(12, width - self.desc_x)
        self.detail_x = BADGE_W + 1
        self.detail_w = max(12, width - self.detail_x)

    def head(self, b: Bottleneck, now: float, description: str) -> Content:
        return Content.assemble(
            badge(b.severity),
            " ",
            (b.type.ljust(self.type_w), "bold"),
            "  ",
            fmt.ellipsize(b.component, self.comp_w).ljust(self.comp_w),
            "  ",
            (since_text(b, now).ljust(FOR_W), "dim"),
            "  ",
            description,
        )

    def lines(self, b: Bottleneck, now: float, level: int) -> list[Content]:
        """level 3: everything wrapped; 2: one line each; 1: the summary line alone."""
        if level <= 2:
            head = self.head(b, now, fmt.ellipsize(b.description, self.desc_w))
            out = [head.truncate(self.width, ellipsis=True)]
            if level == 2:
                out += [
                    self._detail(part, text).truncate(self.width, ellipsis=True)
                    for part, text in self._details(b)
                ]
            return out
        desc = _wrap(b.description, self.desc_w)
        out = [self.head(b, now, desc[0])]
        out += [Content(" " * self.desc_x + d) for d in desc[1:]]
        for part, text in self._details(b):
            hang = 2 if part == "action" else len("likely cause: ")
            wrapped = _wrap(text, self.detail_w - hang)
            out.append(self._detail(part, wrapped[0]))
            out += [Content(" " * (self.detail_x + hang) + w) for w in wrapped[1:]]
        # Only a very narrow panel needs this: the Static must never wrap a row itself.
        return [line.truncate(self.width, ellipsis=True) for line in out]

    @staticmethod
    def _details(b: Bottleneck) -> list[tuple[str, str]]:
        parts = []
        if b.cause_text:
            parts.append(("cause", b.cause_text.removeprefix("likely cause: ")))
        if b.suggested_action:
            parts.append(("action", b.suggested_action))
        return parts

    def _detail(self, part: str, text: str) -> Content:
        pad = " " * self.detail_x
        if part == "cause":
            return Content.assemble(pad, ("likely cause: ", "$accent"), text)
        return Content.assemble(pad, ("→ ", "bold $primary"), text)


def _foot(label: str, items: list[tuple[str, str]], cap: int, width: int) -> list[Content]:
    """``label`` then one (text, style) item a line, at most ``cap`` lines, the rest counted."""
    if not items:
        return []
    shown = items if len(items) <= cap else items[: max(0, cap - 1)]
    contents = [Content.styled(t, s) for t, s in shown]
    if len(shown) < len(items):
        contents.append(Content.styled(f"+{len(items) - len(shown)} more · b for details", "dim"))
    return [
        Content.assemble(
            (label.ljust(LABEL_W), "bold $secondary") if i == 0 else " " * LABEL_W, item
        ).truncate(width, ellipsis=True)
        for i, item in enumerate(contents)
    ]


def foot_lines(snap: Snapshot, width: int, cap: int = FOOT_CAP) -> list[Content]:
    regs = [(regression_text(r), "$warning") for r in recent_regressions(snap)]
    # Forecasts by urgency: under five minutes is an emergency, later a warning.
    soon = [
        (prediction_text(p), "$error" if (p.eta_s or 0) < 300 else "$warning")
        for p in near_limits(snap)
    ]
    return _foot("Regressions", regs, cap, width) + _foot("Forecast", soon, cap, width)


def bottlenecks_text(snap: Snapshot, width: int = 80, budget: int = 12) -> Content:
    """The panel's text in at most about ``budget`` lines (more only when the summary lines of
    the active bottlenecks alone need them: those are never dropped without a count)."""
    rows = active(snap)
    foot = foot_lines(snap, width)
    if len(foot) > budget // 2:
        foot = foot_lines(snap, width, cap=1)
    if not rows:
        n = len(resolved_recently(snap))
        lines = [
            Content.assemble(
                ("No bottlenecks.", "bold $success"),
                (f" {n} resolved in the last hour.", "dim"),
            ).truncate(width, ellipsis=True)
        ]
        return Content("\n").join(lines + foot)
    layout = Rows(rows, width)
    room = max(1, budget - len(foot))
    for level in (3, 2, 1):
        body = [line for b in rows for line in layout.lines(b, snap.t, level)]
        if len(body) <= room:
            return Content("\n").join(body + foot)
    # Not even one line each: the most important first, the rest counted.
    keep = max(1, room - 1)
    body = [line for b in rows[:keep] for line in layout.lines(b, snap.t, 1)]
    body.append(
        Content.styled(f"+{len(rows) - keep} more, lower impact · b for details", "dim").truncate(
            width, ellipsis=True
        )
    )
    return Content("\n").join(body + foot)


def line_budget(screen_height: int, wide: bool) -> int:
    """Lines the panel may use: a third of a narrow screen (the latency rows come first), a
    bit more beside the wide layout's chart, which gives way."""
    return max(3, int(screen_height * 0.35) if wide else screen_height // 3)


class BottlenecksPanel(Panel):
    def compose(self) -> ComposeResult:
        yield LiveStatic(id="bottlenecks-text")

    def on_mount(self) -> None:
        self.border_title = "Bottlenecks"
        self.border_subtitle = "b details"

    def render_snapshot(self, snap: Snapshot, window: str) -> None:
        width = self.content_size.width or 76
        wide = self.screen.has_class("-wide")
        budget = line_budget(self.app.size.height, wide)
        self.query_one("#bottlenecks-text", LiveStatic).show(bottlenecks_text(snap, width, budget))
        n = len(snap.bottlenecks)
        resolved = len(resolved_recently(snap))
        self.set_titles(
            f"Bottlenecks · {n} active" if n else "Bottlenecks",
            f"{resolved} resolved in 1h · b details" if n else "b details",
        )
        sev = max((b.severity.rank for b in snap.bottlenecks), default=-1)
        self.set_class(sev >= Severity.HIGH.rank, "-bad")
        self.set_class(sev == Severity.MEDIUM.rank, "-warn")
