"""What every table, figure and page must say about its numbers: the scale they were measured at, in words,
whether that is the paper's full protocol (and if not, how it differs), and who made the report from what.

``Scale`` is read from a section's runs: the samples cap and task selection (scenario options), the epoch
cap and any other training setting that differs from the paper's preset, the tasks present, the data sets
missing or present only as a subset (recorded by the scenario in each run's ``data``), and the seeds.
``footer`` names the store, the cl-bench version and the date.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cl_bench.runner import code_version
from cl_bench.store import RunRecord
from cl_bench.trainer import PRESETS

PAPER_PROTOCOL = dataclasses.asdict(PRESETS["paper"])
PAPER_TASKS = {"mixture": 8, "cifar": 10, "split_mnist": 2, "permuted_mnist": 10}  # the paper's task counts
DATASET_NAMES = {
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
    "svhn": "SVHN",
    "facescrub": "FaceScrub",
    "notmnist": "notMNIST",
    "fashion_mnist": "FashionMNIST",
    "gtsrb": "GTSRB",
    "mnist": "MNIST",
}
CLASS_WORD = {"facescrub": "people"}  # what a class of a data set is, where "classes" says it badly


def dataset_name(name: str) -> str:
    return DATASET_NAMES.get(name, name)


def protocol_changes(protocol: dict) -> dict:
    """The training settings of ``protocol`` that differ from the paper's preset, the epoch cap aside."""
    return {k: v for k, v in protocol.items() if k != "epochs" and k in PAPER_PROTOCOL and v != PAPER_PROTOCOL[k]}


def protocol_summary(protocol: dict) -> str:
    """'≤ 10 epochs' and any other setting that differs from the paper's, e.g. '≤ 3 epochs, lr_patience=1'."""
    parts = [f"≤ {protocol['epochs']} epochs"] if protocol.get("epochs") is not None else []
    return ", ".join(parts + [f"{k}={v}" for k, v in sorted(protocol_changes(protocol).items())])


def _subset(name: str, info: dict, head_classes: int | None) -> str:
    """'CIFAR10 8% of its training set (4,000 of 50,000)' or 'FaceScrub 20 of 100 people (580 images)'."""
    label = dataset_name(name)
    present, train = info.get("classes_present"), info.get("train")
    official = info.get("official")
    if official and train:
        return f"{label} {train / official[0]:.0%} of its training set ({train:,} of {official[0]:,})"
    if present and head_classes and present < head_classes:
        word = CLASS_WORD.get(name, "classes")
        return f"{label} {present} of {head_classes} {word}" + (f" ({train:,} training images)" if train else "")
    return f"{label} (a subset)"


def run_task_names(r: RunRecord) -> list[str]:
    """This run's task names in its training order (the mixture's order depends on the seed)."""
    T = r.n_tasks or 0  # a run that stored no accuracy has no task count
    names = [dataset_name(t.get("name", f"task {i + 1}")) for i, t in enumerate((r.data or {}).get("tasks", []))]
    return names if len(names) == T else [f"task {i + 1}" for i in range(T)]


@dataclass
class Scale:
    """The scale of a set of runs of one scenario, options and training protocol."""

    scenario: str
    n_tasks: int
    task_names: list[str]
    samples_cap: int | None
    tasks_option: list | None
    protocol: dict
    missing: list[str]  # data sets absent
    subsets: list[str]  # how each partial data set is partial, in words
    seeds: list[int]
    incomplete: bool  # the scenario recorded complete = false without saying which data set
    orders: dict[int, list[str]] = dataclasses.field(default_factory=dict)  # seed -> task order, when seeds differ

    @property
    def paper_tasks(self) -> int | None:
        return PAPER_TASKS.get(self.scenario)

    def deviations(self) -> list[str]:
        """How this differs from the paper's full protocol, in short words; [] when it does not."""
        out = []
        if self.samples_cap:
            out.append(f"≤ {self.samples_cap:,} training samples per task (paper: all)")
        if self.tasks_option:
            out.append(f"only tasks {', '.join(map(str, self.tasks_option))} of the scenario")
        if self.paper_tasks and self.n_tasks < self.paper_tasks and not self.tasks_option:
            why = f" ({' and '.join(map(dataset_name, self.missing))} missing)" if self.missing else ""
            out.append(f"{self.n_tasks} of the paper's {self.paper_tasks} tasks{why}")
        elif self.missing:
            out.append(f"{', '.join(map(dataset_name, self.missing))} missing")
        if self.subsets:
            out.append(f"{', '.join(self._subset_names())} only in part")
        elif self.incomplete and not self.missing:
            out.append("some data sets incomplete")
        epochs = self.protocol.get("epochs")
        if epochs is not None and epochs != PAPER_PROTOCOL["epochs"]:
            out.append(f"≤ {epochs} epochs per task (paper: up to {PAPER_PROTOCOL['epochs']})")
        out += [f"{k}={v} (paper: {PAPER_PROTOCOL[k]})" for k, v in sorted(protocol_changes(self.protocol).items())]
        return out

    def _subset_names(self) -> list[str]:
        return [s.split(" ")[0] for s in self.subsets]

    @property
    def paper(self) -> bool:
        return not self.deviations()

    def seeds_text(self) -> str:
        s = self.seeds
        return f"seed {s[0]}" if len(s) == 1 else f"{len(s)} seeds ({', '.join(map(str, s))})" if s else "no seed"

    def text(self) -> str:
        """The scale in one paragraph, ending with whether this is the paper's full protocol."""
        named = self.task_names and not all(n.startswith("task ") for n in self.task_names)
        names = f" ({', '.join(self.task_names)})" if named else ""
        cap = (
            f"at most {self.samples_cap:,} training samples per task"
            if self.samples_cap
            else "no cap on the training samples per task"
        )
        epochs = self.protocol.get("epochs")
        parts = [f"{self.n_tasks} tasks{names}", cap] + ([f"at most {epochs} epochs per task"] if epochs else [])
        parts.append(self.seeds_text())
        out = "Scale: " + ", ".join(parts) + "."
        if self.missing:
            out += f" Missing data sets: {', '.join(map(dataset_name, self.missing))}."
        if self.subsets:
            out += f" Subsets: {'; '.join(self.subsets)}."
        if self.orders and not named:  # the mixture's order depends on the seed: columns are positions
            by_seed = "; ".join(f"seed {s}: {', '.join(names)}" for s, names in sorted(self.orders.items()))
            out += f" Task order by seed: {by_seed}."
        return out + " " + self.verdict()

    def verdict(self) -> str:
        dev = self.deviations()
        if not dev:
            return "This is the paper's full protocol."
        return "Not the paper's full protocol: " + "; ".join(dev) + "."

    def short(self) -> str:
        """One line for figure captions and titles: tasks, samples, epochs, seeds, and the verdict."""
        cap = f"≤ {self.samples_cap:,} samples/task" if self.samples_cap else "all samples"
        epochs = self.protocol.get("epochs")
        bits = [f"{self.n_tasks} tasks", cap] + ([f"≤ {epochs} epochs"] if epochs else []) + [self.seeds_text()]
        if self.missing:
            bits.append(f"missing {', '.join(map(dataset_name, self.missing))}")
        if self.subsets:
            bits.append("subsets of " + ", ".join(self._subset_names()))
        return ", ".join(bits) + ("; the paper's full protocol" if self.paper else "; not the paper's protocol")


def section_scale(
    records: Sequence[RunRecord], protocol: dict, task_names: Sequence[str] = (), seeds: Sequence[int] | None = None
) -> Scale:
    """The Scale of a section's runs (one scenario, options and training protocol)."""
    first = records[0]
    opts = first.scenario_options or {}
    missing, subsets, incomplete, orders = set(), {}, False, {}
    for r in records:
        data = r.data or {}
        orders.setdefault(r.seed, run_task_names(r))
        missing |= set(data.get("missing_datasets") or [])
        incomplete |= data.get("complete") is False
        heads = {t.get("name"): t.get("classes") for t in data.get("tasks", []) if isinstance(t, dict)}
        datasets = data.get("datasets") if isinstance(data.get("datasets"), dict) else {}
        for name in data.get("subset_datasets") or []:
            subsets.setdefault(name, _subset(name, datasets.get(name) or {}, heads.get(name)))
    shown_seeds = sorted(set(seeds if seeds is not None else (r.seed for r in records)))
    differ = len({tuple(o) for o in orders.values()}) > 1
    return Scale(
        first.scenario,
        max(r.n_tasks or 0 for r in records),
        list(task_names),
        opts.get("max_train_per_task"),
        opts.get("tasks"),
        dict(protocol),
        sorted(missing),
        list(subsets.values()),
        shown_seeds,
        incomplete,
        {s: orders[s] for s in shown_seeds if s in orders} if differ else {},
    )


def footer(store: str | os.PathLike | None, now: _dt.datetime | None = None) -> str:
    """'Made by cl-bench 0.2.0+gabc1234 from the store reports/runs.db on 2025-01-31 12:00 UTC.'"""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    where = f"the store {store}" if store else "the given runs"
    return f"Made by cl-bench {code_version()} from {where} on {now.strftime('%Y-%m-%d %H:%M UTC')}."
