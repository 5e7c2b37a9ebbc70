"""Random: the stratified random classifier, the A_R reference of Eq. 6, as the authors' code.

Predictions are the task's training labels, shuffled and repeated until they cover the batch, then
truncated and shuffled again: labels follow the training distribution drawn without replacement, so
the expected accuracy is sum_c p_train(c) p_test(c). (The reference draws once per test set with
numpy's global RNG; here each evaluation batch draws from a seeded torch generator.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cl_bench.registry import register_strategy
from cl_bench.strategy import Strategy, TaskData


@register_strategy
class Random(Strategy):
    """Stratified random classifier; only its diagonal acc[t, t] is used as A_R."""

    name = "random"

    def setup(self) -> None:
        self.generator = torch.Generator().manual_seed(int(torch.randint(2**31 - 1, (1,))))
        self.train_labels: dict[int, Tensor] = {}

    def build_model(self) -> nn.Module:
        return nn.Module()  # nothing to learn

    def train_task(self, task: TaskData, trainer) -> None:
        self.train_labels[task.index] = task.train.y.cpu()

    def save_state(self) -> dict:
        return {"train_labels": dict(self.train_labels), "generator": self.generator.get_state()}

    def load_state(self, state: dict) -> None:
        self.train_labels = dict(state["train_labels"])
        self.generator.set_state(state["generator"])

    def predict(self, x: Tensor, t: int) -> Tensor:
        labels = self.train_labels[t]
        copies = -(-len(x) // len(labels))  # ceil
        drawn = torch.cat([labels[torch.randperm(len(labels), generator=self.generator)] for _ in range(copies)])[
            : len(x)
        ]
        return drawn[torch.randperm(len(x), generator=self.generator)].to(x.device)
