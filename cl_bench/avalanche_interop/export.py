"""Export: cl-bench scenarios as task-incremental Avalanche benchmarks (``to_avalanche``).

One stream per split (``train_stream``, ``valid_stream``, ``test_stream``), one experience per task,
task label = task index, holding float tensors normalised by cl-bench's own code path
(``Data.of(task, split, t).batch``), so a sample is bit-for-bit what cl-bench trains on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cl_bench.avalanche_interop.library import import_avalanche
from cl_bench.scenario import Data, Scenario

SPLITS = ("train", "valid", "test")


def task_dataset(task, split: str, t: int):
    """One split of task ``t`` as an Avalanche classification dataset of ``(x, y, t)`` samples: the
    floats cl-bench's ``Data.batch`` gives (the task's per-channel normalisation), labels, task label t."""
    import_avalanche()
    from avalanche.benchmarks.utils import (
        ConstantSequence,
        DataAttribute,
        TaskAwareSupervisedClassificationDataset,
    )

    data = Data.of(task, split, t)
    x, y, _ = data.batch(torch.arange(len(data), device=data.y.device))
    return TaskAwareSupervisedClassificationDataset(
        [torch.utils.data.TensorDataset(x, y)],
        data_attributes=[
            DataAttribute(y, "targets"),
            DataAttribute(ConstantSequence(t, len(y)), "targets_task_labels", use_in_getitem=True),
        ],
    )


def to_avalanche(scenario: Scenario, streams: Sequence[str] = SPLITS):
    """The scenario as a task-incremental Avalanche benchmark (a ``CLScenario``).

    One stream per split (``benchmark.train_stream`` ...), experience t = task t with task label t,
    ``classes_in_this_experience`` set. Where a task validates on its training set (the MNIST setups),
    the valid stream shares the train stream's datasets. Tensors stay on the scenario's device.
    """
    import_avalanche()
    from avalanche.benchmarks.scenarios import (
        benchmark_from_datasets,
        with_classes_timeline,
        with_task_labels,
    )

    bad = [s for s in streams if s not in SPLITS]
    if bad:
        raise ValueError(f"unknown split(s) {bad}; valid: train, valid, test")
    datasets: dict[str, list] = {s: [] for s in streams}
    for t, task in enumerate(scenario.tasks):
        made = {}
        for s in streams:
            shared = "train" if s == "valid" and task.valid.x is task.train.x else s
            if shared not in made:
                made[shared] = task_dataset(task, shared, t)
            datasets[s].append(made[shared])
    return with_classes_timeline(with_task_labels(benchmark_from_datasets(**datasets)))
