"""The 8-data-set mixture of HAT's main experiments (paper Sec. 4.1; the authors' ``mixture.py``).

Eight tasks, one per data set: CIFAR10, CIFAR100, MNIST, SVHN, FashionMNIST, TrafficSigns (GTSRB),
FaceScrub (100 people) and notMNIST, all as 3x32x32 images (adapted in
``cl_bench.benchmarks.datasets``), each with its own head and the reference's per-data-set
normalisation. The seed draws the task order and the validation split, as the reference does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from cl_bench.benchmarks.datasets import SPECS, RawDataset, load_prepared, normalisation, own, require, take
from cl_bench.data import data_root
from cl_bench.ranges import Range
from cl_bench.registry import option_ranges, register_scenario
from cl_bench.scenario import Scenario, Split, Task, TrainCap, check_samples, declare_task_count, stratified_subset

# The reference's data-set indices 0..7 (mixture.py): its task order is a permutation of these.
MIXTURE_DATASETS = ("cifar10", "cifar100", "mnist", "svhn", "fashion_mnist", "gtsrb", "facescrub", "notmnist")
VALID_SPLITS = ("reference", "stratified")
# The builders' option ranges (this file's and cl_bench.benchmarks.cifar's): 0 validates on the
# training set itself; 1 would leave nothing to train on.
OPTION_RANGES = {"valid_fraction": Range(at_least=0, below=1), "valid_split": Range(choices=VALID_SPLITS)}


def task_order(seed: int, n: int) -> list[int]:
    """``sklearn.utils.shuffle(np.arange(n), random_state=seed)`` of the authors' code: it
    shuffles ``arange(n)`` in place with ``RandomState(seed)``, which is what ``permutation`` does."""
    return np.random.RandomState(seed).permutation(n).tolist()


def holdout(y: Tensor, seed: int, fraction: float, how: str = "reference") -> tuple[Tensor, Tensor]:
    """(train indices, validation indices) of a training set with labels ``y``.

    ``reference``: r = shuffle(arange(n), random_state=seed); the first int(fraction * n) of r are
    validation, the rest training, in r's order (as the authors' code; tasks with equal n get the same r).
    ``stratified``: int(fraction * n) samples with the class proportions of ``y`` (largest
    remainders), drawn with a generator seeded by ``seed``; training keeps the original order.
    """
    if how not in VALID_SPLITS:
        raise ValueError(f"valid_split must be one of {VALID_SPLITS}, got {how!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"valid_fraction must be in (0, 1), got {fraction}")
    n = len(y)
    n_valid = int(fraction * n)
    if how == "reference":
        r = torch.from_numpy(np.random.RandomState(seed).permutation(n))
        return r[n_valid:], r[:n_valid]
    valid = stratified_subset(y, n_valid, torch.Generator().manual_seed(seed))
    keep = torch.ones(n, dtype=torch.bool)
    keep[valid] = False
    return keep.nonzero().flatten(), valid


def split_task(
    name: str,
    n_classes: int,
    x: Tensor,
    y: Tensor,
    test: Split,
    seed: int,
    valid_fraction: float,
    valid_split: str,
    mean,
    std,
    train_cap: TrainCap | None = None,
) -> Task:
    """A task whose validation set is held out of its training set (``valid_fraction=0``: validate on
    the training set itself, as the authors' MNIST setups do). ``train_cap`` cuts the index lists
    before any sample is copied."""
    if valid_fraction == 0:
        if train_cap is not None:
            keep, _ = train_cap.select(y, None)
            train = Split(take(x, keep), y[keep])
        else:
            train = Split(own(x), y)
        return Task(name, n_classes, train, train, test, mean, std)
    tr, va = holdout(y, seed, valid_fraction, valid_split)
    if train_cap is not None:
        keep, keep_valid = train_cap.select(y[tr], y[va])
        tr, va = tr[keep], va[keep_valid]
    return Task(name, n_classes, Split(take(x, tr), y[tr]), Split(take(x, va), y[va]), test, mean, std)


def data_record(loaded: dict[str, RawDataset], missing: list[str], allow_missing: bool) -> dict[str, Any]:
    """What the run record says about the data: per data set its source and counts, what was a
    subset, what was missing and left out."""
    subsets = [n for n, raw in loaded.items() if not raw.source["complete"]]
    return {
        "datasets": {n: raw.source for n, raw in loaded.items()},
        "subset_datasets": subsets,
        "missing_datasets": missing,
        "allow_missing": allow_missing,
        "complete": not subsets and not missing,
    }


@register_scenario(
    "mixture",
    "8 data sets (CIFAR10/100, MNIST, SVHN, FashionMNIST, GTSRB, FaceScrub, "
    "notMNIST), one task each, order by seed (HAT Sec. 4.1)",
    datasets=MIXTURE_DATASETS,
)
@option_ranges(**OPTION_RANGES)
def mixture(
    seed: int = 0,
    data_root_path=None,
    download: bool = False,
    valid_fraction: float = 0.15,
    valid_split: str = "reference",
    fixed_order: bool = False,
    allow_missing: bool = False,
    facescrub_true_rgb: bool = False,
    train_cap: TrainCap | None = None,
) -> Scenario:
    """``valid_split="reference"`` (default) reproduces the reference's split index for index, so a
    run sees the same training samples as the published ones; ``"stratified"`` keeps each class's
    share in validation (it matters for the small subsets, e.g. 17-46 faces per person).
    ``allow_missing`` runs only the tasks whose data are present, in the seed's order."""
    root = data_root(data_root_path)
    missing = require(MIXTURE_DATASETS, root, download, allow_missing, "mixture")
    order = list(range(len(MIXTURE_DATASETS))) if fixed_order else task_order(seed, len(MIXTURE_DATASETS))
    tasks, loaded = [], {}
    for idx in order:  # as the authors' code: task t is data set order[t]
        name = MIXTURE_DATASETS[idx]
        if name in missing:
            continue
        # views of the cache: only the samples each split keeps are copied, grey ones in 1 channel
        raw = loaded[name] = load_prepared(name, root, download, facescrub_true_rgb=facescrub_true_rgb, views=True)
        mean, std = normalisation(name, raw)
        tasks.append(
            split_task(
                name,
                SPECS[name].n_classes,
                raw.x_train,
                raw.y_train,
                Split(own(raw.x_test), raw.y_test),
                seed,
                valid_fraction,
                valid_split,
                mean,
                std,
                train_cap,
            )
        )
        raw.x_train = raw.x_test = None  # the task holds its own copies; free the full arrays
    if not tasks:
        raise ValueError(f"mixture: none of its data sets is present in {root}")
    info = {
        "order": [MIXTURE_DATASETS[i] for i in order if MIXTURE_DATASETS[i] not in missing],
        "reference_order": [MIXTURE_DATASETS[i] for i in order],
        "valid_split": valid_split,
        "valid_fraction": valid_fraction,
        **data_record(loaded, missing, allow_missing),
    }
    return check_samples(Scenario("mixture", tasks, (3, 32, 32), "alexnet", seed, info))


declare_task_count("mixture", len(MIXTURE_DATASETS))  # fewer with allow_missing: checked when built
