"""Scenarios: an ordered list of tasks whose splits live in memory as tensors.

Images stay uint8 (4x less memory than float; the mixture is ~1 GB as uint8) and are normalised per
batch by a fused multiply-add with the task's constants, so a batch is one index slice plus one
``x.float() * scale + shift``: no per-sample Python, no DataLoader.
"""
from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from cl_bench.ranges import Range
from cl_bench.registry import get_scenario, scenario_options
from cl_bench.values import parse_like, parse_value


@dataclass
class Split:
    """Raw samples of one split: ``x`` uint8 (N, C, H, W) or (N, D), ``y`` int64 labels 0..C-1."""

    x: Tensor
    y: Tensor

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} samples but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Task:
    """One task of a scenario: its own head (``n_classes``), splits and per-channel normalisation."""

    name: str
    n_classes: int
    train: Split
    valid: Split
    test: Split
    mean: Sequence[float]  # per channel, in [0, 1] units of x / 255
    std: Sequence[float]

    def scale_shift(self) -> tuple[Tensor, Tensor]:
        """(scale, shift) such that ``x.float() * scale + shift == (x / 255 - mean) / std``."""
        mean = torch.tensor(self.mean, dtype=torch.float32)
        std = torch.tensor(self.std, dtype=torch.float32)
        scale, shift = 1.0 / (255.0 * std), -mean / std
        if self.train.x.dim() == 4:  # one value per channel, broadcast over H, W
            scale, shift = scale.view(-1, 1, 1), shift.view(-1, 1, 1)
        return scale.to(self.train.x.device), shift.to(self.train.x.device)

    def to(self, device) -> Task:
        return Task(self.name, self.n_classes, self.train.to(device), self.valid.to(device),
                    self.test.to(device), self.mean, self.std)


@dataclass
class Scenario:
    """An ordered list of tasks built from a seed, plus what the run record needs to know about them.

    ``arch`` names the reference network family for this scenario ("mlp" or "alexnet").
    ``info`` records the data actually used (counts, subset flags, checksums, options).
    """

    name: str
    tasks: list[Task]
    input_shape: tuple[int, ...]
    arch: str
    seed: int
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tasks)

    def to(self, device) -> Scenario:
        return Scenario(self.name, [t.to(device) for t in self.tasks], self.input_shape, self.arch,
                        self.seed, self.info)


class Data:
    """Samples of one task (or of several, for Joint) ready to be sliced into normalised batches.

    ``task`` is an int for single-task data or an int64 tensor of per-sample task ids; ``scale`` and
    ``shift`` are indexed by task id in the second case.
    """

    def __init__(self, x: Tensor, y: Tensor, task: int | Tensor, scale: Tensor, shift: Tensor):
        self.x, self.y, self.task, self.scale, self.shift = x, y, task, scale, shift

    @classmethod
    def of(cls, task: Task, split: str, t: int) -> Data:
        s = getattr(task, split)
        scale, shift = task.scale_shift()
        return cls(s.x, s.y, t, scale, shift)

    @classmethod
    def union(cls, tasks: Sequence[Task], split: str, task_ids: Sequence[int]) -> Data:
        """Concatenate a split of several tasks, keeping each sample's task id (Joint's data)."""
        splits = [getattr(task, split) for task in tasks]
        x = torch.cat([s.x for s in splits])
        y = torch.cat([s.y for s in splits])
        ids = torch.cat([torch.full((len(s),), i, dtype=torch.long, device=x.device)
                         for s, i in zip(splits, task_ids)])
        n_ids = max(task_ids) + 1
        ss = {i: task.scale_shift() for task, i in zip(tasks, task_ids)}
        ref_scale, ref_shift = next(iter(ss.values()))
        scale = torch.zeros((n_ids, *ref_scale.shape), device=x.device)
        shift = torch.zeros((n_ids, *ref_shift.shape), device=x.device)
        for i, (sc, sh) in ss.items():
            scale[i], shift[i] = sc, sh
        return cls(x, y, ids, scale, shift)

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, idx: Tensor) -> tuple[Tensor, Tensor, int | Tensor]:
        x = self.x[idx].float()
        if isinstance(self.task, int):
            return x * self.scale + self.shift, self.y[idx], self.task
        t = self.task[idx]
        return x * self.scale[t] + self.shift[t], self.y[idx], t


# ----------------------------------------------------------------------------------------------
def stratified_subset(y: Tensor, max_n: int, generator: torch.Generator) -> Tensor:
    """Indices of at most ``max_n`` samples keeping class proportions (largest remainders)."""
    n = len(y)
    if max_n >= n:
        return torch.arange(n)
    classes, counts = torch.unique(y.cpu(), return_counts=True)
    quota = counts.double() * max_n / n
    take = quota.floor().long()
    short = max_n - int(take.sum())
    if short > 0:
        take[torch.argsort(quota - take, descending=True)[:short]] += 1
    chosen = []
    for c, k in zip(classes.tolist(), take.tolist()):
        idx = (y.cpu() == c).nonzero().flatten()
        chosen.append(idx[torch.randperm(len(idx), generator=generator)[:k]])
    return torch.cat(chosen).sort().values


COMMON_OPTIONS = ("max_train_per_task", "tasks")  # build_scenario takes these for every scenario


def option_ranges(**ranges: Range):
    """Decorator of a scenario builder: the valid range of its own options, e.g.
    ``@option_ranges(valid_fraction=Range(at_least=0, below=1))``. ``parse_scenario_options`` checks them
    when a CLI or sweep value is parsed; every call of the builder checks them too (Python callers)."""

    def wrap(build: Callable[..., Scenario]) -> Callable[..., Scenario]:
        signature = inspect.signature(build)
        unknown = sorted(set(ranges) - set(signature.parameters))
        if unknown:
            raise ValueError(f"{build.__name__} has no option {', '.join(unknown)} to declare a range for")

        @functools.wraps(build)
        def checked(*args, **kwargs) -> Scenario:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            check_options(checked, bound.arguments, f"scenario {build.__name__!r}")
            return build(*args, **kwargs)

        checked.option_ranges = dict(ranges)
        return checked

    return wrap


def check_options(build: Callable[..., Scenario], options: dict[str, Any], where: str) -> None:
    """ValueError naming the first option outside the range the builder declares (``option_ranges``);
    an int default asks for an int."""
    parameters = inspect.signature(build).parameters
    for key, valid in getattr(build, "option_ranges", {}).items():
        if options.get(key) is not None:
            valid.check(options[key], f"{where} option {key!r}", type(parameters[key].default))


def check_common_options(max_train_per_task: int | None, tasks: Sequence[int] | None, where: str) -> None:
    """max_train_per_task >= 1; tasks a non-empty list of distinct positions >= 0 (the upper bound is
    checked once the scenario is built and its length known)."""
    if max_train_per_task is not None:
        Range(at_least=1).check(max_train_per_task, f"{where} option 'max_train_per_task'", int)
    if tasks is not None:
        tasks = list(tasks)
        if not tasks:
            raise ValueError(f"{where} option 'tasks' must name at least one task position, got []")
        for i in tasks:
            Range(at_least=0).check(i, f"{where} option 'tasks' position", int)
        repeated = sorted({i for i in tasks if tasks.count(i) > 1})
        if repeated:
            raise ValueError(f"{where} option 'tasks' names position(s) {', '.join(map(str, repeated))} "
                             f"more than once, got {tasks}")


def parse_scenario_options(name: str, values: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Scenario options given as text (CLI) or YAML, typed by the builder's defaults (cl_bench.values);
    unknown or reserved names are errors listing the accepted ones."""
    where = where or f"scenario {name!r}"
    accepted = scenario_options(name)
    unknown = sorted(set(values) - set(accepted) - set(COMMON_OPTIONS))
    if unknown:
        raise ValueError(f"{where} has no option {', '.join(unknown)}; it accepts: "
                         + ", ".join([f"{k}={v!r}" for k, v in accepted.items()] + list(COMMON_OPTIONS)))
    out = {}
    for key, raw in values.items():
        name_ = f"{where} option {key!r}"
        if raw is None:
            out[key] = None
        elif key == "max_train_per_task":
            out[key] = parse_value(raw, int, name_)
        elif key == "tasks":
            items = raw.split(",") if isinstance(raw, str) else raw
            out[key] = [parse_value(i, int, name_) for i in parse_value(items, list, name_)]
        elif accepted[key] is None:
            out[key] = raw  # no default to take a type from: the builder checks it
        else:
            out[key] = parse_like(raw, accepted[key], name_)
    check_common_options(out.get("max_train_per_task"), out.get("tasks"), where)
    check_options(get_scenario(name).build, out, where)
    return out


def build_scenario(name: str, seed: int = 0, data_root=None, download: bool = False,
                   max_train_per_task: int | None = None, tasks: Sequence[int] | None = None,
                   **options) -> Scenario:
    """Build a registered scenario; ``tasks`` keeps a subset (by position) and ``max_train_per_task``
    caps each task's training split (stratified, seeded; a held-out validation split shrinks in the
    same proportion): the reduced-scale knobs every scenario takes."""
    spec = get_scenario(name)
    accepted = scenario_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"scenario {name!r} has no option {', '.join(unknown)}; it accepts: "
                         f"{', '.join(f'{k}={v!r}' for k, v in accepted.items()) or 'none'}")
    check_common_options(max_train_per_task, tasks, f"scenario {name!r}")  # before any data is loaded
    scenario = spec.build(seed=seed, data_root_path=data_root, download=download, **options)
    if tasks is not None:
        bad = [i for i in tasks if not 0 <= i < len(scenario.tasks)]
        if bad:
            raise ValueError(f"task positions {bad} out of range 0..{len(scenario.tasks) - 1}")
        scenario.tasks = [scenario.tasks[i] for i in tasks]
    if max_train_per_task is not None:
        generator = torch.Generator().manual_seed(seed)
        for task in scenario.tasks:
            n_train = len(task.train)
            keep = stratified_subset(task.train.y, max_train_per_task, generator)
            valid_is_train = task.valid.x is task.train.x
            task.train = Split(task.train.x[keep], task.train.y[keep])
            if valid_is_train:  # the MNIST setups validate on the training set itself
                task.valid = task.train
            else:  # keep the validation/train ratio: a full validation split would dominate the epoch
                n_valid = math.ceil(len(task.valid) * len(keep) / n_train)
                keep = stratified_subset(task.valid.y, n_valid, generator)
                task.valid = Split(task.valid.x[keep], task.valid.y[keep])
    scenario.info["options"] = {"max_train_per_task": max_train_per_task,
                                "tasks": list(tasks) if tasks is not None else None, **options}
    scenario.info["tasks"] = [{"name": t.name, "classes": t.n_classes, "train": len(t.train),
                               "valid": len(t.valid), "test": len(t.test)} for t in scenario.tasks]
    return scenario
