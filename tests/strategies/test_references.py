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
    task = Task("t", 3, Split(x(len(y_train)), y_train), Split(x(10), y_train[:10]),
                Split(x(n_test), y_test), (0.0,), (1.0,))
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
    task = Task("t", 3, Split(torch.zeros(5, 1, dtype=torch.uint8), y_train),
                Split(torch.zeros(5, 1, dtype=torch.uint8), y_train),
                Split(torch.zeros(10, 1, dtype=torch.uint8), torch.zeros(10, dtype=torch.long)), (0.,), (1.,))
    strategy = Random(Scenario("s", [task], (1,), "mlp", 0))
    strategy.train_labels[0] = y_train
    pred = strategy.predict(torch.zeros(10, 1), 0)  # two full shuffled copies of the training labels
    assert torch.bincount(pred, minlength=3).tolist() == [6, 2, 2]


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
    manual = torch.stack([F.cross_entropy(joint.model(x[i:i + 1], int(t[i])), y[i:i + 1]) for i in range(64)])
    assert loss.item() == pytest.approx(manual.mean().item(), rel=1e-5)
    preds = torch.stack([joint.model(x[i:i + 1], int(t[i])).argmax() for i in range(64)])
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
    seen = []

    class Recorder(Trainer):
        def fit(self, strategy, t, train, valid):
            seen.append((t, len(train), {k: v.clone() for k, v in strategy.model.state_dict().items()}))
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
