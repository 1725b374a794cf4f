"""Keeping the history within its bounds: rollups of finished intervals into coarser tiers,
retention per tier and per layer, and the size bound on the file (vtmon/store/bound.py).

``maintain`` does all three; the writer thread (store.py) runs it every ``rollup_interval_s``
and once as it starts, to catch up after a long stop. Layout, resolutions and the rollup
schedule: docs/history.md.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time

from vtmon.model import RING_S
from vtmon.store.bound import (
    CLEAR_BELOW,
    MIN_KEEP_S,
    TRIM_TO,
    VACUUM_STEP_PAGES,
    TrimStats,
    next_cutoff,
    next_step,
    on_disk,
    trim_notice,
)
from vtmon.store.history.file import TierState, is_corrupt, readable, reason_of
from vtmon.store.history.writer import UPSERT_POINTS, HistoryWriter
from vtmon.store.rollup import LAYERS, CorruptBlob, align, roll_up

log = logging.getLogger(__name__)

LATE_S = RING_S  # timed samples may correct seconds this old (see SeriesStore)
# A rollup reads the points of this many series at most at a time (one query's IN list), and
# fewer when they would hold more than ROLL_POINTS points: memory stays bounded when a long
# stop is caught up.
ROLL_IDS = 500
ROLL_POINTS = 200_000


class HistoryMaintenance(HistoryWriter):
    """Rollups, retention and the size bound (see the module docstring)."""

    def _init_state(self) -> None:
        """The trim state (``HistoryFile.__init__`` calls this once)."""
        super()._init_state()
        self._trim_notice = ""  # the notice that history is being trimmed, while it holds
        self._no_vacuum = False  # VACUUM failed (no room for its copy): not tried again
        self.last_trim: TrimStats | None = None  # what the last trim did (bench/store.py)

    # --- rollups and retention --------------------------------------------------------------

    def maintain(self, now: float | None = None) -> None:
        """Roll finished intervals into the coarser tiers, then drop what is past each tier's
        keep time and series past their layer's retention, then keep the file within its size
        bound (deleting the oldest points and vacuuming, see _keep_bound)."""
        if self._conn is None or self.read_only:
            return
        now = self.clock.time() if now is None else now
        try:
            with self._db_lock:
                for layer in LAYERS:
                    with self._transaction() as conn:
                        self._roll_layer(conn, layer, now)
                    with self._transaction() as conn:
                        self._expire_layer(conn, layer, now)
                keep = max(self.retention.retention_s(layer) for layer in LAYERS)
                with self._transaction() as conn:  # findings: as long as any layer keeps data
                    conn.execute("DELETE FROM findings WHERE t < ?", (now - keep,))
            self._keep_bound(now)
        except sqlite3.Error as e:
            self._failed(e, 0)

    # --- the size bound (vtmon/store/bound.py) ----------------------------------------------

    def _keep_bound(self, now: float) -> None:
        """Keep the file with its WAL within ``max_bytes``: trim the oldest points and give the
        space back, in steps that let go of the lock in between (chart reads get in)."""
        assert self.path is not None
        size = on_disk(self.path)
        if size > self.max_bytes:
            t0 = time.perf_counter()
            stats = self.last_trim = TrimStats(before=size)
            finest, floor_reached = self._trim(now, int(TRIM_TO * self.max_bytes), stats)
            self._give_back(stats)
            stats.after = on_disk(self.path)
            stats.seconds = time.perf_counter() - t0
            log.info(
                "trimmed %s from %d to %d bytes in %.1f s (%d steps, %d vacuum steps)",
                self.path, stats.before, stats.after, stats.seconds, stats.steps,
                stats.vacuum_steps,
            )  # fmt: skip
            if finest is not None or floor_reached:
                self._say_trimmed(trim_notice(self.max_bytes, finest, floor_reached))
                return
        if self._trim_notice and self._used_bytes() < CLEAR_BELOW * self.max_bytes:
            self._say_trimmed("")  # retention keeps it well within the bound again

    def _used_bytes(self) -> int:
        """Bytes of the pages in use (the file less its free pages)."""
        with self._db_lock:
            conn = self._conn
            if conn is None:
                return 0
            (page,) = conn.execute("PRAGMA page_size").fetchone()
            (count,) = conn.execute("PRAGMA page_count").fetchone()
            (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        return int((count - free) * page)

    def _trim(self, now: float, target: int, stats: TrimStats) -> tuple[int | None, bool]:
        """Delete the oldest points, whatever their layer, until the pages in use take
        ``target`` bytes or only the last ``MIN_KEEP_S`` are left, a transaction a step.
        Returns the finest resolution that lost points, and whether the last minutes alone
        are still above the target."""
        used = self._used_bytes()
        floor = int(now) - MIN_KEEP_S
        with self._db_lock:
            conn = self._conn
            if conn is None or used <= target:
                return None, False
            oldest = min(self._oldest(conn, lay, st) for lay in LAYERS for st in self._tiers[lay])
        if not math.isfinite(oldest):
            return None, False
        cutoff = int(oldest)
        step = (floor - cutoff) / 64
        finest: int | None = None
        while used > target and cutoff < floor:
            nxt = next_cutoff(cutoff, floor, step)
            t0 = time.perf_counter()
            with self._db_lock, self._transaction() as conn:
                lost = self._cut_all(conn, nxt)
            stats.longest_step_s = max(stats.longest_step_s, time.perf_counter() - t0)
            stats.steps += 1
            if lost is not None and (finest is None or lost < finest):
                finest = lost
            left = self._used_bytes()
            step = next_step(nxt - cutoff, used - left, left - target)
            used, cutoff = left, nxt
            self.flush()  # what arrived meanwhile, so the pending list stays short
        return finest, used > target

    def _cut_all(self, conn: sqlite3.Connection, cutoff: int) -> int | None:
        """Delete every point that starts before ``cutoff`` in every tier of every layer, the
        series left without any and the findings before it; returns the finest resolution
        that lost points."""
        finest: int | None = None
        for layer, states in self._tiers.items():
            for st in states:
                if self._cut(conn, layer, st, cutoff) and (finest is None or st.tier.res < finest):
                    finest = st.tier.res
                self._kept(conn, layer, st, cutoff)
            self._drop_series(conn, layer, cutoff)
        conn.execute("UPDATE series SET first_t = ? WHERE first_t < ?", (cutoff, cutoff))
        conn.execute("DELETE FROM findings WHERE t < ?", (cutoff,))
        return finest

    def _give_back(self, stats: TrimStats) -> None:
        """Return the free pages to the file system, ``VACUUM_STEP_PAGES`` at a time, then fold
        the WAL in. A file made before vtmon did this (no incremental vacuum) is rewritten once
        by VACUUM, which switches it, holding the file for longer and needing as much room
        again on the disk meanwhile (docs/performance.md); if that fails the trimmed space is
        only reused."""
        with self._db_lock:
            conn = self._conn
            if conn is None:
                return
            (mode,) = conn.execute("PRAGMA auto_vacuum").fetchone()
            if mode != 2:
                if self._no_vacuum:
                    return
                t0 = time.perf_counter()
                try:
                    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                    conn.execute("VACUUM")
                    stats.vacuum_steps += 1
                    stats.longest_vacuum_s = time.perf_counter() - t0
                except sqlite3.Error as e:
                    if is_corrupt(e):
                        raise
                    self._no_vacuum = True
                    log.warning("cannot give %s's free space back (%s)", self.path, reason_of(e))
                    return
            (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        for _ in range(free // VACUUM_STEP_PAGES + 1):
            with self._db_lock:
                conn = self._conn
                if conn is None:
                    return
                (left,) = conn.execute("PRAGMA freelist_count").fetchone()
                if not left:
                    break
                t0 = time.perf_counter()
                # executescript steps the pragma to its end; execute() frees a single page
                conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_STEP_PAGES});")
                stats.longest_vacuum_s = max(stats.longest_vacuum_s, time.perf_counter() - t0)
                stats.vacuum_steps += 1
        with self._db_lock:
            if self._conn is not None:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _say_trimmed(self, text: str) -> None:
        """The trim notice: shown as the Snapshot's ``store_warning`` unless something that
        matters more is (history not saved, a file moved aside)."""
        old, self._trim_notice = self._trim_notice, text
        if text == old:
            return
        if text:
            log.warning("%s", text)
        if self.notice in ("", old):
            self.notice = text
        if self.warning in ("", old):
            self.warning = text

    def _lag(self, layer: str) -> float:
        """How far behind now rollups into a layer's second tier stay: a point of its finest
        tier may still grow until then (flush delay, its own length, late timed samples)."""
        base = self._tiers[layer][0].tier.res
        late = LATE_S if layer == "application" else 0
        return 2 * self.retention.flush_interval_s + base + late + 5

    def _roll_layer(self, conn: sqlite3.Connection, layer: str, now: float) -> None:
        states = self._tiers[layer]
        for i in range(1, len(states)):
            src, dst = states[i - 1], states[i]
            res = dst.tier.res
            if i == 1:
                upto = align(now - self._lag(layer), res)
            else:
                if src.rolled_upto is None:
                    break
                upto = align(src.rolled_upto, res)
            frm = dst.rolled_upto
            if frm is None:
                oldest = self._oldest(conn, layer, src)
                if not math.isfinite(oldest):
                    continue  # nothing to roll yet: start from the first point when it comes
                frm = align(oldest, res)
            if upto <= frm:
                continue
            first = self._roll(conn, layer, src.tier.res, res, frm, upto)
            if first is not None:
                dst.wrote(first)
            dst.rolled_upto = upto
            conn.execute(
                "UPDATE tiers SET rolled_upto = ? WHERE layer = ? AND res = ?", (upto, layer, res)
            )

    def _roll(
        self, conn: sqlite3.Connection, layer: str, src: int, res: int, frm: int, upto: int
    ) -> int | None:
        """Merge the ``src`` points in ``[frm, upto)`` into ``res`` points; returns the first
        second of the earliest point written (None: none). The series are read a batch at a
        time (``ROLL_POINTS`` points at most) and each batch is merged in one pass."""
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM series WHERE layer = ? AND last_t >= ?", (layer, frm)
            ).fetchall()
        ]
        step = max(1, min(ROLL_IDS, ROLL_POINTS * src // max(upto - frm, src)))
        first: int | None = None
        for i in range(0, len(ids), step):
            part = ids[i : i + step]
            points = conn.execute(
                "SELECT series_id, t, n, total, lo, hi, last, sketch FROM points "
                f"WHERE series_id IN ({','.join('?' * len(part))}) AND res = ? AND t >= ? "
                "AND t < ? ORDER BY series_id, t",
                (*part, src, frm, upto),
            ).fetchall()
            try:
                merged = roll_up(points, res)
            except CorruptBlob:
                merged = roll_up(readable(points), res)
            if not merged:
                continue
            low = min(p[2] for p in merged)
            first = low if first is None else min(first, low)
            conn.executemany(UPSERT_POINTS, merged)
        return first

    def _oldest(self, conn: sqlite3.Connection, layer: str, st: TierState) -> float:
        """The first second of the tier's oldest point (inf when it has none), looked up once
        and then kept up to date by writes and retention. One index seek per series written
        since the tier's retention cutoff: series idle since then have no point left in it."""
        if st.oldest is None:
            (t,) = conn.execute(
                "SELECT min((SELECT min(t) FROM points WHERE series_id = s.id AND res = ?)) "
                "FROM series s WHERE s.layer = ? AND s.last_t >= ?",
                (st.tier.res, layer, st.kept_from if st.kept_from is not None else -(2**62)),
            ).fetchone()
            st.oldest = math.inf if t is None else t
        return st.oldest

    def _expire_layer(self, conn: sqlite3.Connection, layer: str, now: float) -> None:
        states = self._tiers[layer]
        for i, st in enumerate(states):
            cutoff = now - st.tier.keep_s
            if i + 1 < len(states):
                nxt = states[i + 1]
                cutoff = min(align(cutoff, nxt.tier.res), nxt.rolled_upto or -math.inf)
            else:
                cutoff = align(cutoff, st.tier.res)
            if not math.isfinite(cutoff) or (st.kept_from is not None and cutoff <= st.kept_from):
                continue
            cutoff = int(cutoff)
            self._cut(conn, layer, st, cutoff)
            self._kept(conn, layer, st, cutoff)
        self._drop_series(conn, layer, now - self.retention.retention_s(layer))

    def _drop_series(self, conn: sqlite3.Connection, layer: str, before: float) -> None:
        """Delete the series of ``layer`` with nothing after ``before``, with their points."""
        old = [  # the index on (layer, last_t) finds them without a look at the others
            r[0]
            for r in conn.execute(
                "SELECT id FROM series WHERE layer = ? AND last_t < ?", (layer, before)
            ).fetchall()
        ]
        if old:
            conn.executemany("DELETE FROM points WHERE series_id = ?", [(i,) for i in old])
            conn.executemany("DELETE FROM series WHERE id = ?", [(i,) for i in old])
            dead = set(old)
            self._ids = {k: v for k, v in self._ids.items() if v not in dead}

    @staticmethod
    def _kept(conn: sqlite3.Connection, layer: str, st: TierState, cutoff: int) -> None:
        """The tier keeps nothing before ``cutoff`` from now on (in memory and in the file)."""
        if st.kept_from is None or st.kept_from < cutoff:
            st.kept_from = cutoff
            conn.execute(
                "UPDATE tiers SET kept_from = ? WHERE layer = ? AND res = ?",
                (cutoff, layer, st.tier.res),
            )

    def _cut(self, conn: sqlite3.Connection, layer: str, st: TierState, cutoff: int) -> int:
        """Delete the tier's points that start before ``cutoff``; nothing at all to do (not even
        a look at each series) when its oldest point is not older. Returns the points deleted."""
        oldest = self._oldest(conn, layer, st)
        if oldest >= cutoff:
            return 0
        cur = conn.execute(
            "DELETE FROM points WHERE series_id IN "
            "(SELECT id FROM series WHERE layer = ? AND last_t >= ?) AND res = ? AND t < ?",
            (layer, oldest, st.tier.res, cutoff),
        )
        # What is left starts at the cutoff or later; when nothing was there, where exactly is
        # looked up the next time, so that a tier whose points are all newer is left alone.
        st.oldest = cutoff if cur.rowcount > 0 else None
        return max(cur.rowcount, 0)
