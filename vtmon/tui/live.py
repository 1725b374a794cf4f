"""Building blocks of the panels: a base Panel, a Static that repaints only on change, and
``flow`` to lay labelled items out in the width a panel has.

Snapshots arrive every second but most text changes far less often; skipping identical
updates keeps a quiet screen from repainting (and from re-laying out) for nothing.
"""

from __future__ import annotations

from typing import Any

from textual.containers import Vertical
from textual.content import Content
from textual.events import Resize
from textual.widgets import Static

from vtmon.model import Snapshot


class Panel(Vertical):
    """A bordered panel showing the newest snapshot; laid out again when its size changes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.snapshot: Snapshot | None = None
        self.window = "1m"

    def show(self, snap: Snapshot, window: str) -> None:
        self.snapshot = snap
        self.window = window
        self.render_snapshot(snap, window)

    def render_snapshot(self, snap: Snapshot, window: str) -> None:
        raise NotImplementedError

    def on_resize(self, event: Resize) -> None:
        if self.snapshot is not None:
            self.render_snapshot(self.snapshot, self.window)


class LiveStatic(Static):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shown: str | None = None

    def show(self, content: Content) -> bool:
        """Display ``content``; False when it was already on screen (text and styles)."""
        key = content.markup  # markup carries the styles too; Content == compares text only
        if key == self._shown:
            return False
        self._shown = key
        self.update(content)
        return True

    @property
    def shown_text(self) -> str:
        """The plain text on screen (tests and screen readers of the DOM)."""
        return Content.from_markup(self._shown).plain if self._shown is not None else ""


def flow(label: Content, items: list[Content], width: int, sep: str = "  ") -> list[Content]:
    """Lay ``items`` out after ``label`` in as many lines as ``width`` needs, continuation
    lines indented under the first item, never breaking an item in two (Static's own
    wrapping would break mid-item and lose the column)."""
    indent = Content(" " * label.cell_length)
    lines: list[Content] = []
    line = label
    used = label.cell_length
    first = True
    for item in items:
        extra = (0 if first else len(sep)) + item.cell_length
        if not first and used + extra > width:
            lines.append(line)
            line, used, first = indent, indent.cell_length, True
            extra = item.cell_length
        line = line + item if first else line + Content(sep) + item
        used += extra
        first = False
    lines.append(line)
    return lines
