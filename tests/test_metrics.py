"""rho (Eq. 6), the standard metrics (ACC, BWT, FWT, forgetting) and their aggregation against
hand-computed values."""

import math

import numpy as np
import pytest

from cl_bench.metrics import (
    UndefinedMetricError,
    UndefinedRatioError,
    accuracy_per_step,
    average_accuracy,
    backward_transfer,
    backward_transfer_per_step,
    forgetting,
    forgetting_per_step,
    forgetting_ratio,
    forward_transfer,
    mean_upto,
    step_metrics,
    summarize,
    task_forgetting,
)

nan = np.nan
ACC = np.array([[0.90, nan, nan], [0.50, 0.80, nan], [0.40, 0.70, 0.60]])
RANDOM = np.array([[0.20, nan, nan], [0.33, 0.10, nan], [0.21, 0.12, 0.50]])  # only the diagonal counts
JOINT = np.array([[0.90, nan, nan], [0.85, 0.90, nan], [0.80, 0.95, 0.70]])


def test_rho_matches_hand_computation():
    rho = forgetting_ratio(ACC, RANDOM, JOINT)
    # rho[t, tau] = (A - A_R^tau) / (A_J[t, tau] - A_R^tau) - 1 with A_R^tau = RANDOM[tau, tau]
    expected = {
        (0, 0): (0.90 - 0.20) / (0.90 - 0.20) - 1,  # tau = t, equal to joint -> 0
        (1, 0): (0.50 - 0.20) / (0.85 - 0.20) - 1,
        (1, 1): (0.80 - 0.10) / (0.90 - 0.10) - 1,
        (2, 0): (0.40 - 0.20) / (0.80 - 0.20) - 1,
        (2, 1): (0.70 - 0.10) / (0.95 - 0.10) - 1,
        (2, 2): (0.60 - 0.50) / (0.70 - 0.50) - 1,
    }
    for (t, tau), value in expected.items():
        assert rho[t, tau] == pytest.approx(value, abs=1e-12)
    assert np.isnan(rho[0, 1]) and np.isnan(rho[0, 2]) and np.isnan(rho[1, 2])
    assert rho[0, 0] == 0.0
    assert rho[1, 0] == pytest.approx(-0.538461538, abs=1e-8)


def test_rho_upto_is_unweighted_mean_over_tau():
    rho = forgetting_ratio(ACC, RANDOM, JOINT)
    upto = mean_upto(rho)
    assert upto[0] == pytest.approx(0.0)
    assert upto[1] == pytest.approx(((0.3 / 0.65 - 1) + (0.7 / 0.8 - 1)) / 2)
    assert upto[2] == pytest.approx(((0.2 / 0.6 - 1) + (0.6 / 0.85 - 1) + (0.1 / 0.2 - 1)) / 3)


def test_random_and_joint_bounds():
    """rho = -1 at Random's accuracy and 0 at Joint's."""
    rho_random = forgetting_ratio(np.tile(np.diag(RANDOM), (3, 1)), RANDOM, JOINT)
    assert np.allclose(rho_random[np.tril_indices(3)], -1.0)
    assert np.allclose(forgetting_ratio(JOINT, RANDOM, JOINT)[np.tril_indices(3)], 0.0)


def test_joint_equal_to_random_is_a_clear_error():
    joint = JOINT.copy()
    joint[2, 1] = RANDOM[1, 1]
    with pytest.raises(UndefinedRatioError, match=r"task 1 after task 2"):
        forgetting_ratio(ACC, RANDOM, joint)


def test_upper_triangle_of_inputs_is_ignored():
    joint = JOINT.copy()
    joint[0, 2] = RANDOM[2, 2]  # tau > t: never used, must not trigger the division error
    rho = forgetting_ratio(ACC, RANDOM, joint)
    assert np.isnan(rho[0, 2])


def test_summary_std_and_t_interval():
    s = summarize([1.0, 2.0, 3.0])
    std = math.sqrt(2 / 3)  # numpy's ddof 0, as the reference's plot script
    assert s.mean == 2.0 and s.n == 3
    assert s.std == pytest.approx(std)
    assert s.ci95 == pytest.approx(4.302652729911275 * std / math.sqrt(3))  # t_{0.975, 2}
    one = summarize([0.5])
    assert one.mean == 0.5 and math.isnan(one.ci95)


# A 4-task run where task 0 improves after task 1 and the best accuracy of tasks 0 and 1 is not on the
# diagonal, so forgetting (from the best earlier value) and -BWT (from the diagonal) differ.
M = np.array([[0.80, nan, nan, nan], [0.90, 0.70, nan, nan], [0.60, 0.75, 0.50, nan], [0.70, 0.40, 0.65, 0.90]])


def test_average_accuracy_and_per_step():
    assert average_accuracy(M) == pytest.approx(2.65 / 4)  # (0.70 + 0.40 + 0.65 + 0.90) / 4
    assert average_accuracy(ACC) == pytest.approx(1.70 / 3)
    assert accuracy_per_step(M) == pytest.approx([0.80, 0.80, 1.85 / 3, 0.6625])


def test_backward_transfer_hand_computed():
    # ((0.70 - 0.80) + (0.40 - 0.70) + (0.65 - 0.50)) / 3
    assert backward_transfer(M) == pytest.approx(-0.25 / 3)
    assert backward_transfer(ACC) == pytest.approx(-0.30)  # ((0.40 - 0.90) + (0.70 - 0.80)) / 2
    per_step = backward_transfer_per_step(M)
    assert np.isnan(per_step[0])
    # t=1: 0.90 - 0.80; t=2: ((0.60 - 0.80) + (0.75 - 0.70)) / 2
    assert per_step[1:] == pytest.approx([0.10, -0.075, -0.25 / 3])


def test_forgetting_hand_computed():
    # tau 0: max(0.80, 0.90, 0.60) - 0.70; tau 1: max(0.70, 0.75) - 0.40; tau 2: 0.50 - 0.65 (negative)
    assert task_forgetting(M) == pytest.approx([0.20, 0.35, -0.15])
    assert forgetting(M) == pytest.approx(0.40 / 3)
    assert forgetting(ACC) == pytest.approx(0.30)  # (0.90 - 0.40 + 0.80 - 0.70) / 2
    per_step = forgetting_per_step(M)
    assert np.isnan(per_step[0])
    # t=1: 0.80 - 0.90; t=2: ((max(0.80, 0.90) - 0.60) + (0.70 - 0.75)) / 2
    assert per_step[1:] == pytest.approx([-0.10, 0.125, 0.40 / 3])


def test_step_metrics_use_only_the_tasks_seen():
    first = step_metrics(M, 0)
    assert first["acc"] == pytest.approx(0.80) and np.isnan(first["bwt"]) and np.isnan(first["forgetting"])
    assert step_metrics(M, 2) == pytest.approx({"acc": 1.85 / 3, "bwt": -0.075, "forgetting": 0.125})
    assert step_metrics(M, 3) == pytest.approx({"acc": 0.6625, "bwt": -0.25 / 3, "forgetting": 0.40 / 3})
    with pytest.raises(ValueError, match="t=4"):
        step_metrics(M, 4)


def test_forward_transfer_from_measured_superdiagonal():
    full = np.array([[0.80, 0.30, nan], [0.90, 0.70, 0.45], [0.85, 0.65, 0.60]])
    b = [0.99, 0.25, 0.30]  # b_0 is never used
    assert forward_transfer(full, b) == pytest.approx(0.10)  # ((0.30 - 0.25) + (0.45 - 0.30)) / 2
    # the measured entries above the diagonal do not leak into the other metrics
    assert average_accuracy(full) == pytest.approx(0.70)
    assert backward_transfer(full) == pytest.approx(0.0)  # ((0.85 - 0.80) + (0.65 - 0.70)) / 2
    # ((max(0.80, 0.90) - 0.85) + (0.70 - 0.65)) / 2: A[0, 1] = 0.30 (before training task 1) is not a
    # "best earlier accuracy" of task 1
    assert forgetting(full) == pytest.approx(0.05)


def test_forward_transfer_is_undefined_on_cl_bench_matrices():
    with pytest.raises(UndefinedMetricError, match=r"A\[0, 1\], A\[1, 2\].*tau <= t"):
        forward_transfer(ACC, [0.1, 0.1, 0.1])
    partial = ACC.copy()
    partial[0, 1] = 0.3
    with pytest.raises(UndefinedMetricError, match=r"A\[1, 2\] \(NaN"):
        forward_transfer(partial, [0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="one accuracy per task"):
        forward_transfer(ACC, [0.1, 0.1])


def test_single_task_bwt_forgetting_fwt_are_undefined():
    one = np.array([[0.9]])
    assert average_accuracy(one) == pytest.approx(0.9)
    for metric in (backward_transfer, forgetting, task_forgetting):
        with pytest.raises(UndefinedMetricError, match="single task"):
            metric(one)
    with pytest.raises(UndefinedMetricError, match="single task"):
        forward_transfer(one, [0.1])
    assert np.isnan(backward_transfer_per_step(one)).all() and np.isnan(forgetting_per_step(one)).all()
    assert issubclass(UndefinedMetricError, ValueError)


def test_missing_entries_make_the_metric_nan_and_the_upper_triangle_is_ignored():
    failed = M.copy()
    failed[3] = nan  # the run failed during task 3: its last row was never measured
    assert np.isnan(average_accuracy(failed)) and np.isnan(backward_transfer(failed))
    assert np.isnan(forgetting(failed))
    assert accuracy_per_step(failed)[:3] == pytest.approx([0.80, 0.80, 1.85 / 3])
    assert backward_transfer_per_step(failed)[1:3] == pytest.approx([0.10, -0.075])
    gap = M.copy()
    gap[1, 0] = nan  # a missing intermediate value is not skipped by the max over earlier accuracies
    assert np.isnan(task_forgetting(gap)[0]) and task_forgetting(gap)[1:] == pytest.approx([0.35, -0.15])
    garbage = M.copy()
    garbage[np.triu_indices(4, 1)] = 5.0
    assert average_accuracy(garbage) == pytest.approx(0.6625)
    assert backward_transfer(garbage) == pytest.approx(-0.25 / 3)
    assert forgetting(garbage) == pytest.approx(0.40 / 3)


def test_matrix_shape_is_checked():
    with pytest.raises(ValueError, match="square"):
        average_accuracy(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="square"):
        backward_transfer(np.zeros(3))
