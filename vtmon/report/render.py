"""The report as one self-contained HTML file (jinja2, autoescaped) or as JSON.

The HTML page has no external references at all: its CSS is inline, its charts are inline SVG
(vtmon/report/charts.py), it runs no JavaScript, and the numbers behind the charts are
embedded as JSON in a ``<script type="application/json">`` element, which a browser never
executes. Every string that came from the socket (metric names, tags, messages) is escaped by
jinja2's autoescaping, or by pygal's XML serialisation inside a chart, and the embedded JSON
escapes ``<``, ``>`` and ``&``, so a metric named ``<script>`` is shown as text.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup

from vtmon.model import COUNT_MAX, as_float
from vtmon.report import charts
from vtmon.report.build import health_status

TEMPLATES = Path(__file__).parent / "templates"
FORMATS = ("html", "json")
DASH = "—"
WHEN = "%a %d %b %Y %H:%M:%S"
ALERT_ROWS = 200  # the HTML lists the newest this many alerts; the JSON has all


def finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None, so that it is valid JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(finite(report), indent=2, allow_nan=False) + "\n"


def render_html(report: dict[str, Any]) -> str:
    report = finite(report)
    period = report["period"]
    start, end = period["start"], period["end"]
    fmt = _time_format(start, end)
    env = _env()
    template = env.get_template("report.html.j2")
    return template.render(
        r=report,
        charts=_charts(report),
        alert_rows=list(reversed(report["alerts"]))[:ALERT_ROWS],
        at=lambda t: _at(t, fmt),
        bar=lambda a, b: _bar(a, b, start, end),
        data_json=Markup(_script_json(report)),
        DASH=DASH,
        gauge_unit=gauge_unit,
        period_text=_period_text(start, end),
    )


def write_report(text: str, path: Path, *, private: bool = True) -> Path:
    """Write ``text`` to ``path`` whole or not at all (a temporary file renamed into place).

    ``private``: readable by this user only (0600), as everything vtmon writes in its own
    places; False (a path the user named) makes it as any file of theirs (the umask decides).
    """
    path = Path(path)
    folder = path.parent or Path(".")
    while True:
        tmp = folder / f".{path.name}.{secrets.token_hex(4)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def default_name(now: float, fmt: str = "html") -> str:
    """``vtmon-report-20261127-143000.html``: local time, sorts by time."""
    return f"vtmon-report-{datetime.fromtimestamp(now).strftime('%Y%m%d-%H%M%S')}.{fmt}"


# --- the page ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its name
        # A field a stored finding lacks (an older file, a partial record) renders empty.
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        ms=fmt_ms,
        num=fmt_num,
        count=fmt_count,
        rate=fmt_rate,
        pct=fmt_pct,
        score=fmt_score,
        dur=fmt_duration,
        value=fmt_value,
        iso=lambda t: datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds"),
        when=lambda t: datetime.fromtimestamp(t).strftime(WHEN),
        tagtext=lambda tags: ", ".join(f"{k}={v}" for k, v in sorted(tags.items())),
        health_status=health_status,
    )
    return env


def _script_json(report: dict[str, Any]) -> str:
    """The report as JSON that is safe inside a ``<script>`` element: ``<``, ``>`` and ``&``
    as ``\\u`` escapes (a string can never close the element)."""
    text = json.dumps(report, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _charts(report: dict[str, Any]) -> dict[str, Any]:
    period = report["period"]
    start, end, tz = period["start"], period["end"], period["timezone"]
    c = report["charts"]
    latency = []
    for ch in c["latency"]:
        target = ch["target_ms"]
        svg = charts.time_chart(
            f"{ch['component']}: latency percentiles",
            start,
            end,
            ch["t"],
            [("p50", ch["p50"]), ("p95", ch["p95"]), ("p99", ch["p99"])],
            res=ch["resolution_s"],
            y_title="latency (ms)",
            timezone=tz,
            target=(f"target {fmt_ms(target)}", target) if target else None,
        )
        latency.append({"component": ch["component"], "svg": Markup(svg), "data": ch})
    histograms = [
        {
            "component": h["component"],
            "svg": Markup(
                charts.histogram_chart(
                    f"{h['component']}: latency distribution", h["bins"], h["unit"]
                )
            ),
            "total": sum(b[2] for b in h["bins"]),
        }
        for h in c["histograms"]
    ]
    res = c["resources"]
    machine = []
    if res.get("t"):
        ts = res["t"]
        step = min((b - a for a, b in zip(ts, ts[1:], strict=False)), default=5.0)
        groups: list[tuple[str, list[tuple[str, str]], str, Callable[[float], str] | None]] = [
            ("CPU and memory", [("CPU", "cpu"), ("memory", "mem")], "% used", None),
            ("Disk IO", [("read", "disk_read"), ("write", "disk_write")], "per second", _bps),
            ("Network", [("receive", "net_rx"), ("transmit", "net_tx")], "per second", _bps),
            (
                "Pressure stalls (some avg10)",
                [("CPU", "psi_cpu"), ("memory", "psi_memory"), ("IO", "psi_io")],
                "% of time stalled",
                None,
            ),
        ]
        for title, cols, y_title, y_format in groups:
            lines = [(name, res[col]) for name, col in cols if any(v is not None for v in res[col])]
            if not lines:
                continue
            svg = charts.time_chart(
                title,
                start,
                end,
                res["t"],
                lines,
                res=step,
                y_title=y_title,
                timezone=tz,
                y_format=y_format,
                size=charts.SMALL,
            )
            machine.append({"title": title, "svg": Markup(svg)})
    return {"latency": latency, "histograms": histograms, "resources": machine}


def gauge_unit(name: str) -> str:
    """Memory gauges are bytes (the engine's memory rule reads them so)."""
    return "B" if name.endswith(("memory_heap_used", "memory_rss", "_bytes")) else ""


def _bps(v: float) -> str:
    return charts.human_bytes(v) + "/s"


def _period_text(start: float, end: float) -> str:
    a, b = datetime.fromtimestamp(start), datetime.fromtimestamp(end)
    if a.date() == b.date():
        return f"{a.strftime(WHEN)} to {b.strftime('%H:%M:%S')}"
    return f"{a.strftime(WHEN)} to {b.strftime(WHEN)}"


def _time_format(start: float, end: float) -> str:
    same_day = datetime.fromtimestamp(start).date() == datetime.fromtimestamp(end - 1).date()
    return "%H:%M:%S" if same_day else "%d %b %H:%M:%S"


def _at(t: float | None, fmt: str) -> str:
    x = as_float(t)
    if x is None:
        return DASH
    return datetime.fromtimestamp(x).strftime(fmt)


def _bar(a: float | None, b: float | None, start: float, end: float) -> str:
    """CSS ``left`` and ``width`` of the interval ``[a, b]`` on a track for the period."""
    span = max(end - start, 1e-9)
    lo = min(max(((a if a is not None else start) - start) / span, 0.0), 1.0)
    hi = min(max(((b if b is not None else end) - start) / span, 0.0), 1.0)
    return f"left:{lo * 100:.2f}%;width:{max(hi - lo, 0.004) * 100:.2f}%"


# --- numbers as people read them ---------------------------------------------------------------


# Each takes whatever the report holds (numbers from a history file an older vtmon may have
# written) and shows a dash for what is no finite number (as_float).


def fmt_num(v: Any) -> str:
    x = as_float(v)
    return DASH if x is None else charts._plain(x)


def fmt_ms(v: Any) -> str:
    """A latency: ``0.52 ms``, ``35.4 ms``, ``354 ms``, ``1.20 s``."""
    x = as_float(v)
    if x is None:
        return DASH
    if abs(x) >= 1000:
        return f"{x / 1000:.2f} s"
    return f"{charts._plain(x)} ms"


def fmt_count(v: Any) -> str:
    if type(v) is int and abs(v) <= COUNT_MAX:
        return f"{v:,}"  # exact, where a float would round
    x = as_float(v)
    if x is None:
        return DASH
    return f"{x:,.0f}" if x.is_integer() or abs(x) >= 100 else charts._plain(x)


def fmt_rate(v: Any) -> str:
    x = as_float(v)
    return DASH if x is None else f"{charts._plain(x)}/s"


def fmt_pct(v: Any, digits: int = 0) -> str:
    """A fraction as a percentage: 0.38 -> ``38 %``."""
    x = as_float(v)
    return DASH if x is None else f"{x * 100:.{digits}f} %"


def fmt_score(v: Any) -> str:
    x = as_float(v)
    return DASH if x is None else f"{x:.2f}"


def fmt_value(v: Any, unit: str) -> str:
    """A reading in its unit: bytes per second in binary units, percentages, the rest plain."""
    x = as_float(v)
    if x is None:
        return DASH
    if unit == "B/s":
        return _bps(x)
    if unit == "B":
        return charts.human_bytes(x)
    if unit == "ms":
        return fmt_ms(x)
    if unit in ("%", "°C", "W", "rpm", "MB"):
        return f"{charts._plain(x)} {unit}"
    return f"{charts._plain(x)}{unit}"


def fmt_duration(seconds: Any) -> str:
    """``45 s``, ``12 min``, ``3 h 05 min``, ``2 d 04 h``."""
    x = as_float(seconds)
    if x is None or x < 0:
        return DASH
    s = int(round(x))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s" if m < 10 and s else f"{m} min"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h} h {m:02d} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h:02d} h" if h else f"{d} d"
