"""The results store: one SQLite file (WAL mode) per project folder.

A run is written in one transaction when it ends (finished or failed), so a crash or a kill never
leaves half a run. Runs are keyed by the hash of their configuration; a finished configuration is
skipped unless forced.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_STORE = "cl-bench.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,      -- hash of the configuration
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
    history TEXT                  -- JSON: per-epoch log
);
CREATE TABLE IF NOT EXISTS accuracy (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    t INTEGER NOT NULL,           -- after training task t (0-based)
    tau INTEGER NOT NULL,         -- accuracy on task tau's test set
    acc REAL NOT NULL,
    PRIMARY KEY (run_id, t, tau)
);
"""


class StoreError(RuntimeError):
    pass


def config_hash(config: dict[str, Any]) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class RunRecord:
    run_id: str
    strategy: str
    scenario: str
    seed: int
    hparams: dict[str, Any]
    protocol: dict[str, Any]
    scenario_options: dict[str, Any]
    status: str
    accuracy: np.ndarray | None = None  # (T, T), NaN above the diagonal
    tags: list[str] = field(default_factory=list)
    error: str | None = None
    code_version: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    started: float | None = None
    finished: float | None = None
    wall_s: float | None = None
    monitoring: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_tasks(self) -> int | None:
        return None if self.accuracy is None else int(self.accuracy.shape[0])


class Store:
    def __init__(self, path: str | Path = DEFAULT_STORE):
        self.path = Path(path)
        with self._connect() as conn:
            conn.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = sqlite3.connect(self.path, timeout=60)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open results store {self.path}: {e} (is it a cl-bench SQLite "
                             f"file? use --store to choose another)") from None
        try:
            with conn:  # one transaction: committed on success, rolled back on any error
                yield conn
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise StoreError(f"results store {self.path} is locked by another process for over 60 s; "
                                 f"nothing was written. Retry when it finishes.") from None
            raise StoreError(f"results store {self.path}: {e}") from None
        except sqlite3.DatabaseError as e:
            raise StoreError(f"results store {self.path} is corrupt or not a cl-bench store ({e}); "
                             f"nothing was written.") from None
        finally:
            conn.close()

    def save(self, rec: RunRecord) -> None:
        """Write (or replace) a run and its accuracy matrix in one transaction."""
        with self._connect() as conn:
            conn.execute("DELETE FROM runs WHERE run_id = ?", (rec.run_id,))
            conn.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (rec.run_id, rec.strategy, rec.scenario, rec.seed, _dump(rec.hparams), _dump(rec.protocol),
                 _dump(rec.scenario_options), _dump(rec.tags), rec.status, rec.error, rec.code_version,
                 _dump(rec.data), rec.started, rec.finished, rec.wall_s, rec.n_tasks,
                 _dump(rec.monitoring), _dump(rec.history)))
            if rec.accuracy is not None:
                T = rec.accuracy.shape[0]
                conn.executemany("INSERT INTO accuracy VALUES (?,?,?,?)",
                                 [(rec.run_id, t, tau, float(rec.accuracy[t, tau]))
                                  for t in range(T) for tau in range(t + 1)
                                  if not np.isnan(rec.accuracy[t, tau])])

    def status(self, run_id: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return row[0] if row else None

    def statuses(self, run_ids: list[str]) -> dict[str, str]:
        """Status of each stored run among ``run_ids``, in one connection."""
        found: dict[str, str] = {}
        with self._connect() as conn:
            for start in range(0, len(run_ids), 500):  # SQLite's host-parameter limit
                part = run_ids[start:start + 500]
                found |= dict(conn.execute(f"SELECT run_id, status FROM runs WHERE run_id IN "
                                           f"({','.join('?' * len(part))})", part).fetchall())
        return found

    def get(self, run_id: str) -> RunRecord | None:
        recs = self.query("run_id = ?", (run_id,))
        return recs[0] if recs else None

    def query(self, where: str = "1", params: tuple = ()) -> list[RunRecord]:
        with self._connect() as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(f"SELECT * FROM runs WHERE {where} ORDER BY strategy, scenario, seed",
                                params).fetchall()
            accs = conn.execute("SELECT run_id, t, tau, acc FROM accuracy WHERE run_id IN "
                                f"(SELECT run_id FROM runs WHERE {where})", params).fetchall()
        by_run: dict[str, list] = {}
        for a in accs:
            by_run.setdefault(a["run_id"], []).append((a["t"], a["tau"], a["acc"]))
        out = []
        for r in rows:
            acc = None
            if r["n_tasks"]:
                acc = np.full((r["n_tasks"], r["n_tasks"]), np.nan)
                for t, tau, v in by_run.get(r["run_id"], []):
                    acc[t, tau] = v
            out.append(RunRecord(
                r["run_id"], r["strategy"], r["scenario"], r["seed"], json.loads(r["hparams"]),
                json.loads(r["protocol"]), json.loads(r["scenario_options"]), r["status"], acc,
                json.loads(r["tags"]), r["error"], r["code_version"], json.loads(r["data"] or "{}"),
                r["started"], r["finished"], r["wall_s"], json.loads(r["monitoring"] or "{}"),
                json.loads(r["history"] or "[]")))
        return out


def _dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=_json_default)


def _json_default(o: Any):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if hasattr(o, "tolist"):  # torch tensors
        return o.tolist()
    return str(o)
