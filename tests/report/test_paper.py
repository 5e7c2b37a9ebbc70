"""cl_bench.report.paper: the paper's numbers and the rank correlation with Table 1."""

import json
import math

import pandas as pd
import pytest
from scipy.stats import spearmanr

from cl_bench.report.paper import (
    TABLE_1,
    correlation_text,
    format_comparison,
    rank_correlation,
    rank_correlation_interval,
)


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
    assert math.isnan(rank_correlation(_table({s: -0.5 for s in TABLE_1}))[0])  # all tied: undefined
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


def test_strategies_beyond_the_paper_are_shown_marked_and_left_out_of_the_correlation():
    ours = {"lfl": -0.5, "sgd": -0.6, "hat": 0.0, "si": 0.9}  # si would top the ranking if it counted
    text = format_comparison(_table(ours, T=6))
    assert "| si (not in the paper) | n/a | - | 0.90 | - |" in text
    assert "| hat | n/a | -0.02 | 0.00 | -0.06 |" in text  # the paper's own rows unmarked
    assert "over 3 strategies: 0.50" in text  # lfl, sgd, hat only: the Spearman of the test above


def _seeded_table(per_seed: dict[str, dict[int, float]]) -> pd.DataFrame:
    rows = []
    for s, by_seed in per_seed.items():
        mean = sum(by_seed.values()) / len(by_seed)
        rows.append(
            {
                "scenario": "mixture",
                "options": "{}",
                "strategy": s,
                "rho<=2": math.nan,
                "rho<=T": mean,
                "A<=T": 0.5,
                "T": 6,
                "rho<=T by seed": json.dumps({str(k): v for k, v in by_seed.items()}),
            }
        )
    return pd.DataFrame(rows)


def test_bootstrap_interval_over_two_seeds_spans_the_three_possible_draws():
    # With seeds a and b a draw is (a, a), (b, b) or (a, b)/(b, a): each has probability >= 1/4, so the
    # 2.5% and 97.5% percentiles are the smallest and largest of the three Spearman values, which
    # scipy computes here directly from the per-seed values (not through the code under test).
    per_seed = {
        "lfl": {0: -0.9, 1: -0.2},
        "sgd": {0: -0.5, 1: -0.6},
        "ewc": {0: -0.3, 1: -0.8},
        "hat": {0: -0.1, 1: -0.4},
    }
    paper = [TABLE_1[s][1] for s in per_seed]
    draws = [(0, 0), (1, 1), (0, 1)]
    values = [spearmanr([sum(per_seed[s][k] for k in d) / 2 for s in per_seed], paper)[0] for d in draws]
    low, high, k = rank_correlation_interval(_seeded_table(per_seed))
    assert k == 2
    assert (low, high) == (pytest.approx(min(values)), pytest.approx(max(values)))
    assert min(values) < max(values)  # the seeds disagree, so the interval is not a point


def test_bootstrap_interval_collapses_when_seeds_agree_and_needs_two_seeds():
    same = {s: {0: rT, 1: rT, 2: rT} for s, (_, rT) in TABLE_1.items()}
    assert rank_correlation_interval(_seeded_table(same)) == (pytest.approx(1.0), pytest.approx(1.0), 3)
    one = {s: {0: rT} for s, (_, rT) in TABLE_1.items()}
    low, high, k = rank_correlation_interval(_seeded_table(one))
    assert math.isnan(low) and math.isnan(high) and k == 1
    assert "bootstrap" not in correlation_text(_seeded_table(one), "mixture", 6)
    text = correlation_text(_seeded_table(same), "mixture", 6)
    assert "1.00 (95% bootstrap interval over 3 seeds: [1.00, 1.00]); ours ends at task 6" in text
    # only the seeds every strategy has count: seed 2 of one strategy alone is ignored
    ragged = dict(same, hat={0: -0.06, 1: -0.06})
    assert rank_correlation_interval(_seeded_table(ragged))[2] == 2


def test_bootstrap_interval_leaves_out_what_rank_correlation_leaves_out():
    full = {s: {0: rT, 1: rT + 0.01 * i, 2: rT - 0.01 * i} for i, (s, (_, rT)) in enumerate(TABLE_1.items())}
    base = rank_correlation_interval(_seeded_table(full))
    # a strategy without references (no per-seed rho) is not compared, as in rank_correlation
    no_refs = _seeded_table(full)
    no_refs.loc[no_refs["strategy"] == "pnn", ["rho<=T by seed", "rho<=T"]] = ["{}", math.nan]
    low, high, k = rank_correlation_interval(no_refs)
    assert k == 3 and not math.isnan(low) and rank_correlation(no_refs)[1] == 9
    # a NaN seed of one strategy drops that seed for everyone, and the text says so
    holed = dict(full, hat={0: -0.06, 1: float("nan"), 2: -0.06})
    assert rank_correlation_interval(_seeded_table(holed))[2] == 2
    assert "over the 2 seeds every strategy has" in correlation_text(_seeded_table(holed), "mixture", 8)
    assert "over 3 seeds:" in correlation_text(_seeded_table(full), "mixture", 8) and not math.isnan(base[0])


def test_bootstrap_interval_is_nan_not_a_crash_when_every_draw_ties():
    tied = {s: {0: -0.5, 1: -0.5} for s in TABLE_1}  # our means tie everywhere: no correlation defined
    low, high, k = rank_correlation_interval(_seeded_table(tied))
    assert math.isnan(low) and math.isnan(high) and k == 2
    assert "bootstrap" not in correlation_text(_seeded_table(tied), "mixture", 8)
