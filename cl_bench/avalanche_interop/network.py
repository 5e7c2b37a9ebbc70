"""A cl-bench multi-head network as Avalanche sees one: ``task_aware_net(net)``, a ``MultiTaskModule``.

The class derives from Avalanche's, so it is built on first use (``functools.cache``), when Avalanche
is imported.
"""

from __future__ import annotations

import functools

from torch import Tensor, nn

from cl_bench import nets
from cl_bench.avalanche_interop.library import import_avalanche

PAD_LOGIT = -1000.0  # logits of units a task's head lacks in a mixed-task batch (Avalanche's mask value)


@functools.cache
def _task_aware_net_class() -> type:
    import_avalanche()
    from avalanche.models import MultiTaskModule
    from avalanche.models.base_model import BaseModel

    class TaskAwareNet(MultiTaskModule, BaseModel):
        """A cl-bench multi-head net as Avalanche sees one: ``forward(x, task_labels)`` and
        ``get_features(x)`` (LFL's features: the input of the heads)."""

        def __init__(self, net: nets.MultiHeadNet):
            super().__init__()
            self.net = net

        def get_features(self, x: Tensor) -> Tensor:
            return self.net.features(x)

        def forward_single_task(self, x: Tensor, task_label: int) -> Tensor:
            return self.net(x, int(task_label))

        def forward_all_tasks(self, x: Tensor) -> dict[int, Tensor]:
            h = self.net.features(x)  # one pass through the body for every known head (LwF)
            return {u: self.net.heads[u](h) for u in sorted(self.known_train_tasks_labels)}

        def forward(self, x: Tensor, task_labels) -> Tensor | dict[int, Tensor]:
            if task_labels is None:
                return self.forward_all_tasks(x)
            if isinstance(task_labels, int):
                return self.forward_single_task(x, task_labels)
            tasks = task_labels.unique().tolist()
            if len(tasks) == 1:  # the usual batch: one head, no padding
                return self.forward_single_task(x, tasks[0])
            # A mixed batch (replay): each sample through its own head, narrower heads padded with a
            # large negative logit (it takes no probability mass) instead of MultiTaskModule's zeros.
            h = self.net.features(x)
            width = max(self.net.heads[u].out_features for u in tasks)
            out = h.new_full((len(x), width), PAD_LOGIT)
            for u in tasks:
                rows = task_labels == u
                logits = self.net.heads[u](h[rows])
                out[rows, : logits.shape[1]] = logits
            return out

    return TaskAwareNet


def task_aware_net(net: nets.MultiHeadNet) -> nn.Module:
    """``net`` (shared, not copied) as an Avalanche ``MultiTaskModule``."""
    return _task_aware_net_class()(net)
