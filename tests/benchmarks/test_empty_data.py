"""Data without samples is an error naming the task and split when the scenario is built, before any
training (it was a ZeroDivisionError in the trainer, stored as a failed run)."""

import struct

import pytest
import torch

from cl_bench.registry import build_scenario
from cl_bench.scenario import Scenario, Split, Task, check_samples


def idx(path, dims):
    n = 1
    for d in dims:
        n *= d
    path.write_bytes(bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}i", *dims) + bytes(n))


def task(n_train, n_valid=3, n_test=3):
    def split(n):
        return Split(torch.zeros(n, 4, dtype=torch.uint8), torch.zeros(n, dtype=torch.long))

    return Task("t", 2, split(n_train), split(n_valid), split(n_test), (0.5,), (0.5,))


@pytest.mark.parametrize("which", ["train", "valid", "test"])
def test_a_task_split_without_samples_is_refused_naming_it(which):
    sizes = {"n_train": 3, "n_valid": 3, "n_test": 3} | {f"n_{which}": 0}
    with pytest.raises(ValueError, match=rf"task 2 \(t\) has no {which} samples"):
        check_samples(Scenario("s", [task(3), task(**sizes)], (4,), "mlp", 0))
    with pytest.raises(ValueError, match="has no tasks"):
        check_samples(Scenario("s", [], (4,), "mlp", 0))
    ok = Scenario("s", [task(3)], (4,), "mlp", 0)
    assert check_samples(ok) is ok


def test_mnist_files_with_zero_images_are_refused_before_training(tmp_path, monkeypatch):
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    idx(raw / "train-images-idx3-ubyte", (0, 28, 28))
    idx(raw / "train-labels-idx1-ubyte", (0,))
    idx(raw / "t10k-images-idx3-ubyte", (0, 28, 28))
    idx(raw / "t10k-labels-idx1-ubyte", (0,))
    monkeypatch.setenv("CL_BENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=r"split_mnist'?: task 1 \(mnist-0-4\) has no train samples"):
        build_scenario("split_mnist", data_root=tmp_path / "root")
