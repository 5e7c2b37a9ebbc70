"""SI: Synaptic Intelligence (Zenke, Poole & Ganguli, ICML 2017, arXiv:1703.04200). Not in the HAT paper.

While task μ is trained, every parameter k accumulates its contribution to the drop of the loss along
the path the optimiser actually takes (Eqs. 2-3, discretised per SGD step):

    ω^μ_k += −g_k(t) · Δθ_k(t)                                           # Eqs. 2-3

with g the gradient of the task's **unregularised** loss (the cross-entropy of head μ; the authors'
code uses these "unreg_grads") and Δθ the step that SGD took (after the protocol's clipping). After the
task, with Δ^μ_k = θ_k(end of μ) − θ_k(start of μ), the importances are summed over tasks,

    Ω^μ_k = Σ_{ν ≤ μ} ω^ν_k / ((Δ^ν_k)² + ξ)                              # Eq. 5

and the next tasks minimise

    L̃ = L_CE + c Σ_k Ω_k (θ̃_k − θ_k)²                                    # Eq. 4

over every parameter, heads included, where θ̃ is the model after the previous task. Under the HAT
protocol the model at the end of a task is the best-validation one (restored by the trainer): Δ and θ̃
use it, ω sums every step taken, those after the best epoch included.

The full loss's gradient is what backward gives; the penalty's part, 2cΩ(θ − θ̃), is known in closed form
and subtracted, so the unregularised gradient costs no second backward pass. Avalanche's
SynapticIntelligence uses the full loss's gradient instead, clamps Ω at 0.001 and halves the penalty
(docs/avalanche.md, reports/avalanche/crosscheck.md). Ω is not clamped here (Eq. 5 has no clamp).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cl_bench.registry import register_strategy
from cl_bench.strategies.shared import anchor_of, quadratic_penalty
from cl_bench.strategy import Strategy, TaskData, hparam


@dataclass
class SIHparams:
    c: float = hparam(
        1.0,
        "penalty strength c of Eq. 4 (Zenke et al.'s split MNIST value; 0.1 on permuted MNIST)",
        grid=[0.01, 0.1, 0.5, 1, 2, 5, 10],
        at_least=0,
    )
    xi: float = hparam(1e-3, "damping ξ of Eq. 5 (Zenke et al.: 1e-3)", grid=[1e-3, 1e-1], above=0)


@register_strategy
class SI(Strategy[SIHparams]):
    """SI (not in the paper): per-parameter path integral of the loss drop, a quadratic penalty (Zenke et al. 2017)."""

    name = "si"
    clip_grad = 10000.0  # the HAT reference's SGD threshold (SI's authors used Adam, no clipping)
    keeps = ("omega", "big_omega", "anchor", "start")

    def setup(self) -> None:
        self.omega: dict[str, Tensor] | None = None  # ω of the task being learned (Eqs. 2-3)
        self.big_omega: dict[str, Tensor] | None = None  # Ω, summed over the tasks learned (Eq. 5)
        self.anchor: dict[str, Tensor] | None = None  # θ̃, the model after the previous task
        self.start: dict[str, Tensor] | None = None  # θ at the start of the task being learned
        self._grad: dict[str, Tensor] = {}  # per step: unregularised gradient and θ before the step
        self._before: dict[str, Tensor] = {}

    def before_task(self, task: TaskData) -> None:
        self.start = anchor_of(self.model)
        self.omega = {name: torch.zeros_like(p) for name, p in self.start.items()}

    def loss(self, x: Tensor, y: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """CE of head t + c Σ Ω (θ̃ − θ)² (also the validation loss, as for every regulariser here)."""
        ce, logits = super().loss(x, y, t)
        if self.anchor is None:
            return ce, logits
        # quadratic_penalty is Σ Ω (θ̃ − θ)² / 2, hence the 2
        return ce + 2 * self.hp.c * quadratic_penalty(self.model, self.anchor, self.big_omega), logits  # Eq. 4

    @torch.no_grad()
    def after_backward(self, t: int) -> None:
        """Keep θ before the step and the gradient of the unregularised loss."""
        for name, p in self.model.named_parameters():
            if p.grad is None:
                continue  # not in this step's graph (another task's head, before any penalty): no change
            if name not in self._before:
                self._before[name], self._grad[name] = torch.empty_like(p), torch.empty_like(p)
            self._before[name].copy_(p)
            g = self._grad[name]
            g.copy_(p.grad)
            if self.anchor is not None:  # minus the penalty's gradient 2cΩ(θ − θ̃)
                g.sub_(2 * self.hp.c * self.big_omega[name] * (p - self.anchor[name]))

    @torch.no_grad()
    def after_step(self, t: int) -> None:
        for name, p in self.model.named_parameters():
            if p.grad is not None:
                self.omega[name].sub_(self._grad[name] * (p - self._before[name]))  # Eqs. 2-3: ω −= g · Δθ

    def after_task(self, task: TaskData) -> None:
        """Ω += ω / (Δ² + ξ) with the best-validation weights; they become the anchor θ̃."""
        end = anchor_of(self.model)
        new = {name: self.omega[name] / ((end[name] - self.start[name]) ** 2 + self.hp.xi) for name in end}  # Eq. 5
        if self.big_omega is None:
            self.big_omega = new
        else:
            self.big_omega = {name: self.big_omega[name] + new[name] for name in new}
        self.anchor = end
        self._before, self._grad = {}, {}
