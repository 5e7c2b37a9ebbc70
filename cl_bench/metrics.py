"""Metrics as pure functions of accuracy matrices (rows t = after task t, columns tau = task tested).

Matrices are square (T x T) with NaN above the diagonal (tau > t is never measured).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


class UndefinedRatioError(ValueError):
    """Joint and Random have the same accuracy on a task: Eq. 6 divides by zero."""


def forgetting_ratio(acc: np.ndarray, acc_random: np.ndarray, acc_joint: np.ndarray) -> np.ndarray:
    """rho[t, tau] of Eq. 6, as the reference's plot_results.py (reference §7.1).

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
            f"(A_J = A_R = {acc_joint[t, tau]:.4f}); the Joint reference did not learn this task")
    rho = np.full((T, T), np.nan)
    rho[lower] = ((acc - a_r) / np.where(lower, denom, 1.0) - 1.0)[lower]  # Eq. 6
    return rho


def mean_upto(matrix: np.ndarray) -> np.ndarray:
    """Row means over tau <= t: rho^{<=t} from rho (paper Sec. 4.1), or A^{<=t} from an accuracy matrix."""
    matrix = np.asarray(matrix, dtype=float)
    return np.array([matrix[t, :t + 1].mean() for t in range(matrix.shape[0])])


@dataclass
class Summary:
    mean: float
    std: float  # numpy's std (ddof 0), as the reference's plot script
    ci95: float  # half-width of the 95% Student-t interval: t.ppf(0.975, n-1) * std / sqrt(n)
    n: int


def summarize(values: Sequence[float]) -> Summary:
    """Mean over seeds with both deviations the paper's Table 1 could mean (reference §7.1, §9 #16)."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    std = float(v.std()) if n else math.nan
    ci = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
    return Summary(float(v.mean()) if n else math.nan, std, ci, n)
