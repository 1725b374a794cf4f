"""The report: one self-contained HTML file (or JSON) telling the story of a period from the
history store: how each component performed, what went wrong, what was changed and whether
it helped. ``vtmon report`` and the console's ``e`` key write it; docs/report.md describes it.

``build_report`` gathers the data (vtmon/report/build.py), ``render_html`` / ``render_json``
turn it into a file's text (vtmon/report/render.py, charts by vtmon/report/charts.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from vtmon.report.build import NoData, build_report
from vtmon.report.render import FORMATS, default_name, render_html, render_json, write_report

if TYPE_CHECKING:
    from vtmon.clock import Clock
    from vtmon.config import Config
    from vtmon.store.history import HistoryStore

__all__ = [
    "FORMATS",
    "NoData",
    "ReportSource",
    "build_report",
    "default_name",
    "make_report",
    "render_html",
    "render_json",
    "write_recent",
    "write_report",
]


@runtime_checkable
class ReportSource(Protocol):
    """A running engine, as far as the report of its recent past needs it (the console's
    ``e``): its history file (None when history is off), its clock, its configuration (the
    targets) and the machine it runs on."""

    @property
    def store(self) -> HistoryStore | None: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def config(self) -> Config: ...

    @property
    def host(self) -> str: ...


def make_report(
    store: HistoryStore,
    start: float,
    end: float,
    path: str | Path,
    fmt: str = "html",
    *,
    config: Config | None = None,
    host: str | None = None,
    now: float | None = None,
) -> Path:
    """Build the report of ``[start, end)`` from ``store`` and write it to ``path`` as
    ``fmt`` (html or json), readable by this user only; raises ``NoData`` when nothing is
    stored for the period."""
    source = str(store.path) if store.path is not None else ""
    report: dict[str, Any] = build_report(
        store, start, end, config=config, host=host, now=now, source=source
    )
    text = render_json(report) if fmt == "json" else render_html(report)
    return write_report(text, Path(path))


def write_recent(source: ReportSource, span_s: float, folder: Path) -> Path:
    """Write the HTML report of ``source``'s last ``span_s`` seconds in ``folder``, under its
    default name, and return its path; what the history file's writer has not written yet is
    flushed into it first. Raises ``NoData`` when nothing is stored for the period (or there
    is no history file)."""
    store = source.store
    if store is None:
        raise NoData("History is off: there is no history file to report from.")
    store.flush()
    now = source.clock.time()
    path = folder / default_name(now)
    return make_report(
        store, now - span_s, now, path, config=source.config, host=source.host, now=now
    )
