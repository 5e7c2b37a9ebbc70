"""WSN: the authors' top-c rule (networks/subnet.py), straight-through scores, frozen subnetworks,
bit-packed masks in the state, zero forgetting."""

import pytest
import torch
from conftest import synthetic, task0_after_each_task

from cl_bench.strategies.wsn import WSN, pack, subnet_mask, unpack
from cl_bench.trainer import Protocol, Trainer

SCORES = torch.tensor([0.5, -2.0, 0.1, 3.0, -0.7, 1.2, 0.05, -0.9, 2.5, 0.3])


def wsn(sc, **hp):
    torch.manual_seed(0)
    return WSN(sc, WSN.parse_hparams(hp))


@pytest.mark.parametrize(
    "capacity,kept",
    [
        # sparsity 0.7: k = 1 + round(6.3) = 7; 7th smallest |s| = 1.2; kept: |s| >= 1.2
        (0.3, [False, True, False, True, False, True, False, False, True, False]),
        # sparsity 0.5: k = 1 + round(4.5) = 5 (round half to even); 5th smallest = 0.7
        (0.5, [False, True, False, True, True, True, False, True, True, False]),
        (1.0, [True] * 10),  # sparsity 0: k = 1, everything
    ],
)
def test_top_c_on_a_hand_made_score_vector(capacity, kept):
    assert subnet_mask(SCORES, capacity).bool().tolist() == kept


def test_straight_through_gradient_reaches_the_scores():
    """d loss / d s = (d loss / d mask) x sign(s): the mask's gradient passes unchanged through top-c."""
    s = SCORES.clone().requires_grad_(True)
    w = torch.arange(1.0, 11.0)
    up = torch.linspace(-1, 1, 10)
    (subnet_mask(s, 0.3) * w * up).sum().backward()
    torch.testing.assert_close(s.grad, up * w * SCORES.sign())


def test_a_score_steps_by_its_weights_step_times_the_weight():
    """In the strategy's forward, as the code's layers (mask x weight, straight-through top-c of |s|):
    d loss / d s = sign(s) x w x d loss / d(m w), and d loss / d w = m x d loss / d(m w). So where the
    mask holds a weight, the score's gradient is the weight's times the weight: under plain SGD the scores
    move ~|w| times slower than the weights (why the subnetworks do not grow under SGD, issue 33)."""
    sc = synthetic("mlp", (1, 6, 6), [3, 3])
    s = wsn(sc)
    trainer = Trainer(sc, Protocol(epochs=1), seed=0)
    s.model.train()
    torch.manual_seed(1)
    loss, _ = s.loss(*trainer.data(0, "train").batch(torch.arange(16))[:2], 0)
    loss.backward()
    for m, score, mask in zip(s.model.layers, s.model.weight_scores, s.current_masks()):
        held = mask.bool()
        expected = score.detach().sign() * m.weight.detach() * m.weight.grad
        torch.testing.assert_close(score.grad[held], expected[held])
        assert (m.weight.grad[~held] == 0).all() and (score.grad[~held] != 0).any()


def test_pack_is_one_bit_per_weight_and_round_trips():
    m = torch.rand(7, 5, 3) > 0.5
    bits = pack(m)
    assert bits.dtype == torch.uint8 and bits.numel() == (105 + 7) // 8
    assert torch.equal(unpack(bits, m.shape, torch.device("cpu")), m)


def run(sc, n_tasks, epochs=2, **hp):
    s = wsn(sc, **hp)
    trainer = Trainer(sc, Protocol(epochs=epochs), seed=0)
    acc, logits = task0_after_each_task(s, trainer, trainer.data(0, "test"), n_tasks)
    return s, trainer, acc, logits


def test_weights_of_earlier_subnetworks_get_no_gradient():
    sc = synthetic("mlp", (1, 6, 6), [3, 3])
    s, trainer, _, _ = run(sc, 1, epochs=1)
    s.model.train()
    loss, _ = s.loss(*trainer.data(1, "train").batch(torch.arange(16))[:2], 1)
    loss.backward()
    s.after_backward(1)
    L = len(s.model.layers)
    for l, m in enumerate(s.model.layers):
        used = s.masks[0][l]
        assert (m.weight.grad[used] == 0).all()
        assert (m.bias.grad[s.masks[0][L + l]] == 0).all()
    assert any((m.weight.grad[~s.masks[0][l]] != 0).any() for l, m in enumerate(s.model.layers))
    assert any((sc_.grad != 0).any() for sc_ in s.model.weight_scores)  # scores keep training


@pytest.mark.parametrize("arch,shape,c", [("mlp", (1, 6, 6), 0.5), ("alexnet", (3, 32, 32), 0.3)])
def test_zero_forgetting(arch, shape, c):
    sc = synthetic(arch, shape, [4, 3, 5])
    s, _, acc, logits = run(sc, 3, capacity=c)
    assert acc[2] == acc[0]
    assert torch.equal(logits[1], logits[0]) and torch.equal(logits[2], logits[0])
    own = s.monitoring()["isolation"]["own_share"]
    assert all(abs(x - c) < 0.01 for row in own for x in row)  # each task's subnetwork is c of each layer
    assert not all(torch.equal(a, b) for a, b in zip(s.masks[0], s.masks[2]))  # the scores moved


def test_masks_travel_in_the_state_bit_packed():
    sc = synthetic("mlp", (1, 6, 6), [3, 3])
    s, _, _, _ = run(sc, 2, epochs=1)
    state = s.save_state()
    assert set(state["packed"]) == {0, 1} and all(b.dtype == torch.uint8 for b in state["packed"][0])
    fresh = wsn(sc)
    fresh.load_state(state)
    for t in (0, 1):
        assert all(torch.equal(a, b) for a, b in zip(fresh.masks[t], s.masks[t]))
    assert all(torch.equal(a, b) for a, b in zip(fresh.consolidated, s.consolidated))
    n_weights = sum(m.weight.numel() + m.bias.numel() for m in s.model.layers)
    assert s.monitoring()["isolation"]["packed_bytes"] <= 2 * (n_weights // 8 + len(s.model.layers) * 2)
