"""The 8-data-set mixture (as the authors' code): order and validation split drawn from the seed as the
reference draws them, per-data-set normalisation, missing and subset data recorded."""

import warnings

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from cl_bench.benchmarks.datasets import SPECS, DatasetsMissingError, SubsetWarning, load_prepared
from cl_bench.benchmarks.mixture import MIXTURE_DATASETS, holdout, task_order
from cl_bench.registry import build_scenario

SMALL = ("facescrub", "notmnist", "cifar10")  # the small shared sets, for fast scenario builds

# the authors' task orders, computed with sklearn 1.9.1 (names as in the authors' code)
REFERENCE_ORDERS = {
    0: "facescrub, mnist, cifar100, notmnist, svhn, cifar10, traffic, fashion",
    1: "notmnist, mnist, cifar100, facescrub, cifar10, fashion, svhn, traffic",
    2: "fashion, cifar100, facescrub, mnist, svhn, notmnist, traffic, cifar10",
    3: "traffic, notmnist, fashion, facescrub, svhn, cifar100, cifar10, mnist",
}
TABLE_NAMES = {
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "mnist": "mnist",
    "svhn": "svhn",
    "fashion_mnist": "fashion",
    "gtsrb": "traffic",
    "facescrub": "facescrub",
    "notmnist": "notmnist",
}


@pytest.fixture(autouse=True)
def quiet_subsets():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubsetWarning)
        yield


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    """A data root with only the small shared sets (links into the test data root)."""
    if not all((SHARED_DATA / n).is_dir() for n in SMALL):
        pytest.skip(f"{SMALL} not all in {SHARED_DATA}")
    root = tmp_path_factory.mktemp("mixture-data")
    for name in SMALL:
        (root / name).symlink_to(SHARED_DATA / name)
    return root


@pytest.mark.parametrize("seed", sorted(REFERENCE_ORDERS))
def test_task_order_matches_the_reference_table(seed):
    names = [TABLE_NAMES[MIXTURE_DATASETS[i]] for i in task_order(seed, 8)]
    assert ", ".join(names) == REFERENCE_ORDERS[seed]
    assert [SPECS[n].ref_index for n in MIXTURE_DATASETS] == list(range(8))


def test_reference_holdout_is_sklearn_shuffle_of_arange():
    y = torch.arange(1000) % 7
    tr, va = holdout(y, seed=3, fraction=0.15)
    r = np.arange(1000)
    np.random.RandomState(3).shuffle(r)  # what sklearn.utils.shuffle(arange(n), random_state=3) does
    assert va.tolist() == r[:150].tolist() and tr.tolist() == r[150:].tolist()
    tr2, va2 = holdout(y, seed=4, fraction=0.15)
    assert not torch.equal(va, va2)


def test_stratified_holdout_keeps_class_shares():
    y = torch.cat([torch.full((n,), c) for c, n in enumerate([17, 46, 30, 100])])
    tr, va = holdout(y, seed=0, fraction=0.15, how="stratified")
    assert len(va) == int(0.15 * len(y)) and len(tr) + len(va) == len(y)
    assert not set(tr.tolist()) & set(va.tolist())
    share = torch.bincount(y[va], minlength=4).double()
    assert (share - torch.tensor([17, 46, 30, 100]) * 0.15).abs().max() <= 1
    assert torch.equal(va, holdout(y, seed=0, fraction=0.15, how="stratified")[1])
    with pytest.raises(ValueError, match="valid_split"):
        holdout(y, 0, 0.15, "random")


def test_missing_data_sets_fail_with_one_error_listing_all(small_root):
    with pytest.raises(DatasetsMissingError) as err:
        build_scenario("mixture", data_root=small_root)
    text = str(err.value)
    assert err.value.missing == ["cifar100", "mnist", "svhn", "fashion_mnist", "gtsrb"]
    assert "allow_missing=true" in text and "download=False" in text
    assert str(small_root / "cifar-100-python" / "train") in text and str(small_root / "svhn") in text


def test_available_subset_in_the_seeds_order_with_a_record(small_root):
    sc = build_scenario("mixture", seed=0, data_root=small_root, allow_missing=True)
    assert [t.name for t in sc.tasks] == ["facescrub", "notmnist", "cifar10"]  # seed 0 order, filtered
    assert sc.arch == "alexnet" and sc.input_shape == (3, 32, 32)
    info = sc.info
    assert info["missing_datasets"] == ["cifar100", "mnist", "svhn", "fashion_mnist", "gtsrb"]
    assert info["allow_missing"] and not info["complete"]
    assert sorted(info["subset_datasets"]) == sorted(SMALL)
    assert info["datasets"]["notmnist"]["train"] == 9000 and len(info["datasets"]["cifar10"]["files"]) == 2
    for task in sc.tasks:
        spec = SPECS[task.name]
        assert task.n_classes == spec.n_classes and (task.mean, task.std) == (spec.mean, spec.std)
        assert task.train.x.shape[1:] == (3, 32, 32) and task.train.x.dtype == torch.uint8


def test_split_is_the_seeded_holdout_without_overlap(small_root):
    sc = build_scenario("mixture", seed=2, data_root=small_root, allow_missing=True)
    task = next(t for t in sc.tasks if t.name == "notmnist")
    raw = load_prepared("notmnist", small_root)
    tr, va = holdout(raw.y_train, seed=2, fraction=0.15)
    assert len(task.valid) == int(0.15 * 9000) == 1350 and len(task.train) == 9000 - 1350
    assert not set(tr.tolist()) & set(va.tolist()) and len(set(tr.tolist()) | set(va.tolist())) == 9000
    assert torch.equal(task.train.x, raw.x_train[tr]) and torch.equal(task.valid.y, raw.y_train[va])
    assert torch.equal(task.test.x, raw.x_test)  # test set untouched
    again = build_scenario("mixture", seed=2, data_root=small_root, allow_missing=True)
    assert all(torch.equal(a.valid.x, b.valid.x) for a, b in zip(sc.tasks, again.tasks))


def test_options_stratified_fixed_order_and_true_rgb(small_root):
    sc = build_scenario(
        "mixture",
        seed=1,
        data_root=small_root,
        allow_missing=True,
        fixed_order=True,
        valid_split="stratified",
        facescrub_true_rgb=True,
    )
    assert [t.name for t in sc.tasks] == ["cifar10", "facescrub", "notmnist"]  # index order 0..7
    faces = sc.tasks[1]
    per_class = torch.bincount(faces.valid.y, minlength=20)
    assert per_class.min() >= 2  # 17-46 faces per person: every person in validation
    assert faces.mean != SPECS["facescrub"].mean  # measured on the true-RGB images
    assert sc.info["datasets"]["facescrub"]["facescrub_true_rgb"] is True


def test_reduced_scale_knobs_apply_after_the_builder(small_root):
    sc = build_scenario(
        "mixture", seed=0, data_root=small_root, allow_missing=True, max_train_per_task=200, tasks=[1, 2]
    )
    assert [t.name for t in sc.tasks] == ["notmnist", "cifar10"]
    assert [len(t.train) for t in sc.tasks] == [200, 200]
    assert sc.info["options"]["allow_missing"] is True


@pytest.mark.parametrize("valid_fraction", [0.15, 0])
def test_a_cap_applied_while_building_keeps_the_samples_a_cap_after_building_keeps(small_root, valid_fraction):
    """The mixture cuts index lists before copying (build_scenario hands it the cap); ``tasks`` in the
    same order takes the other path, the cap applied to built tasks: the same samples, split by split."""
    kw = dict(seed=3, data_root=small_root, allow_missing=True, max_train_per_task=50, valid_fraction=valid_fraction)
    while_building = build_scenario("mixture", **kw)
    after = build_scenario("mixture", tasks=list(range(len(while_building.tasks))), **kw)
    assert len(while_building.tasks) == 3
    for a, b in zip(while_building.tasks, after.tasks):
        assert a.name == b.name and len(a.train) == 50
        assert (a.valid is a.train) == (b.valid is b.train) == (valid_fraction == 0)
        for split in ("train", "valid", "test"):
            assert torch.equal(getattr(a, split).x, getattr(b, split).x)
            assert torch.equal(getattr(a, split).y, getattr(b, split).y)


@pytest.mark.skipif(not (SHARED_DATA / "gtsrb").is_dir(), reason="shared data missing")
def test_whole_shared_root():
    sc = build_scenario("mixture", seed=0, data_root=SHARED_DATA, allow_missing=True)
    names = [t.name for t in sc.tasks]
    assert names == [
        n
        for n in ("facescrub", "mnist", "cifar100", "notmnist", "svhn", "cifar10", "gtsrb", "fashion_mnist")
        if n not in sc.info["missing_datasets"]
    ]
    mnist = sc.tasks[names.index("mnist")]
    assert (len(mnist.train), len(mnist.valid), len(mnist.test)) == (51000, 9000, 10000)
    assert {"mnist", "gtsrb", "fashion_mnist"}.isdisjoint(sc.info["subset_datasets"])
