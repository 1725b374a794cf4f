"""Building blocks of the panels: a base Panel, a Static that repaints only on change, and
``flow`` to lay labelled items out in the width a panel has.

Snapshots arrive every second but most text changes far less often; skipping identical
updates keeps a quiet screen from repainting (and from re-laying out) for nothing.

A panel that fails to draw says so in itself (``drawn``) and the rest of the
console goes on: a bug in one panel, or a value no panel foresaw, must not end the app that
applications rely on to be monitored and to have their tuning undone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from textual.containers import Vertical
from textual.content import Content
from textual.css.styles import RulesMap
from textual.events import Resize
from textual.widget import Widget
from textual.widgets import Static

from vtmon.model import Snapshot

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# What each widget last logged as its failure: a panel failing every second logs once, and
# again only when the failure changes.
_FAILED: WeakKeyDictionary[Widget, str] = WeakKeyDictionary()


def drawn(widget: Widget, draw: Callable[[], _T]) -> _T | Content:
    """What ``draw()`` returns, or, when it raises, the one-sentence text ``widget`` shows in
    its place: the failure is logged once while it stays the same, and anew once the widget
    drew again in between."""
    try:
        result = draw()
    except Exception as e:  # any bug or unforeseen value: shown and logged, never fatal
        what = f"{type(e).__name__}: {e}"
        if len(what) > 200:
            what = what[:199] + "…"
        if _FAILED.get(widget) != what:
            _FAILED[widget] = what
            # The widget in the message itself: the log's repeat filter tells lines apart by
            # their text, so that another panel's failure is not taken for a repeat.
            log.error(f"{widget.id or type(widget).__name__} could not be drawn", exc_info=e)
        return Content.assemble(
            ("Could not draw this: ", "bold $error"),
            (what, "$error"),
            (". vtmon goes on; the log has the details.", "$text-muted"),
        )
    _FAILED.pop(widget, None)
    return result


class Panel(Vertical):
    """A bordered panel showing the newest snapshot; laid out again when its size changes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.snapshot: Snapshot | None = None
        self.window = "1m"
        self._failure: LiveStatic | None = None  # shown at the top while drawing fails

    def show(self, snap: Snapshot, window: str) -> None:
        self.snapshot = snap
        self.window = window
        self.redraw()

    def redraw(self) -> None:
        """Draw the snapshot shown; a failure is shown at the top of the panel instead of
        ending the app, and goes once the panel draws again."""
        snap = self.snapshot
        if snap is None:
            return
        failed = drawn(self, lambda: self.render_snapshot(snap, self.window))
        if failed is not None:  # render_snapshot returns None: this is the failure
            if self._failure is None:
                self._failure = LiveStatic(classes="draw-failure")
                self.mount(self._failure, before=0 if self.children else None)
            self._failure.show(failed)
        elif self._failure is not None:
            self._failure.remove()
            self._failure = None

    @property
    def failure(self) -> str:
        """The failure the panel shows, "" while it draws (tests, screen readers)."""
        return self._failure.shown_text if self._failure is not None else ""

    def render_snapshot(self, snap: Snapshot, window: str) -> None:
        raise NotImplementedError

    def set_titles(self, title: str | None = None, subtitle: str | None = None) -> None:
        """Set the border title and subtitle (None: leave as is) only when they change:
        Textual repaints the whole panel, children and all, on every assignment."""
        set_border_title(self, title, subtitle)

    def on_resize(self, event: Resize) -> None:
        self.redraw()


# What each widget's border says, as last set here (the setter parses markup, so reading it
# back would not always compare equal).
_TITLES: WeakKeyDictionary[Widget, list[str | None]] = WeakKeyDictionary()


def set_border_title(widget: Widget, title: str | None = None, subtitle: str | None = None) -> None:
    """``widget.border_title = title`` (and subtitle) unless it already reads so."""
    shown = _TITLES.setdefault(widget, [None, None])
    if title is not None and title != shown[0]:
        shown[0] = title
        widget.border_title = title
    if subtitle is not None and subtitle != shown[1]:
        shown[1] = subtitle
        widget.border_subtitle = subtitle


class LiveStatic(Static):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shown: str | None = None
        self._content: Content | None = None

    def show(self, content: Content) -> bool:
        """Display ``content``; False when it was already on screen (text and styles)."""
        key = content.markup  # markup carries the styles too; Content == compares text only
        if key == self._shown:
            return False
        self._shown = key
        old, self._content = self._content, content
        self.update(content, layout=self._size_may_change(old, content))
        return True

    def _size_may_change(self, old: Content | None, new: Content) -> bool:
        """Whether ``new`` may take another size than ``old`` (then the screen is laid out
        again); a reading that changes every second keeps its lines, and skipping the layout
        keeps the rest of the screen from being recomputed for it."""
        width = self.content_size.width
        if old is None or not width or not self.is_mounted:
            return True
        # Textual types these ``rules`` as a RulesMap and passes its Widget.styles there
        # itself (widget.py): a RenderStyles answers the same ``get``.
        rules: RulesMap = self.styles  # type: ignore[assignment]
        if new.plain.count("\n") != old.plain.count("\n"):
            return True
        # The widest line of each (Content caches it): when both fit, nothing wraps and the
        # height is the number of lines; only otherwise is the wrapping worked out.
        new_w, old_w = new.get_optimal_width(rules, width), old.get_optimal_width(rules, width)
        if max(new_w, old_w) > width and new.get_height(rules, width) != old.get_height(
            rules, width
        ):
            return True
        w = self.styles.width
        return w is not None and w.is_auto and new_w != old_w

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
