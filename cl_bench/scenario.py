"""Scenarios: an ordered list of tasks whose splits live in memory as tensors.

Images stay uint8 (4x less memory than float; the mixture is ~1 GB as uint8) and are normalised per
batch by a fused multiply-add with the task's constants, so a batch is one index slice plus one
``x.float() * scale + shift``: no per-sample Python, no DataLoader.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


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
        return Task(
            self.name,
            self.n_classes,
            self.train.to(device),
            self.valid.to(device),
            self.test.to(device),
            self.mean,
            self.std,
        )


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
        return Scenario(
            self.name, [t.to(device) for t in self.tasks], self.input_shape, self.arch, self.seed, self.info
        )


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
        ids = torch.cat([torch.full((len(s),), i, dtype=torch.long, device=x.device) for s, i in zip(splits, task_ids)])
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


# ---- what is known before any data is loaded ---------------------------------------------------
# Scenario name -> its number of tasks given its options (an upper bound where data sets may be missing),
# declared by the builders (cl_bench.benchmarks), so that `tasks` positions are checked before any work.
TASK_COUNTS: dict[str, Callable[[Mapping[str, Any]], int]] = {}


def declare_task_count(name: str, count: int | Callable[[Mapping[str, Any]], int]) -> None:
    if callable(count):
        TASK_COUNTS[name] = count
    else:
        TASK_COUNTS[name] = lambda _options: count


def check_task_positions(name: str, options: Mapping[str, Any], where: str = "") -> None:
    """ValueError if the ``tasks`` option names a position the scenario does not have (scenarios that
    declared no count are checked when built)."""
    tasks, count = options.get("tasks"), TASK_COUNTS.get(name)
    if tasks is None or count is None:
        return
    n = count(options)
    bad = [i for i in tasks if not 0 <= i < n]
    if bad:
        raise ValueError(
            f"{where or f'scenario {name!r}'} option 'tasks': position(s) {', '.join(map(str, bad))} out of "
            f"range: it has {n} task(s), positions 0..{n - 1}"
        )


def check_samples(scenario: Scenario) -> Scenario:
    """``scenario``, or ValueError naming the first task split without samples (an empty data file, or a
    subset that leaves nothing): training and evaluation would divide by zero. The builders call it."""
    if not scenario.tasks:
        raise ValueError(f"scenario {scenario.name!r} has no tasks")
    for t, task in enumerate(scenario.tasks):
        for split in ("train", "valid", "test"):
            if len(getattr(task, split)) == 0:
                raise ValueError(
                    f"scenario {scenario.name!r}: task {t + 1} ({task.name}) has no {split} samples; "
                    f"check its data files (and max_train_per_task / tasks)"
                )
    return scenario


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


@dataclass
class TrainCap:
    """``max_train_per_task``: each task's training split cut to at most ``max_n`` samples (stratified,
    drawn from ``generator``), a held-out validation split cut in the same proportion (a full one would
    dominate the epoch). One generator serves the tasks in order, train before valid.

    ``build_scenario`` applies it to built tasks (``apply``); a builder that takes a ``train_cap``
    argument gets it instead and cuts each task's index lists (``select``) before copying any sample:
    the same samples, without a full copy of every split on the way (the mixture)."""

    max_n: int
    generator: torch.Generator

    @classmethod
    def seeded(cls, max_n: int, seed: int) -> TrainCap:
        return cls(max_n, torch.Generator().manual_seed(seed))

    def select(self, y_train: Tensor, y_valid: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """(kept train positions, kept valid positions) of a task's labels; ``y_valid`` None when the
        task validates on its training split (then it is cut with it)."""
        keep = stratified_subset(y_train, self.max_n, self.generator)
        if y_valid is None:
            return keep, None
        n_valid = math.ceil(len(y_valid) * len(keep) / len(y_train))
        return keep, stratified_subset(y_valid, n_valid, self.generator)

    def apply(self, task: Task) -> None:
        """Cut a built task's splits in place."""
        valid_is_train = task.valid.x is task.train.x  # the MNIST setups validate on the training set
        keep, keep_valid = self.select(task.train.y, None if valid_is_train else task.valid.y)
        task.train = Split(task.train.x[keep], task.train.y[keep])
        if keep_valid is None:
            task.valid = task.train
        else:
            task.valid = Split(task.valid.x[keep_valid], task.valid.y[keep_valid])
