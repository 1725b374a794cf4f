"""StatsD and DogStatsD metric lines, one at a time, and what the other parsers share with
them: the series a line's name and fields make (cached, see ``cache``), the bounds on numbers
and times, and how one series' samples are added to a batch.

A line is ``name:value[:value...]|type[|@rate][|#tags][|T<unix s>][|x...]`` with types
``ms h d`` (distribution), ``c`` (counter), ``g`` (gauge; a leading ``+``/``-`` makes it a
delta), ``s`` (set). Unknown ``|x...`` fields after the type are ignored. A timestamped sample
goes to ``Batch.timed`` as ``TimedRun(key, values, ts, weight)`` with ``weight = 1 / sample
rate``; for a counter the increment is ``value * weight``.

Numbers are bounded here, where they enter (docs/protocol.md, "Numbers"): a value must be
finite with ``|v| <= VALUE_MAX`` (else ``bad number``), a sample rate lie in ``[RATE_MIN, 1]``
(else ``bad syntax``), a time in ``[0, TIME_MAX_S)`` seconds (else ``bad time``).
"""

from __future__ import annotations

import math
import re
from typing import Any

from vtmon.ingest.parse.cache import INTERN, SERIES, SERIES_KEY_BYTES, SeriesInfo
from vtmon.model import (
    RATE_MIN,
    TIME_MAX_S,
    VALUE_MAX,
    Batch,
    DistBuf,
    Kind,
    Reject,
    SeriesKey,
    TimedRun,
    make_tags,
)
from vtmon.protocol.frames import NAME_REFUSED, NAME_REFUSED_STARTS

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

# What a series name may not contain or start with (the rules the client applies too).
_BAD_NAME = re.compile(NAME_REFUSED.encode())
_BAD_STARTS = tuple(s.encode() for s in NAME_REFUSED_STARTS)


def statsd_line(line: bytes, batch: Batch) -> Reject | None:
    colon = line.find(b":")
    if colon <= 0:
        return Reject.SYNTAX
    pipe = line.find(b"|", colon + 1)
    if pipe < 0:
        return Reject.SYNTAX
    info = series(line[:colon], line[pipe + 1 :])
    if type(info) is Reject:
        return info
    key, kind, rate, ts = info
    raws = line[colon + 1 : pipe].split(b":")
    if not all(raws):
        return Reject.SYNTAX
    values: list[Any]
    if kind is SET:
        try:
            values = [r.decode() for r in raws]
        except UnicodeDecodeError:
            return Reject.ENCODING
    else:
        values = []
        for r in raws:
            v = sample_value(r)
            if v is None:
                return Reject.NUMBER
            values.append(v)
    if ts is not None and (kind is DIST or kind is COUNTER):
        weight = 1.0 / rate
        batch.timed.append(TimedRun(key, values, [ts] * len(values), weight))
    else:
        add(batch, key, kind, rate, raws, values)
    return None


def series(name: bytes, rest: bytes) -> SeriesInfo | Reject:
    """The series of ``name:value|rest`` (cached), or why such a line is rejected."""
    hit = SERIES.get((name, rest))
    if hit is not None:
        return hit
    t = rest.find(b"|T")
    if t >= 0:
        # Cache the series without its timestamp (which makes every line unique) and read
        # the timestamp apart; anything unusual is parsed in full, uncached.
        end = rest.find(b"|", t + 2)
        if end < 0:
            end = len(rest)
        base = series(name, rest[:t] + rest[end:])
        ts = sample_time(rest[t + 2 : end])
        if type(base) is Reject or base[3] is not None or type(ts) is Reject:
            return _parse_series(name, rest)
        key, kind, rate, _ = base
        return key, kind, rate, ts
    info = _parse_series(name, rest)
    # Rejects are not cached: garbage is rarely repeated and would only crowd the cache.
    if type(info) is not Reject:
        key, kind, rate, stamp = info
        info = (INTERN.setdefault(key, key), kind, rate, stamp)
        if len(name) + len(rest) <= SERIES_KEY_BYTES:
            SERIES[(name, rest)] = info
    return info


def _parse_series(name: bytes, rest: bytes) -> SeriesInfo | Reject:
    # A leading blank, '{' or '_e{' never reaches here from the per-line path (it strips and
    # dispatches first); refusing them keeps the fast path from accepting such lines.
    if not name or name.startswith(_BAD_STARTS):
        return Reject.SYNTAX
    if _BAD_NAME.search(name) or rest[-1:].isspace():
        return Reject.SYNTAX
    try:
        name_s = name.decode()
    except UnicodeDecodeError:
        return Reject.ENCODING
    fields = rest.split(b"|")
    kind = _TYPES.get(fields[0])
    if kind is None:
        return Reject.TYPE if fields[0] else Reject.SYNTAX
    rate = 1.0
    ts: float | None = None
    pairs: list[tuple[str, str]] = []
    for f in fields[1:]:
        head = f[:1]
        if head == b"@":
            r = _num(f[1:])
            if r is None or not RATE_MIN <= r <= 1.0:
                return Reject.SYNTAX
            rate = r
        elif head == b"#":
            try:
                pairs.extend(tag_pairs(f[1:].decode()))
            except UnicodeDecodeError:
                return Reject.ENCODING
        elif head == b"T":
            t = sample_time(f[1:])
            if type(t) is Reject:
                return t
            ts = t
        # Other fields (c: container, e: external data, card: ...) do not change the series.
    return SeriesKey(name_s, make_tags(pairs), kind), kind, rate, ts


def add(
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


def sample_value(raw: bytes) -> float | None:
    """A sample's value within the bound (``VALUE_MAX``), else None."""
    v = _num(raw)
    return v if v is not None and -VALUE_MAX <= v <= VALUE_MAX else None


def sample_time(raw: bytes) -> float | Reject:
    """A time a client sent, in seconds, or why the line is rejected: ``bad syntax`` when it is
    no number, ``bad time`` when it lies outside ``[0, TIME_MAX_S)`` (the screen and the
    history turn times into dates, which years far from now break)."""
    t = _float(raw)
    if t is None:
        return Reject.SYNTAX
    return t if 0.0 <= t < TIME_MAX_S else Reject.TIME


def tag_pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for tag in text.split(","):
        if tag:
            k, _, v = tag.partition(":")
            pairs.append((k, v))
    return pairs
