"""StatsD lines in bulk: the fast path of ``parse_block``.

The common StatsD form (``name:value|type[|...]``) is recognised for a whole block at once by
one regex ``split`` (the scan runs in C); values are grouped per series with C-level ``map``
calls and converted with ``map(float, ...)``. Lines the regex does not take (events,
multi-values, JSON lines, ...) and lines it takes but cannot settle in bulk (timestamps, values
like ``1e999``) go one by one through the per-line parser (``dispatch``), which decides every
reject reason. The fast path accepts exactly what the per-line parser would, with the same
result, except that within one batch a distribution's samples (and counter increments) may be
added in another order; gauge updates always keep line order.
"""

from __future__ import annotations

import math
import operator
import re
from collections import defaultdict, deque
from collections.abc import Callable
from itertools import compress
from typing import Any

from vtmon.ingest.parse import dispatch
from vtmon.ingest.parse.cache import SERIES
from vtmon.ingest.parse.statsd import GAUGE, SET, add, sample_value, series
from vtmon.model import VALUE_MAX, Batch, Kind, Reject, SeriesKey

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

# The per-line parser is looked up on its module at each call (``dispatch.per_line``), never
# bound here, so that a test's spy on it sees every line the bulk paths hand over.


def statsd_block(
    body: bytes,
    batch: Batch,
    max_line: int,
    on_odd: Callable[[bytes, Batch, int], None] | None = None,
) -> None:
    """StatsD lines in bulk; the odd lines go to ``on_odd`` (the JSON path), or one by one."""
    odd_text = dispatch.per_line if on_odd is None else on_odd
    try:
        parts = _FAST.split(b"\n" + body)
        names = parts[1::4]
        vals = parts[2::4]
        rests = parts[3::4]
        # A matched line is at most 256 + 1 + 64 + 1 bytes plus its rest.
        if len(body) > max_line and max(map(len, rests), default=0) > max_line - 322:
            dispatch.per_line(
                body, batch, max_line
            )  # a line may be too long; the careful path decides
            return
        plan, bad_groups, bad_lines, gauges = _plan(names, vals, rests)
    except Exception:
        dispatch.per_line(body, batch, max_line)
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
            dispatch.per_line(b"%s:%s|%s" % (names[i], vals[i], rests[i]), batch, max_line)


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
            dispatch.per_line(b"%s:%s|%s" % (name, val, rest), batch, max_line)
        return
    # The lines the per-line parser must see go one by one, in place; the runs between them
    # are grouped again (without those lines they hold no bad ones, barring an overflow).
    start = 0
    for i in compress(range(len(names)), flags):
        if i > start:
            _run(names[start:i], vals[start:i], rests[start:i], batch, max_line, depth + 1)
        dispatch.per_line(b"%s:%s|%s" % (names[i], vals[i], rests[i]), batch, max_line)
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
    cached = SERIES.get
    for nr, raws in groups.items():
        info = cached(nr) or series(*nr)
        if type(info) is Reject or info[3] is not None:
            bad_groups.add(nr)  # rejected, or timestamped: the per-line parser decides
            continue
        key, kind, rate, _ = info
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
        wrong = {r for r in raws if sample_value(r) is None}
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
        add(batch, key, kind, rate, raws, values)
