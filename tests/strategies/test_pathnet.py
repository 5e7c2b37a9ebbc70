"""PathNet: path forward, GA selection and mutation, freezing and re-initialisation, counts, zero forgetting."""

import math

import pytest
import torch
from conftest import synthetic, task0_after_each_task

from cl_bench.nets import Block
from cl_bench.strategies import pathnet as pathnet_module
from cl_bench.strategies.pathnet import PathNet, PathNetwork, mutate, next_generation, random_path
from cl_bench.strategy import TaskData
from cl_bench.trainer import Protocol, Trainer

MIXTURE_HEADS = [10, 100, 10, 10, 10, 43, 100, 10]  # 293 classes; the order does not change the count


def pathnet(sc, **hp):
    torch.manual_seed(0)
    return PathNet(sc, PathNet.parse_hparams(hp))


def test_forward_sums_the_path_modules():
    """A layer's output is the sum of its path's modules (a duplicate counts twice), as the authors' code."""
    torch.manual_seed(0)
    net = PathNetwork([Block("fc", 3)] * 2, [3, 3], (4,), [2, 5], n_modules=4).eval()
    x = torch.randn(6, 4)
    m = net.layers

    def f(layer, h):
        return torch.relu(h @ layer.weight.T + layer.bias)

    h = 2 * f(m[0][1], x) + f(m[0][3], x)
    h = f(m[1][0], h) + f(m[1][2], h) + f(m[1][3], h)
    expected = h @ net.heads[1].weight.T + net.heads[1].bias
    torch.testing.assert_close(net(x, 1, ((1, 3, 1), (0, 2, 3))), expected)


def test_random_path_draws_distinct_modules():
    g = torch.Generator().manual_seed(3)
    for _ in range(50):
        path = random_path(5, 16, 3, g)
        assert path.shape == (5, 3) and all(len(set(row)) == 3 for row in path.tolist())
        assert 0 <= int(path.min()) and int(path.max()) < 16


def test_mutation_exact_under_a_fixed_generator():
    path = torch.tensor([[0, 5, 15], [3, 4, 6], [14, 15, 1]])
    prob, M = 0.4, 16
    out = mutate(path, M, prob, 2, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)  # the documented draw order: uniforms, then steps
    u, d = torch.rand(path.shape, generator=g).tolist(), torch.randint(-2, 3, path.shape, generator=g).tolist()
    expected = [
        [(v + d[i][j]) % M if u[i][j] < prob else v for j, v in enumerate(row)] for i, row in enumerate(path.tolist())
    ]
    assert out.tolist() == expected
    assert out.tolist() != path.tolist()  # this seed does mutate something


def test_mutation_statistics():
    """Each gene mutates with probability 1/(N L) by a uniform step in {-2..2} (0 included) mod M."""
    L, N, M, n = 5, 3, 100, 4000
    g = torch.Generator().manual_seed(0)
    path = torch.full((L, N), 50)
    steps = torch.stack([mutate(path, M, 1 / (N * L), 2, g) for _ in range(n)]) - 50
    changed = (steps != 0).float().mean().item()
    assert abs(changed - (1 / 15) * (4 / 5)) < 0.006  # 60,000 genes: std of the rate ~ 0.001
    counts = torch.stack([(steps == s).sum() for s in (-2, -1, 1, 2)]).float()
    assert set(steps.unique().tolist()) <= {-2, -1, 0, 1, 2}
    assert (counts / counts.sum() - 0.25).abs().max() < 0.04
    wrap = mutate(torch.tensor([[0, 15]]), 16, 1.0, 2, torch.Generator().manual_seed(1))
    assert all(v in (14, 15, 0, 1, 2) for v in wrap[0, :1].tolist())  # modulo M


def test_next_generation_keeps_winner_and_copies_it_into_the_others():
    g = torch.Generator().manual_seed(0)
    paths = [random_path(5, 16, 3, g) for _ in range(4)]
    new = next_generation(paths, 2, 16, 0.0, 2, g)
    assert all(torch.equal(p, paths[2]) for p in new)  # probability 0: exact copies
    new = next_generation(paths, 2, 16, 1.0, 2, g)
    assert torch.equal(new[2], paths[2])
    for i in (0, 1, 3):
        diff = (new[i] - paths[2]) % 16
        assert set(diff.flatten().tolist()) <= {0, 1, 2, 14, 15}  # within +-2 of the winner, mod M


class NamedSplits(TaskData):
    train, valid = "train", "valid"


class ScriptedTrainer(Trainer):
    """Trainer with scripted validation losses (its own epoch bookkeeping inherited); each epoch stamps its
    number into head t's bias."""

    def __init__(self, losses, epochs, lr_patience=5):
        self.protocol = Protocol(epochs=epochs, lr_patience=lr_patience)
        self.losses, self.history, self.splits, self.calls = list(losses), [], [], []
        self.listeners = []

    def task(self, t):  # the splits by name: which one each step reads
        return NamedSplits(t, 1, self.protocol, None)

    def train_epoch(self, strategy, t, data, lr, epoch=0):
        self.splits.append(data)
        self.calls.append((strategy.paths[t], lr))
        with torch.no_grad():
            strategy.model.heads[t].bias[0] = len(self.calls)
        return 1.0

    def evaluate(self, strategy, t, data):
        self.splits.append(data)
        assert data == "valid"
        return self.losses.pop(0), 0.5


def test_ga_winner_is_the_lowest_validation_loss():
    sc = synthetic("mlp", (1, 4, 4), [3], n=1)
    strategy = pathnet(sc, generations=3, width_factor=0.01)
    # 1 epoch per path per generation: gen 1 paths (0, 1), gen 2 (0, 1), gen 3 (0, 1).
    trainer = ScriptedTrainer([1.0, 0.5, 0.3, 0.4, 0.6, 0.45], epochs=3)
    strategy.train_task(0, trainer)
    paths = [p for p, _ in trainer.calls]
    assert [g["winner"] for g in strategy.ga_log[0]] == [1, 0, 0]
    assert strategy.best_paths[0] == paths[2]  # the path of the epoch with loss 0.3
    assert strategy.model.heads[0].bias[0].item() == 3  # and the model stored at that epoch
    assert paths[3] == paths[1]  # gen 2: the winner of gen 1 survives as path 1 ...
    assert all(
        (a - b) % 16 in (0, 1, 2, 14, 15)  # ... and path 0 is a mutated copy of it
        for ra, rb in zip(paths[2], paths[1])
        for a, b in zip(ra, rb)
    )
    assert paths[4] == paths[2]  # gen 3: the winner of gen 2 is path 0
    assert set(trainer.splits) == {"train", "valid"}  # never the test split
    assert [h.valid_loss for h in trainer.history] == [1.0, 0.5, 0.3, 0.4, 0.6, 0.45]


def test_ga_mutates_with_probability_one_over_n_l(monkeypatch):
    """The authors' mutation rate 1/(N L), here N = 2 modules per layer of a path and L = 3 layers."""
    sc = synthetic("mlp", (1, 4, 4), [3], n=1)
    strategy = pathnet(sc, generations=2, width_factor=0.01, active=2, modules=6)
    assert strategy.mutation_probability == 1 / (2 * 3)
    seen, original = [], pathnet_module.next_generation

    def spy(paths, winner, n_modules, probability, step, generator):
        seen.append((n_modules, probability, step))
        return original(paths, winner, n_modules, probability, step, generator)

    monkeypatch.setattr(pathnet_module, "next_generation", spy)
    strategy.train_task(0, ScriptedTrainer([1.0, 0.9, 0.8, 0.7], epochs=2))
    assert seen == [(6, 1 / 6, 2)] * 2


def reference_ga_lrs(losses, population, generations, epochs_per_path, lr=0.05, factor=3.0, patience=5, lr_min=1e-4):
    """The lr each epoch trains at in the reference's GA loop, transcribed from its code (approach
    ``pathnet.train``): per generation and path, an optimiser built at ``lr[p]``; within the path's
    epochs the schedule may decay ``lr[p]`` (and stop the path below lr_min) but the optimiser keeps
    its lr; after the generation every non-winner takes the winner's lr, full patience, best inf."""
    losses = list(losses)
    lrs, pat, best = [lr] * population, [patience] * population, [float("inf")] * population
    best_overall, winner, trained = float("inf"), 0, []
    for _ in range(generations):
        if max(lrs) < lr_min:
            break
        for p in range(population):
            if lrs[p] < lr_min:
                continue
            optimiser_lr = lrs[p]
            for _ in range(epochs_per_path):
                trained.append(optimiser_lr)
                valid_loss = losses.pop(0)
                if valid_loss < best_overall:
                    best_overall, winner = valid_loss, p
                if valid_loss < best[p]:
                    best[p], pat[p] = valid_loss, patience
                else:
                    pat[p] -= 1
                    if pat[p] <= 0:
                        lrs[p] /= factor
                        if lrs[p] < lr_min:
                            break
                        pat[p] = patience
        for p in range(population):
            if p != winner:
                best[p], lrs[p], pat[p] = float("inf"), lrs[winner], patience
    return trained


SCRIPTED_LOSSES = [1.0, 0.99, 0.5, 0.6, 0.7, 0.8, 0.9, 1.1, 1.2, 1.3, 1.4, 1.5]


@pytest.mark.parametrize(
    "losses, generations, patience",
    [
        (SCRIPTED_LOSSES[:8], 2, 1),
        (SCRIPTED_LOSSES, 3, 1),
        ([1.0, 0.9, 0.95, 0.97, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9, 0.91], 3, 2),
    ],
)
def test_ga_lr_sequence_is_the_reference_s(losses, generations, patience):
    """A decay decided inside a generation applies from the path's next generation, as in the reference."""
    sc = synthetic("mlp", (1, 4, 4), [3], n=1)
    strategy = pathnet(sc, generations=generations, width_factor=0.01)
    trainer = ScriptedTrainer(losses, epochs=2 * generations, lr_patience=patience)
    strategy.train_task(0, trainer)
    expected = reference_ga_lrs(losses, 2, generations, 2, patience=patience)
    assert [lr for _, lr in trainer.calls] == pytest.approx(expected)


def test_ga_per_path_lr_and_inheritance():
    sc = synthetic("mlp", (1, 4, 4), [3], n=1)
    strategy = pathnet(sc, generations=2, width_factor=0.01, immediate_lr_decay=True)
    # The immediate form. 2 epochs per path per generation, patience 1. Gen 1: path 0 improves (keeps lr
    # 0.05); path 1 wins with 0.5 then fails to improve (lr -> 0.05/3). Gen 2: path 0, the winner's
    # mutated copy, inherits its lr (not 0.05) and a fresh best loss; path 1 keeps its best 0.5, so 0.9
    # decays its lr again, from the next epoch on (the reference: from the next generation).
    trainer = ScriptedTrainer([1.0, 0.99, 0.5, 0.6, 0.7, 0.8, 0.9, 1.1], epochs=4, lr_patience=1)
    strategy.train_task(0, trainer)
    lrs = [lr for _, lr in trainer.calls]
    assert lrs[:4] == [0.05, 0.05, 0.05, 0.05]
    assert lrs[4:] == pytest.approx([0.05 / 3, 0.05 / 3, 0.05 / 3, 0.05 / 9])
    assert strategy.model.heads[0].bias[0].item() == 3


def test_fewer_epochs_than_generations_runs_one_epoch_generations():
    """The reference would train 0 epochs (epochs // G = 0); here: `epochs` generations of 1 epoch."""
    sc = synthetic("mlp", (1, 4, 4), [3], n=1)
    strategy = pathnet(sc, width_factor=0.01)  # G = 20
    trainer = ScriptedTrainer([1.0 - i / 100 for i in range(6)], epochs=3)
    with pytest.warns(UserWarning, match="3 // 20 = 0"):
        strategy.train_task(0, trainer)
    assert len(strategy.ga_log[0]) == 3 and len(trainer.history) == 3 * 2


def test_earlier_best_paths_frozen_others_reinitialised():
    sc = synthetic("mlp", (1, 8, 8), [3, 3, 3])
    strategy = pathnet(sc, generations=2, width_factor=0.05, modules=6)
    trainer = Trainer(sc, Protocol(epochs=2), seed=0)
    for t in range(2):
        strategy.before_task(t)
        strategy.train_task(t, trainer)
    layers = strategy.model.layers
    kept = [set(strategy.best_paths[0][l]) | set(strategy.best_paths[1][l]) for l in range(3)]
    trained = {(l, k): [p.detach().clone() for p in layers[l][k].parameters()] for l in range(3) for k in range(6)}
    heads = [p.detach().clone() for h in strategy.model.heads[:2] for p in h.parameters()]
    strategy.before_task(2)
    for l in range(3):
        for k in range(6):
            now = list(layers[l][k].parameters())
            if k in kept[l]:
                assert all(torch.equal(a, b) for a, b in zip(now, trained[l, k]))
            else:
                init = strategy.initial_state[l][k]
                assert torch.equal(now[0], init["weight"]) and torch.equal(now[1], init["bias"])
    strategy.use_path(2, torch.tensor([[k for k in range(3)]] * 3))
    trainable = {id(p) for p in strategy.trainable_parameters(2)}
    for l in range(3):
        for k in range(3):
            assert all((id(p) in trainable) == (k not in kept[l]) for p in layers[l][k].parameters())
    strategy.train_task(2, trainer)
    for (l, k), before in trained.items():
        if k in kept[l]:
            assert all(torch.equal(a, b) for a, b in zip(layers[l][k].parameters(), before)), (l, k)
    assert all(torch.equal(a, b) for a, b in zip([p for h in strategy.model.heads[:2] for p in h.parameters()], heads))


def test_parameter_counts():
    mixture = pathnet(synthetic("alexnet", (3, 32, 32), MIXTURE_HEADS, n=1))
    assert mixture.widths == [16, 33, 66, 528, 528]  # the authors' widths
    assert mixture.monitoring()["parameters"] == 7_092_261  # the authors' count
    for shape, heads, base in [((1, 28, 28), [5, 5], 1_917_610), ((784,), [10] * 10, 1_989_700)]:
        m = pathnet(synthetic("mlp", shape, heads, n=1)).monitoring()
        assert m["base_parameters"] == base  # the 3x800 MLP
        assert abs(m["parameters"] - base) / base < 0.01, m


@pytest.mark.parametrize("arch,width", [("mlp", 0.05), ("alexnet", 0.1)])
def test_zero_forgetting(arch, width):
    sc = synthetic(arch, (3, 32, 32), [4, 3, 5])
    strategy = pathnet(sc, generations=2, width_factor=width)
    trainer = Trainer(sc, Protocol(epochs=2), seed=0)
    test = trainer.data(0, "test")
    acc, logits = task0_after_each_task(strategy, trainer, test, 3)
    assert acc[2] == acc[0]
    assert torch.equal(logits[2], logits[0])
    assert len(trainer.history) == 3 * 2 * 2 * 1  # tasks x generations x paths x epochs // G


def test_ga_is_seeded():
    sc = synthetic("mlp", (1, 8, 8), [3])
    runs = []
    for _ in range(2):
        strategy = pathnet(sc, generations=2, width_factor=0.05)
        torch.manual_seed(1)  # the trainer's own batch order is seeded separately
        strategy.train_task(0, Trainer(sc, Protocol(epochs=2), seed=0))
        runs.append((strategy.best_paths[0], strategy.ga_log[0][-1]["best_valid_loss"]))
    assert runs[0] == runs[1] and not math.isinf(runs[0][1])
