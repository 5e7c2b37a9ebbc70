"""Reading the store: tidy DataFrames (``load``), and rho per run against its matching Joint/Random references
(``rho_per_run``, ``with_rho``).

Eq. 6 compares a run with the Joint and Random runs of the *same experiment*. A reference matches a run when:

- Joint: same scenario, scenario options (samples cap, tasks), seed, training protocol (every setting
  that changes training: epoch cap, lr schedule, batch size, gradient clip, precision, memory layout;
  ``training_protocol``) and data (``data_fingerprint``: the files' checksums, the tasks' sizes and
  order, compared when both runs recorded them).
- Random: same scenario, options, seed and data. It does not train, so its protocol does not change its
  accuracies and is not compared (one with the same protocol is preferred when several exist).

A run without a match keeps rho = None, with the reason (``RunMetrics.missing``) and the exact
``cl-bench run`` command that would produce the reference (``RunMetrics.commands``). A reference from
another protocol, seed or data is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cl_bench.metrics import UndefinedRatioError, final_metrics, forgetting_ratio, mean_upto
from cl_bench.store import DEFAULT_STORE, RunRecord, Store
from cl_bench.trainer import LATER_SETTINGS

REFERENCES = ("random", "joint")
EVAL_ONLY = ("eval_batch_size", "eval_train_each_epoch")  # change what is measured when, not what is learned

RUN_COLUMNS = [
    "run_id",
    "strategy",
    "scenario",
    "seed",
    "status",
    "n_tasks",
    "wall_s",
    "error",
    "tags",
    "hparams",
    "scenario_options",
    "max_train_per_task",
    "protocol",
    "epochs",
    "precision",
    "channels_last",
    "code_version",
    "acc",
    "bwt",
    "forgetting",
    "fwt",
]


def load(store: str | Path | Store = DEFAULT_STORE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, accuracy): one row per run; one row per (run, t, tau) with the run's keys repeated.

    ``runs`` columns: run_id, strategy, scenario, seed, status, n_tasks, wall_s, error, tags (comma-separated),
    hparams and scenario_options (JSON), max_train_per_task (the samples cap, None = all), protocol (JSON of
    every protocol setting, the ones a run made before they existed filled with their default: precision
    fp32, channels_last false), epochs (the epoch cap), precision ('fp32' or 'bf16'), channels_last, and
    code_version. So fp32/bf16 or 10/20-epoch runs of one configuration can be told apart. Then the
    field's metrics after the last task (``cl_bench.metrics``): acc (ACC, mean accuracy), bwt (backward
    transfer), forgetting (Chaudhry et al.'s), all in [0, 1] units and NaN where undefined, and fwt,
    always NaN (``metrics.FWT_UNDEFINED``: runs do not measure a task before training it)."""
    if not isinstance(store, (str, os.PathLike, Store)):
        raise TypeError(f"store must be a results file's path (str or os.PathLike) or a Store, got {store!r}")
    store = store if isinstance(store, Store) else Store.open_read(store)
    records = store.query()
    rows = []
    for r in records:
        proto = protocol_of(r)
        rows.append(
            {
                "run_id": r.run_id,
                "strategy": r.strategy,
                "scenario": r.scenario,
                "seed": r.seed,
                "status": r.status,
                "n_tasks": r.n_tasks,
                "wall_s": r.wall_s,
                "error": r.error,
                "tags": ",".join(r.tags),
                "hparams": json.dumps(r.hparams, sort_keys=True),
                "scenario_options": json.dumps(r.scenario_options, sort_keys=True),
                "max_train_per_task": r.scenario_options.get("max_train_per_task"),
                "protocol": json.dumps(proto, sort_keys=True),
                "epochs": proto.get("epochs"),
                "precision": proto.get("precision"),
                "channels_last": proto.get("channels_last"),
                "code_version": r.code_version,
                **final_metrics(r.accuracy),
            }
        )
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    acc = pd.DataFrame(
        [
            {
                "run_id": r.run_id,
                "strategy": r.strategy,
                "scenario": r.scenario,
                "seed": r.seed,
                "t": t,
                "tau": tau,
                "acc": r.accuracy[t, tau],
            }
            for r in records
            if r.accuracy is not None
            for t in range(r.n_tasks)
            for tau in range(t + 1)
            if not np.isnan(r.accuracy[t, tau])
        ],
        columns=["run_id", "strategy", "scenario", "seed", "t", "tau", "acc"],
    )
    return runs, acc


# ---- what makes two runs the same experiment ----------------------------------------------------------
def protocol_of(r: RunRecord) -> dict[str, Any]:
    """The run's protocol with the settings added after it was made filled with their defaults."""
    return {**LATER_SETTINGS, **r.protocol}


def training_protocol(r: RunRecord) -> dict[str, Any]:
    """The settings that change what is learned (``protocol_of`` less the evaluation-only ones)."""
    return {k: v for k, v in protocol_of(r).items() if k not in EVAL_ONLY}


def data_fingerprint(r: RunRecord) -> str | None:
    """A short hash of the data a run used: each file's checksum (not its path, which differs between
    machines), the tasks' names and sizes, and the task order; None when the run recorded none."""
    data = r.data or {}
    datasets = data.get("datasets") if isinstance(data.get("datasets"), dict) else {}
    checksums = sorted(
        sha for info in datasets.values() if isinstance(info, dict) for sha in (info.get("files") or {}).values()
    )
    tasks = [
        [t.get(k) for k in ("name", "classes", "train", "valid", "test")]
        for t in data.get("tasks", [])
        if isinstance(t, dict)
    ]
    order = {k: data[k] for k in ("order", "task_ids", "permutation_ids") if k in data}
    if not checksums and not tasks:
        return None
    text = json.dumps([checksums, tasks, order], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _differences(a: dict, b: dict) -> str:
    """'epochs=1 (this run: 3), precision=fp32 (this run: bf16)': a's settings that differ from b's."""
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}={a.get(k)} (this run: {b.get(k)})" for k in keys)


# ---- rho per run ------------------------------------------------------------------------------------------
@dataclass
class RunMetrics:
    record: RunRecord
    rho: np.ndarray | None  # (T, T) Eq. 6, NaN above the diagonal; None without matching references
    rho_upto: np.ndarray | None  # rho^{<=t}
    acc_upto: np.ndarray  # A^{<=t}, mean accuracy over tau <= t (what the paper reports on MNIST)
    joint: str | None = None  # run_id of the Joint reference used
    random: str | None = None  # run_id of the Random reference used
    missing: list[str] = field(default_factory=list)  # why rho is None: one line per reference lacking
    commands: list[str] = field(default_factory=list)  # `cl-bench run ...` that would produce them
    error: str | None = None  # Eq. 6 undefined (Joint no better than Random on a task)


class MissingReferences(LookupError):
    """Some runs lack their Joint/Random references; ``commands`` says what to launch."""

    def __init__(self, commands: list[str]):
        self.commands = commands
        super().__init__(
            "forgetting ratio needs the Joint and Random references of the same scenario, "
            "options, seed, protocol and data; launch:\n  " + "\n  ".join(commands)
        )


class _Pool:
    """The reference runs, indexed once by (strategy, scenario, options, seed), so that matching a run
    costs the same whatever the size of the store (each key of a run computed once: ``_Keys``)."""

    def __init__(self, records: list[RunRecord]):
        self.keys = _Keys()
        # (kind, scenario, options) -> seed -> runs, in the order given
        self.groups: dict[tuple[str, str, str], dict[int, list[RunRecord]]] = {}
        self.options_of_seed: dict[tuple[str, str, int], set[str]] = {}  # for the message only
        self._seeds_text: dict[tuple[str, str, str], str] = {}
        for r in records:
            if r.strategy in REFERENCES and r.status == "finished" and r.accuracy is not None:
                opts = self.keys.options(r)
                self.groups.setdefault((r.strategy, r.scenario, opts), {}).setdefault(r.seed, []).append(r)
                self.options_of_seed.setdefault((r.strategy, r.scenario, r.seed), set()).add(opts)

    def match(self, r: RunRecord, kind: str) -> tuple[RunRecord | None, str]:
        """(the matching reference of ``kind``, '') or (None, why there is none)."""
        name = "Joint" if kind == "joint" else "Random"
        k = self.keys
        group_key = (kind, r.scenario, k.options(r))
        by_seed = self.groups.get(group_key, {})
        same = [x for x in by_seed.get(r.seed, []) if x.run_id != r.run_id]
        if not same:
            if by_seed:
                if group_key not in self._seeds_text:
                    self._seeds_text[group_key] = ", ".join(map(str, sorted(by_seed)))
                return (
                    None,
                    f"no {name} run of this seed (these scenario options have seeds {self._seeds_text[group_key]})",
                )
            other = sorted(self.options_of_seed.get((kind, r.scenario, r.seed), ()))
            if other:
                return None, f"no {name} run of scenario options {k.options(r)} (this seed has: {'; '.join(other)})"
            return None, f"no {name} run of {r.scenario} with these options and seed"
        fp = k.fingerprint(r)
        same_data = [x for x in same if fp is None or k.fingerprint(x) in (None, fp)]
        if not same_data:
            return None, (
                f"the {name} run(s) of this seed used other data (file checksums, task sizes or order differ)"
            )
        mine = k.training(r)
        if kind == "random":  # does not train: any protocol, the same one preferred
            return min(same_data, key=lambda x: (k.training(x) != mine, x.run_id)), ""
        exact = [x for x in same_data if k.training(x) == mine]
        if not exact:
            diffs = "; ".join(sorted({_differences(training_protocol(x), training_protocol(r)) for x in same_data}))
            return None, f"the {name} run(s) of this seed were trained under another protocol: {diffs}"
        full = k.protocol(r)
        return min(exact, key=lambda x: (k.protocol(x) != full, x.run_id)), ""


class _Keys:
    """A run's comparison keys, computed once per run (computing them per comparison made matching
    quadratic in the store)."""

    def __init__(self):
        self._cache: dict[tuple[int, str], Any] = {}
        self._alive: dict[int, RunRecord] = {}  # keeps each run alive, so its id() is not reused

    def _get(self, r: RunRecord, what: str, compute) -> Any:
        key = (id(r), what)
        if key not in self._cache:
            self._alive[id(r)] = r
            self._cache[key] = compute(r)
        return self._cache[key]

    def options(self, r: RunRecord) -> str:
        return self._get(r, "options", lambda x: json.dumps(x.scenario_options, sort_keys=True))

    def fingerprint(self, r: RunRecord) -> str | None:
        return self._get(r, "data", data_fingerprint)

    def training(self, r: RunRecord) -> dict[str, Any]:  # compared as dicts: 1 == 1.0 as before
        return self._get(r, "training", training_protocol)

    def protocol(self, r: RunRecord) -> dict[str, Any]:
        return self._get(r, "protocol", protocol_of)


def rho_per_run(records: list[RunRecord], pool: list[RunRecord] | None = None) -> list[RunMetrics]:
    """rho per finished run of ``records`` against its matching references among ``pool`` (default:
    ``records``); never raises. A reference run gets rho too (Joint against itself is 0 by Eq. 6)."""
    finished = [r for r in records if r.status == "finished" and r.accuracy is not None]
    refs = _Pool(list(pool) if pool is not None else finished)
    out = []
    for r in finished:
        m = RunMetrics(r, None, None, mean_upto(r.accuracy))
        found = {}
        for kind in REFERENCES:
            ref, why = (r, "") if r.strategy == kind else refs.match(r, kind)
            if ref is None:
                m.missing.append(why)
                m.commands.append(_launch_command(kind, r))
            found[kind] = ref
        if not m.missing:
            m.joint, m.random = found["joint"].run_id, found["random"].run_id
            try:
                m.rho = forgetting_ratio(r.accuracy, found["random"].accuracy, found["joint"].accuracy)
                m.rho_upto = mean_upto(m.rho)
            except UndefinedRatioError as e:
                m.error = str(e)
        out.append(m)
    return out


def with_rho(
    records: list[RunRecord], require_references: bool = True, pool: list[RunRecord] | None = None
) -> list[RunMetrics]:
    """``rho_per_run``, raising MissingReferences (the launch commands) if a run lacks its references
    and ``require_references``, and UndefinedRatioError if Eq. 6 is undefined for a run."""
    metrics = rho_per_run(records, pool)
    undefined = next((m.error for m in metrics if m.error), None)
    if undefined:
        raise UndefinedRatioError(undefined)
    missing = sorted({c for m in metrics for c in m.commands})
    if missing and require_references:
        raise MissingReferences(missing)
    return metrics


def _launch_command(strategy: str, r: RunRecord) -> str:
    opts = r.scenario_options
    parts = [f"cl-bench run --strategy {strategy} --scenario {r.scenario} --seed {r.seed}"]
    if opts.get("max_train_per_task"):
        parts.append(f"--max-train-per-task {opts['max_train_per_task']}")
    if opts.get("tasks"):
        parts.append("--tasks " + ",".join(map(str, opts["tasks"])))
    parts += [
        f"--option {k}={v}" for k, v in opts.items() if k not in ("max_train_per_task", "tasks") and v is not None
    ]
    if strategy == "joint":
        parts += [f"--set {k}={v}" for k, v in r.protocol.items() if v is not None]  # None: the default
    return " ".join(parts)
