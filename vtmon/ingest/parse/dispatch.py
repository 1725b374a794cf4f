"""One line at a time: ``parse_line`` hands each line to its parser (``statsd``, ``events``,
``json_line``, ``rpc``) and counts it, accepted or under its reject reason. ``per_line`` and
``json_lines`` take the lines the bulk paths leave, in line order."""

from __future__ import annotations

from typing import Literal

from vtmon.ingest.parse.cache import trim
from vtmon.ingest.parse.events import event, service_check
from vtmon.ingest.parse.json_line import json_line, json_parse
from vtmon.ingest.parse.rpc import rpc_batch, too_long_request
from vtmon.ingest.parse.statsd import DIST, GAUGE, add, statsd_line
from vtmon.model import (
    Batch,
    Reject,
    SeriesKey,
    TimedRun,
)


def parse_line(line: bytes, batch: Batch, max_line: int = 65536) -> None:
    """Parse one line (without its newline) into ``batch``; blank lines are not counted."""
    trim()
    try:
        reason = _line(line, batch, max_line)
    except Exception:
        reason = Reject.SYNTAX  # a parser bug must cost one line, not the connection
    if reason is None:
        batch.accepted += 1
    elif reason:
        batch.rejected[reason.reason] += 1


def per_line(text: bytes, batch: Batch, max_line: int) -> None:
    """Each line of ``text`` through ``parse_line``."""
    for line in text.split(b"\n"):
        if line:
            parse_line(line, batch, max_line)


def _line(line: bytes, batch: Batch, max_line: int) -> Reject | Literal[False] | None:
    """Parse one line; returns why it is rejected, None when accepted, False when blank."""
    if line[-1:] == b"\r":
        line = line[:-1]
    s = line.strip()
    if not s:
        return False
    if len(line) > max_line:
        refusal = too_long_request(s, max_line)
        if refusal is not None:
            batch.rpc.append(refusal)
        return Reject.TOO_LONG
    if s[:1] == b"{":
        return json_line(s, batch)
    if s[:1] == b"[" and s[-1:] == b"]" and rpc_batch(s, batch):
        return Reject.REQUEST
    if s[:3] == b"_e{":
        return event(line.lstrip(), batch)  # trailing blanks may belong to the text
    if s[:4] == b"_sc|":
        return service_check(s, batch)
    return statsd_line(s, batch)


def json_lines(text: bytes, batch: Batch, max_line: int) -> None:
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
            r = json_parse(s)
        except Exception:  # a parser bug must cost one line, not the connection
            r = Reject.SYNTAX
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
        elif type(r) is Reject:
            batch.rejected[r.reason] += 1
        else:
            batch.rpc.append(r)  # a JSON-RPC message
            batch.accepted += 1
    for key, values in dist.values():
        add(batch, key, DIST, 1.0, [], values)
