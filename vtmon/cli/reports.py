"""`vtmon report`: the report of a period, written from the stored history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import platformdirs

from vtmon.cli.options import config_option, inherit, load, remember
from vtmon.config import APP


class _ReportError(click.ClickException):
    exit_code = 2


_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``1h``, ``1h30m``, ``2d``, ``1w`` (a bare number is seconds) in seconds;
    ValueError when it is none of these or not positive."""
    import re

    t = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", t):
        total = float(t)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", t)
        if not parts or "".join(n + u for n, u in parts) != t:
            raise ValueError(text)
        total = sum(float(n) * _UNITS_S[u] for n, u in parts)
    if not 0 < total < float("inf"):
        raise ValueError(text)
    return total


def _parse_time(text: str, option: str) -> float:
    from datetime import datetime

    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _ReportError(
            f"{option} takes an ISO 8601 time such as 2026-11-27T14:00 (local time) or "
            f"2026-11-27T14:00+01:00; got {text!r}."
        ) from None
    return when.astimezone().timestamp() if when.tzinfo is None else when.timestamp()


def _report_period(since: str | None, start: str | None, end: str | None) -> tuple[float, float]:
    import time

    if since is not None and (start is not None or end is not None):
        raise _ReportError("Give either --since or --from/--to, not both.")
    now = time.time()
    if since is not None:
        try:
            return now - parse_duration(since), now
        except ValueError:
            raise _ReportError(
                f"--since takes a duration such as 30m, 1h, 1h30m or 2d; got {since!r}."
            ) from None
    t1 = _parse_time(end, "--to") if end is not None else now
    t0 = _parse_time(start, "--from") if start is not None else t1 - 3600.0
    if t0 >= t1:
        raise _ReportError("The period is empty: --from must be before --to.")
    return t0, t1


@click.command()
@click.option(
    "--since",
    metavar="DURATION",
    help="Report on the last DURATION: 30m, 1h, 1h30m, 2d, 1w. Default: 1h.",
)
@click.option(
    "--from",
    "start",
    metavar="TIME",
    help="Start of the period, ISO 8601: 2026-11-27T14:00 (local time) or with an offset.",
)
@click.option("--to", "end", metavar="TIME", help="End of the period (ISO 8601). Default: now.")
@click.option(
    "--data-dir",
    metavar="DIR",
    expose_value=False,
    callback=remember("data_dir"),
    help="The folder holding the history file (vtmon.db). Default: the user data folder.",
)
@click.option("--demo", "demo_db", is_flag=True, help="Report on the demo's history (demo.db).")
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Write the report to FILE (- for standard output). "
    "Default: vtmon-report-<date>-<time>.<format> in the current folder.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "json"]),
    default="html",
    show_default=True,
    help="html: one self-contained page to open, print or send; json: the same content.",
)
@config_option
def report(
    since: str | None,
    start: str | None,
    end: str | None,
    demo_db: bool,
    output: Path | None,
    fmt: str,
    config_file: str | None,
) -> None:
    """Write the report of a period from the stored history: one HTML file, no network.

    How each component performed (latency percentiles against targets, resources), what went
    wrong (bottlenecks, alerts, regressions, forecasts), what was changed and whether it
    helped. Needs no running vtmon. The console's `e` key writes the same report.

    \b
      vtmon report                          # the last hour
      vtmon report --since 24h -o day.html
      vtmon report --from 2026-11-27T09:00 --to 2026-11-27T12:00 --format json
    """
    import time

    from vtmon.report import NoData, build_report, default_name, render_html, render_json
    from vtmon.report import write_report as write
    from vtmon.store.history import DB_NAME, DEMO_DB_NAME, HistoryStore

    config_file = inherit(None, config_file)[1]
    t0, t1 = _report_period(since, start, end)
    cfg = load(config_file)
    ctx = click.get_current_context()
    named = ctx.meta.get("vtmon.data_dir")
    data_dir = Path(named or platformdirs.user_data_dir(APP))
    name = DEMO_DB_NAME if demo_db else DB_NAME
    if not (data_dir / name).is_file():
        if not demo_db and (data_dir / DEMO_DB_NAME).is_file():
            raise _ReportError(
                f"There is no history file {data_dir / name}, only the demo's "
                f"({DEMO_DB_NAME}): pass --demo to report on it."
            )
        raise _ReportError(
            f"There is no history file {data_dir / name}: vtmon keeps one while it runs "
            "(`vtmon`, `vtmon serve`); pass --data-dir for another folder."
        )
    path = data_dir / name

    def build(store: HistoryStore) -> dict[str, Any] | None:
        try:
            return build_report(store, t0, t1, config=cfg, source=str(path))
        except NoData as e:
            if store.damaged or store.changed:  # nothing read because of it
                return None
            raise _ReportError(str(e)) from None

    for _ in range(2):  # again when a vtmon started writing the file while it was read
        # Read-only: a report changes nothing, not even a damaged file (vtmon moves that aside).
        store = HistoryStore.open_read_only(path, cfg.retention)
        try:
            if not store.persistent and not store.damaged:
                raise _ReportError(f"Cannot read {path}: {store.warning}.")
            data = None if store.damaged else build(store)
        finally:
            store.close()
        if not store.changed:
            break
    if data is None or store.damaged or store.changed:
        why = store.damaged or "it changed while it was read"
        raise _ReportError(
            f"The history file {path} is damaged ({why}), so no report was written; it is "
            "left as it is (the next vtmon to start moves it aside and starts a new one)."
        )
    text = render_json(data) if fmt == "json" else render_html(data)
    if output is not None and str(output) == "-":
        click.echo(text, nl=False)
        return
    path = output or Path(default_name(time.time(), fmt))
    try:
        write(text, path, private=output is None)  # a path the user named is theirs to share
    except OSError as e:
        raise click.ClickException(f"Cannot write {path}: {e.strerror or e}.") from None
    size = len(text.encode()) / 1024
    click.echo(
        f"Wrote the report of {data['period']['duration_s'] / 60:.0f} min to {path} "
        f"({size:,.0f} KiB).",
        err=True,
    )
