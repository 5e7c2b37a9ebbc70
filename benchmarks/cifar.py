"""Incremental CIFAR of HAT's appendix (the authors' ``cifar.py``): CIFAR10 then CIFAR100 in tasks.

Ten tasks with their own heads: CIFAR10 labels {0,1}, {2,3}, ..., {8,9} (task ids 0..4, labels
y mod 2) and CIFAR100 fine labels 0-19, ..., 80-99 (consecutive ids, not superclasses; task ids
5..9, labels y mod 20). The seed shuffles the ten task ids (seed 0: [2, 8, 4, 9, 1, 6, 7, 3, 0, 5])
and draws a 10% validation split per task (as the authors' code: 10% here, 15% in the mixture; the paper says 15%).
"""

from __future__ import annotations

from cl_bench.benchmarks.datasets import SPECS, load_prepared, require
from cl_bench.benchmarks.mixture import OPTION_RANGES, data_record, split_task, task_order
from cl_bench.data import data_root
from cl_bench.registry import option_ranges, register_scenario
from cl_bench.scenario import Scenario, Split, check_samples, declare_task_count

N_CIFAR10_TASKS, N_CIFAR100_TASKS = 5, 5


def task_classes(task_id: int) -> tuple[str, int, int]:
    """(data set, first label, classes per task) of reference task id 0..9."""
    if task_id < N_CIFAR10_TASKS:
        return "cifar10", 2 * task_id, 2
    return "cifar100", 20 * (task_id - N_CIFAR10_TASKS), 20


@register_scenario(
    "cifar",
    "Incremental CIFAR: 5 CIFAR10 tasks of 2 classes + 5 CIFAR100 tasks of 20, order by seed (HAT appendix)",
    datasets=("cifar10", "cifar100"),
)
@option_ranges(**OPTION_RANGES)
def cifar(
    seed: int = 0,
    data_root_path=None,
    download: bool = False,
    valid_fraction: float = 0.10,
    valid_split: str = "reference",
    allow_missing: bool = False,
) -> Scenario:
    """See ``mixture`` for ``valid_split`` and ``allow_missing`` (here: drop the tasks of a missing
    data set, keep the seed's order of the rest)."""
    root = data_root(data_root_path)
    missing = require(("cifar10", "cifar100"), root, download, allow_missing, "cifar")
    loaded = {name: load_prepared(name, root, download) for name in ("cifar10", "cifar100") if name not in missing}
    order = task_order(seed, N_CIFAR10_TASKS + N_CIFAR100_TASKS)  # as the authors' code
    tasks, kept = [], []
    for task_id in order:
        name, lo, k = task_classes(task_id)
        if name in missing:
            continue
        raw = loaded[name]
        tr = (raw.y_train >= lo) & (raw.y_train < lo + k)  # boolean masks keep the data-set order
        te = (raw.y_test >= lo) & (raw.y_test < lo + k)
        test = Split(raw.x_test[te], raw.y_test[te] - lo)  # = y mod k within this task
        label = f"{name}-{task_id if name == 'cifar10' else task_id - N_CIFAR10_TASKS}"  # reference names
        tasks.append(
            split_task(
                label,
                k,
                raw.x_train[tr],
                raw.y_train[tr] - lo,
                test,
                seed,
                valid_fraction,
                valid_split,
                SPECS[name].mean,
                SPECS[name].std,
            )
        )
        kept.append(task_id)
    if not tasks:
        raise ValueError(f"cifar: neither CIFAR10 nor CIFAR100 is present in {root}")
    for raw in loaded.values():
        raw.x_train = raw.x_test = None  # the tasks hold their own copies
    info = {
        "task_ids": kept,
        "reference_order": order,
        "valid_split": valid_split,
        "valid_fraction": valid_fraction,
        **data_record(loaded, missing, allow_missing),
    }
    return check_samples(Scenario("cifar", tasks, (3, 32, 32), "alexnet", seed, info))


declare_task_count("cifar", N_CIFAR10_TASKS + N_CIFAR100_TASKS)  # fewer with allow_missing: checked when built
