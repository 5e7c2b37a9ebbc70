"""The cl-bench protocol inside Avalanche's training loop: ``protocol_plugin(owner)``.

The rule is cl-bench's own, not a copy: the lr schedule and stop are ``trainer.Plateau``, the best
weights ``trainer.snapshot``, and each epoch Avalanche trained is validated, checked for divergence
and logged by ``Trainer.end_epoch``, exactly as ``Trainer.fit`` does for built-in strategies. What the
plugin adds is what only Avalanche's loop can do: set the optimizer's lr, clip gradients before the
update, sum the training loss, and stop the loop.
"""

from __future__ import annotations

import functools
import time

import torch

from cl_bench.avalanche_interop.library import import_avalanche
from cl_bench.strategy import Strategy
from cl_bench.trainer import Plateau, snapshot


@functools.cache
def _protocol_plugin_class() -> type:
    import_avalanche()
    from avalanche.training.plugins import SupervisedPlugin

    class ProtocolPlugin(SupervisedPlugin):
        """The cl-bench protocol inside Avalanche's training loop. First in the plugin list, so the
        best weights are back before the method's ``after_training_exp`` (EWC's importances, LwF's and
        LFL's frozen copies)."""

        def __init__(self, owner: Strategy):
            super().__init__()
            self.owner = owner
            self.schedule: Plateau | None = None

        def _set_lr(self, strategy) -> None:
            for group in strategy.optimizer.param_groups:
                group["lr"] = self.schedule.lr

        def before_training_exp(self, strategy, **kwargs):
            """Start task t as Trainer.fit does: lr reset, patience full, best = the initial weights."""
            o = self.owner
            self.schedule = Plateau.start(o.trainer.protocol)
            self.best_state = snapshot(o.model)
            self.epoch = 0
            self._set_lr(strategy)
            # The head of the task being learned trains. (Avalanche's LFL freezes "the last Linear",
            # its single classifier in class-incremental use; on a multi-head net that is the last
            # task's head, which would stay at its random initialisation.)
            o.model.heads[o.task].requires_grad_(True)

        def before_training_epoch(self, strategy, **kwargs):
            self.start = time.perf_counter()
            self.loss_sum, self.n_seen = torch.zeros((), device=self.owner.device), 0

        def before_update(self, strategy, **kwargs):
            """Global grad-norm clipping at the threshold of the cl-bench counterpart (the authors' thresholds)."""
            params = [p for g in strategy.optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.owner.clip_threshold)

        def after_training_iteration(self, strategy, **kwargs):
            n = len(strategy.mb_y)
            self.loss_sum += strategy.loss.detach().sum() * n  # the full loss, regularisers included
            self.n_seen += n

        def after_training_epoch(self, strategy, **kwargs):
            """Validate and log (Trainer.end_epoch), then the lr schedule of Trainer.fit; stop when lr < lr_min."""
            o = self.owner
            trainer, t = o.trainer, o.task
            train_loss = self.loss_sum.item() / max(self.n_seen, 1)
            was_training = strategy.model.training
            try:
                log = trainer.end_epoch(
                    o,
                    t,
                    trainer.data(t, "train"),
                    trainer.data(t, "valid"),
                    self.schedule.lr,
                    self.epoch,
                    train_loss,
                    self.start,
                )
            finally:
                strategy.model.train(was_training)  # evaluation left it in eval mode; Avalanche's loop goes on
            self.epoch += 1
            lr = self.schedule.lr
            if self.schedule.update(log.valid_loss):
                self.best_state = snapshot(o.model)
            if self.schedule.lr != lr:
                self._set_lr(strategy)
            if self.schedule.stopped:
                strategy.stop_training()

        def after_training_exp(self, strategy, **kwargs):
            self.owner.model.load_state_dict(self.best_state)

    return ProtocolPlugin


def protocol_plugin(owner: Strategy):
    """A new ProtocolPlugin (an Avalanche ``SupervisedPlugin``) for the strategy ``owner``."""
    return _protocol_plugin_class()(owner)
