"""The journal of tuning actions: the safety record of every change vtmon makes, and what each
strategy achieved.

The tuner writes an action's row -- with the value to set back -- *before* it asks an
actuator to make the change, and updates it at every step after. The write is synchronous, on
the tuner's (the Monitor's) thread, in its own short transaction on its own connection with
``synchronous=FULL``: when ``record`` returns the row is in the WAL file and fsynced, so a
SIGKILL or a power cut right after still leaves the record of a change that may have been
made. (The history writer batches its rows; the journal must not wait for it.) Its tables:
vtmon/store/schema.py.

Rows with ``in_effect = 1`` are changes that may still be in effect; the next start reads them
(``open_actions``) and offers to revert them. ``strategy_effectiveness`` keeps a running mean
of the effectiveness each strategy achieved per situation, so the next run ranks from what was
learned.

Without a history file (``--no-history``, or a folder that cannot be written) the journal is
``MemoryJournal``: the same interface, nothing survives the process, so crash recovery needs
history on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol

from vtmon.model import ActionState, TuningAction
from vtmon.store.schema import ensure_journal

log = logging.getLogger(__name__)

_UPSERT = """
INSERT INTO actions (id, proposed, applied, reverted, strategy, target_kind, target, component,
    previous_value, new_value, state, metric, before_value, after_value, effectiveness,
    decision, note, bottleneck, situation, in_effect, pid, pid_started, run, action)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    applied = excluded.applied, reverted = excluded.reverted, state = excluded.state,
    previous_value = excluded.previous_value, new_value = excluded.new_value,
    before_value = excluded.before_value, after_value = excluded.after_value,
    effectiveness = excluded.effectiveness, decision = excluded.decision, note = excluded.note,
    in_effect = excluded.in_effect, action = excluded.action
"""


class JournalError(Exception):
    """The journal could not be written (message: one sentence, why)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal row: the action as last recorded, and what the tuner keeps beside it."""

    action: TuningAction
    situation: str = ""
    in_effect: bool = False
    pid: int | None = None
    pid_started: float | None = None  # the process' start time: a reused pid is not it
    run: str = ""
    reverted: float | None = None


@dataclass(frozen=True, slots=True)
class Learned:
    """What a strategy achieved in one situation."""

    strategy: str
    situation: str
    tries: int
    successes: int
    mean: float  # running mean of the effectiveness, 0..1
    updated: float


class Journal(Protocol):
    persistent: bool  # True when rows survive the process
    last_write_s: float  # how long the last record() took

    def next_number(self) -> int:
        """The number after the highest action id ever recorded (ids continue across runs)."""
        ...

    def record(self, entry: Entry) -> None:
        """Write (or update) ``entry`` durably before returning; raises JournalError."""
        ...

    def open_actions(self) -> list[Entry]:
        """Rows whose change may still be in effect, oldest first."""
        ...

    def learned(self) -> dict[tuple[str, str], Learned]:
        """Per (strategy, situation), what was learned so far."""
        ...

    def learn(self, learned: Learned) -> None:
        """Store one strategy's new running mean (best effort: a failure is logged)."""
        ...

    def close(self) -> None: ...


def action_to_json(a: TuningAction) -> str:
    d: dict[str, Any] = {}
    for f in fields(a):
        v = getattr(a, f.name)
        d[f.name] = v.value if isinstance(v, ActionState) else v
    return json.dumps(d, default=_jsonable, separators=(",", ":"))


def action_from_json(text: str) -> TuningAction:
    d = json.loads(text)
    known = {f.name for f in fields(TuningAction)}
    d = {k: v for k, v in d.items() if k in known}
    d["state"] = ActionState(d.get("state", ActionState.PROPOSED.value))
    return TuningAction(**d)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (set, frozenset, tuple)):
        return sorted(v) if isinstance(v, (set, frozenset)) else list(v)
    return str(v)


def _num(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


class MemoryJournal:
    """The journal without a history file: same interface, gone with the process."""

    persistent = False

    def __init__(self) -> None:
        self._rows: dict[int, Entry] = {}
        self._learned: dict[tuple[str, str], Learned] = {}
        self._lock = threading.Lock()
        self.last_write_s = 0.0
        self.writes = 0

    def next_number(self) -> int:
        with self._lock:
            return max(self._rows, default=0) + 1

    def record(self, entry: Entry) -> None:
        with self._lock:
            self._rows[action_number(entry.action.id)] = entry
            self.writes += 1

    def open_actions(self) -> list[Entry]:
        with self._lock:
            return [e for _, e in sorted(self._rows.items()) if e.in_effect]

    def rows(self) -> list[Entry]:
        with self._lock:
            return [e for _, e in sorted(self._rows.items())]

    def learned(self) -> dict[tuple[str, str], Learned]:
        with self._lock:
            return dict(self._learned)

    def learn(self, learned: Learned) -> None:
        with self._lock:
            self._learned[(learned.strategy, learned.situation)] = learned

    def close(self) -> None:
        pass


class SqliteJournal:
    """The journal in the history file (its own connection, fsynced writes)."""

    persistent = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_write_s = 0.0
        self.writes = 0
        self._lock = threading.Lock()
        conn = sqlite3.connect(
            os.fspath(path), timeout=10.0, check_same_thread=False, isolation_level=None
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # Per connection: the history writer's batched rows may wait for a checkpoint,
            # the record of a change may not.
            conn.execute("PRAGMA synchronous=FULL")
            ensure_journal(conn)
        except sqlite3.Error:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    def next_number(self) -> int:
        with self._lock:
            conn = self._need()
            row = conn.execute("SELECT max(id) FROM actions").fetchone()
        return int(row[0] or 0) + 1

    def record(self, entry: Entry) -> None:
        a = entry.action
        decided = a.state.value if not a.state.open else None
        params = (
            action_number(a.id),
            a.proposed_at,
            a.applied_at,
            entry.reverted,
            a.strategy,
            a.actuator,
            a.target,
            a.component,
            json.dumps(a.previous, default=_jsonable),
            json.dumps(a.value, default=_jsonable),
            a.state.value,
            a.metric,
            _num(a.before),
            _num(a.after),
            _num(a.effectiveness),
            decided,
            a.message,
            a.bottleneck,
            entry.situation,
            1 if entry.in_effect else 0,
            entry.pid,
            entry.pid_started,
            entry.run,
            action_to_json(a),
        )
        t0 = time.perf_counter()
        with self._lock:
            try:
                conn = self._need()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute(_UPSERT, params)
                    conn.execute("COMMIT")
                except BaseException:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                    raise
            except sqlite3.Error as e:
                raise JournalError(f"the journal in {self.path} cannot be written ({e})") from e
        self.last_write_s = time.perf_counter() - t0
        self.writes += 1

    def open_actions(self) -> list[Entry]:
        return self._entries("WHERE in_effect = 1")

    def rows(self) -> list[Entry]:
        return self._entries("")

    def _entries(self, where: str) -> list[Entry]:
        with self._lock:
            try:
                found = (
                    self._need()
                    .execute(
                        "SELECT action, situation, in_effect, pid, pid_started, run, reverted, "
                        "state, id "
                        f"FROM actions {where} ORDER BY id"
                    )
                    .fetchall()
                )
            except sqlite3.Error as e:
                log.warning("the journal could not be read (%s)", e)
                return []
        out = []
        for text, situation, in_effect, pid, started, run, reverted, state, n in found:
            try:
                action = action_from_json(text)
            except (TypeError, ValueError):
                log.warning("journal row %s is unreadable; skipped", n)
                continue
            action = replace(action, state=ActionState(state))
            out.append(
                Entry(action, situation or "", bool(in_effect), pid, started, run or "", reverted)
            )
        return out

    def learned(self) -> dict[tuple[str, str], Learned]:
        with self._lock:
            try:
                found = (
                    self._need()
                    .execute(
                        "SELECT strategy, situation, tries, successes, mean_effectiveness, "
                        "updated FROM strategy_effectiveness"
                    )
                    .fetchall()
                )
            except sqlite3.Error as e:
                log.warning("learned effectiveness could not be read (%s)", e)
                return {}
        return {
            (s, sit): Learned(s, sit, int(n), int(ok), float(mean or 0.0), float(t))
            for s, sit, n, ok, mean, t in found
        }

    def learn(self, learned: Learned) -> None:
        with self._lock:
            try:
                self._need().execute(
                    "INSERT INTO strategy_effectiveness (strategy, situation, tries, successes, "
                    "mean_effectiveness, updated) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (strategy, situation) DO UPDATE SET tries = excluded.tries, "
                    "successes = excluded.successes, "
                    "mean_effectiveness = excluded.mean_effectiveness, updated = excluded.updated",
                    (
                        learned.strategy,
                        learned.situation,
                        learned.tries,
                        learned.successes,
                        learned.mean,
                        learned.updated,
                    ),
                )
            except sqlite3.Error as e:
                log.warning("learned effectiveness could not be stored (%s)", e)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _need(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.OperationalError("the journal is closed")
        return self._conn


def action_number(action_id: str) -> int:
    """``"a12"`` -> 12."""
    return int(action_id.lstrip("a"))


class HistoryFileOf(Protocol):
    """What the journal asks of the history store it is opened beside."""

    @property
    def path(self) -> Path | None:
        """The history file (None: the store keeps no file)."""
        ...

    @property
    def persistent(self) -> bool:
        """True while history goes to that file."""
        ...


def open_journal(store: HistoryFileOf | None) -> Journal:
    """The journal beside ``store`` (a HistoryStore) when it writes a file, else in memory."""
    path = None if store is None else store.path
    if store is None or path is None or not store.persistent:
        return MemoryJournal()
    try:
        return SqliteJournal(Path(path))
    except sqlite3.Error as e:
        log.warning("The tuning journal cannot use %s (%s); it is kept in memory.", path, e)
        return MemoryJournal()
