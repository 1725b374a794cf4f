"""The report: one self-contained HTML file (or JSON) telling the story of a period from the
history store: how each component performed, what went wrong, what was changed and whether
it helped. ``vtmon report`` and the console's ``e`` key write it; docs/report.md describes it.

``build_report`` gathers the data (vtmon/report/build.py), ``render_html`` / ``render_json``
turn it into a file's text (vtmon/report/render.py, charts by vtmon/report/charts.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtmon.report.build import NoData, build_report
from vtmon.report.render import FORMATS, default_name, render_html, render_json, write_report

if TYPE_CHECKING:
    from vtmon.config import Config
    from vtmon.store.history import HistoryStore

__all__ = [
    "FORMATS",
    "NoData",
    "build_report",
    "default_name",
    "make_report",
    "render_html",
    "render_json",
    "write_report",
]


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
