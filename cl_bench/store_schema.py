"""The results store's schema, its version (``PRAGMA user_version``) and the migrations between versions.

Versions:

- 1: ``runs`` and ``accuracy`` (cl-bench <= 0.2.0, which left ``user_version`` at 0).
- 2: ``runs.identity`` (the strategy file's and the data's fingerprints, cl_bench.identity), ``attempts``
  (every time a run ended: finished, failed or its worker killed) and ``claims`` (which process is
  running which configuration now, cl_bench.claims).

A store of an older version is migrated in place by its first write (one transaction: a crash leaves
the old version); a store of a newer version is refused (this cl-bench would not know its columns).
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 2
LEGACY_VERSION = 1  # a store with tables but user_version 0: made by cl-bench <= 0.2.0


class StoreError(RuntimeError):
    """The results store cannot be opened, read or written; the message says why and what to do."""


class SchemaError(StoreError):
    """The file is not a cl-bench store, or one of a schema this version cannot use."""


RUNS = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,      -- hash of the configuration (cl_bench.identity: + a salt if needed)
    strategy TEXT NOT NULL,
    scenario TEXT NOT NULL,
    seed INTEGER NOT NULL,
    hparams TEXT NOT NULL,        -- JSON, every field with its value
    protocol TEXT NOT NULL,       -- JSON
    scenario_options TEXT NOT NULL,
    tags TEXT NOT NULL,           -- JSON list
    status TEXT NOT NULL,         -- 'finished' | 'failed'
    error TEXT,
    code_version TEXT,
    data TEXT,                    -- JSON: datasets, counts, checksums actually used
    started REAL, finished REAL, wall_s REAL,
    n_tasks INTEGER,
    monitoring TEXT,              -- JSON: strategy-specific results (HAT's capacity, ...)
    history TEXT,                 -- JSON: per-epoch log
    identity TEXT                 -- JSON: fingerprints of the strategy file and the data (version 2)
);
CREATE TABLE IF NOT EXISTS accuracy (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    t INTEGER NOT NULL,           -- after training task t (0-based)
    tau INTEGER NOT NULL,         -- accuracy on task tau's test set
    acc REAL NOT NULL,
    PRIMARY KEY (run_id, t, tau)
);
"""

ATTEMPTS_AND_CLAIMS = """
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,     -- 1, 2, ... per run
    status TEXT NOT NULL,         -- 'finished' | 'failed' | 'killed' (its worker process died)
    error TEXT,
    started REAL, finished REAL, wall_s REAL,
    code_version TEXT,
    result TEXT,                  -- JSON accuracy and monitoring of a finished result a later run replaced
    PRIMARY KEY (run_id, attempt)
);
CREATE TABLE IF NOT EXISTS claims (
    run_id TEXT PRIMARY KEY,      -- the configuration's run_id (RunConfig.run_id)
    owner TEXT NOT NULL,          -- a token per sweep driver or `cl-bench run`
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    claimed REAL NOT NULL,
    expires REAL NOT NULL         -- pushed forward by the owner's heartbeat
);
"""


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def version_of(conn: sqlite3.Connection, path) -> int:
    """The store's schema version: 0 for an empty database (a new store). Raises SchemaError for a
    database that is not a cl-bench store."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    found = tables(conn)
    if not found and version == 0:
        return 0
    if not {"runs", "accuracy"} <= found:
        raise SchemaError(
            f"{path} is an SQLite database but not a cl-bench results store (it has no runs "
            f"table); use --store to choose another file"
        )
    return version or LEGACY_VERSION


def check_version(version: int, path) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"results store {path} has schema version {version}, newer than the version "
            f"{SCHEMA_VERSION} this cl-bench knows: upgrade cl-bench (pip install -U cl-bench) "
            f"to use it"
        )


def create(conn: sqlite3.Connection) -> None:
    """A new store at the current version (inside the caller's transaction)."""
    for statement in (RUNS + ATTEMPTS_AND_CLAIMS).split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a store from ``version`` to SCHEMA_VERSION inside the caller's transaction."""
    if version == 0:
        create(conn)
        return
    if version == 1:
        conn.execute("ALTER TABLE runs ADD COLUMN identity TEXT")
        for statement in ATTEMPTS_AND_CLAIMS.split(";"):
            if statement.strip():
                conn.execute(statement)
        # every stored run was its configuration's one recorded attempt
        conn.execute(
            "INSERT INTO attempts (run_id, attempt, status, error, started, finished, wall_s, "
            "code_version) SELECT run_id, 1, status, error, started, finished, wall_s, code_version "
            "FROM runs"
        )
        version = 2
    conn.execute(f"PRAGMA user_version = {version}")
