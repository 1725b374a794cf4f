"""The history file itself: opening it, checking it, moving it aside, and the few ways every
other part of the store touches it (a transaction, a series' id, the points of one tier).

When the file cannot be used the store keeps vtmon running: a corrupt or unreadable file is
moved aside (``vtmon.db.corrupt-<UTC time>``) and a fresh one started (damage inside the file
is looked for with ``PRAGMA quick_check`` as the writer starts and after a query fails, see
``check``); a folder that cannot be written, a full disk or a read-only file leaves history in
memory only, with ``warning`` saying so in one sentence (the Snapshot carries it as
``store_warning``). Writes are retried every ``RETRY_S``, so history resumes once the disk has
room again.

``HistoryFile`` holds the state every part shares: the connection and its lock, each tier's
progress (``TierState``) and the ids of the series. The parts built on it: writer.py (feeding
and flushing), maintenance.py (rollups, retention, the size bound), queries.py (reading);
``HistoryStore`` (store.py) joins them and runs the writer thread.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from vtmon.clock import Clock, SystemClock
from vtmon.config import RetentionConfig
from vtmon.files import ForeignFolder, private_file, private_folder
from vtmon.model import SeriesKey
from vtmon.store.bound import size_bound
from vtmon.store.rollup import (
    LAYERS,
    CorruptBlob,
    Point,
    Row,
    Tier,
    decode,
    merge_blobs,
    rows_of,
    tiers_for,
)
from vtmon.store.schema import HISTORY_SCHEMA, SCHEMA_VERSION

log = logging.getLogger(__name__)

DB_NAME = "vtmon.db"
CACHE_KIB = 512  # SQLite page cache of the history connection
DEMO_DB_NAME = "demo.db"
RETRY_S = 60.0  # after a failed write, how long before the next attempt
CHECK_EVERY_S = 600.0  # after a failed query the file is checked again at most this often

_CORRUPT_WORDS = ("not a database", "malformed", "file is encrypted", "corrupt")


class _Corrupt(Exception):
    """The file is not a usable vtmon database (message: why)."""


@dataclass(slots=True)
class TierState:
    """How far rollups and retention got in one tier of one layer (mirrors its ``tiers`` row)."""

    tier: Tier
    rolled_upto: int | None  # None: nothing rolled into it yet
    kept_from: int | None  # None: nothing removed yet
    # No point of the tier starts before this (inf: it holds none); None: not known, looked
    # up when retention needs it. Retention skips a tier with nothing before its cutoff.
    oldest: float | None = None

    def wrote(self, t: int) -> None:
        """A point starting at ``t`` was written into the tier."""
        if self.oldest is not None and t < self.oldest:
            self.oldest = t


def _tags_json(key: SeriesKey) -> str:
    return json.dumps([list(p) for p in key.tags], separators=(",", ":"))


def is_corrupt(e: sqlite3.Error) -> bool:
    """True when the error says the file is damaged or no database (move it aside)."""
    # SQLITE_CORRUPT and SQLITE_NOTADB arrive as the base DatabaseError class itself
    return type(e) is sqlite3.DatabaseError or any(w in str(e).lower() for w in _CORRUPT_WORDS)


def reason_of(e: BaseException) -> str:
    """Why an operation on the file failed, in words for a sentence."""
    if isinstance(e, OSError):
        return e.strerror or str(e)
    text = str(e).rstrip(".")
    if "disk is full" in text:
        return "the disk is full"
    if "readonly" in text or "read-only" in text:
        return "the file or its folder is read-only"
    return text


class HistoryFile:
    """The file and the state its parts share (see the module docstring). ``open`` never
    raises."""

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
        self.rows_dropped = 0  # rows that could not be written (disk full, read-only, ...)
        self._tiers: dict[str, list[TierState]] = {
            layer: [
                TierState(t, None, None)
                for t in tiers_for(
                    self.retention.resolution_s(layer), self.retention.retention_s(layer)
                )
            ]
            for layer in LAYERS
        }
        self._conn: sqlite3.Connection | None = None
        self._db_lock = threading.RLock()
        self._ids: dict[tuple[str, SeriesKey], int] = {}
        self._retry_at = 0.0
        # the file with its WAL is kept within this (vtmon/store/bound.py); ``open`` sets it
        # from the free space of the data folder when the config does not
        self.max_bytes = size_bound(self.retention.max_size_mb, None)
        self.read_only = False  # opened by ``open_read_only``: nothing is ever written
        self.damaged = ""  # read-only: what is wrong with the file, in SQLite's words
        # read-only: a vtmon started writing the file while it was read as immutable, so
        # what looked like damage may be its writes; open it again to know
        self.changed = False
        self._immutable = False
        self._check_lock = threading.Lock()
        self._next_check = -math.inf  # monotonic time before which ``check`` does nothing
        self._init_state()

    def _init_state(self) -> None:
        """The state of the parts built on the file (writer, maintenance, store): each adds
        its own and calls ``super()._init_state()`` first, so the constructor is one."""

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
    ) -> Self:
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
            store._memory_only(f"cannot create {folder} ({reason_of(e)})")
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
            store._memory_only(f"cannot open {store.path} ({reason_of(e)})")
        return store

    @classmethod
    def open_read_only(
        cls,
        path: str | os.PathLike[str],
        retention: RetentionConfig | None = None,
        clock: Clock | None = None,
    ) -> Self:
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
            store.warning = f"it cannot be read ({reason_of(e)})"
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
            if is_corrupt(e):
                raise _Corrupt(reason_of(e)) from e
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
            if is_corrupt(e):
                self._close_conn()
                raise _Corrupt(reason_of(e)) from e
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
            self._memory_only(
                f"{self.path} is unusable ({why}) and cannot be moved ({reason_of(e)})"
            )
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
            self._memory_only(f"cannot start a new {self.path} ({reason_of(e)})")

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
            if is_corrupt(e):
                return reason_of(e)
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

    # --- failures and transactions --------------------------------------------------------------

    def _failed(self, e: sqlite3.Error, rows: int) -> None:
        self.rows_dropped += rows
        self._ids.clear()  # series added by the rolled-back transaction are not in the file
        with self._db_lock:
            if self._conn is not None:
                try:  # nor are the rollup and retention steps it took
                    self._load_tiers(self._conn)
                except sqlite3.Error:
                    pass
        if is_corrupt(e):
            with self._db_lock:
                self._move_aside(reason_of(e))
            return
        self._retry_at = self.clock.monotonic() + RETRY_S
        self._memory_only(f"writing {self.path} failed ({reason_of(e)})")

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

    # --- series and points (writer, maintenance and queries alike) ----------------------------

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

    def _read(
        self, conn: sqlite3.Connection, sid: int, res: int, lo: float, hi: float
    ) -> Iterator[tuple[int, Row]]:
        points = conn.execute(
            "SELECT series_id, t, n, total, lo, hi, last, sketch FROM points "
            "WHERE series_id = ? AND res = ? AND t >= ? AND t < ? ORDER BY t",
            (sid, res, lo, hi),
        ).fetchall()
        try:
            rows = rows_of(points)
        except CorruptBlob:
            rows = rows_of(readable(points))
        yield from rows


def readable(points: list[Point]) -> list[Point]:
    """The points whose sketch can be decoded (a warning for each that cannot)."""
    out = []
    for p in points:
        if p[7] is not None:
            try:
                decode(p[7])
            except CorruptBlob:
                log.warning("skipped an unreadable sketch of series %s at %s", p[0], p[1])
                continue
        out.append(p)
    return out
