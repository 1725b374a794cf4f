"""JSON metric lines, one at a time: a stripped line starting with ``{`` is a JSON-RPC message
(handed to the server in ``Batch.rpc``, see ``rpc``) or a performance metric ``{"name",
"value", "timestamp" (ms), "tags", "unit", "context"}``; of the context only ``component`` and
``error_type`` make the series. Values and times are bounded as StatsD's are (see ``statsd``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from vtmon.ingest.parse import rpc
from vtmon.ingest.parse.cache import INTERN, JKEYS, JTEMPLATE_BYTES
from vtmon.ingest.parse.statsd import COUNTER, DIST, GAUGE, add
from vtmon.model import (
    TIME_MAX_S,
    VALUE_MAX,
    Batch,
    Kind,
    Reject,
    SeriesKey,
    TimedRun,
    bounded,
    make_tags,
)

JsonMetric = tuple[SeriesKey, Kind, float, float | None]  # key, kind, value, timestamp (s)

# json.loads without its per-call overhead. typeshed does not declare scan_once, which the
# standard library's JSONDecoder sets in its __init__.
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_json_number = bounded  # a JSON value within VALUE_MAX, else None
MS_MAX = TIME_MAX_S * 1000.0  # JSON timestamps are in milliseconds


def json_line(line: bytes, batch: Batch) -> Reject | None:
    r = json_parse(line)
    if type(r) is not tuple:
        if type(r) is Reject:
            return r
        batch.rpc.append(r)  # a JSON-RPC message
        return None
    key, kind, value, ts = r
    if kind is GAUGE:
        batch.gauges.setdefault(key, []).append((False, value))
    elif ts is not None:
        timed = batch.timed
        last = timed[-1] if timed else None
        if last is not None and last.key is key and last.weight == 1.0:
            last.values.append(value)  # a series' lines in a row share one run
            last.ts.append(ts)
        else:
            timed.append(TimedRun(key, [value], [ts]))
    elif kind is DIST:
        add(batch, key, kind, 1.0, [], [value])
    else:
        batch.counts[key] = batch.counts.get(key, 0.0) + value
    return None


def json_parse(s: bytes) -> JsonMetric | dict[str, Any] | Reject:
    """A stripped line starting with ``{``: the series, value and timestamp (s) of a metric,
    a JSON-RPC message, or why the line is rejected."""
    try:
        text = s.decode()
    except UnicodeDecodeError:
        return Reject.ENCODING
    try:
        # As json.loads(text): nothing but the object may be on the line (it has no blanks
        # around it), so the object must end where the text does.
        obj, end = _scan(text, 0)
    except (StopIteration, ValueError, RecursionError):
        return Reject.SYNTAX
    if end != len(text) or type(obj) is not dict:
        return Reject.SYNTAX
    if ("jsonrpc" in obj or "method" in obj) and rpc.is_message(obj):
        return obj  # a JSON-RPC message; a metric line has neither field: no call for it
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip() or "value" not in obj:
        return Reject.SYNTAX
    value = obj["value"]
    if type(value) is not float or not -VALUE_MAX <= value <= VALUE_MAX:  # the usual case first
        value = _json_number(value)
        if value is None:
            return Reject.NUMBER
    ts: float | None = None
    ms = obj.get("timestamp")
    if ms is not None:
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms != ms:
            return Reject.SYNTAX  # no number (NaN neither)
        if not 0 <= ms < MS_MAX:  # compared as it came: an integer of any length
            return Reject.TIME
        ts = ms / 1000.0
    unit = obj.get("unit")
    tags = obj.get("tags")
    context = obj.get("context")
    if unit is not None and not isinstance(unit, str):
        return Reject.SYNTAX
    if tags is not None and not isinstance(tags, dict):
        return Reject.SYNTAX
    if context is not None and not isinstance(context, dict):
        return Reject.SYNTAX
    pairs: list[tuple[str, str]] = []
    if tags:
        for k, v in tags.items():
            tag = v if type(v) is str else _json_tag(v)
            if tag is None:
                return Reject.SYNTAX
            pairs.append((k, tag))
    if context:
        for field in ("error_type", "component"):  # component last: the context's wins
            v = context.get(field)
            if v is not None:
                tag = v if type(v) is str else _json_tag(v)
                if tag is None:
                    return Reject.SYNTAX
                pairs.append((field, tag))
    ck = (name, unit, *pairs)
    hit = JKEYS.get(ck)
    if hit is None:
        kind = _json_kind(name, unit)
        key = SeriesKey(name, make_tags(pairs), kind)
        hit = INTERN.setdefault(key, key), kind
        if len(s) <= JTEMPLATE_BYTES:
            JKEYS[ck] = hit
    return hit[0], hit[1], value, ts


def _json_kind(name: str, unit: str | None) -> Kind:
    low = name.lower()
    if low.endswith(("latency", "duration")):
        return DIST
    if low.endswith(("error_count", "throughput")):
        return COUNTER  # errors and operations, the two sides of an error rate
    if unit is not None and unit.lower() == "ms":
        return DIST
    return GAUGE


def _json_tag(v: object) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return None
