"""One-line header: what is watched, where it arrives, how the ingest is doing, the time."""

from __future__ import annotations

from typing import Any

from textual.content import Content
from textual.widget import Widget

from vtmon.model import Snapshot
from vtmon.tui import fmt


class HeaderBar(Widget):
    DEFAULT_CSS = """
    HeaderBar { height: 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.snapshot: Snapshot | None = None
        self.paused = False

    def show(self, snap: Snapshot) -> None:
        self.snapshot = snap
        self.refresh()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self.refresh()

    def render(self) -> Content:
        width = self.content_size.width or 80
        snap = self.snapshot
        if snap is None:
            return Content.from_markup("[b]vtmon[/b]  waiting for the first snapshot…")
        ing = snap.ingest
        rejected = ing.rejected_total
        # The right side is what changes and matters most; it is never cut. The left side
        # (what and where) gives way, the socket path losing its middle first.
        right = Content.assemble(
            ("in ", "dim"),
            fmt.count(ing.accepted),
            ("  rej ", "dim"),
            (fmt.count(rejected), "$error bold" if rejected else ""),
            ("  conn ", "dim"),
            str(ing.connections),
            *(
                (("  drop ", "dim"), (fmt.count(ing.samples_dropped), "$warning bold"))
                if ing.samples_dropped
                else ()
            ),
            ("  PAUSED", "$warning bold reverse") if self.paused else "",
            "  ",
            (fmt.clock(snap.t), "bold"),
        )
        room = width - right.cell_length - 2
        watching = snap.watching or snap.host
        left_plain = f"vtmon  {watching}"
        if len(left_plain) > room:
            left = Content.assemble(
                ("vtmon", "bold $primary"), "  ", fmt.ellipsize(watching, room - 7)
            )
        else:
            sock_room = room - len(left_plain) - 3
            sock = fmt.ellipsize_middle(snap.socket, sock_room) if sock_room >= 10 else ""
            left = Content.assemble(
                ("vtmon", "bold $primary"),
                "  ",
                (watching, "bold"),
                ("  ◂ " + sock, "dim") if sock else "",
            )
        gap = max(1, width - left.cell_length - right.cell_length)
        return Content.assemble(left, " " * gap, right)
