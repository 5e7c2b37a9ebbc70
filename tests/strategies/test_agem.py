"""A-GEM (strategies/agem.py): the projection of Eq. 11 on hand-made gradient pairs, and in a training
step against a reference gradient computed sample by sample on each sample's own head."""

import torch
import torch.nn.functional as F
from conftest import make_scenario

from cl_bench.registry import get_strategy
from cl_bench.strategies.agem import project
from cl_bench.trainer import Protocol, Trainer


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_a_violating_gradient_is_projected_onto_the_half_space():
    g, g_ref = [t(1.0, 0.0), t(0.0)], [t(-1.0, 1.0), t(0.0)]  # gᵀg_ref = -1, |g_ref|² = 2
    project(g, g_ref)
    torch.testing.assert_close(g[0], t(0.5, 0.5))  # g − (−1/2) g_ref
    assert abs(sum(torch.dot(a, b) for a, b in zip(g, g_ref)).item()) < 1e-12  # on the boundary


def test_the_projection_spans_every_tensor():
    g, g_ref = [t(1.0), t(-2.0)], [t(-1.0), t(1.0)]  # dot −3 across two tensors, |g_ref|² = 2
    project(g, g_ref)
    torch.testing.assert_close(torch.cat(g), t(1.0, -2.0) + 1.5 * t(-1.0, 1.0))


def test_a_gradient_that_agrees_is_left_alone():
    for g_values in ((1.0, 1.0), (0.0, 1.0)):  # positive, then zero dot product
        g, g_ref = [t(*g_values)], [t(1.0, 0.0)]
        before = g[0].clone()
        project(g, g_ref)
        torch.testing.assert_close(g[0], before)


def test_a_zero_reference_gradient_leaves_g_unchanged():
    g = [t(1.0, -1.0)]
    project(g, [t(0.0, 0.0)])
    torch.testing.assert_close(g[0], t(1.0, -1.0))


def test_after_backward_projects_against_the_memory_s_gradient_on_its_own_heads():
    torch.manual_seed(0)
    scenario = make_scenario(n_tasks=3)
    cls = get_strategy("agem")
    s = cls(scenario, cls.Hparams(per_task=10, sample_size=1000))  # the reference batch is the whole memory
    trainer = Trainer(scenario, Protocol(epochs=1))
    for task in range(2):
        s.before_task(task)
        s.train_task(task, trainer)
        s.after_task(task)
    assert s.memory["task"].tolist() == [0] * 10 + [1] * 10
    s.before_task(2)
    s.model.eval()  # no dropout: the test's reference gradient sees the same network
    x, y, _ = trainer.data(2, "train").batch(torch.arange(16))
    params = list(s.model.parameters())
    for p in params:
        p.grad = None
    F.cross_entropy(s.model(x, 2), y).backward()
    g = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]
    # reference gradient by hand: mean over memory samples of the CE of each on its own head
    mem = s.memory
    total = 0
    for i in range(len(mem["y"])):
        u = int(mem["task"][i])
        xi = mem["x"][i : i + 1].float() * mem["scale"][u] + mem["shift"][u]
        total = total + F.cross_entropy(s.model(xi, u), mem["y"][i : i + 1])
    g_ref = torch.autograd.grad(total / len(mem["y"]), params, allow_unused=True)
    g_ref = [torch.zeros_like(p) if r is None else r for p, r in zip(params, g_ref)]
    dot = sum((a * b).sum() for a, b in zip(g, g_ref))
    assert dot < 0  # the tasks disagree: this step violates, so the projection is exercised
    s.after_backward(2)
    projected = [p.grad for p in params]
    expected = [a - min(dot.item(), 0) / sum((b * b).sum() for b in g_ref).item() * b for a, b in zip(g, g_ref)]
    for got, want in zip(projected, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert sum((a * b).sum() for a, b in zip(projected, g_ref)).item() >= -1e-5


def test_a_projected_step_reads_no_tensor_value_on_the_host(monkeypatch):
    from test_er import no_host_reads

    torch.manual_seed(0)
    scenario = make_scenario(n_tasks=2)
    cls = get_strategy("agem")
    s = cls(scenario, cls.Hparams(per_task=10, sample_size=4))
    trainer = Trainer(scenario, Protocol(epochs=1))
    s.before_task(0)
    s.train_task(0, trainer)
    s.after_task(0)
    s.before_task(1)
    x, y, _ = trainer.data(1, "train").batch(torch.arange(8))
    with monkeypatch.context() as m:
        no_host_reads(m)
        for _ in range(4):  # past a reshuffle of the 10-sample memory (batches of 4)
            for p in s.model.parameters():
                p.grad = None
            F.cross_entropy(s.model(x, 1), y).backward()
            s.after_backward(1)
