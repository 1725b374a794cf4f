"""The alerts log: newest first, one line each (time, severity, message), as many as fit.

Regressions arrive here as alerts too (the engine adds them); the detail screen (``b``)
lists the older ones.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.content import Content

from vtmon.model import Alert, Snapshot
from vtmon.tui import fmt
from vtmon.tui.live import LiveStatic, Panel
from vtmon.tui.severity import label


def newest_first(alerts: tuple[Alert, ...]) -> list[Alert]:
    # Stable: alerts raised in the same tick keep the engine's order.
    return sorted(alerts, key=lambda a: -a.t)


def alert_line(a: Alert, width: int) -> Content:
    return Content.assemble(
        (fmt.clock(a.t), "dim"), " ", label(a.severity), " ", a.message
    ).truncate(width, ellipsis=True)


def alerts_text(snap: Snapshot, width: int = 80, max_lines: int = 5) -> Content:
    alerts = newest_first(snap.alerts)
    if not alerts:
        return Content.styled("No alerts.", "dim")
    shown = alerts if len(alerts) <= max_lines else alerts[: max(1, max_lines - 1)]
    lines = [alert_line(a, width) for a in shown]
    if len(shown) < len(alerts):
        lines.append(Content.styled(f"+{len(alerts) - len(shown)} older · b for all", "dim"))
    return Content("\n").join(lines)


def alert_budget(screen_height: int) -> int:
    return max(3, screen_height // 6)


class AlertsPanel(Panel):
    def compose(self) -> ComposeResult:
        yield LiveStatic(id="alerts-text")

    def on_mount(self) -> None:
        self.border_title = "Alerts"

    def render_snapshot(self, snap: Snapshot, window: str) -> None:
        width = self.content_size.width or 76
        text = alerts_text(snap, width, alert_budget(self.app.size.height))
        self.query_one("#alerts-text", LiveStatic).show(text)
        n = len(snap.alerts)
        self.set_titles(subtitle=f"{n} in the log" if n else "")
