"""A mergeable quantile sketch with relative error: DDSketch's log-spaced buckets, in numpy.

A positive value ``x`` goes to bucket ``i = ceil(log(x) / log(gamma))`` with
``gamma = (1 + alpha) / (1 - alpha)``; the bucket covers ``(gamma**(i-1), gamma**i]`` and is
represented by ``2 * gamma**i / (gamma + 1)``, which is within ``alpha`` (relative) of every value
in the bucket. A quantile is answered with the representative of the bucket that holds the sample
of the target rank, so the answer is within ``alpha`` = 1 % of *that sample* (not of the true
quantile of an underlying distribution, and not of the interpolated quantile numpy's default
method returns). The rank rule is the inverted CDF: the sample of rank ``ceil(q * n)``.

Negative values use the same buckets on ``|x|`` (a mirrored store) and exact zeros get a bucket
of their own. All three live in one sorted key array whose order is the value order, so a
quantile is a single ``cumsum`` + ``searchsorted``:

* positive ``x``: key ``i + BIAS`` (always > 0),
* zero: key ``0``,
* negative ``x``: key ``-(i + BIAS)`` (more negative for larger ``|x|``).

``BIAS`` is large enough that every finite double, subnormals included, gets a key of the right
sign: ``|i| <= 37_300`` over the whole float64 range, so keys fit in int32 and memory is bounded
by the number of distinct keys (at most ~150k, typically a few hundred for latencies), never by
the number of samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
LOG_GAMMA = math.log(GAMMA)
# Folding the constant factor of the representative into the exponent keeps the largest buckets
# from overflowing one step earlier than they must.
_LOG_REP_FACTOR = math.log(2.0 / (GAMMA + 1.0))
BIAS = 40_000

# Keys are int32 and counts float64 as a sketch makes them; reading takes narrower ones too.
Keys = NDArray[np.int32 | np.uint16]
Counts = NDArray[np.float64 | np.float32]


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


_NO_KEYS: Keys = _frozen(np.empty(0, dtype=np.int32))
_NO_COUNTS: Counts = _frozen(np.empty(0, dtype=np.float64))


def keys_of(values: ArrayLike) -> Keys:
    """The bucket key of every value (values must be finite); key order is value order."""
    t = np.abs(np.asarray(values, dtype=np.float64))
    with np.errstate(divide="ignore"):
        np.log(t, out=t)  # zeros become -inf and end up at key 0 below
    t /= LOG_GAMMA
    np.ceil(t, out=t)
    t += BIAS
    np.maximum(t, 0.0, out=t)
    np.copysign(t, values, out=t)
    return t.astype(np.int32)


def dense_cheaper(span: Any, n: Any) -> Any:
    """Whether keys spanning ``span`` buckets, ``n`` of them, are cheaper counted in a dense
    array than sorted (ints or arrays of them)."""
    return span <= 4 * n + 4096


def aggregate(
    keys: NDArray[np.integer], weights: NDArray[np.float64] | None = None
) -> tuple[Keys, Counts]:
    """Sum ``weights`` (1 each when None) per distinct key: sorted unique keys and their counts.

    ``bincount`` over the key span is linear and much faster than a sort, and the span of one
    series is usually a few hundred keys; a sort is used only when the keys are few but far apart.
    """
    if keys.size == 0:
        return _NO_KEYS, _NO_COUNTS
    lo = int(keys.min())
    hi = int(keys.max())
    span = hi - lo + 1
    if dense_cheaper(span, keys.size):
        c = np.bincount(keys - lo, weights=weights, minlength=span)
        nz = np.flatnonzero(c)
        return (nz + lo).astype(np.int32), c[nz].astype(np.float64, copy=False)
    u, inv = np.unique(keys, return_inverse=True)
    c = np.bincount(inv.reshape(-1), weights=weights, minlength=u.size)
    return u.astype(np.int32, copy=False), c.astype(np.float64, copy=False)


def bucketize(values: ArrayLike, weights: ArrayLike | None = None) -> tuple[Keys, Counts]:
    """A whole batch of finite values as sparse buckets: sorted unique keys and summed weights."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    w = None if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    return aggregate(keys_of(v), w)


def key_values(keys: NDArray[np.integer]) -> NDArray[np.float64]:
    """The representative value of each bucket key."""
    k = np.asarray(keys, dtype=np.float64)
    a = np.abs(k) - BIAS
    with np.errstate(over="ignore"):
        # inf for the few top buckets of the float range; callers clamp to the exact max
        r = np.exp(a * LOG_GAMMA + _LOG_REP_FACTOR)
    r = np.copysign(r, k)
    r[k == 0] = 0.0
    return r


def _rep(key: int) -> float:
    """``key_values`` for one key in plain Python: cheaper than numpy for a handful."""
    r = _REPS.get(key)
    if r is None:
        r = _REPS[key] = _rep_of(key)  # bounded: there are fewer than 2**17 keys
    return r


_REPS: dict[int, float] = {}


def _rep_of(key: int) -> float:
    if key == 0:
        return 0.0
    try:
        r = math.exp((abs(key) - BIAS) * LOG_GAMMA + _LOG_REP_FACTOR)
    except OverflowError:
        r = math.inf
    return r if key > 0 else -r


def key_reps(keys: NDArray[np.integer]) -> NDArray[np.float64]:
    """``_rep`` of every key of an array (any shape): the same floats as ``Sketch.quantiles``
    gives, read from a table of the keys seen so far (each computed once, in Python, so that
    they are bit for bit ``_rep``'s)."""
    global _TABLE_LO, _TABLE
    if not keys.size:
        return np.empty(keys.shape, dtype=np.float64)
    lo, hi = int(keys.min()), int(keys.max())
    top = _TABLE_LO + _TABLE.size - 1
    if lo < _TABLE_LO or hi > top:
        new_lo, new_hi = min(lo, _TABLE_LO), max(hi, top)
        if not _TABLE.size:
            new_lo, new_hi = lo, hi
        table = np.asarray([_rep(k) for k in range(new_lo, new_hi + 1)], dtype=np.float64)
        _TABLE_LO, _TABLE = new_lo, table
    return _TABLE[keys - _TABLE_LO]


_TABLE_LO = 0
_TABLE: NDArray[np.float64] = np.empty(0, dtype=np.float64)


_Q_ARRAYS: dict[tuple[float, ...], NDArray[np.float64]] = {}


def _ranked(cum: NDArray[np.number[Any]], qs: Sequence[float]) -> NDArray[np.intp]:
    """Index of the first bucket whose cumulative weight reaches ``q * total``: the bucket that
    holds the sample of rank ``ceil(q * n)`` (inverted CDF)."""
    key = tuple(qs)
    q = _Q_ARRAYS.get(key)
    if q is None:  # the same few quantile tuples are asked for every second
        q = np.clip(np.asarray(key, dtype=np.float64), 0.0, 1.0)
        if len(_Q_ARRAYS) < 64:
            _Q_ARRAYS[key] = q
    idx = cum.searchsorted(q * cum[-1], side="left")
    return np.minimum(idx, cum.size - 1, out=idx)


def _values(
    keys: NDArray[np.integer], qs: Sequence[float], lo: float, hi: float
) -> list[float | None]:
    return _key_values(keys.tolist(), qs, lo, hi)


def _key_values(keys: list[int], qs: Sequence[float], lo: float, hi: float) -> list[float | None]:
    # q = 0 and q = 1 are the exact min and max, which are tracked anyway
    return [
        lo if q <= 0 else hi if q >= 1 else min(max(_rep(k), lo), hi)
        for k, q in zip(keys, qs, strict=True)
    ]


@dataclass(slots=True)
class Summary:
    count: float
    sum: float
    min: float
    max: float
    quantiles: list[float | None]


def summarise(sketches: Iterable[Sketch], qs: Sequence[float]) -> Summary | None:
    """Count, sum, min, max and quantiles of the union of ``sketches``; None when all are empty.

    The same answers as ``Sketch.merged(sketches)`` but without building the merged sketch:
    the cumulative weights are taken straight off the dense ``bincount``.
    """
    live = [p for p in sketches if p.count > 0]
    if not live:
        return None
    # Built-in sum adds left to right, as a loop would; one pass each is cheaper than one loop.
    count = sum([p.count for p in live])
    total = sum([p.sum for p in live])
    lo = min([p.min for p in live])
    hi = max([p.max for p in live])
    keys: NDArray[np.integer[Any]]
    if len(live) == 1:
        keys = live[0].keys[_ranked(np.cumsum(live[0].counts), qs)]
    else:
        k = np.concatenate([p.keys for p in live])
        c = np.concatenate([p.counts for p in live])
        k0 = int(k.min())
        span = int(k.max()) - k0 + 1
        if dense_cheaper(span, k.size):
            cum = np.cumsum(np.bincount(k - k0, weights=c, minlength=span))
            keys = _ranked(cum, qs) + k0
        else:
            uk, uc = aggregate(k, c)
            keys = uk[_ranked(np.cumsum(uc), qs)]
    return Summary(count, total, lo, hi, _values(keys, qs, lo, hi))


def _finite(
    values: ArrayLike, weights: ArrayLike | None
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None, int]:
    """Values (and weights) as flat float arrays without non-finite values or weights <= 0."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    w = None if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w is not None and w.shape != v.shape:
        raise ValueError(f"{v.size} values but {w.size} weights")
    ok = np.isfinite(v)
    if w is not None:
        ok &= np.isfinite(w)
        ok &= w > 0
    if ok.all():
        return v, w, 0
    return v[ok], (None if w is None else w[ok]), int(v.size - np.count_nonzero(ok))


class Sketch:
    """Sparse buckets (sorted int32 keys, float64 weights) plus exact count, sum, min and max.

    Counts are float because sampled values carry weights (1 / sample rate).
    """

    __slots__ = ("keys", "counts", "count", "sum", "min", "max")

    def __init__(self) -> None:
        self.keys: Keys = _NO_KEYS
        self.counts: Counts = _NO_COUNTS
        self.count = 0.0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    @classmethod
    def of(cls, values: ArrayLike, weights: ArrayLike | None = None) -> Sketch:
        s = cls()
        s.add(values, weights)
        return s

    def add(self, values: ArrayLike, weights: ArrayLike | None = None) -> int:
        """Add a batch; returns how many values were ignored (NaN, infinite, weight <= 0)."""
        v, w, ignored = _finite(values, weights)
        n = v.size
        if n == 0:
            return ignored
        k = keys_of(v)
        if self.keys.size == 0:
            self.keys, self.counts = aggregate(k, w)
        else:
            # One bincount over old buckets + new keys instead of bucketizing and then merging.
            ww = np.ones(n, dtype=np.float64) if w is None else w
            self.keys, self.counts = aggregate(
                np.concatenate((self.keys, k)), np.concatenate((self.counts, ww))
            )
        if w is None:
            self.count += n
            self.sum += float(v.sum())
        else:
            self.count += float(w.sum())
            self.sum += float(v @ w)
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))
        return ignored

    def merge(self, *others: Sketch) -> None:
        """Add the contents of other sketches to this one."""
        parts = [self, *(o for o in others if o.count > 0)]
        if len(parts) == 1:
            return
        m = Sketch.merged(parts)
        self.keys, self.counts = m.keys, m.counts
        self.count, self.sum, self.min, self.max = m.count, m.sum, m.min, m.max

    @classmethod
    def merged(cls, sketches: Iterable[Sketch]) -> Sketch:
        """A new sketch holding everything in ``sketches``: one concatenate + one bincount."""
        parts = [s for s in sketches if s.count > 0]
        m = cls()
        if not parts:
            return m
        if len(parts) == 1:
            # buckets are never modified in place (add() replaces the arrays), so sharing is safe
            p = parts[0]
            m.keys, m.counts = p.keys, p.counts
        else:
            m.keys, m.counts = aggregate(
                np.concatenate([p.keys for p in parts]),
                np.concatenate([p.counts for p in parts]),
            )
        m.count = sum(p.count for p in parts)
        m.sum = sum(p.sum for p in parts)
        m.min = min(p.min for p in parts)
        m.max = max(p.max for p in parts)
        return m

    def copy(self) -> Sketch:
        return Sketch.merged([self])

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """Values at quantiles ``qs`` (each in [0, 1]); all None when the sketch is empty.

        Each answer is within ``ALPHA`` of the sample of rank ``ceil(q * count)``, clamped to
        the exact min and max (clamping only moves the answer towards that sample); q = 0 and
        q = 1 give the exact min and max.
        """
        if self.count <= 0 or self.keys.size == 0:
            return [None] * len(qs)
        idx = _ranked(np.cumsum(self.counts), qs)
        return _values(self.keys[idx], qs, self.min, self.max)

    def quantile(self, q: float) -> float | None:
        return self.quantiles((q,))[0]

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None

    @property
    def zero_count(self) -> float:
        i = np.searchsorted(self.keys, 0)
        return float(self.counts[i]) if i < self.keys.size and self.keys[i] == 0 else 0.0

    @property
    def num_buckets(self) -> int:
        return int(self.keys.size)

    @property
    def nbytes(self) -> int:
        """Bytes held by the bucket arrays."""
        return int(self.keys.nbytes + self.counts.nbytes)

    def __repr__(self) -> str:
        return (
            f"Sketch(count={self.count:g}, buckets={self.keys.size}, "
            f"min={self.min:g}, max={self.max:g})"
        )
