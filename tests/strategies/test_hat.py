"""HAT (strategies/hat.py): each equation against an independent plain computation, and the
behaviour that defines the method (earlier tasks do not move), on small random nets."""

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from cl_bench import nets
from cl_bench.scenario import Scenario, Split, Task
from cl_bench.strategies.hat import (
    HAT,
    MASK_FLOOR,
    active_weights,
    annealed_s,
    capacity_usage,
    gate,
    regularizer,
    weight_fraction,
    weight_reuse,
)
from cl_bench.strategies.sgd import SGD
from cl_bench.strategy import BatchInfo, HparamError
from cl_bench.trainer import Protocol, Trainer


@pytest.fixture(autouse=True)
def one_thread():
    """Small nets on a shared machine: one intra-op thread is several times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _small_mlp(self):
    """The 2-layer MLP of HAT's MNIST net with input dropout, but 100 units wide so training is fast."""
    sc = self.scenario
    return nets.MLP(math.prod(sc.input_shape), [100, 100], [t.n_classes for t in sc.tasks], input_dropout=0.2)


class SmallHAT(HAT):
    base_network = _small_mlp


class SmallSGD(SGD):
    build_model = _small_mlp


def teacher_scenario(n_tasks=2, n_classes=4, n_train=1000, n_test=500, dim=32, seed=0) -> Scenario:
    """Random inputs labelled by a random linear teacher per task: the tasks need different hidden
    features, so plain fine-tuning forgets."""
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(n_tasks):
        w = torch.randn(dim, n_classes, generator=g)
        train, test = [], []
        for n, out in ((n_train, train), (n_test, test)):
            x = torch.randint(0, 256, (n, dim), generator=g, dtype=torch.uint8)
            out.append(Split(x, ((x.float() / 255 - 0.5) @ w).argmax(1)))
        tasks.append(Task(f"teacher{t}", n_classes, train[0], train[0], test[0], (0.5,), (0.29,)))
    return Scenario("teachers", tasks, (dim,), "mlp", seed)


def random_cumulative(hat: HAT, seed=0) -> list[torch.Tensor]:
    """Give ``hat`` one finished task whose masks are uniform in (0, 1), far from binary."""
    g = torch.Generator().manual_seed(seed)
    masks = [torch.rand(u, generator=g) for u in hat.model.net.units]
    hat.load_state({"task_masks": [masks], "step": 0, "capacity": [], "compression": []})
    return masks


def backward_once(hat: HAT, t: int, batch=8, info: BatchInfo | None = None):
    """One training forward/backward of task t; returns the raw gradients before HAT's hooks."""
    hat.model.train()
    hat.before_batch(info or BatchInfo(0, 3, 10, 192, 640))
    data = Trainer(hat.scenario, Protocol()).data(t, "train")
    x, y, _ = data.batch(torch.arange(batch))
    hat.model.zero_grad(set_to_none=True)
    loss, _ = hat.loss(x, y, t)
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in hat.model.named_parameters() if p.grad is not None}


# ---- Eq. 1 and Eq. 3 ------------------------------------------------------------------------------
def test_gate_is_the_sigmoid_with_exact_gradient_and_no_denormals():
    e = torch.linspace(-6, 6, 401, dtype=torch.float32, requires_grad=True)
    s = 400.0
    a = gate(e, s)
    plain = torch.sigmoid(s * e.detach())
    keep = plain >= MASK_FLOOR
    assert torch.equal(a.detach()[keep], plain[keep]) and keep.sum() > 200
    assert (a.detach()[~keep] == 0).all() and (~keep).any()
    assert not ((a > 0) & (a < torch.finfo(torch.float32).tiny)).any()  # no denormal masks
    # the gradient reaching e is the sigmoid's, s sigma(se)(1 - sigma(se)), even where the value is floored
    g = torch.randn(401)
    (a * g).sum().backward()
    plain = plain.double()
    expected = g.double() * s * plain * (1 - plain)
    assert torch.allclose(e.grad.double(), expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("s_max", [25.0, 400.0])
def test_annealing_first_and_last_batch(s_max):
    n, bs = 90, 32
    B = math.ceil(n / bs)
    batches = [BatchInfo(0, b, B, b * bs, n) for b in range(B)]
    paper = [annealed_s(s_max, info, "paper") for info in batches]
    reference = [annealed_s(s_max, info, "reference") for info in batches]
    assert paper[0] == pytest.approx(1 / s_max) and reference[0] == pytest.approx(1 / s_max)
    assert paper[-1] == pytest.approx(s_max)  # Eq. 3 with b = B
    assert reference[-1] == pytest.approx(1 / s_max + (s_max - 1 / s_max) * 64 / 90)  # offset 64 of 90
    assert reference[-1] < s_max
    assert annealed_s(s_max, BatchInfo(0, 0, 1, 0, 10), "paper") == pytest.approx(s_max)


@pytest.mark.parametrize("annealing", ["reference", "paper"])
def test_trainer_anneals_s_each_epoch_and_evaluates_at_s_max(annealing, tiny_scenario):
    torch.manual_seed(0)
    sc = tiny_scenario(n_tasks=1, n_train=90)
    hat = SmallHAT(sc, HAT.parse_hparams({"annealing": annealing, "s_max": 50}))
    seen = []
    original = hat.before_batch
    hat.before_batch = lambda info: (original(info), seen.append(hat.s))
    trainer = Trainer(sc, Protocol(batch_size=32))
    data = trainer.data(0, "train")
    for epoch in range(2):
        trainer.train_epoch(hat, 0, data, 0.05, epoch)
    last = 50.0 if annealing == "paper" else 1 / 50 + (50 - 1 / 50) * 64 / 90
    assert seen == pytest.approx([1 / 50, seen[1], last] * 2)  # restarts every epoch
    assert seen[0] < seen[1] < seen[2]
    # evaluation uses s_max whatever s the last batch left
    hat.model.eval()
    x, _, _ = data.batch(torch.arange(10))
    masks = [torch.sigmoid(50.0 * emb.weight[0]) for emb in hat.model.embeddings]
    with torch.no_grad():
        assert torch.allclose(hat.forward(x, 0), hat.model.net(x, 0, masks), atol=1e-6)


def test_predictions_use_s_max_whatever_s_training_left(tiny_scenario):
    torch.manual_seed(0)
    sc = tiny_scenario(n_tasks=1)
    hat = SmallHAT(sc)
    hat.before_batch(BatchInfo(0, 0, 3, 0, 90))  # s = 1/s_max, as on the first batch of an epoch
    assert hat.s == pytest.approx(1 / hat.hp.s_max)
    seen, forward = [], hat.model.forward
    hat.model.forward = lambda x, t, s: (seen.append(s), forward(x, t, s))[1]
    Trainer(sc, Protocol()).test_accuracy(hat, 0)
    assert seen and set(seen) == {hat.hp.s_max}


# ---- Eq. 2 ----------------------------------------------------------------------------------------
def _expected_keep(a_out, a_in):
    """1 - min(a_out[i], a_in[j]) written as max(1 - a_out[i], 1 - a_in[j]) (the same number in float:
    x -> 1 - x is monotone), an outer (out, in) table."""
    return torch.maximum((1 - a_out)[:, None], (1 - a_in)[None, :])


def _w(l):
    return f"net.layers.{l}.weight"


def _spot_check(grad, raw, a_out, a_in, n=200, seed=0, spatial=1):
    """Scalar arithmetic on random weights: g' = (1 - min(a_out[i], a_in[j // spatial])) g."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        idx = tuple(int(torch.randint(d, (1,), generator=g)) for d in raw.shape)
        i, j = idx[0], idx[1]
        m = a_out[i].item() if a_in is None else min(a_out[i].item(), a_in[j // spatial].item())
        assert grad[idx].item() == pytest.approx((1 - m) * raw[idx].item(), rel=1e-5, abs=1e-12)


def test_eq2_masks_fc_gradients_of_the_mlp(tiny_scenario):
    torch.manual_seed(0)
    hat = HAT(tiny_scenario(shape=(1, 6, 6)))  # HAT's own 2x2000 MLP
    a1, a2 = random_cumulative(hat)
    raw = backward_once(hat, 1)
    hat.after_backward(1)
    grads = {n: p.grad for n, p in hat.model.named_parameters() if p.grad is not None}
    # first layer: post-synaptic mask only (the input is not masked)
    assert torch.equal(grads["net.layers.0.weight"], (1 - a1)[:, None] * raw["net.layers.0.weight"])
    assert torch.equal(grads["net.layers.1.weight"], _expected_keep(a2, a1) * raw["net.layers.1.weight"])
    assert torch.equal(grads["net.layers.0.bias"], (1 - a1) * raw["net.layers.0.bias"])  # biases masked too
    assert torch.equal(grads["net.layers.1.bias"], (1 - a2) * raw["net.layers.1.bias"])
    _spot_check(grads["net.layers.1.weight"], raw["net.layers.1.weight"], a2, a1)
    _spot_check(grads["net.layers.0.weight"], raw["net.layers.0.weight"], a1, None)
    assert torch.equal(grads["net.heads.1.weight"], raw["net.heads.1.weight"])  # heads are not masked


def test_eq2_masks_conv_and_flatten_gradients_of_the_alexnet(tiny_scenario):
    torch.manual_seed(0)
    hat = HAT(tiny_scenario(shape=(3, 32, 32), arch="alexnet", n_train=12, n_test=6))
    assert hat.model.net.flatten_spatial == 4  # 256 x 2 x 2 -> fc1 (the authors' AlexNet-like net)
    c1, c2, c3, f1, f2 = random_cumulative(hat)
    raw = backward_once(hat, 1, batch=4)
    hat.after_backward(1)
    grads = {n: p.grad for n, p in hat.model.named_parameters() if p.grad is not None}
    assert torch.equal(grads[_w(0)], (1 - c1)[:, None, None, None] * raw[_w(0)])
    for l, (out, inp) in enumerate([(c2, c1), (c3, c2)], start=1):  # per (filter, channel), all taps
        assert torch.equal(grads[_w(l)], _expected_keep(out, inp)[:, :, None, None] * raw[_w(l)])
        _spot_check(grads[_w(l)], raw[_w(l)], out, inp)
    channel_of_input = torch.arange(1024) // 4  # channel-major flatten
    assert torch.equal(grads[_w(3)], _expected_keep(f1, c3[channel_of_input]) * raw[_w(3)])
    _spot_check(grads[_w(3)], raw[_w(3)], f1, c3, spatial=4)
    assert torch.equal(grads[_w(4)], _expected_keep(f2, f1) * raw[_w(4)])
    for l, a in enumerate([c1, c2, c3, f1, f2]):
        assert torch.equal(grads[f"net.layers.{l}.bias"], (1 - a) * raw[f"net.layers.{l}.bias"])


def test_first_task_gradients_are_untouched(tiny_scenario):
    torch.manual_seed(0)
    hat = SmallHAT(tiny_scenario())
    raw = backward_once(hat, 0)
    hat.after_backward(0)
    for n, p in hat.model.named_parameters():
        if p.grad is not None and not n.startswith("embeddings"):
            assert torch.equal(p.grad, raw[n])


# ---- Sec. 2.5: embedding gradient compensation ------------------------------------------------------
def test_embedding_compensation_closed_forms_and_clamps(tiny_scenario):
    torch.manual_seed(0)
    hat = SmallHAT(tiny_scenario())
    s_max = hat.hp.s_max
    info = BatchInfo(0, 1, 4, 100, 400)  # s = 1/s_max + (s_max - 1/s_max) / 4, about 100
    s = 1 / s_max + (s_max - 1 / s_max) * 100 / 400
    with torch.no_grad():
        e = hat.model.embeddings[0].weight
        e[0, :90] = torch.linspace(-0.3, 0.3, 90)  # |s e| <= 30: inside the clamp
        e[0, 90:] = -60 / s  # s e = -60: the cosh is clamped at 50 (mask 1e-26, floored in the forward)
    raw = backward_once(hat, 0, batch=16, info=info)["embeddings.0.weight"][0].double()
    hat.after_backward(0)
    applied = hat.model.embeddings[0].weight.grad[0].double()
    e0 = hat.model.embeddings[0].weight.detach()[0].double()
    sig = torch.sigmoid
    # sigma'(x) = sigma(x)(1 - sigma(x)) = sigma(x) sigma(-x), the latter without cancellation
    paper_ratio = s_max * sig(e0) * sig(-e0) / (s * sig(s * e0) * sig(-s * e0))
    cosh_form = s_max * (torch.cosh(s * e0) + 1) / (s * (torch.cosh(e0) + 1))
    inside = slice(0, 90)
    assert torch.allclose(paper_ratio[inside], cosh_form[inside], rtol=1e-9)  # the two forms agree
    assert torch.allclose(applied[inside], paper_ratio[inside] * raw[inside], rtol=1e-4, atol=1e-12)
    assert (raw[90:] != 0).any()  # the exact sigmoid gradient survives the forward floor
    clamped = s_max * (math.cosh(50.0) + 1) / (s * (torch.cosh(e0[90:]) + 1))
    assert torch.allclose(applied[90:], clamped * raw[90:], rtol=1e-4)
    # embeddings are clamped to [-6, 6] after the step, every row
    with torch.no_grad():
        hat.model.embeddings[1].weight[0, :3] = torch.tensor([10.0, -10.0, 2.0])
        hat.model.embeddings[1].weight[1, 0] = -7.0
    hat.after_step(0)
    w = hat.model.embeddings[1].weight
    assert w[0, :3].tolist() == [6.0, -6.0, 2.0] and w[1, 0].item() == -6.0


# ---- Eqs. 4 and 5 ---------------------------------------------------------------------------------------
def test_regularizer_hand_made_values():
    masks = [torch.tensor([1.0, 0.5]), torch.tensor([0.25])]
    previous = [torch.tensor([0.0, 0.5]), torch.tensor([1.0])]
    # (1*1 + 0.5*0.5 + 0.25*0) / (1 + 0.5 + 0) = 1.25 / 1.5
    assert regularizer(masks, [1 - p for p in previous]).item() == pytest.approx(1.25 / 1.5)
    first = regularizer(masks, [torch.ones(2), torch.ones(1)])  # t = 0: sum a / units
    assert first.item() == pytest.approx((1 + 0.5 + 0.25) / 3)
    full = regularizer(masks, [torch.zeros(2), torch.zeros(1)])  # earlier tasks hold every unit
    assert full.item() == 0.0  # defined as 0 (the reference would give NaN)


def test_loss_is_ce_plus_c_times_r_at_the_current_s(tiny_scenario):
    torch.manual_seed(0)
    hat = SmallHAT(tiny_scenario(n_tasks=2), HAT.parse_hparams({"c": 1.5}))
    previous = random_cumulative(hat)
    data = Trainer(hat.scenario, Protocol()).data(1, "valid")
    x, y, _ = data.batch(torch.arange(20))
    hat.model.eval()  # validation: s = s_max (as the authors' code), no dropout
    with torch.no_grad():
        loss, logits = hat.loss(x, y, 1)
        a = [torch.sigmoid(hat.hp.s_max * emb.weight[1].double()) for emb in hat.model.embeddings]
        num = sum((ai * (1 - p.double())).sum() for ai, p in zip(a, previous))
        den = sum((1 - p.double()).sum() for p in previous)
        expected = F.cross_entropy(logits, y).double() + 1.5 * num / den
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


# ---- the behaviour that defines HAT -----------------------------------------------------------------
def _first_task_accuracy_before_after(cls):
    torch.manual_seed(0)
    sc = teacher_scenario()
    strategy = cls(sc)
    trainer = Trainer(sc, Protocol(epochs=10, lr=0.2), seed=0)
    accs = []
    for t in range(2):
        strategy.before_task(t)
        strategy.train_task(t, trainer)
        strategy.after_task(t)
        accs.append(trainer.test_accuracy(strategy, 0))
    return accs


def test_hat_keeps_the_first_task_where_sgd_forgets():
    hat_before, hat_after = _first_task_accuracy_before_after(SmallHAT)
    sgd_before, sgd_after = _first_task_accuracy_before_after(SmallSGD)
    assert hat_before > 0.45  # learned (chance is 0.25), so "unchanged" means something
    assert abs(hat_after - hat_before) <= 0.005
    assert sgd_before - sgd_after > 0.05  # the same run forgets without HAT


# ---- monitoring (Sec. 4.4) --------------------------------------------------------------------------
def _materialised_active(masks, shapes):
    """Count active weights by building every weight's binarised mask with loops over units."""
    total = 0
    for l, shape in enumerate(shapes):
        full = torch.zeros(shape[:2], dtype=torch.bool)
        spatial = shape[1] // len(masks[l - 1]) if l else 1
        for i in range(shape[0]):
            for j in range(shape[1]):
                full[i, j] = masks[l][i] > 0.5 and (l == 0 or masks[l - 1][j // spatial] > 0.5)
        total += int(full.sum()) * math.prod(shape[2:])
    return total


def test_active_weights_match_materialised_weight_masks():
    g = torch.Generator().manual_seed(0)
    shapes = [torch.Size(s) for s in [(4, 3, 2, 2), (5, 4, 3, 3), (6, 20), (7, 6)]]  # conv, conv, flatten 4, fc
    for _ in range(5):
        masks = [torch.rand(s[0], generator=g) for s in shapes]
        assert sum(active_weights(masks, shapes)) == _materialised_active(masks, shapes)


def test_capacity_reuse_compression_hand_made():
    shapes = [torch.Size([3, 2]), torch.Size([2, 3])]
    task0 = [torch.tensor([0.9, 0.8, 0.1]), torch.tensor([1.0, 0.0])]
    task1 = [torch.tensor([0.9, 0.2, 0.7]), torch.tensor([0.6, 0.9])]
    # task 0: 2 units x 2 inputs + 1 x 2 = 6 of 12 weights; task 1: 2 x 2 + 2 x 2 = 8; both: 1 x 2 + 1 x 1 = 3
    assert weight_fraction(task0, shapes) == pytest.approx(6 / 12)
    assert weight_fraction(task1, shapes) == pytest.approx(8 / 12)
    reuse = weight_reuse([task0, task1], shapes)
    assert reuse[0][1] == pytest.approx(3 / 6)
    assert all(math.isnan(reuse[i][j]) for i in range(2) for j in range(2) if j <= i)
    cumulative = [torch.maximum(a, b) for a, b in zip(task0, task1)]
    assert capacity_usage(cumulative, shapes) == pytest.approx(12 / 12)


def test_monitoring_is_json_and_each_value_recomputes_plainly(tiny_scenario):
    torch.manual_seed(0)
    sc = tiny_scenario(n_tasks=3, n_train=90)
    hat = SmallHAT(sc)
    shapes = [layer.weight.shape for layer in hat.model.net.layers]
    n_weights = sum(shape.numel() for shape in shapes)

    def active(unit_masks):
        """Active weights: every weight's Eq. 2 mask min(a_out, a_in) materialised and binarised at 0.5."""
        total = 0
        for l, shape in enumerate(shapes):
            a_in = unit_masks[l - 1] if l else torch.ones(shape[1])  # the input is not masked
            total += int((torch.minimum(unit_masks[l][:, None], a_in[None, :]) > 0.5).sum())
        return total

    def masks_now(t):  # a^t = sigmoid(s_max e^t) from the embeddings as they are (row t moves only in task t)
        return [torch.sigmoid(400.0 * emb.weight.detach()[t]) for emb in hat.model.embeddings]

    usage_after_step = []  # Fig. 5 recomputed after every step: the capacity that tasks 0..t hold now
    after_step = hat.after_step

    def spy(t):
        after_step(t)
        cumulative = [torch.stack([masks_now(u)[l] for u in range(t + 1)]).amax(0) for l in range(2)]
        usage_after_step.append(active(cumulative) / n_weights)

    hat.after_step = spy
    trainer = Trainer(sc, Protocol(epochs=2, batch_size=16), seed=0)
    for t in range(3):
        hat.before_task(t)
        hat.train_task(t, trainer)
        hat.after_task(t)
    m = json.loads(json.dumps(hat.monitoring(), allow_nan=False))["hat"]
    assert set(m) == {
        "threshold",
        "layers",
        "units",
        "mask_sizes",
        "capacity",
        "reuse",
        "compression",
        "parameters",
        "mask_learning",
    }
    assert m["threshold"] == 0.5 and m["layers"] == ["fc1", "fc2"] and m["units"] == [100, 100]
    assert len(m["mask_sizes"]) == 3 and all(len(row) == 2 for row in m["mask_sizes"])
    for t, row in enumerate(m["mask_sizes"]):
        assert row == [int((a > 0.5).sum()) for a in hat.task_masks[t]]
    assert len(m["reuse"]) == 3 and all(m["reuse"][i][j] is None for i in range(3) for j in range(i + 1))
    steps = [c["step"] for c in m["capacity"]]
    assert steps == sorted(steps) and {c["task"] for c in m["capacity"]} == {0, 1, 2}
    assert all(0 <= c["usage"] <= 1 for c in m["capacity"])
    assert steps == list(range(1, 37))  # 6 batches an epoch: every step is sampled (3 tasks x 2 epochs)
    assert [c["task"] for c in m["capacity"]] == [(step - 1) // 12 for step in steps]
    assert [c["usage"] for c in m["capacity"]] == pytest.approx(usage_after_step)
    assert [(c["task"], c["epoch"]) for c in m["compression"]] == [(t, e) for t in range(3) for e in (1, 2)]
    assert m["parameters"]["embeddings"] == 3 * 200
    assert m["parameters"]["total"] == nets.count_parameters(hat.model)
    # Mask learning, recomputed plainly: the share of task t's units whose binarised mask differs from
    # the sign of their embedding before any training (a model built again under the same seed).
    torch.manual_seed(0)
    initial = [emb.weight.detach() for emb in SmallHAT(sc).model.embeddings]
    moved = [
        [((initial[l][t] > 0) != (hat.task_masks[t][l] > 0.5)).float().mean().item() for l in range(2)]
        for t in range(3)
    ]
    assert [v for row in m["mask_learning"]["moved"] for v in row] == pytest.approx([v for row in moved for v in row])
    assert any(v > 0 for row in moved for v in row)  # some units did move: a share stuck at 0 would fail
    assert len(m["mask_learning"]["capacity"]) == 3 and all(0 < c <= 1 for c in m["mask_learning"]["capacity"])
    # The rest recomputed plainly from the trained embeddings: masks, sizes, capacity after each task, reuse.
    masks = [masks_now(t) for t in range(3)]
    for t in range(3):
        assert all(torch.equal(a, b) for a, b in zip(hat.task_masks[t], masks[t]))
        assert m["mask_sizes"][t] == [int((a > 0.5).sum()) for a in masks[t]]
        cumulative = [torch.stack([masks[u][l] for u in range(t + 1)]).amax(0) for l in range(2)]
        assert m["mask_learning"]["capacity"][t] == pytest.approx(active(cumulative) / n_weights)
        for j in range(t + 1, 3):
            both = active([torch.minimum(a, b) for a, b in zip(masks[t], masks[j])])  # active for t and j
            assert m["reuse"][t][j] == pytest.approx(both / active(masks[t]))
    assert 0 < m["reuse"][0][1] < 1
    assert m["parameters"]["total"] == sum(p.numel() for p in hat.model.parameters())
    # compression: the validation accuracy the trainer logged for that task and epoch
    assert [c["valid_acc"] for c in m["compression"]] == [log.valid_acc for log in trainer.history]


# ---- guard rails, options, state ---------------------------------------------------------------------
def test_hparams_are_validated_and_parsed_from_strings():
    hp = HAT.parse_hparams({"s_max": "25", "c": "1.5", "annealing": "paper", "embedding_init": "uniform"})
    assert hp.s_max == 25.0 and hp.c == 1.5
    for bad in ({"annealing": "linear"}, {"s_max": 0.5}, {"c": -1}, {"init": "kaiming"}):
        with pytest.raises(HparamError):
            HAT.parse_hparams(bad)


def test_uniform_embedding_init_and_xavier_option(tiny_scenario):
    torch.manual_seed(0)
    hat = SmallHAT(tiny_scenario(), HAT.parse_hparams({"embedding_init": "uniform"}))
    w = torch.cat([e.weight.flatten() for e in hat.model.embeddings])
    assert w.min() >= 0 and w.max() <= 2 and w.mean().item() == pytest.approx(1, abs=0.1)
    hat = HAT(tiny_scenario(), HAT.parse_hparams({"init": "xavier"}))
    assert (hat.model.net.layers[0].bias == 0).all()  # nets.xavier_init_ zeroes biases


def test_refuses_optimisers_that_bypass_the_gradient_masks(tiny_scenario):
    scenario = tiny_scenario()
    hat = SmallHAT(scenario)
    task = dataclasses.replace(Trainer(scenario).task(0), protocol=type("P", (), {"momentum": 0.9})())
    with pytest.raises(ValueError, match="plain SGD"):
        hat.train_task(task, Trainer(scenario))


def test_state_round_trip_restores_masks_and_gradient_factors(tmp_path, tiny_scenario):
    torch.manual_seed(0)
    hat = SmallHAT(tiny_scenario(n_tasks=3))
    hat.after_task(0)
    hat.after_task(1)
    path = tmp_path / "state.pt"
    torch.save(hat.save_state(), path)
    fresh = SmallHAT(tiny_scenario(n_tasks=3))
    fresh.load_state(torch.load(path, weights_only=True))
    for a, b in zip(hat.cumulative, fresh.cumulative):
        assert torch.equal(a, b)
    for (_, keep), (_, keep2) in zip(hat._grad_keep, fresh._grad_keep):
        assert torch.equal(keep, keep2)
    with pytest.raises(RuntimeError, match="in order"):
        fresh.after_task(0)
