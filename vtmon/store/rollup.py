"""What the history store keeps per interval, how it is packed into bytes, and how intervals
are merged into coarser ones.

A *row* is one series over one interval (``res`` seconds starting at ``t``):

=============  ====================================  ==========================================
kind           ``n``, ``sum``, ``min``, ``max``      ``last`` / ``sketch``
=============  ====================================  ==========================================
distribution   count (sum of weights), sum, exact    sketch buckets (sparse, see ``encode``)
               min and max of the samples
counter        seconds with increments, sum of the   --
               increments, smallest and largest
               per-second increment
gauge          updates, sum of the values set,       the value at the end of the interval
               min and max of the values set
set            seconds with members, sum / min /     the last second's unique count
               max of the per-second unique counts
=============  ====================================  ==========================================

Every column merges by a plain rule (``n`` and ``sum`` add, ``min`` / ``max`` take the extreme,
``last`` the newest, sketches add bucket by bucket), so a rollup of rollups equals a rollup of
the original rows, and a sketch merged from any number of intervals still answers each
quantile within 1 % of the sample of that rank (the buckets are the same; only counts add).

Sketch blobs are sparse: only non-empty buckets. Layout (little endian)::

    byte 0   flags: bits 0-1 key coding (0 bitmap of the key span, 1/2/3 key deltas as
             uint8/uint16/uint32), bits 2-4 count coding (0-2 uint8/16/32, 3 float32,
             4 float64, 5 varints of the differences between neighbouring counts), bit 5: a
             zero count follows the header
    int32    the first (smallest) non-zero key
    uint32   number of non-zero keys
    float64  count of exact zeros (only with bit 5)
    counts   one per key, in the narrowest coding that holds them exactly
    keys     the bitmap (``numpy.packbits``) or the deltas between consecutive keys

The narrowest encodings are chosen per blob (docs/performance.md has the sizes bench/store.py
measures).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vtmon.model import QUANTILES
from vtmon.sketch import Sketch, aggregate, key_values, summarise

_HEAD = struct.Struct("<BiI")
_HEAD_DTYPE = np.dtype([("flags", "u1"), ("first", "<i4"), ("n", "<u4")])  # _HEAD, unaligned
_ZERO = struct.Struct("<d")
_KEY_DTYPES = (None, np.dtype("<u1"), np.dtype("<u2"), np.dtype("<u4"))
_COUNT_DTYPES: tuple[np.dtype[Any], ...] = (
    np.dtype("<u1"),
    np.dtype("<u2"),
    np.dtype("<u4"),
    np.dtype("<f4"),
    np.dtype("<f8"),
)
_F32_MAX = float(np.finfo(np.float32).max)
_HAS_ZERO = 0x20
_VARINT = 5  # count coding: LEB128 varints of zigzag differences
# a varint takes one byte more from each of these values on
_VARINT_STEPS = np.array([1 << 7, 1 << 14, 1 << 21, 1 << 28], dtype=np.uint64)

LAYERS: tuple[str, ...] = ("application", "system", "network", "hardware")

# Each layer keeps its collection resolution r, then r x 10, r x 60 and r x 600; each tier but
# the last holds this many points, the last holds the rest of the retention.
TIER_FACTORS: tuple[int, ...] = (1, 10, 60, 600)
TIER_POINTS: tuple[int, ...] = (3600, 2160, 1440)


class CorruptBlob(ValueError):
    """A sketch blob that cannot be decoded."""


def encode(keys: np.ndarray, counts: np.ndarray) -> bytes:
    """Sparse buckets (sorted keys, their counts) as a compact blob; see the module docstring."""
    keys = np.asarray(keys, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.float64)
    zero = 0.0
    flags = 0
    i = int(np.searchsorted(keys, 0))
    if i < keys.size and keys[i] == 0:
        zero = float(counts[i])
        keys = np.delete(keys, i)
        counts = np.delete(counts, i)
        flags |= _HAS_ZERO
    n = int(keys.size)
    first = int(keys[0]) if n else 0
    parts: list[bytes] = []
    if n:
        ccode, cbytes = _encode_counts(counts)
        flags |= ccode << 2
        parts.append(cbytes)
        deltas = np.diff(keys)
        span = int(keys[-1]) - first + 1
        bitmap_len = (span + 7) // 8
        top = int(deltas.max()) if deltas.size else 0
        code = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 3
        if bitmap_len < (n - 1) * _KEY_DTYPES[code].itemsize:  # type: ignore[union-attr]
            bits = np.zeros(span, dtype=np.uint8)
            bits[keys - first] = 1
            parts.append(np.packbits(bits).tobytes())
            code = 0
        else:
            parts.append(deltas.astype(_KEY_DTYPES[code]).tobytes())
        flags |= code
    head = _HEAD.pack(flags, first, n)
    if flags & _HAS_ZERO:
        head += _ZERO.pack(zero)
    return head + b"".join(parts)


def _encode_counts(counts: np.ndarray) -> tuple[int, bytes]:
    """The narrowest exact coding of the counts: (count code, bytes)."""
    top = float(counts.max())
    if np.all(counts == np.floor(counts)) and top < 2**32:
        code = 0 if top < 2**8 else 1 if top < 2**16 else 2
        fixed = counts.astype(_COUNT_DTYPES[code]).tobytes()
        if code == 0:
            return code, fixed
        varint = _varints(counts.astype(np.int64))
        return (_VARINT, varint) if len(varint) < len(fixed) else (code, fixed)
    # Counts beyond float32's range (huge weights) would overflow the cast: they stay float64.
    narrow = float(counts.min()) >= -_F32_MAX and top <= _F32_MAX
    code = 3 if narrow and np.all(counts.astype(np.float32) == counts) else 4
    return code, counts.astype(_COUNT_DTYPES[code]).tobytes()


def _varints(c: np.ndarray) -> bytes:
    """Differences of consecutive counts, zigzag-mapped, as LEB128 varints (``_zigzag``)."""
    z, lengths = _zigzag(c, np.zeros(1, dtype=np.int64), np.array([c.size]))
    return _varint_bytes(z, lengths).tobytes()


def _unvarints(u: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """The first ``n`` counts coded by ``_varints`` in ``u`` and how many bytes they took."""
    ends = np.flatnonzero(u < 0x80)
    if ends.size < n:
        raise CorruptBlob(f"{ends.size} counts where {n} were written")
    ends = ends[:n]
    used = int(ends[-1]) + 1
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 5:
        raise CorruptBlob("a count longer than 5 bytes")
    pos = np.arange(used) - np.repeat(starts, lengths)
    weights = (u[:used] & 0x7F).astype(np.float64) * np.exp2(7.0 * pos)  # exact below 2**53
    z = np.bincount(np.repeat(np.arange(n), lengths), weights=weights, minlength=n)
    z = z.astype(np.int64)
    d = (z >> 1) ^ -(z & 1)
    return np.cumsum(d).astype(np.float64), used


def decode(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Sorted int32 keys and float64 counts of a blob made by ``encode``."""
    try:
        flags, first, n = _HEAD.unpack_from(blob, 0)
        pos = _HEAD.size
        zero = 0.0
        if flags & _HAS_ZERO:
            (zero,) = _ZERO.unpack_from(blob, pos)
            pos += _ZERO.size
        code = flags & 0x03
        ccode = (flags >> 2) & 0x07
        if n:
            body = np.frombuffer(blob, dtype=np.uint8, offset=pos)
            if ccode == _VARINT:
                counts, used = _unvarints(body, n)
            else:
                cdt = _COUNT_DTYPES[ccode]
                used = n * cdt.itemsize
                counts = np.frombuffer(body[:used].tobytes(), dtype=cdt).astype(np.float64)
            key_part = body[used:]
            if code == 0:
                keys = np.flatnonzero(np.unpackbits(key_part)).astype(np.int64) + first
            else:
                deltas = np.frombuffer(key_part.tobytes(), dtype=_KEY_DTYPES[code])
                if deltas.size != n - 1:
                    raise CorruptBlob(f"{deltas.size} key deltas, not {n - 1}")
                keys = np.empty(n, dtype=np.int64)
                keys[0] = first
                np.cumsum(deltas, out=keys[1:])
                keys[1:] += first
            if keys.size != n or counts.size != n:
                raise CorruptBlob(f"{keys.size} keys and {counts.size} counts, not {n}")
        else:
            keys = np.empty(0, dtype=np.int64)
            counts = np.empty(0, dtype=np.float64)
    except (struct.error, ValueError, IndexError, TypeError) as e:
        raise CorruptBlob(str(e)) from e
    if flags & _HAS_ZERO:
        i = int(np.searchsorted(keys, 0))
        keys = np.insert(keys, i, 0)
        counts = np.insert(counts, i, zero)
    return keys.astype(np.int32), counts


# --- many blobs at once ------------------------------------------------------------------


def encode_many(keys: Sequence[np.ndarray], counts: Sequence[np.ndarray]) -> list[bytes]:
    """The blob of each row's buckets (``keys[i]``, ``counts[i]``), as ``encode`` makes it."""
    if not keys:
        return []
    sizes = np.fromiter((k.size for k in keys), dtype=np.int64, count=len(keys))
    return encode_rows(np.concatenate(keys), np.concatenate(counts), sizes)


def encode_rows(keys: np.ndarray, counts: np.ndarray, sizes: np.ndarray) -> list[bytes]:
    """The blobs of many rows whose buckets lie one row after the other in ``keys`` and
    ``counts`` (``sizes[i]`` buckets for row ``i``; the keys of a row sorted and distinct),
    byte for byte what ``encode`` makes of each row.

    The codings are chosen per row by numpy over all the buckets at once; only the final
    slicing into one ``bytes`` per row is done per row. ``encode`` stays for a single blob
    (the SQL function ``merge_sketch``), where numpy's fixed cost per call would dominate.
    """
    m = int(sizes.size)
    if m == 0:
        return []
    k = np.asarray(keys, dtype=np.int64)
    c = np.asarray(counts, dtype=np.float64)
    n = np.asarray(sizes, dtype=np.int64)
    has_zero = np.zeros(m, dtype=bool)
    zero = np.zeros(m, dtype=np.float64)
    at = np.flatnonzero(k == 0)
    if at.size:  # the bucket of exact zeros goes into the header
        zrow = np.repeat(np.arange(m), n)[at]
        has_zero[zrow] = True
        zero[zrow] = c[at]
        k, c = np.delete(k, at), np.delete(c, at)
        n = n - has_zero
    start = np.cumsum(n) - n
    live = n > 0
    ls, ln = start[live], n[live]  # the rows with buckets: where they start, how many
    first = np.zeros(m, dtype=np.int64)
    first[live] = k[ls]
    ccode = np.zeros(m, dtype=np.int64)
    kcode = np.zeros(m, dtype=np.int64)
    cbytes = np.zeros(m, dtype=np.int64)
    kbytes = np.zeros(m, dtype=np.int64)
    count_parts: list[tuple[np.ndarray, np.ndarray]] = []  # (rows, their bytes one after another)
    key_parts: list[tuple[np.ndarray, np.ndarray]] = []
    if ls.size:
        rows = np.flatnonzero(live)
        _choose_counts(c, rows, ls, ln, ccode, cbytes, count_parts)
        _choose_keys(k, rows, ls, ln, first, kcode, kbytes, key_parts)
    head = np.empty(m, dtype=_HEAD_DTYPE)
    head["flags"] = np.where(has_zero, _HAS_ZERO, 0) | (ccode << 2) | kcode
    head["first"] = first
    head["n"] = n
    hsize = _HEAD.size + _ZERO.size * has_zero
    size = hsize + cbytes + kbytes
    end = np.cumsum(size)
    off = end - size
    out = np.empty(int(end[-1]), dtype=np.uint8)
    out[_spans(off, np.full(m, _HEAD.size))] = head.view(np.uint8)
    if at.size:
        out[_spans(off[has_zero] + _HEAD.size, np.full(int(has_zero.sum()), _ZERO.size))] = (
            zero[has_zero].astype("<f8").view(np.uint8)
        )
    for rows, data in count_parts:
        out[_spans(off[rows] + hsize[rows], cbytes[rows])] = data
    for rows, data in key_parts:
        out[_spans(off[rows] + hsize[rows] + cbytes[rows], kbytes[rows])] = data
    whole = out.tobytes()
    return [whole[a:b] for a, b in zip(off.tolist(), end.tolist(), strict=True)]


def _choose_counts(
    c: np.ndarray,
    rows: np.ndarray,
    ls: np.ndarray,
    ln: np.ndarray,
    ccode: np.ndarray,
    cbytes: np.ndarray,
    parts: list[tuple[np.ndarray, np.ndarray]],
) -> None:
    """The narrowest exact coding of each row's counts: fills ``ccode`` and ``cbytes`` of the
    ``rows`` (starting at ``ls`` in ``c``, ``ln`` counts each) and adds their bytes to
    ``parts``."""
    top = np.maximum.reduceat(c, ls)
    whole = np.logical_and.reduceat(c == np.floor(c), ls) & (top < 2**32)
    code = np.where(top < 2**8, 0, np.where(top < 2**16, 1, 2))
    code[~whole] = 4
    fixed = ln * np.array([d.itemsize for d in _COUNT_DTYPES])[code]
    varint = np.zeros(rows.size, dtype=bool)
    try_v = whole & (code > 0)  # uint8 counts are never longer than their varints
    if try_v.any():
        vrows = np.flatnonzero(try_v)
        z, zlen = _zigzag(c, ls[vrows], ln[vrows])
        vbytes = np.add.reduceat(zlen, np.cumsum(ln[vrows]) - ln[vrows])
        shorter = vbytes < fixed[vrows]
        varint[vrows[shorter]] = True
        code[vrows[shorter]] = _VARINT
        fixed[vrows[shorter]] = vbytes[shorter]
        take = np.repeat(shorter, ln[vrows])
        if shorter.any():
            parts.append((rows[varint], _varint_bytes(z[take], zlen[take])))
    floats = np.flatnonzero(~whole)
    if floats.size:
        # Counts beyond float32's range (huge weights) would overflow the cast: they stay float64.
        low = np.minimum.reduceat(c, ls)[floats]
        narrow = (low >= -_F32_MAX) & (top[floats] <= _F32_MAX)
        if narrow.any():
            nrows = floats[narrow]
            idx = _spans(ls[nrows], ln[nrows])
            same = c[idx].astype(np.float32) == c[idx]
            exact = np.logical_and.reduceat(same, np.cumsum(ln[nrows]) - ln[nrows])
            code[nrows[exact]] = 3
            fixed[nrows[exact]] = ln[nrows[exact]] * 4
    for cc in range(len(_COUNT_DTYPES)):
        sel = np.flatnonzero((code == cc) & ~varint)
        if sel.size:
            data = c[_spans(ls[sel], ln[sel])].astype(_COUNT_DTYPES[cc]).view(np.uint8)
            parts.append((rows[sel], data))
    ccode[rows] = code
    cbytes[rows] = fixed


def _zigzag(c: np.ndarray, ls: np.ndarray, ln: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The differences of neighbouring counts of each row (``ln[i]`` counts from ``ls[i]`` in
    ``c``; the first from 0), zigzag-mapped, and how many varint bytes each takes:
    neighbouring buckets hold similar counts, so most take one or two bytes whatever the
    totals."""
    v = c[_spans(ls, ln)].astype(np.int64)
    d = np.diff(v, prepend=0)
    heads = np.cumsum(ln) - ln
    d[heads] = v[heads]
    z = ((d << 1) ^ (d >> 63)).astype(np.uint64)
    return z, 1 + np.searchsorted(_VARINT_STEPS, z, side="right")


def _varint_bytes(z: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``z`` as LEB128 varints of the given lengths, one after another."""
    width = int(lengths.max())
    cols = np.arange(width)
    b = ((z[:, None] >> (np.uint64(7) * cols.astype(np.uint64))) & np.uint64(0x7F)).astype(np.uint8)
    b[cols[None, :] < (lengths - 1)[:, None]] |= 0x80
    return b[cols[None, :] < lengths[:, None]]


def _choose_keys(
    k: np.ndarray,
    rows: np.ndarray,
    ls: np.ndarray,
    ln: np.ndarray,
    first: np.ndarray,
    kcode: np.ndarray,
    kbytes: np.ndarray,
    parts: list[tuple[np.ndarray, np.ndarray]],
) -> None:
    """The shorter of a bitmap and the narrowest key deltas for each row (see
    ``_choose_counts`` for the arguments)."""
    d = np.diff(k, prepend=0)
    d[ls] = 0  # a row's first key is in its header
    top = np.maximum.reduceat(d, ls)
    code = np.where(top < 1 << 8, 1, np.where(top < 1 << 16, 2, 3))
    deltas = (ln - 1) * np.array([0, 1, 2, 4])[code]
    span = k[ls + ln - 1] - first[rows] + 1
    bitmap_len = (span + 7) // 8
    bitmap = bitmap_len < deltas
    code[bitmap] = 0
    kcode[rows] = code
    kbytes[rows] = np.where(bitmap, bitmap_len, deltas)
    body = np.ones(k.size, dtype=bool)
    body[ls] = False  # the keys after each row's first
    for kc in (1, 2, 3):
        sel = np.flatnonzero(code == kc)
        if sel.size:
            idx = _spans(ls[sel], ln[sel])
            parts.append((rows[sel], d[idx[body[idx]]].astype(_KEY_DTYPES[kc]).view(np.uint8)))
    sel = np.flatnonzero(bitmap)
    if sel.size:
        idx = _spans(ls[sel], ln[sel])
        lens = bitmap_len[sel]
        pos = k[idx] - np.repeat(first[rows[sel]], ln[sel])
        at = np.repeat(np.cumsum(lens) - lens, ln[sel]) + (pos >> 3)
        bits = np.bincount(at, weights=0x80 >> (pos & 7), minlength=int(lens.sum()))
        parts.append((rows[sel], bits.astype(np.uint8)))  # keys are distinct: a sum is an OR


def _spans(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices ``starts[i] .. starts[i] + lengths[i] - 1`` of every span, one after the
    other."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    return np.arange(total, dtype=np.int64) + np.repeat(
        np.asarray(starts, dtype=np.int64) - (np.cumsum(lengths) - lengths), lengths
    )


def decode_rows(blobs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The buckets of many blobs, one after the other: int32 keys, float64 counts, and how many
    belong to each blob (sorted within each). Raises ``CorruptBlob`` when any blob cannot be
    decoded (``decode`` each on its own to find which)."""
    m = len(blobs)
    blen = np.fromiter((len(b) for b in blobs), dtype=np.int64, count=m)
    if m == 0:
        return np.empty(0, np.int32), np.empty(0, np.float64), blen
    if blen.min() < _HEAD.size:
        raise CorruptBlob("a blob shorter than its header")
    u = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    bend = np.cumsum(blen)
    boff = bend - blen
    head = u[_spans(boff, np.full(m, _HEAD.size))].view(_HEAD_DTYPE)
    flags = head["flags"].astype(np.int64)
    first = head["first"].astype(np.int64)
    n = head["n"].astype(np.int64)
    has_zero = (flags & _HAS_ZERO) != 0
    body = boff + _HEAD.size + _ZERO.size * has_zero
    live = n > 0
    # every count takes a byte at least: this also bounds what a damaged header can allocate
    if (body > bend).any() or (n[live] > (bend - body)[live]).any():
        raise CorruptBlob("a blob shorter than its header says")
    ccode = (flags >> 2) & 0x07
    kcode = flags & 0x03
    if (ccode[live] > _VARINT).any():
        raise CorruptBlob(f"count coding {int(ccode[live].max())}")
    start = np.cumsum(n) - n
    keys = np.empty(int(n.sum()), dtype=np.int64)
    counts = np.empty(keys.size, dtype=np.float64)
    cbytes = np.zeros(m, dtype=np.int64)
    for cc, dt in enumerate(_COUNT_DTYPES):
        sel = np.flatnonzero(live & (ccode == cc))
        if sel.size:
            cbytes[sel] = n[sel] * dt.itemsize
            if (body[sel] + cbytes[sel] > bend[sel]).any():
                raise CorruptBlob("fewer counts than written")
            counts[_spans(start[sel], n[sel])] = u[_spans(body[sel], cbytes[sel])].view(dt)
    sel = np.flatnonzero(live & (ccode == _VARINT))
    if sel.size:
        cbytes[sel] = _read_varints(u, body[sel], bend[sel], n[sel], counts, start[sel])
    kstart = body + cbytes
    klen = bend - kstart
    for kc in (1, 2, 3):
        sel = np.flatnonzero(live & (kcode == kc))
        if sel.size:
            kdt = _KEY_DTYPES[kc]
            assert kdt is not None
            if (klen[sel] != (n[sel] - 1) * kdt.itemsize).any():
                raise CorruptBlob("key deltas of the wrong length")
            d = np.zeros(int(n[sel].sum()), dtype=np.int64)
            heads = np.cumsum(n[sel]) - n[sel]
            after = np.ones(d.size, dtype=bool)
            after[heads] = False
            d[after] = u[_spans(kstart[sel], klen[sel])].view(kdt)
            d[heads] = first[sel]
            keys[_spans(start[sel], n[sel])] = _row_cumsum(d, heads, n[sel])
    sel = np.flatnonzero(live & (kcode == 0))
    if sel.size:
        bits = np.unpackbits(u[_spans(kstart[sel], klen[sel])])
        nbits = klen[sel] * 8
        on = np.flatnonzero(bits)
        row = np.repeat(np.arange(sel.size), nbits)[on]
        if not np.array_equal(np.bincount(row, minlength=sel.size), n[sel]):
            raise CorruptBlob("a key bitmap that does not hold its keys")
        keys[_spans(start[sel], n[sel])] = first[sel][row] + on - (np.cumsum(nbits) - nbits)[row]
    if has_zero.any():
        neg = np.bincount(np.repeat(np.arange(m), n)[keys < 0], minlength=m)
        at = (start + neg)[has_zero]
        zero = u[_spans(boff[has_zero] + _HEAD.size, np.full(at.size, _ZERO.size))].view("<f8")
        keys = np.insert(keys, at, 0)
        counts = np.insert(counts, at, zero)
        n = n + has_zero
    return keys.astype(np.int32), counts, n


def _row_cumsum(d: np.ndarray, heads: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The running sum of ``d`` within each row (rows start at ``heads``)."""
    total = np.cumsum(d)
    return total - np.repeat(total[heads] - d[heads], sizes)


def _read_varints(
    u: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    n: np.ndarray,
    counts: np.ndarray,
    at: np.ndarray,
) -> np.ndarray:
    """Decode ``n[i]`` varint counts from ``starts[i]`` (before ``ends[i]``) into
    ``counts[at[i]:]``; returns how many bytes each row's counts took."""
    stop = np.cumsum(u < 0x80)  # the bytes that end a varint, up to each byte
    before = np.concatenate(([0], stop))[starts]
    last = np.searchsorted(stop, before + n)  # the byte that ends each row's last count
    if (last >= ends).any():
        raise CorruptBlob("fewer counts than written")
    used = last - starts + 1
    b = u[_spans(starts, used)]
    tails = np.flatnonzero(b < 0x80)
    heads = np.concatenate(([0], tails[:-1] + 1))
    lengths = tails - heads + 1
    if lengths.max() > 5:
        raise CorruptBlob("a count longer than 5 bytes")
    pos = np.arange(b.size) - np.repeat(heads, lengths)
    weights = (b & 0x7F).astype(np.float64) * np.exp2(7.0 * pos)  # exact below 2**53
    z = np.bincount(np.repeat(np.arange(tails.size), lengths), weights=weights)
    z = z.astype(np.int64)
    d = (z >> 1) ^ -(z & 1)
    counts[_spans(at, n)] = _row_cumsum(d, np.cumsum(n) - n, n)
    return used


# --- rows ------------------------------------------------------------------------------------


# A point as the ``points`` table holds it: (series_id, t, n, total, lo, hi, last, sketch).
Point = tuple[int, int, float, float, float, float, float | None, bytes | None]


@dataclass(slots=True)
class Row:
    """One series over one interval; see the module docstring for what each field means."""

    n: float
    sum: float
    min: float
    max: float
    last: float | None = None
    keys: np.ndarray | None = None
    counts: np.ndarray | None = None

    @classmethod
    def of_sketch(cls, s: Sketch) -> Row:
        return cls(s.count, s.sum, s.min, s.max, None, s.keys, s.counts)

    @classmethod
    def of_value(cls, v: float, last: bool = True) -> Row:
        return cls(1.0, v, v, v, v if last else None)

    def blob(self) -> bytes | None:
        if self.keys is None or self.counts is None:
            return None
        return encode(self.keys, self.counts)

    def sketch(self) -> Sketch:
        s = Sketch()
        if self.keys is not None and self.counts is not None and self.n > 0:
            s.keys = self.keys.astype(np.int32, copy=False)
            s.counts = self.counts
            s.count, s.sum, s.min, s.max = self.n, self.sum, self.min, self.max
        return s


def merge(rows: Sequence[Row]) -> Row:
    """One row holding everything in ``rows`` (oldest first: ``last`` comes from the newest)."""
    if len(rows) == 1:
        return rows[0]
    last = None
    for r in rows:
        if r.last is not None:
            last = r.last
    ks = [r.keys for r in rows if r.keys is not None and r.keys.size]
    keys = counts = None
    if ks:
        keys, counts = aggregate(
            np.concatenate(ks).astype(np.int32, copy=False),
            np.concatenate([r.counts for r in rows if r.keys is not None and r.keys.size]),
        )
    elif any(r.keys is not None for r in rows):
        keys, counts = np.empty(0, dtype=np.int32), np.empty(0, dtype=np.float64)
    return Row(
        n=sum(r.n for r in rows),
        sum=sum(r.sum for r in rows),
        min=min(r.min for r in rows),
        max=max(r.max for r in rows),
        last=last,
        keys=keys,
        counts=counts,
    )


def rows_of(points: Sequence[Point]) -> list[tuple[int, Row]]:
    """``(t, row)`` of each point, the blobs of all of them decoded in one pass. Raises
    ``CorruptBlob`` when any cannot be decoded."""
    keys, counts, sizes = decode_rows([p[7] for p in points if p[7] is not None])
    cut = np.cumsum(sizes)[:-1]
    ks, cs = iter(np.split(keys, cut)), iter(np.split(counts, cut))
    return [
        (
            t,
            Row(n, total, lo, hi, last)
            if blob is None
            else Row(n, total, lo, hi, last, next(ks), next(cs)),
        )
        for _, t, n, total, lo, hi, last, blob in points
    ]


def roll_up(points: Sequence[Point], res: int) -> list[tuple[Any, ...]]:
    """Points of many series, sorted by series and time, merged into one point per series and
    ``res`` seconds by the rules of ``merge``: ``(series_id, res, t, n, sum, min, max, last,
    blob)`` for each, the first second of its ``res`` seconds as ``t``. All the blobs are
    decoded, merged and encoded in one pass over all the buckets. Raises ``CorruptBlob`` when
    any blob cannot be decoded."""
    if not points:
        return []
    sid_, t_, n_, total_, lo_, hi_, last_, blobs_ = zip(*points, strict=True)
    sid = np.array(sid_, dtype=np.int64)
    t = np.array(t_, dtype=np.int64)
    t -= t % res
    change = np.concatenate(([True], (sid[1:] != sid[:-1]) | (t[1:] != t[:-1])))
    starts = np.flatnonzero(change)
    group = np.cumsum(change) - 1  # of each point
    g = starts.size
    n = np.add.reduceat(np.array(n_, dtype=np.float64), starts)
    total = np.add.reduceat(np.array(total_, dtype=np.float64), starts)
    lo = np.minimum.reduceat(np.array(lo_, dtype=np.float64), starts)
    hi = np.maximum.reduceat(np.array(hi_, dtype=np.float64), starts)
    # SQLite keeps no NaN (it stores NULL), so NaN can stand for a missing ``last``
    lasts = np.array(last_, dtype=np.float64)
    newest = np.maximum.reduceat(np.where(np.isnan(lasts), -1, np.arange(lasts.size)), starts)
    last = [
        None if i < 0 else v for i, v in zip(newest.tolist(), lasts[newest].tolist(), strict=True)
    ]
    has = np.fromiter((b is not None for b in blobs_), dtype=bool, count=len(blobs_))
    blob: list[bytes | None] = [None] * g
    if has.any():
        keys, counts, sizes = decode_rows([b for b in blobs_ if b is not None])
        # (group, key) as one integer: sorting it orders the buckets by group, then key
        both = np.repeat(group[has], sizes) << 32 | (keys.astype(np.int64) + 2**31)
        uniq, inv = np.unique(both, return_inverse=True)
        summed = np.bincount(inv.reshape(-1), weights=counts, minlength=uniq.size)
        kept = summed != 0  # as ``aggregate`` keeps only non-empty buckets
        uniq, summed = uniq[kept], summed[kept]
        with_sketch = np.unique(group[has])
        per = np.bincount(uniq >> 32, minlength=g)[with_sketch]
        for i, b in zip(
            with_sketch.tolist(),
            encode_rows((uniq & 0xFFFFFFFF) - 2**31, summed, per),
            strict=True,
        ):
            blob[i] = b
    return list(
        zip(
            sid[starts].tolist(),
            [res] * g,
            t[starts].tolist(),
            n.tolist(),
            total.tolist(),
            lo.tolist(),
            hi.tolist(),
            last,
            blob,
            strict=True,
        )
    )


def merge_blobs(a: bytes | None, b: bytes | None) -> bytes | None:
    """The blob of two blobs' buckets added (the SQL function ``merge_sketch``)."""
    if a is None:
        return b
    if b is None:
        return a
    ka, ca = decode(a)
    kb, cb = decode(b)
    k, c = aggregate(np.concatenate((ka, kb)), np.concatenate((ca, cb)))
    return encode(k, c)


# --- tiers -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tier:
    res: int  # seconds per point
    keep_s: int  # how far back points at this resolution are kept


def tiers_for(resolution_s: int, retention_s: int) -> tuple[Tier, ...]:
    """The resolutions of a layer, finest first: ``TIER_FACTORS`` x its collection resolution,
    each kept for ``TIER_POINTS`` points and the last for the rest of the retention."""
    out: list[Tier] = []
    for i, f in enumerate(TIER_FACTORS):
        res = resolution_s * f
        keep = res * TIER_POINTS[i] if i < len(TIER_POINTS) else retention_s
        if keep >= retention_s or i == len(TIER_FACTORS) - 1:
            out.append(Tier(res, max(retention_s, res)))
            break
        out.append(Tier(res, keep))
    return tuple(out)


def align(t: float, res: int) -> int:
    """The first second of the ``res``-second interval that holds ``t``."""
    return int(math.floor(t / res)) * res


# --- reading ---------------------------------------------------------------------------------

_Q_NAMES = ("p50", "p90", "p95", "p99", "p999")


def point(kind: str, t: float, res: float, row: Row) -> dict[str, float | None]:
    """The statistics of one row as a plain dict, with the fields that make sense for ``kind``."""
    out: dict[str, float | None] = {"t": t, "res": res}
    if kind == "distribution":
        qs: list[float | None] = [None] * len(QUANTILES)
        if row.n > 0 and row.keys is not None:
            qs = row.sketch().quantiles(QUANTILES)
        out.update(
            count=row.n,
            sum=row.sum,
            mean=row.sum / row.n if row.n > 0 else None,
            min=_finite(row.min),
            max=_finite(row.max),
        )
        out.update(zip(_Q_NAMES, qs, strict=True))
    elif kind == "counter":
        out.update(count=row.sum, rate=row.sum / res if res > 0 else None)
    elif kind == "gauge":
        out.update(
            count=row.n,
            mean=row.sum / row.n if row.n > 0 else None,
            min=_finite(row.min),
            max=_finite(row.max),
            last=row.last,
        )
    else:  # set
        out.update(count=_finite(row.max), mean=row.sum / row.n if row.n > 0 else None)
    return out


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


MAX_DENSE_SPAN = 20_000  # wider key spans (values of both signs) take the per-window path


def sliding_quantiles(
    rows: dict[int, Row], lo: int, hi: int, window: int, qs: Sequence[float]
) -> list[tuple[int, list[float | None]]]:
    """For each second ``s`` in ``[lo, hi)`` whose ``window`` seconds ``s - window + 1 .. s``
    hold data: ``(s, quantiles)`` of those seconds merged, as ``summarise`` answers them.

    One dense (seconds x buckets) matrix and two cumulative sums answer every window at once,
    instead of a merge per window.
    """
    live: dict[int, Row] = {}
    keys: dict[int, np.ndarray] = {}  # of the rows in ``live``, which all have keys
    for t, r in rows.items():
        if r.n > 0 and r.keys is not None and r.keys.size:
            live[t] = r
            keys[t] = r.keys
    if not live or hi <= lo:
        return []
    start = lo - window + 1
    secs = sorted(t for t in live if start <= t < hi)
    if not secs:
        return []
    k_lo = min(int(keys[t][0]) for t in secs)
    k_hi = max(int(keys[t][-1]) for t in secs)
    span = k_hi - k_lo + 1
    if span > MAX_DENSE_SPAN:
        return _sliding_slow(live, lo, hi, window, qs)
    n = hi - start
    dense = np.zeros((n, span), dtype=np.float64)
    mins = np.full(n, np.inf)
    maxs = np.full(n, -np.inf)
    for t in secs:
        r = live[t]
        dense[t - start, keys[t].astype(np.int64) - k_lo] = r.counts  # keys are unique
        mins[t - start], maxs[t - start] = r.min, r.max
    cum = np.cumsum(dense, axis=0)
    sums = cum[window - 1 :].copy()
    sums[1:] -= cum[: n - window]
    np.maximum(sums, 0.0, out=sums)  # rounding of weighted counts must not go negative
    totals = sums.sum(axis=1)
    wmin = np.lib.stride_tricks.sliding_window_view(mins, window).min(axis=1)
    wmax = np.lib.stride_tricks.sliding_window_view(maxs, window).max(axis=1)
    csum = np.cumsum(sums, axis=1)
    out: list[tuple[int, list[float | None]]] = []
    has = np.flatnonzero(totals > 0)
    if has.size == 0:
        return out
    idx = np.empty((has.size, len(qs)), dtype=np.int64)
    for j, q in enumerate(qs):
        target = min(max(q, 0.0), 1.0) * totals[has]
        idx[:, j] = np.minimum((csum[has] < target[:, None]).sum(axis=1), span - 1)
    values = key_values(idx + k_lo)
    for row, i in enumerate(has.tolist()):
        lo_v, hi_v = float(wmin[i]), float(wmax[i])
        vals: list[float | None] = [
            lo_v if q <= 0 else hi_v if q >= 1 else min(max(float(v), lo_v), hi_v)
            for v, q in zip(values[row].tolist(), qs, strict=True)
        ]
        out.append((lo + i, vals))
    return out


def _sliding_slow(
    live: dict[int, Row], lo: int, hi: int, window: int, qs: Sequence[float]
) -> list[tuple[int, list[float | None]]]:
    sketches = {t: r.sketch() for t, r in live.items()}
    out = []
    for sec in range(lo, hi):
        parts = [s for u in range(sec - window + 1, sec + 1) if (s := sketches.get(u)) is not None]
        m = summarise(parts, qs) if parts else None
        if m is not None:
            out.append((sec, m.quantiles))
    return out
