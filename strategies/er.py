"""ER: Experience Replay (as in Chaudhry et al., "On Tiny Episodic Memories in Continual Learning",
2019, arXiv:1902.10486), task-incremental. Not in the HAT paper.

A memory holds training samples of the tasks learned so far, **each with its task id**. Every training
step of task t draws a replay batch from it and minimises the mean cross-entropy over the union of the
current batch and the replay batch, each sample scored by its own task's head:

    L = (1 / (|B| + |M_b|)) Σ_{(x, y, τ) ∈ B ∪ M_b} CE(f_τ(x), y)        # ER's loss on B ∪ M_b

Budget: ``mem_size`` samples in all, split equally among the tasks learned (mem_size // n each, the
remainder to the earliest tasks); a task's share is a uniform random subset of its training set, and
when a new task arrives the older shares are cut to their new size by keeping a prefix of their random
order (still a uniform random subset). This is per-task balanced selection, as Avalanche's Replay
(ExperienceBalancedBuffer) does; the paper's reservoir / ring buffers are other ways to fill it. The
replay batch has ``batch_mem`` samples (default: the protocol's batch, 64, as Avalanche), drawn
without replacement from a shuffled pass over the memory, reshuffled when used up.

Privacy: the memory keeps raw training data (docs/replay.md). It is part of the per-task checkpoint.
The validation loss is the plain CE of the task's own validation split (no replay).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cl_bench.registry import register_strategy
from cl_bench.scenario import Data
from cl_bench.strategy import BatchInfo, Strategy, TaskData, hparam


@dataclass
class ERHparams:
    mem_size: int = hparam(
        500,
        "memory budget: samples of past tasks in all, split equally per task",
        grid=[100, 200, 500, 1000, 2000],
        at_least=1,
    )
    batch_mem: int = hparam(0, "replay batch size; 0: the protocol's batch size (64)", at_least=0)


# ---- the memory (shared with A-GEM) ----------------------------------------------------------------
def split_budget(total: int, n_tasks: int) -> list[int]:
    """Equal shares of ``total`` over ``n_tasks``, the remainder one each to the earliest tasks."""
    shares = [total // n_tasks] * n_tasks
    for i in range(total - sum(shares)):
        shares[i] += 1
    return shares


def empty_memory(data: Data) -> dict[str, Tensor]:
    """A memory shaped like ``data``'s samples: raw x, labels, task ids, per-task normalisation."""
    return {
        "x": data.x[:0],
        "y": data.y[:0],
        "task": torch.zeros(0, dtype=torch.long, device=data.y.device),
        "scale": data.scale[None][:0],
        "shift": data.shift[None][:0],
    }


def add_task(memory: dict[str, Tensor] | None, data: Data, t: int, shares: list[int], generator) -> dict:
    """The memory with task t's share (a random subset of ``data``) added and older shares cut to
    ``shares[u]`` (a prefix of each older task's stored random order). Once per task: may sync."""
    memory = empty_memory(data) if memory is None else memory
    keep = [torch.nonzero(memory["task"] == u).squeeze(1)[: shares[u]] for u in range(t)]
    new = torch.randperm(len(data), generator=generator)[: shares[t]].to(data.y.device)
    scale = torch.cat([memory["scale"][:t], data.scale[None]])  # row u: task u's normalisation
    shift = torch.cat([memory["shift"][:t], data.shift[None]])
    idx = torch.cat([*keep, torch.zeros(0, dtype=torch.long, device=data.y.device)])
    return {
        "x": torch.cat([memory["x"][idx], data.x[new]]),
        "y": torch.cat([memory["y"][idx], data.y[new]]),
        "task": torch.cat([memory["task"][idx], torch.full((len(new),), t, dtype=torch.long, device=new.device)]),
        "scale": scale,
        "shift": shift,
    }


class MemorySampler:
    """Batches of a memory: shuffled passes, each batch full-size (a pass's last partial batch is dropped
    unless the memory is smaller than a batch). Indices come from a CPU generator, no host sync."""

    def __init__(self, memory: dict[str, Tensor], batch: int, generator: torch.Generator):
        self.data = Data(memory["x"], memory["y"], memory["task"], memory["scale"], memory["shift"])
        self.batch_size, self.generator = min(batch, len(self.data)), generator
        self.order, self.pos = torch.zeros(0, dtype=torch.long), 0

    def next(self) -> tuple[Tensor, Tensor, Tensor]:
        if self.pos + self.batch_size > len(self.order):
            self.order = torch.randperm(len(self.data), generator=self.generator).to(self.data.y.device)
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return self.data.batch(idx)


def task_generator(seed: int, t: int) -> torch.Generator:
    """The memory's random numbers for task t: a function of the run's seed and t (resumable)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + t) % 2**63)


def mixed_task_cross_entropy(model: nn.Module, x: Tensor, y: Tensor, task: Tensor, n_heads: int) -> Tensor:
    """Mean CE of a mixed-task batch, each sample with its own head: every head runs on the whole batch
    and a mask keeps each sample's own (heads are small), so no boolean indexing and no host sync."""
    h = model.features(x)
    total = torch.zeros((), device=x.device)
    for u in range(n_heads):
        mine = task == u
        labels = torch.where(mine, y, 0)  # another task's label may not exist in head u
        total = total + (F.cross_entropy(model.heads[u](h), labels, reduction="none") * mine).sum()
    return total / len(y)


# ---- the strategy ----------------------------------------------------------------------------------
@register_strategy
class ER(Strategy[ERHparams]):
    """ER (not in the paper): each step also trains on a replay batch of past tasks' samples, on their own heads."""

    name = "er"
    clip_grad = 10000.0  # the HAT reference's SGD threshold (ER papers: no clipping)
    keeps = ("memory", "seed")

    def setup(self) -> None:
        self.memory: dict[str, Tensor] | None = None  # raw samples of past tasks with their task ids
        self.seed = torch.initial_seed()  # the run's seed: the memory's randomness derives from it
        self._sampler: MemorySampler | None = None
        self._replay: tuple[Tensor, Tensor, Tensor] | None = None  # the replay batch of this step

    def before_task(self, task: TaskData) -> None:
        self._generator = task_generator(self.seed, task.index)
        self._sampler = None
        if self.memory is not None:
            batch = self.hp.batch_mem or task.protocol.batch_size
            self._sampler = MemorySampler(self.memory, batch, self._generator)

    def before_batch(self, info: BatchInfo) -> None:
        """Training steps only (validation calls ``loss`` without it): draw this step's replay batch."""
        self._replay = None if self._sampler is None else self._sampler.next()

    def loss(self, x: Tensor, y: Tensor, t: Any) -> tuple[Tensor, Tensor]:
        replay, self._replay = self._replay, None
        if replay is None or not isinstance(t, int):
            return super().loss(x, y, t)
        xm, ym, tm = replay
        ids = torch.cat([torch.full((len(y),), t, dtype=torch.long, device=y.device), tm])
        loss = mixed_task_cross_entropy(self.model, torch.cat([x, xm]), torch.cat([y, ym]), ids, t + 1)
        return loss, None  # the trainer reads logits only in evaluation, where there is no replay

    def after_task(self, task: TaskData) -> None:
        shares = split_budget(self.hp.mem_size, task.index + 1)
        self.memory = add_task(self.memory, task.train, task.index, shares, self._generator)
