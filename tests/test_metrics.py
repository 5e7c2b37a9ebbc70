"""rho (Eq. 6) and its aggregation against hand-computed values."""
import math

import numpy as np
import pytest

from cl_bench.metrics import UndefinedRatioError, forgetting_ratio, mean_upto, summarize

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
