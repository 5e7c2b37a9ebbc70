"""PackNet (Mallya & Lazebnik, CVPR 2018), as the authors' code does it (github.com/arunmallya/packnet,
``src/prune.py`` and ``src/main.py``), on the base network of the scenario.

Every weight of the masked layers (``model.layers``: the conv and fc layers of the body; not the heads)
has an owner: 0 = free, k + 1 = task k. For task t:

1. every free weight becomes task t's (the code's ``make_finetuning_mask``); pruned weights are 0 and
   start task t from 0 (the code does not re-initialise them);
2. train under the protocol (``trainer.fit``); the gradients of weights owned by earlier tasks are
   zeroed after each backward pass (``make_grads_zero``), so those weights never move;
3. prune: per layer, of the weights task t owns, every weight with ``|w| <=`` the k-th smallest
   magnitude, k = round(prune x count) (Python's round, ties included, as ``pruning_mask``), is freed
   and set to 0;
4. retrain the kept weights for ``retrain_epochs`` epochs at ``retrain_lr_factor`` x the protocol lr
   under the protocol's Plateau schedule; the post-prune weights are the first candidate for the best
   validation loss (the code saves a retrained model only when it beats the post-prune one);
5. task tau is evaluated with the weights owned by tasks <= tau; the rest are zeroed (``apply_mask``),
   so its outputs are bitwise those it had when it was learned.

As the code's sequence script (``run_sequence.sh`` passes -1 for the last data set), the last task is
not pruned: it keeps every free weight (``prune_last=True`` prunes it too).

Biases and heads, as the code: each task has its own head, trained with its task only. Body biases are
not trainable after the first data set (``train_biases`` off: the code's first data set is ImageNet,
whose biases it keeps fixed); here they train with task 0 and stay fixed. ``train_biases=True`` is the
code's ``--train_biases``: every task trains the biases and keeps its own copy, restored for its
evaluation. BatchNorm does not arise (the base nets have none).

Not the code: plain SGD without momentum, the protocol's lr and Plateau schedule instead of the
step decay (docs/faithfulness.md). Monitoring: the capacity each task leaves used and the weight reuse
between tasks (HAT's Figs. 5-6), computed by ``isolation_record`` (shared with WSN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call

from cl_bench.registry import register_strategy
from cl_bench.strategy import Strategy, TaskData, hparam
from cl_bench.trainer import Plateau, snapshot


# ---- pure functions (tests transcribe the authors' code against these) ------------------------------
def prune_owned(weight: Tensor, owner: Tensor, task: int, fraction: float) -> Tensor:
    """The weights of owner ``task`` to free, as ``pruning_mask``: of those, all with |w| <= the
    k-th smallest magnitude, k = round(fraction x count) (ties at the cutoff are pruned too)."""
    own = owner == task
    k = round(fraction * int(own.sum()))
    if k < 1:  # the code's kthvalue(0) would fail: nothing to prune
        return torch.zeros_like(own)
    cutoff = weight[own].abs().kthvalue(k).values
    return own & (weight.abs() <= cutoff)


def task_weight(weight: Tensor, owner: Tensor, task: int) -> Tensor:
    """The weights task ``task`` (0-based) sees: its own and earlier tasks', 0 elsewhere (``apply_mask``)."""
    keep = (owner > 0) & (owner <= task + 1)
    return torch.where(keep, weight, torch.zeros((), dtype=weight.dtype, device=weight.device))


def isolation_record(
    task_masks: Sequence[Sequence[Tensor]], steps: Sequence[int], layers: Sequence[str]
) -> dict[str, Any]:
    """HAT's Figs. 5-6 for weight masks: ``task_masks[t][l]`` is task t's boolean mask of layer l.

    capacity: after each task, the share of the layers' weights used by tasks <= t (with the training
    step it was reached at); capacity_per_layer: the same per layer; own_share: task t's own mask per
    layer; reuse[i][j] (j > i): the share of task i's weights that task j uses too (None elsewhere)."""
    T = len(task_masks)
    total = sum(m.numel() for m in task_masks[0]) if T else 0
    used = [torch.zeros_like(m) for m in task_masks[0]] if T else []
    capacity, per_layer = [], []
    for t, masks in enumerate(task_masks):
        used = [u | m for u, m in zip(used, masks)]
        capacity.append({"step": int(steps[t]), "task": t, "usage": sum(int(u.sum()) for u in used) / total})
        per_layer.append([int(u.sum()) / u.numel() for u in used])
    reuse: list[list[float | None]] = [[None] * T for _ in range(T)]
    for i in range(T):
        own = sum(int(m.sum()) for m in task_masks[i])
        for j in range(i + 1, T):
            both = sum(int((a & b).sum()) for a, b in zip(task_masks[i], task_masks[j]))
            reuse[i][j] = both / own if own else None
    return {
        "layers": list(layers),
        "capacity": capacity,
        "capacity_per_layer": per_layer,
        "own_share": [[int(m.sum()) / m.numel() for m in masks] for masks in task_masks],
        "reuse": reuse,
    }


def layer_names(model) -> list[str]:
    return [f"{type(m).__name__.lower().replace('2d', '')}{l + 1}" for l, m in enumerate(model.layers)]


# ---- the strategy -------------------------------------------------------------------------------------
@dataclass
class PackNetHparams:
    prune: float = hparam(
        0.75,
        "fraction of the task's weights freed per layer after it (the paper's settings: 0.5, 0.75)",
        grid=[0.5, 0.75],
        above=0,
        below=1,
    )
    retrain_epochs: int = hparam(10, "epochs of retraining after pruning (post_prune_epochs: 10)", at_least=0)
    retrain_lr_factor: float = hparam(
        0.1, "retraining lr = this x the protocol lr (the code: 1e-4 after training at 1e-3)", above=0
    )
    prune_last: bool = hparam(False, "prune the last task too (the code's sequence script does not)")
    train_biases: bool = hparam(
        False, "True: every task trains the body biases and keeps its own copy (--train_biases); False: task 0 only"
    )


@register_strategy
class PackNet(Strategy[PackNetHparams]):
    """PackNet (not in the paper): iterative magnitude pruning; each task's kept weights are frozen for later tasks."""

    name = "packnet"
    keeps = ("owners", "task_biases", "steps", "step_count")

    def setup(self) -> None:
        self.owners = [torch.zeros(m.weight.shape, dtype=torch.int16, device=self.device) for m in self.model.layers]
        self.task_biases: dict[int, list[Tensor]] = {}  # train_biases: each task's own body biases
        self.steps: list[int] = []  # training steps when each task ended (Fig. 5's x axis)
        self.step_count = 0
        self.current = -1  # the task being trained: it sees every weight (free ones are its own)
        self.epochs_done = 0

    # ---- which weights a task uses ----------------------------------------------------------------
    def forward(self, x: Tensor, t: int) -> Tensor:
        if t == self.current:
            return self.model(x, t)  # every weight is its own, an earlier task's, or 0 (pruned)
        params = {
            f"layers.{l}.weight": task_weight(m.weight, self.owners[l], t) for l, m in enumerate(self.model.layers)
        }
        if t in self.task_biases:
            params.update({f"layers.{l}.bias": b for l, b in enumerate(self.task_biases[t])})
        return functional_call(self.model, params, (x, t))

    def trains_biases(self, t: int) -> bool:
        return t == 0 or self.hp.train_biases

    def after_backward(self, t: int) -> None:
        """Only the task's own weights move (``make_grads_zero``); biases only while they train."""
        for l, m in enumerate(self.model.layers):
            if m.weight.grad is not None:
                m.weight.grad.mul_(self.owners[l] == t + 1)
            if m.bias is not None and m.bias.grad is not None and not self.trains_biases(t):
                m.bias.grad.zero_()

    def after_step(self, t: int) -> None:
        self.step_count += 1

    # ---- the task's life cycle --------------------------------------------------------------------
    def before_task(self, task: TaskData) -> None:
        self.current = task.index
        for owner in self.owners:
            owner[owner == 0] = task.index + 1  # make_finetuning_mask: the free weights are the task's

    def train_task(self, task: TaskData, trainer) -> None:
        t = task.index
        trainer.fit(self, t, task.train, task.valid)
        last = t == task.n_tasks - 1
        if last and not self.hp.prune_last:
            return
        self.prune(t)
        if self.hp.retrain_epochs:
            self.retrain(task, trainer)

    @torch.no_grad()
    def prune(self, t: int) -> None:
        for l, m in enumerate(self.model.layers):
            freed = prune_owned(m.weight, self.owners[l], t + 1, self.hp.prune)
            self.owners[l][freed] = 0
            m.weight[freed] = 0.0

    def retrain(self, task: TaskData, trainer) -> None:
        """The code's post-prune training: the post-prune model is the first best candidate."""
        t, p = task.index, task.protocol
        schedule = Plateau.start(p, lr=p.lr * self.hp.retrain_lr_factor)
        schedule.best, _ = trainer.evaluate(self, t, task.valid)
        best_state = snapshot(self.model)
        first = self.epochs_done
        for e in range(self.hp.retrain_epochs):
            log = trainer.epoch(self, t, task.train, task.valid, schedule.lr, first + e)
            if schedule.update(log.valid_loss):
                best_state = snapshot(self.model)
            if schedule.stopped:
                break
        self.model.load_state_dict(best_state)

    def after_epoch(self, t: int, log: Any) -> None:
        self.epochs_done = log.epoch  # retraining's epochs continue the task's numbering

    def after_task(self, task: TaskData) -> None:
        if self.hp.train_biases:
            self.task_biases[task.index] = [m.bias.detach().clone() for m in self.model.layers]
        self.steps.append(self.step_count)
        self.current = -1

    # ---- monitoring -------------------------------------------------------------------------------
    def task_masks(self) -> list[list[Tensor]]:
        T = len(self.steps)
        return [[(o > 0) & (o <= t + 1) for o in self.owners] for t in range(T)]

    def monitoring(self) -> dict[str, Any]:
        record = isolation_record(self.task_masks(), self.steps, layer_names(self.model))
        record["free"] = [int((o == 0).sum()) / o.numel() for o in self.owners]
        return {"isolation": record}
