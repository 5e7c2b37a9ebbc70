"""IMM-mode's L2 transfer toward the previous task's weights (in the default, faithful mode the only
thing IMM-mode adds to SGD), pinned against a plain computation: the value λ Σ (θ − θ_prev)² / 2 and
its gradient λ (θ − θ_prev), with θ_prev the weights the model had when the task ended."""

import pytest
import torch
import torch.nn.functional as F
from conftest import make_scenario
from torch import nn

from cl_bench import nets
from cl_bench.registry import get_strategy
from cl_bench.scenario import Data
from cl_bench.trainer import Protocol, Trainer

LAMB = 0.7  # large enough that a factor 2 on the term moves the loss far beyond the tolerance


def strategy_after_training(lamb=LAMB):
    scenario = make_scenario(n_tasks=2)
    cls = get_strategy("imm_mode")
    torch.manual_seed(0)
    strategy = cls(scenario, cls.parse_hparams({"lamb": lamb}))
    if isinstance(strategy.model, nets.MLP):  # a small net of the same kind: seconds, not minutes
        n_in, heads = strategy.model.layers[0].in_features, [h.out_features for h in strategy.model.heads]
        strategy.model = type(strategy.model)(n_in, [16, 16], heads)
    Trainer(scenario, Protocol(epochs=1), seed=0).learn(strategy)
    return scenario, strategy


def plain_loss(model, previous, x, y, t, lamb):
    ce = F.cross_entropy(model(x, t), y)
    l2 = torch.zeros(())
    for name, p in model.named_parameters():
        l2 = l2 + ((p - previous[name]) ** 2).sum()
    return ce, ce + lamb * l2 / 2


@pytest.mark.parametrize("lamb", [LAMB, 0.0])
def test_the_transfer_term_is_half_lambda_times_the_squared_distance_to_the_previous_weights(lamb):
    scenario, strategy = strategy_after_training(lamb)
    model = strategy.model
    snapshot = {n: p.detach().clone() for n, p in model.named_parameters()}  # the weights at the task's end
    for name, p in model.named_parameters():
        assert torch.equal(strategy.previous[name], p.detach()), name
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # away from the anchor, so the term is not zero
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    data = Data.of(scenario.tasks[1], "train", 1)
    x, y = data.batch(torch.arange(len(data)))[:2]

    model.zero_grad()
    loss, _ = strategy.loss(x, y, 1)
    loss.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    ce, expected = plain_loss(model, snapshot, x, y, 1, lamb)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    distance = sum(((p.detach() - snapshot[n]) ** 2).sum().item() for n, p in model.named_parameters())
    assert (loss - ce).item() == pytest.approx(lamb * distance / 2, rel=1e-5, abs=1e-9)
    ce.backward()
    for name, p in model.named_parameters():  # the term's gradient, written out: λ (θ − θ_prev)
        grad_ce = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(got[name], grad_ce + lamb * (p.detach() - snapshot[name]), rtol=1e-5, atol=1e-7)
