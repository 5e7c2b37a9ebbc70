"""The empirical Fisher's two paths agree: the per-batch loop used on the CPU draws exactly the dropout
masks of the vmap path (the random stream after it is the same) and gives its value; a model with a
module the loop does not know takes the vmap path."""

import pytest
import torch
from torch import nn

import cl_bench.strategies.shared as shared
from cl_bench import nets
from cl_bench.scenario import Data


def fisher(model, data, vmap_only, monkeypatch, batch=20):
    with monkeypatch.context() as m:
        if vmap_only:
            m.setattr(shared, "_dropout_calls", lambda *a: None)
        torch.manual_seed(5)
        f = shared.empirical_fisher(model, shared.cross_entropy_of(model, 1), data, batch)
        return f, torch.rand(4)  # the random stream after it


@pytest.mark.parametrize("kind", ["mlp", "alexnet"])
@pytest.mark.parametrize("n, batch", [(130, 20), (47, 20), (60, 1)])
def test_the_loop_draws_vmaps_dropout_masks_and_gives_its_fisher(kind, n, batch, monkeypatch):
    torch.manual_seed(0)
    if kind == "mlp":
        model = nets.MLP(784, [32, 32, 32], [3, 5])  # dropout 0.5 after every hidden layer
        x = torch.randint(0, 256, (n, 784), dtype=torch.uint8)
    else:
        model = nets.AlexNet((3, 32, 32), [3, 5], width=0.125)  # dropout 0.2 and 0.5, conv and fc
        x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    data = Data(x, torch.randint(0, 5, (n,)), 1, torch.tensor(1 / 255.0), torch.tensor(-0.5))
    model.eval()
    assert shared._dropout_calls(model, data, batch) is not None  # the loop is taken
    loop, after_loop = fisher(model, data, False, monkeypatch, batch)
    vm, after_vmap = fisher(model, data, True, monkeypatch, batch)
    assert not model.training  # the mode is restored
    assert torch.equal(after_loop, after_vmap)
    for name in vm:
        torch.testing.assert_close(loop[name], vm[name], rtol=1e-5, atol=1e-9, msg=name)
    assert any(v.abs().sum() > 0 for v in loop.values())


def test_dropout_changes_the_fisher_so_the_masks_are_really_compared(monkeypatch):
    torch.manual_seed(0)
    model = nets.MLP(784, [32, 32], [3, 5])
    data = Data(torch.randint(0, 256, (80, 784), dtype=torch.uint8), torch.randint(0, 5, (80,)), 0, 1 / 255.0, 0.0)
    a, _ = fisher(model, data, False, monkeypatch)
    with monkeypatch.context() as m:
        torch.manual_seed(6)  # other masks: another Fisher
        m.setattr(torch, "manual_seed", lambda s: None)
        b, _ = fisher(model, data, False, monkeypatch)
    assert any(not torch.allclose(a[k], b[k]) for k in a)


def test_a_model_with_another_module_takes_the_vmap_path():
    model = nn.Sequential(nn.Linear(4, 3), nn.GELU())
    data = Data(torch.zeros(20, 4), torch.zeros(20, dtype=torch.long), 0, 1.0, 0.0)
    assert shared._dropout_calls(model, data, 20) is None
