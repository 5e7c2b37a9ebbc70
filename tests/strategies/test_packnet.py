"""PackNet: the authors' pruning rule (src/prune.py), gradient freezing, per-task weights, zero forgetting."""

import pytest
import torch
from conftest import synthetic, task0_after_each_task

from cl_bench.strategies.packnet import PackNet, isolation_record, prune_owned, task_weight
from cl_bench.trainer import Protocol, Trainer


def packnet(sc, **hp):
    torch.manual_seed(0)
    return PackNet(sc, PackNet.parse_hparams(hp))


def test_pruning_frees_exactly_the_smallest_owned_weights():
    """Independent of prune_owned: sort the owned magnitudes, take the first round(f x n)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(40, 30, generator=g)
    owner = torch.randint(0, 3, (40, 30), generator=g, dtype=torch.int16)  # 0 free, 1 task 0, 2 task 1
    for fraction in (0.5, 0.75, 0.3):
        freed = prune_owned(w, owner, 2, fraction)
        idx = (owner.flatten() == 2).nonzero().flatten()
        n = round(fraction * len(idx))
        smallest = idx[w.flatten()[idx].abs().argsort()[:n]]
        expected = torch.zeros(w.numel(), dtype=torch.bool)
        expected[smallest] = True
        assert torch.equal(freed.flatten(), expected), fraction
        assert not (freed & (owner != 2)).any()  # never another task's weight


def test_pruning_rounds_like_python_and_prunes_ties():
    """k = round(f x n): Python's round (2.5 -> 2); every weight <= the k-th magnitude goes (``le``)."""
    w = torch.tensor([0.1, -0.2, 0.3, 0.4, 0.5])
    own = torch.ones(5, dtype=torch.int16)
    assert prune_owned(w, own, 1, 0.5).tolist() == [True, True, False, False, False]  # round(2.5) = 2
    tied = torch.tensor([0.0, 0.0, 0.0, 0.4, 0.5])  # e.g. weights of always-zero pixels
    assert prune_owned(tied, own, 1, 0.2).tolist() == [True, True, True, False, False]
    assert not prune_owned(w, own, 1, 0.05).any()  # round(0.25) = 0: nothing


def test_task_weight_zeroes_later_and_free_weights():
    w = torch.arange(1.0, 7.0)
    owner = torch.tensor([0, 1, 2, 3, 1, 2], dtype=torch.int16)
    assert task_weight(w, owner, 0).tolist() == [0, 2, 0, 0, 5, 0]
    assert task_weight(w, owner, 1).tolist() == [0, 2, 3, 0, 5, 6]


def test_gradients_of_earlier_tasks_weights_are_zeroed():
    sc = synthetic("mlp", (1, 4, 4), [3, 3], n=8)
    s = packnet(sc)
    for o in s.owners:
        o.copy_(torch.randint(0, 3, o.shape, dtype=torch.int16))
    s.model.train()
    loss, _ = s.loss(torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,)), 1)
    loss.backward()
    s.after_backward(1)
    for m, o in zip(s.model.layers, s.owners):
        assert (m.weight.grad[o != 2] == 0).all() and (m.weight.grad[o == 2] != 0).any()
        assert (m.bias.grad == 0).all()  # biases train with task 0 only (train_biases off)


def run_tasks(sc, n_tasks, epochs=2, **hp):
    s = packnet(sc, **hp)
    trainer = Trainer(sc, Protocol(epochs=epochs), seed=0)
    test = trainer.data(0, "test")
    acc, logits = task0_after_each_task(s, trainer, test, n_tasks)
    return s, trainer, acc, logits


@pytest.mark.parametrize(
    "arch,shape,hp",
    [("mlp", (1, 6, 6), {}), ("mlp", (1, 6, 6), {"train_biases": True, "prune": 0.5}), ("alexnet", (3, 32, 32), {})],
)
def test_zero_forgetting(arch, shape, hp):
    sc = synthetic(arch, shape, [4, 3, 5])
    s, trainer, acc, logits = run_tasks(sc, 3, retrain_epochs=1, **hp)
    assert acc[2] == acc[0]
    assert torch.equal(logits[2], logits[0])
    assert torch.equal(logits[1], logits[0])
    assert len(trainer.history) == 2 + 1 + 2 + 1 + 2  # fit + retrain epochs; the last task is not pruned
    owned = [int(((o > 0) & (o <= 1)).sum()) for o in s.owners]
    assert all(0 < k for k in owned)


def test_pruning_leaves_the_fraction_and_zeros_it():
    sc = synthetic("mlp", (1, 6, 6), [3, 3])
    s, _, _, _ = run_tasks(sc, 2, retrain_epochs=0, prune=0.75, prune_last=True)
    for m, o in zip(s.model.layers, s.owners):
        assert (m.weight[o == 0] == 0).all()  # freed weights are 0
        assert abs(int((o == 1).sum()) / o.numel() - 0.25) < 0.01  # task 0 kept a quarter of the layer
        assert abs(int((o == 2).sum()) / o.numel() - 0.75 * 0.25) < 0.01  # task 1 a quarter of the rest
    rec = s.monitoring()["isolation"]
    assert rec["reuse"][0][1] == 1.0  # task 1 uses every weight of task 0
    assert rec["capacity"][0]["usage"] < rec["capacity"][1]["usage"]


def test_last_task_keeps_its_free_weights_unless_asked():
    sc = synthetic("mlp", (1, 6, 6), [3, 3])
    s, _, _, _ = run_tasks(sc, 2, epochs=1, retrain_epochs=0)
    assert all(int((o == 0).sum()) == 0 for o in s.owners)  # not pruned after the last task


class ScriptedValidation(Trainer):
    """Real training, scripted validation losses."""

    def __init__(self, sc, losses):
        super().__init__(sc, Protocol(epochs=1), seed=0)
        self.losses = list(losses)

    def evaluate(self, strategy, t, data):
        return self.losses.pop(0), 0.5


@pytest.mark.parametrize("losses,restored", [([0.1, 0.5, 0.4], True), ([0.5, 0.1, 0.4], False)])
def test_retraining_starts_from_the_post_prune_model_as_best(losses, restored):
    """The post-prune model is the first candidate: the code saves a retrained one only when better."""
    sc = synthetic("mlp", (1, 6, 6), [3])
    s = packnet(sc, retrain_epochs=2, prune_last=True)
    trainer = ScriptedValidation(sc, [1.0] + losses)
    task = trainer.task(0)
    s.before_task(task)
    trainer.fit(s, 0, task.train, task.valid)
    s.prune(0)
    pruned = {k: v.clone() for k, v in s.model.state_dict().items()}
    s.retrain(task, trainer)
    same = all(torch.equal(v, pruned[k]) for k, v in s.model.state_dict().items())
    assert same == restored
    assert [h.epoch for h in trainer.history] == [1, 2, 3]  # retraining continues the task's numbering


def test_isolation_record_by_hand():
    a = [torch.tensor([True, True, False, False])]
    b = [torch.tensor([False, True, True, False])]
    rec = isolation_record([a, b], [10, 20], ["fc1"])
    assert [c["usage"] for c in rec["capacity"]] == [0.5, 0.75]
    assert rec["reuse"] == [[None, 0.5], [None, None]]
    assert rec["own_share"] == [[0.5], [0.5]]
