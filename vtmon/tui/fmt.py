"""Numbers into short, fixed-width-friendly text. Pure functions, no Textual, easy to test.

Widths matter more than precision on a dashboard: every formatter keeps to about 7 cells so a
column does not jump when a value crosses a magnitude.
"""

from __future__ import annotations

import math
import time
from enum import StrEnum

from vtmon.model import Tags

DASH = "–"


class Severity(StrEnum):
    """How a latency compares with its component's target."""

    NONE = "none"  # no value or no target
    OK = "ok"  # <= target
    WARN = "warn"  # <= 2x target
    BAD = "bad"  # above 2x target


def severity(value_ms: float | None, target_ms: float | None) -> Severity:
    if value_ms is None or target_ms is None or not math.isfinite(value_ms) or target_ms <= 0:
        return Severity.NONE
    if value_ms <= target_ms:
        return Severity.OK
    if value_ms <= 2 * target_ms:
        return Severity.WARN
    return Severity.BAD


def latency(ms: float | None) -> str:
    """Milliseconds with a unit that fits: ``850 µs``, ``12.5 ms``, ``1.20 s``, ``2.5 min``.

    Thresholds sit where the rounded text would spill into the next magnitude, so 999.9 ms
    reads ``1.00 s`` rather than ``1000 ms``.
    """
    if ms is None or not math.isfinite(ms):
        return DASH
    if ms < 0:
        return "-" + latency(-ms)
    if ms == 0:
        return "0 ms"
    us = ms * 1000
    if us < 9.95:
        return f"{us:.1f} µs"
    if us < 999.5:
        return f"{us:.0f} µs"
    if ms < 9.995:
        return f"{ms:.2f} ms"
    if ms < 99.95:
        return f"{ms:.1f} ms"
    if ms < 999.5:
        return f"{ms:.0f} ms"
    s = ms / 1000
    if s < 9.995:
        return f"{s:.2f} s"
    if s < 59.95:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min"


def count(n: float | None) -> str:
    """A count in at most ~6 cells: ``950``, ``12.3k``, ``456k``, ``4.6M``."""
    if n is None or not math.isfinite(n):
        return DASH
    a = abs(n)
    if a < 999.5:
        return f"{n:.0f}" if a >= 10 or float(n).is_integer() else f"{n:.1f}"
    for div, unit in ((1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T")):
        v = n / div
        if abs(v) < 99.95:
            return f"{v:.1f}{unit}"
        if abs(v) < 999.5:
            return f"{v:.0f}{unit}"
    return f"{n:.2g}"


def rate(per_s: float | None) -> str:
    """Events per second: ``0.5``, ``12``, ``1.2k``."""
    if per_s is None or not math.isfinite(per_s):
        return DASH
    if abs(per_s) < 10 and per_s != 0:
        return f"{per_s:.1f}"
    return count(per_s)


_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(n: float | None) -> str:
    """Bytes in binary units: ``512 B``, ``1.5 GiB``."""
    if n is None or not math.isfinite(n):
        return DASH
    v = float(n)
    for unit in _BYTE_UNITS:
        if abs(v) < 1024 or unit == _BYTE_UNITS[-1]:
            if unit == "B":
                return f"{v:.0f} B"
            return f"{v:.1f} {unit}" if abs(v) < 100 else f"{v:.0f} {unit}"
        v /= 1024
    return f"{v:.0f} PiB"  # pragma: no cover - loop always returns


def byte_rate(n: float | None) -> str:
    return DASH if n is None else f"{size(n)}/s"


def percent(p: float | None, digits: int = 0) -> str:
    if p is None or not math.isfinite(p):
        return DASH
    return f"{p:.{digits}f}%"


def clock(t: float) -> str:
    """Local wall-clock time of ``t`` as ``HH:MM:SS``."""
    return time.strftime("%H:%M:%S", time.localtime(t))


def duration(seconds: float | None) -> str:
    """``45s``, ``12m``, ``3h05m``, ``2d04h``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return DASH
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s" if m < 10 else f"{m}m"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


_BARS = "▁▂▃▄▅▆▇█"


def spark_cell(p: float | None) -> str:
    """One cell of a bar for 0..100 % (never blank, so an idle core still shows)."""
    if p is None or not math.isfinite(p):
        return " "
    i = round(max(0.0, min(100.0, p)) / 100 * (len(_BARS) - 1))
    return _BARS[i]


def sparkline(values: list[float] | tuple[float, ...], width: int) -> str:
    """The last ``width`` values scaled to their own maximum (charts too small for plotext)."""
    vals = [v for v in values[-width:] if math.isfinite(v)] if width > 0 else []
    if not vals:
        return ""
    top = max(vals) or 1.0
    return "".join(spark_cell(v / top * 100) for v in vals)


def ellipsize(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` cells, keeping the start and marking the cut."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return text[: max(0, width - 1)] + "…"


def ellipsize_middle(text: str, width: int) -> str:
    """Cut the middle (paths: the start and the file name both matter)."""
    if len(text) <= width:
        return text
    if width <= 3:
        return text[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + text[len(text) - tail :]


def series_name(name: str, tags: Tags, width: int = 0, component: bool = False) -> str:
    """Name plus tags, fitted to ``width``: first the tag keys go (``{/orders}``), then the
    middle of the name, because the tag values are usually what tells two series of one
    metric apart. The component tag is left out unless ``component`` (when it has no column
    of its own)."""
    kept = [(k, v) for k, v in tags if component or k != "component"]
    full = "{" + ",".join(f"{k}={v}" if v else k for k, v in kept) + "}" if kept else ""
    if not width or len(name) + len(full) <= width:
        return name + full
    short = "{" + ",".join(v or k for k, v in kept) + "}" if kept else ""
    if len(name) + len(short) <= width:
        return name + short
    name_room = max(8, width - len(short))
    return ellipsize(ellipsize_middle(name, name_room) + short, width)


def num(v: float | None) -> str:
    """A measured value in few cells, as many decimals as its size deserves: ``612``,
    ``61.5``, ``4.25``, ``0.004``."""
    if v is None or not math.isfinite(v):
        return DASH
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    if a >= 0.01 or a == 0:
        return f"{v:.2f}".rstrip("0").rstrip(".") or "0"
    return f"{v:.2g}"


def clock_short(t: float) -> str:
    """Local wall-clock time of ``t`` as ``HH:MM`` (when a change started)."""
    return time.strftime("%H:%M", time.localtime(t))


def eta(seconds: float) -> str:
    """How long until a forecast limit: ``~45 s``, ``~12 min``, ``~2 h``."""
    s = max(0.0, seconds)
    if s < 90:
        return f"~{s:.0f} s"
    if s < 90 * 60:
        return f"~{s / 60:.0f} min"
    return f"~{s / 3600:.0f} h"
