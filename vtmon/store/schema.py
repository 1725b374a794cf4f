"""The tables of the history file, the journal's among them: every CREATE TABLE and index, the
schema version, and how an older file is brought up to the journal's current shape.

One file holds both: the history writer (vtmon/store/history) creates a new file with
``HISTORY_SCHEMA``, which includes the journal's tables; the journal (vtmon/store/journal.py)
opens its own connection to the same file and runs ``ensure_journal`` on it, which also upgrades
files made before the tuner wrote its tables. What a ``points`` row holds per kind:
vtmon/store/rollup.py.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 1  # in ``meta``; a file with a higher one is left alone

# Columns the tuner added to the first ``actions`` table: ``ensure_journal`` adds them to older
# files.
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
# The journal's tables as a new file gets them; ``ensure_journal`` brings older files up to it.
JOURNAL_SCHEMA = f"{ACTIONS_TABLE};\n{ACTIONS_INDEXES}{LEARNING_TABLE};\n"

HISTORY_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    layer TEXT NOT NULL,           -- application | system | network | hardware
    kind TEXT NOT NULL,            -- distribution | counter | gauge | set
    name TEXT NOT NULL,
    tags TEXT NOT NULL,            -- JSON list of [key, value] pairs, sorted
    component TEXT NOT NULL,
    first_t INTEGER NOT NULL,      -- first and last second with data
    last_t INTEGER NOT NULL,
    UNIQUE (layer, kind, name, tags)
);
-- Rollups and retention look only at the series written to lately, so that their work each
-- minute does not grow with every series the file has ever held.
CREATE INDEX IF NOT EXISTS series_last ON series (layer, last_t);
CREATE TABLE IF NOT EXISTS points (
    series_id INTEGER NOT NULL,
    res INTEGER NOT NULL,          -- seconds the point covers
    t INTEGER NOT NULL,            -- its first second (a multiple of res)
    n REAL NOT NULL,               -- see vtmon/store/rollup.py for each kind
    total REAL NOT NULL,
    lo REAL NOT NULL,
    hi REAL NOT NULL,
    last REAL,
    sketch BLOB,                   -- distributions: sparse sketch buckets
    PRIMARY KEY (series_id, res, t)
);
CREATE TABLE IF NOT EXISTS tiers (
    layer TEXT NOT NULL,
    res INTEGER NOT NULL,
    rolled_upto INTEGER,           -- rollups into this tier are done up to here
    kept_from INTEGER,             -- retention removed points before this
    PRIMARY KEY (layer, res)
);
"""
    + JOURNAL_SCHEMA  # the tuner's journal and what it learned (vtmon/store/journal.py)
    + """
CREATE TABLE IF NOT EXISTS findings (  -- what the analysis found, for reports (findings.py)
    t REAL NOT NULL,               -- Unix seconds
    kind TEXT NOT NULL,            -- bottleneck | resolved | alert | regression | prediction | ...
    component TEXT NOT NULL,
    data TEXT NOT NULL             -- JSON: the finding's fields, as in the Snapshot
);
CREATE INDEX IF NOT EXISTS findings_t ON findings (t);
"""
)


def ensure_journal(conn: sqlite3.Connection) -> None:
    """Both journal tables in their current shape, also in files made before the tuner wrote
    them."""
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
