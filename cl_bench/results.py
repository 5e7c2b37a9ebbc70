"""Reading the store: tidy DataFrames, and rho per run against its Joint/Random references."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cl_bench.metrics import forgetting_ratio, mean_upto
from cl_bench.store import DEFAULT_STORE, RunRecord, Store

REFERENCES = ("random", "joint")


def load(store: str | Path | Store = DEFAULT_STORE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, accuracy): one row per run; one row per (run, t, tau) with the run's keys repeated."""
    store = store if isinstance(store, Store) else Store(store)
    records = store.query()
    runs = pd.DataFrame([{
        "run_id": r.run_id, "strategy": r.strategy, "scenario": r.scenario, "seed": r.seed,
        "status": r.status, "n_tasks": r.n_tasks, "wall_s": r.wall_s, "error": r.error,
        "tags": ",".join(r.tags), "hparams": json.dumps(r.hparams, sort_keys=True),
        "scenario_options": json.dumps(r.scenario_options, sort_keys=True),
        "code_version": r.code_version} for r in records],
        columns=["run_id", "strategy", "scenario", "seed", "status", "n_tasks", "wall_s", "error", "tags",
                 "hparams", "scenario_options", "code_version"])
    acc = pd.DataFrame([{"run_id": r.run_id, "strategy": r.strategy, "scenario": r.scenario,
                         "seed": r.seed, "t": t, "tau": tau, "acc": r.accuracy[t, tau]}
                        for r in records if r.accuracy is not None
                        for t in range(r.n_tasks) for tau in range(t + 1)
                        if not np.isnan(r.accuracy[t, tau])],
                       columns=["run_id", "strategy", "scenario", "seed", "t", "tau", "acc"])
    return runs, acc


def _reference_key(r: RunRecord) -> tuple:
    return r.scenario, json.dumps(r.scenario_options, sort_keys=True), r.seed


@dataclass
class RunMetrics:
    record: RunRecord
    rho: np.ndarray | None  # (T, T) Eq. 6, NaN above the diagonal; None without references
    rho_upto: np.ndarray | None  # rho^{<=t}
    acc_upto: np.ndarray  # A^{<=t}, mean accuracy over tau <= t (what the paper reports on MNIST)


class MissingReferences(LookupError):
    """Some runs lack their Joint/Random references; ``commands`` says what to launch."""

    def __init__(self, commands: list[str]):
        self.commands = commands
        super().__init__("forgetting ratio needs the Joint and Random references of the same scenario, "
                         "options and seed; launch:\n  " + "\n  ".join(commands))


def with_rho(records: list[RunRecord], require_references: bool = True) -> list[RunMetrics]:
    """rho per finished run, using the Random diagonal and the Joint matrix of the same scenario,
    scenario options and seed (reference §7.1). Joint with a different protocol is used only if no
    Joint run shares the run's protocol."""
    finished = [r for r in records if r.status == "finished" and r.accuracy is not None]
    refs: dict[tuple, dict[str, list[RunRecord]]] = {}
    for r in finished:
        if r.strategy in REFERENCES:
            refs.setdefault(_reference_key(r), {}).setdefault(r.strategy, []).append(r)
    out, missing = [], []
    for r in finished:
        found = refs.get(_reference_key(r), {})
        acc_upto = mean_upto(r.accuracy)
        if not all(found.get(k) for k in REFERENCES):
            lacking = [k for k in REFERENCES if not found.get(k)]
            missing += [_launch_command(k, r) for k in lacking]
            out.append(RunMetrics(r, None, None, acc_upto))
            continue
        joint = next((j for j in found["joint"] if j.protocol == r.protocol), found["joint"][0])
        rho = forgetting_ratio(r.accuracy, found["random"][0].accuracy, joint.accuracy)
        out.append(RunMetrics(r, rho, mean_upto(rho), acc_upto))
    missing = sorted(set(missing))
    if missing and require_references:
        raise MissingReferences(missing)
    return out


def _launch_command(strategy: str, r: RunRecord) -> str:
    opts = r.scenario_options
    parts = [f"cl-bench run --strategy {strategy} --scenario {r.scenario} --seed {r.seed}"]
    if opts.get("max_train_per_task"):
        parts.append(f"--max-train-per-task {opts['max_train_per_task']}")
    if opts.get("tasks"):
        parts.append("--tasks " + ",".join(map(str, opts["tasks"])))
    parts += [f"--option {k}={v}" for k, v in opts.items()
              if k not in ("max_train_per_task", "tasks") and v is not None]
    if strategy == "joint":
        parts += [f"--set {k}={v}" for k, v in r.protocol.items() if v is not None]  # None: the default
    return " ".join(parts)
