"""A run's identity: what decides its result beyond the configuration its ``run_id`` hashes.

``RunConfig.run_id()`` hashes the configuration (strategy name, scenario, seed, hyperparameters,
protocol, scenario options) and never changes, so every stored run keeps its id. Two more things decide
a result; each run records them in ``RunRecord.identity``:

- ``strategy_source``: the sha256 of a user strategy file (``path/file.py:Class``), read as bytes, never
  imported. Built-in, entry-point and ``avalanche:`` strategies have none: they are the installed
  package's code, whose version each run records (``code_version``); an edited built-in is not detected.
  Only the named file is hashed, not the modules it imports.
- ``data``: a fingerprint of the data the run read: the sha256 checksums of every source file, per data
  set, as the scenario recorded them (``scenario.info["datasets"][name]["files"]``), paths left out (the
  same files under another data root are the same data). Runs stored before identities were recorded
  recorded these checksums too, so their data are compared as well.

A finished run is served for a configuration only when its identity matches the current one (a part
that either side lacks is not compared: a synthetic scenario has no files, an old run no strategy hash).
Otherwise the configuration runs again under ``salted_id(run_id, identity)``, and both results stay in
the store. So resuming a store whose code and data did not change serves every finished run under its
own id, and a changed file never serves a stale result. ``resolve`` is the rule; ``CurrentView`` applies
it for the sweep planner, which skips, selects and counts runs exactly as ``runner.execute`` serves them.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cl_bench.registry import build_scenario, is_strategy_file
from cl_bench.store import RunRecord, Store, StoredIdentity, config_hash

PARTS = ("strategy_source", "data")  # what is compared; "base_run_id" only says where a salted run came from


def strategy_file(name: str) -> Path | None:
    """The file of a ``path/file.py:Class`` strategy name, else None."""
    if not is_strategy_file(name):
        return None
    path, sep, _ = name.rpartition(":")
    return Path(path if sep and path.endswith(".py") else name)


def strategy_source(name: str) -> str | None:
    """sha256 of a user strategy file's bytes (None for other strategies, or a file that is gone)."""
    file = strategy_file(name)
    if file is None:
        return None
    try:
        return hashlib.sha256(file.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def data_fingerprint(info: dict[str, Any] | None) -> str | None:
    """The checksums of the files a scenario read, per data set, without paths; None if it recorded none."""
    datasets = (info or {}).get("datasets")
    if not isinstance(datasets, dict) or not datasets:
        return None
    sums = {}
    for name, record in datasets.items():
        files = record.get("files") if isinstance(record, dict) else None
        if not isinstance(files, dict):
            return None
        sums[name] = sorted(str(v) for v in files.values())
    return config_hash({"datasets": sums})


def current_identity(strategy: str, data_info: dict[str, Any] | None) -> dict[str, Any]:
    parts = {"strategy_source": strategy_source(strategy), "data": data_fingerprint(data_info)}
    return {k: v for k, v in parts.items() if v is not None}


def check_name_claim(store: Store, name: str, strategy_class: str) -> None:
    """A user file's class stores its runs under its ``name``: refuse when the store already holds runs of
    that name made by another class (``file.py:Class``, or a registered strategy, which has none). An
    edited version of the same class is no conflict: its runs are told apart by ``strategy_source``."""
    for r in store.query("strategy = ?", (name,)):
        other = (r.identity or {}).get("strategy_class")
        if other != strategy_class:
            raise ValueError(
                f"strategy name {name!r} of {strategy_class} is already taken in {store.path} by "
                f"{other or 'a registered strategy'} (run {r.run_id}): give the class another `name`"
            )


def stored_identity(stored: StoredIdentity | RunRecord) -> dict[str, Any]:
    """A stored run's identity; for a run stored before identities were recorded, its data's."""
    if stored.identity:
        return dict(stored.identity)
    fingerprint = data_fingerprint(stored.data)
    return {} if fingerprint is None else {"data": fingerprint}


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The parts of the identity both sides know and that differ ([] = the stored run may be served)."""
    return [p for p in PARTS if stored.get(p) is not None and current.get(p) is not None and stored[p] != current[p]]


def salted_id(run_id: str, identity: dict[str, Any]) -> str:
    """The id of a configuration's run with other code or data than the run stored under ``run_id``."""
    return config_hash({"run_id": run_id, "identity": {p: identity.get(p) for p in PARTS}})


@dataclass(frozen=True)
class Resolution:
    run_id: str  # where this configuration's result with the current identity lives (or will)
    status: str | None  # its status there: "finished" (serve it), "failed", or None (not stored)
    changed: tuple[str, ...] = ()  # why it is not the configuration's own run_id: PARTS that differ


def resolve(store: Store, run_id: str, identity: dict[str, Any]) -> Resolution:
    """The run to serve, or the id to run under, for configuration ``run_id`` with ``identity``."""
    return resolve_from(store, run_id, identity, store.identities([run_id]).get(run_id))


def resolve_from(store: Store, run_id: str, identity: dict[str, Any], base: StoredIdentity | None) -> Resolution:
    if base is None or base.status != "finished":
        return Resolution(run_id, None if base is None else base.status)
    changed = differences(stored_identity(base), identity)
    if not changed:
        return Resolution(run_id, "finished")
    salted = salted_id(run_id, identity)
    other = store.identities([salted]).get(salted)
    return Resolution(salted, None if other is None else other.status, tuple(changed))


class CurrentView:
    """A store as a configuration sees it with today's strategy files and data: ``statuses`` and ``get``
    of a run_id answer for the run ``resolve`` picks (the run_id itself, or its salted id). Stands in
    for the store in the sweep planner (cl_bench.sweep.plan), so a sweep skips, selects and counts what
    ``execute`` would serve. ``store`` None: no store yet (everything pending).

    ``check_data``: compare the data too, by building each scenario (with its options) once per process
    and taking its checksums (memoised by size and mtime, so cheap); a scenario that cannot be built now
    (missing data) is not compared. Without it (``cl-bench status``: reading only), strategy files are
    still compared, by hash, never imported."""

    def __init__(
        self, store: Store | None, path: str | os.PathLike | None = None, data_root=None, check_data: bool = True
    ):
        self.store = store
        if path is None and store is None:
            raise ValueError("CurrentView needs a store or the path one would have")
        self.path = Path(path) if path is not None else store.path  # type: ignore[union-attr]
        self.data_root, self.check_data = data_root, check_data
        self.strategy_files: dict[str, str] = {}  # a file strategy's name -> its file (the planner knows it)
        self.effective: dict[str, str] = {}  # run_id -> the run_id it resolves to, where they differ
        self.changed: dict[str, tuple[str, ...]] = {}
        self._data: dict[tuple[str, str], str | None] = {}

    def identity_of(self, strategy: str, scenario: str, options: dict[str, Any]) -> dict[str, Any]:
        identity = current_identity(self.strategy_files.get(strategy, strategy), None)
        if self.check_data:
            key = (scenario, json.dumps(options, sort_keys=True, default=str))
            if key not in self._data:
                self._data[key] = self._data_fingerprint(scenario, options)
            if self._data[key] is not None:
                identity["data"] = self._data[key]
        return identity

    def _data_fingerprint(self, scenario: str, options: dict[str, Any]) -> str | None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # subset warnings and the like: the runs themselves say so
                return data_fingerprint(build_scenario(scenario, seed=0, data_root=self.data_root, **options).info)
        except Exception:  # noqa: BLE001 missing or unreadable data: the run itself will say why
            return None

    def statuses(self, run_ids: list[str]) -> dict[str, str]:
        if self.store is None:
            return {}
        out = {}
        for run_id, base in self.store.identities(run_ids).items():
            identity = self.identity_of(base.strategy, base.scenario, base.scenario_options)
            res = resolve_from(self.store, run_id, identity, base)
            if res.run_id != run_id:
                self.effective[run_id], self.changed[run_id] = res.run_id, res.changed
            else:
                self.effective.pop(run_id, None)
                self.changed.pop(run_id, None)
            if res.status is not None:
                out[run_id] = res.status
        return out

    def status(self, run_id: str) -> str | None:
        return self.statuses([run_id]).get(run_id)

    def run_id_for(self, run_id: str) -> str:
        return self.effective.get(run_id, run_id)

    def get(self, run_id: str) -> RunRecord | None:
        return None if self.store is None else self.store.get(self.run_id_for(run_id))
