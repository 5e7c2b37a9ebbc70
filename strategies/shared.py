"""Pieces several methods share, so each method file reads top to bottom like its paper:

- ``empirical_fisher`` / ``cross_entropy_of``: the diagonal empirical Fisher as the HAT authors' code
  computed it (EWC's importance, IMM-mode's merge weights);
- ``quadratic_penalty`` / ``QuadraticPenalty`` / ``anchor_of``: Σ w (θ* − θ)² / 2 towards an anchor
  (EWC's penalty, IMM's L2 transfer);
- ``KeepsPreviousModel``: a strategy that keeps a frozen copy of its model after each task (LwF's
  teacher, LFL's feature reference).

This module registers no strategy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from cl_bench.scenario import Data
from cl_bench.strategy import Strategy, TaskData

# A loss of the parameters (name -> tensor) on one batch (x, y): what the Fisher differentiates.
ParamLoss = Callable[[dict[str, Tensor], Tensor, Tensor], Tensor]

_FISHER_CHUNK_FLOATS = 2**25  # per-batch gradients held at once: 128 MB of float32


def empirical_fisher(model: nn.Module, param_loss: ParamLoss, data: Data, batch: int = 20) -> dict[str, Tensor]:
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
    calls = _dropout_calls(model, data, batch) if n >= batch else None
    model.train()  # as the authors' code: dropout on
    try:
        n_full = (n // batch) * batch
        for start in range(0, n_full, chunk):
            stop = min(start + chunk, n_full)
            x, y, _ = data.batch(torch.arange(start, stop, device=data.y.device))
            x, y = x.reshape(-1, batch, *x.shape[1:]), y.reshape(-1, batch)
            if calls is None:
                grads = per_batch_grads(params, x, y)
                for name, g in grads.items():
                    fisher[name] += batch * g.pow(2).sum(0)
            else:
                _batch_loop(model, param_loss, params, x, y, calls, fisher, batch)
        if n_full < n:  # the smaller last batch, still scaled by `batch` as the reference does
            x, y, _ = data.batch(torch.arange(n_full, n, device=data.y.device))
            for name, g in grad(param_loss)(params, x, y).items():
                fisher[name] += batch * g.pow(2)
    finally:
        model.train(was_training)
    return {name: f / n for name, f in fisher.items()}


# Leaf modules whose forward is deterministic: with only these and nn.Dropout, the per-batch loop below
# draws exactly vmap's dropout masks (what a model with other random modules would not guarantee).
_DETERMINISTIC = (nn.Linear, nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Identity, nn.Dropout)


def _dropout_calls(model: nn.Module, data: Data, batch: int) -> list[tuple[nn.Dropout, tuple[int, ...]]] | None:
    """Each call of a Dropout module in one forward, in order, with its input's shape per sample; None
    where the per-batch loop cannot reproduce vmap's masks (other modules, not on the CPU)."""
    if data.y.device.type != "cpu" or any(
        type(m) not in _DETERMINISTIC for m in model.modules() if not list(m.children())
    ):
        return None
    calls: list[tuple[nn.Dropout, tuple[int, ...]]] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: calls.append((m, tuple(i[0].shape[1:]))))
        for m in model.modules()
        if isinstance(m, nn.Dropout)
    ]
    was_training = model.training
    model.eval()  # no random draw, no state change
    try:
        with torch.no_grad():
            x, _, t = data.batch(torch.arange(batch, device=data.y.device))
            model(x, t)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return calls


def _batch_loop(model, param_loss, params, x, y, calls, fisher, batch) -> None:
    """``fisher += batch · g_b²`` for each batch b of ``x`` (B, batch, ...) by a plain backward per batch
    (2-3x faster than vmap on a CPU), with the dropout masks vmap(randomness="different") draws: for
    each Dropout call in forward order, one Bernoulli(1 - p) tensor over (B, batch, *shape), p = 0
    drawing nothing. So the Fisher, and the random stream after it, are vmap's to the last bit."""
    masks = [
        None if m.p == 0 else torch.empty(len(x), batch, *shape, device=x.device).bernoulli_(1 - m.p)
        for m, shape in calls
    ]
    state = {"call": 0, "b": 0}

    def apply(m, inputs, _output):
        mask = masks[state["call"]]
        state["call"] += 1
        return inputs[0] if mask is None else inputs[0] * mask[state["b"]] / (1 - m.p)

    dropouts = {m for m, _ in calls}
    for m in dropouts:
        m.eval()  # identity: the hook applies the drawn mask
    hooks = [m.register_forward_hook(apply) for m in dropouts]
    leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
    try:
        for b in range(len(x)):
            state["call"], state["b"] = 0, b
            loss = param_loss(leaves, x[b], y[b])
            grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
            for name, g in zip(leaves, grads):
                if g is not None:
                    fisher[name].add_(g.pow(2), alpha=batch)
    finally:
        for h in hooks:
            h.remove()
        for m in dropouts:
            m.train()


def cross_entropy_of(model: nn.Module, t: int) -> ParamLoss:
    """CE of head t as a function of the parameters, for ``empirical_fisher``."""
    return lambda params, x, y: F.cross_entropy(functional_call(model, params, (x, t)), y)


def quadratic_penalty(model: nn.Module, anchor: dict[str, Tensor], weight: dict[str, Tensor] | None = None) -> Tensor:
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


def on_device(tensors: dict[str, Tensor] | None, device: torch.device) -> dict[str, Tensor] | None:
    """Tensors restored from a checkpoint (saved from, and loaded onto, the CPU) on the run's device."""
    return None if tensors is None else {name: t.to(device) for name, t in tensors.items()}


def anchor_of(model: nn.Module) -> dict[str, Tensor]:
    """Detached copies of the parameters: an anchor θ* that a penalty pulls the weights back to."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


class KeepsPreviousModel(Strategy):
    """A strategy that keeps a frozen, eval-mode copy of its model after each task in ``self.old``
    (LwF's teacher, LFL's feature reference), and checkpoints it."""

    old: nn.Module | None = None  # the frozen model after the previous task

    def after_task(self, task: TaskData) -> None:
        """The model with its best weights restored becomes the frozen previous model."""
        self.old = copy.deepcopy(self.model).eval().requires_grad_(False)

    def save_state(self) -> dict:
        return {"old": None if self.old is None else self.old.state_dict()}  # for per-task checkpoints

    def load_state(self, state: dict) -> None:
        self.old = None
        if state["old"] is not None:
            self.old = copy.deepcopy(self.model).eval().requires_grad_(False)
            self.old.load_state_dict(state["old"])
