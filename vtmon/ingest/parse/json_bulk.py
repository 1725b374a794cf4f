"""Turn blocks of received lines into a ``Batch``.

A line is one of

* StatsD / DogStatsD: ``name:value[:value...]|type[|@rate][|#tags][|T<unix s>][|x...]``
  with types ``ms h d`` (distribution), ``c`` (counter), ``g`` (gauge; a leading ``+``/``-``
  makes it a delta), ``s`` (set). Unknown ``|x...`` fields after the type are ignored.
* DogStatsD events ``_e{title_len,text_len}:title|text|...`` and service checks
  ``_sc|name|status|...``; ``\\n`` escapes in their texts become newlines.
* A JSON object: a JSON-RPC 2.0 request (handed to the server in ``Batch.rpc``) or a
  performance metric ``{"name", "value", "timestamp" (ms), "tags", "unit", "context"}``.

Every non-blank line is counted exactly once, in ``Batch.accepted`` or under a ``REJECT_*``
reason; nothing here raises for any input bytes.

Samples that carry a timestamp go to ``Batch.timed`` as ``TimedRun(key, values, ts, weight)``
with ``weight = 1 / sample rate``; for a counter the increment is ``value * weight``.

Numbers are bounded here, where they enter (docs/protocol.md, "Numbers"): a value must be
finite with ``|v| <= VALUE_MAX`` (else ``bad number``), a sample rate lie in ``[RATE_MIN, 1]``
(else ``bad syntax``), a time in ``[0, TIME_MAX_S)`` seconds (else ``bad time``). So no sum of
what a Batch holds leaves the float range, and no time breaks a date.

Speed: the common StatsD form (``name:value|type[|...]``) is recognised for a whole block at
once by one regex ``split`` (the scan runs in C); values are grouped per series with C-level
``map`` calls and converted with ``map(float, ...)``. Lines the regex does not take (events,
multi-values, ...; JSON lines go to the JSON path below) and lines it takes but cannot settle
in bulk (timestamps, values like ``1e999``) go one by one through the per-line parser, which
decides every reject reason. The fast path accepts exactly what the per-line parser would,
with the same result, except that within one batch a distribution's samples (and counter
increments) may be added in another order; gauge updates always keep line order.

JSON metric lines take a similar path (``_jblock``): one regex ``split`` finds every line's
``"value":`` and ``"timestamp":`` numbers, and the line with those numbers replaced by 0 is its
*template*. Context fields vtmon does not read (a user, session or request id: only
``component`` and ``error_type`` make the series) are cut out of the template first, by one
more regex ``split``, where they are plain strings after the significant fields (see
``_JCTX``): the template is then a line that parses to the same metric. A template is checked
once by the per-line parser, filled with two different numbers: only when it then gives one
series with exactly those numbers do its lines go in bulk (values and timestamps converted with
``map(float, ...)``, timestamped samples as one ``TimedRun`` per template); the checks are
cached like StatsD series. Lines that differ in more (an id with an escape in it, a context
field vtmon reads after the ids) and anything else (JSON-RPC, bad lines) go through the
per-line parser, in line order, with the same promise.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections import Counter, defaultdict, deque
from itertools import compress, repeat
from typing import Any

from vtmon.model import (
    RATE_MIN,
    REJECT_ENCODING,
    REJECT_NUMBER,
    REJECT_REQUEST,
    REJECT_SYNTAX,
    REJECT_TIME,
    REJECT_TOO_LONG,
    REJECT_TYPE,
    TIME_MAX_S,
    VALUE_MAX,
    Batch,
    DistBuf,
    Event,
    Kind,
    RpcRefusal,
    SeriesKey,
    TimedRun,
    bounded,
    make_tags,
)
from vtmon.protocol import jsonrpc

__all__ = ["parse_block", "parse_line", "too_long_request"]

DIST = Kind.DISTRIBUTION
COUNTER = Kind.COUNTER
GAUGE = Kind.GAUGE
SET = Kind.SET

_TYPES: dict[bytes, Kind] = {
    b"ms": DIST,
    b"h": DIST,
    b"d": DIST,
    b"c": COUNTER,
    b"g": GAUGE,
    b"s": SET,
}

# The characters a StatsD number may use. Checking them before float() keeps out what
# float() would also take but StatsD does not mean: "nan", "inf", " 1", "1_000".
_NUM_CHARS = b"0123456789.eE+-"
_SIGNS = frozenset(b"+-")

# One simple StatsD line, matched from the newline before it (a literal first character lets
# the regex engine skip to candidates quickly). Every quantifier is possessive and the name
# and value are bounded, so garbage costs linear time. After its first character a name may
# run across a newline, because [^:] is much faster than [^:\n] in this engine; such names
# are refused when the series is validated, and their lines go through the per-line parser.
_FAST = re.compile(rb"\n([^:\n][^:]{0,255}+):([0-9.eE+\-]{1,64}+)\|([^\n]*+)")

# The bound check of a group of values in one C call, as cheap as the sum it replaces: the
# hypotenuse is at least the largest magnitude (its error is under one ulp), NaN and
# infinities make it fail, and groups it fails though every value is within the bound (many
# values near VALUE_MAX) go to the per-line parser, which checks each value.
_hypot = math.hypot

# What a StatsD name may not contain (besides the ':' that ends it).
_BAD_NAME = re.compile(rb"[\x00-\x1f\x7f|#]")

_SeriesInfo = tuple[SeriesKey, Kind, float, float | None]  # key, kind, rate, timestamp

# (name bytes, rest-after-value bytes) -> parsed series. The same few series
# repeat all the time; this keeps tags from being decoded and sorted once per line.
_SERIES: dict[tuple[bytes, bytes], _SeriesInfo] = {}
_INTERN: dict[SeriesKey, SeriesKey] = {}  # one object per distinct key, see _plan
_SERIES_MAX = 100_000
_SERIES_KEY_BYTES = 512  # longer keys are parsed every time rather than pinned in memory
_CHUNK = 65536
_REQUEST_HEAD = 256  # how much of a too-long line is looked at for a JSON-RPC request


def parse_block(block: bytes, batch: Batch, max_line: int = 65536) -> None:
    """Parse complete lines (``\\n``-separated, last newline optional) into ``batch``."""
    _trim_caches()
    if type(block) is not bytes:
        block = bytes(block)  # bytearray slices are unhashable; the grouping needs bytes
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
    body = block.strip(b"\n")
    if len(body) <= 2 * _CHUNK:
        if body:
            _piece(body, batch, max_line)
        return
    # Big blocks go in pieces: the objects one piece creates then stay in the CPU cache.
    start = 0
    while start < len(body):
        end = body.find(b"\n", start + _CHUNK)
        if end < 0:
            end = len(body)
        if end > start:
            _piece(body[start:end], batch, max_line)
        start = end + 1


def _piece(body: bytes, batch: Batch, max_line: int) -> None:
    # A connection sends one format; the first line says which path to try first.
    if body[:1] == b"{":
        _jblock(body, batch, max_line)
    else:
        _block(body, batch, max_line)


def _block(body: bytes, batch: Batch, max_line: int, depth: int = 0) -> None:
    """StatsD lines in bulk; the odd lines go to the JSON path, or one by one."""
    odd_text = _odd if depth == 0 else _slow
    try:
        parts = _FAST.split(b"\n" + body)
        names = parts[1::4]
        vals = parts[2::4]
        rests = parts[3::4]
        # A matched line is at most 256 + 1 + 64 + 1 bytes plus its rest.
        if len(body) > max_line and max(map(len, rests), default=0) > max_line - 322:
            _slow(body, batch, max_line)  # a line may be too long; the careful path decides
            return
        plan, bad_groups, bad_lines, gauges = _plan(names, vals, rests)
    except Exception:
        _slow(body, batch, max_line)
        return
    # parts[4*i] is whatever lay before match i that no match covered: empty when the lines
    # are all simple, else the odd lines (each starting with its newline).
    seps = parts[0::4]
    odd = any(seps)
    n = len(names)
    if not (odd or bad_groups or bad_lines):
        _apply(plan, batch)
        batch.accepted += n
        return
    if gauges:
        # Gauge updates must stay in line order: group only the runs between odd lines.
        start = 0
        for i in compress(range(n + 1), seps):
            if i > start:
                _run(names[start:i], vals[start:i], rests[start:i], batch, max_line)
            odd_text(seps[i], batch, max_line)
            start = i
        if start < n:
            _run(names[start:], vals[start:], rests[start:], batch, max_line)
        return
    # Without gauges, the order of samples inside one batch means nothing (they all arrived
    # at once), so the grouped lines go in as planned and only the odd ones one by one.
    flags = _flags(names, vals, rests, bad_groups, bad_lines)
    _apply(plan, batch)
    batch.accepted += n - sum(flags)
    for i in sorted(set(compress(range(n + 1), seps)).union(compress(range(n), flags))):
        if seps[i]:
            odd_text(seps[i], batch, max_line)
        if i < n and flags[i]:
            _slow(b"%s:%s|%s" % (names[i], vals[i], rests[i]), batch, max_line)


def parse_line(line: bytes, batch: Batch, max_line: int = 65536) -> None:
    """Parse one line (without its newline) into ``batch``; blank lines are not counted."""
    _trim_caches()
    try:
        reason = _line(line, batch, max_line)
    except Exception:
        reason = REJECT_SYNTAX  # a parser bug must cost one line, not the connection
    if reason is None:
        batch.accepted += 1
    elif reason:
        batch.rejected[reason] += 1


# ---------------------------------------------------------------------------------------------
# fast path

_Plan = list[tuple[SeriesKey, Kind, float, list[bytes], list[Any]]]
_Groups = set[tuple[bytes, bytes]]  # (name, rest): every line of the series
_Lines = set[tuple[bytes, bytes, bytes]]  # (name, rest, value): single lines


def _run(
    names: list[bytes],
    vals: list[bytes],
    rests: list[bytes],
    batch: Batch,
    max_line: int,
    depth: int = 0,
) -> None:
    """Matched simple lines whose order must be kept: grouped where possible."""
    try:
        plan, bad_groups, bad_lines, _ = _plan(names, vals, rests)
        flags = _flags(names, vals, rests, bad_groups, bad_lines)
    except Exception:
        depth = 99
    else:
        if not (bad_groups or bad_lines):
            _apply(plan, batch)
            batch.accepted += len(names)
            return
    if depth > 1:
        for name, val, rest in zip(names, vals, rests, strict=True):
            _slow(b"%s:%s|%s" % (name, val, rest), batch, max_line)
        return
    # The lines the per-line parser must see go one by one, in place; the runs between them
    # are grouped again (without those lines they hold no bad ones, barring an overflow).
    start = 0
    for i in compress(range(len(names)), flags):
        if i > start:
            _run(names[start:i], vals[start:i], rests[start:i], batch, max_line, depth + 1)
        _slow(b"%s:%s|%s" % (names[i], vals[i], rests[i]), batch, max_line)
        start = i + 1
    if start < len(names):
        _run(names[start:], vals[start:], rests[start:], batch, max_line, depth + 1)


def _plan(
    names: list[bytes], vals: list[bytes], rests: list[bytes]
) -> tuple[_Plan, _Groups, _Lines, bool]:
    """What to add for these lines, which lines the per-line parser must see instead, and
    whether any planned series is a gauge. Nothing is added to the batch here.
    """
    groups: defaultdict[tuple[bytes, bytes], list[bytes]] = defaultdict(list)
    # The grouping loop runs in C: one list.append per line into its series' list.
    deque(map(list.append, map(groups.__getitem__, zip(names, rests, strict=True)), vals), 0)
    plan: _Plan = []
    bad_groups: _Groups = set()
    bad_lines: _Lines = set()
    gauges: dict[int, tuple[bytes, bytes]] = {}
    cached = _SERIES.get
    for nr, raws in groups.items():
        info = cached(nr) or _series(*nr)
        if type(info) is str or info[3] is not None:
            bad_groups.add(nr)  # rejected, or timestamped: the per-line parser decides
            continue
        key, kind, rate, _ = info  # type: ignore[misc]
        if kind is GAUGE:
            # Two spellings of one gauge (tag order, ignored fields) grouped apart would
            # reorder its updates. Keys are interned, so identity finds them without hashing
            # a SeriesKey (its __hash__ runs in Python).
            other = gauges.setdefault(id(key), nr)
            if other is not nr:
                bad_groups.add(nr)
                bad_groups.add(other)
                continue
        if kind is SET:
            plan.append((key, kind, rate, raws, [r.decode() for r in raws]))
            continue
        try:
            values = list(map(float, raws))
            if _hypot(*values) <= VALUE_MAX:
                plan.append((key, kind, rate, raws, values))
                continue
        except ValueError:
            pass
        # Leave out just the lines with values like "1e999", "1e200" or "1e", not the whole
        # series; if the rest still does not pass the bound check, leave out the series.
        wrong = {r for r in raws if _value(r) is None}
        raws = [r for r in raws if r not in wrong]
        values = list(map(float, raws))
        if not wrong or not _hypot(*values) <= VALUE_MAX:
            bad_groups.add(nr)
            continue
        bad_lines.update((*nr, r) for r in wrong)
        if raws:
            plan.append((key, kind, rate, raws, values))
    # A gauge whose only spellings clash is not planned; recompute from what is.
    has_gauge = any(entry[1] is GAUGE for entry in plan) if gauges else False
    return plan, bad_groups, bad_lines, has_gauge


def _flags(
    names: list[bytes], vals: list[bytes], rests: list[bytes], groups: _Groups, lines: _Lines
) -> list[bool]:
    """Per line: must the per-line parser see it?"""
    if not groups and not lines:
        return [False] * len(names)
    in_groups = map(groups.__contains__, zip(names, rests, strict=True))
    if not lines:
        return list(in_groups)
    in_lines = map(lines.__contains__, zip(names, rests, vals, strict=True))
    return list(map(operator.or_, in_groups, in_lines))


def _apply(plan: _Plan, batch: Batch) -> None:
    for key, kind, rate, raws, values in plan:
        _add(batch, key, kind, rate, raws, values)


# ---------------------------------------------------------------------------------------------
# per-line path


def _slow(text: bytes, batch: Batch, max_line: int) -> None:
    for line in text.split(b"\n"):
        if line:
            parse_line(line, batch, max_line)


def _line(line: bytes, batch: Batch, max_line: int) -> str | None:
    """Parse one line; returns the reject reason, None when accepted, "" when blank."""
    if line[-1:] == b"\r":
        line = line[:-1]
    s = line.strip()
    if not s:
        return ""
    if len(line) > max_line:
        refusal = too_long_request(s, max_line)
        if refusal is not None:
            batch.rpc.append(refusal)
        return REJECT_TOO_LONG
    if s[:1] == b"{":
        return _json(s, batch)
    if s[:1] == b"[" and s[-1:] == b"]" and _rpc_batch(s, batch):
        return REJECT_REQUEST
    if s[:3] == b"_e{":
        return _event(line.lstrip(), batch)  # trailing blanks may belong to the text
    if s[:4] == b"_sc|":
        return _service_check(s, batch)
    return _statsd(s, batch)


def too_long_request(head: bytes, max_line: int) -> RpcRefusal | None:
    """The answer a too-long line is owed when it starts like a JSON-RPC request (its sender
    waits for one), else None: metric senders, who read nothing, are not sent answers."""
    h = head[:_REQUEST_HEAD].lstrip()
    if h[:1] == b"{" and (b'"jsonrpc"' in h or b'"method"' in h):
        msg = f"Invalid request: the line is longer than the {max_line} bytes a line may have."
        return RpcRefusal(jsonrpc.INVALID_REQUEST, msg)
    return None


def _rpc_batch(s: bytes, batch: Batch) -> bool:
    """A JSON-RPC batch array (``[{...}, ...]``): refused with one answer, as vtmon takes one
    request per line."""
    try:
        obj = json.loads(s)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    if type(obj) is not list or (obj and type(obj[0]) is not dict):
        return False
    msg = "Invalid request: batches are not supported; send one request per line."
    batch.rpc.append(RpcRefusal(jsonrpc.INVALID_REQUEST, msg))
    return True


def _statsd(line: bytes, batch: Batch) -> str | None:
    colon = line.find(b":")
    if colon <= 0:
        return REJECT_SYNTAX
    pipe = line.find(b"|", colon + 1)
    if pipe < 0:
        return REJECT_SYNTAX
    info = _series(line[:colon], line[pipe + 1 :])
    if type(info) is str:
        return info
    key, kind, rate, ts = info  # type: ignore[misc]
    raws = line[colon + 1 : pipe].split(b":")
    if not all(raws):
        return REJECT_SYNTAX
    values: list[Any]
    if kind is SET:
        try:
            values = [r.decode() for r in raws]
        except UnicodeDecodeError:
            return REJECT_ENCODING
    else:
        values = []
        for r in raws:
            v = _value(r)
            if v is None:
                return REJECT_NUMBER
            values.append(v)
    if ts is not None and (kind is DIST or kind is COUNTER):
        weight = 1.0 / rate
        batch.timed.append(TimedRun(key, values, [ts] * len(values), weight))
    else:
        _add(batch, key, kind, rate, raws, values)
    return None


def _series(name: bytes, rest: bytes) -> _SeriesInfo | str:
    """The series of ``name:value|rest`` (cached), or why such a line is rejected."""
    hit = _SERIES.get((name, rest))
    if hit is not None:
        return hit
    t = rest.find(b"|T")
    if t >= 0:
        # Cache the series without its timestamp (which makes every line unique) and read
        # the timestamp apart; anything unusual is parsed in full, uncached.
        end = rest.find(b"|", t + 2)
        if end < 0:
            end = len(rest)
        base = _series(name, rest[:t] + rest[end:])
        ts = _time(rest[t + 2 : end])
        if type(base) is str or base[3] is not None or type(ts) is str:  # type: ignore[index]
            return _parse_series(name, rest)
        key, kind, rate, _ = base  # type: ignore[misc]
        return key, kind, rate, ts
    info = _parse_series(name, rest)
    # Rejects are not cached: garbage is rarely repeated and would only crowd the cache.
    if type(info) is not str:
        key = _INTERN.setdefault(info[0], info[0])  # type: ignore[index]
        info = (key, *info[1:])  # type: ignore[misc]
        if len(name) + len(rest) <= _SERIES_KEY_BYTES:
            _SERIES[(name, rest)] = info
    return info


def _trim_caches() -> None:
    # Only between runs of lines: a clear inside _plan would break its identity check.
    if len(_SERIES) + len(_JSERIES) + len(_JKEYS) > _SERIES_MAX:
        _SERIES.clear()
        _JSERIES.clear()
        _JKEYS.clear()
        _INTERN.clear()


def _parse_series(name: bytes, rest: bytes) -> _SeriesInfo | str:
    # A leading blank, '{' or '_e{' never reaches here from the per-line path (it strips and
    # dispatches first); refusing them keeps the fast path from accepting such lines.
    if not name or name[0] == 0x20 or name[0] == 0x7B or name[:3] == b"_e{":
        return REJECT_SYNTAX
    if _BAD_NAME.search(name) or rest[-1:].isspace():
        return REJECT_SYNTAX
    try:
        name_s = name.decode()
    except UnicodeDecodeError:
        return REJECT_ENCODING
    fields = rest.split(b"|")
    kind = _TYPES.get(fields[0])
    if kind is None:
        return REJECT_TYPE if fields[0] else REJECT_SYNTAX
    rate = 1.0
    ts: float | None = None
    pairs: list[tuple[str, str]] = []
    for f in fields[1:]:
        head = f[:1]
        if head == b"@":
            r = _num(f[1:])
            if r is None or not RATE_MIN <= r <= 1.0:
                return REJECT_SYNTAX
            rate = r
        elif head == b"#":
            try:
                pairs.extend(_tag_pairs(f[1:].decode()))
            except UnicodeDecodeError:
                return REJECT_ENCODING
        elif head == b"T":
            t = _time(f[1:])
            if type(t) is str:
                return t
            ts = t
        # Other fields (c: container, e: external data, card: ...) do not change the series.
    return SeriesKey(name_s, make_tags(pairs), kind), kind, rate, ts


def _add(
    batch: Batch, key: SeriesKey, kind: Kind, rate: float, raws: list[bytes], values: list[Any]
) -> None:
    """Add one series' samples; ``values`` must be a fresh list (it may be kept as is)."""
    # setdefault hashes the key once; SeriesKey hashing is the costly part of this function.
    if kind is DIST:
        weight = 1.0 / rate
        new = DistBuf(values, None if weight == 1.0 else [weight] * len(values))
        buf = batch.dist.setdefault(key, new)
        if buf is not new:
            if weight != 1.0 and buf.weights is None:
                buf.weights = [1.0] * len(buf.values)
            buf.values.extend(values)
            if buf.weights is not None:
                buf.weights.extend([weight] * len(values))
    elif kind is COUNTER:
        # sum() adds left to right from 0, so grouped and line-by-line totals agree exactly.
        inc = sum(values) if rate == 1.0 else sum([v / rate for v in values])
        batch.counts[key] = batch.counts.get(key, 0.0) + inc
    elif kind is GAUGE:
        batch.gauges.setdefault(key, []).extend(
            [(r[0] in _SIGNS, v) for r, v in zip(raws, values, strict=True)]
        )
    else:
        batch.sets.setdefault(key, set()).update(values)


def _float(raw: bytes) -> float | None:
    """A number in StatsD's characters (infinities too), else None."""
    if not raw or raw.translate(None, _NUM_CHARS):
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _num(raw: bytes) -> float | None:
    """A finite StatsD number, else None."""
    v = _float(raw)
    return v if v is not None and math.isfinite(v) else None


def _value(raw: bytes) -> float | None:
    """A sample's value within the bound (``VALUE_MAX``), else None."""
    v = _num(raw)
    return v if v is not None and -VALUE_MAX <= v <= VALUE_MAX else None


def _time(raw: bytes) -> float | str:
    """A time a client sent, in seconds, or why the line is rejected: ``bad syntax`` when it is
    no number, ``bad time`` when it lies outside ``[0, TIME_MAX_S)`` (the screen and the
    history turn times into dates, which years far from now break)."""
    t = _float(raw)
    if t is None:
        return REJECT_SYNTAX
    return t if 0.0 <= t < TIME_MAX_S else REJECT_TIME


def _tag_pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for tag in text.split(","):
        if tag:
            k, _, v = tag.partition(":")
            pairs.append((k, v))
    return pairs


# ---------------------------------------------------------------------------------------------
# DogStatsD events and service checks


def _event(raw: bytes, batch: Batch) -> str | None:
    close = raw.find(b"}:", 3)
    if close < 0:
        return REJECT_SYNTAX
    a, comma, b = raw[3:close].partition(b",")
    if not (comma and a.isdigit() and b.isdigit() and len(a) < 10 and len(b) < 10):
        return REJECT_SYNTAX
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
                return REJECT_SYNTAX
            title, text, tail = cut_s
    except UnicodeDecodeError:
        return REJECT_ENCODING
    if not title:
        return REJECT_SYNTAX
    meta = _meta(tail.rstrip().split("|") if tail.strip() else ())
    if type(meta) is str:
        return meta
    ts, host, pairs, other = meta  # type: ignore[misc]
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
) -> tuple[float, str, list[tuple[str, str]], dict[str, str]] | str:
    """The metadata fields events and service checks share: ``d:`` timestamp, ``h:`` host,
    ``#`` tags, and any other ``x:`` field by its letter; or why the line is rejected (the
    timestamp)."""
    ts = 0.0
    host = ""
    pairs: list[tuple[str, str]] = []
    other: dict[str, str] = {}
    for f in fields:
        if f[:2] == "d:":
            t = _time(f[2:].encode())
            if type(t) is str:
                return t
            ts = t  # type: ignore[assignment]
        elif f[:2] == "h:":
            host = f[2:]
        elif f[:1] == "#":
            pairs.extend(_tag_pairs(f[1:]))
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


def _service_check(line: bytes, batch: Batch) -> str | None:
    try:
        text = line.decode()
    except UnicodeDecodeError:
        return REJECT_ENCODING
    fields = text.split("|")
    if len(fields) < 3 or not fields[1].strip() or fields[2] not in ("0", "1", "2", "3"):
        return REJECT_SYNTAX
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
    if type(meta) is str:
        return meta
    ts, host, pairs, _ = meta  # type: ignore[misc]
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


# ---------------------------------------------------------------------------------------------
# JSON lines
#
# The bulk path: lines that differ only in their value (and timestamp) numbers share a
# *template*, the line with those numbers replaced by 0. One regex split over the block finds
# the numbers and makes the templates; each template is checked once by the per-line parser
# (cached like StatsD series) and the values of all its lines are converted together.

# A JSON number as the JSON grammar writes it (float() also takes "01", "1." and "-0", which
# JSON rejects or reads as the integer 0), ending where a JSON value may end. The blank that
# json.dumps writes after the colon is taken with the number (float() ignores it), so both
# spellings share one template.
_JNUM = rb"( ?(?:-?[1-9][0-9]*+|-?0(?=[.eE])|0)(?:\.[0-9]++)?+(?:[eE][+\-]?+[0-9]++)?+)(?=[\s,}])"
_JVALUE = re.compile(rb'"value":' + _JNUM)
_JTIME = re.compile(rb'"timestamp":' + _JNUM)
_JVT = re.compile(rb'"value":' + _JNUM + rb'(?:,"timestamp":' + _JNUM + rb")?+")
# The context fields vtmon does not read (ids: user, session, request) are cut out of a
# template: in a "context" object whose significant fields (component, error_type) come first,
# the fields after them up to its closing brace, when all are strings of plain ASCII (no
# quote, backslash or control character: each is one valid JSON string whatever it holds, and
# the quote ending the last significant one ends a string) under keys of plain ASCII other
# than those two (so none of them is one in disguise). The template is then the line with
# fewer fields in one object, which parses to the same metric, or is not taken (the object
# is tags' or a request's, say: see _jcheck). One regex; the faster-looking alternatives
# (a looser regex, its cuts then checked at once with bytes methods) measured slower.
_JPLAIN = rb"[ !#-\[\]-~]"
_JSIG = rb'"(?:component|error_type)": ?"' + _JPLAIN + rb'{0,256}+"'
_JIDS = rb'"(?!(?:component|error_type)")' + _JPLAIN + rb'{0,64}+": ?"' + _JPLAIN + rb'{0,256}+"'
_JCTX = re.compile(
    rb'("context": ?\{(?:' + _JSIG + rb"(?:, ?" + _JSIG + rb")*+)?+)"  # kept
    rb"((?:(?<=\{)|, ?)" + _JIDS + rb"(?:, ?" + _JIDS + rb")*+)(?=\})"  # cut
)

_JInfo = tuple[SeriesKey, Kind, bool]  # key, kind, whether the template holds the timestamp
# template -> what every line of that template is, or None when its lines go one by one
_JSERIES: dict[bytes, _JInfo | None] = {}
_JKEYS: dict[tuple[Any, ...], tuple[SeriesKey, Kind]] = {}  # (name, unit, tag pairs) -> key
# Hashes of templates seen in earlier blocks, not checked yet: seen again, they are checked.
_JSEEN: set[int] = set()
_JSEEN_MAX = 65536
_JTEMPLATE_BYTES = 512  # longer lines are parsed one by one rather than pinned in memory
_JNEW = 16  # templates seen once in a block that are checked (cached) per block; see _jknown
_JSAMPLE = 4096  # the first bytes of a block that tell whether its lines share templates
_scan = json.JSONDecoder().scan_once  # json.loads without its per-call overhead
_json_number = bounded  # a JSON value within VALUE_MAX, else None
_MS_MAX = TIME_MAX_S * 1000.0  # JSON timestamps are in milliseconds

_JPlan = list[tuple[SeriesKey, Kind, list[float], list[float] | None]]  # ..., timestamps (s)


def _jblock(
    body: bytes, batch: Batch, max_line: int, depth: int = 0, blank: bool | None = None
) -> None:
    """JSON lines in bulk where their templates allow it, else in line order one by one."""
    if blank is None:
        likely = _jlikely(body)
        if not likely and depth == 0:
            _jlines(body, batch, max_line)
            return
        blank = likely == 2
    try:
        tm, vals, stamps, cut = _jsplit(body, blank)
        planned = _jplan(body, tm, vals, stamps, cut, max_line)
    except Exception:
        _slow(body, batch, max_line)
        return
    if type(planned) is set:
        _jmixed(body, tm, planned, batch, max_line, depth, blank)
        return
    plan, ordered, _ = planned  # type: ignore[misc]
    for key, kind, values, ts in plan:
        if ts is not None:
            batch.timed.append(TimedRun(key, values, ts))
        elif kind is DIST:
            _add(batch, key, kind, 1.0, [], values)
        elif kind is COUNTER:
            # sum() adds left to right from 0, as the lines one by one would.
            batch.counts[key] = batch.counts.get(key, 0.0) + sum(values)
        else:
            batch.gauges.setdefault(key, []).extend([(False, v) for v in values])
    if ordered:  # one gauge under several templates: its updates in line order
        for t, v in zip(tm, vals, strict=True):
            key = ordered.get(t)
            if key is not None:
                batch.gauges.setdefault(key, []).append((False, float(v)))
    batch.accepted += len(tm)


def _jlikely(body: bytes) -> int:
    """Whether the lines of a block share templates, judged on its first lines: some of them
    are known, repeat, or were seen in an earlier block (many series in turn). 1: they do;
    2: they do once the context fields vtmon does not read are cut out (ids, see _JCTX);
    0: they do not (lines unique to themselves), and the bulk path would only cost time."""
    if len(body) > _JSAMPLE:
        end = body.rfind(b"\n", 0, _JSAMPLE)
        if end <= 0:
            return 0  # a line longer than any template kept
        body = body[:end]
    # Whether the lines hold context fields vtmon does not read, judged on the first.
    nl = body.find(b"\n")
    blank = _JCTX.search(body, 0, nl if nl >= 0 else len(body)) is not None
    tm = _jsplit(body, blank)[0]
    if len(set(tm)) < len(tm):
        return 1 + blank
    seen = False
    for t in tm:
        if t in _JSERIES:
            return 1 + blank
        seen = _jseen(t) or seen
    return 1 + blank if seen else 0


def _jseen(t: bytes) -> bool:
    """Whether template ``t`` was seen before (not yet checked); notes it when not."""
    h = hash(t)
    if h in _JSEEN:
        return True
    if len(_JSEEN) >= _JSEEN_MAX:
        _JSEEN.clear()
    _JSEEN.add(h)
    return False


def _jlines(text: bytes, batch: Batch, max_line: int) -> None:
    """Lines one by one, with the result parse_line gives each, and less work per JSON line."""
    dist: dict[int, tuple[SeriesKey, list[float]]] = {}
    runs: dict[int, TimedRun] = {}  # timed samples by series, also grouped by identity
    for raw in text.split(b"\n"):
        line = raw[:-1] if raw[-1:] == b"\r" else raw
        s = line.strip()
        if s[:1] != b"{" or len(line) > max_line:
            if s:
                parse_line(raw, batch, max_line)
            continue
        try:
            r = _json_parse(s)
        except Exception:  # a parser bug must cost one line, not the connection
            r = REJECT_SYNTAX
        if type(r) is tuple:
            key, kind, value, ts = r
            if kind is GAUGE:
                batch.gauges.setdefault(key, []).append((False, value))
            elif ts is not None:
                run = runs.get(id(key))
                if run is None:
                    run = runs[id(key)] = TimedRun(key, [value], [ts])
                    batch.timed.append(run)
                else:
                    run.values.append(value)
                    run.ts.append(ts)
            elif kind is DIST:
                # Grouped by identity (keys are interned) to spare hashing a key per line.
                hit = dist.get(id(key))
                if hit is None:
                    dist[id(key)] = (key, [value])
                else:
                    hit[1].append(value)
            else:
                batch.counts[key] = batch.counts.get(key, 0.0) + value
            batch.accepted += 1
        elif type(r) is dict:
            batch.rpc.append(r)
            batch.accepted += 1
        else:
            batch.rejected[r] += 1  # type: ignore[index]
    for key, values in dist.values():
        _add(batch, key, DIST, 1.0, [], values)


def _jsplit(
    body: bytes, blank: bool = False
) -> tuple[list[bytes], list[bytes], list[bytes] | None, int]:
    """The template of every line, the value and timestamp numbers found, in order, and the
    length of the longest part cut out; with ``blank`` the context fields vtmon does not read
    are cut out of the templates."""
    cut = 0
    if blank:
        # First, so the number searches run over less text: the parts cut out hold no
        # numbers, nor can the text joined around them make one.
        parts = _JCTX.split(body)  # text, kept, cut, text, kept, cut, ..., text
        cuts = parts[2::3]
        if cuts:
            cut = max(map(len, cuts))
            del parts[2::3]
            body = b"".join(parts)
    nl = body.find(b"\n")
    if body.find(b'"timestamp":', 0, nl if nl >= 0 else len(body)) >= 0:
        # Timestamped lines (judged on the first): in the usual order, a timestamp right
        # after the value, both are found in one pass.
        parts = _JVT.split(body)  # text, value, timestamp or None, text, ..., text
        stamps = parts[2::3]
        if stamps and None not in stamps:
            text = b'"value":0,"timestamp":0'.join(parts[0::3])
            if text.count(b'"timestamp":') == len(stamps):
                return text.split(b"\n"), parts[1::3], stamps, cut
        # another order, or more timestamps than that: the two searches below
    parts = _JVALUE.split(body)  # text, number, text, number, ..., text
    vals = parts[1::2]
    text = b'"value":0'.join(parts[0::2]) if vals else body
    stamps = None
    if b'"timestamp":' in text:
        parts = _JTIME.split(text)
        if len(parts) > 1:
            stamps = parts[1::2]
            text = b'"timestamp":0'.join(parts[0::2])
    return text.split(b"\n"), vals, stamps, cut


def _jplan(
    body: bytes,
    tm: list[bytes],
    vals: list[bytes],
    stamps: list[bytes] | None,
    cut: int,
    max_line: int,
) -> tuple[_JPlan, dict[bytes, SeriesKey], bool] | set[bytes]:
    """What to add when every line can go in bulk, whether its lines are timestamped; else the
    templates that cannot (the set may be empty: lines that do not hold one value number
    each). Adds nothing to the batch."""
    n = len(tm)
    if len(vals) != n or (stamps is not None and len(stamps) != n):
        return set()
    if len(body) > max_line:
        # Each line is its template plus its numbers in place of the 0s, and the part cut out
        # of its context (one at most: see the check of the templates below).
        longest = max(map(len, tm)) + max(map(len, vals)) - 1 + cut
        if stamps is not None:
            longest += max(map(len, stamps)) - 1
        if longest > max_line:
            return set()
    groups: defaultdict[bytes, list[bytes]] = defaultdict(list)
    deque(map(list.append, map(groups.__getitem__, tm), vals), 0)
    has_ts = stamps is not None
    if has_ts:
        # Each template's timestamps, in line order like its values.
        sgroups: defaultdict[bytes, list[bytes]] = defaultdict(list)
        deque(map(list.append, map(sgroups.__getitem__, tm), stamps), 0)  # type: ignore[arg-type]
    _jknown([(t, len(raws)) for t, raws in groups.items()], n)
    cached = _JSERIES.get
    bad: set[bytes] = set()
    plan: _JPlan = []
    gauges: dict[int, bytes] = {}
    ordered: dict[bytes, SeriesKey] = {}
    for t, raws in groups.items():
        info = cached(t)
        if info is None or info[2] is not has_ts or (cut and t.count(b'"context":') > 1):
            bad.add(t)
            continue
        key, kind, _ = info
        values = list(map(float, raws))
        ts = None
        if has_ts:
            ms = list(map(float, sgroups[t]))
            if not (min(ms) >= 0.0 and max(ms) < _MS_MAX):
                bad.add(t)
                continue
            if kind is not GAUGE:  # a gauge takes no timestamp: its updates keep line order
                ts = list(map(operator.truediv, ms, repeat(1000.0)))  # as ms / 1000.0 does
        if not _hypot(*values) <= VALUE_MAX:  # "1e999", "1e200" (or many values near it)
            bad.add(t)
        elif kind is GAUGE and gauges.setdefault(id(key), t) is not t:
            ordered[t] = key  # keys are interned: identity finds a gauge's other templates
            ordered[gauges[id(key)]] = key
        else:
            plan.append((key, kind, values, ts))
    if bad:
        return bad
    if ordered:
        plan = [p for p in plan if p[0] not in ordered.values()]
    return plan, ordered, has_ts


def _jknown(templates: Any, lines: int) -> None:
    """Check and cache the templates not seen before, given as (template, its lines): those
    of two lines or more or seen in an earlier block, and a few of one line when most lines
    share a template (a new series). Lines unique to themselves (a request id in every line)
    are not checked: that would cost two parses a line and fill the cache for nothing."""
    once = _JNEW if len(templates) * 4 <= lines else 0
    for t, count in templates:
        if t in _JSERIES:
            continue
        if count < 2 and not _jseen(t):
            if once <= 0:
                continue
            once -= 1
        info = _jcheck(t)
        if len(t) <= _JTEMPLATE_BYTES:
            _JSERIES[t] = info


def _jcheck(t: bytes) -> _JInfo | None:
    """What every line of template ``t`` is: filled with two different values (and
    timestamps), the per-line parser must see one metric series with exactly those numbers;
    else None (the numbers are not the metric's own, or the line is no metric at all)."""
    if len(t) > _JTEMPLATE_BYTES or len(_JVALUE.findall(t)) != 1:
        return None
    n_ts = len(_JTIME.findall(t))
    if n_ts > 1:
        return None
    a = _jresult(_jfill(t, b"0", b"1"))
    b = _jresult(_jfill(t, b"1", b"0"))
    if type(a) is not tuple or type(b) is not tuple:
        return None
    if a[0] != b[0] or a[2] != 0.0 or b[2] != 1.0:
        return None
    if (a[3], b[3]) != ((0.001, 0.0) if n_ts else (None, None)):
        return None
    return _INTERN.setdefault(a[0], a[0]), a[1], n_ts == 1


def _jfill(t: bytes, value: bytes, ts: bytes) -> bytes:
    line = _JVALUE.sub(b'"value":' + value, t)
    return _JTIME.sub(b'"timestamp":' + ts, line)


def _jresult(line: bytes) -> Any:
    """What the per-line parser makes of a JSON line (see _line), without a batch."""
    if line[-1:] == b"\r":
        line = line[:-1]
    s = line.strip()
    return _json_parse(s) if s[:1] == b"{" else None


def _jmixed(
    body: bytes,
    tm: list[bytes],
    bad: set[bytes],
    batch: Batch,
    max_line: int,
    depth: int,
    blank: bool,
) -> None:
    """Lines some of which cannot go in bulk: runs of lines that can (templates known, of one
    timestamp kind) go in bulk again, the others one by one, all in line order."""
    lines = body.split(b"\n")
    if depth >= 2 or len(lines) != len(tm):
        _jlines(body, batch, max_line)
        return
    _jknown(list(Counter(tm).items()), len(tm))
    cached = _JSERIES.get
    # Per line: 0 or 1 (bulk, without or with a timestamp), 2 (one by one).
    cls = [
        2 if t in bad or len(line) > max_line or (info := cached(t)) is None else int(info[2])
        for t, line in zip(tm, lines, strict=True)
    ]
    start = 0
    n = len(lines)
    for i in range(1, n + 1):
        if i < n and cls[i] == cls[start]:
            continue
        text = b"\n".join(lines[start:i])
        if cls[start] != 2:
            _jblock(text, batch, max_line, depth + 1, blank)
        elif depth == 0 and i - start > 2 and text[:1] != b"{":
            _block(text, batch, max_line, depth=1)  # StatsD lines among JSON ones
        else:
            _jlines(text, batch, max_line)
        start = i


def _odd(text: bytes, batch: Batch, max_line: int) -> None:
    """The lines the StatsD regex did not take (each starting with its newline)."""
    if text.count(b"\n") > 2:
        _jblock(text.strip(b"\n"), batch, max_line, depth=1, blank=False)
    else:
        _slow(text, batch, max_line)


def _json(line: bytes, batch: Batch) -> str | None:
    r = _json_parse(line)
    if type(r) is str:
        return r
    if type(r) is dict:
        batch.rpc.append(r)
        return None
    key, kind, value, ts = r  # type: ignore[misc]
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
        _add(batch, key, kind, 1.0, [], [value])
    else:
        batch.counts[key] = batch.counts.get(key, 0.0) + value
    return None


def _json_parse(s: bytes) -> tuple[SeriesKey, Kind, float, float | None] | dict[str, Any] | str:
    """A stripped line starting with ``{``: the series, value and timestamp (s) of a metric,
    a JSON-RPC message, or why the line is rejected."""
    try:
        text = s.decode()
    except UnicodeDecodeError:
        return REJECT_ENCODING
    try:
        # As json.loads(text): nothing but the object may be on the line (it has no blanks
        # around it), so the object must end where the text does.
        obj, end = _scan(text, 0)
    except (StopIteration, ValueError, RecursionError):
        return REJECT_SYNTAX
    if end != len(text) or type(obj) is not dict:
        return REJECT_SYNTAX
    if obj.get("jsonrpc") == "2.0" or ("name" not in obj and ("jsonrpc" in obj or "method" in obj)):
        return obj  # a JSON-RPC message; the server answers one that is not JSON-RPC 2.0
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip() or "value" not in obj:
        return REJECT_SYNTAX
    value = obj["value"]
    if type(value) is not float or not -VALUE_MAX <= value <= VALUE_MAX:  # the usual case first
        value = _json_number(value)
        if value is None:
            return REJECT_NUMBER
    ts: float | None = None
    ms = obj.get("timestamp")
    if ms is not None:
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms != ms:
            return REJECT_SYNTAX  # no number (NaN neither)
        if not 0 <= ms < _MS_MAX:  # compared as it came: an integer of any length
            return REJECT_TIME
        ts = ms / 1000.0
    unit = obj.get("unit")
    tags = obj.get("tags")
    context = obj.get("context")
    if unit is not None and not isinstance(unit, str):
        return REJECT_SYNTAX
    if tags is not None and not isinstance(tags, dict):
        return REJECT_SYNTAX
    if context is not None and not isinstance(context, dict):
        return REJECT_SYNTAX
    pairs: list[tuple[str, str]] = []
    if tags:
        for k, v in tags.items():
            tag = v if type(v) is str else _json_tag(v)
            if tag is None:
                return REJECT_SYNTAX
            pairs.append((k, tag))
    if context:
        for field in ("error_type", "component"):  # component last: the context's wins
            v = context.get(field)
            if v is not None:
                tag = v if type(v) is str else _json_tag(v)
                if tag is None:
                    return REJECT_SYNTAX
                pairs.append((field, tag))
    ck = (name, unit, *pairs)
    hit = _JKEYS.get(ck)
    if hit is None:
        kind = _json_kind(name, unit)
        key = SeriesKey(name, make_tags(pairs), kind)
        hit = _INTERN.setdefault(key, key), kind
        if len(s) <= _JTEMPLATE_BYTES:
            _JKEYS[ck] = hit
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
