"""Housekeeping of a results store (``cl-bench runs``): find runs by id prefix, delete runs, merge another
store into one, export runs to CSV or JSON. Tagging is ``Store.add_tags``.

- ``delete``: runs with their accuracy and attempts, in one transaction; a run a live process is running
  now (cl_bench.store.claims) is refused, and then nothing is deleted.
- ``merge_from``: the other store is opened read-only (its schema checked: an older one is read as it
  is, a newer one refused). A run it holds that this store lacks is copied with its accuracy and
  attempts. A run both hold is skipped when identical (tags aside: they are united), else it is a
  conflict: this store's run is kept, except a failed one, which the other store's finished run
  replaces (a finished run is never replaced, least of all by a failed one). Merging twice adds
  nothing the second time.
- ``export``: CSV, tidy (one row per run and accuracy cell, the run's configuration repeated: its
  hyperparameters, protocol settings and scenario options as ``hp.NAME``, ``protocol.NAME`` and
  ``option.NAME`` columns), or JSON (a list with one object per run: configuration, accuracy matrix,
  history, monitoring, attempts).
"""

from __future__ import annotations

import csv
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cl_bench.results import protocol_of
from cl_bench.store.claims import Claim, RunBusy, is_dead
from cl_bench.store.records import dump_json
from cl_bench.store.runs import RunRecord, Store, UnknownRunError, _rows_in
from cl_bench.store.schema import tables

FORMATS = ("csv", "json")
# what a run is, beside its id and tags: two stores' runs are identical when all of these are
RUN_FIELDS = (
    "strategy",
    "scenario",
    "seed",
    "hparams",
    "protocol",
    "scenario_options",
    "status",
    "error",
    "code_version",
    "data",
    "started",
    "finished",
    "wall_s",
    "n_tasks",
    "monitoring",
    "history",
    "identity",
)
JSON_FIELDS = {"hparams", "protocol", "scenario_options", "data", "monitoring", "history", "identity"}
ATTEMPT_FIELDS = ("status", "error", "started", "finished", "wall_s", "code_version")  # an attempt, without its number
CSV_RUN_COLUMNS = [
    "run_id",
    "strategy",
    "scenario",
    "seed",
    "status",
    "tags",
    "n_tasks",
    "started",
    "finished",
    "wall_s",
    "code_version",
    "error",
]


# ---- finding runs ------------------------------------------------------------------------------------
def resolve_run_ids(store: Store, prefixes: Iterable[str]) -> list[str]:
    """The stored run each of ``prefixes`` names: its full id, or a prefix of exactly one id. An unknown
    or ambiguous one is UnknownRunError."""
    ids = store.run_ids()
    out = []
    for prefix in prefixes:
        if not prefix:
            raise ValueError("a run id cannot be empty")
        hits = [prefix] if prefix in ids else [i for i in ids if i.startswith(prefix)]
        if not hits:
            raise UnknownRunError(f"no run {prefix} in {store.path} (`cl-bench runs list` lists them)")
        if len(hits) > 1:
            shown = ", ".join(hits[:5]) + (f" and {len(hits) - 5} more" if len(hits) > 5 else "")
            raise UnknownRunError(f"run id {prefix} is ambiguous in {store.path}: {shown}; give more of it")
        out.append(hits[0])
    return list(dict.fromkeys(out))


# ---- deleting ----------------------------------------------------------------------------------------
def delete(store: Store, run_ids: Sequence[str]) -> list[str]:
    """Delete the runs ``run_ids`` (full ids) with their accuracy and attempts; returns them. An unknown
    id is UnknownRunError, a run claimed by a live process RunBusy; either way nothing is deleted."""
    ids = list(dict.fromkeys(run_ids))
    with store.transaction() as conn:
        stored = dict(_rows_in(conn, "SELECT run_id, identity FROM runs WHERE run_id IN ({})", ids))
        missing = [r for r in ids if r not in stored]
        if missing:
            raise UnknownRunError(f"no run {', '.join(missing)} in {store.path}; nothing was deleted")
        now = time.time()
        live = [
            c
            for c in (Claim(*r) for r in conn.execute("SELECT run_id, owner, host, pid, claimed, expires FROM claims"))
            if not is_dead(c, now)
        ]
        for run_id in ids:
            # a run stored beside its configuration's (cl_bench.runner.identity) is claimed under the configuration's id
            names = {run_id, json.loads(stored[run_id] or "{}").get("base_run_id")}
            holder = next((c for c in live if c.run_id in names), None)
            if holder is not None:
                raise RunBusy(run_id, holder)
        for table in ("accuracy", "attempts", "runs"):
            _rows_in(conn, f"DELETE FROM {table} WHERE run_id IN ({{}})", ids)
    return ids


# ---- merging -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Conflict:
    """A run id both stores hold with different runs: which one this store keeps, and how they differ."""

    run_id: str
    kept: str  # "this" (this store's run stays) | "other" (the other's finished run replaced a failed one)
    this_status: str
    other_status: str
    differences: tuple[str, ...]  # the fields that differ (RUN_FIELDS, "accuracy")

    def describe(self) -> str:
        what = (
            "kept this store's"
            if self.kept == "this"
            else "took the other store's finished run over this store's failed"
        )
        return (
            f"{self.run_id}: {what} (here {self.this_status}, there {self.other_status}; they differ in "
            f"{', '.join(self.differences)})"
        )


class Merged(NamedTuple):
    added: list[str]  # run ids copied from the other store
    skipped: list[str]  # identical in both
    conflicts: list[Conflict]


@dataclass
class _Run:
    row: dict[str, Any]  # run_id, tags and RUN_FIELDS, as stored (JSON as text)
    cells: list[tuple[int, int, float]]
    attempts: list[tuple]  # ATTEMPT_FIELDS + (result,)


def merge_from(store: Store, other_path: str | os.PathLike) -> Merged:
    """Copy the runs of the store at ``other_path`` that this one lacks (see the module docstring)."""
    other = Store.open_read(other_path)
    if other.path.resolve() == store.path.resolve():
        raise ValueError(f"cannot merge {other.path} into itself")
    theirs = other.read(_snapshot)
    added, skipped, conflicts = [], [], []
    with store.transaction() as conn:
        mine = _snapshot(conn, list(theirs))
        for run_id, run in theirs.items():
            have = mine.get(run_id)
            if have is None:
                _insert(conn, run)
                added.append(run_id)
                continue
            differences = _differences(have, run)
            this, there = have.row["status"], run.row["status"]
            if differences and not (this == "failed" and there == "finished"):
                conflicts.append(Conflict(run_id, "this", this, there, differences))
                continue  # this store's run stays as it is
            if differences:  # the other store's finished run replaces this store's failed one
                conflicts.append(Conflict(run_id, "other", this, there, differences))
                conn.execute("DELETE FROM accuracy WHERE run_id = ?", (run_id,))
                conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
                _insert(conn, run, attempts=False)
            else:
                skipped.append(run_id)
            _unite_tags(conn, run_id, have.row["tags"], run.row["tags"])
            _add_attempts(conn, run_id, have.attempts, run.attempts)
    return Merged(added, skipped, conflicts)


def _snapshot(conn: sqlite3.Connection, run_ids: list[str] | None = None) -> dict[str, _Run]:
    """Runs (all, or those among ``run_ids``) with their accuracy cells and attempts; a store of schema
    version 1 (no identity, no attempts) read as its migration would make it."""
    present = tables(conn)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    names = ["run_id", "tags", *RUN_FIELDS]
    select = ", ".join(c if c in columns else f"NULL AS {c}" for c in names)
    where = "" if run_ids is None else " WHERE run_id IN ({})"

    def rows(sql: str) -> list[tuple]:
        return conn.execute(sql).fetchall() if run_ids is None else _rows_in(conn, sql, run_ids)

    runs = {r[0]: _Run(dict(zip(names, r)), [], []) for r in rows(f"SELECT {select} FROM runs{where}")}
    for run_id, t, tau, acc in rows(f"SELECT run_id, t, tau, acc FROM accuracy{where}"):
        if run_id in runs:
            runs[run_id].cells.append((t, tau, acc))
    if "attempts" in present:
        for r in rows(f"SELECT run_id, {', '.join(ATTEMPT_FIELDS)}, result FROM attempts{where} ORDER BY attempt"):
            if r[0] in runs:
                runs[r[0]].attempts.append(tuple(r[1:]))
    else:  # every run was its configuration's one attempt
        for run in runs.values():
            run.attempts.append((*(run.row[f] for f in ATTEMPT_FIELDS), None))
    for run in runs.values():
        run.cells.sort()
    return runs


def _differences(a: _Run, b: _Run) -> tuple[str, ...]:
    def value(run: _Run, name: str):
        raw = run.row[name]
        return json.loads(raw) if name in JSON_FIELDS and raw else (None if name in JSON_FIELDS else raw)

    out = [f for f in RUN_FIELDS if value(a, f) != value(b, f)]
    return tuple(out + (["accuracy"] if a.cells != b.cells else []))


def _insert(conn: sqlite3.Connection, run: _Run, attempts: bool = True) -> None:
    names = list(run.row)
    conn.execute(
        f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", [run.row[n] for n in names]
    )
    conn.executemany(
        "INSERT INTO accuracy (run_id, t, tau, acc) VALUES (?,?,?,?)",
        [(run.row["run_id"], *cell) for cell in run.cells],
    )
    if attempts:
        have = [
            tuple(r)
            for r in conn.execute(
                f"SELECT {', '.join(ATTEMPT_FIELDS)}, result FROM attempts WHERE run_id = ? ORDER BY attempt",
                (run.row["run_id"],),
            )
        ]
        _add_attempts(conn, run.row["run_id"], have, run.attempts)


def _add_attempts(conn: sqlite3.Connection, run_id: str, have: list[tuple], theirs: list[tuple]) -> None:
    """The other store's attempts of ``run_id`` that this one lacks, numbered after this store's."""
    known = {a[: len(ATTEMPT_FIELDS)] for a in have}
    number = conn.execute("SELECT COALESCE(MAX(attempt), 0) FROM attempts WHERE run_id = ?", (run_id,)).fetchone()[0]
    for attempt in theirs:
        if attempt[: len(ATTEMPT_FIELDS)] in known:
            continue
        number += 1
        known.add(attempt[: len(ATTEMPT_FIELDS)])
        conn.execute(
            f"INSERT INTO attempts (run_id, attempt, {', '.join(ATTEMPT_FIELDS)}, result) VALUES (?,?,?,?,?,?,?,?,?)",
            (run_id, number, *attempt),
        )


def _unite_tags(conn: sqlite3.Connection, run_id: str, mine: str, theirs: str) -> None:
    have = json.loads(mine or "[]")
    united = have + [t for t in json.loads(theirs or "[]") if t not in have]
    if united != json.loads(conn.execute("SELECT tags FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]):
        conn.execute("UPDATE runs SET tags = ? WHERE run_id = ?", (dump_json(united), run_id))


# ---- exporting ---------------------------------------------------------------------------------------
def export(store: Store, path: str | os.PathLike, format: str = "csv", run_ids: Sequence[str] | None = None) -> int:
    """Write the runs (all, or ``run_ids``) to ``path`` as ``format`` (see the module docstring); returns
    how many runs were written."""
    if format not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, got {format!r}")
    records = store.query()
    if run_ids is not None:
        wanted = set(run_ids)
        records = [r for r in records if r.run_id in wanted]
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    if format == "json":
        attempts = store.attempts_of([r.run_id for r in records])
        objects = [_finite(run_object(r, attempts.get(r.run_id, []))) for r in records]
        path.write_text(json.dumps(objects, indent=1, allow_nan=False) + "\n")
        return len(records)
    settings = [(prefix, getter, sorted({k for r in records for k in getter(r)})) for prefix, getter in _SETTINGS]
    header = CSV_RUN_COLUMNS + [f"{p}.{k}" for p, _, keys in settings for k in keys] + ["t", "tau", "acc"]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for r in records:
            error = (r.error or "").strip().splitlines()  # its first line: the traceback is in the JSON export
            head = [
                r.run_id,
                r.strategy,
                r.scenario,
                r.seed,
                r.status,
                ",".join(r.tags),
                r.n_tasks,
                r.started,
                r.finished,
                r.wall_s,
                r.code_version,
                error[0] if error else None,
            ]
            head += [_cell(getter(r).get(k)) for _, getter, keys in settings for k in keys]
            for t, tau, acc in _cells(r) or [(None, None, None)]:  # a run without accuracy still has its row
                writer.writerow(["" if v is None else v for v in [*head, t, tau, acc]])
    return len(records)


_SETTINGS = (("hp", lambda r: r.hparams), ("protocol", protocol_of), ("option", lambda r: r.scenario_options or {}))


def run_object(r: RunRecord, attempts: Sequence = ()) -> dict[str, Any]:
    """One run as plain JSON values (the accuracy matrix with None above the diagonal and where not measured)."""
    matrix = (
        None
        if r.accuracy is None
        else [[None if math.isnan(v) else float(v) for v in row] for row in r.accuracy.tolist()]
    )
    return {
        "run_id": r.run_id,
        "strategy": r.strategy,
        "scenario": r.scenario,
        "seed": r.seed,
        "status": r.status,
        "tags": list(r.tags),
        "hparams": r.hparams,
        "protocol": protocol_of(r),
        "scenario_options": r.scenario_options,
        "n_tasks": r.n_tasks,
        "accuracy": matrix,
        "error": r.error,
        "code_version": r.code_version,
        "started": r.started,
        "finished": r.finished,
        "wall_s": r.wall_s,
        "data": r.data,
        "identity": r.identity,
        "monitoring": r.monitoring,
        "history": r.history,
        "attempts": [
            {
                "attempt": a.attempt,
                "status": a.status,
                "error": a.error,
                "started": a.started,
                "finished": a.finished,
                "wall_s": a.wall_s,
                "code_version": a.code_version,
                "replaced": a.replaced,
            }
            for a in attempts
        ],
    }


def _cells(r: RunRecord) -> list[tuple[int, int, float]]:
    if r.accuracy is None:
        return []
    return [
        (t, tau, float(r.accuracy[t, tau]))
        for t in range(r.n_tasks)
        for tau in range(t + 1)
        if not math.isnan(r.accuracy[t, tau])
    ]


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _finite(obj: Any) -> Any:
    """NaN and infinities (a diverged epoch's loss) as None: JSON has no such numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
