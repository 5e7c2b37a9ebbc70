"""EWC: Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017, arXiv:1612.00796), as the HAT
reference ran it (hat_reference.md §5, §9 #11).

Training task t > 0 minimises

    L(θ) = CE_t(θ) + λ Σ_i F_i (θ*_i − θ_i)² / 2                       # EWC Eq. 3, reference §5

over **all** parameters, heads included, where θ* is the model after task t−1 (a single anchor) and
F is a running mean of the per-task diagonal Fishers, F <- (F_t + t·F)/(t+1) (reference §5).

The Fisher is the reference's *empirical* one (reference §9 #11): true labels, the network in train
mode (dropout on), the training set cut in consecutive batches of 20, and for each batch the square
of the gradient of the batch-mean loss times 20 (even for a smaller last batch), summed and divided by
N. That is about 20x smaller than the per-sample empirical Fisher (1/N) Σ_n g_n² for uncorrelated
gradients, and λ = 5000 was tuned at that scale. ``fisher_batch=1`` gives the per-sample empirical
Fisher exactly (then λ has to be retuned).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from cl_bench.scenario import Data
from cl_bench.strategy import Strategy, hparam
from cl_bench.registry import register_strategy

# A loss of the parameters (name -> tensor) on one batch (x, y): what the Fisher differentiates.
ParamLoss = Callable[[dict[str, Tensor], Tensor, Tensor], Tensor]

_FISHER_CHUNK_FLOATS = 2 ** 25  # per-batch gradients held at once: 128 MB of float32


def empirical_fisher(model: nn.Module, param_loss: ParamLoss, data: Data,
                     batch: int = 20) -> dict[str, Tensor]:
    """Diagonal empirical Fisher of the reference (its ``utils.fisher_matrix_diag``):

        F = (1/N) Σ_b batch · (∇θ mean_{n in b} loss_n)²   over consecutive batches b of size ``batch``

    with the true labels and the model in train mode. The per-batch gradients are computed with
    ``vmap`` over many batches at once (independent dropout per batch); ``batch=1`` is the per-sample
    empirical Fisher (1/N) Σ_n g_n². The model's train/eval mode is restored afterwards.
    """
    if batch < 1:
        raise ValueError(f"Fisher batch size must be >= 1, got {batch}")
    n = len(data)
    if n == 0:
        raise ValueError("cannot compute a Fisher on an empty training set")
    params = {name: p.detach() for name, p in model.named_parameters()}
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    per_batch_grads = vmap(grad(param_loss), in_dims=(None, 0, 0), randomness="different")
    n_params = sum(p.numel() for p in params.values())
    chunk = max(1, _FISHER_CHUNK_FLOATS // n_params) * batch  # samples per vmap call
    was_training = model.training
    model.train()  # reference §9 #11: dropout on
    try:
        n_full = (n // batch) * batch
        for start in range(0, n_full, chunk):
            stop = min(start + chunk, n_full)
            x, y, _ = data.batch(torch.arange(start, stop, device=data.y.device))
            grads = per_batch_grads(params, x.reshape(-1, batch, *x.shape[1:]), y.reshape(-1, batch))
            for name, g in grads.items():
                fisher[name] += batch * g.pow(2).sum(0)
        if n_full < n:  # the smaller last batch, still scaled by `batch` as the reference does
            x, y, _ = data.batch(torch.arange(n_full, n, device=data.y.device))
            for name, g in grad(param_loss)(params, x, y).items():
                fisher[name] += batch * g.pow(2)
    finally:
        model.train(was_training)
    return {name: f / n for name, f in fisher.items()}


def cross_entropy_of(model: nn.Module, t: int) -> ParamLoss:
    """CE of head t as a function of the parameters, for ``empirical_fisher``."""
    return lambda params, x, y: F.cross_entropy(functional_call(model, params, (x, t)), y)


def quadratic_penalty(model: nn.Module, anchor: dict[str, Tensor],
                      weight: dict[str, Tensor] | None = None) -> Tensor:
    """Σ_i w_i (anchor_i − θ_i)² / 2 over every named parameter (w = 1 when ``weight`` is None).

    Its buffers are kept on the model for the next call with the same ``anchor`` and ``weight`` dicts
    (compared by identity; the cache holds them, so an identity cannot be reused by new dicts). A call
    overwrites the buffers an earlier call's backward reads: backward before calling again, as a
    training step does (calls under no_grad, as validation, are free)."""
    cached = model.__dict__.get("_quadratic_penalty")
    if cached is None or cached[0] is not anchor or cached[1] is not weight:
        cached = (anchor, weight, QuadraticPenalty(model, anchor, weight))
        model.__dict__["_quadratic_penalty"] = cached
    return cached[2]()


class QuadraticPenalty:
    """Σ_i w_i (anchor_i − θ_i)² / 2 over a model's parameters, as a differentiable scalar.

    The penalty is on every training step of EWC and IMM, so it is their cost over SGD. Its gradient
    w (θ − anchor) is computed in the forward pass, into buffers allocated once (a fresh
    parameter-sized tensor costs page faults on every step on CPU), and handed to autograd: four
    passes over the parameters instead of the ~nine of autograd on the plain expression. (Adding it
    straight into ``p.grad`` from the backward pass would save one allocation more, but would hide it
    from ``torch.autograd.grad``.) tests/test_speed_paths.py checks value and gradients against
    autograd on the plain expression.
    """

    def __init__(self, model: nn.Module, anchor: dict[str, Tensor], weight: dict[str, Tensor] | None = None):
        names, self.params = zip(*model.named_parameters())
        self.anchors = [anchor[n] for n in names]
        self.weights = None if weight is None else [weight[n] for n in names]
        self.diffs = [torch.empty_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.grads = self.diffs if weight is None else [torch.empty_like(d) for d in self.diffs]

    def __call__(self) -> Tensor:
        return _WeightedSquaredDistance.apply(self, *self.params)


class _WeightedSquaredDistance(torch.autograd.Function):
    @staticmethod
    def forward(ctx, penalty: QuadraticPenalty, *params):
        with torch.no_grad(), torch.autocast(params[0].device.type, enabled=False):  # fp32 under bf16 too
            for p, a, d in zip(params, penalty.anchors, penalty.diffs):
                torch.sub(p, a, out=d)  # θ − a
            if penalty.weights is not None:
                for d, w, g in zip(penalty.diffs, penalty.weights, penalty.grads):
                    torch.mul(d, w, out=g)  # w (θ − a)
            ctx.penalty = penalty
            return sum(_dot(g, d) for g, d in zip(penalty.grads, penalty.diffs)) / 2

    @staticmethod
    def backward(ctx, grad_output):
        return None, *torch._foreach_mul(ctx.penalty.grads, grad_output)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Σ a b over all elements (one BLAS call for contiguous tensors)."""
    if a.is_contiguous() and b.is_contiguous():
        return torch.dot(a.view(-1), b.view(-1))
    return (a * b).sum()


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """Detached copies of the parameters (an anchor θ*)."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@dataclass
class EWCHparams:
    lamb: float = hparam(5000.0, "penalty strength λ (reference default, tuned on seed 0)",
                         grid=[500, 1000, 2000, 5000, 10000, 20000, 50000])
    fisher_batch: int = hparam(20, "Fisher batch size, gradient² of each batch mean scaled by it "
                                   "(reference 20); 1 = per-sample empirical Fisher")


@register_strategy
class EWC(Strategy):
    """Elastic Weight Consolidation with the reference's empirical Fisher and running-mean merge."""

    name = "ewc"
    Hparams = EWCHparams
    clip_grad = 100.0  # reference §3

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.hp.fisher_batch < 1:
            raise ValueError(f"ewc: fisher_batch must be >= 1, got {self.hp.fisher_batch}")
        self.anchor: dict[str, Tensor] | None = None  # θ*, the model after the previous task
        self.fisher: dict[str, Tensor] | None = None  # running mean of the tasks' Fishers

    def loss(self, x: Tensor, y: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """CE of head t + λ Σ F (θ* − θ)² / 2 (also the validation loss, as in the reference)."""
        if self.anchor is None:
            return super().loss(x, y, t)
        penalty = quadratic_penalty(self.model, self.anchor, self.fisher)
        ce, logits = super().loss(x, y, t)
        return ce + self.hp.lamb * penalty, logits  # EWC Eq. 3

    def after_task(self, t: int) -> None:
        """Fisher of the task just learned, merged as a running mean; the model becomes the anchor."""
        # The reference differentiates its full criterion after moving the anchor to θ, where the
        # penalty's gradient is zero: the plain CE is the same thing.
        data = Data.of(self.scenario.tasks[t], "train", t)
        new = empirical_fisher(self.model, cross_entropy_of(self.model, t), data, self.hp.fisher_batch)
        if self.fisher is None:
            self.fisher = new
        else:  # reference §5: F <- (F_t + t·F_old)/(t+1), a running mean over tasks, not a sum
            self.fisher = {name: (new[name] + t * self.fisher[name]) / (t + 1) for name in new}
        self.anchor = snapshot(self.model)

    def state_dict(self) -> dict:
        return {"anchor": self.anchor, "fisher": self.fisher}  # for per-task checkpoints

    def load_state_dict(self, state: dict) -> None:
        self.anchor, self.fisher = state["anchor"], state["fisher"]
