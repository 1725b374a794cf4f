"""Reading the screen as a person would, shared by the screen tests."""

from __future__ import annotations

from typing import Any

from textual.color import Color

from vtmon.engine.monitor import Monitor
from vtmon.model import Snapshot
from vtmon.tui.app import VtmonApp


def screen_text(app: VtmonApp) -> str:
    """The composited screen as plain lines (what a person would read)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def same_colour(rich_color: Any, css: str) -> bool:
    """Textual may blend a component colour by a unit or two; a different theme colour is far."""
    want = Color.parse(css).rich_color.triplet
    return all(abs(a - b) <= 3 for a, b in zip(rich_color.triplet, want, strict=True))


async def start(pilot: Any, monitor: Monitor) -> Snapshot:
    """Publish one Snapshot and let the app render it."""
    snap = monitor.tick()
    await pilot.pause()
    return snap
