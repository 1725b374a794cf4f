"""Reading the history: statistics of a series over a range at a chosen resolution, the series
stored, the machine's readings, chart seeds after a restart, and for reports merged points,
histograms, findings and the journal's actions.

Every public query goes through ``_guarded``: it never raises to a screen or a report. A range
is read from the tiers that hold it (``_sources``): the coarsest not coarser than the asked
resolution where rollups reached, finer ones for the recent part, coarser ones for what
retention removed.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from vtmon.model import HistoryPoint, Kind, SeriesKey
from vtmon.sketch import key_values
from vtmon.store.findings import Finding
from vtmon.store.history.file import HistoryFile, is_corrupt, reason_of
from vtmon.store.rollup import LAYERS, Row, merge, point, sliding_quantiles

log = logging.getLogger(__name__)
_T = TypeVar("_T")

MAX_POINTS = 1000  # the default query resolution keeps a range under this many points
HISTORY_WINDOW_S = 10  # chart points are percentiles of the 10 s window (SeriesStore)

# Columns of ``resources()``: column -> (layer, series name)
RESOURCE_COLUMNS: dict[str, tuple[str, str]] = {
    "cpu": ("system", "system.cpu"),
    "mem": ("system", "system.mem"),
    "disk_read": ("system", "system.disk_read"),
    "disk_write": ("system", "system.disk_write"),
    "net_rx": ("network", "network.rx"),
    "net_tx": ("network", "network.tx"),
    "psi_cpu": ("system", "system.pressure.cpu"),
    "psi_memory": ("system", "system.pressure.memory"),
    "psi_io": ("system", "system.pressure.io"),
}


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """A stored series: what ``series()`` lists."""

    key: SeriesKey
    layer: str
    component: str
    first: int  # first and last second with data
    last: int


def _tags_of(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in json.loads(text))


class HistoryQueries(HistoryFile):
    """The read methods (see the module docstring)."""

    def _sources(
        self, layer: str, start: float, end: float, res: int
    ) -> list[tuple[int, int, int]]:
        """Which tier to read for which part of ``[start, end)``: ``(tier res, lo, hi)``.

        The coarsest tier not coarser than ``res`` where it has been rolled up; finer tiers for
        the recent part not rolled into it yet; coarser tiers for what its retention removed.
        """
        states = self._tiers[layer]
        inf = math.inf
        his = [inf] + [(s.rolled_upto if s.rolled_upto is not None else -inf) for s in states[1:]]
        los = [(s.kept_from if s.kept_from is not None else -inf) for s in states]
        c = max([i for i, s in enumerate(states) if s.tier.res <= res] or [0])
        segs: list[tuple[int, float, float]] = []
        for i in range(c):
            segs.append((i, max(his[i + 1], los[i]), his[i]))
        segs.append((c, los[c], his[c]))
        edge = min((lo for _, lo, hi in segs if lo < hi), default=inf)
        for j in range(c + 1, len(states)):
            lo, hi = los[j], min(his[j], edge)
            segs.append((j, lo, hi))
            if lo < hi:
                edge = lo
        out = []
        for i, lo, hi in segs:
            tres = states[i].tier.res
            # whole stored intervals: one overlapping the start of the range counts
            lo, hi = max(lo, math.ceil(start) - tres + 1), min(hi, end)
            if lo < hi:
                out.append((tres, int(math.ceil(lo)), int(math.ceil(hi))))
        return out

    def _guarded(self, fn: Callable[[], _T], empty: _T) -> _T:
        """A query never raises to a screen or a report: a damaged file answers nothing, and
        a failed query has the file checked (``check``: moved aside when it is damaged)."""
        try:
            return fn()
        except (sqlite3.Error, ValueError) as e:
            log.warning("a history query failed (%s); answered with no data", e)
            if isinstance(e, sqlite3.Error):
                if self.read_only and is_corrupt(e):
                    self._damaged(reason_of(e))
                else:
                    self.check()
            return empty

    def _key_rows(
        self, layer: str, key: SeriesKey, start: float, end: float, res: int
    ) -> list[tuple[int, int, Row]]:
        """``(t, row res, row)`` of one series over ``[start, end)`` as ``_sources`` picks."""
        return self._guarded(lambda: self._key_rows_q(layer, key, start, end, res), [])

    def _key_rows_q(
        self, layer: str, key: SeriesKey, start: float, end: float, res: int
    ) -> list[tuple[int, int, Row]]:
        if self._conn is None:
            return []
        out: list[tuple[int, int, Row]] = []
        with self._db_lock:
            conn = self._conn
            if conn is None:
                return []
            sid = self._series_id(conn, layer, key)
            if sid is None:
                return []
            for tres, lo, hi in self._sources(layer, start, end, res):
                out.extend((t, tres, row) for t, row in self._read(conn, sid, tres, lo, hi))
        out.sort(key=lambda x: x[0])
        return out

    def resolution_for(self, layer: str, start: float, end: float) -> int:
        """The finest resolution that gives at most ``MAX_POINTS`` points over the range: a
        multiple of the coarsest stored resolution not above it (1 day: 2 min, from 1 min
        points)."""
        want = max(1, math.ceil(max(end - start, 1.0) / MAX_POINTS))
        return self._res(layer, start, end, want, up=True)

    def points(
        self,
        key: SeriesKey,
        start: float,
        end: float,
        resolution: int | None = None,
        layer: str = "application",
    ) -> list[dict[str, float | None]]:
        """Statistics of one series over ``[start, end)``, one point per ``resolution``
        seconds (made a multiple of the stored resolutions below it; default: the finest that
        gives at most ``MAX_POINTS`` points, see ``resolution_for``).

        Every point has ``t`` and ``res`` (the seconds it covers: the requested resolution,
        or the stored one where only coarser points are left) and, by kind: distribution
        ``count, sum, mean, min, max, p50, p90, p95, p99, p999``; counter ``count`` (sum of
        increments) and ``rate`` (per second); gauge ``count, mean, min, max, last``; set
        ``count`` (unique members in a second; the largest second of the point) and ``mean``.
        Stored intervals are never split: one that overlaps either end of the range counts
        whole, so with coarse (old) data a point may start before ``start``.
        """
        return self.merged_points([key], start, end, resolution, layer)

    def _res(
        self, layer: str, start: float, end: float, resolution: int | None, up: bool = False
    ) -> int:
        """``resolution`` as a multiple of the coarsest tier not above it (rounded down, or
        up with ``up``), so that every point is made of whole stored points."""
        if resolution is None:
            return self.resolution_for(layer, start, end)
        finest = self._tiers[layer][0].tier.res
        res = max(int(resolution), finest)
        for s in reversed(self._tiers[layer]):
            r = s.tier.res
            if r <= res:
                return -(-res // r) * r if up else res - res % r
        return res

    def summary(
        self, key: SeriesKey, start: float, end: float, layer: str = "application"
    ) -> dict[str, float | None] | None:
        """One point merging the whole of ``[start, end)`` (report tables); None without data.
        Percentiles stay within 1 % of the sample of that rank however long the range."""
        rows = [row for _, _, row in self._key_rows(layer, key, start, end, 2**62)]
        if not rows:
            return None
        return point(key.kind.value, float(start), float(end - start), merge(rows))

    def series(self, start: float, end: float, layer: str | None = None) -> list[SeriesInfo]:
        """The series with data in ``[start, end)``, by layer, component and name."""
        return self._guarded(lambda: self._series_q(start, end, layer), [])

    def _series_q(self, start: float, end: float, layer: str | None) -> list[SeriesInfo]:
        if self._conn is None:
            return []
        q = (
            "SELECT layer, kind, name, tags, component, first_t, last_t FROM series "
            "WHERE first_t < ? AND last_t >= ?"
        )
        args: list[Any] = [end, start]
        if layer is not None:
            q += " AND layer = ?"
            args.append(layer)
        with self._db_lock:
            if self._conn is None:
                return []
            found = self._conn.execute(q, args).fetchall()
        out = [
            SeriesInfo(SeriesKey(name, _tags_of(tags), Kind(kind)), lay, comp, first, last)
            for lay, kind, name, tags, comp, first, last in found
        ]
        out.sort(key=lambda s: (LAYERS.index(s.layer), s.component, s.key.name, s.key.tags))
        return out

    def resources(
        self, start: float, end: float, resolution: int | None = None
    ) -> dict[str, list[float | None]]:
        """Resource history over ``[start, end)``: lists ``t`` and, per point (the mean of the
        readings in it), ``cpu``, ``mem`` (percent), ``disk_read``, ``disk_write``, ``net_rx``,
        ``net_tx`` (bytes/s), ``psi_cpu``, ``psi_memory``, ``psi_io`` (percent stalled, some
        avg10). None where nothing was read."""
        layers = ("system", "network")
        if resolution is None:
            res = max(self.resolution_for(lay, start, end) for lay in layers)
        else:
            res = max(self._res(lay, start, end, resolution, up=True) for lay in layers)
        # one grid for both layers: a resolution made of whole points of each
        while any(self._res(lay, start, end, res) != res for lay in layers):
            res += self._tiers["system"][0].tier.res
        cols: dict[str, dict[float | None, float | None]] = {}
        for col, (layer, name) in RESOURCE_COLUMNS.items():
            pts = self.points(SeriesKey(name, (), Kind.GAUGE), start, end, res, layer)
            cols[col] = {p["t"]: p["mean"] for p in pts}
        ts = sorted({t for c in cols.values() for t in c if t is not None})
        out: dict[str, list[float | None]] = {"t": list(ts)}
        for col, vals in cols.items():
            out[col] = [vals.get(t) for t in ts]
        return out

    def recent_history(self, now: float, seconds: int = 300) -> dict[SeriesKey, list[HistoryPoint]]:
        """Chart points of every distribution with data in the ``seconds`` before ``now``:
        per second, p50/p95/p99 of the 10 s window ending there (what ``record_history``
        would have drawn), oldest first. Used to seed the charts after a restart."""
        return self._guarded(lambda: self._recent_history_q(now, seconds), {})

    def _recent_history_q(self, now: float, seconds: int) -> dict[SeriesKey, list[HistoryPoint]]:
        if self._conn is None:
            return {}
        now_s = math.floor(now)
        first = now_s - seconds
        res = self._tiers["application"][0].tier.res
        out: dict[SeriesKey, list[HistoryPoint]] = {}
        qs = (0.5, 0.95, 0.99)
        with self._db_lock:
            conn = self._conn
            if conn is None:
                return {}
            found = conn.execute(
                "SELECT id, name, tags FROM series WHERE layer = 'application' "
                "AND kind = 'distribution' AND last_t >= ?",
                (first - HISTORY_WINDOW_S,),
            ).fetchall()
            for sid, name, tags in found:
                rows = dict(self._read(conn, sid, res, first - HISTORY_WINDOW_S, now_s))
                if not rows:
                    continue
                # up to the last second with data: nothing was drawn while vtmon was down
                lo, hi = max(first, min(rows)), max(rows) + 1
                pts = [
                    HistoryPoint(t=float(sec), p50=p50, p95=p95, p99=p99)
                    for sec, (p50, p95, p99) in sliding_quantiles(
                        rows, lo, hi, HISTORY_WINDOW_S, qs
                    )
                ]
                if pts:
                    key = SeriesKey(name, _tags_of(tags), Kind.DISTRIBUTION)
                    out[key] = pts
        return out

    # --- reading for reports (vtmon/report) ---------------------------------------------------

    def merged_points(
        self,
        keys: Iterable[SeriesKey],
        start: float,
        end: float,
        resolution: int | None = None,
        layer: str = "application",
    ) -> list[dict[str, float | None]]:
        """``points`` of several series of one kind merged into one (a component's latency
        distributions, say): each point holds every sample of every key in its interval."""
        keys = list(keys)
        if not keys:
            return []
        res = self._res(layer, start, end, resolution)
        buckets: dict[int, tuple[int, list[Row]]] = {}
        for key in keys:
            for t, tres, row in self._key_rows(layer, key, start, end, res):
                b = t - t % res if tres <= res else t
                cur = buckets.get(b)
                if cur is None:
                    buckets[b] = (max(tres, res), [row])
                else:
                    cur[1].append(row)
        kind = keys[0].kind.value
        return [
            point(kind, float(t), float(r), merge(rows)) for t, (r, rows) in sorted(buckets.items())
        ]

    def histogram(
        self,
        keys: Iterable[SeriesKey],
        start: float,
        end: float,
        bins: int = 40,
        layer: str = "application",
    ) -> list[tuple[float, float, float]]:
        """How the values of the distributions ``keys`` over ``[start, end)`` spread:
        ``(lower, upper, count)`` for ``bins`` bins between the smallest and the largest value,
        of equal width on a log scale (linear when values reach 0). Counted from the merged
        sketch buckets, so a value may sit in the neighbouring bin by up to 1 %."""
        rows = [r for k in keys for _, _, r in self._key_rows(layer, k, start, end, 2**62)]
        if not rows:
            return []
        m = merge(rows)
        if m.keys is None or m.counts is None or not m.keys.size or m.n <= 0:
            return []
        values = key_values(m.keys)
        lo = m.min if math.isfinite(m.min) else float(values.min())
        hi = m.max if math.isfinite(m.max) else float(values.max())
        if hi <= lo:
            return [(lo, hi, float(m.counts.sum()))]
        edges = np.geomspace(lo, hi, bins + 1) if lo > 0 else np.linspace(lo, hi, bins + 1)
        idx = np.clip(
            np.searchsorted(edges, np.clip(values, lo, hi), side="right") - 1, 0, bins - 1
        )
        sums = np.bincount(idx, weights=m.counts, minlength=bins)
        return [(float(edges[i]), float(edges[i + 1]), float(sums[i])) for i in range(bins)]

    def findings(
        self,
        start: float | None = None,
        end: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[Finding]:
        """The findings (vtmon/store/findings.py) with ``start <= t < end``, oldest first;
        ``kinds`` limits them to those kinds."""
        return self._guarded(lambda: self._findings_q(start, end, kinds), [])

    def _findings_q(
        self, start: float | None, end: float | None, kinds: Iterable[str] | None
    ) -> list[Finding]:
        q = "SELECT t, kind, component, data FROM findings WHERE 1"
        args: list[Any] = []
        if start is not None:
            q += " AND t >= ?"
            args.append(start)
        if end is not None:
            q += " AND t < ?"
            args.append(end)
        if kinds is not None:
            ks = list(kinds)
            q += f" AND kind IN ({','.join('?' * len(ks))})"
            args.extend(ks)
        with self._db_lock:
            if self._conn is None:
                return []
            found = self._conn.execute(q + " ORDER BY t, rowid", args).fetchall()
        out = []
        for t, kind, comp, data in found:
            try:
                d = json.loads(data)
            except ValueError:
                continue
            if isinstance(d, dict):
                out.append(Finding(float(t), kind, comp, d))
        return out

    def actions_between(self, start: float, end: float) -> list[dict[str, Any]]:
        """The tuning actions in the journal (the ``actions`` table) proposed before ``end``
        and proposed, applied, decided or reverted at ``start`` or later, or still in effect;
        oldest first. Each is the action's fields (vtmon.model.TuningAction) as last
        recorded, with ``reverted`` and ``decision``."""
        return self._guarded(lambda: self._actions_q(start, end), [])

    def _actions_q(self, start: float, end: float) -> list[dict[str, Any]]:
        with self._db_lock:
            if self._conn is None:
                return []
            cur = self._conn.execute("SELECT * FROM actions WHERE proposed < ? ORDER BY id", (end,))
            names = [d[0] for d in cur.description]
            found = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        out = []
        for row in found:
            a: dict[str, Any] = {}
            try:
                a = json.loads(row.get("action") or "{}")
            except ValueError:
                pass
            a = a if isinstance(a, dict) else {}
            a.update(
                id=f"a{row['id']}",
                strategy=row["strategy"],
                actuator=row["target_kind"],
                target=row["target"],
                component=row["component"] or a.get("component", ""),
                state=row["state"],
                decision=row["decision"],
                metric=row["metric"] or a.get("metric", ""),
                before=row["before_value"],
                after=row["after_value"],
                effectiveness=row["effectiveness"],
                proposed_at=row["proposed"],
                applied_at=row["applied"],
                reverted=row["reverted"],
            )
            if row.get("note"):
                a["message"] = row["note"]
            if row.get("bottleneck"):
                a["bottleneck"] = row["bottleneck"]
            times = (a.get("proposed_at"), a.get("applied_at"), a.get("reverted"))
            last = max((x for x in (*times, a.get("decided_at")) if x is not None), default=0.0)
            if last >= start or row.get("in_effect"):
                out.append(a)
        return out
