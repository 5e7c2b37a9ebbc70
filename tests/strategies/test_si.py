"""SI (strategies/si.py) against computations by hand: the path integral of a quadratic trained by plain
SGD in closed form, the unregularised gradient under the penalty, Eq. 4's penalty."""

import math

import pytest
import torch
from conftest import make_scenario
from torch import nn

from cl_bench.registry import get_strategy
from cl_bench.trainer import Protocol, Trainer


class Vector(nn.Module):
    """A bare parameter vector: its 'loss' is written by the test, its gradient set by hand."""

    def __init__(self, theta0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(theta0, dtype=torch.float64))


def si_on(theta0, c=1.0, xi=1e-3):
    cls = get_strategy("si")
    s = cls(make_scenario(), cls.Hparams(c=c, xi=xi))
    s.model = Vector(theta0)
    return s


def sgd_steps(s, grad_of, lr, n, t):
    """Plain SGD driven through SI's hooks: backward (the gradient given), after_backward, step, after_step."""
    w = s.model.w
    for _ in range(n):
        w.grad = grad_of(w.detach().clone())
        s.after_backward(t)
        with torch.no_grad():
            w -= lr * w.grad
        s.after_step(t)


def test_path_integral_of_a_quadratic_matches_the_closed_form():
    # L = Σ a_k (θ_k − θ*_k)² / 2 by SGD: θ_n − θ* = r^n d0 with r = 1 − η a, so ω = Σ_n η g_n² =
    # η a² d0² (1 − r^{2N}) / (1 − r²) and Δ = (r^N − 1) d0.
    a, target, theta0 = torch.tensor([2.0, 0.5, 1.0]), torch.tensor([1.0, -1.0, 0.0]), [0.0, 1.0, 0.0]
    lr, n, xi = 0.1, 25, 1e-3
    s = si_on(theta0, xi=xi)
    s.before_task(0)
    sgd_steps(s, lambda w: a.double() * (w - target.double()), lr, n, 0)
    s.after_task(0)
    for k in range(3):
        d0 = theta0[k] - target[k].item()
        r = 1 - lr * a[k].item()
        omega = lr * a[k].item() ** 2 * d0**2 * (1 - r ** (2 * n)) / (1 - r**2)
        delta = (r**n - 1) * d0
        assert s.omega["w"][k].item() == pytest.approx(omega, rel=1e-9)
        assert s.big_omega["w"][k].item() == pytest.approx(omega / (delta**2 + xi), rel=1e-9)
    assert s.big_omega["w"][2].item() == 0  # a parameter at its optimum never moves: no importance
    assert torch.equal(s.anchor["w"], s.model.w.detach())


def test_the_path_integral_uses_the_unregularised_gradient_and_sums_over_tasks():
    c, lr, n = 0.7, 0.05, 15
    s = si_on([0.0, 2.0], c=c)
    s.before_task(0)
    sgd_steps(s, lambda w: w - torch.tensor([1.0, 1.0], dtype=torch.float64), lr, n, 0)
    s.after_task(0)
    first, anchor = s.big_omega["w"].clone(), s.anchor["w"].clone()
    # Task 2: backward gives the full loss's gradient, CE part a2 (θ − θ2*) plus the penalty's 2cΩ(θ − θ̃).
    a2, t2 = torch.tensor([3.0, 1.0], dtype=torch.float64), torch.tensor([-1.0, 0.5], dtype=torch.float64)
    s.before_task(1)
    sgd_steps(s, lambda w: a2 * (w - t2) + 2 * c * first * (w - anchor), lr, n, 1)
    # by hand: the same SGD path, ω summing −g_CE · Δθ only
    w, omega = anchor.clone(), torch.zeros(2, dtype=torch.float64)
    for _ in range(n):
        g_ce = a2 * (w - t2)
        step = -lr * (g_ce + 2 * c * first * (w - anchor))
        omega -= g_ce * step
        w = w + step
    torch.testing.assert_close(s.model.w.detach(), w)
    torch.testing.assert_close(s.omega["w"], omega)
    s.after_task(1)
    torch.testing.assert_close(s.big_omega["w"], first + omega / ((w - anchor) ** 2 + s.hp.xi))


def test_penalty_is_eq_4_without_a_half():
    torch.manual_seed(0)
    scenario = make_scenario()
    cls = get_strategy("si")
    s = cls(scenario, cls.Hparams(c=0.3))
    trainer = Trainer(scenario, Protocol(epochs=1))
    s.before_task(0)
    s.train_task(0, trainer)
    s.after_task(0)
    with torch.no_grad():
        for p in s.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x, y, _ = trainer.data(1, "train").batch(torch.arange(8))
    s.model.eval()
    loss, logits = s.loss(x, y, 1)
    by_hand = sum((s.big_omega[n] * (s.anchor[n] - p.detach()) ** 2).sum() for n, p in s.model.named_parameters())
    ce = nn.functional.cross_entropy(logits, y)
    assert (loss - ce).item() == pytest.approx(0.3 * by_hand.item(), rel=1e-3)  # float32 CE cancels digits
    assert by_hand.item() > 0 and math.isfinite(loss.item())


def test_training_accumulates_a_positive_importance_under_the_trainer():
    """Under the real trainer (clipping, restore of the best weights), ω is > 0 in sum (plain SGD lowers the
    loss) and Ω is finite everywhere."""
    torch.manual_seed(0)
    scenario = make_scenario()
    s = get_strategy("si")(scenario)
    Trainer(scenario, Protocol(epochs=2, lr_patience=1)).learn(s)
    total = sum(o.sum().item() for o in s.big_omega.values())
    assert total > 0 and all(torch.isfinite(o).all() for o in s.big_omega.values())
