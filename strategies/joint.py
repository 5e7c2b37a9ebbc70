"""Joint: multitask training on all tasks seen so far, the A_J reference of Eq. 6.

For every t the network restarts from the same initial weights and trains on the union of tasks
0..t, in shuffled mixed-task batches; each sample's loss uses its own task's head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cl_bench.registry import register_strategy
from cl_bench.strategy import Strategy, TaskData
from cl_bench.trainer import snapshot


@register_strategy
class Joint(Strategy):
    """Multitask upper reference: retrained from the initial weights on tasks 0..t for each t."""

    name = "joint"
    clip_grad = 10000.0

    keeps = ()  # the model, and the initial weights that setup() rebuilds under the run's seed

    def setup(self) -> None:
        self.initial_state = snapshot(self.model)

    def train_task(self, task: TaskData, trainer) -> None:
        self.model.load_state_dict(self.initial_state)
        trainer.fit(self, task.index, task.seen("train"), task.seen("valid"))

    def loss(self, x: Tensor, y: Tensor, t: int | Tensor) -> tuple[Tensor, Tensor]:
        if isinstance(t, int):
            return super().loss(x, y, t)
        # Mixed-task batch: each sample's CE with its own head, averaged over the batch. Every head runs
        # on the whole batch and a mask keeps each sample's own (heads are small): no boolean indexing,
        # whose sizes the host would have to read from the GPU on every step.
        h = self.model.features(x)
        width = max(head.out_features for head in self.model.heads)
        logits = torch.full((len(y), width), float("-inf"), device=x.device)  # padded, for argmax
        total = torch.zeros((), device=x.device)
        for u, head in enumerate(self.model.heads):
            mine = t == u
            out = head(h)
            labels = torch.where(mine, y, 0)  # another task's label may not exist in head u
            total = total + (F.cross_entropy(out, labels, reduction="none") * mine).sum()
            logits[:, : out.shape[1]] = torch.where(mine[:, None], out, logits[:, : out.shape[1]])
        return total / len(y), logits
