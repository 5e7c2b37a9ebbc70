"""The optimised paths of the hot loop give the results of the plain ones (issue 10).

Each test runs the fast path and a plain PyTorch computation of the same thing side by side: the
trainer's clip-and-step against ``clip_grad_norm_`` + ``torch.optim.SGD``, the EWC/IMM penalty
against autograd on the written-out formula, channels_last against the default memory format,
the run id against the hash of the configuration without the settings added later. No timing.
"""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from conftest import make_scenario, synthetic

from cl_bench import nets
from cl_bench.registry import get_strategy
from cl_bench.runner import RunConfig
from cl_bench.store import config_hash
from cl_bench.strategies.shared import QuadraticPenalty
from cl_bench.trainer import Protocol, Trainer, clip_and_step, resolve_device


def _plain_step(net, lr, clip):
    params = [p for p in net.parameters() if p.grad is not None]
    torch.nn.utils.clip_grad_norm_(params, clip)
    torch.optim.SGD(params, lr=lr).step()


def _grads_from(net, x, y, scale=1.0):
    net.zero_grad(set_to_none=True)
    (scale * F.cross_entropy(net(x, 0), y)).backward()


@pytest.mark.parametrize("arch,shape", [("mlp", (1, 6, 6)), ("alexnet", (3, 32, 32))])
def test_clip_and_step_is_bit_identical_to_torch_when_not_clipping(arch, shape):
    torch.manual_seed(0)
    sc = synthetic(arch, shape, [5], n=16)
    fast = nets.build_network(sc).eval()  # eval: no dropout, so both nets see the same function
    plain = copy.deepcopy(fast)
    x, y = torch.randn(16, *shape), torch.randint(0, 5, (16,))
    for _ in range(3):
        _grads_from(fast, x, y)
        _grads_from(plain, x, y)
        clip_and_step(list(fast.parameters()), 0.05, 10000.0)
        _plain_step(plain, 0.05, 10000.0)
    for a, b in zip(fast.parameters(), plain.parameters()):
        assert torch.equal(a, b)


def test_clip_and_step_clips_like_torch():
    torch.manual_seed(0)
    sc = synthetic("mlp", (1, 6, 6), [5], n=16)
    fast = nets.build_network(sc).eval()
    plain = copy.deepcopy(fast)
    x, y = torch.randn(16, 1, 6, 6), torch.randint(0, 5, (16,))
    _grads_from(fast, x, y, scale=1000.0)
    _grads_from(plain, x, y, scale=1000.0)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in plain.parameters()]))
    assert norm > 1.0  # so a threshold of 1 clips
    before = [p.detach().clone() for p in fast.parameters()]
    clip_and_step(list(fast.parameters()), 0.05, 1.0)
    _plain_step(plain, 0.05, 1.0)
    step = torch.linalg.vector_norm(torch.stack([(p - b).norm() for p, b in zip(fast.parameters(), before)]))
    assert step.item() == pytest.approx(0.05, rel=1e-4)  # the clipped gradient has norm 1
    for a, b in zip(fast.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_clip_and_step_skips_parameters_without_gradient():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    a.grad = torch.full((3,), 2.0)
    clip_and_step([a, b], 0.5, 100.0)
    assert torch.equal(a.detach(), torch.zeros(3)) and torch.equal(b.detach(), torch.ones(3))


@pytest.mark.parametrize("weighted", [True, False])
def test_quadratic_penalty_matches_autograd_on_the_formula(weighted):
    torch.manual_seed(0)
    sc = synthetic("alexnet", (3, 32, 32), [4, 3])
    model = nets.build_network(sc)
    twin = copy.deepcopy(model)
    anchor = {n: p.detach() + 0.1 * torch.randn_like(p) for n, p in model.named_parameters()}
    weight = {n: torch.rand_like(p) for n, p in model.named_parameters()} if weighted else None
    penalty = QuadraticPenalty(model, anchor, weight)
    fast = penalty()
    (3.0 * fast).backward()
    plain = sum(
        ((1.0 if weight is None else weight[n]) * (anchor[n] - p).pow(2)).sum() / 2 for n, p in twin.named_parameters()
    )
    (3.0 * plain).backward()
    exact = sum(
        ((1.0 if weight is None else weight[n].double()) * (anchor[n].double() - p.double()).pow(2)).sum() / 2
        for n, p in twin.named_parameters()
    )  # float64: both float32 sums are within 1e-4 of it
    assert fast.item() == pytest.approx(exact.item(), rel=1e-4)
    assert plain.item() == pytest.approx(exact.item(), rel=1e-4)
    for (n, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-8, msg=n)
    with torch.no_grad():  # the buffers are reused: a second call after a change is fresh
        next(model.parameters()).add_(1.0)
    assert penalty().item() > fast.item()


def test_channels_last_gives_the_same_logits_gradients_and_accuracy():
    torch.manual_seed(0)
    sc = synthetic("alexnet", (3, 32, 32), [4, 3], n=24)
    results = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        sgd = get_strategy("sgd")(sc)
        trainer = Trainer(sc, Protocol(channels_last=channels_last, batch_size=8))
        trainer.prepare(sgd)
        assert sgd.model.layers[0].weight.is_contiguous(memory_format=torch.channels_last) == channels_last
        sgd.model.eval()  # no dropout: the same function either way
        data = trainer.data(0, "train")
        x, y, t = data.batch(torch.arange(len(data)))
        loss, logits = sgd.loss(x, y, t)
        loss.backward()
        results.append(
            (
                logits.detach(),
                [p.grad.clone() for p in sgd.model.parameters() if p.grad is not None],
                trainer.accuracy(sgd, data),
            )
        )
    (l0, g0, a0), (l1, g1, a1) = results
    torch.testing.assert_close(l0, l1, rtol=1e-4, atol=1e-5)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    assert a0 == a1


def test_bf16_autocasts_the_forward_and_keeps_fp32_weights():
    torch.manual_seed(0)
    sc = make_scenario()
    sgd = get_strategy("sgd")(sc)
    trainer = Trainer(sc, Protocol(precision="bf16", epochs=2))
    seen = []
    original = sgd.forward

    def spy(x, t):
        out = original(x, t)
        seen.append(out.dtype)
        return out

    sgd.forward = spy
    sgd.before_task(0)
    sgd.train_task(0, trainer)
    assert set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in sgd.model.parameters())
    assert trainer.test_accuracy(sgd, 0) > 0.5  # still learns the tiny task (3 classes)
    with pytest.raises(ValueError, match="precision"):
        Protocol(precision="fp16")


def test_run_ids_of_default_settings_do_not_change():
    """Runs stored before precision/channels_last existed keep their ids: the hash skips defaults."""
    config = RunConfig("sgd", "split_mnist", seed=3, protocol=Protocol(epochs=7))
    older = {k: v for k, v in dataclasses.asdict(config.protocol).items() if k not in ("precision", "channels_last")}
    expected = config_hash(
        {
            "strategy": "sgd",
            "scenario": "split_mnist",
            "seed": 3,
            "hparams": {},
            "protocol": older,
            "scenario_options": {},
        }
    )
    assert config.run_id() == expected
    assert RunConfig("sgd", "split_mnist", 3, protocol=Protocol(epochs=7, precision="bf16")).run_id() != expected
    assert RunConfig("sgd", "split_mnist", 3, protocol=Protocol(epochs=7, channels_last=True)).run_id() != expected


def test_devices_are_checked_in_one_place():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.parametrize("name", ["ewc", "imm_mean", "imm_mode"])
def test_penalised_loss_gradient_matches_autograd_on_the_formula(name):
    """The strategies' loss (penalty before the forward pass, its gradient added in place) against
    CE + λ Σ w (a − θ)² / 2 written out and differentiated by autograd."""
    torch.manual_seed(0)
    sc = make_scenario(n_tasks=2)
    strategy = get_strategy(name)(sc)
    trainer = Trainer(sc, Protocol(epochs=1))
    strategy.before_task(0)
    strategy.train_task(0, trainer)
    after_task_0 = {n: p.detach().clone() for n, p in strategy.model.named_parameters()}
    strategy.after_task(0)
    strategy.before_task(1)
    with torch.no_grad():
        for p in strategy.model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # away from the anchor
    strategy.model.eval()  # no dropout: the same function twice
    data = trainer.data(1, "train")
    x, y, t = data.batch(torch.arange(len(data)))
    for _ in range(2):  # the second call reuses the cached buffers
        strategy.model.zero_grad(set_to_none=True)
        loss, _ = strategy.loss(x, y, t)
        loss.backward()
    fast = {n: p.grad.clone() for n, p in strategy.model.named_parameters()}
    anchor = strategy.anchor if name == "ewc" else strategy.previous
    for n in after_task_0:  # the anchor is the model after task 0 (no merge after the first task)
        assert torch.equal(anchor[n], after_task_0[n]), n
    weight = strategy.fisher if name == "ewc" else None  # EWC's Fisher: checked against a loop in test_baselines
    strategy.model.zero_grad(set_to_none=True)
    plain = F.cross_entropy(strategy.model(x, t), y) + strategy.hp.lamb * sum(
        ((1.0 if weight is None else weight[n]) * (anchor[n] - p).pow(2)).sum() / 2
        for n, p in strategy.model.named_parameters()
    )
    plain.backward()
    assert loss.item() == pytest.approx(plain.item(), rel=1e-5)
    penalty = plain.item() - F.cross_entropy(strategy.model(x, t), y).item()
    assert penalty > 1e-3 * plain.item()  # far above the tolerance: a wrong penalty would show
    for n, p in strategy.model.named_parameters():
        torch.testing.assert_close(fast[n], p.grad, rtol=1e-5, atol=1e-7, msg=n)
