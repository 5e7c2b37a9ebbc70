"""ER (strategies/er.py): exact per-task balance of the memory, uniform selection within a task, and
replayed samples trained on their own heads (the loss against a sample-by-sample computation)."""

import torch
import torch.nn.functional as F
from conftest import make_scenario

from cl_bench.registry import get_strategy
from cl_bench.scenario import Data
from cl_bench.strategies.er import add_task, split_budget
from cl_bench.strategy import BatchInfo
from cl_bench.trainer import Protocol, Trainer


def ids_data(n, t):
    """A task whose sample i has x = i (to trace which samples the memory keeps)."""
    x = torch.arange(n, dtype=torch.int32).view(n, 1)
    return Data(x, torch.zeros(n, dtype=torch.long), t, torch.ones(1), torch.zeros(1))


def test_budget_is_split_equally_the_remainder_to_the_earliest_tasks():
    assert split_budget(10, 1) == [10]
    assert split_budget(10, 3) == [4, 3, 3]
    assert split_budget(9, 3) == [3, 3, 3]
    assert split_budget(2, 3) == [1, 1, 0]


def test_memory_holds_exactly_each_task_s_share_of_its_own_samples():
    g = torch.Generator().manual_seed(0)
    memory = None
    for t in range(4):
        memory = add_task(memory, ids_data(100 + t, t), t, split_budget(50, t + 1), g)
        counts = torch.bincount(memory["task"], minlength=t + 1).tolist()
        assert counts == split_budget(50, t + 1)
        for u in range(t + 1):
            kept = memory["x"][memory["task"] == u].view(-1)
            assert len(set(kept.tolist())) == len(kept) and kept.max() < 100 + u  # distinct samples of task u
    assert memory["scale"].shape[0] == 4


def test_older_shares_are_cut_to_a_subset_of_what_they_held():
    g = torch.Generator().manual_seed(1)
    memory = add_task(None, ids_data(100, 0), 0, [30], g)
    before = set(memory["x"].view(-1).tolist())
    memory = add_task(memory, ids_data(100, 1), 1, [15, 15], g)
    after = set(memory["x"][memory["task"] == 0].view(-1).tolist())
    assert len(after) == 15 and after <= before


def test_each_sample_is_kept_with_probability_share_over_n():
    # uniform selection: over many draws each of the 20 samples of task 0 stays with probability
    # 4/20 (a share of 10 after task 1, cut to 4 after task 2); the binomial std is ~0.013 at 1,000 draws
    n, draws = 20, 1000
    hits = torch.zeros(n)
    for seed in range(draws):
        g = torch.Generator().manual_seed(seed)
        memory = add_task(None, ids_data(n, 0), 0, split_budget(10, 1), g)
        memory = add_task(memory, ids_data(n, 1), 1, split_budget(8, 2), g)
        hits[memory["x"][memory["task"] == 0].view(-1).long()] += 1
    freq = hits / draws
    assert (freq - 4 / n).abs().max() < 0.06, freq


def test_replayed_samples_train_their_own_heads():
    torch.manual_seed(0)
    scenario = make_scenario(n_tasks=3)
    cls = get_strategy("er")
    s = cls(scenario, cls.Hparams(mem_size=12, batch_mem=5))
    trainer = Trainer(scenario, Protocol(epochs=1))
    for task in range(2):
        s.before_task(task)
        s.train_task(task, trainer)
        s.after_task(task)
    assert torch.bincount(s.memory["task"]).tolist() == [6, 6]
    s.before_task(2)
    s.model.eval()
    x, y, _ = trainer.data(2, "train").batch(torch.arange(7))
    s.before_batch(BatchInfo(0, 0, 1, 0, 7))
    xm, ym, tm = s._replay
    loss, _ = s.loss(x, y, 2)
    per_sample = [F.cross_entropy(s.model(x[i : i + 1], 2), y[i : i + 1]) for i in range(7)]
    per_sample += [F.cross_entropy(s.model(xm[i : i + 1], int(tm[i])), ym[i : i + 1]) for i in range(5)]
    torch.testing.assert_close(loss, torch.stack(per_sample).mean())
    loss.backward()
    for u in set(tm.tolist()) | {2}:  # the replayed tasks' heads get gradients, like the current one
        assert s.model.heads[u].weight.grad.abs().sum() > 0
    # validation (no before_batch) is the plain CE of the task
    val, _ = s.loss(x, y, 2)
    torch.testing.assert_close(val, F.cross_entropy(s.model(x, 2), y))


def test_replay_batches_cover_the_memory_once_per_pass():
    torch.manual_seed(0)
    scenario = make_scenario()
    cls = get_strategy("er")
    s = cls(scenario, cls.Hparams(mem_size=12, batch_mem=4))
    s.before_task(0)
    s.after_task(0)
    s.before_task(1)
    seen = []
    for b in range(3):
        s.before_batch(BatchInfo(0, b, 3, 4 * b, 12))
        seen.append(s._replay[1])
    labels = torch.cat(seen).sort().values
    assert torch.equal(labels, s.memory["y"].sort().values)  # one pass = every stored sample once


class HostSync(AssertionError):
    pass


def no_host_reads(monkeypatch):
    """Make every Python-level read of a tensor's value (what waits for a GPU) an error."""

    def refuse(*args, **kwargs):
        raise HostSync("a tensor's value was read on the host")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "nonzero"):
        monkeypatch.setattr(torch.Tensor, name, refuse)


def test_a_replay_step_reads_no_tensor_value_on_the_host(monkeypatch):
    torch.manual_seed(0)
    scenario = make_scenario(n_tasks=3)
    cls = get_strategy("er")
    s = cls(scenario, cls.Hparams(mem_size=12, batch_mem=5))
    trainer = Trainer(scenario, Protocol(epochs=1))
    for task in range(2):
        s.before_task(task)
        s.train_task(task, trainer)
        s.after_task(task)
    s.before_task(2)
    data = trainer.data(2, "train")
    with monkeypatch.context() as m:
        no_host_reads(m)
        for b in range(4):  # past a reshuffle of the 12-sample memory (batches of 5)
            x, y, _ = data.batch(torch.arange(8 * b, 8 * b + 8))
            s.before_batch(BatchInfo(0, b, 4, 8 * b, 32))
            loss, _ = s.loss(x, y, 2)
            loss.backward()
    with monkeypatch.context() as m:  # the guard itself works
        no_host_reads(m)
        try:
            bool(loss > 0)
        except HostSync:
            pass
        else:
            raise AssertionError("the guard did not catch a host read")
