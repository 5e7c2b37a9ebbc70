"""GPM: the authors' threshold rule (main_cifar100.py / main_pmnist.py update_GPM), the projection,
conv representations from unfolded patches, frozen biases."""

import math

import pytest
import torch
from conftest import synthetic

from cl_bench.strategies.gpm import GPM, authors_thresholds, grow_basis, project_out, representation
from cl_bench.trainer import Protocol, Trainer


def gpm(sc, **hp):
    torch.manual_seed(0)
    return GPM(sc, GPM.parse_hparams(hp))


def with_spectrum(energies, dim=6, n=5, seed=0):
    """A dim x n matrix whose squared singular values are ``energies`` (orthonormal U, V)."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    k = len(energies)
    return U[:, :k] @ torch.diag(torch.tensor(energies, dtype=torch.float64).sqrt()) @ V[:, :k].T, U[:, :k]


@pytest.mark.parametrize("threshold,r", [(0.4, 0), (0.5, 0), (0.6, 1), (0.85, 2), (0.9, 2), (0.96, 3), (0.99, 3)])
def test_first_task_keeps_the_prefix_below_the_threshold(threshold, r):
    """Energy shares 0.5, 0.3, 0.15, 0.05: cumsum 0.5, 0.8, 0.95, 1.0; r = #(cumsum < eps), no +1."""
    rep, U = with_spectrum([5.0, 3.0, 1.5, 0.5])
    basis = grow_basis(None, rep, threshold)
    assert basis.shape == (6, r)
    if r:  # the leading singular directions, up to sign
        torch.testing.assert_close((basis.T @ U[:, :r]).abs(), torch.eye(r, dtype=torch.float64))


@pytest.mark.parametrize("threshold,added", [(0.5, 0), (0.6, 0), (0.85, 1), (0.95, 2)])
def test_later_tasks_start_from_the_energy_already_in_the_basis(threshold, added):
    """R has energy 6 along e1 (in the basis), 3 along e2, 1 along e3: the basis holds 0.6; e2 adds 0.3
    (0.9), e3 0.1. Directions are added while the accumulated energy is below eps."""
    rep = torch.zeros(4, 3, dtype=torch.float64)
    rep[0, 0], rep[1, 1], rep[2, 2] = math.sqrt(6), math.sqrt(3), 1.0
    basis = torch.zeros(4, 1, dtype=torch.float64)
    basis[0, 0] = 1
    grown = grow_basis(basis, rep, threshold)
    assert grown.shape == (4, 1 + added)
    expected = [1, 2][:added]  # e2 first, then e3
    for col, axis in zip(grown.T[1:], expected):
        assert abs(abs(float(col[axis])) - 1) < 1e-12


def test_basis_is_capped_at_the_layer_dimension():
    rep, _ = with_spectrum([1.0, 1.0, 1.0], dim=3, n=3)
    full = grow_basis(grow_basis(None, rep, 0.99), rep + 0.1 * torch.randn(3, 3, dtype=torch.float64), 1.0)
    assert full.shape[1] <= 3


def test_projected_gradient_is_orthogonal_to_a_hand_made_basis():
    g = torch.Generator().manual_seed(1)
    M, _ = torch.linalg.qr(torch.randn(12, 4, generator=g))  # 4 orthonormal directions of a 12-dim input
    grad = torch.randn(5, 3, 2, 2, generator=g)  # a conv's gradient: 5 filters of 3 x 2 x 2 = 12 inputs
    out = project_out(grad, M @ M.T)
    assert out.shape == grad.shape
    torch.testing.assert_close(out.reshape(5, 12) @ M, torch.zeros(5, 4), atol=1e-6, rtol=0)
    # and only the component in span(M) was removed
    torch.testing.assert_close(out.reshape(5, 12) + grad.reshape(5, 12) @ M @ M.T, grad.reshape(5, 12))


def test_conv_representation_is_the_codes_patch_loop():
    """Columns: for each sample, each output position (row-major), the input patch (C, k, k) flattened."""
    conv = torch.nn.Conv2d(2, 4, 3)
    x = torch.randn(2, 2, 5, 5)
    mat = representation(conv, x)
    cols = [x[n, :, i : i + 3, j : j + 3].reshape(-1) for n in range(2) for i in range(3) for j in range(3)]
    torch.testing.assert_close(mat, torch.stack(cols, 1).double())
    lin = torch.nn.Linear(7, 3)
    h = torch.randn(5, 7)
    torch.testing.assert_close(representation(lin, h), h.T.double())


def test_the_codes_thresholds():
    assert authors_thresholds("mlp", 3, 4) == [0.95, 0.99, 0.99]
    assert authors_thresholds("alexnet", 5, 2) == pytest.approx([0.976] * 5)
    s = gpm(synthetic("alexnet", (3, 32, 32), [3], n=1), threshold=0.9, threshold_increase=0.01)
    assert s.thresholds(3) == pytest.approx([0.93] * 5)


def test_training_projects_and_freezes_biases():
    sc = synthetic("mlp", (1, 6, 6), [3, 3, 3], n=64)
    s = gpm(sc)
    trainer = Trainer(sc, Protocol(epochs=2), seed=0)
    trainer.learn(s, stop=1)  # task 0: bases built
    assert [b.shape[0] for b in s.bases] == [36, 800, 800] and all(b.shape[1] > 0 for b in s.bases)
    biases = [m.bias.detach().clone() for m in s.model.layers]
    head0 = {k: v.clone() for k, v in s.model.heads[0].state_dict().items()}
    first = [b.clone() for b in s.bases]
    trainer.learn(s, first_task=1, stop=3)
    assert all(torch.equal(m.bias, b) for m, b in zip(s.model.layers, biases))
    assert all(torch.equal(v, head0[k]) for k, v in s.model.heads[0].state_dict().items())
    for old, new in zip(first, s.bases):  # bases only grow, keeping the old directions
        assert torch.equal(new[:, : old.shape[1]], old)
    sizes = s.monitoring()["gpm"]["basis_sizes"]
    assert len(sizes) == 3 and all(a <= b for a, b in zip(sizes[0], sizes[2]))


def test_bad_threshold_increase_is_rejected():
    from cl_bench.strategy import HparamError

    with pytest.raises(HparamError, match="threshold_increase"):
        GPM.parse_hparams({"threshold_increase": -0.5})


def test_alexnet_bases_live_in_the_unfolded_patch_spaces():
    sc = synthetic("alexnet", (3, 32, 32), [3, 3], n=32)
    s = gpm(sc)
    Trainer(sc, Protocol(epochs=1), seed=0).learn(s)
    assert [b.shape[0] for b in s.bases] == [3 * 4 * 4, 64 * 3 * 3, 128 * 2 * 2, 256 * 2 * 2, 2048]
    assert s.monitoring()["gpm"]["thresholds"][1] == pytest.approx([0.973] * 5)
