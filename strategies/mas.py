"""MAS: Memory Aware Synapses (Aljundi et al., ECCV 2018, arXiv:1711.09601). Not in the HAT paper.

A parameter is important for a task when the function the network learned is sensitive to it. For each
training sample x_k of the task just learned, with F the output of that task's head (its logits):

    g_ij(x_k) = ∂[ℓ2²(F(x_k; θ))] / ∂θ_ij                                # Eq. 4
    Ω_ij = (1/N) Σ_k |g_ij(x_k)|                                         # Eq. 2

(per sample, as Eq. 2 writes it; the authors' code and Avalanche take |gradient of a batch's mean|,
a smaller number for batches larger than one). Importances of successive tasks are accumulated by
summation, Ω ← Ω + Ω_t (cl-bench's reading of the paper's "accumulated"; Avalanche mixes them instead,
Ω ← α Ω + (1 − α) Ω_t with α = 0.5). The next task minimises

    L(θ) = L_CE(θ) + λ Σ_ij Ω_ij (θ_ij − θ*_ij)²                          # Eq. 3

over every parameter, heads included, θ* being the model after the previous task. Ω is measured with
the network in eval mode (dropout off: it is the learned function's sensitivity), no labels needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from cl_bench.registry import register_strategy
from cl_bench.scenario import Data
from cl_bench.strategies.shared import anchor_of, quadratic_penalty
from cl_bench.strategy import Strategy, TaskData, hparam

_CHUNK_FLOATS = 2**25  # per-sample gradients held at once: 128 MB of float32


@dataclass
class MASHparams:
    lamb: float = hparam(
        1.0,
        "penalty strength λ of Eq. 3 (Aljundi et al.'s default)",
        grid=[0.1, 0.5, 1, 2, 5, 10],
        at_least=0,
    )


def output_sensitivity(model: nn.Module, data: Data, t: int, shortcut: bool = True) -> dict[str, Tensor]:
    """Ω_t = (1/N) Σ_k |∂‖F_t(x_k)‖²/∂θ| over the samples of ``data`` (Eqs. 4 and 2), in eval mode.

    Linear layers take a shortcut: in eval mode the samples of a batch are independent, so sample k's
    weight gradient is δ_k a_kᵀ (δ_k: the gradient of its ‖F‖² at the layer's output, a_k: the layer's
    input), and Σ_k |δ_k a_kᵀ| = |Δ|ᵀ|A|, one matrix product per batch. Every other parameter (convolutions)
    takes per-sample gradients (vmap), as all do with ``shortcut=False``."""
    params = {name: p.detach() for name, p in model.named_parameters()}
    linear = {n: m for n, m in model.named_modules() if type(m) is nn.Linear} if shortcut else {}
    fast = {f"{n}.{k}" for n, m in linear.items() for k, _ in m.named_parameters(recurse=False)}
    rest = {n: p for n, p in params.items() if n not in fast}
    omega = {name: torch.zeros_like(p) for name, p in params.items()}
    seen: dict[str, list[Tensor]] = {}  # Linear module -> [its input, the gradient at its output]

    def keep(name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> None:
            if name in seen:
                raise RuntimeError(f"MAS: {name} ran twice in one forward pass; use shortcut=False")
            seen[name] = [inputs[0].detach()]
            out.register_hook(lambda g: seen[name].append(g.detach()))

        return hook

    def squared_norm(ps: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(model, {**params, **ps}, (x[None], t)).pow(2).sum()  # ℓ2² of head t's output

    per_sample = vmap(grad(squared_norm), in_dims=(None, 0))
    n = len(data)
    chunk = min(1024, max(1, _CHUNK_FLOATS // max(1, sum(p.numel() for p in rest.values()))))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, chunk):
            x, _, _ = data.batch(torch.arange(start, min(start + chunk, n), device=data.y.device))
            if linear:
                hooks = [m.register_forward_hook(keep(name)) for name, m in linear.items()]
                try:
                    with torch.enable_grad():
                        norms = model(x, t).pow(2).sum()  # Σ_k ‖F(x_k)‖²: sample k's part reaches δ_k only
                        torch.autograd.grad(
                            norms, [p for p in model.parameters() if p.requires_grad], allow_unused=True
                        )
                finally:
                    for h in hooks:
                        h.remove()
                for name, (a, d) in seen.items():
                    omega[f"{name}.weight"] += d.abs().T @ a.abs()  # Σ_k |δ_k| |a_k|ᵀ
                    if linear[name].bias is not None:
                        omega[f"{name}.bias"] += d.abs().sum(0)
                seen.clear()
            if rest:
                for name, g in per_sample(rest, x).items():
                    omega[name] += g.abs().sum(0)
    finally:
        model.train(was_training)
    return {name: o / n for name, o in omega.items()}


@register_strategy
class MAS(Strategy[MASHparams]):
    """MAS (not in the paper): importance from the output's sensitivity, a quadratic penalty (Aljundi et al. 2018)."""

    name = "mas"
    clip_grad = 10000.0  # the HAT reference's SGD threshold (MAS's authors: no clipping)
    keeps = ("anchor", "importance")

    def setup(self) -> None:
        self.anchor: dict[str, Tensor] | None = None  # θ*, the model after the previous task
        self.importance: dict[str, Tensor] | None = None  # Ω, summed over the tasks learned

    def loss(self, x: Tensor, y: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """CE of head t + λ Σ Ω (θ − θ*)² (also the validation loss, as for every regulariser here)."""
        ce, logits = super().loss(x, y, t)
        if self.anchor is None:
            return ce, logits
        # quadratic_penalty is Σ Ω (θ* − θ)² / 2, hence the 2
        return ce + 2 * self.hp.lamb * quadratic_penalty(self.model, self.anchor, self.importance), logits  # Eq. 3

    def after_task(self, task: TaskData) -> None:
        new = output_sensitivity(self.model, task.train, task.index)
        if self.importance is None:
            self.importance = new
        else:  # accumulated over tasks
            self.importance = {name: self.importance[name] + new[name] for name in new}
        self.anchor = anchor_of(self.model)
