"""The protocol (the HAT authors' code): lr schedule, early stop, best-weight restore, divergence."""

import math

import numpy as np
import pytest
import torch
from conftest import make_scenario

from cl_bench.registry import register_scenario
from cl_bench.runner import RunConfig, RunFailed, execute
from cl_bench.store import Store
from cl_bench.strategy import Strategy
from cl_bench.trainer import LOSS_LIMIT, DivergedError, Protocol, Trainer


@register_scenario("tiny_trainer", "2 synthetic tasks (tests only)")
def _tiny(seed=0, data_root_path=None, download=False):
    return make_scenario(seed=seed)


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
    expected = [0.05] * 6 + [0.05 / 3**k for k in range(1, 6) for _ in range(5)]
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
    with pytest.raises(DivergedError, match="loss is not finite at task 1 epoch 3"):
        run_script(tiny_scenario, [1.0, 0.9, math.nan, 0.5])


def test_finite_loss_that_exploded_raises_diverged(tiny_scenario):
    """A loss can blow up and stay finite (lr=1e6 reached 1.7e30): above LOSS_LIMIT it is divergence too,
    reported with the task and epoch counted from 1, both losses, the lr and the reason."""
    with pytest.raises(DivergedError) as err:
        run_script(tiny_scenario, [1.0, 0.9, 10 * LOSS_LIMIT, 0.5])
    text = str(err.value)
    assert text.startswith(f"loss exploded above {LOSS_LIMIT:g} at task 1 epoch 3 ")
    assert f"valid {10 * LOSS_LIMIT:.4g}" in text and "lr 0.05" in text
    trainer, _ = run_script(tiny_scenario, [1.0, LOSS_LIMIT, 0.5], epochs=3)  # at the limit: not diverged
    assert len(trainer.lrs) == 3


def test_large_lr_explodes_in_real_training_and_is_stopped(tiny_scenario):
    scenario = tiny_scenario()
    torch.manual_seed(0)
    strategy = Strategy(scenario)
    trainer = Trainer(scenario, Protocol(epochs=5, lr=1e6), seed=0)
    with pytest.raises(DivergedError, match=r"loss exploded above 1e\+08 at task 1 epoch 1 \("):
        trainer.fit(strategy, 0, trainer.data(0, "train"), trainer.data(0, "valid"))
    assert trainer.history == []  # the diverged epoch is not logged as a result


def test_run_whose_loss_explodes_is_stored_failed_with_task_epoch_and_reason(tmp_path):
    store = Store(tmp_path / "s.db")
    config = RunConfig("sgd", "tiny_trainer", 0, protocol=Protocol(epochs=3, lr=1e6))
    with pytest.raises(RunFailed, match=r"diverged: loss exploded above 1e\+08 at task 1 epoch 1 "):
        execute(config, store)
    (rec,) = store.query()
    assert rec.status == "failed" and rec.error.startswith("diverged: loss ")
    assert "task 1 epoch 1" in rec.error and "lr 1e+06" in rec.error
    assert np.isnan(rec.accuracy).all()  # no task finished: no accuracy to report as if it were one


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
