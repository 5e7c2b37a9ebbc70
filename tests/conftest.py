import os
from pathlib import Path

import pytest
import torch

from cl_bench.scenario import Scenario, Split, Task

SHARED_DATA = (Path(__file__).resolve().parents[2] / "shared" / "data").resolve()  # as data_root() does
os.environ.setdefault("CL_BENCH_DATA", str(SHARED_DATA))
torch.set_num_threads(1)  # the test tensors are tiny: a second thread costs more than it gives


def make_scenario(
    n_tasks=2, n_classes=3, n_train=90, n_test=60, shape=(1, 6, 6), arch="mlp", seed=0, learnable=True
) -> Scenario:
    """A tiny synthetic scenario: uint8 images whose class is written in a few pixels (so nets can learn
    it) plus noise."""
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(n_tasks):
        splits = []
        for n in (n_train, n_train // 3, n_test):
            y = torch.randint(n_classes, (n,), generator=g)
            x = torch.randint(0, 60, (n, *shape), generator=g, dtype=torch.uint8)
            if learnable:
                flat = x.view(n, -1)
                code = (y + t) % n_classes  # tasks disagree, so sequential training forgets
                for c in range(n_classes):
                    flat[code == c, c * 3 : (c + 1) * 3] = 250
            splits.append(Split(x, y))
        tasks.append(Task(f"task{t}", n_classes, *splits, mean=(0.2,) * shape[0], std=(0.3,) * shape[0]))
    return Scenario("tiny", tasks, shape, arch, seed)


def synthetic(arch, shape, heads, n=32, seed=0) -> Scenario:
    """Random uint8 images and labels: one task per head size, valid = train, a separate test split."""
    g = torch.Generator().manual_seed(seed)

    def split(k):
        return Split(
            torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8), torch.randint(0, k, (n,), generator=g)
        )

    tasks = []
    for i, k in enumerate(heads):
        train = split(k)
        tasks.append(Task(f"task{i}", k, train, train, split(k), (0.5,) * shape[0], (0.25,) * shape[0]))
    return Scenario("synthetic", tasks, tuple(shape), arch, seed)


def task0_after_each_task(strategy, trainer, test, n_tasks):
    """Train tasks 0..n_tasks-1 in order; after each, task 0's test accuracy and eval-mode logits."""
    acc, logits = [], []
    for t in range(n_tasks):
        strategy.before_task(t)
        strategy.train_task(t, trainer)
        strategy.after_task(t)
        acc.append(trainer.test_accuracy(strategy, 0))
        strategy.model.eval()
        with torch.no_grad():
            logits.append(strategy.forward(*test.batch(torch.arange(len(test)))[::2]))
    return acc, logits


@pytest.fixture
def tiny_scenario():
    return make_scenario


requires_mnist = pytest.mark.skipif(
    not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason=f"MNIST not found under {SHARED_DATA}"
)


# ---- the data root as cl-bench reads it, and what the suite skipped -------------------------------------
# CL_BENCH_DATA first (set above to ../shared/data only when it was unset), as cl_bench.data.data_root does:
# `CL_BENCH_DATA=/path python -m pytest` then runs the data tests against /path, wherever the checkout is.
from cl_bench.data import data_root  # noqa: E402

SHARED_DATA = data_root()
requires_mnist = pytest.mark.skipif(
    not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason=f"MNIST not found under {SHARED_DATA} (CL_BENCH_DATA)"
)


def _skip_kind(reason: str) -> str:
    if str(SHARED_DATA) in reason or "CL_BENCH_DATA" in reason:
        return "missing data"
    if "not installed" in reason or "could not import" in reason or "pip install" in reason:
        return "missing extras or tools"
    return "other"


def pytest_terminal_summary(terminalreporter):
    """One closing line: how many tests skipped for missing data, for missing extras, for other reasons."""
    counts: dict[str, dict[str, int]] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        kind = counts.setdefault(_skip_kind(reason), {})
        kind[reason] = kind.get(reason, 0) + 1
    if not counts:
        return
    parts = []
    for kind in ("missing data", "missing extras or tools", "other"):
        if kind in counts:
            top = max(counts[kind], key=counts[kind].get)
            parts.append(f"{sum(counts[kind].values())} for {kind} (e.g. {top[:90]})")
    terminalreporter.write_line(f"skipped: {'; '.join(parts)}; data root {SHARED_DATA}")
