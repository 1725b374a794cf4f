"""Feeding the history and writing it: what the engine hands over waits in a pending list, and
``flush`` writes it all in one transaction.

Feeding is cheap and may happen on any thread: ``add_seconds`` (the Monitor hands over the
seconds its series closed), ``add_resources``, ``add_sensors`` and ``observe`` (findings) only
append to the pending list, bounded by ``MAX_PENDING`` (the oldest go first, counted in
``rows_dropped``). ``flush`` turns the list into rows of each layer's finest tier, merged per
interval, and upserts them; the writer thread (store.py) calls it every ``flush_interval_s``.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from vtmon.model import Kind, Resources, Sensors, SeriesKey, Snapshot
from vtmon.store.findings import Finding, FindingsTracker
from vtmon.store.history.file import HistoryFile
from vtmon.store.rollup import Row, align, encode_many, merge

MAX_PENDING = 500_000  # items waiting for the writer; beyond this the oldest are dropped

# A point already in the file (a second flushed twice, a rollup run again) merges with the new
# one by rollup.py's rules; maintenance.py's rollups write with it too.
UPSERT_POINTS = """
INSERT INTO points (series_id, res, t, n, total, lo, hi, last, sketch)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (series_id, res, t) DO UPDATE SET
    n = n + excluded.n,
    total = total + excluded.total,
    lo = min(lo, excluded.lo),
    hi = max(hi, excluded.hi),
    last = coalesce(excluded.last, last),
    sketch = merge_sketch(sketch, excluded.sketch)
"""

# Readings of the machine kept as gauge series: (layer, name, Resources field).
RESOURCE_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("system", "system.cpu", "cpu_percent"),
    ("system", "system.mem", "mem_percent"),
    ("system", "system.swap", "swap_percent"),
    ("system", "system.iowait", "iowait_percent"),
    ("system", "system.disk_read", "disk_read_rate"),
    ("system", "system.disk_write", "disk_write_rate"),
    ("system", "system.disk_read_iops", "disk_read_iops"),
    ("system", "system.disk_write_iops", "disk_write_iops"),
    ("system", "system.swap_in", "swap_in_rate"),
    ("system", "system.swap_out", "swap_out_rate"),
    ("network", "network.rx", "net_rx_rate"),
    ("network", "network.tx", "net_tx_rate"),
    ("network", "network.rx_packets", "net_rx_packets"),
    ("network", "network.tx_packets", "net_tx_packets"),
    ("network", "network.errors", "net_errors"),
)


def _json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


class HistoryWriter(HistoryFile):
    """The pending list and ``flush`` (see the module docstring)."""

    def _init_state(self) -> None:
        """The pending list (``HistoryFile.__init__`` calls this once)."""
        super()._init_state()
        self.rows_written = 0
        self.last_flush_s = 0.0  # how long the last flush took
        self._lock = threading.Lock()
        # ("s", closed seconds) | ("r", Resources) | ("h", Sensors, now), oldest first
        self._pending: list[tuple[Any, ...]] = []
        self._pending_n = 0  # items in _pending (a closed-seconds list counts its length)
        self._behind = False  # the pending list overflowed since the last good flush
        self._findings = FindingsTracker()  # Snapshots -> findings worth keeping (reports)

    # --- feeding (any thread; cheap) -----------------------------------------------------------

    @property
    def _accepting(self) -> bool:
        """False when nothing will ever be written (no file), so feeding costs nothing."""
        return not self.read_only and (self._conn is not None or bool(self._retry_at))

    def add_seconds(self, items: Iterable[tuple[SeriesKey, Kind, int, Any]]) -> None:
        """Seconds closed by the series (``SeriesStore.closed_seconds``)."""
        if self._accepting:
            items = items if isinstance(items, list) else list(items)
            if items:
                self._append(("s", items), len(items))

    def add_resources(self, r: Resources) -> None:
        """One reading of the machine."""
        if self._accepting:
            self._append(("r", r), 1)

    def add_sensors(self, s: Sensors, now: float) -> None:
        """One sensor reading taken at ``now``."""
        if self._accepting and not s.empty:
            self._append(("h", s, now), 1)

    def observe(self, snap: Snapshot) -> None:
        """A published Snapshot (the Monitor's thread): keeps what it adds to the findings
        (new bottlenecks, alerts, regressions; health once a minute), see findings.py."""
        if self._accepting:
            self.add_findings(self._findings.observe(snap))

    def add_findings(self, found: list[Finding]) -> None:
        """Findings to keep (``observe`` makes them from Snapshots)."""
        if self._accepting and found:
            self._append(("f", found), 1)

    def _append(self, entry: tuple[Any, ...], n: int) -> None:
        with self._lock:
            self._pending.append(entry)
            self._pending_n += n
            if self._pending_n <= MAX_PENDING:
                return
            while self._pending_n > MAX_PENDING and len(self._pending) > 1:
                old = self._pending.pop(0)
                k = len(old[1]) if old[0] == "s" else 1
                self._pending_n -= k
                self.rows_dropped += k
            self._behind = True
            self.warning = (
                f"History writes are falling behind; {self.rows_dropped} readings were "
                "dropped so far."
            )

    def flush(self) -> int:
        """Write everything pending in one transaction; returns the rows written."""
        with self._lock:
            pending, self._pending = self._pending, []
            n, self._pending_n = self._pending_n, 0
        if not pending:
            return 0
        if self._retry_at and self.clock.monotonic() < self._retry_at:
            self.rows_dropped += n  # still failing: keep memory bounded
            return 0
        if self._conn is None and self._retry_at:
            self._reopen()
        if self._conn is None:
            self.rows_dropped += n
            return 0
        t0 = time.perf_counter()
        rows = self._rows(pending)
        written = sum(len(points) for _, _, points in rows)
        found = [f for p in pending if p[0] == "f" for f in p[1]]
        try:
            with self._db_lock, self._transaction() as conn:
                self._write(conn, rows)
                if found:
                    conn.executemany(
                        "INSERT INTO findings (t, kind, component, data) VALUES (?, ?, ?, ?)",
                        [(f.t, f.kind, f.component, _json(f.data)) for f in found],
                    )
        except sqlite3.Error as e:
            self._failed(e, written)
            return 0
        self.last_flush_s = time.perf_counter() - t0
        self.rows_written += written
        if self._retry_at or self._behind:  # writing works (again): no more warning
            self._retry_at = 0.0
            self._behind = False
            self.warning = self.notice
        return written

    def _rows(self, pending: list[tuple[Any, ...]]) -> list[SeriesRows]:
        """Pending items as rows of each layer's finest tier, merged per interval, grouped by
        series; the sketches of all of them encoded in one pass (``encode_rows``)."""
        groups: dict[tuple[str, SeriesKey], dict[int, Any]] = {}
        app: dict[int, Any] | None
        app_res = self._tiers["application"][0].tier.res
        dist = Kind.DISTRIBUTION
        for p in pending:
            tag = p[0]
            if tag == "s":
                for key, kind, sec, payload in p[1]:
                    # a distribution's payload stays as it is (it has the sketch's six
                    # attributes); the other kinds become a Row
                    if kind is dist:
                        if payload.count <= 0:
                            continue
                        row = payload
                    elif (row := _payload_row(kind, payload)) is None:
                        continue
                    t = align(sec, app_res)
                    if (app := groups.get(("application", key))) is None:
                        groups["application", key] = {t: row}
                    elif (had := app.get(t)) is None:
                        app[t] = row
                    else:  # a correction of a second already pending
                        app[t] = [*had, row] if type(had) is list else [had, row]
            elif tag == "r":
                r: Resources = p[1]
                for layer, key, v in resource_values(r):
                    _put(groups, layer, key, align(r.t, self._tiers[layer][0].tier.res), v)
            elif tag == "h":
                _, s, now = p
                t = align(now, self._tiers["hardware"][0].tier.res)
                for key, v in sensor_values(s):
                    _put(groups, "hardware", key, t, v)
        out: list[SeriesRows] = []
        keys: list[np.ndarray] = []
        counts: list[np.ndarray] = []
        blob_of: list[list[Any]] = []  # the point each sketch's blob goes into
        for (layer, key), by_t in groups.items():
            res = self._tiers[layer][0].tier.res
            points: list[list[Any]] = []
            for t, got in by_t.items():
                one: Any = merge([_as_row(r) for r in got]) if type(got) is list else got
                point: list[Any]
                if type(one) is Row:
                    point = [res, t, one.n, one.sum, one.min, one.max, one.last, None]
                    if one.keys is not None and one.counts is not None:
                        keys.append(one.keys)
                        counts.append(one.counts)
                        blob_of.append(point)
                else:  # a sketch
                    point = [res, t, one.count, one.sum, one.min, one.max, None, None]
                    keys.append(one.keys)
                    counts.append(one.counts)
                    blob_of.append(point)
                points.append(point)
            out.append((layer, key, points))
        for point, blob in zip(blob_of, encode_many(keys, counts), strict=True):
            point[7] = blob
        return out

    def _write(self, conn: sqlite3.Connection, rows: list[SeriesRows]) -> None:
        last: list[tuple[int, int]] = []
        params = []
        first: dict[str, int] = {}
        for layer, key, points in rows:
            sid = self._series_id(conn, layer, key, points[0][1], create=True)
            assert sid is not None
            lo, hi = min(p[1] for p in points), max(p[1] + p[0] - 1 for p in points)
            last.append((hi, sid))
            if first.get(layer, lo + 1) > lo:
                first[layer] = lo
            params += [(sid, *p) for p in points]
        conn.executemany(UPSERT_POINTS, params)
        for layer, t in first.items():
            self._tiers[layer][0].wrote(t)
        conn.executemany("UPDATE series SET last_t = max(last_t, ?) WHERE id = ?", last)


# The rows of one series a flush writes: (layer, key, [res, t, n, sum, min, max, last, blob]).
SeriesRows = tuple[str, SeriesKey, list[list[Any]]]


def _put(
    groups: dict[tuple[str, SeriesKey], dict[int, Any]],
    layer: str,
    key: SeriesKey,
    t: int,
    v: float,
) -> None:
    """A reading of a gauge into ``groups`` (``_rows``)."""
    by_t = groups.setdefault((layer, key), {})
    had = by_t.get(t)
    row = Row.of_value(v)
    by_t[t] = row if had is None else [*had, row] if type(had) is list else [had, row]


def _as_row(r: Any) -> Row:
    """A Row, or a sketch as one."""
    return r if type(r) is Row else Row.of_sketch(r)


# --- conversions ---------------------------------------------------------------------------


def _payload_row(kind: Kind, payload: Any) -> Row | None:
    """A row of one second from a ``SeriesStore.closed_seconds`` payload."""
    if kind is Kind.DISTRIBUTION:
        return Row.of_sketch(payload) if payload.count > 0 else None
    if kind is Kind.COUNTER:
        v = float(payload)
        return Row(1.0, v, v, v) if math.isfinite(v) else None
    if kind is Kind.GAUGE:
        n, total, lo, hi, last = payload
        return Row(float(n), total, lo, hi, last) if n else None
    n = float(payload)
    return Row(1.0, n, n, n, n) if n else None


def resource_values(r: Resources) -> Iterator[tuple[str, SeriesKey, float]]:
    """The gauge series a resource reading feeds: ``(layer, key, value)``."""
    for layer, name, attr in RESOURCE_FIELDS:
        v = getattr(r, attr)
        if v is not None and math.isfinite(v):
            yield layer, SeriesKey(name, (), Kind.GAUGE), float(v)
    if r.mem_total:  # 0 when memory could not be read
        yield "system", SeriesKey("system.mem_used", (), Kind.GAUGE), float(r.mem_used)
    if r.load is not None:
        yield "system", SeriesKey("system.load1", (), Kind.GAUGE), float(r.load[0])
    for p in r.pressure:
        yield "system", SeriesKey(f"system.pressure.{p.resource}", (), Kind.GAUGE), p.some_avg10
    for d in r.disks:
        key = SeriesKey("system.disk_used", (("mount", d.mount),), Kind.GAUGE)
        yield "system", key, float(d.percent)
    proc = r.process
    if proc is not None and proc.running:
        tags = (("pid", str(proc.pid)),)
        if proc.cpu_percent is not None:
            yield "system", SeriesKey("system.process.cpu", tags, Kind.GAUGE), proc.cpu_percent
        if proc.rss is not None:
            yield "system", SeriesKey("system.process.rss", tags, Kind.GAUGE), float(proc.rss)


def sensor_values(s: Sensors) -> Iterator[tuple[SeriesKey, float]]:
    """The gauge series a sensor reading feeds (all in the hardware layer)."""
    for t in s.temperatures:
        tags = (("chip", t.chip), ("label", t.label))
        yield SeriesKey("hardware.temperature", tags, Kind.GAUGE), t.current
    for f in s.fans:
        yield SeriesKey("hardware.fan", (("chip", f.chip), ("label", f.label)), Kind.GAUGE), f.rpm
    for p in s.power:
        tags = (("label", p.label), ("source", p.source))
        yield SeriesKey("hardware.power", tags, Kind.GAUGE), p.watts
    if s.battery is not None:
        yield SeriesKey("hardware.battery", (), Kind.GAUGE), s.battery.percent
