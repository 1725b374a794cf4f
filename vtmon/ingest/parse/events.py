"""DogStatsD events (``_e{title_len,text_len}:title|text|...``) and service checks
(``_sc|name|status|...``), one line at a time; ``\\n`` escapes in their texts become newlines.
"""

from __future__ import annotations

from typing import Any

from vtmon.ingest.parse.statsd import sample_time, tag_pairs
from vtmon.model import Batch, Event, Reject, make_tags


def event(raw: bytes, batch: Batch) -> Reject | None:
    close = raw.find(b"}:", 3)
    if close < 0:
        return Reject.SYNTAX
    a, comma, b = raw[3:close].partition(b",")
    if not (comma and a.isdigit() and b.isdigit() and len(a) < 10 and len(b) < 10):
        return Reject.SYNTAX
    title_len, text_len = int(a), int(b)
    start = close + 2
    try:
        cut = _event_cut(raw, start, title_len, text_len, b"|")
        if cut is not None:
            title, text, tail = (p.decode() for p in cut)
        else:
            # Some clients count characters rather than UTF-8 bytes.
            s = raw.decode()
            cut_s = _event_cut(s, start, title_len, text_len, "|")  # the prefix is ASCII
            if cut_s is None:
                return Reject.SYNTAX
            title, text, tail = cut_s
    except UnicodeDecodeError:
        return Reject.ENCODING
    if not title:
        return Reject.SYNTAX
    meta = _meta(tail.rstrip().split("|") if tail.strip() else ())
    if type(meta) is Reject:
        return meta
    ts, host, pairs, other = meta
    priority = other.get("p", "")
    alert_type = other.get("t", "")
    batch.events.append(
        Event(
            kind="event",
            title=_unescape(title),
            text=_unescape(text),
            ts=ts,
            tags=make_tags(pairs),
            priority=priority,
            alert_type=alert_type,
            hostname=host,
        )
    )
    return None


def _meta(
    fields: Any,
) -> tuple[float, str, list[tuple[str, str]], dict[str, str]] | Reject:
    """The metadata fields events and service checks share: ``d:`` timestamp, ``h:`` host,
    ``#`` tags, and any other ``x:`` field by its letter; or why the line is rejected (the
    timestamp)."""
    ts = 0.0
    host = ""
    pairs: list[tuple[str, str]] = []
    other: dict[str, str] = {}
    for f in fields:
        if f[:2] == "d:":
            t = sample_time(f[2:].encode())
            if type(t) is Reject:
                return t
            ts = t
        elif f[:2] == "h:":
            host = f[2:]
        elif f[:1] == "#":
            pairs.extend(tag_pairs(f[1:]))
        elif f[1:2] == ":":
            other[f[:1]] = f[2:]
    return ts, host, pairs, other


def _event_cut(s: Any, start: int, title_len: int, text_len: int, bar: Any) -> Any:
    """(title, text, rest) when the declared lengths fit the line, else None."""
    mid = start + title_len
    end = mid + 1 + text_len
    if s[mid : mid + 1] != bar or len(s) < end or (len(s) > end and s[end : end + 1] != bar):
        return None
    return s[start:mid], s[mid + 1 : end], s[end + 1 :]


def service_check(line: bytes, batch: Batch) -> Reject | None:
    try:
        text = line.decode()
    except UnicodeDecodeError:
        return Reject.ENCODING
    fields = text.split("|")
    if len(fields) < 3 or not fields[1].strip() or fields[2] not in ("0", "1", "2", "3"):
        return Reject.SYNTAX
    rest = fields[3:]
    message = ""
    for i, f in enumerate(rest):
        if f[:2] == "m:":
            # The message comes last but may contain '|'; only the container/cardinality
            # fields clients append after it are not part of it.
            tail = rest[i:]
            while len(tail) > 1 and (tail[-1][:2] == "c:" or tail[-1][:5] == "card:"):
                tail.pop()
            message = "|".join(tail)[2:].replace("\\n", "\n").replace("m\\:", "m:")
            rest = rest[:i]
            break
    meta = _meta(rest)
    if type(meta) is Reject:
        return meta
    ts, host, pairs, _ = meta
    batch.events.append(
        Event(
            kind="service_check",
            title=fields[1],
            text=message,
            ts=ts,
            tags=make_tags(pairs),
            status=int(fields[2]),
            hostname=host,
        )
    )
    return None


def _unescape(s: str) -> str:
    return s.replace("\\n", "\n")
