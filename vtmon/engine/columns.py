"""Every distribution series in columns: one set of numpy arrays shared by all of them, so
that a second's work is a few numpy passes over what arrived and what left the windows, not
a Python loop over the series.

Rows
    Each distribution series is a row number; a forgotten series' row is reused. Per-row state
    lives in arrays indexed by row (``cap`` long, grown by doubling).

What a second keeps
    Samples are buffered as plain lists (or the arrays of binary frames) and turned into
    *chunks* when the store is read: a chunk holds the samples of one second for every row
    that got some, as sorted sparse buckets (``idx = row << KEY_BITS | bucket key + KEY_OFF``,
    summed weights) plus, per row, the count (sum of weights), sum, exact min and max. A second
    keeps its chunks (merged into one once it is over) for ``RING_S`` seconds.

Windows
    Each window keeps a running sum of the buckets of the seconds it covers, as one sorted
    sparse array for all rows: the chunks of a second that enters are added, those of a second
    that leaves are subtracted, a late chunk is added when its second is inside. Entries that
    fall to zero stay until they are a quarter of the array (they change no quantile), then the
    array is compacted. The quantiles of the rows whose buckets changed come out of one
    cumulative sum over just their buckets and one ``searchsorted`` per window (the others
    keep theirs), so they are the quantiles of the window's exact buckets, within 1 % of the
    sample of that rank, as ``Sketch.quantiles`` answers them.

    Count, sum, min and max are exact, never a running difference: per 10-second block they
    are kept in dense arrays (``NB`` blocks, one column per row); a window takes the run of
    whole blocks inside it (cached until a block changes or the run moves) and adds the loose
    seconds at both ends from their chunks.

Chart points
    ``record_history`` writes every row's 10 s p50/p95/p99 into a ring of ``history_len``
    ticks (plus ``SPARE_TICKS`` so that a Snapshot's lazy view, ``ChartPoints``, stays readable
    for that many ticks after it was taken), in single precision (a chart needs no more): rows
    cost 12 bytes a tick, not an object a point.

Not thread-safe: ``SeriesStore`` calls it under its lock.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from itertools import repeat
from typing import Any, cast, overload

import numpy as np
from numpy.typing import NDArray

from vtmon.model import QUANTILES, RING_S, WINDOWS, HistoryPoint, SeriesKey
from vtmon.model.table import FIELDS, ListLike
from vtmon.sketch import Sketch, dense_cheaper, key_reps, keys_of

KEY_BITS = 18
KEY_OFF = 1 << 17  # bucket keys lie within +-77_300 (sketch.BIAS and the float range)
KEY_MASK = (1 << KEY_BITS) - 1
BLOCK_S = 10
NB = RING_S // BLOCK_S + 3  # blocks kept: every block a window can touch, and spares
FLUSH_AT = 1 << 16  # buffered values before a flush even when nobody reads (bounds memory)
SPARE_TICKS = 64  # ticks a Snapshot's chart view stays readable after it was taken
_Q = np.asarray(QUANTILES)
_ZERO_FLOOR = 1e-9  # a running count below this after a subtraction is zero (rounding)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


def _wsum(groups: NDArray[np.intp] | I64, weights: F64, minlength: int = 0) -> F64:
    """The weights summed per group number (``bincount``, typed as the float it returns)."""
    return cast(F64, np.bincount(groups, weights=weights, minlength=minlength))


def _run_starts(a: np.ndarray) -> NDArray[np.intp]:
    """Where each run of equal values of a (sorted, non-empty) array begins."""
    new = np.empty(a.size, dtype=bool)
    new[0] = True
    np.not_equal(a[1:], a[:-1], out=new[1:])
    return np.flatnonzero(new)


def _ones_or(weights: F64 | None, n: int) -> F64:
    return np.ones(n) if weights is None else weights


class Chunk:
    """The samples of one second for the rows that got some (see the module docstring)."""

    __slots__ = ("idx", "cnt", "rows", "n", "sum", "min", "max")

    def __init__(self, idx: I64, cnt: F64, rows: I64, n: F64, s: F64, lo: F64, hi: F64) -> None:
        self.idx, self.cnt = idx, cnt
        self.rows, self.n, self.sum, self.min, self.max = rows, n, s, lo, hi

    @classmethod
    def of(cls, rows: I64, values: F64, weights: F64 | None) -> Chunk:
        """A chunk of finite values with positive weights (None: 1 each). A few busy rows
        (a flood into a handful of series) are counted in one dense ``bincount`` over their
        rows and key span, as ``sketch.aggregate`` does for one series; many rows with a few
        values each are sorted."""
        keys = keys_of(values).astype(np.int64)
        mark = np.zeros(int(rows.max()) + 1, dtype=bool)
        mark[rows] = True
        uniq = np.flatnonzero(mark)
        k0 = int(keys.min())
        span = int(keys.max()) - k0 + 1
        if not dense_cheaper(uniq.size * span, values.size):
            return cls._sorted(rows, keys, values, weights)
        local = (np.cumsum(mark) - 1)[rows]
        r = uniq.size
        dense = _wsum(local * span + (keys - k0), _ones_or(weights, values.size), r * span)
        nz = np.flatnonzero(dense)
        idx = (uniq[nz // span] << KEY_BITS) | (nz % span + k0 + KEY_OFF)
        w = _ones_or(weights, values.size)
        lo = np.full(r, np.inf)
        hi = np.full(r, -np.inf)
        np.minimum.at(lo, local, values)
        np.maximum.at(hi, local, values)
        total = _wsum(local, values if weights is None else values * weights, r)
        return cls(idx, dense[nz], uniq, _wsum(local, w, r), total, lo, hi)

    @classmethod
    def _sorted(cls, rows: I64, keys: I64, values: F64, weights: F64 | None) -> Chunk:
        idx = (rows << KEY_BITS) | (keys + KEY_OFF)
        order = np.argsort(idx, kind="stable")
        idx, rows, values = idx[order], rows[order], values[order]
        w = None if weights is None else weights[order]
        starts = _run_starts(idx)
        cnt: F64 = (
            np.diff(np.append(starts, idx.size)).astype(np.float64)
            if w is None
            else np.add.reduceat(w, starts)
        )
        rs = _run_starts(rows)
        n: F64
        if w is None:
            n = np.diff(np.append(rs, rows.size)).astype(np.float64)
            total = np.add.reduceat(values, rs)
        else:
            n = np.add.reduceat(w, rs)
            total = np.add.reduceat(values * w, rs)
        return cls(
            idx[starts],
            cnt,
            rows[rs],
            n,
            total,
            np.minimum.reduceat(values, rs),
            np.maximum.reduceat(values, rs),
        )

    @classmethod
    def merged(cls, chunks: Sequence[Chunk]) -> Chunk:
        if len(chunks) == 1:
            return chunks[0]
        idx, inv = np.unique(np.concatenate([c.idx for c in chunks]), return_inverse=True)
        cnt = _wsum(inv, np.concatenate([c.cnt for c in chunks]))
        rows: I64
        rows, rinv = np.unique(np.concatenate([c.rows for c in chunks]), return_inverse=True)
        n = _wsum(rinv, np.concatenate([c.n for c in chunks]))
        total = _wsum(rinv, np.concatenate([c.sum for c in chunks]))
        lo = np.full(rows.size, np.inf)
        hi = np.full(rows.size, -np.inf)
        np.minimum.at(lo, rinv, np.concatenate([c.min for c in chunks]))
        np.maximum.at(hi, rinv, np.concatenate([c.max for c in chunks]))
        return cls(idx, cnt, rows, n, total, lo, hi)

    def sketches(self) -> Iterator[tuple[int, Sketch]]:
        """``(row, Sketch)`` for every row of the chunk (the sketch's arrays are views)."""
        keys = ((self.idx & KEY_MASK) - KEY_OFF).astype(np.int32)
        owner = self.idx >> KEY_BITS
        ends = np.searchsorted(owner, self.rows, side="right").tolist()
        start = 0
        cnt = self.cnt
        for row, end, n, s, lo, hi in zip(
            self.rows.tolist(),
            ends,
            self.n.tolist(),
            self.sum.tolist(),
            self.min.tolist(),
            self.max.tolist(),
            strict=True,
        ):
            sk = Sketch.__new__(Sketch)
            sk.keys, sk.counts = keys[start:end], cnt[start:end]
            sk.count, sk.sum, sk.min, sk.max = n, s, lo, hi
            start = end
            yield row, sk


class _Window:
    """The running bucket sums of one window over seconds ``(at - width, at]``."""

    __slots__ = ("width", "at", "idx", "cnt", "zeros", "todo", "dirty", "q")

    def __init__(self, width: int) -> None:
        self.width = width
        self.at: int | None = None
        self.idx: I64 = np.empty(0, dtype=np.int64)
        self.cnt: F64 = np.empty(0, dtype=np.float64)
        self.zeros = 0
        self.todo: list[tuple[Chunk, float]] = []  # (chunk, +1 or -1) not applied yet
        # rows whose buckets changed since the quantiles were last taken (None: all of them)
        self.dirty: list[I64] | None = None
        self.q: F64 | None = None  # the quantiles last taken, per row (NaN: none)

    def covers(self, sec: int) -> bool:
        return self.at is not None and self.at - self.width < sec <= self.at

    def apply(self) -> None:
        todo, self.todo = self.todo, []
        if not todo:
            return
        if self.dirty is not None:
            self.dirty.extend(c.rows for c, _ in todo)
        if len(todo) == 1:
            c, sign = todo[0]
            uidx, ucnt = c.idx, c.cnt if sign > 0 else -c.cnt
        else:
            uidx, inv = np.unique(np.concatenate([c.idx for c, _ in todo]), return_inverse=True)
            ucnt = _wsum(inv, np.concatenate([c.cnt if s > 0 else -c.cnt for c, s in todo]))
        idx, cnt = self.idx, self.cnt
        pos = np.searchsorted(idx, uidx)
        hit = pos < idx.size
        hit[hit] = idx[pos[hit]] == uidx[hit]
        if hit.any():
            at = pos[hit]
            got = cnt[at] + ucnt[hit]
            small = got < _ZERO_FLOOR
            if small.any():
                got[small] = 0.0
                self.zeros += int(np.count_nonzero(small & (cnt[at] > 0)))
            cnt[at] = got
        miss = ~hit
        if miss.any():
            add = ucnt[miss]
            keep = add >= _ZERO_FLOOR  # a subtraction always finds its entry
            where = pos[miss][keep]
            self.idx = np.insert(idx, where, uidx[miss][keep])
            self.cnt = cnt = np.insert(cnt, where, add[keep])
        if self.zeros > 1024 and self.zeros * 4 > self.cnt.size:
            live = self.cnt > 0
            self.idx, self.cnt = self.idx[live], self.cnt[live]
            self.zeros = 0

    def reset(self) -> None:
        self.idx = np.empty(0, dtype=np.int64)
        self.cnt = np.empty(0, dtype=np.float64)
        self.zeros = 0
        self.todo = []
        self.dirty = None

    def take_dirty(self) -> I64 | None:
        """The rows changed since the last call (sorted), None when all may have."""
        dirty, self.dirty = self.dirty, []
        if dirty is None:
            return None
        if not dirty:
            return np.empty(0, dtype=np.int64)
        return np.unique(np.concatenate(dirty))

    def quantiles_of(self, rows: I64) -> tuple[I64, NDArray[np.int64]]:
        """The rows among ``rows`` (sorted) with weight in the window, and the bucket key of
        each of ``QUANTILES`` for each: the buckets of just those rows are gathered and
        summed, so the cost follows the rows asked for (those that changed)."""
        idx = self.idx
        if not rows.size or not idx.size:
            return np.empty(0, dtype=np.int64), np.empty((0, _Q.size), dtype=np.int64)
        first = np.searchsorted(idx, rows << KEY_BITS)
        n = np.searchsorted(idx, (rows + 1) << KEY_BITS) - first
        has = n > 0
        rows, first, n = rows[has], first[has], n[has]
        if not rows.size:
            return rows, np.empty((0, _Q.size), dtype=np.int64)
        start = np.cumsum(n) - n  # each row's stretch in the gathered arrays
        sel = np.repeat(first - start, n) + np.arange(int(n.sum()))
        cum = np.cumsum(self.cnt[sel])
        ends = start + n - 1
        before = np.zeros(rows.size)
        before[1:] = cum[start[1:] - 1]
        total = cum[ends] - before
        live = total > 0
        ends, before, total = ends[live], before[live], total[live]
        targets = before[:, None] + _Q[None, :] * total[:, None]
        pos = cum.searchsorted(targets.ravel(), side="left").reshape(targets.shape)
        np.minimum(pos, ends[:, None], out=pos)
        return rows[live], (idx[sel[pos]] & KEY_MASK) - KEY_OFF

    def rows_present(self) -> I64:
        """Every row with an entry in the window (sorted)."""
        owner = self.idx >> KEY_BITS
        return owner[_run_starts(owner)] if owner.size else owner


class WindowColumns:
    """One window's statistics for every row (NaN / 0 where a row has nothing). ``q`` is the
    window's own array, updated in place by the next ``refresh``: copy what is kept."""

    __slots__ = ("n", "sum", "min", "max", "q")

    def __init__(self, n: F64, total: F64, lo: F64, hi: F64, q: F64) -> None:
        self.n, self.sum, self.min, self.max, self.q = n, total, lo, hi, q


class ChartPoints(ListLike[HistoryPoint]):
    """A row's chart points as a Snapshot saw them: a lazy view of the columns' ring, plus
    the points from before a restart in front (``seed``)."""

    __slots__ = ("_cols", "_row", "_lo", "_hi", "_seed", "_pts")

    def __init__(
        self, cols: DistColumns, row: int, lo: int, hi: int, seed: tuple[HistoryPoint, ...]
    ) -> None:
        self._cols, self._row, self._lo, self._hi, self._seed = cols, row, lo, hi, seed
        self._pts: list[HistoryPoint] | None = None

    def _points(self) -> list[HistoryPoint]:
        if self._pts is None:
            self._pts = self._read()
        return self._pts

    def arrays(self) -> tuple[F64, F64, F64, F64]:
        """``t``, ``p50``, ``p95``, ``p99`` of every point (NaN for None), seed first."""
        c = self._cols
        lo = max(self._lo, c._tick - c._ring + 1)  # ticks overwritten since are gone
        ticks = np.arange(lo, self._hi + 1) % c._ring
        t = c._chart_t[ticks]
        vals = c._chart[:, ticks, self._row].astype(np.float64)
        if self._seed:
            seed = np.array(
                [[p.t, *(np.nan if v is None else v for v in (p.p50, p.p95, p.p99))]
                 for p in self._seed],
                dtype=np.float64,
            )  # fmt: skip
            t = np.concatenate((seed[:, 0], t))
            vals = np.concatenate((seed[:, 1:].T, vals), axis=1)
        return t, vals[0], vals[1], vals[2]

    def _read(self) -> list[HistoryPoint]:
        t, *qs = (a.tolist() for a in self.arrays())
        return [
            HistoryPoint(
                t=ti,
                p50=None if a != a else a,
                p95=None if b != b else b,
                p99=None if d != d else d,
            )
            for ti, a, b, d in zip(t, *qs, strict=True)
        ]

    def __len__(self) -> int:
        return len(self._seed) + max(0, self._hi - self._lo + 1)

    @overload
    def __getitem__(self, i: int) -> HistoryPoint: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[HistoryPoint]: ...
    def __getitem__(self, i: int | slice) -> HistoryPoint | Sequence[HistoryPoint]:
        return self._points()[i]

    def __iter__(self) -> Iterator[HistoryPoint]:
        return iter(self._points())

    def __repr__(self) -> str:
        return f"ChartPoints({len(self)} points)"


class DistColumns:
    """All distribution series (see the module docstring). ``SeriesStore`` owns the keys'
    lifecycle (cap, forgetting) and calls in under its lock."""

    def __init__(self, history_len: int = 300) -> None:
        self.rows: dict[SeriesKey, int] = {}
        self.key_of: list[SeriesKey | None] = []
        self._free: list[int] = []
        self.cap = 0
        self.last_seen: I64 = np.empty(0, dtype=np.int64)
        # pending samples by second: rows, values, weights (None until a weight comes)
        # per second: the rows and lengths of the runs of values, the values, their weights
        self._pend: dict[int, tuple[list[int], list[int], list[float], list[float] | None]] = {}
        self._pend_arrays: list[tuple[int, int, F64, F64 | None]] = []
        self._pending = 0
        self.secs: dict[int, list[Chunk]] = {}
        self._newest = -(2**62)  # the newest second seen by prune
        self._windows = [(name, _Window(w)) for name, w in WINDOWS]
        # blocks: count, sum, min, max per (ring slot, row); which block each slot holds
        self._bn: F64 = np.zeros((NB, 0))
        self._bs: F64 = np.zeros((NB, 0))
        self._bmin: F64 = np.zeros((NB, 0))
        self._bmax: F64 = np.zeros((NB, 0))
        self._bid = np.full(NB, -(2**62), dtype=np.int64)
        self._bstamp = np.zeros(NB, dtype=np.int64)
        self._stamp = 0
        self._runs: dict[int, tuple[int, int, int, tuple[F64, F64, F64, F64]]] = {}
        self.version = 0
        self._computed: tuple[int, int] | None = None
        self.result: dict[str, WindowColumns] = {}
        # chart ring
        self.history_len = history_len
        self._ring = history_len + SPARE_TICKS
        self._tick = -1  # the newest tick written
        self._chart_t: F64 = np.zeros(self._ring)
        # single precision: a chart needs no more, and at 100,000 series this is the largest
        # array of all
        self._chart: NDArray[np.float32] = np.full((3, self._ring, 0), np.nan, dtype=np.float32)
        self._born: I64 = np.empty(0, dtype=np.int64)
        self._seed: dict[int, tuple[HistoryPoint, ...]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def tick(self) -> int:
        """The newest chart tick written (``record_history``)."""
        return self._tick

    def nbytes(self) -> tuple[int, int]:
        """Bytes of the arrays held (seconds, windows, blocks, chart ring) and the number of
        (row, bucket) entries in the seconds kept."""
        secs = [c for chunks in self.secs.values() for c in chunks]
        held = sum(a.nbytes for c in secs for a in (c.idx, c.cnt, c.rows, c.n, c.sum, c.min, c.max))
        held += sum(w.idx.nbytes + w.cnt.nbytes for _, w in self._windows)
        held += sum(a.nbytes for a in (self._bn, self._bs, self._bmin, self._bmax, self._chart))
        return held, sum(c.idx.size for c in secs)

    # --- rows --------------------------------------------------------------------------------

    def add_row(self, key: SeriesKey, now_s: int) -> int:
        """A row for ``key``, which has none (``SeriesStore`` checks the cap first)."""
        if self._free:
            r = self._free.pop()
            self.key_of[r] = key
        else:
            r = len(self.key_of)
            self.key_of.append(key)
            if r >= self.cap:
                self._grow(max(64, 2 * self.cap))
        self.rows[key] = r
        self._born[r] = self._tick + 1
        self._seed.pop(r, None)
        self.last_seen[r] = now_s
        return r

    def _grow(self, cap: int) -> None:
        old = self.cap

        def wider(a: np.ndarray, fill: float) -> np.ndarray:
            shape = (*a.shape[:-1], cap)
            b = np.full(shape, fill, dtype=a.dtype)
            b[..., :old] = a
            return b

        self.last_seen = wider(self.last_seen, 0)
        self._born = wider(self._born, 0)
        self._bn = wider(self._bn, 0.0)
        self._bs = wider(self._bs, 0.0)
        self._bmin = wider(self._bmin, np.inf)
        self._bmax = wider(self._bmax, -np.inf)
        self._chart = wider(self._chart, np.nan)
        self._runs.clear()
        self._computed = None
        self.cap = cap

    def forget(self, idle_upto: int) -> list[SeriesKey]:
        """Drop rows last seen at or before ``idle_upto``; returns their keys. Their data has
        left every window by then (``FORGET_AFTER_S`` > ``RING_S``)."""
        n = len(self.key_of)
        if not n:
            return []
        idle = np.flatnonzero(self.last_seen[:n] <= idle_upto).tolist()
        gone = []
        for r in idle:
            key = self.key_of[r]
            if key is None:
                continue
            gone.append(key)
            del self.rows[key]
            self.key_of[r] = None
            self._free.append(r)
            self._seed.pop(r, None)
            self._chart[:, :, r] = np.nan
        return gone

    # --- writing -----------------------------------------------------------------------------

    def add(self, row: int, sec: int, values: Any, weights: list[float] | None) -> None:
        """Buffer values (lists from lines, or finite arrays from binary frames) for ``sec``;
        non-finite values and weights that are not positive are skipped at the flush (the
        caller counts them)."""
        n = len(values)
        if isinstance(values, np.ndarray):
            w = None if weights is None else np.asarray(weights, dtype=np.float64)
            self._pend_arrays.append((row, sec, values.astype(np.float64, copy=False), w))
        else:
            p = self._pend.get(sec)
            if p is None:
                p = self._pend[sec] = ([], [], [], None)
            rows, lens, vals, wts = p
            if weights is not None:
                if wts is None:
                    wts = [1.0] * len(vals)
                    self._pend[sec] = (rows, lens, vals, wts)
                wts.extend(weights)
            elif wts is not None:
                wts.extend(repeat(1.0, n))
            rows.append(row)
            lens.append(n)
            vals.extend(values)
        self._pending += n
        self.version += 1
        if self._pending >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Turn buffered samples into chunks of their seconds."""
        if not self._pending:
            return
        pend, self._pend = self._pend, {}
        arrays, self._pend_arrays = self._pend_arrays, []
        self._pending = 0
        by_sec: dict[int, list[tuple[I64, F64, F64 | None]]] = {}
        for sec, (rows, lens, vals, wts) in pend.items():
            by_sec.setdefault(sec, []).append(
                (
                    np.repeat(np.asarray(rows, dtype=np.int64), lens),
                    np.asarray(vals, dtype=np.float64),
                    None if wts is None else np.asarray(wts, dtype=np.float64),
                )
            )
        for row, sec, v, w in arrays:
            by_sec.setdefault(sec, []).append((np.full(v.size, row, dtype=np.int64), v, w))
        for sec, parts in by_sec.items():
            if len(parts) == 1:
                r, v, w = parts[0]
            else:
                r = np.concatenate([p[0] for p in parts])
                v = np.concatenate([p[1] for p in parts])
                w = (
                    None
                    if all(p[2] is None for p in parts)
                    else np.concatenate(
                        [np.ones(p[1].size) if p[2] is None else p[2] for p in parts]
                    )
                )
            ok = np.isfinite(v)
            if w is not None:
                ok &= np.isfinite(w) & (w > 0)
            if not ok.all():
                r, v = r[ok], v[ok]
                w = None if w is None else w[ok]
            if v.size:
                self._store(sec, Chunk.of(r, v, w))

    def _store(self, sec: int, c: Chunk) -> None:
        self.secs.setdefault(sec, []).append(c)
        b = sec // BLOCK_S
        slot = b % NB
        if self._bid[slot] != b:
            if self._bid[slot] > b:
                return  # older than every window (ingest keeps such samples out)
            self._bid[slot] = b
            self._bn[slot] = 0.0
            self._bs[slot] = 0.0
            self._bmin[slot] = np.inf
            self._bmax[slot] = -np.inf
        rows = c.rows
        self._bn[slot, rows] += c.n
        self._bs[slot, rows] += c.sum
        self._bmin[slot, rows] = np.minimum(self._bmin[slot, rows], c.min)
        self._bmax[slot, rows] = np.maximum(self._bmax[slot, rows], c.max)
        self._stamp += 1
        self._bstamp[slot] = self._stamp
        for _, w in self._windows:
            if w.covers(sec):
                w.todo.append((c, 1.0))

    # --- reading -----------------------------------------------------------------------------

    def _chunks(self, sec: int) -> list[Chunk]:
        return self.secs.get(sec) or []

    def _advance(self, now_s: int) -> None:
        for _, w in self._windows:
            at, width = w.at, w.width
            if at == now_s:
                continue
            if at is None or now_s < at or now_s - at >= width:
                w.reset()
                w.todo = [
                    (c, 1.0) for s in range(now_s - width + 1, now_s + 1) for c in self._chunks(s)
                ]
            else:
                for s in range(at - width + 1, now_s - width + 1):
                    w.todo.extend((c, -1.0) for c in self._chunks(s))
                for s in range(at + 1, now_s + 1):
                    w.todo.extend((c, 1.0) for c in self._chunks(s))
            w.at = now_s

    def catch_up(self, now_s: int) -> None:
        """Bring the buffers and windows to second ``now_s`` and drop the seconds that have
        left every window, without computing statistics."""
        self.flush()
        self._advance(now_s)
        for _, w in self._windows:
            w.apply()
        self._prune(now_s)

    def _prune(self, now_s: int) -> None:
        """Merge the chunks of seconds that are over; drop seconds outside every window (all
        windows have subtracted them by then: ``catch_up`` advances them first)."""
        if now_s <= self._newest:
            return
        for sec in range(max(self._newest - 1, now_s - RING_S), now_s - 1):
            ch = self.secs.get(sec)
            if ch is not None and len(ch) > 1:
                self.secs[sec] = [Chunk.merged(ch)]
        cutoff = now_s - RING_S
        if self._newest < cutoff - RING_S:  # a jump: look at every second kept
            old = [s for s in self.secs if s <= cutoff]
        else:
            old = [s for s in range(self._newest - RING_S, cutoff + 1) if s in self.secs]
        for sec in old:
            del self.secs[sec]
        self._newest = now_s

    def refresh(self, now_s: int) -> dict[str, WindowColumns]:
        """Every row's windows at second ``now_s`` (cached per second and version)."""
        at = (now_s, self.version)
        if self._computed == at:
            return self.result
        self.catch_up(now_s)
        out = {}
        for name, w in self._windows:
            n, total, lo, hi = self._exact(now_s, w.width)
            # the quantiles of rows whose buckets did not change stay as they were
            dirty = w.take_dirty()
            q = w.q
            if dirty is None or q is None or q.shape[1] != self.cap:
                q = w.q = np.full((_Q.size, self.cap), np.nan)
                rows, keys = w.quantiles_of(w.rows_present())
            else:
                q[:, dirty] = np.nan
                rows, keys = w.quantiles_of(dirty)
            if rows.size:
                vals = key_reps(keys)
                rlo, rhi = lo[rows], hi[rows]
                np.minimum(np.maximum(vals, rlo[:, None]), rhi[:, None], out=vals)
                q[:, rows] = vals.T
            out[name] = WindowColumns(n, total, lo, hi, q)
        self.result = out
        self._computed = at
        return out

    def _exact(self, now_s: int, width: int) -> tuple[F64, F64, F64, F64]:
        """Count, sum, min and max of every row over seconds ``now_s - width + 1 .. now_s``."""
        lo_s = now_s - width + 1
        first_b = -(-lo_s // BLOCK_S)
        last_b = (now_s - BLOCK_S + 1) // BLOCK_S  # the last block that ends by now_s
        cap = self.cap
        if first_b > last_b:
            n, s = np.zeros(cap), np.zeros(cap)
            lo, hi = np.full(cap, np.inf), np.full(cap, -np.inf)
            loose = list(range(lo_s, now_s + 1))
        else:
            # a slot still holding an older block (nothing came in block b) counts as empty
            slots = [b % NB for b in range(first_b, last_b + 1) if self._bid[b % NB] == b]
            stamp = int(self._bstamp[slots].max()) if slots else -1
            run = self._runs.get(width)
            if slots and (run is None or run[:3] != (first_b, last_b, stamp)):
                run = (
                    first_b,
                    last_b,
                    stamp,
                    (
                        self._bn[slots].sum(axis=0),
                        self._bs[slots].sum(axis=0),
                        self._bmin[slots].min(axis=0),
                        self._bmax[slots].max(axis=0),
                    ),
                )
                self._runs[width] = run
            if run is not None and slots:
                n, s, lo, hi = (a.copy() for a in run[3])
            else:
                n, s = np.zeros(cap), np.zeros(cap)
                lo, hi = np.full(cap, np.inf), np.full(cap, -np.inf)
            loose = [*range(lo_s, first_b * BLOCK_S), *range((last_b + 1) * BLOCK_S, now_s + 1)]
        chunks = [c for sec in loose for c in self._chunks(sec)]
        if chunks:
            rows = np.concatenate([c.rows for c in chunks])
            n += _wsum(rows, np.concatenate([c.n for c in chunks]), cap)
            s += _wsum(rows, np.concatenate([c.sum for c in chunks]), cap)
            np.minimum.at(lo, rows, np.concatenate([c.min for c in chunks]))
            np.maximum.at(hi, rows, np.concatenate([c.max for c in chunks]))
        return n, s, lo, hi

    def table_values(self, rows: NDArray[np.intp], result: dict[str, WindowColumns]) -> F64:
        """The windows of ``rows`` as ``SeriesTable`` values: ``[window, field, i]`` (fields
        in ``model.table.FIELDS`` order, NaN where a ``WindowStats`` field is None)."""
        out = np.empty((len(WINDOWS), len(FIELDS), rows.size))
        for wi, (name, width) in enumerate(WINDOWS):
            wc, col = result[name], out[wi]
            n = col[0] = wc.n[rows]
            col[1] = n / width
            col[2:7] = wc.q[:, rows]
            with np.errstate(invalid="ignore", divide="ignore"):
                col[7] = wc.sum[rows] / n
            col[8] = wc.min[rows]
            col[9] = wc.max[rows]
            empty = n <= 0
            if empty.any():
                col[2:, empty] = np.nan
        return out

    # --- chart points ------------------------------------------------------------------------

    def record_history(self, now: float, now_s: int) -> None:
        """One chart point (10 s p50/p95/p99 at ``now``) for every row."""
        res = self.refresh(now_s)
        q = res[WINDOWS[0][0]].q
        self._tick += 1
        slot = self._tick % self._ring
        self._chart_t[slot] = now
        # p50, p95, p99; beyond single precision's range a point stays at its largest value
        big = float(np.finfo(np.float32).max)
        self._chart[:, slot] = np.clip(q[[0, 2, 3]], -big, big)

    def chart(self, row: int, hi: int | None = None) -> ChartPoints:
        """The row's chart points up to tick ``hi`` (the newest when None; at most
        ``history_len``)."""
        hi = self._tick if hi is None else hi
        lo = max(int(self._born[row]), hi - self.history_len + 1)
        live = max(0, hi - lo + 1)
        seed = self._seed.get(row, ())
        room = self.history_len - live
        return ChartPoints(self, row, lo, hi, seed[len(seed) - room :] if room > 0 else ())

    def seed(self, row: int, points: list[HistoryPoint]) -> None:
        """Chart points from before a restart, oldest first, in front of those it has."""
        current = self._seed.get(row, ())
        if current:
            first = current[0].t
        else:
            lo = max(int(self._born[row]), self._tick - self.history_len + 1)
            first = float(self._chart_t[lo % self._ring]) if lo <= self._tick else math.inf
        older = tuple(p for p in points if p.t < first)
        self._seed[row] = (*older, *current)[-self.history_len :]
