"""The journal of tuning actions: the safety record of every change vtmon makes, and what each
strategy achieved.

The tuner writes an action's row -- with the value to set back -- *before* it asks an
actuator to make the change, and updates it at every step after. The write is synchronous, on
the tuner's (the Monitor's) thread, in its own short transaction on its own connection with
``synchronous=FULL``: when ``record`` returns the row is in the WAL file and fsynced, so a
SIGKILL or a power cut right after still leaves the record of a change that may have been
made. (The history writer batches its rows; the journal must not wait for it.) One write takes
about a millisecond on the development machine's disk (tests/test_tuner.py measures it).

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

log = logging.getLogger(__name__)

# Columns the tuner added to the first ``actions`` table: ``_ensure`` adds them to older files.
ACTION_COLUMNS: dict[str, str] = {
    "bottleneck": "TEXT",
    "situation": "TEXT",
    "in_effect": "INTEGER NOT NULL DEFAULT 0",
    "pid": "INTEGER",
    "pid_started": "REAL",
    "run": "TEXT",
    "action": "TEXT",
}
ACTIONS_TABLE = """
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY,        -- the number of the action's id: 12 is "a12"
    proposed REAL NOT NULL,        -- Unix seconds
    applied REAL,                  -- when the change was started (written before it is made)
    reverted REAL,                 -- when it was undone (or found not made)
    strategy TEXT NOT NULL,
    target_kind TEXT NOT NULL,     -- the actuator: knob | process | command
    target TEXT NOT NULL,          -- the knob's name, nice / affinity, the command's name
    component TEXT,
    previous_value TEXT,           -- JSON: how to undo it, recorded before applying
    new_value TEXT,                -- JSON
    state TEXT NOT NULL,           -- vtmon.model.ActionState: applying | evaluating | kept | ...
    metric TEXT,                   -- what the effect is measured on, e.g. "p95 api-server"
    before_value REAL,
    after_value REAL,
    effectiveness REAL,            -- 0..1: the improvement measured / the improvement expected
    decision TEXT,                 -- kept | reverted | failed | lost | rejected, and why
    note TEXT,                     -- the last thing that happened to it, one sentence
    bottleneck TEXT,               -- the id of the bottleneck it answered
    situation TEXT,                -- what was high when it was applied (learning key)
    in_effect INTEGER NOT NULL DEFAULT 0,  -- 1 while the change may be in effect
    pid INTEGER,                   -- process actions: the process changed
    pid_started REAL,              -- and its start time (a reused pid is another process)
    run TEXT,                      -- the vtmon process that applied it: "pid@start time"
    action TEXT                    -- JSON of the whole TuningAction (crash recovery)
)
"""
LEARNING_TABLE = """
CREATE TABLE IF NOT EXISTS strategy_effectiveness (
    strategy TEXT NOT NULL,
    situation TEXT NOT NULL DEFAULT '',  -- "latency high, memory normal, cpu high, errors normal"
    tries INTEGER NOT NULL DEFAULT 0,
    successes INTEGER NOT NULL DEFAULT 0,  -- tries kept (effectiveness at or above revert_below)
    mean_effectiveness REAL,       -- running mean of the measured effectiveness, 0..1
    updated REAL NOT NULL,
    PRIMARY KEY (strategy, situation)
)
"""
ACTIONS_INDEXES = (
    "CREATE INDEX IF NOT EXISTS actions_state ON actions (state, proposed);\n"
    "CREATE INDEX IF NOT EXISTS actions_in_effect ON actions (in_effect);\n"
)
# vtmon/store/db.py creates new files with this; _ensure brings older files up to it.
JOURNAL_SCHEMA = f"{ACTIONS_TABLE};\n{ACTIONS_INDEXES}{LEARNING_TABLE};\n"
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
            _ensure(conn)
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


def _ensure(conn: sqlite3.Connection) -> None:
    """Both tables in their current shape, also in files made before the tuner wrote them."""
    conn.execute(ACTIONS_TABLE)
    have = {r[1] for r in conn.execute("PRAGMA table_info(actions)")}
    for name, decl in ACTION_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE actions ADD COLUMN {name} {decl}")
    for index in ACTIONS_INDEXES.split(";"):
        if index.strip():
            conn.execute(index)
    cols = {r[1] for r in conn.execute("PRAGMA table_info(strategy_effectiveness)")}
    if cols and "situation" not in cols:
        # The first schema keyed it by component and nothing ever wrote it; keep any rows
        # anyway, under another name.
        (n,) = conn.execute("SELECT count(*) FROM strategy_effectiveness").fetchone()
        if n:
            conn.execute("ALTER TABLE strategy_effectiveness RENAME TO strategy_effectiveness_v0")
        else:
            conn.execute("DROP TABLE strategy_effectiveness")
    conn.execute(LEARNING_TABLE)


def open_journal(store: Any) -> Journal:
    """The journal beside ``store`` (a HistoryStore) when it writes a file, else in memory."""
    path = getattr(store, "path", None)
    if store is None or path is None or not getattr(store, "persistent", False):
        return MemoryJournal()
    try:
        return SqliteJournal(Path(path))
    except sqlite3.Error as e:
        log.warning("The tuning journal cannot use %s (%s); it is kept in memory.", path, e)
        return MemoryJournal()
