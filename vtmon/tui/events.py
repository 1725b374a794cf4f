"""Errors & events: errors per component, counters and gauges, recent events and service
checks, and every rejected line by reason (nothing the ingest refuses goes unseen).

What is wrong and why has its own panels (``bottlenecks.py``, ``alerts.py``); this one keeps
the raw material they are judged from.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.content import Content

from vtmon.model import Event, IngestStats, Kind, SeriesStats, Snapshot, WindowStats, as_table
from vtmon.tui import fmt
from vtmon.tui.live import LiveStatic, Panel, flow

LABEL_W = 9
MAX_ERRORS = 6
MAX_METRICS = 10
MAX_EVENTS = 5


_CHECK = {
    0: ("OK", "$success"),
    1: ("WARN", "$warning"),
    2: ("CRIT", "$error bold"),
    3: ("UNKN", "dim"),
}
_ALERT = {"error": "$error", "warning": "$warning", "success": "$success", "info": ""}


def _label(text: str) -> Content:
    return Content.styled(text.ljust(LABEL_W), "bold $secondary")


def _indent() -> Content:
    return Content(" " * LABEL_W)


def error_rate_style(rate: float | None) -> str:
    if rate is None or rate <= 0:
        return ""
    return "$error bold" if rate >= 0.05 else "$warning" if rate >= 0.01 else ""


def errors_lines(snap: Snapshot, width: int) -> list[Content]:
    errs = sorted(snap.errors, key=lambda e: (-e.errors, e.component))
    if not errs:
        return [Content.assemble(_label("Errors"), ("none reported in the last minute", "dim"))]
    # The numbers take 24 cells; the component name gets what is left, up to its length.
    longest = max(len(e.component) for e in errs[:MAX_ERRORS])
    comp_w = max(6, min(longest, width - LABEL_W - 24))
    lines = [
        Content.assemble(
            _label("Errors"),
            ("component"[:comp_w].ljust(comp_w) + "  errors     ops    rate", "dim"),
        ).truncate(width, ellipsis=True)
    ]
    for e in errs[:MAX_ERRORS]:
        rate = fmt.percent(e.error_rate * 100, 2) if e.error_rate is not None else fmt.DASH
        types = " · ".join(
            f"{k} {fmt.count(v)}" for k, v in sorted(e.by_type.items(), key=lambda kv: -kv[1])
        )
        line = Content.assemble(
            _indent(),
            fmt.ellipsize(e.component, comp_w).ljust(comp_w),
            "  ",
            (fmt.count(e.errors).rjust(6), "$error" if e.errors else ""),
            "  ",
            fmt.count(e.operations).rjust(6),
            "  ",
            (rate.rjust(6), error_rate_style(e.error_rate)),
        )
        if types and line.cell_length + 2 + len(types) <= width:
            lines.append(line + Content.styled("  " + types, "dim"))
        else:
            lines.append(line.truncate(width, ellipsis=True))
            if types:  # on a line of its own rather than cut off
                lines.append(
                    Content.assemble(_indent(), ("  " + types, "dim")).truncate(
                        width, ellipsis=True
                    )
                )
    if len(errs) > MAX_ERRORS:
        lines.append(Content.assemble(_indent(), (f"+{len(errs) - MAX_ERRORS} more", "dim")))
    return lines


def _items_more(items: list[Content], total: int) -> list[Content]:
    if total > len(items):
        items.append(Content.styled(f"+{total - len(items)} more", "dim"))
    return items


def metric_summary(series: Sequence[SeriesStats], window: str, width: int) -> list[Content]:
    """The first counters (rate) and gauges and sets (last value), each list with how many
    more there are; only the series named are built from the Snapshot's table."""
    table = as_table(series)
    counters = table.of_kind(Kind.COUNTER)
    gauges = table.of_kind(Kind.GAUGE, Kind.SET)
    lines: list[Content] = []
    empty = WindowStats()
    room = max(12, width - LABEL_W)

    def item(s: SeriesStats, value: str) -> Content:
        name = fmt.series_name(s.name, s.tags, max(8, room - len(value) - 1), component=True)
        return Content.assemble((f"{name} ", "dim"), value)

    if counters.size:
        items = [
            item(s, f"{fmt.rate(s.windows.get(window, empty).rate)}/s")
            for s in (table[i] for i in counters[:MAX_METRICS].tolist())
        ]
        lines += flow(_label("Counters"), _items_more(items, counters.size), width)
    if gauges.size:
        items = [
            item(s, fmt.count(s.last) + (" uniq" if s.kind == Kind.SET else ""))
            for s in (table[i] for i in gauges[:MAX_METRICS].tolist())
        ]
        lines += flow(_label("Gauges"), _items_more(items, gauges.size), width)
    return lines


def event_line(e: Event) -> Content:
    when = (fmt.clock(e.ts) if e.ts else "").ljust(8)
    text = (f"  {e.text}", "dim") if e.text else ""
    if e.kind == "service_check":
        word, style = _CHECK.get(e.status if e.status is not None else 3, _CHECK[3])
        return Content.assemble((when, "dim"), " ", (f"{word:<4}", style), " ", e.title, text)
    style = _ALERT.get(e.alert_type, "")
    return Content.assemble(
        (when, "dim"), " ", ("●", style or "$primary"), " ", (e.title, style), text
    )


def events_lines(events: tuple[Event, ...], width: int) -> list[Content]:
    recent = list(events[-MAX_EVENTS:])[::-1]  # newest first
    return [
        Content.assemble(_label("Events") if i == 0 else _indent(), event_line(e)).truncate(
            width, ellipsis=True
        )
        for i, e in enumerate(recent)
    ]


def ingest_lines(ing: IngestStats, width: int) -> list[Content]:
    lines: list[Content] = []
    if ing.rejected:
        items = [
            Content.assemble((fmt.count(n), "$error bold"), f" {reason}")
            for reason, n in sorted(ing.rejected.items(), key=lambda kv: -kv[1])
        ]
        lines += flow(_label("Rejected"), items, width)
    dropped = []
    if ing.samples_dropped:
        dropped.append(
            Content.assemble(
                (fmt.count(ing.samples_dropped), "$warning bold"),
                " samples (refused by the engine)",
            )
        )
    if ing.client_dropped:
        dropped.append(
            Content.assemble(
                (fmt.count(ing.client_dropped), "$warning bold"), " by clients while away"
            )
        )
    if dropped:
        lines += flow(_label("Dropped"), dropped, width)
    if ing.refused:
        n = ing.refused
        text = f" connection{'' if n == 1 else 's'} (max_connections reached)"
        lines += flow(
            _label("Refused"), [Content.assemble((fmt.count(n), "$warning bold"), text)], width
        )
    if ing.closed:
        # Connections vtmon closed for one of its limits (docs/protocol.md, "Limits").
        items = [
            Content.assemble((fmt.count(n), "$warning bold"), f" {reason}")
            for reason, n in sorted(ing.closed.items(), key=lambda kv: -kv[1])
        ]
        lines += flow(_label("Closed"), items, width)
    return lines


def events_text(snap: Snapshot, window: str, width: int = 80) -> Content:
    # Rejections first: the most likely reason someone's metrics are missing.
    lines = ingest_lines(snap.ingest, width)
    lines += errors_lines(snap, width)
    lines += metric_summary(snap.series, window, width)
    lines += events_lines(snap.events, width)
    return Content("\n").join(lines)


class EventsPanel(Panel):
    def compose(self) -> ComposeResult:
        yield LiveStatic(id="events-text")

    def on_mount(self) -> None:
        self.border_title = "Errors & events"

    def render_snapshot(self, snap: Snapshot, window: str) -> None:
        width = self.content_size.width or 80
        self.query_one("#events-text", LiveStatic).show(events_text(snap, window, width))
        rej = snap.ingest.rejected_total
        self.set_titles(subtitle=f"{fmt.count(rej)} rejected" if rej else "")
        self.set_class(bool(rej), "-rejects")
