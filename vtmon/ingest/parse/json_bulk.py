"""JSON metric lines in bulk: the JSON path of ``parse_block``.

Lines that differ only in their value (and timestamp) numbers share a *template*, the line
with those numbers replaced by 0: one regex ``split`` finds every line's ``"value":`` and
``"timestamp":`` numbers and makes the templates. Context fields vtmon does not read (a user,
session or request id: only ``component`` and ``error_type`` make the series) are cut out of
the template first, by one more regex ``split``, where they are plain strings after the
significant fields (see ``_JCTX``): the template is then a line that parses to the same
metric. A template is checked once by the per-line parser, filled with two different numbers:
only when it then gives one series with exactly those numbers do its lines go in bulk (values
and timestamps converted with ``map(float, ...)``, timestamped samples as one ``TimedRun``
per template); the checks are cached like StatsD series (``cache``). Lines that differ in more
(an id with an escape in it, a context field vtmon reads after the ids) and anything else
(JSON-RPC, bad lines) go through the per-line parser (``dispatch``), in line order, with the
same result as there.
"""

from __future__ import annotations

import math
import operator
import re
from collections import Counter, defaultdict, deque
from itertools import repeat
from typing import Any

from vtmon.ingest.parse import dispatch
from vtmon.ingest.parse.cache import INTERN, JSERIES, JTEMPLATE_BYTES, JInfo, seen_before
from vtmon.ingest.parse.json_line import MS_MAX, json_parse
from vtmon.ingest.parse.statsd import COUNTER, DIST, GAUGE, add
from vtmon.ingest.parse.statsd_bulk import statsd_block
from vtmon.model import VALUE_MAX, Batch, Kind, SeriesKey, TimedRun

_hypot = math.hypot  # the bound check of a group of values, as statsd_bulk explains

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
# (a looser regex, its cuts then checked at once with bytes methods) are slower.
_JPLAIN = rb"[ !#-\[\]-~]"
_JSIG = rb'"(?:component|error_type)": ?"' + _JPLAIN + rb'{0,256}+"'
_JIDS = rb'"(?!(?:component|error_type)")' + _JPLAIN + rb'{0,64}+": ?"' + _JPLAIN + rb'{0,256}+"'
_JCTX = re.compile(
    rb'("context": ?\{(?:' + _JSIG + rb"(?:, ?" + _JSIG + rb")*+)?+)"  # kept
    rb"((?:(?<=\{)|, ?)" + _JIDS + rb"(?:, ?" + _JIDS + rb")*+)(?=\})"  # cut
)

_JNEW = 16  # templates seen once in a block that are checked (cached) per block; see _jknown
_JSAMPLE = 4096  # the first bytes of a block that tell whether its lines share templates
_JPlan = list[tuple[SeriesKey, Kind, list[float], list[float] | None]]  # ..., timestamps (s)


def json_block(
    body: bytes, batch: Batch, max_line: int, depth: int = 0, blank: bool | None = None
) -> None:
    """JSON lines in bulk where their templates allow it, else in line order one by one."""
    if blank is None:
        likely = _jlikely(body)
        if not likely and depth == 0:
            dispatch.json_lines(body, batch, max_line)
            return
        blank = likely == 2
    try:
        tm, vals, stamps, cut = _jsplit(body, blank)
        planned = _jplan(body, tm, vals, stamps, cut, max_line)
    except Exception:
        dispatch.per_line(body, batch, max_line)
        return
    if isinstance(planned, set):
        _jmixed(body, tm, planned, batch, max_line, depth, blank)
        return
    plan, ordered, _ = planned
    for key, kind, values, ts in plan:
        if ts is not None:
            batch.timed.append(TimedRun(key, values, ts))
        elif kind is DIST:
            add(batch, key, kind, 1.0, [], values)
        elif kind is COUNTER:
            # sum() adds left to right from 0, as the lines one by one would.
            batch.counts[key] = batch.counts.get(key, 0.0) + sum(values)
        else:
            batch.gauges.setdefault(key, []).extend([(False, v) for v in values])
    if ordered:  # one gauge under several templates: its updates in line order
        for t, v in zip(tm, vals, strict=True):
            gauge = ordered.get(t)
            if gauge is not None:
                batch.gauges.setdefault(gauge, []).append((False, float(v)))
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
        if t in JSERIES:
            return 1 + blank
        seen = seen_before(t) or seen
    return 1 + blank if seen else 0


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
        stamps: list[bytes] | None = parts[2::3]
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
    # Each template's timestamps, in line order like its values.
    sgroups: defaultdict[bytes, list[bytes]] = defaultdict(list)
    if stamps is not None:
        deque(map(list.append, map(sgroups.__getitem__, tm), stamps), 0)
    _jknown([(t, len(raws)) for t, raws in groups.items()], n)
    cached = JSERIES.get
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
            if not (min(ms) >= 0.0 and max(ms) < MS_MAX):
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
        if t in JSERIES:
            continue
        if count < 2 and not seen_before(t):
            if once <= 0:
                continue
            once -= 1
        info = _jcheck(t)
        if len(t) <= JTEMPLATE_BYTES:
            JSERIES[t] = info


def _jcheck(t: bytes) -> JInfo | None:
    """What every line of template ``t`` is: filled with two different values (and
    timestamps), the per-line parser must see one metric series with exactly those numbers;
    else None (the numbers are not the metric's own, or the line is no metric at all)."""
    if len(t) > JTEMPLATE_BYTES or len(_JVALUE.findall(t)) != 1:
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
    return INTERN.setdefault(a[0], a[0]), a[1], n_ts == 1


def _jfill(t: bytes, value: bytes, ts: bytes) -> bytes:
    line = _JVALUE.sub(b'"value":' + value, t)
    return _JTIME.sub(b'"timestamp":' + ts, line)


def _jresult(line: bytes) -> Any:
    """What the per-line parser makes of a JSON line (see _line), without a batch."""
    if line[-1:] == b"\r":
        line = line[:-1]
    s = line.strip()
    return json_parse(s) if s[:1] == b"{" else None


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
        dispatch.json_lines(body, batch, max_line)
        return
    _jknown(list(Counter(tm).items()), len(tm))
    cached = JSERIES.get
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
            json_block(text, batch, max_line, depth + 1, blank)
        elif depth == 0 and i - start > 2 and text[:1] != b"{":
            statsd_block(text, batch, max_line)  # StatsD lines among JSON ones
        else:
            dispatch.json_lines(text, batch, max_line)
        start = i
