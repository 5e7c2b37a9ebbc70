"""cl_bench.report.paper: the paper's numbers and the rank correlation with Table 1."""

import math

import pandas as pd
import pytest

from cl_bench.report.paper import TABLE_1, format_comparison, rank_correlation


def _table(values: dict[str, float], scenario="mixture", T=8) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"scenario": scenario, "options": "{}", "strategy": s, "rho<=2": math.nan, "rho<=T": v, "A<=T": 0.5, "T": T}
            for s, v in values.items()
        ]
    )


def test_rank_correlation_is_spearman_over_shared_strategies():
    same = {s: rT for s, (_, rT) in TABLE_1.items()}
    assert rank_correlation(_table(same)) == (pytest.approx(1.0), 10)
    reversed_ = {s: -rT for s, (_, rT) in TABLE_1.items()}
    assert rank_correlation(_table(reversed_))[0] == pytest.approx(-1.0)
    # three strategies, paper order lfl < sgd < hat; ours sgd < lfl < hat: ranks (2,1,3) vs (1,2,3)
    # Spearman = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 24 = 0.5
    ours = {"lfl": -0.5, "sgd": -0.6, "hat": 0.0, "joint": 0.0}  # joint: not in Table 1, ignored
    assert rank_correlation(_table(ours)) == (pytest.approx(0.5), 3)
    assert math.isnan(rank_correlation(_table({"hat": 0.0, "sgd": -1.0}))[0])


def test_comparison_puts_the_paper_beside_ours():
    text = format_comparison(_table({"hat": -0.10, "sgd": -0.30}, T=6))
    assert "| hat | n/a | -0.02 | -0.10 | -0.06 |" in text
    assert "ours ends at task 6" in text
    split = format_comparison(_table({"hat": 0.0}, scenario="split_mnist", T=2))
    assert "| hat | 50.00 | 99.00 |" in split
    assert "no number" in format_comparison(_table({"hat": 0.0}, scenario="elsewhere"))
