"""A complete third-party strategy: SGD plus an L2 pull towards the weights learned so far.

Run it without installing anything:
    cl-bench run --strategy examples/l2_anchor.py:L2Anchor --scenario split_mnist -p strength=0.01
"""

from dataclasses import dataclass

import torch

from cl_bench.strategy import Strategy, TaskData, hparam


@dataclass
class L2AnchorHparams:
    strength: float = hparam(0.01, "weight of the L2 pull to the previous task's weights", grid=[1e-3, 1e-2, 1e-1])


class L2Anchor(Strategy[L2AnchorHparams]):
    """Fine-tuning with strength * sum((theta - theta_prev)^2) / 2 after the first task."""

    name = "l2_anchor"
    keeps = ("anchor",)  # checkpointed after each task, so a killed run resumes

    def setup(self) -> None:
        self.anchor: list[torch.Tensor] | None = None

    def before_task(self, task: TaskData) -> None:
        """Snapshot the weights the next task must stay close to."""
        if task.index > 0:
            self.anchor = [p.detach().clone() for p in self.model.parameters()]

    def loss(self, x, y, t):
        """Cross-entropy plus the pull (also the validation loss, as for every regulariser here)."""
        ce, logits = super().loss(x, y, t)
        if self.anchor is None:
            return ce, logits
        pull = sum(((p - a) ** 2).sum() for p, a in zip(self.model.parameters(), self.anchor))
        return ce + self.hp.strength * pull / 2, logits
