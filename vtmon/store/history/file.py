"""The history store: one SQLite file (WAL mode) that keeps every series and the machine's
readings across restarts, at coarser resolutions as they age, within a retention per layer.

Feeding it is cheap and may happen on any thread: ``add_seconds`` (the Monitor hands over the
seconds its series closed), ``add_resources`` and ``add_sensors`` only append to a pending
list. A writer thread (``start``) writes the pending list every ``flush_interval_s`` in one
transaction and runs rollups and retention every ``rollup_interval_s``, so a slow disk never
delays a Snapshot and a SIGKILL loses at most one flush interval. Tests call ``flush`` and
``maintain`` themselves with an injected clock.

When the file cannot be used the store keeps vtmon running: a corrupt or unreadable file is
moved aside (``vtmon.db.corrupt-<UTC time>``) and a fresh one started (damage inside the file
is looked for with ``PRAGMA quick_check`` as the writer starts and after a query fails, see
``check``); a folder that cannot be
written, a full disk or a read-only file leaves history in memory only, with ``warning``
saying so in one sentence (the Snapshot carries it as ``store_warning``). Writes are retried
every ``RETRY_S``, so history resumes once the disk has room again.

Layout, resolutions and the rollup schedule: docs/history.md. What a row holds and how rows
merge: ``vtmon.store.rollup``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from vtmon.clock import Clock, SystemClock
from vtmon.config import RetentionConfig
from vtmon.files import ForeignFolder, private_file, private_folder
from vtmon.model import RING_S, HistoryPoint, Kind, Resources, Sensors, SeriesKey, Snapshot
from vtmon.sketch import key_values
from vtmon.store.bound import (
    CLEAR_BELOW,
    MIN_KEEP_S,
    TRIM_TO,
    VACUUM_STEP_PAGES,
    TrimStats,
    next_cutoff,
    next_step,
    on_disk,
    size_bound,
    trim_notice,
)
from vtmon.store.findings import Finding, FindingsTracker
from vtmon.store.rollup import (
    LAYERS,
    CorruptBlob,
    Row,
    Tier,
    decode,
    merge,
    merge_blobs,
    point,
    sliding_quantiles,
    tiers_for,
)
from vtmon.store.schema import HISTORY_SCHEMA, SCHEMA_VERSION

log = logging.getLogger(__name__)
_T = TypeVar("_T")

DB_NAME = "vtmon.db"
CACHE_KIB = 512  # SQLite page cache of the history connection
DEMO_DB_NAME = "demo.db"
RETRY_S = 60.0  # after a failed write, how long before the next attempt
MAX_PENDING = 500_000  # items waiting for the writer; beyond this the oldest are dropped
MAX_POINTS = 1000  # the default query resolution keeps a range under this many points
CHECK_EVERY_S = 600.0  # after a failed query the file is checked again at most this often
LATE_S = RING_S  # timed samples may correct seconds this old (see SeriesStore)
HISTORY_WINDOW_S = 10  # chart points are percentiles of the 10 s window (SeriesStore)

_UPSERT = """
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

_CORRUPT_WORDS = ("not a database", "malformed", "file is encrypted", "corrupt")


class _Corrupt(Exception):
    """The file is not a usable vtmon database (message: why)."""


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """A stored series: what ``series()`` lists."""

    key: SeriesKey
    layer: str
    component: str
    first: int  # first and last second with data
    last: int


@dataclass(slots=True)
class _TierState:
    tier: Tier
    rolled_upto: int | None  # None: nothing rolled into it yet
    kept_from: int | None  # None: nothing removed yet
    # No point of the tier starts before this (inf: it holds none); None: not known, looked
    # up when retention needs it. Retention skips a tier with nothing before its cutoff.
    oldest: float | None = None


def _json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


def _tags_json(key: SeriesKey) -> str:
    return json.dumps([list(p) for p in key.tags], separators=(",", ":"))


def _tags_of(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in json.loads(text))


def _align(t: float, res: int) -> int:
    return int(math.floor(t / res)) * res


def _is_corrupt(e: sqlite3.Error) -> bool:
    # SQLITE_CORRUPT and SQLITE_NOTADB arrive as the base DatabaseError class itself
    return type(e) is sqlite3.DatabaseError or any(w in str(e).lower() for w in _CORRUPT_WORDS)


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    text = str(e).rstrip(".")
    if "disk is full" in text:
        return "the disk is full"
    if "readonly" in text or "read-only" in text:
        return "the file or its folder is read-only"
    return text


class HistoryStore:
    """See the module docstring. ``HistoryStore.open`` never raises."""

    def __init__(
        self,
        path: Path | None,
        retention: RetentionConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.path = path
        self.retention = retention or RetentionConfig()
        self.clock: Clock = clock or SystemClock()
        self.warning = ""  # one sentence when history is not being saved, else ""
        self.notice = ""  # one sentence about something done to the file (moved aside)
        self.rows_written = 0
        self.rows_dropped = 0  # rows that could not be written (disk full, read-only, ...)
        self.last_flush_s = 0.0  # how long the last flush took
        self._tiers: dict[str, list[_TierState]] = {
            layer: [
                _TierState(t, None, None)
                for t in tiers_for(
                    self.retention.resolution_s(layer), self.retention.retention_s(layer)
                )
            ]
            for layer in LAYERS
        }
        self._conn: sqlite3.Connection | None = None
        self._db_lock = threading.RLock()
        self._lock = threading.Lock()
        # ("s", closed seconds) | ("r", Resources) | ("h", Sensors, now), oldest first
        self._pending: list[tuple[Any, ...]] = []
        self._pending_n = 0  # items in _pending (a closed-seconds list counts its length)
        self._ids: dict[tuple[str, SeriesKey], int] = {}
        self._retry_at = 0.0
        self._behind = False  # the pending list overflowed since the last good flush
        self._seed: dict[SeriesKey, list[HistoryPoint]] | None = None
        self._findings = FindingsTracker()  # Snapshots -> findings worth keeping (reports)
        self._resource_seed: dict[str, list[float | None]] | None = None
        self.seeded = threading.Event()  # set once the seeds asked of ``start`` are read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        # the file with its WAL is kept within this (vtmon/store/bound.py); ``open`` sets it
        # from the free space of the data folder when the config does not
        self.max_bytes = size_bound(self.retention.max_size_mb, None)
        self._trim_notice = ""  # the notice that history is being trimmed, while it holds
        self._no_vacuum = False  # VACUUM failed (no room for its copy): not tried again
        self.last_trim: TrimStats | None = None  # what the last trim did (bench/store.py)
        self.read_only = False  # opened by ``open_read_only``: nothing is ever written
        self.damaged = ""  # read-only: what is wrong with the file, in SQLite's words
        # read-only: a vtmon started writing the file while it was read as immutable, so
        # what looked like damage may be its writes; open it again to know
        self.changed = False
        self._immutable = False
        self._check_lock = threading.Lock()
        self._next_check = -math.inf  # monotonic time before which ``check`` does nothing

    # --- opening -----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        retention: RetentionConfig | None = None,
        clock: Clock | None = None,
        name: str = DB_NAME,
        *,
        own_folder: bool = False,
    ) -> HistoryStore:
        """The store in ``data_dir/name``; never raises (see the module docstring).

        The folder is created 0700 and the file 0600 (vtmon.files); ``own_folder``
        (vtmon's default place, not a folder the user named) is also tightened to 0700 when
        others may enter it. A folder of another user keeps history in memory only."""
        folder = Path(data_dir)
        store = cls(folder / name, retention, clock)
        try:
            note = private_folder(folder, own=own_folder)
        except ForeignFolder as e:
            store._memory_only(f"{e}, so vtmon keeps no files there (pass --data-dir)")
            return store
        except OSError as e:
            store._memory_only(f"cannot create {folder} ({_reason(e)})")
            return store
        if note:
            log.warning("%s", note)
        store.max_bytes = size_bound(store.retention.max_size_mb, folder)
        try:
            store._connect()
        except _Corrupt as e:
            store._move_aside(str(e))
        except sqlite3.Error as e:
            store._close_conn()
            store._memory_only(f"cannot open {store.path} ({_reason(e)})")
        return store

    @classmethod
    def open_read_only(
        cls,
        path: str | os.PathLike[str],
        retention: RetentionConfig | None = None,
        clock: Clock | None = None,
    ) -> HistoryStore:
        """The history file ``path`` for reading only (``vtmon report``): nothing beside it is
        created, changed or moved. It is checked at once (``check``); a file that is damaged
        or is not a vtmon history leaves ``damaged`` saying why, one that cannot be read (or
        was written by a newer vtmon) ``warning``; its queries then answer nothing. Never
        raises."""
        store = cls(Path(path), retention, clock)
        store.read_only = True
        try:
            store._connect_read_only()
        except _Corrupt as e:
            store._close_conn()
            store.damaged = str(e)
            return store
        except sqlite3.Error as e:
            store._close_conn()
            store.warning = f"it cannot be read ({_reason(e)})"
            return store
        if store.persistent:
            store.check()
        return store

    def _has_wal(self) -> bool:
        assert self.path is not None
        return self.path.with_name(self.path.name + "-wal").exists()

    def _uri(self, immutable: bool = False) -> str:
        assert self.path is not None
        mode = "ro&immutable=1" if immutable else "ro"
        return f"{self.path.resolve().as_uri()}?mode={mode}"

    def _connect_read_only(self) -> None:
        # A file closed cleanly has no WAL: read it as immutable, or SQLite would create a -wal
        # and -shm beside it that a read-only connection cannot remove again. With a WAL (a
        # vtmon writes the file, or was killed) the existing -wal and -shm are read as they are.
        self._immutable = not self._has_wal()
        conn = sqlite3.connect(
            self._uri(self._immutable),
            uri=True,
            timeout=5.0,
            check_same_thread=False,
            isolation_level=None,
        )
        self._conn = conn
        try:
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            version = self._schema_version(conn)
            if version is None:
                raise _Corrupt("it is not a vtmon history file")
            if version > SCHEMA_VERSION:
                self._close_conn()
                self.warning = f"it was written by a newer vtmon (schema {version})"
                return
            self._load_tiers(conn)
        except sqlite3.Error as e:
            if _is_corrupt(e):
                raise _Corrupt(_reason(e)) from e
            raise

    @property
    def persistent(self) -> bool:
        """True while history goes to a file."""
        return self._conn is not None

    def _connect(self) -> None:
        assert self.path is not None
        path = self.path
        private_file(path, *(path.with_name(path.name + s) for s in ("-wal", "-shm")))
        if path.exists() and not os.access(path, os.R_OK):
            raise _Corrupt("it cannot be read")
        if path.exists() and not os.access(path, os.W_OK):
            raise sqlite3.OperationalError("the file is read-only")
        conn = sqlite3.connect(
            os.fspath(path), timeout=5.0, check_same_thread=False, isolation_level=None
        )
        self._conn = conn
        try:
            if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                # a new file: free pages can then be given back in small steps (the size bound)
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # The WAL counts towards the size bound: with a small bound it is kept small too.
            wal = min(8 << 20, self.max_bytes // 8)
            conn.execute(f"PRAGMA journal_size_limit={wal}")
            conn.execute(f"PRAGMA wal_autocheckpoint={max(16, min(1000, wal // 4096))}")
            # SQLite's default page cache (2 MiB) would grow to a tenth of the console's memory
            # as the file fills; the writer appends and the chart reads are few (the OS caches
            # the file too).
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            conn.create_function("merge_sketch", 2, merge_blobs, deterministic=True)
            version = self._schema_version(conn)
            if version is not None and version > SCHEMA_VERSION:
                self._close_conn()
                self._memory_only(
                    f"{path} was written by a newer vtmon (schema {version}); it is left as it is"
                )
                return
            conn.executescript(HISTORY_SCHEMA)
            conn.execute("BEGIN")
            now = self.clock.time()
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?), "
                "('created', ?)",
                (str(SCHEMA_VERSION), str(now)),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO tiers (layer, res) VALUES (?, ?)",
                [(layer, st.tier.res) for layer, sts in self._tiers.items() for st in sts],
            )
            self._load_tiers(conn)
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if _is_corrupt(e):
                self._close_conn()
                raise _Corrupt(_reason(e)) from e
            raise

    def _load_tiers(self, conn: sqlite3.Connection) -> None:
        """How far rollups and retention got, per layer and resolution, from the file."""
        for layer, states in self._tiers.items():
            for st in states:
                row = conn.execute(
                    "SELECT rolled_upto, kept_from FROM tiers WHERE layer = ? AND res = ?",
                    (layer, st.tier.res),
                ).fetchone()
                st.rolled_upto, st.kept_from = row if row else (None, None)
                st.oldest = None

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int | None:
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not has_meta:
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        try:
            return int(row[0]) if row else None
        except ValueError as e:
            raise _Corrupt("its schema version is not a number") from e

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _move_aside(self, why: str) -> None:
        """Rename the unusable file (and its WAL) with a ``.corrupt-<UTC time>`` suffix and
        start a fresh one; memory only when even that fails."""
        assert self.path is not None
        self._close_conn()
        self._ids.clear()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.replace(side, aside.with_name(aside.name + suffix))
        except OSError as e:
            self._memory_only(f"{self.path} is unusable ({why}) and cannot be moved ({_reason(e)})")
            return
        for st in (s for states in self._tiers.values() for s in states):
            st.rolled_upto = st.kept_from = None
        self.notice = (
            f"The history file {self.path} could not be used ({why}); "
            f"it was moved to {aside.name} and a new one started."
        )
        log.warning("%s", self.notice)
        self.warning = self.notice
        try:
            self._connect()
        except (_Corrupt, sqlite3.Error) as e:
            self._close_conn()
            self._memory_only(f"cannot start a new {self.path} ({_reason(e)})")

    def check(self) -> str:
        """Look for damage inside the file (``PRAGMA quick_check``, on a read-only connection of
        its own); returns what is wrong in SQLite's words, or "". Run by the writer thread as
        it starts, it holds up the first writes for as long as the check takes.

        A damaged file is moved aside as one with a bad header is (``notice`` says so), or,
        read-only, only described in ``damaged``. It reads the whole file (docs/performance.md
        says how long that takes), so after the first check this does nothing until
        ``CHECK_EVERY_S`` have passed; the writer runs it as it starts and ``_guarded`` after
        a query fails."""
        if self._conn is None or not self._check_lock.acquire(blocking=False):
            return ""  # no file, or another thread is checking it right now
        try:
            now = self.clock.monotonic()
            if now < self._next_check:
                return ""
            self._next_check = now + CHECK_EVERY_S
            problem = self._quick_check()
            if not problem:
                return ""
            log.warning("%s is damaged: %s", self.path, problem)
            if self.read_only:
                self._damaged(problem)
            else:
                with self._db_lock:
                    self._move_aside(f"it is damaged: {problem}")
            return problem
        finally:
            self._check_lock.release()

    def _quick_check(self) -> str:
        try:
            if self.read_only:
                with self._db_lock:
                    conn = self._conn
                    if conn is None:
                        return ""
                    rows = conn.execute("PRAGMA quick_check(1)").fetchall()
            else:
                conn = sqlite3.connect(self._uri(), uri=True, timeout=5.0)
                try:
                    rows = conn.execute("PRAGMA quick_check(1)").fetchall()
                finally:
                    conn.close()
        except sqlite3.Error as e:
            if _is_corrupt(e):
                return _reason(e)
            log.warning("could not check %s (%s)", self.path, e)
            return ""
        if rows == [("ok",)]:
            return ""
        return str(rows[0][0]).splitlines()[0] if rows else "the check answered nothing"

    def _damaged(self, problem: str) -> None:
        """Read-only: the file looks damaged (``damaged``), unless a vtmon has started writing
        it since it was opened as immutable (``changed``: open it again)."""
        if self._immutable and self._has_wal():
            self.changed = True
        else:
            self.damaged = self.damaged or problem

    def _memory_only(self, why: str) -> None:
        self.warning = f"History is not being saved: {why}; vtmon keeps running in memory."
        log.warning("%s", self.warning)

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

    # --- the writer ------------------------------------------------------------------------

    def start(self, seed_at: float | None = None, resources_s: float = 0.0) -> None:
        """Start the writer thread (flush every ``flush_interval_s``, maintain every
        ``rollup_interval_s``). With ``seed_at``, it first reads ``recent_history(seed_at)``
        for ``take_seed`` and, with ``resources_s``, the ``resources`` of that many seconds
        before it for ``take_resource_seed``, so that reading them never delays the first
        Snapshot; ``seeded`` is set when both are ready."""
        if self._thread is not None or self._conn is None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(seed_at, resources_s), name="vtmon-history", daemon=True
        )
        self._thread.start()

    def take_seed(self) -> dict[SeriesKey, list[HistoryPoint]] | None:
        """The chart history read for ``start(seed_at=...)``, once, when it is ready."""
        if self._seed is None:
            return None
        with self._lock:
            seed, self._seed = self._seed, None
        return seed

    def take_resource_seed(self) -> dict[str, list[float | None]] | None:
        """The resource history read for ``start(seed_at=..., resources_s=...)``, once."""
        if self._resource_seed is None:
            return None
        with self._lock:
            seed, self._resource_seed = self._resource_seed, None
        return seed

    def _run(self, seed_at: float | None, resources_s: float = 0.0) -> None:
        cfg = self.retention
        if seed_at is not None:
            seed = self.recent_history(seed_at)
            res = self.resources(seed_at - resources_s, seed_at) if resources_s > 0 else None
            with self._lock:
                self._seed = seed
                self._resource_seed = res
            self.seeded.set()
        self.check()  # after the seed, which the first Snapshots wait for
        next_maint = time.monotonic()  # at once: catch up on retention after a long stop
        while True:
            try:  # the writer must outlive any bug in one flush or rollup
                if time.monotonic() >= next_maint:
                    next_maint = time.monotonic() + cfg.rollup_interval_s
                    self.maintain()
                if self._stop.wait(cfg.flush_interval_s):
                    return
                self.flush()
            except Exception:
                log.exception("history writer failed")

    def close(self) -> None:
        """Stop the writer, write what is pending, close the file. Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        if self._closed:
            return
        self._closed = True
        self._retry_at = 0.0
        found = self._findings.final(self.clock.time())
        if found and self._conn is not None and not self.read_only:
            self._append(("f", found), 1)
        self.flush()
        with self._db_lock:
            self._close_conn()

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
            self._failed(e, len(rows))
            return 0
        self.last_flush_s = time.perf_counter() - t0
        self.rows_written += len(rows)
        if self._retry_at or self._behind:  # writing works (again): no more warning
            self._retry_at = 0.0
            self._behind = False
            self.warning = self.notice
        return len(rows)

    def _failed(self, e: sqlite3.Error, rows: int) -> None:
        self.rows_dropped += rows
        self._ids.clear()  # series added by the rolled-back transaction are not in the file
        with self._db_lock:
            if self._conn is not None:
                try:  # nor are the rollup and retention steps it took
                    self._load_tiers(self._conn)
                except sqlite3.Error:
                    pass
        if _is_corrupt(e):
            with self._db_lock:
                self._move_aside(_reason(e))
            return
        self._retry_at = self.clock.monotonic() + RETRY_S
        self._memory_only(f"writing {self.path} failed ({_reason(e)})")

    def _reopen(self) -> None:
        try:
            with self._db_lock:
                self._connect()
        except (_Corrupt, sqlite3.Error):
            self._close_conn()
            self._retry_at = self.clock.monotonic() + RETRY_S

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        if conn is None:
            raise sqlite3.OperationalError("the history file is closed")
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")  # may fail too (disk full): then roll back as well
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise

    def _rows(self, pending: list[tuple[Any, ...]]) -> dict[tuple[str, SeriesKey, int, int], Row]:
        """Pending items as rows of each layer's finest tier, merged per bucket."""
        groups: dict[tuple[str, SeriesKey, int, int], list[Row]] = {}
        app_res = self._tiers["application"][0].tier.res

        def put(layer: str, key: SeriesKey, res: int, t: float, row: Row) -> None:
            groups.setdefault((layer, key, res, _align(t, res)), []).append(row)

        for p in pending:
            tag = p[0]
            if tag == "s":
                for key, kind, sec, payload in p[1]:
                    row = _payload_row(kind, payload)
                    if row is not None:
                        put("application", key, app_res, sec, row)
            elif tag == "r":
                r: Resources = p[1]
                for layer, key, v in resource_values(r):
                    put(layer, key, self._tiers[layer][0].tier.res, r.t, Row.of_value(v))
            elif tag == "h":
                _, s, now = p
                res = self._tiers["hardware"][0].tier.res
                for key, v in sensor_values(s):
                    put("hardware", key, res, now, Row.of_value(v))
        return {k: merge(v) for k, v in groups.items()}

    def _write(
        self, conn: sqlite3.Connection, rows: dict[tuple[str, SeriesKey, int, int], Row]
    ) -> None:
        last: dict[int, int] = {}
        params = []
        first: dict[str, int] = {}
        for (layer, key, res, t), row in rows.items():
            sid = self._series_id(conn, layer, key, t, create=True)
            assert sid is not None
            end = t + res - 1
            if last.get(sid, -1) < end:
                last[sid] = end
            if first.get(layer, t + 1) > t:
                first[layer] = t
            params.append((sid, res, t, row.n, row.sum, row.min, row.max, row.last, row.blob()))
        conn.executemany(_UPSERT, params)
        for layer, t in first.items():
            self._wrote(self._tiers[layer][0], t)
        conn.executemany(
            "UPDATE series SET last_t = max(last_t, ?) WHERE id = ?",
            [(t, sid) for sid, t in last.items()],
        )

    @staticmethod
    def _wrote(st: _TierState, t: int) -> None:
        """A point starting at ``t`` was written into the tier."""
        if st.oldest is not None and t < st.oldest:
            st.oldest = t

    def _series_id(
        self, conn: sqlite3.Connection, layer: str, key: SeriesKey, t: int = 0, create: bool = False
    ) -> int | None:
        sid = self._ids.get((layer, key))
        if sid is not None:
            return sid
        tags = _tags_json(key)
        row = conn.execute(
            "SELECT id FROM series WHERE layer = ? AND kind = ? AND name = ? AND tags = ?",
            (layer, key.kind.value, key.name, tags),
        ).fetchone()
        if row is None:
            if not create:
                return None
            cur = conn.execute(
                "INSERT INTO series (layer, kind, name, tags, component, first_t, last_t) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (layer, key.kind.value, key.name, tags, key.component, t, t),
            )
            sid = int(cur.lastrowid or 0)
        else:
            sid = int(row[0])
        self._ids[(layer, key)] = sid
        return sid

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
                    if _is_corrupt(e):
                        raise
                    self._no_vacuum = True
                    log.warning("cannot give %s's free space back (%s)", self.path, _reason(e))
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
                upto = _align(now - self._lag(layer), res)
            else:
                if src.rolled_upto is None:
                    break
                upto = _align(src.rolled_upto, res)
            frm = dst.rolled_upto
            if frm is None:
                oldest = self._oldest(conn, layer, src)
                if not math.isfinite(oldest):
                    continue  # nothing to roll yet: start from the first point when it comes
                frm = _align(oldest, res)
            if upto <= frm:
                continue
            first = self._roll(conn, layer, src.tier.res, res, frm, upto)
            if first is not None:
                self._wrote(dst, first)
            dst.rolled_upto = upto
            conn.execute(
                "UPDATE tiers SET rolled_upto = ? WHERE layer = ? AND res = ?", (upto, layer, res)
            )

    def _roll(
        self, conn: sqlite3.Connection, layer: str, src: int, res: int, frm: int, upto: int
    ) -> int | None:
        """Merge the ``src`` points in ``[frm, upto)`` into ``res`` points; returns the first
        second of the earliest point written (None: none)."""
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM series WHERE layer = ? AND last_t >= ?", (layer, frm)
            ).fetchall()
        ]
        first: int | None = None
        for sid in ids:
            groups: dict[int, list[Row]] = {}
            for t, row in self._read(conn, sid, src, frm, upto):
                groups.setdefault(t - t % res, []).append(row)
            if not groups:
                continue
            low = min(groups)
            first = low if first is None else min(first, low)
            conn.executemany(
                _UPSERT,
                [
                    (sid, res, t, m.n, m.sum, m.min, m.max, m.last, m.blob())
                    for t, m in ((t, merge(rows)) for t, rows in groups.items())
                ],
            )
        return first

    def _oldest(self, conn: sqlite3.Connection, layer: str, st: _TierState) -> float:
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
                cutoff = min(_align(cutoff, nxt.tier.res), nxt.rolled_upto or -math.inf)
            else:
                cutoff = _align(cutoff, st.tier.res)
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
    def _kept(conn: sqlite3.Connection, layer: str, st: _TierState, cutoff: int) -> None:
        """The tier keeps nothing before ``cutoff`` from now on (in memory and in the file)."""
        if st.kept_from is None or st.kept_from < cutoff:
            st.kept_from = cutoff
            conn.execute(
                "UPDATE tiers SET kept_from = ? WHERE layer = ? AND res = ?",
                (cutoff, layer, st.tier.res),
            )

    def _cut(self, conn: sqlite3.Connection, layer: str, st: _TierState, cutoff: int) -> int:
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

    # --- reading -----------------------------------------------------------------------------

    def _read(
        self, conn: sqlite3.Connection, sid: int, res: int, lo: float, hi: float
    ) -> Iterator[tuple[int, Row]]:
        cur = conn.execute(
            "SELECT t, n, total, lo, hi, last, sketch FROM points "
            "WHERE series_id = ? AND res = ? AND t >= ? AND t < ? ORDER BY t",
            (sid, res, lo, hi),
        )
        for t, n, total, mn, mx, last, blob in cur:
            keys = counts = None
            if blob is not None:
                try:
                    keys, counts = decode(blob)
                except CorruptBlob:
                    log.warning("skipped an unreadable sketch of series %s at %s", sid, t)
                    continue
            yield t, Row(n, total, mn, mx, last, keys, counts)

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
                if self.read_only and _is_corrupt(e):
                    self._damaged(_reason(e))
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
