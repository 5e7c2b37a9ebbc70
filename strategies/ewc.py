"""EWC: Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017, arXiv:1612.00796), as the HAT
authors' code ran it (github.com/joansj/hat; docs/faithfulness.md).

Training task t > 0 minimises

    L(θ) = CE_t(θ) + λ Σ_i F_i (θ*_i − θ_i)² / 2                       # EWC Eq. 3, as the authors' code

over **all** parameters, heads included, where θ* is the model after task t−1 (a single anchor) and
F is a running mean of the per-task diagonal Fishers, F <- (F_t + t·F)/(t+1) (as the authors' code).

The Fisher is the authors' code's *empirical* one: true labels, the network in train
mode (dropout on), the training set cut in consecutive batches of 20, and for each batch the square
of the gradient of the batch-mean loss times 20 (even for a smaller last batch), summed and divided by
N. That is about 20x smaller than the per-sample empirical Fisher (1/N) Σ_n g_n² for uncorrelated
gradients, and λ = 5000 was tuned at that scale. ``fisher_batch=1`` gives the per-sample empirical
Fisher exactly (then λ has to be retuned).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from cl_bench.registry import register_strategy
from cl_bench.strategies.shared import anchor_of, cross_entropy_of, empirical_fisher, quadratic_penalty
from cl_bench.strategy import Strategy, TaskData, hparam


@dataclass
class EWCHparams:
    lamb: float = hparam(
        5000.0,
        "penalty strength λ (reference default, tuned on seed 0)",
        grid=[500, 1000, 2000, 5000, 10000, 20000, 50000],
        at_least=0,
    )
    fisher_batch: int = hparam(
        20,
        "Fisher batch size, gradient² of each batch mean scaled by it (reference 20); 1 = per-sample empirical Fisher",
        at_least=1,
    )


@register_strategy
class EWC(Strategy[EWCHparams]):
    """Elastic Weight Consolidation with the reference's empirical Fisher and running-mean merge."""

    name = "ewc"
    clip_grad = 100.0  # the authors' code's clipping threshold for this method
    keeps = ("anchor", "fisher")

    def setup(self) -> None:
        self.anchor: dict[str, Tensor] | None = None  # θ*, the model after the previous task
        self.fisher: dict[str, Tensor] | None = None  # running mean of the tasks' Fishers

    def loss(self, x: Tensor, y: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """CE of head t + λ Σ F (θ* − θ)² / 2 (also the validation loss, as in the reference)."""
        if self.anchor is None:
            return super().loss(x, y, t)
        penalty = quadratic_penalty(self.model, self.anchor, self.fisher)
        ce, logits = super().loss(x, y, t)
        return ce + self.hp.lamb * penalty, logits  # EWC Eq. 3

    def after_task(self, task: TaskData) -> None:
        """Fisher of the task just learned, merged as a running mean; the model becomes the anchor."""
        # The reference differentiates its full criterion after moving the anchor to θ, where the
        # penalty's gradient is zero: the plain CE is the same thing.
        t = task.index
        new = empirical_fisher(self.model, cross_entropy_of(self.model, t), task.train, self.hp.fisher_batch)
        if self.fisher is None:
            self.fisher = new
        else:  # the authors' code: F <- (F_t + t·F_old)/(t+1), a running mean over tasks, not a sum
            self.fisher = {name: (new[name] + t * self.fisher[name]) / (t + 1) for name in new}
        self.anchor = anchor_of(self.model)
