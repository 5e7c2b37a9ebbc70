"""Every path of training and evaluation on each device (tests/devices/device_params.py): the CPU
always, the GPU where torch sees one. On the GPU the results must be the CPU's within the tolerances
of cl_bench.tools.device_checks (FP32, BF16); on the CPU against the CPU they must be identical (the same
seed twice gives the same numbers).

Runs compared across devices have dropout off (its masks come from each device's own generator).
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_scenario
from device_params import DEVICES

from cl_bench.registry import all_strategies
from cl_bench.strategies.hat import compensate_embedding_grad
from cl_bench.strategies.shared import cross_entropy_of, empirical_fisher
from cl_bench.strategy import BatchInfo
from cl_bench.tools import device_checks as dc
from cl_bench.trainer import Trainer


def on(device, module_or_tensors) -> bool:
    """Everything lives on ``device`` (its type: cuda and cuda:0 are the same here)."""
    tensors = module_or_tensors.parameters() if isinstance(module_or_tensors, torch.nn.Module) else module_or_tensors
    return all(t.device.type == torch.device(device).type for t in tensors)


def trained(strategy, device, n_tasks, protocol=dc.TINY_PROTOCOL, scenario=None):
    """A tiny strategy (dropout off) on ``device`` after tasks 0..n_tasks-1, and its trainer."""
    sc = (scenario or dc.tiny_scenario()).to(device)
    algo = dc.build(strategy, sc, torch.device(device))
    trainer = Trainer(sc, protocol)
    for t in range(n_tasks):
        algo.before_task(t)
        algo.train_task(t, trainer)
        algo.after_task(t)
    return algo, trainer


# ---- the trainer ---------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_a_trainer_step_and_fit(device):
    def one(dev):
        sc = make_scenario().to(dev)
        algo = dc.build("sgd", sc, torch.device(dev))
        before = copy.deepcopy(algo.model)
        trainer = Trainer(sc, dc.TINY_PROTOCOL)
        loss = trainer.train_epoch(algo, 0, trainer.data(0, "train"), 0.05)
        moved = any(not torch.equal(a, b) for a, b in zip(algo.model.parameters(), before.parameters()))
        trainer.fit(algo, 0, trainer.data(0, "train"), trainer.data(0, "valid"))
        return algo, trainer, loss, moved

    algo, trainer, loss, moved = one(device)
    assert isinstance(loss, float) and loss > 0 and moved and on(device, algo.model)
    assert len(trainer.history) == dc.TINY_PROTOCOL.epochs and all(h.valid_loss > 0 for h in trainer.history)
    cpu_algo, cpu_trainer, cpu_loss, _ = one("cpu")
    tol = dc.tolerance(device)
    assert loss == pytest.approx(cpu_loss, rel=tol.loss, abs=0)
    for a, b in zip(trainer.history, cpu_trainer.history):
        assert (a.train_loss, a.valid_loss) == pytest.approx((b.train_loss, b.valid_loss), rel=tol.loss, abs=0)


@pytest.mark.parametrize("device", DEVICES)
def test_evaluation_equals_the_cpus(device):
    algo, trainer = trained("sgd", "cpu", 1)
    data = trainer.data(0, "test")
    cpu = trainer.evaluate(algo, 0, data), trainer.accuracy(algo, data)
    algo.model.to(device)
    sc = algo.scenario.to(device)
    moved = Trainer(sc, dc.TINY_PROTOCOL)
    data = moved.data(0, "test")
    loss, acc = moved.evaluate(algo, 0, data)
    tol = dc.tolerance(device)
    assert loss == pytest.approx(cpu[0][0], rel=tol.loss, abs=0)
    assert abs(acc - cpu[0][1]) * len(data) <= tol.samples
    assert abs(moved.accuracy(algo, data) - cpu[1]) * len(data) <= tol.samples


# ---- every strategy, against the CPU ---------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("strategy", sorted(all_strategies()))
def test_every_strategy_agrees_with_the_cpu(device, strategy):
    agreement, run, cpu = dc.check_against_cpu(strategy, device)
    assert agreement.ok, f"{strategy} on {device}: {agreement.problems} ({agreement.describe()})"
    assert on(device, run.strategy.model)
    finished = run.accuracy[np.tril_indices(len(run.accuracy))]
    assert ((finished >= 0) & (finished <= 1)).all()
    if torch.device(device).type == "cpu":  # the same seed twice: the same numbers
        assert run.train_losses == cpu.train_losses and run.valid_losses == cpu.valid_losses
        np.testing.assert_array_equal(run.accuracy, cpu.accuracy)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("strategy", ["sgd", "hat"])
def test_the_alexnet_agrees_with_the_cpu(device, strategy):
    agreement, run, _ = dc.check_against_cpu(strategy, device, arch="alexnet")
    assert agreement.ok, agreement.problems
    assert on(device, run.strategy.model)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("strategy", ["sgd", "ewc", "hat"])
def test_bf16_autocast_agrees_with_the_cpu_and_keeps_fp32_weights(device, strategy):
    agreement, run, cpu = dc.check_against_cpu(strategy, device, precision="bf16")
    assert agreement.ok, agreement.problems
    assert all(p.dtype == torch.float32 for p in run.strategy.model.parameters())
    fp32 = dc.run_sequence(strategy, device)
    # bf16 is a different computation: the same learning, not the same numbers
    assert run.train_losses != fp32.train_losses
    assert abs(run.accuracy[-1].mean() - fp32.accuracy[-1].mean()) < 0.25


# ---- what each strategy keeps, on the device -----------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_hat_masks_and_compensation_on_the_device(device):
    algo, trainer = trained("hat", device, 1)
    assert on(device, algo.task_masks[0]) and on(device, algo.cumulative)
    assert all(((a >= 0) & (a <= 1)).all() for a in algo.cumulative)
    assert algo._grad_keep and on(device, [keep for _, keep in algo._grad_keep])
    algo.before_task(1)
    algo.model.train()
    data = trainer.data(1, "train")
    x, y, t = data.batch(torch.arange(32, device=data.y.device))
    algo.before_batch(BatchInfo(0, 1, 3, 32, 96))  # s annealed away from s_max: compensation matters
    for p in algo.model.parameters():
        p.grad = None
    algo.loss(x, y, t)[0].backward()
    grads = {id(p): p.grad.clone() for p in algo.model.parameters() if p.grad is not None}
    algo.after_backward(1)
    for p, keep in algo._grad_keep:  # Eq. 2 on the device
        torch.testing.assert_close(p.grad, grads[id(p)] * keep)
    for emb in algo.model.embeddings:  # Sec. 2.5 on the device, against the formula on the CPU
        expected = grads[id(emb.weight)][1].cpu()
        compensate_embedding_grad(expected, emb.weight.detach()[1].cpu(), algo.s, algo.hp.s_max, algo.hp.thres_cosh)
        torch.testing.assert_close(emb.weight.grad[1].cpu(), expected, rtol=1e-5, atol=1e-6)
        assert (emb.weight.grad[0] == 0).all()  # task 0's embedding gets no gradient while task 1 trains


@pytest.mark.parametrize("device", DEVICES)
def test_ewc_fisher_on_the_device_equals_the_cpus(device):
    fishers = {}
    for dev in dict.fromkeys(["cpu", device]):
        algo, _ = trained("ewc", dev, 1)
        assert on(dev, algo.fisher.values()) and on(dev, algo.anchor.values())
        fishers[dev] = {k: v.cpu() for k, v in algo.fisher.items()}
        assert all((f >= 0).all() and f.isfinite().all() for f in fishers[dev].values())
        assert any(f.sum() > 0 for f in fishers[dev].values())
    tol = dc.tolerance(device)
    for name, f in fishers[device].items():
        torch.testing.assert_close(f, fishers["cpu"][name], rtol=tol.loss * 10, atol=1e-9 if tol.loss else 0)


@pytest.mark.parametrize("device", DEVICES)
def test_empirical_fisher_of_a_model_equals_the_cpus(device):
    """The vmapped per-batch gradients on the device, for the same weights and data."""
    algo, trainer = trained("sgd", "cpu", 1)
    model = algo.model.eval()  # dropout is off already; eval for a plain function
    data = trainer.data(0, "train")
    cpu = empirical_fisher(model, cross_entropy_of(model, 0), data, 20)
    moved = copy.deepcopy(model).to(device)
    sc = algo.scenario.to(device)
    other = empirical_fisher(moved, cross_entropy_of(moved, 0), Trainer(sc, dc.TINY_PROTOCOL).data(0, "train"), 20)
    for name, f in other.items():
        assert f.device.type == torch.device(device).type
        torch.testing.assert_close(
            f.cpu(),
            cpu[name],
            rtol=1e-3 if dc.tolerance(device).loss else 0,
            atol=1e-9 if dc.tolerance(device).loss else 0,
        )


@pytest.mark.parametrize("device", DEVICES)
def test_pathnet_ga_on_the_device_freezes_each_tasks_best_path(device):
    algo, trainer = trained("pathnet", device, 1)
    assert len(algo.ga_log[0]) == dc.TINY_HPARAMS["pathnet"]["generations"] and 0 in algo.best_paths
    frozen = {
        (l, k): copy.deepcopy(algo.model.layers[l][k].state_dict())
        for l, used in enumerate(algo.frozen(1))
        for k in used
    }
    algo.before_task(1)
    algo.train_task(1, trainer)
    algo.after_task(1)
    assert on(device, algo.model)
    for (l, k), state in frozen.items():  # task 0's modules did not move while task 1 trained
        for name, value in algo.model.layers[l][k].state_dict().items():
            assert torch.equal(value, state[name])


@pytest.mark.parametrize("device", DEVICES)
def test_pnn_columns_on_the_device(device):
    algo, trainer = trained("pnn", device, 1)
    column0 = copy.deepcopy(algo.model.columns[0].state_dict())
    column1 = copy.deepcopy(algo.model.columns[1].state_dict())
    algo.before_task(1)
    algo.train_task(1, trainer)
    assert all(torch.equal(v, column0[k]) for k, v in algo.model.columns[0].state_dict().items())  # frozen
    assert any(not torch.equal(v, column1[k]) for k, v in algo.model.columns[1].state_dict().items())  # trained
    assert on(device, algo.model)


@pytest.mark.parametrize("device", DEVICES)
def test_joint_mixed_task_batches_and_random_predictions_on_the_device(device):
    joint, trainer = trained("joint", device, 2)
    union = joint.scenario.tasks
    x = torch.cat([union[0].train.x[:5], union[1].train.x[:5]]).float()
    y = torch.cat([union[0].train.y[:5], union[1].train.y[:5]])
    t = torch.tensor([0] * 5 + [1] * 5, device=x.device)
    joint.model.eval()
    with torch.no_grad():
        loss, logits = joint.loss(x, y, t)
        h = joint.model.features(x)
        per_sample = torch.cat(
            [F.cross_entropy(joint.model.heads[u](h[t == u]), y[t == u], reduction="none") for u in (0, 1)]
        )
    assert loss.device.type == torch.device(device).type
    torch.testing.assert_close(loss, per_sample.mean())
    rnd, trainer = trained("random", device, 2)
    data = trainer.data(1, "test")
    predicted = rnd.predict(data.batch(torch.arange(len(data), device=data.y.device))[0], 1)
    assert predicted.device.type == torch.device(device).type
    assert set(predicted.tolist()) <= set(rnd.scenario.tasks[1].train.y.tolist())
