"""One-line header: what is watched, where it arrives, the verdict (active bottlenecks, overall
health), how the ingest is doing, the time.

The verdict is never cut: whatever the layout shows or scrolls away, the header still says
how many bottlenecks are active.
"""

from __future__ import annotations

from typing import Any

from textual.content import Content
from textual.geometry import Region
from textual.widget import Widget

from vtmon.model import Snapshot
from vtmon.tui import fmt
from vtmon.tui.live import drawn
from vtmon.tui.severity import health_style, worst


class HeaderBar(Widget):
    DEFAULT_CSS = """
    HeaderBar { height: 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.snapshot: Snapshot | None = None
        self.paused = False
        self._shown: tuple[int, str, int] | None = None  # width, left side, right side's length
        # The two sides as show() made them, for render() to draw: made once a Snapshot.
        self._made: tuple[Snapshot, int, bool, Content, Content] | None = None

    def show(self, snap: Snapshot) -> None:
        self.snapshot = snap
        width = self.content_size.width
        if not width:
            self.refresh()
            return
        left, right = self._sides(snap, width)
        # Most seconds only the clock and the counters on the right change: repaint just
        # them, so the rest of the screen's row is not composited again for the clock.
        shown = (width, left.markup, right.cell_length)
        fits = left.cell_length + 1 + right.cell_length <= width
        if shown == self._shown and fits:
            self.refresh(Region(width - right.cell_length, 0, right.cell_length, 1))
        else:
            self._shown = shown
            self.refresh()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self._shown = None
        self.refresh()

    def render(self) -> Content:
        width = self.content_size.width or 80
        snap = self.snapshot
        if snap is None:
            return Content.from_markup("[b]vtmon[/b]  waiting for the first snapshot…")
        left, right = self._sides(snap, width)
        gap = max(1, width - left.cell_length - right.cell_length)
        return Content.assemble(left, " " * gap, right)

    def _sides(self, snap: Snapshot, width: int) -> tuple[Content, Content]:
        made = self._made
        if made is not None and made[0] is snap and made[1] == width and made[2] == self.paused:
            return made[3], made[4]
        parts = drawn(self, lambda: self._parts(snap, width))  # a failure shown in the header
        left, right = (parts, Content("")) if isinstance(parts, Content) else parts
        self._made = (snap, width, self.paused, left, right)
        return left, right

    def _parts(self, snap: Snapshot, width: int) -> tuple[Content, Content]:
        """The left side (what is watched, where) and the right (verdict, counters, time)."""
        right = self._right(snap, width)
        room = width - right.cell_length - 2
        watching = snap.watching or snap.host
        left_plain = f"vtmon  {watching}"
        if len(left_plain) > room:
            left = Content.assemble(
                ("vtmon", "bold $primary"), "  ", fmt.ellipsize(watching, room - 7)
            )
        else:
            sock_room = room - len(left_plain) - 3
            # "metrics on PATH" names the socket already
            said = bool(snap.socket) and snap.socket in watching
            sock = fmt.ellipsize_middle(snap.socket, sock_room) if sock_room >= 10 else ""
            sock = "" if said else sock
            left = Content.assemble(
                ("vtmon", "bold $primary"),
                "  ",
                (watching, "bold"),
                ("  ◂ " + sock, "dim") if sock else "",
            )
        return left, right

    def _right(self, snap: Snapshot, width: int) -> Content:
        """The right side, giving way in steps when the line is short: first the connection
        count, then the long words (``bottlenecks`` becomes ``btl``)."""
        ing = snap.ingest
        rejected = ing.rejected_total
        n = len(snap.bottlenecks)
        sev = worst([b.severity for b in snap.bottlenecks])
        bad = sev is not None and sev.rank >= 2
        health = snap.overall_health
        for level in range(3):
            parts: list[Content | tuple[str, str] | str] = []
            if n:
                word = ("bottleneck" if n == 1 else "bottlenecks") if level < 2 else "btl"
                parts += [(f"▲ {n} {word}", "$error bold" if bad else "$warning bold"), "  "]
            if health is not None:
                status = health.status if level < 2 else health.status[:4]
                parts += [
                    ("health " if level < 2 else "h ", "dim"),
                    (f"{health.score:.2f} {status}", health_style(health.status)),
                    "  ",
                ]
            parts += [
                ("in ", "dim"),
                fmt.count(ing.accepted),
                ("  rej ", "dim"),
                (fmt.count(rejected), "$error bold" if rejected else ""),
            ]
            if level == 0:
                parts += [("  conn ", "dim"), str(ing.connections)]
            if snap.store_warning:
                # Not being written, or something done to the file (moved aside, trimmed to its
                # bound): the notification holds the sentence, the header keeps the mark.
                parts += [("  ⚠ " + ("history" if level < 2 else "hist"), "$warning bold")]
            # Samples lost on the way in: the engine's queue and the clients' buffers (while
            # vtmon was away); the Errors & events panel says which.
            dropped = ing.samples_dropped + ing.client_dropped
            if dropped:
                parts += [("  drop ", "dim"), (fmt.count(dropped), "$warning bold")]
            if ing.series_refused:  # the series cap is reached: new series are refused
                parts += [("  full ", "dim"), (fmt.count(ing.max_series), "$warning bold")]
                if level == 0:
                    top = max(ing.series_refused.items(), key=lambda kv: kv[1])[0]
                    parts += [(f" series, new {top} refused", "dim")]
            if self.paused:
                parts += ["  ", ("PAUSED", "$warning bold reverse")]
            parts += ["  ", (fmt.clock(snap.t), "bold")]
            right = Content.assemble(*parts)
            # Keep room for "vtmon" and a little of what is watched.
            if right.cell_length + 14 <= width:
                break
        return right
