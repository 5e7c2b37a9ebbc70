"""Incremental CIFAR (as the authors' code) on small files in the official CIFAR formats, written here."""

import warnings

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from test_datasets import write_cifar10, write_cifar100

from cl_bench.benchmarks.cifar import task_classes
from cl_bench.benchmarks.datasets import DatasetsMissingError, SubsetWarning
from cl_bench.benchmarks.mixture import holdout
from cl_bench.registry import build_scenario

SEED0_ORDER = [2, 8, 4, 9, 1, 6, 7, 3, 0, 5]  # the authors' seed-0 order


@pytest.fixture(autouse=True)
def quiet_subsets():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubsetWarning)
        yield


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    monkeypatch.setenv("CL_BENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    files = {
        "cifar10": write_cifar10(root, per_batch=40, n_test=50),
        "cifar100": write_cifar100(root, per_class=10, n_test=300),
    }
    return root, files


def test_ten_tasks_in_the_seeds_order_with_remapped_labels(cifar_root):
    root, files = cifar_root
    sc = build_scenario("cifar", seed=0, data_root=root)
    assert sc.info["task_ids"] == SEED0_ORDER and sc.arch == "alexnet"
    assert [t.name for t in sc.tasks][:4] == ["cifar10-2", "cifar100-3", "cifar10-4", "cifar100-4"]
    for task, task_id in zip(sc.tasks, SEED0_ORDER):
        name, lo, k = task_classes(task_id)
        f = files[name]
        assert task.n_classes == k == (2 if task_id < 5 else 20)
        # every image of the task's classes, and only those; pixel 0 of each image holds its label
        in_task = (f["y_train"] >= lo) & (f["y_train"] < lo + k)
        n = int(in_task.sum())
        assert len(task.train) + len(task.valid) == n and len(task.valid) == int(0.10 * n)  # 10%, as the authors' code
        for split in (task.train, task.valid, task.test):
            original = split.x[:, 0, 0, 0].long()  # the coded original label
            assert torch.equal(split.y, original - lo) and torch.equal(split.y, original % k)
        te = (f["y_test"] >= lo) & (f["y_test"] < lo + k)
        assert torch.equal(task.test.x.reshape(-1, 3072), torch.from_numpy(f["x_test"][te]))  # order kept
        assert task.mean == pytest.approx((125.3 / 255, 123.0 / 255, 113.9 / 255))


def test_validation_is_the_reference_holdout_and_disjoint(cifar_root):
    root, files = cifar_root
    sc = build_scenario("cifar", seed=5, data_root=root)
    task = sc.tasks[0]
    name, lo, k = task_classes(sc.info["task_ids"][0])
    mask = (files[name]["y_train"] >= lo) & (files[name]["y_train"] < lo + k)
    x = torch.from_numpy(files[name]["x_train"][mask]).reshape(-1, 3, 32, 32)
    tr, va = holdout(torch.from_numpy(files[name]["y_train"][mask]), seed=5, fraction=0.10)
    assert torch.equal(task.train.x, x[tr]) and torch.equal(task.valid.x, x[va])
    assert not set(tr.tolist()) & set(va.tolist())
    assert sc.info["task_ids"] == np.random.RandomState(5).permutation(10).tolist()


def test_missing_cifar100(cifar_root):
    root, _ = cifar_root
    import shutil

    shutil.rmtree(root / "cifar-100-python")
    with pytest.raises(DatasetsMissingError, match="cifar100"):
        build_scenario("cifar", seed=0, data_root=root)
    sc = build_scenario("cifar", seed=0, data_root=root, allow_missing=True)
    assert sc.info["task_ids"] == [2, 4, 1, 3, 0] and sc.info["missing_datasets"] == ["cifar100"]
    assert [t.name for t in sc.tasks] == ["cifar10-2", "cifar10-4", "cifar10-1", "cifar10-3", "cifar10-0"]


@pytest.mark.skipif(not (SHARED_DATA / "cifar10").is_dir(), reason="shared cifar10 missing")
def test_shared_cifar10_subset():
    sc = build_scenario("cifar", seed=0, data_root=SHARED_DATA, allow_missing=True)
    assert len(sc.tasks) == 5 and sc.info["subset_datasets"] == ["cifar10"]
    assert sum(len(t.train) + len(t.valid) for t in sc.tasks) == 4000
    assert sum(len(t.test) for t in sc.tasks) == 1000
