"""Temperatures, fans, power and battery; or, when there are none, why not."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.content import Content

from vtmon.model import Sensors, Snapshot, Temperature
from vtmon.tui import fmt
from vtmon.tui.live import LiveStatic, Panel, flow

LABEL_W = 8
MAX_ITEMS = 8  # per kind; a 64-core machine lists a temperature per core


def _label(text: str) -> Content:
    return Content.styled(text.ljust(LABEL_W), "bold $secondary")


def temp_style(t: Temperature) -> str:
    if t.critical is not None and t.current >= t.critical:
        return "$error bold"
    if t.high is not None and t.current >= t.high:
        return "$warning"
    return ""


def _more(items: list[Content], total: int) -> list[Content]:
    if total > len(items):
        items.append(Content.styled(f"+{total - len(items)} more", "dim"))
    return items


def sensors_text(s: Sensors, width: int = 80) -> Content:
    if s.empty:
        note = s.note or "No sensors were found on this machine."
        return Content.assemble(("No sensor readings. ", "bold"), (note, "dim italic"))
    lines: list[Content] = []
    if s.temperatures:
        temps = [
            Content.assemble(
                (f"{t.label or t.chip} ", "dim"), (f"{t.current:.0f}°C", temp_style(t))
            )
            for t in s.temperatures[:MAX_ITEMS]
        ]
        lines += flow(_label("Temp"), _more(temps, len(s.temperatures)), width)
    if s.fans:
        fans = [
            Content.assemble((f"{f.label or f.chip} ", "dim"), f"{f.rpm:.0f} rpm")
            for f in s.fans[:MAX_ITEMS]
        ]
        lines += flow(_label("Fans"), _more(fans, len(s.fans)), width)
    if s.power:
        power = [
            Content.assemble((f"{p.label} ", "dim"), f"{p.watts:.1f} W")
            for p in s.power[:MAX_ITEMS]
        ]
        lines += flow(_label("Power"), _more(power, len(s.power)), width)
    if s.battery is not None:
        b = s.battery
        state = {True: "plugged in", False: "on battery", None: ""}[b.plugged]
        low = "$error bold" if b.percent < 10 else "$warning" if b.percent < 20 else ""
        bat = [Content.styled(fmt.percent(b.percent), low)]
        if state:
            bat.append(Content.styled(state, "dim"))
        if b.seconds_left is not None and b.plugged is False:
            bat.append(Content.styled(f"{fmt.duration(b.seconds_left)} left", "dim"))
        lines += flow(_label("Battery"), bat, width)
    if s.note:
        lines.append(Content.styled(s.note, "dim italic"))
    return Content("\n").join(lines)


class SensorsPanel(Panel):
    def compose(self) -> ComposeResult:
        yield LiveStatic(id="sensors-text")

    def on_mount(self) -> None:
        self.border_title = "Sensors"

    def render_snapshot(self, snap: Snapshot, window: str) -> None:
        width = self.content_size.width or 80
        self.query_one("#sensors-text", LiveStatic).show(sensors_text(snap.sensors, width))
