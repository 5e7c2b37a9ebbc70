"""The two references of Eq. 6: Random (A_R) and Joint (A_J)."""

import pytest
import torch
import torch.nn.functional as F

from cl_bench.scenario import Data, Scenario, Split, Task
from cl_bench.strategies.joint import Joint
from cl_bench.strategies.random import Random
from cl_bench.trainer import Protocol, Trainer


def _labels(probs, n, g):
    return torch.multinomial(torch.tensor(probs), n, replacement=True, generator=g)


def test_random_accuracy_is_sum_of_train_times_test_class_probabilities():
    g = torch.Generator().manual_seed(0)
    p_train, p_test, n_test = [0.7, 0.2, 0.1], [0.5, 0.3, 0.2], 40000
    y_train, y_test = _labels(p_train, 20000, g), _labels(p_test, n_test, g)
    x = lambda n: torch.zeros((n, 4), dtype=torch.uint8)  # noqa: E731
    task = Task(
        "t", 3, Split(x(len(y_train)), y_train), Split(x(10), y_train[:10]), Split(x(n_test), y_test), (0.0,), (1.0,)
    )
    scenario = Scenario("imbalanced", [task], (4,), "mlp", 0)
    torch.manual_seed(0)
    strategy = Random(scenario)
    trainer = Trainer(scenario, Protocol())
    strategy.train_task(0, trainer)
    acc = trainer.test_accuracy(strategy, 0)
    # expected with the empirical class frequencies of both splits
    emp_train = torch.bincount(y_train, minlength=3).double() / len(y_train)
    emp_test = torch.bincount(y_test, minlength=3).double() / n_test
    expected = float((emp_train * emp_test).sum())  # ~0.43
    sigma = (expected * (1 - expected) / n_test) ** 0.5
    assert abs(acc - expected) < 4 * sigma
    assert abs(acc - 1 / 3) > 10 * sigma  # not a uniform guesser


def test_random_predictions_follow_training_label_counts_exactly_per_block():
    y_train = torch.tensor([0, 0, 0, 1, 2])
    task = Task(
        "t",
        3,
        Split(torch.zeros(5, 1, dtype=torch.uint8), y_train),
        Split(torch.zeros(5, 1, dtype=torch.uint8), y_train),
        Split(torch.zeros(10, 1, dtype=torch.uint8), torch.zeros(10, dtype=torch.long)),
        (0.0,),
        (1.0,),
    )
    strategy = Random(Scenario("s", [task], (1,), "mlp", 0))
    strategy.train_labels[0] = y_train
    pred = strategy.predict(torch.zeros(10, 1), 0)  # two full shuffled copies of the training labels
    assert torch.bincount(pred, minlength=3).tolist() == [6, 2, 2]


@pytest.mark.parametrize("label,expected", [(0, 0.6), (1, 0.2), (2, 0.2)])
def test_random_accuracy_on_a_one_class_test_set_is_exactly_that_class_training_share(label, expected):
    """Training labels 0, 0, 0, 1, 2 and a test set of 10 samples of one class: the predictions are two
    shuffled copies of the training labels, so exactly 6 (class 0) or 2 (class 1 or 2) hits, whatever the draw."""
    y_train = torch.tensor([0, 0, 0, 1, 2])
    zeros = torch.zeros(5, 1, dtype=torch.uint8)
    test = Split(torch.zeros(10, 1, dtype=torch.uint8), torch.full((10,), label))
    scenario = Scenario(
        "s", [Task("t", 3, Split(zeros, y_train), Split(zeros, y_train), test, (0.0,), (1.0,))], (1,), "mlp", 0
    )
    for seed in range(3):
        torch.manual_seed(seed)
        strategy = Random(scenario)
        trainer = Trainer(scenario, Protocol())
        strategy.train_task(0, trainer)  # reads the task's training labels
        assert trainer.test_accuracy(strategy, 0) == expected


def test_random_predictions_are_a_uniform_arrangement_of_the_drawn_labels():
    """Training labels 0, 1 and 4 test samples: the draw is two copies of the labels, then shuffled again
    (the authors' second shuffle), so each of the 6 orders of 0, 0, 1, 1 is equally likely; without the
    second shuffle 0, 0, 1, 1 and 1, 1, 0, 0 could never be drawn."""
    y_train = torch.tensor([0, 1])
    two = Split(torch.zeros(2, 1, dtype=torch.uint8), y_train)
    test = Split(torch.zeros(4, 1, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    torch.manual_seed(0)
    strategy = Random(Scenario("s", [Task("t", 2, two, two, test, (0.0,), (1.0,))], (1,), "mlp", 0))
    strategy.train_labels[0] = y_train
    n = 600
    orders = [tuple(strategy.predict(torch.zeros(4, 1), 0).tolist()) for _ in range(n)]
    assert all(sorted(o) == [0, 0, 1, 1] for o in orders)
    counts = {o: orders.count(o) / n for o in set(orders)}
    assert len(counts) == 6 and all(abs(c - 1 / 6) < 0.065 for c in counts.values())  # 4 standard deviations


def test_random_partial_copy_is_a_random_subset_of_the_training_labels():
    """3 predictions from training labels 0, 0, 0, 1, 2 (stored in that order): the authors shuffle the labels
    before each copy, so the number of 0s drawn is hypergeometric, 1, 2 or 3 with probabilities 0.3, 0.6,
    0.1 (mean 1.8), not the first three labels every time."""
    y_train = torch.tensor([0, 0, 0, 1, 2])
    five = Split(torch.zeros(5, 1, dtype=torch.uint8), y_train)
    torch.manual_seed(0)
    strategy = Random(Scenario("s", [Task("t", 3, five, five, five, (0.0,), (1.0,))], (1,), "mlp", 0))
    strategy.train_labels[0] = y_train
    n = 1000
    zeros = torch.tensor([int((strategy.predict(torch.zeros(3, 1), 0) == 0).sum()) for _ in range(n)])
    freq = torch.bincount(zeros, minlength=4).double() / n
    assert freq[0] == 0 and freq[1:].tolist() == pytest.approx([0.3, 0.6, 0.1], abs=0.06)  # 4 standard deviations
    assert zeros.double().mean().item() == pytest.approx(1.8, abs=0.08)


def test_joint_mixed_batch_loss_is_per_sample_ce_with_own_head(tiny_scenario):
    scenario = tiny_scenario(n_tasks=3, n_classes=3)
    scenario.tasks[1].n_classes = 3
    torch.manual_seed(0)
    joint = Joint(scenario)
    joint.model.eval()  # no dropout: compare deterministic forwards
    data = Data.union(scenario.tasks, "train", [0, 1, 2])
    idx = torch.randperm(len(data))[:64]
    x, y, t = data.batch(idx)
    loss, logits = joint.loss(x, y, t)
    manual = torch.stack([F.cross_entropy(joint.model(x[i : i + 1], int(t[i])), y[i : i + 1]) for i in range(64)])
    assert loss.item() == pytest.approx(manual.mean().item(), rel=1e-5)
    preds = torch.stack([joint.model(x[i : i + 1], int(t[i])).argmax() for i in range(64)])
    assert torch.equal(logits.argmax(1), preds)


def test_union_normalises_each_sample_with_its_own_task():
    def task(v, mean):
        s = Split(torch.full((4, 1), v, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
        return Task("t", 1, s, s, s, (mean,), (0.5,))

    data = Data.union([task(255, 0.0), task(0, 0.5)], "train", [0, 1])
    x, _, t = data.batch(torch.arange(8))
    assert torch.allclose(x[t == 0], torch.tensor(2.0))  # (1 - 0) / 0.5
    assert torch.allclose(x[t == 1], torch.tensor(-1.0))  # (0 - 0.5) / 0.5


def test_joint_restarts_from_initial_weights_for_every_task(tiny_scenario):
    scenario = tiny_scenario(n_tasks=2)
    torch.manual_seed(0)
    joint = Joint(scenario)
    initial = {k: v.clone() for k, v in joint.model.state_dict().items()}
    seen, data = [], []

    class Recorder(Trainer):
        def fit(self, strategy, t, train, valid):
            seen.append((t, len(train), {k: v.clone() for k, v in strategy.model.state_dict().items()}))
            data.append((train, valid))
            with torch.no_grad():
                for p in strategy.model.parameters():
                    p.add_(1.0)

    trainer = Recorder(scenario, Protocol())
    for t in range(2):
        joint.train_task(t, trainer)
    n0 = len(scenario.tasks[0].train)
    assert [(t, n) for t, n, _ in seen] == [(0, n0), (1, n0 + len(scenario.tasks[1].train))]
    for _, _, state in seen:
        assert all(torch.equal(state[k], initial[k]) for k in initial)
    # what it trains and validates on is the union of tasks 0..t, each sample normalised as its own task's
    for t, (train, valid) in enumerate(data):
        for split, got in (("train", train), ("valid", valid)):
            parts = [Data.of(scenario.tasks[u], split, u) for u in range(t + 1)]
            x, y, ids = got.batch(torch.arange(len(got)))
            assert torch.equal(y, torch.cat([p.y for p in parts]))
            assert ids.tolist() == [u for u, p in enumerate(parts) for _ in range(len(p))]
            assert torch.equal(x, torch.cat([p.batch(torch.arange(len(p)))[0] for p in parts]))
