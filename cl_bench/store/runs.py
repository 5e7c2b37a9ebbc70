"""The results store: one SQLite file (WAL mode) per project folder, its runs written and read.

Opening it (``Store(path)`` to write, ``Store.open_read(path)`` to read only), its connections and
transactions are cl_bench.store.file's job; ``Store`` adds what is written and read.

A run is written in one transaction when it ends (finished or failed), so a crash or a kill never
leaves half a run. Every end is also kept as an *attempt* (``attempts``); a failed attempt never
replaces a finished result: the finished run and its accuracy matrix stay and ``save`` says so
(``Saved.kept``). A finished run replaces the stored one (``cl-bench run --force``): the replaced
result's accuracy matrix and monitoring stay in its attempt's ``result``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from cl_bench.store.file import DEFAULT_STORE, TIMEOUT_S, NoStoreError, StoreFile
from cl_bench.store.records import Attempt, RunRecord, Saved, StoredIdentity, check_tags, config_hash, dump_json
from cl_bench.store.schema import SCHEMA_VERSION, SchemaError, StoreError, tables

FAILED = ("failed", "killed")  # attempt statuses that are failures

__all__ = [
    "DEFAULT_STORE",
    "FAILED",
    "SCHEMA_VERSION",
    "TIMEOUT_S",
    "Attempt",
    "NoStoreError",
    "RunRecord",
    "Saved",
    "SchemaError",
    "Store",
    "StoreError",
    "StoredIdentity",
    "UnknownRunError",
    "config_hash",
    "read_spilled",
    "save_or_spill",
    "spill",
]


class UnknownRunError(LookupError):
    """A run id that the store does not hold."""


class Store(StoreFile):
    """The results store: ``StoreFile`` (opening, connections, transactions) and its runs."""

    # ---- writing -------------------------------------------------------------------------------------
    def save(self, rec: RunRecord) -> Saved:
        """Record an attempt of ``rec.run_id`` and write the run, in one transaction. A failed run never
        replaces a finished one (``Saved.kept``); a finished run replaces whatever was stored, the
        replaced finished result staying in its attempt."""
        with self.transaction() as conn:
            old = conn.execute(
                "SELECT status, started, finished, wall_s, code_version, n_tasks, monitoring "
                "FROM runs WHERE run_id = ?",
                (rec.run_id,),
            ).fetchone()
            kept = old is not None and old[0] == "finished" and rec.status != "finished"
            if old is not None and old[0] == "finished" and not kept:
                _keep_replaced(conn, rec.run_id, old)
            attempt = _add_attempt(
                conn, rec.run_id, rec.status, rec.error, rec.started, rec.finished, rec.wall_s, rec.code_version
            )
            if kept:
                return Saved(attempt, kept=True)
            conn.execute("DELETE FROM runs WHERE run_id = ?", (rec.run_id,))
            conn.execute(
                "INSERT INTO runs (run_id, strategy, scenario, seed, hparams, protocol, scenario_options, tags, "
                "status, error, code_version, data, started, finished, wall_s, n_tasks, monitoring, history, "
                "identity) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    rec.run_id,
                    rec.strategy,
                    rec.scenario,
                    rec.seed,
                    dump_json(rec.hparams),
                    dump_json(rec.protocol),
                    dump_json(rec.scenario_options),
                    dump_json(rec.tags),
                    rec.status,
                    rec.error,
                    rec.code_version,
                    dump_json(rec.data),
                    rec.started,
                    rec.finished,
                    rec.wall_s,
                    rec.n_tasks,
                    dump_json(rec.monitoring),
                    dump_json(rec.history),
                    dump_json(rec.identity) if rec.identity else None,
                ),
            )
            if rec.accuracy is not None:
                T = rec.accuracy.shape[0]
                conn.executemany(
                    "INSERT INTO accuracy VALUES (?,?,?,?)",
                    [
                        (rec.run_id, t, tau, float(rec.accuracy[t, tau]))
                        for t in range(T)
                        for tau in range(t + 1)
                        if not np.isnan(rec.accuracy[t, tau])
                    ],
                )
        return Saved(attempt)

    def record_attempt(
        self,
        run_id: str,
        status: str,
        error: str | None = None,
        started: float | None = None,
        finished: float | None = None,
        code_version: str | None = None,
    ) -> int:
        """An attempt that stored no run (its worker process was killed): kept for ``status``."""
        wall = None if started is None or finished is None else finished - started
        with self.transaction() as conn:
            return _add_attempt(conn, run_id, status, error, started, finished, wall, code_version)

    def add_tags(self, run_ids: list[str], tags: list[str]) -> int:
        """Add ``tags`` to each stored run among ``run_ids`` (its tags first, then the new ones it lacks, in
        the order given), in one transaction; returns how many runs changed. Tags never enter a run id.
        An id the store lacks is UnknownRunError and nothing is written; an empty tag is a ValueError."""
        tags = list(dict.fromkeys(check_tags(tags, "tag")))

        def read(conn):
            return dict(_rows_in(conn, "SELECT run_id, tags FROM runs WHERE run_id IN ({})", list(run_ids)))

        stored = self.read(read)
        if all(r in stored and set(tags) <= set(json.loads(stored[r])) for r in run_ids):
            return 0  # nothing to write: no write lock taken (``execute`` calls this for every served run)
        changed = 0
        with self.transaction() as conn:
            stored = read(conn)
            missing = [r for r in run_ids if r not in stored]
            if missing:
                raise UnknownRunError(f"no run {', '.join(missing)} in {self.path}; nothing was tagged")
            for run_id in dict.fromkeys(run_ids):
                old = json.loads(stored[run_id])
                new = old + [t for t in tags if t not in old]
                if new != old:
                    conn.execute("UPDATE runs SET tags = ? WHERE run_id = ?", (dump_json(new), run_id))
                    changed += 1
        return changed

    # ---- reading -------------------------------------------------------------------------------------
    def run_ids(self) -> list[str]:
        """Every stored run's id, sorted."""
        return [
            r[0] for r in self.read(lambda conn: conn.execute("SELECT run_id FROM runs ORDER BY run_id").fetchall())
        ]

    def status(self, run_id: str) -> str | None:
        return self.statuses([run_id]).get(run_id)

    def statuses(self, run_ids: list[str]) -> dict[str, str]:
        """Status of each stored run among ``run_ids``, in one connection."""

        def read(conn):
            return dict(_rows_in(conn, "SELECT run_id, status FROM runs WHERE run_id IN ({})", run_ids))

        return self.read(read)

    def identities(self, run_ids: list[str]) -> dict[str, StoredIdentity]:
        """What cl_bench.runner.identity compares before serving each stored run among ``run_ids``."""

        def read(conn):
            has = "identity" in _columns(conn, "runs")
            rows = _rows_in(
                conn,
                "SELECT run_id, status, strategy, scenario, scenario_options, data, "
                f"{'identity' if has else 'NULL'} FROM runs WHERE run_id IN ({{}})",
                run_ids,
            )
            return {
                r[0]: StoredIdentity(
                    r[1], r[2], r[3], json.loads(r[4]), json.loads(r[6]) if r[6] else None, json.loads(r[5] or "{}")
                )
                for r in rows
            }

        return self.read(read)

    def attempts(self, run_id: str) -> list[Attempt]:
        return self.attempts_of([run_id]).get(run_id, [])

    def attempts_of(self, run_ids: list[str]) -> dict[str, list[Attempt]]:
        """Every recorded attempt of each run among ``run_ids``, oldest first ({} for a version-1 store)."""

        def read(conn):
            if "attempts" not in tables(conn):
                return []
            return _rows_in(
                conn,
                "SELECT run_id, attempt, status, error, started, finished, wall_s, code_version, "
                "result IS NOT NULL FROM attempts WHERE run_id IN ({}) ORDER BY attempt",
                run_ids,
            )

        out: dict[str, list[Attempt]] = {}
        for r in self.read(read):
            run_id, attempt, status, error, started, finished, wall_s, code_version, replaced = r[:9]
            out.setdefault(run_id, []).append(
                Attempt(run_id, attempt, status, error, started, finished, wall_s, code_version, bool(replaced))
            )
        return out

    def get(self, run_id: str) -> RunRecord | None:
        recs = self.query("run_id = ?", (run_id,))
        return recs[0] if recs else None

    def query(self, where: str = "1", params: tuple = ()) -> list[RunRecord]:
        def read(conn):
            conn.row_factory = sqlite3.Row
            rows = conn.execute(
                f"SELECT * FROM runs WHERE {where} ORDER BY strategy, scenario, seed", params
            ).fetchall()
            accs = conn.execute(
                f"SELECT run_id, t, tau, acc FROM accuracy WHERE run_id IN (SELECT run_id FROM runs WHERE {where})",
                params,
            ).fetchall()
            return rows, accs

        rows, accs = self.read(read)
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
            identity = r["identity"] if "identity" in r.keys() else None
            out.append(
                RunRecord(
                    r["run_id"],
                    r["strategy"],
                    r["scenario"],
                    r["seed"],
                    json.loads(r["hparams"]),
                    json.loads(r["protocol"]),
                    json.loads(r["scenario_options"]),
                    r["status"],
                    acc,
                    json.loads(r["tags"]),
                    r["error"],
                    r["code_version"],
                    json.loads(r["data"] or "{}"),
                    r["started"],
                    r["finished"],
                    r["wall_s"],
                    json.loads(r["monitoring"] or "{}"),
                    json.loads(r["history"] or "[]"),
                    json.loads(identity) if identity else {},
                )
            )
        return out


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def _rows_in(conn: sqlite3.Connection, sql: str, ids: list[str]) -> list[tuple]:
    """``sql`` (with ``IN ({})``) over ``ids`` in chunks within SQLite's host-parameter limit."""
    out: list[tuple] = []
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        out += conn.execute(sql.format(",".join("?" * len(part))), part).fetchall()
    return out


def _add_attempt(
    conn: sqlite3.Connection,
    run_id: str,
    status: str,
    error: str | None,
    started: float | None,
    finished: float | None,
    wall_s: float | None,
    code_version: str | None,
) -> int:
    number = conn.execute("SELECT COALESCE(MAX(attempt), 0) + 1 FROM attempts WHERE run_id = ?", (run_id,)).fetchone()[
        0
    ]
    conn.execute(
        "INSERT INTO attempts (run_id, attempt, status, error, started, finished, wall_s, code_version) "
        "VALUES (?,?,?,?,?,?,?,?)",
        (run_id, number, status, error, started, finished, wall_s, code_version),
    )
    return number


def _keep_replaced(conn: sqlite3.Connection, run_id: str, old: tuple) -> None:
    """Before a finished run replaces a finished one, its accuracy and monitoring go to its attempt."""
    _status, started, finished, wall_s, version, n_tasks, monitoring = old
    cells = conn.execute("SELECT t, tau, acc FROM accuracy WHERE run_id = ? ORDER BY t, tau", (run_id,)).fetchall()
    result = dump_json(
        {"n_tasks": n_tasks, "accuracy": [list(c) for c in cells], "monitoring": json.loads(monitoring or "{}")}
    )
    row = conn.execute(
        "SELECT attempt FROM attempts WHERE run_id = ? AND status = 'finished' ORDER BY attempt DESC LIMIT 1", (run_id,)
    ).fetchone()
    if row is None:  # not recorded as an attempt (cannot happen after migration; kept safe anyway)
        row = (_add_attempt(conn, run_id, "finished", None, started, finished, wall_s, version),)
    conn.execute("UPDATE attempts SET result = ? WHERE run_id = ? AND attempt = ?", (result, run_id, row[0]))


# ---- a finished run that cannot be saved is never lost ---------------------------------------------------
SPILL_FORMAT = "cl-bench unsaved run"


def save_or_spill(store: Store, rec: RunRecord) -> Saved:
    """``store.save(rec)``; if that fails, the record is written beside the store as a JSON file
    (``spill``) and the StoreError raised names it and the command that stores it later
    (``cl-bench runs import FILE``): a run computed is never thrown away."""
    try:
        return store.save(rec)
    except (StoreError, sqlite3.Error, OSError) as e:
        try:
            path = spill(store.path, rec)
        except OSError as again:
            raise StoreError(
                f"{e}; and the {rec.status} run {rec.run_id} could not be written to a file ({again})"
            ) from e
        raise StoreError(
            f"{e}. The {rec.status} run {rec.run_id} was written to {path}: once the store can be written, "
            f"`cl-bench runs import {path} --store {store.path}` stores it"
        ) from e


def spill(store_path: str | Path, rec: RunRecord) -> Path:
    """The record as ``<store>.unsaved/<run_id>-<time>.json`` (NaN kept), else in the working folder or
    the temporary folder when the store's folder cannot be written; returns the file written."""
    store_path = Path(store_path)
    name = f"{rec.run_id}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    text = json.dumps({"format": SPILL_FORMAT, "store": str(store_path), "record": _record_object(rec)}, default=str)
    errors = []
    for folder in (Path(f"{store_path}.unsaved"), Path.cwd(), Path(tempfile.gettempdir())):
        path = folder / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)  # whole or absent
            return path
        except OSError as e:
            errors.append(f"{folder}: {e.strerror or e}")
    raise OSError("; ".join(errors))


def read_spilled(path: str | Path) -> RunRecord:
    """The record of a file ``spill`` wrote; ValueError naming the file if it is not one."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a run cl-bench wrote when a save failed: not JSON ({e})") from None
    if not isinstance(obj, dict) or obj.get("format") != SPILL_FORMAT or not isinstance(obj.get("record"), dict):
        raise ValueError(f"{path} is not a run cl-bench wrote when a save failed (no {SPILL_FORMAT!r} record)")
    fields = dict(obj["record"])
    matrix = fields.pop("accuracy", None)
    try:
        fields["accuracy"] = (
            None
            if matrix is None
            else np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
        )
        return RunRecord(**fields)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: its run record is damaged ({e})") from None


def _record_object(rec: RunRecord) -> dict:
    out = {f.name: getattr(rec, f.name) for f in dataclasses.fields(rec)}
    if rec.accuracy is not None:
        out["accuracy"] = [[None if np.isnan(v) else float(v) for v in row] for row in rec.accuracy]
    return json.loads(dump_json(out))
