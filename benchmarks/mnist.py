"""Split MNIST and permuted MNIST, as the authors' code builds them (``pmnist.py``, ``mnist2.py``)."""

from __future__ import annotations

import numpy as np
import torch

from cl_bench.benchmarks.datasets import load_idx_dataset
from cl_bench.data import data_root
from cl_bench.ranges import Range
from cl_bench.registry import option_ranges, register_scenario
from cl_bench.scenario import Scenario, Split, Task, check_samples, declare_task_count

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
VALID_FRACTION = Range(at_least=0, below=1)  # 0: validate on the training set itself (the reference)


def _train_valid(x, y, seed: int, valid_fraction: float) -> tuple[Split, Split]:
    """The reference has no held-out validation on the MNIST setups: validation is the training set
    itself (the default). ``valid_fraction > 0`` holds out a seeded random part."""
    if valid_fraction <= 0:
        return Split(x, y), Split(x, y)
    order = torch.from_numpy(np.random.RandomState(seed).permutation(len(y)))
    n_valid = int(valid_fraction * len(y))
    return Split(x[order[n_valid:]], y[order[n_valid:]]), Split(x[order[:n_valid]], y[order[:n_valid]])


def _source_info(raw) -> dict:
    return {"datasets": {raw.name: raw.source}}


@register_scenario("split_mnist", "MNIST digits 0-4 then 5-9, two 5-class heads (Lee et al. 2017)", datasets=("MNIST",))
@option_ranges(valid_fraction=VALID_FRACTION)
def split_mnist(seed: int = 0, data_root_path=None, download: bool = False, valid_fraction: float = 0.0) -> Scenario:
    raw = load_idx_dataset("MNIST", data_root(data_root_path), download)
    tasks = []
    for digits in [(0, 1, 2, 3, 4), (5, 6, 7, 8, 9)]:  # fixed order, as the reference
        lo = digits[0]
        tr = (raw.y_train >= lo) & (raw.y_train <= digits[-1])
        te = (raw.y_test >= lo) & (raw.y_test <= digits[-1])
        x, y = raw.x_train[tr].unsqueeze(1), raw.y_train[tr] - lo  # labels remapped to 0..4
        train, valid = _train_valid(x, y, seed, valid_fraction)
        test = Split(raw.x_test[te].unsqueeze(1), raw.y_test[te] - lo)
        tasks.append(Task(f"mnist-{lo}-{digits[-1]}", 5, train, valid, test, MNIST_MEAN, MNIST_STD))
    return check_samples(Scenario("split_mnist", tasks, (1, 28, 28), "mlp", seed, _source_info(raw)))


declare_task_count("split_mnist", 2)


N_PERMUTATIONS = 10


def pixel_permutation(perm_id: int) -> torch.Tensor:
    """Permutation number ``perm_id``: seed-independent, so every seed uses the same 10 permutations in
    its own order. (The authors' code cached whichever permutations its first run made.)"""
    return torch.from_numpy(np.random.RandomState(1000 + perm_id).permutation(28 * 28))


@register_scenario(
    "permuted_mnist", "10 tasks of MNIST under fixed pixel permutations, order by seed", datasets=("MNIST",)
)
@option_ranges(valid_fraction=VALID_FRACTION, n_tasks=Range(at_least=1, at_most=N_PERMUTATIONS))
def permuted_mnist(
    seed: int = 0, data_root_path=None, download: bool = False, valid_fraction: float = 0.0, n_tasks: int = 10
) -> Scenario:
    raw = load_idx_dataset("MNIST", data_root(data_root_path), download)
    order = np.random.RandomState(seed).permutation(N_PERMUTATIONS)[:n_tasks]  # as sklearn.utils.shuffle
    x_train, x_test = raw.x_train.reshape(-1, 784), raw.x_test.reshape(-1, 784)
    tasks = []
    for perm_id in order.tolist():
        perm = pixel_permutation(perm_id)  # all 10 tasks permuted, none is the identity (reference)
        train, valid = _train_valid(x_train[:, perm], raw.y_train, seed, valid_fraction)
        test = Split(x_test[:, perm], raw.y_test)
        tasks.append(Task(f"pmnist-{perm_id}", 10, train, valid, test, MNIST_MEAN, MNIST_STD))
    info = _source_info(raw) | {"permutation_ids": order.tolist()}
    return check_samples(Scenario("permuted_mnist", tasks, (784,), "mlp", seed, info))


declare_task_count("permuted_mnist", lambda options: options.get("n_tasks") or N_PERMUTATIONS)
