"""Metrics as pure functions of accuracy matrices (rows t = after task t, columns tau = task tested).

Matrices are square (T x T) with NaN above the diagonal (tau > t is never measured). Owns the HAT
paper's forgetting ratio, the field's standard metrics (ACC, BWT, FWT, forgetting) and the summary over
seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class UndefinedRatioError(ValueError):
    """Joint and Random have the same accuracy on a task: Eq. 6 divides by zero."""


def forgetting_ratio(acc: np.ndarray, acc_random: np.ndarray, acc_joint: np.ndarray) -> np.ndarray:
    """rho[t, tau] of Eq. 6, as the authors' plot_results.py computes it.

    A_R^tau is the random classifier's diagonal acc_random[tau, tau]; A_J^{tau<=t} = acc_joint[t, tau].
    """
    acc, acc_random, acc_joint = (np.asarray(a, dtype=float) for a in (acc, acc_random, acc_joint))
    T = acc.shape[0]
    a_r = np.diag(acc_random)[None, :]  # broadcast over rows t
    denom = acc_joint - a_r
    lower = np.tril(np.ones((T, T), dtype=bool))
    zero = lower & np.isclose(denom, 0.0, atol=1e-12)
    if zero.any():
        t, tau = map(int, np.argwhere(zero)[0])
        raise UndefinedRatioError(
            f"forgetting ratio undefined: Joint accuracy equals Random's on task {tau} after task {t} "
            f"(A_J = A_R = {acc_joint[t, tau]:.4f}); the Joint reference did not learn this task"
        )
    rho = np.full((T, T), np.nan)
    rho[lower] = ((acc - a_r) / np.where(lower, denom, 1.0) - 1.0)[lower]  # Eq. 6
    return rho


def mean_upto(matrix: np.ndarray) -> np.ndarray:
    """Row means over tau <= t: rho^{<=t} from rho (paper Sec. 4.1), or A^{<=t} from an accuracy matrix."""
    matrix = np.asarray(matrix, dtype=float)
    return np.array([matrix[t, : t + 1].mean() for t in range(matrix.shape[0])])


# --- The field's standard metrics -------------------------------------------------------------------
# Notation: A[t, tau] is the test accuracy on task tau after training tasks 0..t (0-based), T tasks.
# References: Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017 (ACC,
# BWT, FWT); Chaudhry et al., "Riemannian Walk for Incremental Learning", ECCV 2018 (average accuracy and
# forgetting after each task); Chaudhry et al., "Efficient Lifelong Learning with A-GEM", ICLR 2019.
#
# Missing entries: a NaN where a metric needs a measured value (a run that failed keeps only the rows it
# finished) makes that metric NaN, as numpy's mean does; entries a metric does not use are ignored,
# whatever they hold. A metric undefined by its formula raises UndefinedMetricError instead.


class UndefinedMetricError(ValueError):
    """The metric's formula has nothing to average: one task only (BWT, forgetting), or the accuracies it
    needs were never measured (FWT on a matrix without A[tau-1, tau])."""


def _square(acc) -> np.ndarray:
    acc = np.asarray(acc, dtype=float)
    if acc.ndim != 2 or acc.shape[0] != acc.shape[1] or acc.shape[0] == 0:
        raise ValueError(f"an accuracy matrix must be square T x T with T >= 1, got shape {acc.shape}")
    return acc


def _need_two_tasks(acc: np.ndarray, metric: str) -> None:
    if acc.shape[0] < 2:
        raise UndefinedMetricError(
            f"{metric} is undefined with a single task: it compares each earlier "
            "task's accuracy with its accuracy after later tasks, and there is none"
        )


def average_accuracy(acc) -> float:
    """ACC = (1/T) sum_{tau=0}^{T-1} A[T-1, tau]: mean test accuracy over all tasks after the last one
    (Lopez-Paz & Ranzato 2017; A_T of Chaudhry et al. 2018). NaN if the last row is incomplete."""
    acc = _square(acc)
    return float(acc[-1].mean())


def accuracy_per_step(acc) -> np.ndarray:
    """ACC_t = (1/(t+1)) sum_{tau<=t} A[t, tau] for each t (Chaudhry et al. 2018's A_k): the same as
    ``mean_upto(acc)``; the last entry is ``average_accuracy(acc)``."""
    return mean_upto(_square(acc))


def backward_transfer(acc) -> float:
    """BWT = (1/(T-1)) sum_{tau=0}^{T-2} (A[T-1, tau] - A[tau, tau]) (Lopez-Paz & Ranzato 2017): how
    training later tasks changed each earlier task's accuracy; negative is forgetting.

    Raises UndefinedMetricError when T = 1."""
    acc = _square(acc)
    _need_two_tasks(acc, "backward transfer (BWT)")
    return float(_bwt_at(acc, acc.shape[0] - 1))


def backward_transfer_per_step(acc) -> np.ndarray:
    """BWT_t = (1/t) sum_{tau<t} (A[t, tau] - A[tau, tau]) for each t: BWT of the first t+1 tasks. Entry 0
    is NaN (undefined with one task); the last entry is ``backward_transfer(acc)``."""
    acc = _square(acc)
    return np.array([math.nan] + [_bwt_at(acc, t) for t in range(1, acc.shape[0])])


def _bwt_at(acc: np.ndarray, t: int) -> float:
    return float((acc[t, :t] - np.diag(acc)[:t]).mean())


def task_forgetting(acc) -> np.ndarray:
    """f_tau = max_{t in [tau, T-2]} A[t, tau] - A[T-1, tau] for each tau < T-1 (Chaudhry et al. 2018): the
    drop from the best accuracy task tau ever had to its final accuracy (negative if it ended above its
    best earlier value). Length T-1; raises UndefinedMetricError when T = 1."""
    acc = _square(acc)
    _need_two_tasks(acc, "forgetting")
    return _forgetting_at(acc, acc.shape[0] - 1)


def forgetting(acc) -> float:
    """F = (1/(T-1)) sum_{tau=0}^{T-2} f_tau, the mean of ``task_forgetting`` (Chaudhry et al. 2018's F_k
    at k = T). Raises UndefinedMetricError when T = 1."""
    return float(task_forgetting(acc).mean())


def forgetting_per_step(acc) -> np.ndarray:
    """F_t = (1/t) sum_{tau<t} (max_{l in [tau, t-1]} A[l, tau] - A[t, tau]) for each t (Chaudhry et al.
    2018's F_k after each task). Entry 0 is NaN (undefined with one task); the last is ``forgetting(acc)``."""
    acc = _square(acc)
    return np.array([math.nan] + [float(_forgetting_at(acc, t).mean()) for t in range(1, acc.shape[0])])


def _forgetting_at(acc: np.ndarray, t: int) -> np.ndarray:
    # np.max, not nanmax: a missing earlier accuracy must not be skipped silently
    return np.array([np.max(acc[tau:t, tau]) - acc[t, tau] for tau in range(t)])


def forward_transfer(acc, random_init: Sequence[float]) -> float:
    """FWT = (1/(T-1)) sum_{tau=1}^{T-1} (A[tau-1, tau] - b_tau) (Lopez-Paz & Ranzato 2017): how much
    training tasks 0..tau-1 helps task tau before it is trained, against ``random_init[tau]`` = b_tau, the
    test accuracy on task tau of the model at random initialisation (``random_init[0]`` is not used).

    ``acc`` must hold the entries just above the diagonal, A[tau-1, tau] (task tau tested before training
    on it). cl-bench's runs never measure tau > t (NaN above the diagonal), so on their matrices FWT is
    undefined: this raises UndefinedMetricError naming the missing entries, rather than returning a number
    from entries that do not exist. Also raises it when T = 1."""
    acc = _square(acc)
    T = acc.shape[0]
    b = np.asarray(random_init, dtype=float)
    if b.shape != (T,):
        raise ValueError(f"random_init must hold one accuracy per task ({T}), got shape {b.shape}")
    if T < 2:
        raise UndefinedMetricError(
            "forward transfer (FWT) is undefined with a single task: no task is tested after training an earlier one"
        )
    before = np.array([acc[tau - 1, tau] for tau in range(1, T)])
    missing = [f"A[{tau - 1}, {tau}]" for tau in range(1, T) if np.isnan(before[tau - 1])]
    if missing:
        raise UndefinedMetricError(
            f"forward transfer (FWT) needs each task's accuracy before training on it, {', '.join(missing)} "
            "(NaN here): cl-bench runs test only the tasks trained so far (tau <= t), so their matrices "
            "do not have these entries"
        )
    if np.isnan(b[1:]).any():
        raise UndefinedMetricError("forward transfer (FWT) needs random_init[tau] for every tau >= 1 (NaN here)")
    return float((before - b[1:]).mean())


def step_metrics(acc, t: int) -> dict[str, float]:
    """The standard metrics after task t, on the tasks seen so far (the submatrix A[:t+1, :t+1]):
    {"acc": ACC_t, "bwt": BWT_t, "forgetting": F_t}; "bwt" and "forgetting" are NaN at t = 0, where
    they are undefined (no earlier task). For per-task logging and run summaries."""
    acc = _square(acc)
    if not 0 <= t < acc.shape[0]:
        raise ValueError(f"task index t={t} is outside the matrix's {acc.shape[0]} tasks")
    seen = acc[: t + 1, : t + 1]
    if t == 0:
        return {"acc": average_accuracy(seen), "bwt": math.nan, "forgetting": math.nan}
    return {"acc": average_accuracy(seen), "bwt": backward_transfer(seen), "forgetting": forgetting(seen)}


FWT_UNDEFINED = (
    "FWT needs each task's accuracy before it is trained (the entries above the diagonal) and a random-init "
    "reference; cl-bench's runs measure a task only after training it, so FWT is n/a"
)


def final_metrics(acc) -> dict[str, float]:
    """ACC, BWT and forgetting after the last task, and FWT, for a run's accuracy matrix: NaN where
    undefined (one task; a failed run's unmeasured rows; FWT always, see ``FWT_UNDEFINED``)."""
    nan = {"acc": math.nan, "bwt": math.nan, "forgetting": math.nan, "fwt": math.nan}
    if acc is None or np.size(acc) == 0:
        return nan
    return {**nan, **step_metrics(acc, np.shape(acc)[0] - 1)}


@dataclass
class Summary:
    mean: float
    std: float  # numpy's std (ddof 0), as the reference's plot script
    ci95: float  # half-width of the 95% Student-t interval: t.ppf(0.975, n-1) * std / sqrt(n)
    n: int


def summarize(values: Sequence[float]) -> Summary:
    """Mean over seeds with both deviations the paper's Table 1 could mean: it says "standard deviation",
    the authors' plot script prints a 95% t-interval."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    std = float(v.std()) if n else math.nan
    from scipy import stats  # here, not at the top: a run imports this module, and scipy costs ~1 s

    ci = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
    return Summary(float(v.mean()) if n else math.nan, std, ci, n)


def format_accuracy_matrix(acc: np.ndarray, names: list[str] | None = None) -> str:
    """A markdown accuracy matrix (%, rows: after task t, columns: task tau). Here, not in
    cl_bench.report, so that a run prints it without importing the report's pandas and matplotlib."""
    T = acc.shape[0]
    names = names or [str(i + 1) for i in range(T)]
    lines = ["| after \\ on | " + " | ".join(names) + " |", "|---|" + "---:|" * T]
    for t in range(T):
        cells = ["" if np.isnan(acc[t, tau]) else f"{100 * acc[t, tau]:.1f}" for tau in range(T)]
        lines.append(f"| {names[t]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
