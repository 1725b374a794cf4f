"""Binary frames as vtmon reads them: float64 arrays per declared series. Their layout is
vtmon.protocol.frames (docs/protocol.md, "Binary frames").

A values frame becomes one numpy view of the received bytes, handed to the engine as it is: no
Python work per sample. Values must be finite with ``|v| <= VALUE_MAX`` (docs/protocol.md,
"Numbers"); each one that is not is counted as ``bad number`` and left out. Nothing here raises
for any input bytes: a frame that cannot be used is counted by reason and skipped, and a broken
header (after which nothing can be trusted) ends the connection.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from vtmon.ingest.parse import parse_block, series
from vtmon.model import REJECT_NUMBER, Batch, DistBuf, Kind, Reject, SeriesKey
from vtmon.protocol import jsonrpc
from vtmon.protocol.frames import (
    DECLARE,
    F64,
    FORMAT,
    HEADER,
    HELLO_METHOD,
    ID,
    KINDS,
    LINES,
    MAGIC,
    MAX_SERIES,
    STATSD_TYPE,
    VALUES,
)
from vtmon.protocol.wire import within_bound

# A declared kind as the series it makes and the StatsD type its name is parsed with.
_KINDS: dict[int, tuple[Kind, bytes]] = {
    code: (kind, STATSD_TYPE[code].encode()) for code, kind in KINDS.items()
}
# The memory of one declared series besides its text (its key, tags and table entry), for a
# name with two tags; counted so that declarations cannot grow without bound.
DECLARED_COST = 512

REJECT_BAD_FRAME = "bad frame"
REJECT_BAD_LENGTH = "bad length"
REJECT_UNKNOWN_FRAME = "unknown frame"
REJECT_UNKNOWN_SERIES = "unknown series"
REJECT_BAD_SERIES = "bad series"
REJECT_TOO_MANY_SERIES = "too many series"

_DECL = struct.Struct("<IB")  # a declare frame's id and kind
_HELLO = b'"%s"' % HELLO_METHOD.encode()


def hello_request(line: bytes) -> dict[str, Any] | None:
    """The JSON-RPC request of a connection's first line when it is a ``hello``, else None."""
    if _HELLO not in line:  # most first lines are metrics: no JSON parse for them
        return None
    try:
        msg = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if isinstance(msg, dict) and msg.get("jsonrpc") == "2.0" and msg.get("method") == HELLO_METHOD:
        return msg
    return None


def hello_answer(
    req: dict[str, Any], max_frame: int, max_series: int = MAX_SERIES
) -> tuple[dict[str, Any], bool]:
    """The answer to a first-line ``hello`` and whether the connection now speaks frames;
    it tells the client the largest frame and how many series ids it may declare."""
    params = req.get("params")
    fmt = params.get("format") if isinstance(params, dict) else None
    rid = req.get("id")
    if fmt != FORMAT:
        msg = f"Unknown format {fmt!r}; this vtmon speaks {FORMAT!r}."
        return jsonrpc.error(rid, jsonrpc.INVALID_PARAMS, msg), False
    result = {"format": FORMAT, "max_frame": max_frame, "max_series": max_series}
    return jsonrpc.result(rid, result), True


class FrameReader:
    """The frame state of one connection: its declared series and an unfinished frame.

    ``held`` is what it keeps in memory: the unfinished frame's bytes, and for each declared
    series its name and tags' length plus ``DECLARED_COST`` (the socket server counts it
    against the budget all connections share)."""

    __slots__ = ("series", "pending", "max_frame", "max_line", "max_series", "declared")

    def __init__(self, max_frame: int, max_line: int, max_series: int = MAX_SERIES) -> None:
        self.series: dict[int, SeriesKey] = {}
        self.pending = b""
        self.max_frame = max_frame
        self.max_line = max_line
        self.max_series = max_series
        self.declared = 0  # bytes held for the declared series, see ``held``

    @property
    def held(self) -> int:
        return len(self.pending) + self.declared

    def feed(self, data: bytes, batch: Batch) -> bool:
        """Add the frames completed by ``data`` to ``batch``; False when the connection must
        close (a broken header: the rest of the stream cannot be framed)."""
        buf = self.pending + data if self.pending else data
        end = len(buf)
        pos = 0
        arrays: dict[SeriesKey, list[np.ndarray]] = {}
        ok = True
        while end - pos >= 8:
            magic, ftype, reserved, n = HEADER.unpack_from(buf, pos)
            if magic != MAGIC or reserved != 0 or n > self.max_frame:
                batch.rejected[REJECT_BAD_FRAME] += 1
                ok = False
                pos = end
                break
            start = pos + 8
            if end - start < n:
                break
            pos = start + n
            if ftype == VALUES:
                self._values(buf, start, n, batch, arrays)
            elif ftype == DECLARE:
                self._declare(buf[start:pos], batch)
            elif ftype == LINES:
                if n:
                    parse_block(buf[start:pos], batch, self.max_line)
            else:
                batch.rejected[REJECT_UNKNOWN_FRAME] += 1
        self.pending = buf[pos:] if ok else b""
        if arrays:
            _hand_over(arrays, batch)
        return ok

    def close(self, batch: Batch) -> None:
        """The connection ended: a frame cut short is one ``bad frame``; the declarations go."""
        if self.pending:
            batch.rejected[REJECT_BAD_FRAME] += 1
            self.pending = b""
        self.series = {}
        self.declared = 0

    def _values(
        self,
        buf: bytes,
        start: int,
        n: int,
        batch: Batch,
        arrays: dict[SeriesKey, list[np.ndarray]],
    ) -> None:
        if n < 4 or (n - 4) % 8:
            batch.rejected[REJECT_BAD_LENGTH] += 1
            return
        key = self.series.get(ID.unpack_from(buf, start)[0])
        if key is None:
            batch.rejected[REJECT_UNKNOWN_SERIES] += 1
            return
        count = (n - 4) // 8
        if not count:
            return
        a = within_bound(np.frombuffer(buf, dtype=F64, count=count, offset=start + 4))
        if len(a) < count:
            batch.rejected[REJECT_NUMBER] += count - len(a)
            count = len(a)
        batch.accepted += count
        if count:
            arrays.setdefault(key, []).append(a)

    def _declare(self, payload: bytes, batch: Batch) -> None:
        if len(payload) < 6:
            batch.rejected[REJECT_BAD_SERIES] += 1
            return
        sid, kind_code = _DECL.unpack_from(payload, 0)
        kind = _KINDS.get(kind_code)
        if kind is None:
            batch.rejected[REJECT_BAD_SERIES] += 1
            return
        text = payload[5:]
        if len(text) > self.max_line:  # the limit a line has: a name is no longer than a line
            batch.rejected[REJECT_BAD_SERIES] += 1
            return
        bar = text.find(b"|")
        name, tail = (text, b"") if bar < 0 else (text[:bar], text[bar:])
        if tail and (tail[:2] != b"|#" or b"|" in tail[2:]):
            batch.rejected[REJECT_BAD_SERIES] += 1  # only tags may follow the name
            return
        info = series(name, kind[1] + tail)
        if type(info) is Reject:
            batch.rejected[REJECT_BAD_SERIES] += 1
            return
        old = self.series.get(sid)
        if old is None and len(self.series) >= self.max_series:
            batch.rejected[REJECT_TOO_MANY_SERIES] += 1
            return
        key = info[0]
        self.series[sid] = key
        self.declared += _cost(key) - (_cost(old) if old is not None else 0)


def _cost(key: SeriesKey) -> int:
    """What one declared series holds in memory, as ``FrameReader.held`` counts it."""
    return DECLARED_COST + len(key.name) + sum(len(k) + len(v) for k, v in key.tags)


def _hand_over(arrays: dict[SeriesKey, list[np.ndarray]], batch: Batch) -> None:
    """One array per series into the batch, after any lines of the same read."""
    for key, parts in arrays.items():
        kind = key.kind
        if kind is Kind.DISTRIBUTION:
            old = batch.dist.get(key)
            if old is not None and len(old.values):
                if old.weights is not None:  # sampled lines in a lines frame: keep weights
                    old.values = [*old.values, *np.concatenate(parts).tolist()]
                    old.weights = [*old.weights, *[1.0] * (len(old.values) - len(old.weights))]
                    continue
                parts = [np.asarray(old.values, dtype=np.float64), *parts]
            a = parts[0] if len(parts) == 1 else np.concatenate(parts)
            batch.dist[key] = DistBuf(a)
        elif kind is Kind.COUNTER:
            total = float(sum(float(p.sum()) for p in parts))  # within VALUE_MAX: finite
            batch.counts[key] = batch.counts.get(key, 0.0) + total
        else:
            # Each array is a run of values set one after another: the engine takes its count,
            # sum, least, greatest and last at once (see model.Batch.gauges).
            batch.gauges.setdefault(key, []).extend([(None, p) for p in parts])
