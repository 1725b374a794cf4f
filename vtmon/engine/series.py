"""The series registry: every metric the application sends, summarised over the sliding
windows of ``model.WINDOWS``.

Time model
    ``now`` is wall-clock seconds; second ``S = floor(now)`` is the *current* second. The window
    of ``W`` seconds at ``now`` is the seconds ``S - W + 1 .. S``: ``W - 1`` complete seconds
    plus the second in progress. ``rate`` is ``count / W`` -- the full window length, a
    deliberate choice: dividing by the elapsed part instead would make the rate jump at every
    second boundary and overstate it right after vtmon starts. A new stream therefore ramps up
    to its true rate over one window.

What a window holds, per kind
    distribution: count (sum of weights), rate, p50..p999 (within 1 % of the sample of that
    rank, see ``sketch``), mean, exact min and max. counter: count = sum of increments, rate.
    gauge: count = number of updates, rate, min and max of the values it was set to in the
    window (None when it was not updated), and ``last`` = the current value, which outlives
    the windows. set: count = unique members, rate, ``last`` = unique members in 1 m.

Distributions
    All distribution series live in columns shared by all of them (``engine.columns``): a
    second's work is a few numpy passes over what arrived and what left the windows, whatever
    the number of series. Their chart points are a ring of columns too.

Counters, gauges and sets
    Each is an object with one slot per second (kept ``RING_S`` seconds) plus cached merges of
    complete, aligned 10-second blocks, so a window merges at most ~20 items. Set slots keep at
    most ``SET_SLOT_CAP`` members (64-bit hashes once the second is over).

Forgetting
    A series that has received nothing for ``FORGET_AFTER_S`` is forgotten (checked every
    ``SWEEP_EVERY_S``).

History export
    ``closed_seconds(upto_s)`` hands the history store every second before ``upto_s`` once. A
    timed sample that lands in a second already handed out is handed out again as a
    *correction*: just the late values, which the store merges into the second it already has.
    Only timed distributions and counters can arrive late, and never more than the 5-minute
    window late.

The store is guarded by one lock, so ingest and the snapshot loop may call it from different
threads.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from itertools import repeat
from typing import Any

import numpy as np

from vtmon.engine.columns import BLOCK_S, Chunk, DistColumns
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
    SeriesTable,
    TimedRun,
    WindowStats,
    gauge_updates,
    is_error_counter,
    is_operation_counter,
)
from vtmon.model.table import FIELDS, Rows, window_values
from vtmon.sketch import Sketch

FORGET_AFTER_S = 600
SWEEP_EVERY_S = 10  # how often idle series are looked for
FUTURE_SLACK_S = 1.0  # timed samples up to this far ahead keep their own second
SET_SLOT_CAP = 10_000
REFUSED_PREFIXES = 64  # name prefixes counted apart when the series cap refuses; then "other"

ERRORS_WINDOW = "1m"

_EMPTY_BLOCK: Any = object()  # a cached block with no data in it
_EMPTY = WindowStats()


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

    def windows(self, now_s: int) -> dict[str, WindowStats]:
        at = (now_s, self.version)
        if self.cache_at != at:
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


def _prefix(name: str) -> str:
    """``svc.*`` for ``svc.endpoint.latency``; a name without a dot stands for itself."""
    head, dot, _ = name.partition(".")
    return f"{head}.*" if dot else name


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


class _Layout:
    """The order of ``SeriesStore.stats`` and where its distributions are: display positions,
    their rows in the columns, their components."""

    __slots__ = ("order", "dist_pos", "dist_rows", "pos_row", "other_pos", "rows")

    def __init__(
        self, order: list[tuple[SeriesKey, _Series | None]], rows: dict[SeriesKey, int]
    ) -> None:
        self.order = order
        pos = [i for i, (_, s) in enumerate(order) if s is None]
        self.dist_pos = np.asarray(pos, dtype=np.intp)
        self.dist_rows = np.asarray([rows[order[i][0]] for i in pos], dtype=np.intp)
        self.pos_row = np.full(len(order), -1, dtype=np.intp)
        self.pos_row[self.dist_pos] = self.dist_rows
        self.other_pos = [i for i, (_, s) in enumerate(order) if s is not None]
        self.rows = Rows([k for k, _ in order])


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
        self._series: dict[SeriesKey, _Series] = {}  # counters, gauges and sets
        self._dist = DistColumns(history_len)  # every distribution
        # every key in the order of stats(), with its object (None: a distribution's row)
        self._order: list[tuple[SeriesKey, _Series | None]] | None = None
        self._lay: _Layout | None = None
        self._next_sweep = -math.inf
        self._lock = threading.Lock()
        self._exported_upto: float = -math.inf  # closed_seconds handed out seconds before it
        self._late: list[tuple[SeriesKey, Kind, int, Any]] = []  # corrections not handed out

    def __len__(self) -> int:
        return len(self._series) + len(self._dist)

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
                dropped += self._add_dist(key, now_s, now_s, buf.values, buf.weights)
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
                lost = self._add_dist(key, sec, now_s, g.values, g.weights)
                dropped += lost
                if sec < self._exported_upto and lost < len(g.values):
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

    def _add_dist(
        self, key: SeriesKey, sec: int, now_s: int, values: Any, weights: list[float] | None
    ) -> int:
        """Buffer a distribution's values for second ``sec``; returns how many are dropped
        (the series cap, non-finite values, weights that are not positive)."""
        n = len(values)
        if not n:
            return 0
        if weights is not None and len(weights) != n:
            return n  # a malformed buffer must not blow up the next read
        row = self._dist_row(key, now_s, n)
        if row is None:
            return n
        # From binary frames values come as a finite array, weights never non-positive.
        bad = 0 if isinstance(values, np.ndarray) else _count_invalid(values, weights)
        self._dist.add(row, sec, values, weights)
        return bad

    def _dist_row(self, key: SeriesKey, now_s: int, n: int = 1) -> int | None:
        """``_get`` for a distribution: its row."""
        d = self._dist
        r = d.rows.get(key)
        if r is not None:
            d.last_seen[r] = now_s
            return r
        if len(self) >= self._max_series:
            if n:
                self._refuse(key, n)
            return None
        self._order = None
        return d.add_row(key, now_s)

    def _get(self, key: SeriesKey, now_s: int, cls: type[_Series], n: int = 1) -> Any:
        """The series for ``key`` (created when there is room), None when it must be dropped;
        ``n`` samples refused for the series cap are counted under the name's prefix."""
        s = self._series.get(key)
        if s is None:
            if len(self) >= self._max_series:
                if n:
                    self._refuse(key, n)
                return None
            s = cls(key)
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
        if gone or self._dist.forget(idle):
            self._order = None
        for s in self._series.values():
            s.prune(now_s)
        self._dist.catch_up(now_s)  # seconds that left every window are dropped

    # --- reading ---------------------------------------------------------------------------

    def _sorted(self) -> list[tuple[SeriesKey, _Series | None]]:
        if self._order is None:
            both: list[tuple[SeriesKey, _Series | None]] = [
                *self._series.items(),
                *zip(self._dist.rows, [None] * len(self._dist), strict=True),
            ]
            both.sort(key=lambda e: (e[0].component, e[0].name, e[0].tags, e[0].kind))
            self._order = both
        return self._order

    def refused_now(self) -> dict[str, int]:
        """A copy of ``refused``, taken under the lock."""
        with self._lock:
            return dict(self.refused)

    def _layout(self) -> _Layout:
        """Where the distributions sit in the order of ``stats`` (cached with the order)."""
        if self._lay is None or self._lay.order is not self._sorted():
            self._lay = _Layout(self._sorted(), self._dist.rows)
        return self._lay

    def stats(self, now: float) -> SeriesTable:
        """Every series not yet forgotten, with its windows, sorted by component then name."""
        now_s = math.floor(now)
        with self._lock:
            self._sweep(now_s)
            d = self._dist
            res = d.refresh(now_s)
            lay = self._layout()
            n = len(lay.order)
            values = np.full((len(WINDOWS), len(FIELDS), n), np.nan)
            last = np.full(n, np.nan)
            target = np.full(n, np.nan)
            if lay.dist_pos.size:
                values[:, :, lay.dist_pos] = d.table_values(lay.dist_rows, res)
                _, comps, names = lay.rows.codes()
                comp_target = np.array([self._target_ms(c) for c in names])
                target[lay.dist_pos] = comp_target[comps[lay.dist_pos]]
            made = {}
            for pos in lay.other_pos:
                key, s = lay.order[pos]
                assert s is not None
                windows = dict(s.windows(now_s))
                made[pos] = st = SeriesStats(
                    name=key.name,
                    tags=key.tags,
                    component=key.component,
                    kind=key.kind,
                    windows=windows,
                    last=s.last(windows),
                )
                for wi, (name, _) in enumerate(WINDOWS):
                    values[wi, :, pos] = window_values(windows[name])
                if st.last is not None:
                    last[pos] = st.last
            tick, pos_row = d.tick, lay.pos_row
            return SeriesTable(
                lay.rows,
                values,
                last,
                target,
                charts=lambda i: d.chart(int(pos_row[i]), tick),
                made=made,
            )

    def closed_seconds(self, upto_s: int) -> list[tuple[SeriesKey, Kind, int, Any]]:
        """Every slot of a second before ``upto_s`` not handed out before, as
        ``(key, kind, second, payload)``, corrections first (see "History export" above).

        Payloads: distribution a ``Sketch`` (its arrays are views of the second's chunk, which
        never changes), counter the sum of its increments, gauge ``(updates, sum, min, max,
        last)``, set the number of unique members. Counters, gauges and sets cost one dict
        look-up per series and second (series idle since the last call are skipped);
        distributions one pass over each second's chunk.
        """
        with self._lock:
            out, self._late = self._late, []
            lo = int(max(self._exported_upto, upto_s - RING_S))
            if upto_s <= lo:
                return out
            d = self._dist
            d.flush()
            key_of = d.key_of
            for sec in range(lo, upto_s):
                chunks = d.secs.get(sec)
                if chunks:
                    c = Chunk.merged(chunks)
                    d.secs[sec] = [c]
                    for row, sk in c.sketches():
                        key_r = key_of[row]
                        if key_r is not None:  # always: a row is forgotten long after
                            out.append((key_r, Kind.DISTRIBUTION, sec, sk))
            for s in self._series.values():
                if s.last_seen < lo:
                    continue  # nothing written since the last call (writes set last_seen)
                slots = s.slots
                key = s.key
                if isinstance(s, _CounterSeries):
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
                r = self._dist.rows.get(key)
                if r is None:
                    r = self._dist_row(key, math.floor(points[-1].t), 0)
                if r is None:
                    continue
                self._dist.seed(r, points)
                seeded += 1
        return seeded

    def record_history(self, now: float) -> None:
        """Append one chart point (10 s window percentiles at ``now``) to every distribution."""
        with self._lock:
            self._dist.record_history(now, math.floor(now))

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
            d = self._dist
            if len(d):
                lay = self._layout()
                counts = d.refresh(now_s)[ERRORS_WINDOW].n[lay.dist_rows]
                _, comps, names = lay.rows.codes()
                per = np.bincount(comps[lay.dist_pos], weights=counts, minlength=len(names))
                # a component without distributions counts 0 samples, as one not listed did
                samples = dict(zip(names, per.tolist(), strict=True))
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
