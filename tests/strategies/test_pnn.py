"""PNN: lateral wiring against a hand computation, freezing, parameter counts, zero forgetting."""

import pytest
import torch
import torch.nn.functional as F
from conftest import synthetic, task0_after_each_task

from cl_bench.nets import Block, base_blocks
from cl_bench.strategies.pnn import PNN, ProgressiveNet
from cl_bench.trainer import Protocol, Trainer

MIXTURE_SEED0_HEADS = [100, 10, 100, 10, 10, 10, 43, 10]  # facescrub, mnist, cifar100, ... (the authors' seed-0 order)


def lin(layer, h):
    return h @ layer.weight.T + layer.bias


@pytest.mark.parametrize("recursive", [False, True])
@pytest.mark.parametrize("lateral_head", [False, True])
def test_mlp_column_equals_hand_computation(recursive, lateral_head):
    """The reference's composition: earlier columns plain (or, recursive, with their own laterals), a
    lateral U relu(V [alpha h]) into every layer l >= 1 of column t, and task t's logits from column t's
    plain head; ``lateral_head`` adds the head's linear adapter (Rusu et al.)."""
    torch.manual_seed(0)
    net = ProgressiveNet([Block("fc", 3)] * 3, [3, 3, 3], (4,), [2, 2, 2]).eval()
    with torch.no_grad():
        net.laterals[1][0].alpha.copy_(torch.tensor([0.7]))
        net.laterals[2][0].alpha.copy_(torch.tensor([2.0, -1.5]))
        net.laterals[2][1].alpha.copy_(torch.tensor([-0.5, 3.0]))
        net.laterals[2][2].alpha.copy_(torch.tensor([1.0, 0.25]))
    x = torch.randn(5, 4)
    col = [c.layers for c in net.columns]

    def lateral(adapter, hs, relu=True):  # U σ(V [α_1 h_1, ..., α_j h_j])
        z = lin(adapter.V, torch.cat([a * h for a, h in zip(adapter.alpha, hs)], 1))
        return lin(adapter.U, torch.relu(z) if relu else z)

    h = [torch.relu(lin(col[j][0], x)) for j in range(3)]  # layer 0: no laterals
    for l in (1, 2):
        h0 = torch.relu(lin(col[0][l], h[0]))
        h1 = lin(col[1][l], h[1])
        if recursive:  # column 1 as it ran for its own task, with its lateral from column 0
            h1 = h1 + lateral(net.laterals[1][l - 1], [h[0]])
        h2 = torch.relu(lin(col[2][l], h[2]) + lateral(net.laterals[2][l - 1], h[:2]))
        h = [h0, torch.relu(h1), h2]
    expected = lin(net.columns[2].head, h[2])  # reference: last[t](h), no head lateral for task t
    if lateral_head:
        expected = expected + lateral(net.laterals[2][2], h[:2], relu=False)
    torch.testing.assert_close(net(x, 2, recursive, lateral_head), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lateral_head", [False, True])
def test_alexnet_column_equals_hand_computation(lateral_head):
    """Conv laterals (1x1 V, U with the layer's kernel), the flatten into fc1, t = 1; the head adapter
    only with ``lateral_head`` (the reference's task-t logits are column t's plain head)."""
    torch.manual_seed(1)
    blocks = base_blocks(synthetic("alexnet", (3, 32, 32), [2, 2], n=1))
    net = ProgressiveNet(blocks, [2, 3, 4, 5, 6], (3, 32, 32), [2, 2]).eval()
    x = torch.randn(2, 3, 32, 32)
    c0, c1 = (c.layers for c in net.columns)
    lat = net.laterals[1]

    def conv_block(conv, h, extra=0.0):
        return F.max_pool2d(torch.relu(F.conv2d(h, conv.weight, conv.bias) + extra), 2)

    def conv_lateral(a, h):
        v = F.conv2d(a.alpha[0] * h, a.V.weight, a.V.bias)
        assert a.V.kernel_size == (1, 1)
        return F.conv2d(torch.relu(v), a.U.weight, a.U.bias)

    p0, p1 = conv_block(c0[0], x), conv_block(c1[0], x)
    q0, q1 = conv_block(c0[1], p0), conv_block(c1[1], p1, conv_lateral(lat[0], p0))
    r0, r1 = conv_block(c0[2], q0), conv_block(c1[2], q1, conv_lateral(lat[1], q0))
    r0, r1 = r0.flatten(1), r1.flatten(1)
    assert r0.shape[1] == 4 * 2 * 2  # 4 maps of 2x2 after conv3: fc1's lateral reads 16 values
    s0 = torch.relu(lin(c0[3], r0))
    s1 = torch.relu(lin(c1[3], r1) + lin(lat[2].U, torch.relu(lin(lat[2].V, lat[2].alpha[0] * r0))))
    u0 = torch.relu(lin(c0[4], s0))
    u1 = torch.relu(lin(c1[4], s1) + lin(lat[3].U, torch.relu(lin(lat[3].V, lat[3].alpha[0] * s0))))
    expected = lin(net.columns[1].head, u1)
    if lateral_head:
        expected = expected + lin(lat[4].U, lin(lat[4].V, lat[4].alpha[0] * u0))
    torch.testing.assert_close(net(x, 1, lateral_head=lateral_head), expected, rtol=1e-5, atol=1e-5)


def test_laterals_come_from_earlier_columns_only():
    torch.manual_seed(0)
    net = ProgressiveNet([Block("fc", 4)] * 3, [4, 4, 4], (6,), [3, 3, 3, 3]).eval()
    assert [len(a) for a in net.laterals] == [0, 3, 3, 3]  # layers 1, 2 and the head
    assert all(a.alpha.shape == (t,) for t in range(4) for a in net.laterals[t])
    x = torch.randn(7, 6)
    before = net(x, 2)
    with torch.no_grad():
        for p in [*net.columns[3].parameters(), *net.laterals[3].parameters()]:
            p.add_(1.0)  # a later column: no influence
    assert torch.equal(net(x, 2), before)
    with torch.no_grad():
        net.columns[0].layers[0].weight.add_(1.0)  # an earlier column feeds column 2 laterally
    assert not torch.allclose(net(x, 2), before)


def test_frozen_columns_run_dropout_in_train_mode():
    """As the authors' code: earlier columns are computed with dropout active while column t trains."""
    net = ProgressiveNet([Block("fc", 4)] * 3, [4, 4, 4], (6,), [3, 3, 3]).train()
    calls = []
    net.dropouts[0].register_forward_hook(lambda m, i, o: calls.append(m.training))
    net(torch.randn(2, 6), 2)
    assert calls == [True, True, True]  # columns 0, 1 (frozen) and 2 all go through dropout


def test_training_task_t_leaves_earlier_columns_bitwise_unchanged():
    torch.manual_seed(0)
    sc = synthetic("mlp", (1, 8, 8), [3, 3, 3])
    strategy = PNN(sc, PNN.parse_hparams({"width_factor": 0.05}))
    trainer = Trainer(sc, Protocol(epochs=1), seed=0)
    for t in range(2):
        strategy.before_task(t)
        trainer.train_epoch(strategy, t, trainer.data(t, "train"), lr=0.05)
    frozen = {n: p.detach().clone() for n, p in strategy.model.named_parameters()}
    strategy.before_task(2)
    trainable = {id(p) for p in strategy.trainable_parameters(2)}
    expected = {id(p) for p in [*strategy.model.columns[2].parameters(), *strategy.model.laterals[2].parameters()]}
    assert trainable == expected
    assert all(p.requires_grad == (id(p) in trainable) for p in strategy.model.parameters())
    trainer.train_epoch(strategy, 2, trainer.data(2, "train"), lr=0.5)
    head_adapter = f"laterals.2.{len(strategy.model.laterals[2]) - 1}."
    for name, p in strategy.model.named_parameters():
        own = name.startswith(("columns.2.", "laterals.2."))
        if own and name.endswith("weight") and not name.startswith(head_adapter):
            assert not torch.equal(p, frozen[name]), name
        if not own or name.startswith(head_adapter):  # as in the reference, the head adapter never trains
            assert torch.equal(p, frozen[name]), name


def test_parameter_counts():
    mixture = PNN(synthetic("alexnet", (3, 32, 32), MIXTURE_SEED0_HEADS, n=1))
    assert mixture.widths == [8, 17, 35, 285, 285]  # the authors' widths
    assert mixture.monitoring()["parameters"] == 7_134_966  # the authors' count
    assert mixture.monitoring()["base_parameters"] == 7_104_229  # the authors' AlexNet-like base
    for shape, heads, base in [((1, 28, 28), [5, 5], 1_917_610), ((784,), [10] * 10, 1_989_700)]:
        m = PNN(synthetic("mlp", shape, heads, n=1)).monitoring()
        assert m["base_parameters"] == base  # the 3x800 MLP
        assert abs(m["parameters"] - base) / base < 0.01, m


@pytest.mark.parametrize(
    "arch,hp", [("alexnet", {"width_factor": 0.1}), ("mlp", {"width_factor": 0.2, "recursive_laterals": True})]
)
def test_zero_forgetting(arch, hp):
    torch.manual_seed(0)
    sc = synthetic(arch, (3, 32, 32), [4, 3, 5])
    strategy = PNN(sc, PNN.parse_hparams(hp))
    trainer = Trainer(sc, Protocol(epochs=2), seed=0)
    test = trainer.data(0, "test")
    acc, logits = task0_after_each_task(strategy, trainer, test, 3)
    assert acc[2] == acc[0]
    assert torch.equal(logits[2], logits[0])
    assert len(trainer.history) == 6


def test_bad_width_factor_is_rejected():
    with pytest.raises(ValueError, match="width_factor"):
        PNN(synthetic("mlp", (4,), [2], n=1), PNN.parse_hparams({"width_factor": -1.0}))
