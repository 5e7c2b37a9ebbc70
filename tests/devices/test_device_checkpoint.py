"""Checkpoints cross devices: a run written on one device and killed resumes on another (a GPU run
finished on a CPU, and back), through ``runner.execute``, and ends as the uninterrupted CPU run
within the tolerance (exactly, from CPU to CPU).

The strategies run here without dropout (variants registered for the test only): dropout draws
from each device's own generator, so runs with it agree across devices only in distribution.
"""

import numpy as np
import pytest
import torch
from device_params import DEVICE_PAIRS

from cl_bench import registry
from cl_bench.runner import RunConfig, execute
from cl_bench.runner import checkpoint as ckpt
from cl_bench.store import Store
from cl_bench.tools import device_checks as dc
from cl_bench.trainer import Callbacks

STRATEGIES = ["sgd", "ewc", "hat", "lwf", "pathnet"]
PROTOCOL = dc.TINY_PROTOCOL


class Interrupt(BaseException):
    """Stands for a kill: not an Exception, so execute stores nothing."""


@pytest.fixture
def no_dropout_strategies(monkeypatch):
    """``<name>_nodrop`` for each of STRATEGIES, and the tiny scenario, in the registries while a test runs."""
    strategies = dict(registry.all_strategies())
    for name in STRATEGIES:
        strategies[f"{name}_nodrop"] = without_dropout(strategies[name])
    monkeypatch.setattr(registry, "STRATEGIES", strategies)
    monkeypatch.setattr(registry, "SCENARIOS", dict(registry.all_scenarios()))
    registry.register_scenario("devices_tiny", "tests/devices only")(
        lambda seed=0, data_root_path=None, download=False: dc.tiny_scenario(seed=seed)
    )


def without_dropout(base):
    """A subclass of strategy class ``base`` whose network has every dropout at p = 0."""

    class NoDropout(base):
        name = f"{base.name}_nodrop"

        def build_model(self):
            return dc.without_dropout(super().build_model())

    return NoDropout


def as_result(record, device):
    return dc.SequenceResult(
        device,
        record.accuracy,
        [h["train_loss"] for h in record.history],
        [h["valid_loss"] for h in record.history],
        None,
        record.wall_s,
    )


@pytest.mark.parametrize("saved_on,resumed_on", DEVICE_PAIRS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_checkpoint_resumes_on_another_device(tmp_path, no_dropout_strategies, strategy, saved_on, resumed_on):
    config = RunConfig(f"{strategy}_nodrop", "devices_tiny", 0, dc.TINY_HPARAMS.get(strategy, {}), PROTOCOL)
    with dc.strict_fp32():
        reference = execute(config, Store(tmp_path / "cpu.db"), device="cpu")
        store = Store(tmp_path / "runs.db")

        def killed(t, acc):
            if t == 0:
                raise Interrupt

        with pytest.raises(Interrupt):
            execute(config, store, device=saved_on, listeners=[Callbacks(on_task=killed)])
        path = ckpt.checkpoint_path(store.path, config.run_id())
        payload = torch.load(path, map_location="cpu", weights_only=True)
        assert payload["next_task"] == 1
        trained = []
        record = execute(
            config, store, device=resumed_on, listeners=[Callbacks(on_epoch=lambda log: trained.append(log.task))]
        )
    assert set(trained) == {1}  # task 0 came from the checkpoint
    assert not path.exists() and store.status(config.run_id()) == "finished"
    tol = dc.tolerance(saved_on, other=resumed_on)
    agreement = dc.compare(
        as_result(record, resumed_on), as_result(reference, "cpu"), tol, dc.n_test_samples(dc.tiny_scenario())
    )
    assert agreement.ok, f"{strategy} saved on {saved_on}, resumed on {resumed_on}: {agreement.problems}"
    if tol == dc.EXACT:
        np.testing.assert_array_equal(record.accuracy, reference.accuracy)
