"""IMM-mean: mean-based Incremental Moment Matching (Lee et al., NIPS 2017, arXiv:1703.08475), as the
HAT authors' code ran it (github.com/joansj/hat; docs/faithfulness.md).

Training task t > 0 uses the IMM paper's L2-transfer toward the previous model θ_{t-1}:

    L(θ) = CE_t(θ) + λ Σ_i (θ_{t-1,i} − θ_i)² / 2                      # IMM L2-transfer, as the authors' code

and after task t > 0 the model is replaced by the running mean of the task models with equal weights
α_k = 1/(t+1) ("same alpha for all tasks" in the reference):

    θ <- (θ_t + t · θ_{t-1}) / (t+1)                                    # mean-IMM, equal weights

``faithful=True`` (default, reproduces the published numbers): the merge runs over **every**
parameter, so the head of the new task t, which θ_{t-1} holds at its untrained random
initialisation, ends up as (1/(t+1))·trained + (t/(t+1))·random init.
``faithful=False`` (corrected): head t keeps its trained weights, since no previous model has learnt
it; everything else is averaged as above. (Heads of earlier tasks are equal in θ_t and θ_{t-1}, since
only the L2 term touches them and it is stationary there; heads of later tasks are untouched
initialisations in both, so averaging them is a no-op either way.)
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from cl_bench.registry import register_strategy
from cl_bench.strategies.shared import anchor_of, quadratic_penalty
from cl_bench.strategy import Strategy, TaskData, hparam


def mean_merge(
    current: dict[str, Tensor], previous: dict[str, Tensor], t: int, keep: frozenset[str] = frozenset()
) -> dict[str, Tensor]:
    """(current + t·previous)/(t+1) per parameter, except names in ``keep`` (taken from ``current``)."""
    return {name: current[name] if name in keep else (current[name] + t * previous[name]) / (t + 1) for name in current}


@dataclass
class IMMMeanHparams:
    lamb: float = hparam(
        1e-4,
        "L2-transfer coefficient toward the previous model",
        grid=[0.01, 0.005, 0.001, 0.0005, 0.0001, 0.00005, 0.000001],
        at_least=0,
    )
    faithful: bool = hparam(
        True,
        "True: the authors' merge, which averages the new head with its random init; False: keep the trained new head",
    )


@register_strategy
class IMMMean(Strategy[IMMMeanHparams]):
    """L2-transfer while training, then an equal-weight running mean of the task models."""

    name = "imm_mean"
    clip_grad = 10000.0  # the authors' code's clipping threshold for this method
    keeps = ("previous",)

    def setup(self) -> None:
        self.previous: dict[str, Tensor] | None = None  # θ_{t-1}, the merged model after task t-1

    def loss(self, x: Tensor, y: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """CE of head t + λ Σ (θ_{t-1} − θ)² / 2 (also the validation loss, as in the reference)."""
        if self.previous is None:
            return super().loss(x, y, t)
        penalty = quadratic_penalty(self.model, self.previous)
        ce, logits = super().loss(x, y, t)
        return ce + self.hp.lamb * penalty, logits

    def after_task(self, task: TaskData) -> None:
        """Merge with the previous model (t > 0), then remember the result as θ_t."""
        t = task.index
        if self.previous is not None:
            keep = frozenset() if self.hp.faithful else self._head_names(t)
            merged = mean_merge(anchor_of(self.model), self.previous, t, keep)  # mean-IMM
            for name, p in self.model.named_parameters():
                p.data.copy_(merged[name])
        self.previous = anchor_of(self.model)

    def _head_names(self, t: int) -> frozenset[str]:
        return frozenset(f"heads.{t}.{name}" for name, _ in self.model.heads[t].named_parameters())
