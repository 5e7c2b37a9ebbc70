"""Whole runs: determinism, skipping finished configs, failures stored with their reason, plugins."""

from pathlib import Path

import numpy as np
import pytest
from conftest import requires_mnist

from cl_bench.registry import get_strategy
from cl_bench.runner import RunConfig, RunFailed, execute
from cl_bench.store import Store
from cl_bench.strategy import HparamError
from cl_bench.trainer import Protocol

pytestmark = requires_mnist
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "l2_anchor.py"
TINY = {"max_train_per_task": 300}


def config(strategy="sgd", seed=0, **protocol):
    return RunConfig(strategy, "split_mnist", seed, protocol=Protocol(epochs=2, **protocol), scenario_options=TINY)


def test_same_seed_gives_identical_accuracy_matrix():
    a, b = execute(config()).accuracy, execute(config()).accuracy
    np.testing.assert_array_equal(a, b)
    assert a[1, 0] > 0.5 and a[1, 1] > 0.5  # it learned something
    assert not np.array_equal(a, execute(config(seed=1)).accuracy)


def test_finished_config_is_skipped_unless_forced(tmp_path):
    store = Store(tmp_path / "s.db")
    first = execute(config(), store)
    again = execute(config(), store)
    assert again.started == first.started  # returned from the store, not re-run
    forced = execute(config(), store, force=True)
    assert forced.started > first.started
    np.testing.assert_array_equal(forced.accuracy, first.accuracy)
    assert len(store.query()) == 1


def test_diverging_run_is_stored_as_failed_with_its_reason(tmp_path):
    store = Store(tmp_path / "s.db")
    with pytest.raises(RunFailed, match="diverged: loss is not finite at task 1 epoch 1"):
        execute(config(lr=1e30, clip_grad=1e30), store)
    (rec,) = store.query()
    assert rec.status == "failed" and rec.error.startswith("diverged")


def test_bad_hyperparameters_name_the_accepted_ones():
    with pytest.raises(HparamError, match="strength: float = 0.01"):
        get_strategy(f"{EXAMPLE}:L2Anchor").parse_hparams({"strenght": 1})
    with pytest.raises(HparamError, match="must be float"):
        get_strategy(f"{EXAMPLE}:L2Anchor").parse_hparams({"strength": "much"})
    with pytest.raises(ValueError, match="unknown strategy 'sdg'; valid: .*sgd"):
        get_strategy("sdg")


def test_strategy_from_a_file_runs_and_its_penalty_matters():
    plain = execute(config(strategy=f"{EXAMPLE}:L2Anchor", seed=0)).accuracy
    strong = execute(
        RunConfig(f"{EXAMPLE}:L2Anchor", "split_mnist", 0, {"strength": 50.0}, Protocol(epochs=2), TINY)
    ).accuracy
    assert not np.array_equal(plain, strong)
    assert strong[1, 0] >= plain[1, 0] - 0.02  # the pull protects task 1 at least as well
