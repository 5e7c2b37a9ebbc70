"""MAS (strategies/mas.py) against the analytic gradient of the squared output norm of a linear model."""

import pytest
import torch
from conftest import make_scenario
from torch import nn

from cl_bench.registry import get_strategy
from cl_bench.scenario import Data
from cl_bench.trainer import Protocol, Trainer


class LinearHeads(nn.Module):
    """F_t(x) = W_t x + b_t on the flattened input: ‖F‖² has gradient 2 F xᵀ (W) and 2 F (b)."""

    def __init__(self, d, k, n_tasks):
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(d, k) for _ in range(n_tasks))

    def forward(self, x, t):
        return self.heads[t](x.flatten(1))


def analytic_importance(model, x, t):
    """(1/N) Σ_k |2 F(x_k) x_kᵀ| and (1/N) Σ_k |2 F(x_k)| for head t, sample by sample."""
    head = model.heads[t]
    w, b = torch.zeros_like(head.weight), torch.zeros_like(head.bias)
    for xk in x.flatten(1):
        f = head.weight.detach() @ xk + head.bias.detach()
        w += (2 * torch.outer(f, xk)).abs()
        b += (2 * f).abs()
    return w / len(x), b / len(x)


def data_of(x, t):
    return Data(x, torch.zeros(len(x), dtype=torch.long), t, torch.ones(1), torch.zeros(1))


@pytest.mark.parametrize("shortcut", [True, False])
def test_importance_is_the_mean_absolute_gradient_of_the_squared_output_norm(shortcut):
    from cl_bench.strategies.mas import output_sensitivity

    torch.manual_seed(0)
    model = LinearHeads(5, 3, 2)
    x = torch.randn(37, 1, 5)  # per-sample |g| differs from |mean g| when signs differ across samples
    omega = output_sensitivity(model, data_of(x, 1), 1, shortcut=shortcut)
    w, b = analytic_importance(model, x, 1)
    torch.testing.assert_close(omega["heads.1.weight"], w)
    torch.testing.assert_close(omega["heads.1.bias"], b)
    assert torch.count_nonzero(omega["heads.0.weight"]) == 0  # only the task's own head's output counts
    batch_mean = (2 * (model.heads[1](x.flatten(1)).T @ x.flatten(1)) / len(x)).abs()
    assert not torch.allclose(omega["heads.1.weight"], batch_mean)  # Eq. 2's per-sample mean, not |batch mean|


def test_importances_are_summed_over_tasks_and_the_penalty_is_eq_3():
    torch.manual_seed(0)
    scenario = make_scenario(n_tasks=3)
    cls = get_strategy("mas")
    s = cls(scenario, cls.Hparams(lamb=0.4))
    trainer = Trainer(scenario, Protocol(epochs=1))
    from cl_bench.strategies.mas import output_sensitivity

    totals = None
    for t in range(2):
        s.before_task(t)
        s.train_task(t, trainer)
        new = output_sensitivity(s.model, trainer.data(t, "train"), t)
        s.after_task(t)
        totals = new if totals is None else {n: totals[n] + new[n] for n in new}
    for name, value in totals.items():
        torch.testing.assert_close(s.importance[name], value)
    with torch.no_grad():
        for p in s.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    s.model.eval()
    x, y, _ = trainer.data(2, "train").batch(torch.arange(8))
    loss, logits = s.loss(x, y, 2)
    by_hand = sum((s.importance[n] * (p.detach() - s.anchor[n]) ** 2).sum() for n, p in s.model.named_parameters())
    ce = nn.functional.cross_entropy(logits, y)
    assert (loss - ce).item() == pytest.approx(0.4 * by_hand.item(), rel=1e-3)  # float32 CE cancels digits


def test_importance_is_measured_in_eval_mode_and_leaves_the_mode_as_it_was():
    from cl_bench.strategies.mas import output_sensitivity

    torch.manual_seed(0)
    scenario = make_scenario()
    s = get_strategy("mas")(scenario)
    data = Trainer(scenario).data(0, "train")
    s.model.train()
    first = output_sensitivity(s.model, data, 0)
    second = output_sensitivity(s.model, data, 0)
    assert s.model.training
    for name in first:  # dropout would make two measurements differ
        torch.testing.assert_close(first[name], second[name])


@pytest.mark.parametrize("arch,shape", [("mlp", (1, 6, 6)), ("alexnet", (3, 32, 32))])
def test_the_linear_shortcut_equals_per_sample_gradients_on_the_real_networks(arch, shape):
    """Linear layers by |Δ|ᵀ|A|, the rest (AlexNet's convolutions) by per-sample gradients: the same Ω as
    per-sample gradients everywhere, on cl-bench's networks (dropout, ReLU, max-pooling between layers)."""
    from conftest import synthetic

    from cl_bench.strategies.mas import output_sensitivity

    torch.manual_seed(0)
    scenario = synthetic(arch, shape, [3, 4], n=12)
    s = get_strategy("mas")(scenario)
    data = Trainer(scenario).data(1, "train")
    fast, slow = output_sensitivity(s.model, data, 1), output_sensitivity(s.model, data, 1, shortcut=False)
    assert set(fast) == set(slow)
    for name in slow:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-4, atol=1e-7)
    assert any(slow[n].abs().sum() > 0 for n in slow if "heads" not in n)  # the body is reached
