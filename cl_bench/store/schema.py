"""The results store's schema, its version (``PRAGMA user_version``) and the migrations between versions.

Versions:

- 1: ``runs`` and ``accuracy`` (cl-bench <= 0.2.0, which left ``user_version`` at 0).
- 2: ``runs.identity`` (the strategy file's and the data's fingerprints, cl_bench.runner.identity), ``attempts``
  (every time a run ended: finished, failed or its worker killed) and ``claims`` (which process is
  running which configuration now, cl_bench.store.claims).

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
    run_id TEXT PRIMARY KEY,      -- hash of the configuration (cl_bench.runner.identity: + a salt if needed)
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


# The columns each version's tables hold (RUNS, ATTEMPTS_AND_CLAIMS). What the open-time check compares
# with the file, so that a store another tool or a half-finished edit left is refused (or repaired)
# before any training, not at the save after it.
RUN_COLUMNS_V1 = (
    "run_id strategy scenario seed hparams protocol scenario_options tags status error code_version data "
    "started finished wall_s n_tasks monitoring history"
).split()
ACCURACY_COLUMNS = ("run_id", "t", "tau", "acc")
ATTEMPT_COLUMNS = ("run_id", "attempt", "status", "error", "started", "finished", "wall_s", "code_version", "result")
CLAIM_COLUMNS = ("run_id", "owner", "host", "pid", "claimed", "expires")
EXPECTED = {
    1: {"runs": (*RUN_COLUMNS_V1,), "accuracy": ACCURACY_COLUMNS},
    2: {
        "runs": (*RUN_COLUMNS_V1, "identity"),
        "accuracy": ACCURACY_COLUMNS,
        "attempts": ATTEMPT_COLUMNS,
        "claims": CLAIM_COLUMNS,
    },
}
# What may be added to a store that lacks it without losing or inventing anything: the identity column
# (NULL reads as "stored before identities were recorded"), the claims table (no claims), the attempts
# table (each stored run's one attempt, as the version-1 migration writes).
REPAIRABLE_COLUMNS = {("runs", "identity")}
REPAIRABLE_TABLES = ("attempts", "claims")


def columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, bool, bool]]:
    """(name, NOT NULL, has a default) of each column of ``table``."""
    return [(r[1], bool(r[3]), r[4] is not None) for r in conn.execute(f"PRAGMA table_info({table})")]


def schema_problems(conn: sqlite3.Connection, version: int) -> tuple[list[str], list[str]]:
    """(what cannot be repaired, what can) where the file's tables differ from ``version``'s schema."""
    expected = EXPECTED.get(version)
    if expected is None:
        return [], []
    found = tables(conn)
    fatal: list[str] = []
    repairable: list[str] = []
    for table, wanted in expected.items():
        if table not in found:
            (repairable if table in REPAIRABLE_TABLES else fatal).append(f"table {table} is missing")
            continue
        have = columns(conn, table)
        names = {c[0] for c in have}
        for col in wanted:
            if col not in names:
                (repairable if (table, col) in REPAIRABLE_COLUMNS else fatal).append(f"{table}.{col} is missing")
        for name, not_null, has_default in have:
            if name not in wanted and not_null and not has_default:  # every insert of cl-bench would fail
                fatal.append(f"{table}.{name} is an unknown NOT NULL column")
    return fatal, repairable


def check_tables(conn: sqlite3.Connection, version: int, path, repair: bool) -> list[str]:
    """Refuse (SchemaError) a store whose tables do not match its version's schema, naming what differs;
    with ``repair`` (a write transaction is open) add what REPAIRABLE_* allows and return what was done."""
    fatal, repairable = schema_problems(conn, version)
    if fatal:  # what is repairable, readers do without (a run without identity, no attempts or claims)
        problems = "; ".join(fatal + repairable)
        raise SchemaError(
            f"results store {path} (schema version {version}) does not have the tables cl-bench expects: "
            f"{problems}. It was not made by cl-bench, or was edited by hand: nothing was run or written "
            f"(use --store to choose another file)"
        )
    if not repair or not repairable:
        return []
    if "runs.identity is missing" in repairable:
        conn.execute("ALTER TABLE runs ADD COLUMN identity TEXT")
    found = tables(conn)
    for statement in ATTEMPTS_AND_CLAIMS.split(";"):
        if statement.strip():
            conn.execute(statement)
    if "attempts" not in found:
        conn.execute(
            "INSERT INTO attempts (run_id, attempt, status, error, started, finished, wall_s, "
            "code_version) SELECT run_id, 1, status, error, started, finished, wall_s, code_version "
            "FROM runs"
        )
    return repairable


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
        lacking = " and ".join(t for t in ("runs", "accuracy") if t not in found)
        raise SchemaError(
            f"{path} is an SQLite database but not a cl-bench results store (it has no {lacking} "
            f"table); use --store to choose another file"
        )
    names = {c[0] for c in columns(conn, "runs")}
    if not {"run_id", "strategy"} <= names:
        raise SchemaError(
            f"{path} is an SQLite database but not a cl-bench results store: its runs table has the "
            f"columns {', '.join(sorted(names))}, not cl-bench's (run_id, strategy, scenario, ...); use "
            f"--store to choose another file"
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
