"""A-GEM: Averaged Gradient Episodic Memory (Chaudhry, Ranzato, Rohrbach & Elhoseiny, ICLR 2019,
arXiv:1812.00420), task-incremental. Not in the HAT paper.

An episodic memory keeps ``per_task`` training samples of every task learned, with their task ids (a
uniform random subset of each task's training set). At every step of task t > 0, the reference gradient
g_ref is the gradient of the mean loss on a batch of ``sample_size`` samples drawn from the memory
(each scored by its own task's head), at the same weights as the current gradient g. The update may not
increase that loss to first order:

    if gᵀ g_ref < 0:   g̃ = g − (gᵀ g_ref / g_refᵀ g_ref) g_ref                 # Eq. 11
    else:              g̃ = g

over the trainable parameters flattened into one vector (every head included: old heads get a zero
current gradient, so the projection can move them along −g_ref). g̃ is then clipped and applied by the
protocol's SGD step. The reference batch is drawn in train mode (dropout on), as Avalanche does.

Defaults: 250 samples per task and reference batches of 256, the A-GEM authors' code's MNIST settings
(25 samples per class of 10 classes; EPS_MEM_BATCH_SIZE). Avalanche's AGEM has the same rule; its
memory batch is split equally among tasks, here it is a uniform draw from the whole memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cl_bench.registry import register_strategy
from cl_bench.strategies.er import MemorySampler, add_task, mixed_task_cross_entropy, task_generator
from cl_bench.strategy import Strategy, TaskData, hparam


@dataclass
class AGEMHparams:
    per_task: int = hparam(
        250, "memory: training samples kept per task (A-GEM's code on MNIST: 250)", grid=[50, 100, 250, 500], at_least=1
    )
    sample_size: int = hparam(
        256, "memory batch of the reference gradient (A-GEM's code: 256)", grid=[64, 256], at_least=1
    )


def project(g: list[Tensor], g_ref: list[Tensor]) -> None:
    """g ← g − min(0, gᵀg_ref) / (g_refᵀg_ref) · g_ref in place (Eq. 11): the ``< 0`` test is a clamp, so
    the host never waits for the device. A zero g_ref leaves g unchanged."""
    dot = sum(torch.vdot(a.reshape(-1), b.reshape(-1)) for a, b in zip(g, g_ref))
    ref_sq = sum(torch.vdot(b.reshape(-1), b.reshape(-1)) for b in g_ref)
    coef = torch.clamp(dot, max=0) / torch.clamp(ref_sq, min=torch.finfo(ref_sq.dtype).tiny)
    torch._foreach_add_(g, torch._foreach_mul(g_ref, -coef))


@register_strategy
class AGEM(Strategy[AGEMHparams]):
    """A-GEM (not in the paper): gradients projected so the memory's loss does not grow (Chaudhry et al. 2019)."""

    name = "agem"
    clip_grad = 10000.0  # the HAT reference's SGD threshold (A-GEM's authors: no clipping)
    keeps = ("memory", "seed")

    def setup(self) -> None:
        self.memory: dict[str, Tensor] | None = None  # raw samples of past tasks with their task ids
        self.seed = torch.initial_seed()
        self._sampler: MemorySampler | None = None

    def before_task(self, task: TaskData) -> None:
        self._generator = task_generator(self.seed, task.index)
        self._sampler = (
            None if self.memory is None else MemorySampler(self.memory, self.hp.sample_size, self._generator)
        )

    def reference_gradient(self, params: list[torch.nn.Parameter], t: int) -> list[Tensor]:
        """g_ref: gradient of the mean loss on a memory batch (tasks 0..t-1), each sample on its own head."""
        x, y, task = self._sampler.next()
        loss = mixed_task_cross_entropy(self.model, x, y, task, t)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

    def after_backward(self, t: int) -> None:
        if self._sampler is None:
            return
        params = self.trainable_parameters(t)
        g_ref = self.reference_gradient(params, t)
        with torch.no_grad():
            for p in params:
                if p.grad is None:  # an old head: no current gradient, but g̃ may move it
                    p.grad = torch.zeros_like(p)
            project([p.grad for p in params], g_ref)  # Eq. 11

    def after_task(self, task: TaskData) -> None:
        shares = [self.hp.per_task] * (task.index + 1)  # a fixed size per task, no shared budget
        self.memory = add_task(self.memory, task.train, task.index, shares, self._generator)
