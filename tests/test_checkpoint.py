"""Per-task checkpoints: a run killed after a task resumes there and ends exactly as if never killed."""

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_scenario

from cl_bench.registry import all_strategies, get_strategy, register_scenario
from cl_bench.runner import RunConfig, RunFailed, execute
from cl_bench.runner import checkpoint as ckpt
from cl_bench.store import Store
from cl_bench.strategy import Strategy
from cl_bench.trainer import PRESETS, Callbacks


@register_scenario("tiny_checkpoint", "3 synthetic tasks (tests only)")
def _tiny(seed=0, data_root_path=None, download=False):
    return make_scenario(n_tasks=3, seed=seed)


@register_scenario("tiny_valid_is_test", "3 synthetic tasks whose validation split is the test split (tests only)")
def _valid_is_test(seed=0, data_root_path=None, download=False):
    scenario = make_scenario(n_tasks=3, seed=seed)
    scenario.tasks = [dataclasses.replace(task, valid=task.test) for task in scenario.tasks]
    return scenario


PROTOCOL = PRESETS["quick"].replace(epochs=2)


class Interrupt(BaseException):
    """Stands for SIGKILL/Ctrl-C: not an Exception, so execute stores nothing, as when killed."""


def kill_after(task):
    """An on_task callback that 'kills' the run once ``task`` is checkpointed."""

    def on_task(t, acc):
        if t == task:
            raise Interrupt

    return on_task


def interrupted_then_resumed(config, store, after_task):
    """Run until task ``after_task`` is checkpointed, 'kill' it, run again; returns (record, tasks
    trained by the second invocation)."""
    with pytest.raises(Interrupt):
        execute(config, store, listeners=[Callbacks(on_task=kill_after(after_task))])
    assert store.status(config.run_id()) is None  # nothing stored for the killed run
    assert ckpt.checkpoint_path(store.path, config.run_id()).exists()
    trained = []
    record = execute(config, store, listeners=[Callbacks(on_epoch=lambda log: trained.append(log.task))])
    return record, sorted(set(trained))


def without_timings(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.mark.parametrize(
    "strategy,after_task",
    [("sgd", 0), ("sgd", 1), ("joint", 1), ("si", 1), ("mas", 1), ("er", 1), ("agem", 1)]
    + [("packnet", 0), ("wsn", 1), ("gpm", 1)],
)
def test_resumed_run_equals_uninterrupted(tmp_path, strategy, after_task):
    config = RunConfig(strategy, "tiny_checkpoint", 3, {}, PROTOCOL)
    reference = execute(config, Store(tmp_path / "ref.db"))
    store = Store(tmp_path / "runs.db")
    record, trained = interrupted_then_resumed(config, store, after_task)
    assert trained == list(range(after_task + 1, 3))  # only the missing tasks were trained again
    np.testing.assert_array_equal(record.accuracy, reference.accuracy)
    # the validation matrix (what selection reads) is carried through the checkpoint too
    np.testing.assert_array_equal(record.valid_accuracy, reference.valid_accuracy)
    assert not np.isnan(np.tril(reference.valid_accuracy)).any()
    assert not np.array_equal(reference.valid_accuracy, reference.accuracy)  # its own split, not the test one
    # every epoch's losses and accuracies, restored ones included
    assert without_timings(record.history) == without_timings(reference.history)
    assert not ckpt.checkpoint_path(store.path, config.run_id()).exists()  # deleted once stored
    np.testing.assert_array_equal(store.get(config.run_id()).accuracy, reference.accuracy)


def test_resume_without_the_random_states_would_differ(tmp_path, monkeypatch):
    """The test above can fail: not restoring torch/numpy RNGs (dropout masks) changes the result."""
    config = RunConfig("sgd", "tiny_checkpoint", 4, {}, PROTOCOL)
    reference = execute(config, Store(tmp_path / "ref.db"))
    monkeypatch.setattr(ckpt, "_set_rng_state", lambda state, device: None)
    record, _ = interrupted_then_resumed(config, Store(tmp_path / "runs.db"), 0)
    assert without_timings(record.history) != without_timings(reference.history)


def test_force_ignores_a_checkpoint(tmp_path):
    config = RunConfig("sgd", "tiny_checkpoint", 0, {}, PROTOCOL)
    store = Store(tmp_path / "runs.db")
    with pytest.raises(Interrupt):
        execute(config, store, listeners=[Callbacks(on_task=kill_after(0))])
    trained = []
    execute(config, store, force=True, listeners=[Callbacks(on_epoch=lambda log: trained.append(log.task))])
    assert sorted(set(trained)) == [0, 1, 2]
    assert not ckpt.checkpoint_path(store.path, config.run_id()).exists()


def test_checkpoint_holds_plain_tensors_only(tmp_path):
    """weights_only loading refuses pickled objects: the file is tensors, numbers, strings, lists."""
    config = RunConfig("joint", "tiny_checkpoint", 0, {}, PROTOCOL)
    store = Store(tmp_path / "runs.db")
    with pytest.raises(Interrupt):
        execute(config, store, listeners=[Callbacks(on_task=kill_after(1))])
    path = ckpt.checkpoint_path(store.path, config.run_id())
    payload = torch.load(path, weights_only=True)
    assert payload["next_task"] == 2 and payload["run_id"] == config.run_id()
    assert payload["accuracy"].shape == (2, 3)
    assert [h["task"] for h in payload["history"]] == [0, 0, 1, 1]
    assert path.parent == Path(str(store.path) + ".checkpoints")


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    config = RunConfig("sgd", "tiny_checkpoint", 0, {}, PROTOCOL)
    store = Store(tmp_path / "runs.db")
    with pytest.raises(Interrupt):
        execute(config, store, listeners=[Callbacks(on_task=kill_after(0))])
    path = ckpt.checkpoint_path(store.path, config.run_id())
    before = path.read_bytes()

    def dying_save(obj, f):
        f.write(b"half a checkpoint")
        raise Interrupt  # killed in the middle of writing

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(Interrupt):
        execute(config, store)  # resumes at task 1, dies while checkpointing after it
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind


def test_unreadable_or_foreign_checkpoint_is_ignored_with_a_warning(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        assert ckpt.load(path, "abc") is None
    torch.save({"format": ckpt.FORMAT_VERSION, "run_id": "other"}, path)
    with pytest.warns(UserWarning, match="run other"):
        assert ckpt.load(path, "abc") is None


def test_strategies_with_state_beyond_the_model_are_not_checkpointed(monkeypatch):
    class Counting(Strategy):
        """Keeps a count outside its model: resuming it from the model alone would be wrong."""

        name = "counting_test"

    reason = ckpt.resume_refusal(Counting)
    assert "counting_test" in reason and "`keeps` nor save_state()/load_state()" in reason
    assert ckpt.resume_refusal(all_strategies()["sgd"]) is None
    # default hooks on the base class do not make a strategy that says nothing resumable
    assert Strategy.save_state is Counting.save_state and ckpt.resume_refusal(Counting) == reason

    class WithKeeps(Counting):
        keeps = ("count",)

    class WithHooks(Counting):
        def save_state(self):
            return {}

        def load_state(self, state):
            pass

    with pytest.warns(FutureWarning, match="state_dict/load_state_dict"):

        class WithOldHooks(Counting):  # the 0.1 names, honoured with a warning
            def state_dict(self):
                return {}

            def load_state_dict(self, state):
                pass

    assert ckpt.resume_refusal(WithKeeps) is ckpt.resume_refusal(WithHooks) is ckpt.resume_refusal(WithOldHooks) is None


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(all_strategies()))
def test_every_resumable_strategy_resumes_exactly(tmp_path, strategy):
    """Guards the save_state() contract: a strategy that keeps state outside its model and does not
    save it fails here."""
    cls = all_strategies()[strategy]
    if ckpt.resume_refusal(cls):
        pytest.skip(ckpt.resume_refusal(cls))
    config = RunConfig(strategy, "tiny_checkpoint", 1, {}, dataclasses.replace(PROTOCOL, epochs=1))
    reference = execute(config, Store(tmp_path / "ref.db"))
    record, _ = interrupted_then_resumed(config, Store(tmp_path / "runs.db"), 0)
    np.testing.assert_array_equal(record.accuracy, reference.accuracy)


@pytest.mark.parametrize("name", ["ewc", "imm_mean", "imm_mode"])
def test_restored_state_moves_to_the_strategy_s_device(name):
    """A checkpoint is loaded onto the CPU; a run resumed on a GPU must get its anchors and Fishers there
    (else the first penalty mixes devices). The 'meta' device stands in for a GPU."""
    torch.manual_seed(0)
    strategy = get_strategy(name)(make_scenario())
    strategy.before_task(0)
    strategy.after_task(0)
    state = strategy.save_state()
    strategy.device = torch.device("meta")
    strategy.load_state(state)
    kept = [getattr(strategy, a) for a in ("anchor", "fisher", "previous") if getattr(strategy, a, None) is not None]
    assert kept and all(t.device.type == "meta" for d in kept for t in d.values())


def test_validation_matrix_is_measured_like_the_test_matrix(tmp_path):
    """With the test split as validation split the two matrices must be equal cell for cell: same
    tasks, same heads, same rows; and it is stored with the run (monitoring.validation)."""
    config = RunConfig("sgd", "tiny_valid_is_test", 0, {}, PROTOCOL)
    record = execute(config, Store(tmp_path / "runs.db"))
    np.testing.assert_array_equal(record.valid_accuracy, record.accuracy)
    stored = Store(tmp_path / "runs.db").get(config.run_id())
    np.testing.assert_array_equal(stored.valid_accuracy, record.accuracy)
    assert stored.monitoring["validation"]["accuracy"][0][1] is None  # above the diagonal: not measured


def test_a_failed_run_keeps_its_finished_validation_rows(tmp_path, monkeypatch):
    sgd = get_strategy("sgd")
    train_task = sgd.train_task

    def fails_at_task_2(self, task, trainer):
        if task.index == 2:
            raise RuntimeError("out of memory, say")
        return train_task(self, task, trainer)

    monkeypatch.setattr(sgd, "train_task", fails_at_task_2)
    config = RunConfig("sgd", "tiny_checkpoint", 0, {}, PROTOCOL)
    store = Store(tmp_path / "runs.db")
    with pytest.raises(RunFailed):
        execute(config, store)
    (failed,) = store.query("status = 'failed'")
    valid = failed.valid_accuracy
    assert not np.isnan(np.tril(valid[:2])).any() and np.isnan(valid[2]).all()  # rows of tasks 1-2 kept
    np.testing.assert_array_equal(np.isnan(valid), np.isnan(failed.accuracy))


def test_a_resumed_run_s_wall_time_counts_every_sitting(tmp_path, monkeypatch):
    """The first sitting's wall time travels in the checkpoint; the stored run adds its own sitting's.
    Time is faked: the first sitting takes 1000 s, the second starts a day later."""
    import cl_bench.runner.execution as execution

    clock = {"now": 1_000_000.0}
    monkeypatch.setattr(execution.time, "time", lambda: clock["now"])

    def tick(log):  # each epoch takes 100 s
        clock["now"] += 100.0

    config = RunConfig("sgd", "tiny_checkpoint", 3, {}, PROTOCOL)
    store = Store(tmp_path / "runs.db")
    with pytest.raises(Interrupt):  # tasks 1-2, 2 epochs each: 400 s, checkpointed after task 2
        execute(config, store, listeners=[Callbacks(on_epoch=tick, on_task=kill_after(1))])
    assert ckpt.load(ckpt.checkpoint_path(store.path, config.run_id()), config.run_id())["wall_s"] == 400.0
    clock["now"] += 86_400.0
    record = execute(config, store, listeners=[Callbacks(on_epoch=tick)])  # task 3: 200 s
    assert record.wall_s == 600.0 and store.get(config.run_id()).wall_s == 600.0
    assert record.finished - record.started == 200.0  # this sitting's span
