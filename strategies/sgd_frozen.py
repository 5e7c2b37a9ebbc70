"""SGD-F: fine-tune everything on the first task, then train only the task heads (as the authors' code).

The HAT paper's "SGD with frozen body" baseline (Serra et al. 2018, Sec. 4.1): the shared body learnt on
task 1 becomes a fixed feature extractor, so nothing of earlier tasks can be forgotten, but later
tasks get no representation of their own. As the reference, the freeze happens after the best
weights of task 1 are restored, and dropout stays active (train mode) in the frozen body.
"""

from cl_bench.registry import register_strategy
from cl_bench.strategy import Strategy, TaskData


@register_strategy
class SGDFrozen(Strategy):
    """Plain SGD on task 1; afterwards only the heads are trainable."""

    name = "sgd_frozen"
    clip_grad = 10000.0  # the authors' code's clipping threshold for this method

    def after_task(self, task: TaskData) -> None:
        """Freeze every non-head parameter (the reference freezes all names not starting with 'last')."""
        for p in self.model.body_parameters():
            p.requires_grad_(False)  # Strategy.trainable_parameters then leaves them out of SGD

    def save_state(self) -> dict:
        return {"frozen": not all(p.requires_grad for p in self.model.body_parameters())}

    def load_state(self, state: dict) -> None:
        for p in self.model.body_parameters():
            p.requires_grad_(not state["frozen"])
