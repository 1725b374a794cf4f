"""The history store: one SQLite file (WAL mode) that keeps every series and the machine's
readings across restarts, at coarser resolutions as they age, within a retention per layer.

Feeding it is cheap and may happen on any thread: ``add_seconds`` (the Monitor hands over the
seconds its series closed), ``add_resources`` and ``add_sensors`` only append to a pending
list. A writer thread (``start``) writes the pending list every ``flush_interval_s`` in one
transaction and runs rollups and retention every ``rollup_interval_s``, so a slow disk never
delays a Snapshot and a SIGKILL loses at most one flush interval. Tests call ``flush`` and
``maintain`` themselves with an injected clock.

When the file cannot be used the store keeps vtmon running (file.py): a corrupt file is moved
aside and a fresh one started; a folder that cannot be written, a full disk or a read-only file
leaves history in memory only, with ``warning`` saying so in one sentence.

The parts, one job each: file.py (the file's lifecycle and the state shared by all), writer.py
(feeding, flushing), maintenance.py (rollups, retention, the size bound), queries.py (reading).
``HistoryStore`` joins them and runs the writer thread. Layout, resolutions and the rollup
schedule: docs/history.md. What a row holds and how rows merge: ``vtmon.store.rollup``. The
tables: ``vtmon.store.schema``.
"""

from __future__ import annotations

import logging
import threading
import time

from vtmon.model import HistoryPoint, SeriesKey
from vtmon.store.history.maintenance import HistoryMaintenance
from vtmon.store.history.queries import HistoryQueries

log = logging.getLogger(__name__)


class HistoryStore(HistoryMaintenance, HistoryQueries):
    """See the module docstring. ``HistoryStore.open`` never raises."""

    def _init_state(self) -> None:
        """The seeds and the thread (``HistoryFile.__init__`` calls this once)."""
        super()._init_state()
        self._seed: dict[SeriesKey, list[HistoryPoint]] | None = None
        self._resource_seed: dict[str, list[float | None]] | None = None
        self.seeded = threading.Event()  # set once the seeds asked of ``start`` are read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- the writer thread ---------------------------------------------------------------------

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
