"""What vtmon.client writes on its connection: binary frames, or lines to an older vtmon.

A batch of buffered samples, a flat ``[key, value, key, value, ...]`` list in the order
they were recorded, is grouped by series (two slices; for more than one series one dict
append per sample) into one numpy array per series, and encoded as docs/protocol.md
describes:

* binary frames ("Binary frames"): a declare frame the first time a series is sent on the
  connection, then one values frame of float64 per series, and a lines frame (type 3) for the
  text that has no binary form (JSON-RPC, measurements with their context);
* StatsD and JSON lines, for a vtmon that refused the ``hello`` (an older one): one
  ``name:v1:v2:...|ms|#tags`` line per series and up to ``VALUES_PER_LINE`` values.

The encoded batch is a list of segments, one per series (and one for the control lines and
one for the text lines), each with the bytes that carry it, so a send that breaks off
part-way tells exactly which series went out whole and which must go back to the buffer.

A key is a ``str`` (the name of an untagged distribution: ``Client.record(name, value)``, the
hot path, stores the name itself), a :class:`Series` (everything else), or :data:`LINE`
(the value is a text line, or an object whose ``line()`` gives one).
"""

from __future__ import annotations

import json
import math
import re
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vtmon.model import VALUE_MAX
from vtmon.protocol import jsonrpc
from vtmon.protocol.frames import (
    DECLARE,
    F64,
    FORMAT,
    GAUGE,
    HEADER,
    HELLO_METHOD,
    ID,
    LINES,
    MAGIC,
    MAX_FRAME,
    MAX_SERIES,
    NAME_REFUSED,
    NAME_REFUSED_STARTS,
    STATSD_TYPE,
    VALUES,
)

HELLO = (
    json.dumps(
        jsonrpc.request(HELLO_METHOD, {"format": FORMAT}),
        separators=(",", ":"),
    ).encode()
    + b"\n"
)
VALUES_PER_LINE = 256  # a text line stays far below vtmon's 64 KiB line limit

_BAD_NAME = re.compile(NAME_REFUSED)
# What cannot stand in a DogStatsD tag: it would end the tag, the tag list or the line.
_BAD_TAG = re.compile(r"[\x00-\x1f\x7f|,]")


class _Line:
    """The key of a text item (``LINE``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LINE"


LINE: Any = _Line()


class _Reused:
    """The key a timer leaves behind: ``with`` on it again records nothing (and says so)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "REUSED"


REUSED: Any = _Reused()


def header(ftype: int, length: int) -> bytes:
    return HEADER.pack(MAGIC, ftype, 0, length)


def frame(ftype: int, payload: bytes) -> bytes:
    return header(ftype, len(payload)) + payload


def clean_tag(text: object, key: bool = False) -> str:
    """A tag key or value as text DogStatsD can carry (what cannot becomes ``_``)."""
    s = _BAD_TAG.sub("_", str(text))
    return s.replace(":", "_") if key else s


def tag_text(tags: Iterable[tuple[str, str]]) -> str:
    return ",".join(f"{k}:{v}" for k, v in tags)


class Series:
    """One series as the client sends it: kind, name and tags, and its id on the current
    connection (``sid``, valid while ``gen`` is the connection's generation)."""

    __slots__ = ("kind", "name", "tags", "declare", "error", "sid", "gen")

    def __init__(self, kind: int, name: object, tags: tuple[tuple[str, str], ...] = ()) -> None:
        self.kind = kind
        self.name = name
        self.tags = tags
        self.sid = -1
        self.gen = -1
        self.error = name_error(name)
        self.declare = b""
        if not self.error:
            text = str(name) + ("|#" + tag_text(tags) if tags else "")
            self.declare = bytes((kind,)) + text.encode()

    def statsd(self, values: list[float]) -> list[str]:
        """StatsD lines for ``values`` of this series (a negative gauge is set through 0:
        a signed StatsD gauge value is a change)."""
        suffix = f"|{STATSD_TYPE[self.kind]}" + (f"|#{tag_text(self.tags)}" if self.tags else "")
        head = f"{self.name}:"
        if self.kind == GAUGE:
            texts = [repr(v) if v > 0 else f"0:{v!r}" if v < 0 else "0" for v in values]
        else:
            texts = list(map(repr, values))
        step = VALUES_PER_LINE
        return [head + ":".join(texts[i : i + step]) + suffix for i in range(0, len(texts), step)]

    def __repr__(self) -> str:
        return f"Series({self.kind}, {self.name!r}, {self.tags!r})"


def name_error(name: object) -> str:
    """Why vtmon would refuse ``name`` as a series name ("" when it would not)."""
    if name is REUSED:
        return "a client.timer(...) was used for a second block (make one per block)"
    if not isinstance(name, str) or not name:
        return f"a series name must be a non-empty string, not {name!r}"
    if _BAD_NAME.search(name) or name.startswith(NAME_REFUSED_STARTS):
        return f"{name!r} has a character vtmon refuses in a name (control, '|', '#')"
    try:
        name.encode()
    except UnicodeEncodeError:
        return f"{name!r} is not valid UTF-8"
    return ""


@dataclass
class Batch:
    """Samples taken from the buffer, grouped: ``series`` maps each key to its values in the
    order recorded; ``lines`` are the text items; ``bad`` counts values vtmon would refuse (no
    finite number, or beyond ``VALUE_MAX``), per key (they are not sent)."""

    series: dict[Any, np.ndarray] = field(default_factory=dict)
    lines: list[Any] = field(default_factory=list)
    bad: dict[Any, int] = field(default_factory=dict)


def group(items: list[Any]) -> Batch:
    """Group a flat ``[key, value, key, value, ...]`` list by key, keeping each key's order.
    Never raises: a key that cannot be hashed, or a value that is no number, is counted in
    ``bad``."""
    keys = items[0::2]
    vals = items[1::2]
    out = Batch()
    if not keys:
        return out
    k0 = keys[0]
    lists: dict[Any, list[Any]] = {}
    try:
        if keys.count(k0) == len(keys):  # one series (C compares, no Python per sample)
            lists[k0] = vals
        else:
            for k, v in zip(keys, vals, strict=True):
                try:
                    lists[k].append(v)
                except KeyError:
                    lists[k] = [v]
    except Exception:  # an unhashable key (a name that is no string), or a strange __eq__
        lists = {}
        for k, v in zip(keys, vals, strict=True):
            try:
                lists.setdefault(k, []).append(v)
            except Exception:
                out.bad[repr(k)] = out.bad.get(repr(k), 0) + 1
    return _arrays(lists, out)


def _arrays(lists: dict[Any, list[Any]], out: Batch) -> Batch:
    lines = lists.pop(LINE, None)
    if lines is not None:
        out.lines = lines
    for key, vals in lists.items():
        try:
            # array('d') takes ints, floats and what has __float__, but no text; then a view.
            a = np.frombuffer(array("d", vals), dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            a = np.array([_float(v) for v in vals], dtype=np.float64)
        kept = within_bound(a)
        if len(kept) < len(a):
            out.bad[key] = len(a) - len(kept)
        out.series[key] = kept
    return out


def within_bound(a: np.ndarray) -> np.ndarray:
    """The values of ``a`` vtmon takes: finite, within ``VALUE_MAX`` (``a`` itself when all
    are). The least and the greatest say it of all in the usual case (NaN fails the
    comparison); not np.dot, whose BLAS may wake threads that spin for a long array."""
    if not len(a) or (a.max() <= VALUE_MAX and a.min() >= -VALUE_MAX):
        return a
    return a[np.abs(a) <= VALUE_MAX]  # NaN compares False


def _float(v: Any) -> float:
    if isinstance(v, (str, bytes)):  # a number in text is a caller's mistake, not a sample
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return math.nan


@dataclass
class Encoded:
    """A batch as bytes: ``chunks`` to write in order, and ``segments``, each ``(end, key)``:
    the bytes up to ``end`` carry all of ``key``'s samples (``key`` None for the control
    lines, ``LINE`` for the text lines)."""

    chunks: list[bytes] = field(default_factory=list)
    segments: list[tuple[int, Any]] = field(default_factory=list)
    size: int = 0

    def add(self, key: Any, parts: list[bytes]) -> None:
        for p in parts:
            self.chunks.append(p)
            self.size += len(p)
        self.segments.append((self.size, key))


def encode_binary(
    control: list[str],
    series: list[tuple[Any, Series, np.ndarray]],
    lines: list[str],
    gen: int,
    next_sid: int,
    max_frame: int = MAX_FRAME,
    max_series: int = MAX_SERIES,
) -> tuple[Encoded, int]:
    """Frames for one batch on a binary connection of generation ``gen``; returns them and
    the next free series id. A series not yet declared on this connection gets its id and a
    declare frame first; once the connection has ``max_series`` ids, a new series goes as
    StatsD lines in a lines frame."""
    out = Encoded()
    if control:
        out.add(None, _line_frames(control, max_frame))
    per_frame = (max_frame - 4) // 8
    for key, s, a in series:
        if s.gen != gen and next_sid >= max_series:
            out.add(key, _line_frames(s.statsd(a.tolist()), max_frame))
            continue
        parts = []
        if s.gen != gen:
            s.sid, s.gen = next_sid, gen
            next_sid += 1
            parts.append(frame(DECLARE, ID.pack(s.sid) + s.declare))
        sid = ID.pack(s.sid)
        data = a.astype(F64, copy=False)
        for i in range(0, len(data), per_frame):
            chunk = data[i : i + per_frame]
            parts.append(header(VALUES, 4 + 8 * len(chunk)) + sid)
            parts.append(chunk.tobytes())
        out.add(key, parts)
    if lines:
        out.add(LINE, _line_frames(lines, max_frame))
    return out, next_sid


def _line_frames(lines: list[str], max_frame: int) -> list[bytes]:
    out = []
    pending: list[bytes] = []
    size = 0
    for line in lines:
        b = line.encode() + b"\n"
        if pending and size + len(b) > max_frame:
            out.append(frame(LINES, b"".join(pending)))
            pending, size = [], 0
        pending.append(b)
        size += len(b)
    if pending:
        out.append(frame(LINES, b"".join(pending)))
    return out


def encode_text(
    control: list[str], series: list[tuple[Any, Series, np.ndarray]], lines: list[str]
) -> Encoded:
    """The same batch as lines, for a vtmon that speaks no binary frames."""
    out = Encoded()
    if control:
        out.add(None, ["\n".join(control).encode() + b"\n"])
    for key, s, a in series:
        out.add(key, ["\n".join(s.statsd(a.tolist())).encode() + b"\n"])
    if lines:
        out.add(LINE, ["\n".join(lines).encode() + b"\n"])
    return out
