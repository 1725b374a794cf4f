"""Every series' statistics at one tick, in columns: what a Snapshot carries as ``series``.

With thousands of series, a ``SeriesStats`` object per series and a ``WindowStats`` per window
every second would cost more than computing the statistics. The table keeps them as arrays
(one value per series, in the order of ``keys``: by component, then name) and is also a
sequence of ``SeriesStats``, each made the first time it is asked for. Code that looks at all
series (the analysis, a table on screen that shows a few dozen rows) reads the columns; code
that looks at a few reads the objects.

Columns: ``column(window, field)`` is a float array over all series, NaN where the
``WindowStats`` field is None; ``count`` and ``rate`` are never NaN. ``last`` and
``target_ms`` likewise. ``kind_codes`` and ``component_codes`` are small ints indexing
``KINDS`` and ``components``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar, overload

import numpy as np
from numpy.typing import NDArray

from vtmon.model.keys import WINDOWS, Kind, SeriesKey
from vtmon.model.snapshot import HistoryPoint, SeriesStats, WindowStats

FIELDS = ("count", "rate", "p50", "p90", "p95", "p99", "p999", "mean", "min", "max")
_FIELD = {f: i for i, f in enumerate(FIELDS)}
_WINDOW = {name: i for i, (name, _) in enumerate(WINDOWS)}
# what ``columns_json`` can give: ``1m.p95`` and alike, and the two per-series values
COLUMNS = (*(f"{w}.{f}" for w, _ in WINDOWS for f in FIELDS), "last", "target_ms")
KINDS = tuple(Kind)
_KIND_CODE = {k: i for i, k in enumerate(KINDS)}
_EMPTY = WindowStats()

F64 = NDArray[np.float64]
Positions = NDArray[np.intp]  # places in a table's order
Charts = Callable[[int], Sequence[HistoryPoint]]


T = TypeVar("T")


class ListLike(Sequence[T]):
    """A sequence, made lazily, that compares equal to any sequence of the same items."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class Rows:
    """The series of a table, in order, and what follows from them alone: ids, kind and
    component codes, the JSON of the ids. Tables of consecutive ticks share one while the
    series stay the same, so these are worked out once, not every second."""

    __slots__ = ("keys", "_codes", "_ids", "_ids_json", "_where", "_kinds")

    def __init__(self, keys: Sequence[SeriesKey]) -> None:
        self.keys = tuple(keys)
        self._codes: tuple[NDArray[np.int8], NDArray[np.int32], list[str]] | None = None
        self._ids: list[str] | None = None
        self._ids_json: str | None = None
        self._where: dict[str, int] | None = None
        self._kinds: dict[tuple[Kind, ...], Positions] = {}

    def codes(self) -> tuple[NDArray[np.int8], NDArray[np.int32], list[str]]:
        """Each key's kind code (``KINDS``) and component code, and the component names in
        order of first appearance."""
        if self._codes is None:
            keys = self.keys
            comps: dict[str, int] = {}
            kinds = np.fromiter((_KIND_CODE[k.kind] for k in keys), np.int8, count=len(keys))
            cc = np.fromiter(
                (comps.setdefault(k.component, len(comps)) for k in keys),
                np.int32,
                count=len(keys),
            )
            self._codes = (kinds, cc, list(comps))
        return self._codes

    def of_kind(self, *kinds: Kind) -> Positions:
        """Positions of the series of ``kinds``, in order (read-only; kept with the rows)."""
        pos = self._kinds.get(kinds)
        if pos is None:
            wanted = np.isin(self.codes()[0], [_KIND_CODE[k] for k in kinds])
            pos = self._kinds[kinds] = np.flatnonzero(wanted)
            pos.flags.writeable = False
        return pos

    @property
    def ids(self) -> list[str]:
        if self._ids is None:
            self._ids = [k.id for k in self.keys]
        return self._ids

    @property
    def ids_json(self) -> str:
        if self._ids_json is None:
            self._ids_json = json.dumps(self.ids)
        return self._ids_json

    def positions(self, ids: Sequence[str]) -> list[int]:
        """Where the series of ``ids`` are, in order; unknown ids are skipped."""
        if self._where is None:
            self._where = {sid: i for i, sid in enumerate(self.ids)}
        where = self._where
        return sorted({where[sid] for sid in ids if sid in where})


def window_values(w: WindowStats) -> list[float]:
    """A ``WindowStats`` as one column of the table (None as NaN)."""
    return [np.nan if v is None else v for v in (getattr(w, f) for f in FIELDS)]


class SeriesTable(ListLike[SeriesStats]):
    """See the module docstring. Immutable once built."""

    __slots__ = ("rows", "values", "last", "target_ms", "_charts", "_made")

    def __init__(
        self,
        rows: Rows | Sequence[SeriesKey],
        values: F64,
        last: F64,
        target_ms: F64,
        charts: Charts | None = None,
        made: dict[int, SeriesStats] | None = None,
    ) -> None:
        """``values[w, f, i]``: window ``w`` (``WINDOWS`` order), field ``f`` (``FIELDS``
        order) of series ``i``; ``charts(i)`` a distribution's chart points; ``made`` the
        objects already built (series that are not distributions, say). ``rows``: the keys,
        or the ``Rows`` of a table with the same series."""
        self.rows = rows if isinstance(rows, Rows) else Rows(rows)
        self.values = values
        self.last = last
        self.target_ms = target_ms
        self._charts = charts
        self._made: dict[int, SeriesStats] = dict(made or {})

    @property
    def keys(self) -> tuple[SeriesKey, ...]:
        return self.rows.keys

    @classmethod
    def of(cls, stats: Sequence[SeriesStats]) -> SeriesTable:
        """A table of ready objects (tests, replays, small producers)."""
        n = len(stats)
        values = np.full((len(WINDOWS), len(FIELDS), n), np.nan)
        for i, s in enumerate(stats):
            for name, wi in _WINDOW.items():
                values[wi, :, i] = window_values(s.windows.get(name, _EMPTY))
        keys = [SeriesKey(s.name, s.tags, s.kind) for s in stats]
        last = np.array([np.nan if s.last is None else s.last for s in stats], dtype=np.float64)
        target = np.array(
            [np.nan if s.target_ms is None else s.target_ms for s in stats], dtype=np.float64
        )
        return cls(keys, values, last, target, made=dict(enumerate(stats)))

    # --- columns -----------------------------------------------------------------------------

    def column(self, window: str, field: str) -> F64:
        """One field of one window for every series (read-only view; NaN for None)."""
        return self.values[_WINDOW[window], _FIELD[field]]

    @property
    def kind_codes(self) -> NDArray[np.int8]:
        return self.rows.codes()[0]

    @property
    def component_codes(self) -> NDArray[np.int32]:
        return self.rows.codes()[1]

    @property
    def components(self) -> list[str]:
        """Component names, indexed by ``component_codes``."""
        return self.rows.codes()[2]

    def component_targets(self) -> dict[str, float]:
        """Each component's latency target, from its first series that has one."""
        have = np.flatnonzero(~np.isnan(self.target_ms))
        names = self.components
        out: dict[str, float] = {}
        for c, t in zip(
            self.component_codes[have].tolist(), self.target_ms[have].tolist(), strict=True
        ):
            out.setdefault(names[c], t)
        return out

    def of_kind(self, *kinds: Kind) -> Positions:
        """Positions of the series of ``kinds``, in the table's order (read-only; worked out
        once for tables that share their ``Rows``)."""
        return self.rows.of_kind(*kinds)

    @property
    def ids(self) -> list[str]:
        return self.rows.ids

    def positions(self, ids: Sequence[str]) -> list[int]:
        """Where the series of ``ids`` are, in the table's order; unknown ids are skipped."""
        return self.rows.positions(ids)

    def named(self, name: str) -> F64:
        """A column by its name in ``COLUMNS``."""
        if name == "last":
            return self.last
        if name == "target_ms":
            return self.target_ms
        window, _, field = name.partition(".")
        return self.column(window, field)

    # --- objects -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, i: int) -> SeriesStats: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[SeriesStats]: ...
    def __getitem__(self, i: int | slice) -> SeriesStats | Sequence[SeriesStats]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self.keys)
        s = self._made.get(i)
        if s is None:
            s = self._made[i] = self._make(i)
        return s

    def __iter__(self) -> Iterator[SeriesStats]:
        for i in range(len(self.keys)):
            yield self[i]

    def __repr__(self) -> str:
        return f"SeriesTable({len(self)} series)"

    def _make(self, i: int) -> SeriesStats:
        key = self.keys[i]
        windows = {}
        cols = self.values[:, :, i].tolist()
        for (name, _), vals in zip(WINDOWS, cols, strict=True):
            c, r, p50, p90, p95, p99, p999, mean, lo, hi = (None if v != v else v for v in vals)
            windows[name] = WindowStats(c or 0.0, r or 0.0, p50, p90, p95, p99, p999, mean, lo, hi)
        last = float(self.last[i])
        target = float(self.target_ms[i])
        return SeriesStats(
            name=key.name,
            tags=key.tags,
            component=key.component,
            kind=key.kind,
            windows=windows,
            last=None if last != last else last,
            target_ms=None if target != target else target,
            history=self._charts(i) if self._charts is not None else (),
        )

    # --- JSON --------------------------------------------------------------------------------

    def json(self, history: bool, positions: Sequence[int] | None = None) -> str:
        """The series (those at ``positions``, all when None) as the JSON array
        ``Snapshot.to_dict`` would give, built from the columns: the same text as
        ``json.dumps`` of the objects, keys in the same order."""
        pos = np.arange(len(self.keys)) if positions is None else np.asarray(positions, int)
        if not pos.size:
            return "[]"
        vals = self.values[:, :, pos]
        names = [[f'"{f}":' for f in FIELDS] for _ in WINDOWS]
        windows = []
        for wi, (name, _) in enumerate(WINDOWS):
            cols = [_nums(vals[wi, f]) for f in range(len(FIELDS))]
            parts = names[wi]
            windows.append(
                [
                    f'"{name}":{{'
                    + ",".join([p + v for p, v in zip(parts, row, strict=True)])
                    + "}"
                    for row in zip(*cols, strict=True)
                ]
            )
        last = _nums(self.last[pos])
        target = _nums(self.target_ms[pos])
        out = []
        for j, i in enumerate(pos.tolist()):
            key = self.keys[i]
            tail = f'"last":{last[j]},"target_ms":{target[j]}'
            if history:
                pts = self[i].history if key.kind is Kind.DISTRIBUTION else ()
                tail += ',"history":' + _points(pts)
            out.append(
                f'{_head(key)}"windows":{{{windows[0][j]},{windows[1][j]},{windows[2][j]}}},'
                f"{tail}}}"
            )
        return "[" + ",".join(out) + "]"

    def columns_json(self, names: Sequence[str]) -> str:
        """``{"ids": [...], name: [...], ...}``: the named ``COLUMNS`` of every series, in the
        table's order, as one JSON object (a few numbers a series, for sorting and totals)."""
        parts = ['"ids":' + self.rows.ids_json]
        for name in names:
            parts.append(f"{json.dumps(name)}:[{','.join(_nums(self.named(name)))}]")
        return "{" + ",".join(parts) + "}"


def _nums(values: F64) -> list[str]:
    """Floats as JSON numbers (``float.__repr__``, as ``json.dumps`` writes them); NaN and
    infinities as null. The encoder's C loop writes them; the non-finite are then replaced."""
    if not values.size:
        return []
    out = json.dumps(values.tolist())[1:-1].split(", ")
    bad = ~np.isfinite(values)
    if bad.any():
        for i in np.flatnonzero(bad).tolist():
            out[i] = "null"
    return out


_HEADS: dict[SeriesKey, str] = {}


def _head(key: SeriesKey) -> str:
    """The JSON of a series' name, tags, component and kind, up to ``"windows"``."""
    h = _HEADS.get(key)
    if h is None:
        d = {
            "name": key.name,
            "tags": dict(key.tags) if key.tags else [],  # as Snapshot.to_dict writes them
            "component": key.component,
            "kind": key.kind.value,
        }
        h = json.dumps(d, separators=(",", ":"))[:-1] + ","
        if len(_HEADS) > 200_000:  # bounded: series come and go
            _HEADS.clear()
        _HEADS[key] = h
    return h


def _points(pts: Sequence[HistoryPoint]) -> str:
    """Chart points as JSON, four columns at a time (a chart view gives them as arrays)."""
    arrays = getattr(pts, "arrays", None)
    if arrays is not None:
        t, a, b, c = arrays()
    else:
        rows = [[p.t, *(np.nan if v is None else v for v in (p.p50, p.p95, p.p99))] for p in pts]
        t, a, b, c = np.array(rows, dtype=np.float64).reshape(-1, 4).T
    cols = [_nums(x) for x in (t, a, b, c)]
    return (
        "["
        + ",".join(
            [
                f'{{"t":{ti},"p50":{ai},"p95":{bi},"p99":{ci}}}'
                for ti, ai, bi, ci in zip(*cols, strict=True)
            ]
        )
        + "]"
    )


def as_table(series: Sequence[SeriesStats]) -> SeriesTable:
    """``series`` as a table (itself when it is one)."""
    return series if isinstance(series, SeriesTable) else SeriesTable.of(series)
