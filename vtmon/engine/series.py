"""The series registry: every metric the application sends, kept in one-second slots and
summarised over the sliding windows of ``model.WINDOWS``.

Time model
    ``now`` is wall-clock seconds; second ``S = floor(now)`` is the *current* slot. The window of
    ``W`` seconds at ``now`` is the slots ``S - W + 1 .. S``: ``W - 1`` complete seconds plus the
    second in progress. ``rate`` is ``count / W`` -- the full window length, a deliberate choice:
    dividing by the elapsed part instead would make the rate jump at every second boundary and
    overstate it right after vtmon starts. A new stream therefore ramps up to its true rate over
    one window.

What a window holds, per kind
    distribution: count (sum of weights), rate, p50..p999 (within 1 % of the sample of that
    rank, see ``sketch``), mean, exact min and max. counter: count = sum of increments, rate.
    gauge: count = number of updates, rate, min and max of the values it was set to in the
    window (None when it was not updated), and ``last`` = the current value, which outlives
    the windows. set: count = unique members, rate, ``last`` = unique members in 1 m.

Memory
    Each series keeps at most ~300 slots (older ones are pruned as new seconds open) plus cached
    merges of complete, aligned 10-second blocks. A distribution slot is a sketch whose size
    depends on its number of buckets, never on its number of samples; once a second is
    ``PACK_AFTER_S`` old it is kept as one bytes object, its buckets in half the bytes
    (``Sketch.pack``: 6 bytes a bucket instead of 12, where that is exact, and 40 bytes for the
    rest instead of a sketch, two arrays and four floats), which is most of five minutes.
    Set slots keep at most ``SET_SLOT_CAP`` members (64-bit hashes once the second is over). A
    series that has received nothing for ``FORGET_AFTER_S`` is forgotten (checked every
    ``SWEEP_EVERY_S``).

Speed
    ``apply`` buffers a distribution's values for the current second as plain lists and
    bucketizes them with one vectorised numpy pass when the series is read, its second ends or
    ``FLUSH_AT`` values have piled up -- so a batch with a few values for many series does not
    pay numpy's fixed cost per series. ``stats`` merges, per series and window, at most ~20
    items: the run of the window's complete 10-second blocks (each block merged once; the run
    merged once per 10 s; both invalidated when a late sample lands in them) and the loose
    seconds at both ends. Once a second, every distribution's windows are brought up to date
    together (``SeriesStore._refresh``): the seconds that buffered a few plain values become
    sketches after one numpy pass over all their values, and the quantiles of every series'
    windows come out of one ``summarise_many``, so numpy's fixed cost is paid once, not per
    series. Results are cached per (second, series version), so ``record_history``,
    ``errors`` and a repeated ``stats`` in the same second cost nothing extra.

History export
    ``closed_seconds(upto_s)`` hands the history store every slot of a second before
    ``upto_s`` once (copies, so the store's writer thread never sees a slot change). A timed
    sample that lands in a second already handed out is handed out again as a *correction*:
    a slot holding just the late values, which the store merges into the second it already
    has. Only timed distributions and counters can arrive late, and never more than the
    5-minute window late.

The store is guarded by one lock, so ingest and the snapshot loop may call it from different
threads.

Why one module
    The per-kind series classes and the store share one time model, one slot layout and one
    lock, and ``apply`` and ``closed_seconds`` reach into each kind's slots in their loops. The
    module is to be rewritten as vectorised columns across all series (thousands of them);
    splitting it along today's per-series classes first would cut seams the rewrite removes.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from functools import partial
from itertools import repeat
from typing import Any

import numpy as np

from vtmon.model import (
    RING_S,
    WINDOWS,
    Batch,
    DistBuf,
    ErrorStats,
    HistoryPoint,
    Kind,
    SeriesKey,
    SeriesStats,
    TimedRun,
    WindowStats,
    gauge_updates,
    is_error_counter,
    is_operation_counter,
)
from vtmon.sketch import FEW, Sketch, Summary, few_sketches, summarise, summarise_many

BLOCK_S = 10  # seconds per cached block
# A distribution's second is packed (Sketch.pack) once it is this old: merged into its block
# and handed to the history store by then. A late timed sample still goes in (unpacked).
PACK_AFTER_S = 2 * BLOCK_S
FORGET_AFTER_S = 600
SWEEP_EVERY_S = 10  # how often idle series are looked for
FUTURE_SLACK_S = 1.0  # timed samples up to this far ahead keep their own second
SET_SLOT_CAP = 10_000
FLUSH_AT = 16_384  # buffered distribution values per series before they are bucketized
REFUSED_PREFIXES = 64  # name prefixes counted apart when the series cap refuses; then "other"

QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)
ERRORS_WINDOW = "1m"

_EMPTY_BLOCK: Any = object()  # a cached block with no data in it
_EMPTY = WindowStats()


def _shallow_copy(sk: Sketch) -> Sketch:
    """A copy sharing the bucket arrays (``Sketch`` never modifies them in place, it replaces
    them), much cheaper than ``Sketch.copy``."""
    c = Sketch.__new__(Sketch)
    c.keys, c.counts, c.count, c.sum, c.min, c.max = (
        sk.keys,
        sk.counts,
        sk.count,
        sk.sum,
        sk.min,
        sk.max,
    )
    return c


def _count_invalid(values: list[float], weights: list[float] | None) -> int:
    """How many values a sketch will ignore (NaN, infinite, weight not > 0).

    ``sum`` runs in C and is finite exactly when every term is (barring overflow), so the
    common all-valid case costs one pass; numpy counts precisely otherwise.
    """
    if math.isfinite(sum(values)) and (
        weights is None or (math.isfinite(sum(weights)) and min(weights) > 0)
    ):
        return 0
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        ok &= np.isfinite(w) & (w > 0)
    return int(v.size - np.count_nonzero(ok))


class _Series:
    """Slots of one series keyed by second, plus the cached merges of its sealed blocks.

    ``slots`` is kept in insertion order, which is second order except for late timed samples;
    pruning from the front therefore may keep such a late slot a little longer than needed, which
    is harmless because windows look slots up by second.
    """

    __slots__ = (
        "key",
        "component",
        "slots",
        "blocks",
        "version",
        "last_seen",
        "cache_at",
        "cache",
        "runs",
        "epoch",
    )

    def __init__(self, key: SeriesKey) -> None:
        self.key = key
        self.component = key.component
        self.slots: dict[int, Any] = {}
        self.blocks: dict[int, Any] = {}
        self.version = 0
        self.last_seen = 0
        self.cache_at: tuple[int, int] | None = None
        self.cache: dict[str, WindowStats] = {}
        # per window length: (first block, last block, epoch, merge of those sealed blocks)
        self.runs: dict[int, tuple[int, int, int, Any]] = {}
        self.epoch = 0

    # --- writing ---------------------------------------------------------------------------

    def _slot(self, sec: int, now_s: int, make: Callable[[], Any]) -> Any:
        s = self.slots.get(sec)
        if s is None:
            s = self.slots[sec] = make()
            self.prune(now_s)
        return s

    def _wrote(self, sec: int) -> None:
        self.version += 1
        # a late sample in a sealed block invalidates its cached merge and every run using it
        if self.blocks and self.blocks.pop(sec // BLOCK_S, None) is not None:
            self.epoch += 1

    def prune(self, now_s: int) -> None:
        cutoff = now_s - RING_S  # seconds <= cutoff are outside every window
        slots = self.slots
        while slots:
            first = next(iter(slots))
            if first > cutoff:
                break
            del slots[first]
        blocks = self.blocks
        first_block = -(-(cutoff + 1) // BLOCK_S)  # blocks before it can only be partly inside
        while blocks:
            first = next(iter(blocks))
            if first >= first_block:
                break
            del blocks[first]
            self.epoch += 1  # no run may outlive one of its blocks

    # --- reading ---------------------------------------------------------------------------

    def flush(self, now_s: int) -> None:
        """Move buffered writes into their slot (distributions buffer; the rest do not)."""

    def windows(self, now_s: int) -> dict[str, WindowStats]:
        at = (now_s, self.version)
        if self.cache_at != at:
            self.flush(now_s)
            self.cache = {name: self._window(now_s, w) for name, w in WINDOWS}
            self.cache_at = at
        return self.cache

    def _window(self, now_s: int, w: int) -> WindowStats:
        items = self._gather(now_s - w + 1, now_s)
        return self.summarise(items, w) if items else _EMPTY

    def _gather(self, lo: int, hi: int) -> list[Any]:
        """Slots and sealed-block merges that together cover seconds ``lo .. hi`` (hi = now)."""
        slots = self.slots
        first_b = -(-lo // BLOCK_S)
        last_b = (hi - BLOCK_S) // BLOCK_S  # the last block that ends before second ``hi``
        if first_b > last_b:
            return [s for s in map(slots.get, range(lo, hi + 1)) if s is not None]
        items = [s for s in map(slots.get, range(lo, first_b * BLOCK_S)) if s is not None]
        run = self.runs.get(hi - lo)
        if run is None or run[:3] != (first_b, last_b, self.epoch):
            run = (first_b, last_b, self.epoch, self._merge_blocks(first_b, last_b))
            self.runs[hi - lo] = run
        if run[3] is not _EMPTY_BLOCK:
            items.append(run[3])
        items.extend(
            s for s in map(slots.get, range((last_b + 1) * BLOCK_S, hi + 1)) if s is not None
        )
        return items

    def _merge_blocks(self, first_b: int, last_b: int) -> Any:
        """One item for sealed blocks ``first_b .. last_b``, merging and caching each block."""
        slots, blocks, merged = self.slots, self.blocks, []
        for b in range(first_b, last_b + 1):
            m = blocks.get(b)
            if m is None:
                start = b * BLOCK_S
                parts = [s for s in map(slots.get, range(start, start + BLOCK_S)) if s is not None]
                m = blocks[b] = self.combine(parts) if parts else _EMPTY_BLOCK
            if m is not _EMPTY_BLOCK:
                merged.append(m)
        if not merged:
            return _EMPTY_BLOCK
        return merged[0] if len(merged) == 1 else self.combine(merged)

    # --- per kind ----------------------------------------------------------------------------

    def combine(self, parts: list[Any]) -> Any:
        """One item equivalent to ``parts`` (for a block cache)."""
        raise NotImplementedError

    def summarise(self, items: list[Any], w: int) -> WindowStats:
        raise NotImplementedError

    def last(self, windows: dict[str, WindowStats]) -> float | None:
        return None


class _DistSeries(_Series):
    """Values of the second being written are buffered as plain lists and bucketized in one
    vectorised pass when the series is read, the second changes or ``FLUSH_AT`` values have
    piled up: a batch usually carries a handful of values per series, and a numpy pass has a
    fixed cost however few values it gets.
    """

    __slots__ = ("history", "pend_sec", "pend_v", "pend_w", "packed")

    def __init__(self, key: SeriesKey, history_len: int) -> None:
        super().__init__(key)
        self.history: deque[HistoryPoint] = deque(maxlen=history_len)
        self.pend_sec = 0
        self.pend_v: list[float] = []
        self.pend_w: list[float] | None = None
        self.packed = -(2**62)  # seconds up to this one are packed

    def prune(self, now_s: int) -> None:
        super().prune(now_s)
        # The seconds kept for the windows' far ends are read rarely and no longer change: each
        # becomes one bytes object, its buckets in half the bytes where that is exact (see
        # Sketch.pack), for most of a series' five minutes.
        upto = now_s - PACK_AFTER_S
        slots = self.slots
        for sec in range(max(self.packed + 1, upto - RING_S), upto + 1):
            sk = slots.get(sec)
            if sk is not None and type(sk) is not bytes:
                blob = sk.pack()
                if blob is not None:
                    slots[sec] = blob
        self.packed = max(self.packed, upto)

    def _slot(self, sec: int, now_s: int, make: Callable[[], Any]) -> Any:
        s = self.slots.get(sec)
        if type(s) is bytes:  # a sealed second written again (a late timed sample)
            s = self.slots[sec] = Sketch.unpack(s)
            return s
        return super()._slot(sec, now_s, make)

    def add(self, sec: int, now_s: int, values: list[float], weights: list[float] | None) -> int:
        """Buffer values for second ``sec``; returns how many will be ignored (non-finite)."""
        if weights is not None and len(weights) != len(values):
            return len(values)  # a malformed buffer must not blow up the next read
        if isinstance(values, np.ndarray):
            # From binary frames: already finite and many, so straight into the sketch. What
            # the list buffers first, so the slot sees its samples in arrival order.
            self.flush(now_s)
            self._slot(sec, now_s, Sketch).add(values, weights)
            self._wrote(sec)
            return 0
        bad = _count_invalid(values, weights)
        pv = self.pend_v
        if sec != self.pend_sec and pv:
            self.flush(now_s)
            pv = self.pend_v
        self.pend_sec = sec
        pw = self.pend_w
        if weights is not None:
            if pw is None:
                pw = self.pend_w = [1.0] * len(pv)
            pw.extend(weights)
        elif pw is not None:
            pw.extend(repeat(1.0, len(values)))
        pv.extend(values)
        if len(pv) >= FLUSH_AT:
            self.flush(now_s)
        self._wrote(sec)
        return bad

    def add_now(
        self, sec: int, now_s: int, values: list[float], weights: list[float] | None
    ) -> int:
        """Add straight into the slot of ``sec`` (timed samples, usually for an older second)."""
        ignored = self._slot(sec, now_s, Sketch).add(values, weights)
        self._wrote(sec)
        return ignored

    def flush(self, now_s: int) -> None:
        if self.pend_v:
            # invalid values were counted when they came; the sketch just skips them
            self._slot(self.pend_sec, now_s, Sketch).add(self.pend_v, self.pend_w)
            self.pend_v = []
            self.pend_w = None

    def combine(self, parts: list[Sketch | bytes]) -> Sketch:
        return Sketch.merged(_sketches(parts))

    def summarise(self, items: list[Sketch | bytes], w: int) -> WindowStats:
        return _dist_stats(summarise(_sketches(items), QUANTILES), w)


def _prefix(name: str) -> str:
    """``svc.*`` for ``svc.endpoint.latency``; a name without a dot stands for itself."""
    head, dot, _ = name.partition(".")
    return f"{head}.*" if dot else name


def _flush_all(series: list[_DistSeries], now_s: int) -> None:
    """``flush`` every series; the seconds with a few plain values become their sketches
    together (few_sketches)."""
    few: list[_DistSeries] = []
    isfinite = math.isfinite
    for s in series:
        pv = s.pend_v
        if not pv:
            continue
        if (
            len(pv) <= FEW
            and s.pend_w is None
            and s.pend_sec not in s.slots
            and all(map(isfinite, pv))
        ):
            few.append(s)
        else:
            s.flush(now_s)
    if not few:
        return
    for s, sk in zip(few, few_sketches([s.pend_v for s in few]), strict=True):
        s._slot(s.pend_sec, now_s, partial(_given, sk))  # a new slot, holding ``sk``
        s.pend_v = []


def _given(sk: Sketch) -> Sketch:
    return sk


def _dist_stats(m: Summary | None, w: int) -> WindowStats:
    """A distribution's window from the summary of its sketches over ``w`` seconds."""
    if m is None:
        return _EMPTY
    p50, p90, p95, p99, p999 = m.quantiles
    return WindowStats(
        count=m.count,
        rate=m.count / w,
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
        p999=p999,
        mean=m.sum / m.count,
        min=m.min,
        max=m.max,
    )


def _sketches(items: list[Sketch | bytes]) -> list[Sketch]:
    """Slots and block merges as sketches: sealed seconds are kept packed (Sketch.pack)."""
    return [Sketch.unpack(i) if type(i) is bytes else i for i in items]  # type: ignore[misc]


class _CounterSeries(_Series):
    """Slots are plain floats: the sum of the increments in that second."""

    __slots__ = ()

    def add(self, sec: int, now_s: int, inc: float) -> None:
        slots = self.slots
        if sec in slots:
            slots[sec] += inc
        else:
            slots[sec] = inc
            self.prune(now_s)
        self._wrote(sec)

    def combine(self, parts: list[float]) -> float:
        return sum(parts)

    def summarise(self, items: list[float], w: int) -> WindowStats:
        total = sum(items)
        return WindowStats(count=total, rate=total / w)


class _GaugeSlot:
    __slots__ = ("n", "sum", "last", "min", "max")

    def __init__(self) -> None:
        self.n = 0
        self.sum = 0.0  # of the values set (the history store keeps the mean)
        self.last = math.nan
        self.min = math.inf
        self.max = -math.inf


class _GaugeSeries(_Series):
    """``value`` is the current value; it survives the seconds and windows it was set in."""

    __slots__ = ("value",)

    def __init__(self, key: SeriesKey) -> None:
        super().__init__(key)
        self.value: float | None = None

    def add(self, sec: int, now_s: int, ops: list[tuple[bool | None, Any]]) -> int:
        # Updates depend on each other in order (a delta adds to the previous result) and a
        # gauge gets a handful per flush from lines, so a plain loop is the right tool for
        # those; a binary frame's run of values set one after another goes in at once.
        slot = self._slot(sec, now_s, _GaugeSlot)
        v = self.value
        lo, hi, n, dropped, total = slot.min, slot.max, 0, 0, 0.0
        for is_delta, x in ops:
            if is_delta is None:  # (None, array): values set one after another
                ok = np.isfinite(x)
                if not ok.all():
                    dropped += int(x.size - np.count_nonzero(ok))
                    x = x[ok]
                if x.size:
                    # the running sum in the same order as value by value (cumsum is serial)
                    total = float(np.cumsum(np.concatenate(((total,), x)))[-1])
                    lo = min(lo, float(x.min()))
                    hi = max(hi, float(x.max()))
                    v = float(x[-1])
                    n += int(x.size)
                continue
            if not math.isfinite(x):
                dropped += 1
                continue
            v = (v or 0.0) + x if is_delta else x
            n += 1
            total += v
            if v < lo:
                lo = v
            if v > hi:
                hi = v
        if n:
            slot.n += n
            slot.sum += total
            slot.min, slot.max, slot.last = lo, hi, v
            self.value = v
            self._wrote(sec)
        return dropped

    def combine(self, parts: list[_GaugeSlot]) -> _GaugeSlot:
        m = _GaugeSlot()
        m.n = sum(p.n for p in parts)
        m.sum = sum(p.sum for p in parts)
        m.min = min(p.min for p in parts)
        m.max = max(p.max for p in parts)
        m.last = parts[-1].last
        return m

    def summarise(self, items: list[_GaugeSlot], w: int) -> WindowStats:
        n = sum(p.n for p in items)
        if n == 0:
            return _EMPTY
        return WindowStats(
            count=float(n),
            rate=n / w,
            min=min(p.min for p in items),
            max=max(p.max for p in items),
        )

    def last(self, windows: dict[str, WindowStats]) -> float | None:
        return self.value


class _SetSlot:
    """Members of one second as 64-bit hashes: a Python set while it may still grow, then a
    numpy array (8 bytes a member) once the second is over and a window has read it.

    Python's string hash is salted per process, which is fine for counting; a collision among
    a few million members is about as likely as one in 10^7.
    """

    __slots__ = ("members", "arr")

    def __init__(self) -> None:
        self.members: set[int] | None = set()
        self.arr: np.ndarray | None = None

    @classmethod
    def of_array(cls, arr: np.ndarray) -> _SetSlot:
        s = cls()
        s.members, s.arr = None, arr
        return s

    def add(self, hashes: set[int]) -> None:
        members = self.members
        if members is None:
            assert self.arr is not None
            members = self.members = set(self.arr.tolist())
        self.arr = None
        room = SET_SLOT_CAP - len(members)
        if len(hashes) <= room:
            members |= hashes
        elif room > 0:
            # fill up to the cap; unique counts saturate rather than memory growing
            for h in hashes:
                if len(members) >= SET_SLOT_CAP:
                    break
                members.add(h)

    def array(self, freeze: bool) -> np.ndarray:
        if self.arr is None:
            assert self.members is not None
            self.arr = np.fromiter(self.members, dtype=np.int64, count=len(self.members))
        if freeze:
            self.members = None
        return self.arr


class _SetSeries(_Series):
    __slots__ = ()

    def add(self, sec: int, now_s: int, members: Iterable[str]) -> None:
        self._slot(sec, now_s, _SetSlot).add(set(map(hash, members)))
        self._wrote(sec)

    def combine(self, parts: list[_SetSlot]) -> _SetSlot:
        # a block is merged only once all its seconds are over: its slots can be frozen
        arrays = [p.array(freeze=True) for p in parts]
        return _SetSlot.of_array(np.unique(np.concatenate(arrays)))

    def summarise(self, items: list[_SetSlot], w: int) -> WindowStats:
        arrays = [p.array(freeze=False) for p in items]
        n = arrays[0].size if len(arrays) == 1 else np.unique(np.concatenate(arrays)).size
        if n == 0:
            return _EMPTY
        return WindowStats(count=float(n), rate=n / w)

    def last(self, windows: dict[str, WindowStats]) -> float | None:
        return windows["1m"].count


class SeriesStore:
    """All series, their slots and their windowed statistics. See the module docstring."""

    def __init__(
        self,
        target_ms: Callable[[str], float],
        max_series: int = 10_000,
        history_len: int = 300,
    ) -> None:
        self._target_ms = target_ms
        self._max_series = max_series
        # Samples of new series refused because max_series series exist, by name prefix
        # (``svc.*``), so that a user sees which sender makes too many series.
        self.refused: Counter[str] = Counter()
        self._history_len = history_len
        self._series: dict[SeriesKey, _Series] = {}
        self._order: list[_Series] | None = None  # sorted for stats(); None when stale
        self._next_sweep = -math.inf
        self._lock = threading.Lock()
        self._exported_upto: float = -math.inf  # closed_seconds handed out seconds before it
        self._late: list[tuple[SeriesKey, Kind, int, Any]] = []  # corrections not handed out

    def __len__(self) -> int:
        return len(self._series)

    # --- ingest ----------------------------------------------------------------------------

    def apply(self, batch: Batch, now: float) -> int:
        """Add a batch received at ``now``; returns the number of samples dropped.

        Dropped: samples of new series beyond ``max_series``, non-finite values, timed samples
        older than the 5-minute window, and timed samples of kinds other than distribution and
        counter (which the protocol does not timestamp).
        """
        now_s = math.floor(now)
        dropped = 0
        with self._lock:
            self._sweep(now_s)
            for key, buf in batch.dist.items():
                if not len(buf.values):
                    continue
                s = self._get(key, now_s, _DistSeries, len(buf.values))
                if s is None:
                    dropped += len(buf.values)
                else:
                    dropped += s.add(now_s, now_s, buf.values, buf.weights)
            for key, inc in batch.counts.items():
                c = self._get(key, now_s, _CounterSeries) if math.isfinite(inc) else None
                if c is None:
                    dropped += 1
                else:
                    c.add(now_s, now_s, inc)
            for key, ops in batch.gauges.items():
                if not ops:
                    continue
                g = self._get(key, now_s, _GaugeSeries, 0)
                if g is None:
                    n = gauge_updates(ops)
                    dropped += n
                    if key not in self._series:  # the cap, not another kind under this name
                        self._refuse(key, n)
                else:
                    dropped += g.add(now_s, now_s, ops)
            for key, members in batch.sets.items():
                if not members:
                    continue
                m = self._get(key, now_s, _SetSeries, len(members))
                if m is None:
                    dropped += len(members)
                else:
                    m.add(now_s, now_s, members)
            if batch.timed:
                dropped += self._apply_timed(batch.timed, now, now_s)
        return dropped

    def _apply_timed(self, timed: list[TimedRun], now: float, now_s: int) -> int:
        # Each run's samples are grouped by second (in C where every timestamp is in range,
        # the usual case), the groups of all runs by (series, second); each group is then
        # added with one vectorised call.
        groups: dict[tuple[SeriesKey, int], DistBuf] = {}
        dropped = 0
        oldest = now_s - RING_S + 1  # the first second of the longest window
        ahead = now + FUTURE_SLACK_S  # later than this: a clock ahead of ours
        for run in timed:
            key = run.key
            values = run.values
            n = len(values)
            if key.kind is not Kind.DISTRIBUTION and key.kind is not Kind.COUNTER:
                dropped += n
                continue
            ts = run.ts
            if not n or len(ts) != n:
                dropped += n
                continue
            pieces: Any
            lo, hi = min(ts), max(ts)
            if math.isfinite(sum(ts)) and lo >= oldest and hi <= ahead:
                first = math.floor(lo)
                if first == math.floor(hi):
                    pieces = ((first, values),)  # the usual case: one second
                else:
                    secs = list(map(math.floor, ts))
                    by: defaultdict[int, list[float]] = defaultdict(list)
                    deque(map(list.append, map(by.__getitem__, secs), values), 0)
                    pieces = by.items()
            else:
                by = defaultdict(list)
                for v, t in zip(values, ts, strict=True):
                    if t > ahead:
                        sec = now_s  # a clock ahead of ours: keep the sample, in the present
                    elif t >= oldest:  # also False for NaN
                        sec = math.floor(t)
                    else:
                        dropped += 1
                        continue
                    by[sec].append(v)
                pieces = by.items()
            w = run.weight
            for sec, vals in pieces:
                g = groups.get((key, sec))
                if g is None:
                    groups[(key, sec)] = DistBuf(list(vals), None if w == 1.0 else [w] * len(vals))
                else:
                    if w != 1.0 and g.weights is None:
                        g.weights = [1.0] * len(g.values)
                    g.values.extend(vals)
                    if g.weights is not None:
                        g.weights.extend(repeat(w, len(vals)))
        for (key, sec), g in groups.items():
            if key.kind is Kind.DISTRIBUTION:
                d = self._get(key, now_s, _DistSeries, len(g.values))
                if d is None:
                    dropped += len(g.values)
                elif sec >= self._exported_upto:
                    # Buffered like samples without a timestamp: one numpy pass per series
                    # and second, not per batch.
                    dropped += d.add(sec, now_s, g.values, g.weights)
                else:
                    dropped += d.add_now(sec, now_s, g.values, g.weights)
                    late = Sketch.of(g.values, g.weights)
                    if late.count > 0:
                        self._late.append((key, Kind.DISTRIBUTION, sec, late))
            else:
                # a counter sample's increment is its value scaled up by its sample rate
                if g.weights is None:
                    inc = sum(g.values)
                else:
                    inc = sum(v * w for v, w in zip(g.values, g.weights, strict=True))
                c = (
                    self._get(key, now_s, _CounterSeries, len(g.values))
                    if math.isfinite(inc)
                    else None
                )
                if c is None:
                    dropped += len(g.values)
                else:
                    c.add(sec, now_s, inc)
                    if sec < self._exported_upto:
                        self._late.append((key, Kind.COUNTER, sec, inc))
        return dropped

    def _get(self, key: SeriesKey, now_s: int, cls: type[_Series], n: int = 1) -> Any:
        """The series for ``key`` (created when there is room), None when it must be dropped;
        ``n`` samples refused for the series cap are counted under the name's prefix."""
        s = self._series.get(key)
        if s is None:
            if len(self._series) >= self._max_series:
                if n:
                    self._refuse(key, n)
                return None
            s = _DistSeries(key, self._history_len) if cls is _DistSeries else cls(key)
            self._series[key] = s
            self._order = None
        elif type(s) is not cls:
            return None  # the same key arriving as another kind: keep the first
        s.last_seen = now_s
        return s

    def _refuse(self, key: SeriesKey, n: int) -> None:
        """Count ``n`` samples of ``key`` refused for the series cap, under its prefix."""
        prefix = _prefix(key.name)
        refused = self.refused
        if prefix not in refused and len(refused) >= REFUSED_PREFIXES:
            prefix = "other"
        refused[prefix] += n

    def _sweep(self, now_s: int) -> None:
        """Forget idle series and drop expired slots, at most every ``SWEEP_EVERY_S``."""
        if now_s < self._next_sweep:
            return
        self._next_sweep = now_s + SWEEP_EVERY_S
        idle = now_s - FORGET_AFTER_S
        gone = [k for k, s in self._series.items() if s.last_seen <= idle]
        for k in gone:
            del self._series[k]
        if gone:
            self._order = None
        for s in self._series.values():
            s.prune(now_s)

    # --- reading ---------------------------------------------------------------------------

    def _sorted(self) -> list[_Series]:
        if self._order is None:
            self._order = sorted(
                self._series.values(),
                key=lambda s: (s.component, s.key.name, s.key.tags, s.key.kind),
            )
        return self._order

    def refused_now(self) -> dict[str, int]:
        """A copy of ``refused``, taken under the lock."""
        with self._lock:
            return dict(self.refused)

    def _refresh(self, now_s: int) -> None:
        """Bring every distribution's windows up to second ``now_s``: the slots and block
        merges of each window are gathered per series (cached blocks make that a handful of
        items), and the quantiles of all of them are computed at once (summarise_many)."""
        stale = [
            s
            for s in self._series.values()
            if type(s) is _DistSeries and s.cache_at != (now_s, s.version)
        ]
        if not stale:
            return
        _flush_all(stale, now_s)
        groups: list[list[Sketch]] = []
        for s in stale:
            at = (now_s, s.version)
            for _, w in WINDOWS:
                groups.append(_sketches(s._gather(now_s - w + 1, now_s)))
            s.cache_at = at
        summaries = iter(summarise_many(groups, QUANTILES))
        for s in stale:
            s.cache = {name: _dist_stats(next(summaries), w) for name, w in WINDOWS}

    def stats(self, now: float) -> tuple[SeriesStats, ...]:
        """Every series not yet forgotten, with its windows, sorted by component then name."""
        now_s = math.floor(now)
        with self._lock:
            self._sweep(now_s)
            self._refresh(now_s)
            targets: dict[str, float] = {}
            out = []
            for s in self._sorted():
                key = s.key
                windows = s.windows(now_s)
                target = None
                history: tuple[HistoryPoint, ...] = ()
                if isinstance(s, _DistSeries):
                    target = targets.get(s.component)
                    if target is None:
                        target = targets[s.component] = self._target_ms(s.component)
                    history = tuple(s.history)
                out.append(
                    SeriesStats(
                        name=key.name,
                        tags=key.tags,
                        component=s.component,
                        kind=key.kind,
                        windows=dict(windows),
                        last=s.last(windows),
                        target_ms=target,
                        history=history,
                    )
                )
            return tuple(out)

    def closed_seconds(self, upto_s: int) -> list[tuple[SeriesKey, Kind, int, Any]]:
        """Every slot of a second before ``upto_s`` not handed out before, as
        ``(key, kind, second, payload)``, corrections first (see "History export" above).

        Payloads: distribution a ``Sketch`` (a copy), counter the sum of its increments, gauge
        ``(updates, sum, min, max, last)``, set the number of unique members. Costs one dict
        look-up per series and second; series idle since the last call are skipped.
        """
        with self._lock:
            out, self._late = self._late, []
            lo = int(max(self._exported_upto, upto_s - RING_S))
            if upto_s <= lo:
                return out
            for s in self._series.values():
                if s.last_seen < lo:
                    continue  # nothing written since the last call (writes set last_seen)
                slots = s.slots
                key = s.key
                if isinstance(s, _DistSeries):
                    if s.pend_v and s.pend_sec < upto_s:
                        s.flush(upto_s)
                    for sec in range(lo, upto_s):
                        sk = slots.get(sec)
                        if type(sk) is bytes:  # sealed before it was handed out (a late call)
                            sk = Sketch.unpack(sk)
                        if sk is not None and sk.count > 0:
                            out.append((key, Kind.DISTRIBUTION, sec, _shallow_copy(sk)))
                elif isinstance(s, _CounterSeries):
                    for sec in range(lo, upto_s):
                        inc = slots.get(sec)
                        if inc is not None:
                            out.append((key, Kind.COUNTER, sec, inc))
                elif isinstance(s, _GaugeSeries):
                    for sec in range(lo, upto_s):
                        g = slots.get(sec)
                        if g is not None and g.n:
                            out.append((key, Kind.GAUGE, sec, (g.n, g.sum, g.min, g.max, g.last)))
                else:
                    for sec in range(lo, upto_s):
                        m = slots.get(sec)
                        if m is not None:
                            n = len(m.members) if m.members is not None else m.arr.size
                            if n:
                                out.append((key, Kind.SET, sec, n))
            self._exported_upto = upto_s
        return out

    def seed_history(self, histories: dict[SeriesKey, list[HistoryPoint]]) -> int:
        """Put chart points from before a restart (oldest first) in front of each distribution's
        live points; a series not seen yet is created with just its history and is forgotten
        like any idle series. Returns how many series got points."""
        seeded = 0
        with self._lock:
            for key, points in histories.items():
                if not points or key.kind is not Kind.DISTRIBUTION:
                    continue
                s = self._series.get(key)
                if s is None:
                    s = self._get(key, math.floor(points[-1].t), _DistSeries, 0)
                if not isinstance(s, _DistSeries):
                    continue
                live = list(s.history)
                first = live[0].t if live else math.inf
                older = [p for p in points if p.t < first]
                s.history = deque([*older, *live], maxlen=self._history_len)
                seeded += 1
        return seeded

    def record_history(self, now: float) -> None:
        """Append one chart point (10 s window percentiles at ``now``) to every distribution."""
        now_s = math.floor(now)
        name = WINDOWS[0][0]
        with self._lock:
            self._refresh(now_s)
            for s in self._series.values():
                if isinstance(s, _DistSeries):
                    w = s.windows(now_s)[name]
                    s.history.append(HistoryPoint(t=now, p50=w.p50, p95=w.p95, p99=w.p99))

    def errors(self, now: float) -> tuple[ErrorStats, ...]:
        """Errors, operations and error rate per component over the last minute.

        Operations come from operation counters; a component whose operation counters counted
        nothing in the minute (or that has none) falls back to its distribution sample count.
        """
        now_s = math.floor(now)
        errors: dict[str, float] = {}
        by_type: dict[str, dict[str, float]] = {}
        ops: dict[str, float] = {}
        samples: dict[str, float] = {}
        with self._lock:
            for s in self._series.values():
                comp = s.component
                if isinstance(s, _CounterSeries):
                    name = s.key.name
                    if is_error_counter(name):
                        n = s.windows(now_s)[ERRORS_WINDOW].count
                        errors[comp] = errors.get(comp, 0.0) + n
                        if n:
                            kind = dict(s.key.tags).get("error_type") or "unknown"
                            types = by_type.setdefault(comp, {})
                            types[kind] = types.get(kind, 0.0) + n
                    elif is_operation_counter(name):
                        ops[comp] = ops.get(comp, 0.0) + s.windows(now_s)[ERRORS_WINDOW].count
                elif isinstance(s, _DistSeries):
                    n = s.windows(now_s)[ERRORS_WINDOW].count
                    samples[comp] = samples.get(comp, 0.0) + n
        out = []
        for comp in sorted(errors.keys() | ops.keys() | samples.keys()):
            e = errors.get(comp, 0.0)
            o = ops.get(comp, 0.0) or samples.get(comp, 0.0)
            if e <= 0 and o <= 0:
                continue
            out.append(
                ErrorStats(
                    component=comp,
                    errors=e,
                    operations=o,
                    error_rate=e / o if o > 0 else None,
                    by_type=dict(sorted(by_type.get(comp, {}).items())),
                )
            )
        return tuple(out)
