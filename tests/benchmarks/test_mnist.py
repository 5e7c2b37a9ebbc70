"""Split and permuted MNIST on the real files of the test data root (as the authors' code builds them)."""

import pytest
import torch
from conftest import requires_mnist

from cl_bench.benchmarks.mnist import pixel_permutation
from cl_bench.data import DatasetMissingError
from cl_bench.registry import build_scenario

pytestmark = requires_mnist


def test_split_mnist_tasks():
    sc = build_scenario("split_mnist", seed=0)
    assert [t.name for t in sc.tasks] == ["mnist-0-4", "mnist-5-9"]
    assert [len(t.train) for t in sc.tasks] == [30596, 29404]  # official class counts 0-4 / 5-9
    assert [len(t.test) for t in sc.tasks] == [5139, 4861]
    for task in sc.tasks:
        assert task.train.x.dtype == torch.uint8 and task.train.x.shape[1:] == (1, 28, 28)
        assert set(task.train.y.unique().tolist()) == {0, 1, 2, 3, 4}
        assert task.valid.x is task.train.x  # the authors' code: validation is the training set
    assert sc.arch == "mlp"


def test_split_mnist_normalisation_matches_the_reference_constants():
    task = build_scenario("split_mnist").tasks[0]
    scale, shift = task.scale_shift()
    x = task.train.x[:100]
    assert torch.allclose(x.float() * scale + shift, (x.float() / 255 - 0.1307) / 0.3081, atol=1e-5)


def test_permuted_mnist_is_seeded_and_uses_the_same_permutations_for_every_seed():
    a, b = build_scenario("permuted_mnist", seed=0), build_scenario("permuted_mnist", seed=1)
    assert len(a.tasks) == 10 and a.input_shape == (784,)
    ids_a, ids_b = a.info["permutation_ids"], b.info["permutation_ids"]
    assert sorted(ids_a) == sorted(ids_b) == list(range(10)) and ids_a != ids_b
    assert ids_a == build_scenario("permuted_mnist", seed=0).info["permutation_ids"]
    raw = build_scenario("split_mnist")  # unpermuted source, for the pixel check
    perm = pixel_permutation(ids_a[0])
    assert not torch.equal(perm, torch.arange(784))  # no identity task (as the authors' code)
    digits04 = torch.isin(a.tasks[0].test.y, torch.arange(5))
    assert torch.equal(a.tasks[0].test.x[digits04][:50], raw.tasks[0].test.x.reshape(-1, 784)[:50][:, perm])
    by_id = {t.name: t for t in b.tasks}
    assert torch.equal(by_id[a.tasks[3].name].test.x, a.tasks[3].test.x)


def test_cap_is_stratified_and_options_are_recorded():
    sc = build_scenario("split_mnist", seed=3, max_train_per_task=1000, tasks=[1])
    task = sc.tasks[0]
    assert task.name == "mnist-5-9" and len(task.train) == 1000 and task.valid is task.train
    counts = torch.bincount(task.train.y, minlength=5).float()
    full = torch.bincount(build_scenario("split_mnist").tasks[1].train.y, minlength=5).float()
    assert torch.allclose(counts, full / full.sum() * 1000, atol=1.0)
    assert sc.info["options"]["max_train_per_task"] == 1000 and sc.info["tasks"][0]["train"] == 1000


def test_held_out_validation_option():
    task = build_scenario("split_mnist", valid_fraction=0.15).tasks[0]
    assert len(task.valid) == int(0.15 * 30596) and len(task.train) + len(task.valid) == 30596


def test_missing_dataset_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetMissingError) as err:
        build_scenario("split_mnist", data_root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz") in msg and "--download" in msg


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid: .*permuted_mnist.*split_mnist"):
        build_scenario("mnist_split")
    with pytest.raises(ValueError, match="accepts: valid_fraction"):
        build_scenario("split_mnist", n_tasks=3)


def test_truncated_idx_file_is_an_error_naming_the_file(tmp_path):
    import gzip
    import shutil

    from conftest import SHARED_DATA

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (SHARED_DATA / "MNIST" / "raw").iterdir():
        shutil.copy(f, raw / f.name)
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz", "wb") as out:
        out.write(b"\x00\x00\x08\x01" + (10000).to_bytes(4, "big") + bytes(500))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: truncated"):
        build_scenario("split_mnist", data_root=tmp_path)


def test_cap_shrinks_a_held_out_validation_split_in_proportion():
    full = build_scenario("split_mnist", valid_fraction=0.15).tasks[0]
    task = build_scenario("split_mnist", valid_fraction=0.15, max_train_per_task=1000).tasks[0]
    assert len(task.train) == 1000
    assert len(task.valid) == -(-len(full.valid) * 1000 // len(full.train))  # ceil, same ratio
