"""The protocol (reference §3): lr schedule, early stop, best-weight restore, divergence."""
import math

import pytest
import torch

from cl_bench.strategy import Strategy
from cl_bench.trainer import DivergedError, Protocol, Trainer


class Scripted(Trainer):
    """A trainer whose validation losses follow a script; each epoch writes its index into the weights."""

    def __init__(self, scenario, protocol, losses):
        super().__init__(scenario, protocol)
        self.losses, self.lrs = list(losses), []

    def train_epoch(self, strategy, t, data, lr, epoch=0):
        self.lrs.append(lr)
        with torch.no_grad():
            for p in strategy.model.parameters():
                p.fill_(epoch)
        return 0.0

    def evaluate(self, strategy, t, data):
        return self.losses[len(self.lrs) - 1], 0.5


def run_script(tiny_scenario, losses, **protocol):
    scenario = tiny_scenario()
    strategy = Strategy(scenario)
    trainer = Scripted(scenario, Protocol(**protocol), losses)
    trainer.fit(strategy, 0, trainer.data(0, "train"), trainer.data(0, "valid"))
    return trainer, strategy


def test_plateau_divides_lr_by_3_and_stops_below_1e4(tiny_scenario):
    losses = [1.0] + [2.0] * 100  # improves once, then never
    trainer, _ = run_script(tiny_scenario, losses)
    # 5 epochs at each of 0.05, 0.05/3, ..., 0.05/3^5 = 2.06e-4 after the first; 0.05/3^6 < 1e-4 stops.
    expected = [0.05] * 6 + [0.05 / 3 ** k for k in range(1, 6) for _ in range(5)]
    assert len(trainer.lrs) == 31  # the reference's minimum task length
    assert trainer.lrs == pytest.approx(expected)


def test_improvement_resets_patience(tiny_scenario):
    losses = [5.0, 6, 6, 6, 6, 4.0, 6, 6, 6, 6, 6, 6] + [6] * 100
    trainer, _ = run_script(tiny_scenario, losses, epochs=12)
    # epoch 6 improves before patience runs out (4 bad epochs), so lr first drops after epoch 11
    assert trainer.lrs[:11] == [0.05] * 11
    assert trainer.lrs[11] == pytest.approx(0.05 / 3)


def test_epoch_cap_and_best_weights_restored(tiny_scenario):
    losses = [3.0, 2.0, 1.0, 1.5, 2.5, 2.5, 2.5]
    trainer, strategy = run_script(tiny_scenario, losses, epochs=7)
    assert len(trainer.lrs) == 7
    for p in strategy.model.parameters():  # weights written by epoch index 2, the best validation loss
        assert torch.all(p == 2)


def test_nan_loss_raises_diverged_with_epoch(tiny_scenario):
    with pytest.raises(DivergedError, match="task 0 epoch 3"):
        run_script(tiny_scenario, [1.0, 0.9, math.nan, 0.5])


def test_real_training_lowers_validation_loss(tiny_scenario):
    scenario = tiny_scenario(n_train=300)
    torch.manual_seed(0)
    strategy = Strategy(scenario)
    trainer = Trainer(scenario, Protocol(epochs=8), seed=0)
    trainer.fit(strategy, 0, trainer.data(0, "train"), trainer.data(0, "valid"))
    first, best = trainer.history[0].valid_loss, min(h.valid_loss for h in trainer.history)
    assert best < 0.5 * first
    assert trainer.test_accuracy(strategy, 0) > 0.9


def test_global_grad_norm_clipping_bounds_the_step(tiny_scenario):
    scenario = tiny_scenario(n_train=64)  # one batch: one SGD step
    torch.manual_seed(0)
    strategy = Strategy(scenario)
    before = torch.cat([p.detach().flatten().clone() for p in strategy.model.parameters()])
    trainer = Trainer(scenario, Protocol(clip_grad=1e-3), seed=0)
    trainer.train_epoch(strategy, 0, trainer.data(0, "train"), lr=0.05)
    after = torch.cat([p.detach().flatten() for p in strategy.model.parameters()])
    assert (after - before).norm().item() == pytest.approx(0.05 * 1e-3, rel=1e-3)
