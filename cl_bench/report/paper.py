"""The HAT paper's published numbers, to print beside ours (`cl-bench report --paper`).

Only what the paper's main text states: Table 1 for the mixture (10 seeds), and the
single numbers it quotes for incremental CIFAR, permuted MNIST and split MNIST (Sec. 4.2; the rest of
those tables is in its supplementary material, which is not here). Ours come from `tables.rho_table`.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
from scipy.stats import rankdata, spearmanr

from cl_bench.report.grouping import section_title

# Table 1: (rho<=2, rho<=8), mean over 10 seeds, of each approach on the 8-data-set mixture.
TABLE_1 = {
    "lfl": (-0.73, -0.92),
    "lwf": (-0.14, -0.80),
    "sgd": (-0.20, -0.66),
    "imm_mode": (-0.11, -0.49),
    "sgd_frozen": (-0.20, -0.44),
    "imm_mean": (-0.12, -0.42),
    "ewc": (-0.08, -0.25),
    "pathnet": (-0.09, -0.17),
    "pnn": (-0.11, -0.11),
    "hat": (-0.02, -0.06),
}

# Sec. 4.2: per scenario, {strategy: {column of rho_table: value}} (rho as a ratio, A as a fraction).
QUOTED = {
    "cifar": {"hat": {"rho<=T": -0.09}, "ewc": {"rho<=T": -0.18}},  # rho<=10, EWC the best baseline
    "permuted_mnist": {"hat": {"A<=T": 0.986}},  # A<=10
    "split_mnist": {"hat": {"A<=T": 0.990}},  # A<=2
}


def paper_values(scenario: str) -> dict[str, dict[str, float]]:
    """{strategy: {"rho<=2"/"rho<=T"/"A<=T": value}} that the paper gives for this scenario."""
    if scenario == "mixture":
        return {s: {"rho<=2": r2, "rho<=T": rT} for s, (r2, rT) in TABLE_1.items()}
    return QUOTED.get(scenario, {})


def rank_correlation(table: pd.DataFrame, scenario: str = "mixture", column: str = "rho<=T") -> tuple[float, int]:
    """(Spearman's rank correlation of our ``column`` with the paper's, strategies compared): over the
    strategies that both have. NaN when fewer than three are shared."""
    paper = paper_values(scenario)
    ours = {
        r["strategy"]: r[column]
        for _, r in table[table["scenario"] == scenario].iterrows()
        if r["strategy"] in paper and column in paper[r["strategy"]] and not math.isnan(r[column])
    }
    if len(ours) < 3 or len(set(ours.values())) < 2:  # fewer than three, or all tied: undefined
        return math.nan, len(ours)
    names = sorted(ours)
    rho, _ = spearmanr([ours[n] for n in names], [paper[n][column] for n in names])
    return float(rho), len(names)


def seed_values(table: pd.DataFrame, scenario: str = "mixture") -> dict[str, dict[str, float]]:
    """{strategy: {seed: rho<=T}} of the rows ``rank_correlation`` compares: strategies in Table 1 with at
    least one seed of finite rho<=T (a seed without references has none)."""
    paper = paper_values(scenario)
    out = {}
    for _, r in table[table["scenario"] == scenario].iterrows():
        text = r.get("rho<=T by seed")
        if r["strategy"] in paper and "rho<=T" in paper[r["strategy"]] and isinstance(text, str):
            finite = {seed: v for seed, v in json.loads(text).items() if v is not None and math.isfinite(v)}
            if finite:
                out[r["strategy"]] = finite
    return out


def rank_correlation_interval(
    table: pd.DataFrame, scenario: str = "mixture", resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, int]:
    """(low, high, seeds): the percentile bootstrap interval over seeds of ``rank_correlation`` (rho<=T).

    Each resample draws the seeds with replacement, once for all strategies (a seed's runs share its
    task order, split and references), averages each strategy's rho<=T over the drawn seeds and
    correlates the means with Table 1. Only seeds every compared strategy has count. It measures how
    much the ordering depends on which seeds ran, nothing else; with k seeds there are only
    C(2k-1, k) distinct draws, so with 3 seeds the interval is coarse. NaNs when fewer than two seeds
    or three strategies are shared, or when every draw ties everywhere (no correlation defined; such
    draws are dropped)."""
    paper = paper_values(scenario)
    per_seed = seed_values(table, scenario)
    names = sorted(per_seed)
    seeds = sorted(set.intersection(*(set(v) for v in per_seed.values())), key=int) if names else []
    if len(names) < 3 or len(seeds) < 2:
        return math.nan, math.nan, len(seeds)
    values = np.array([[per_seed[n][s] for n in names] for s in seeds])  # seeds x strategies
    draws = np.random.default_rng(seed).integers(len(seeds), size=(resamples, len(seeds)))
    ranks = rankdata(values[draws].mean(axis=1), axis=1)  # Spearman: Pearson's r of the (average) ranks
    theirs = rankdata([paper[n]["rho<=T"] for n in names])
    ours_c = ranks - ranks.mean(axis=1, keepdims=True)
    theirs_c = theirs - theirs.mean()
    denom = np.sqrt((ours_c**2).sum(axis=1) * (theirs_c**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        rhos = (ours_c @ theirs_c) / denom
    rhos = rhos[np.isfinite(rhos)]
    if not rhos.size:
        return math.nan, math.nan, len(seeds)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(rhos, [tail, 100 - tail])
    return float(low), float(high), len(seeds)


def correlation_text(table: pd.DataFrame, scenario: str, T: int) -> str:
    """'..., over 10 strategies: 0.52 (95% bootstrap interval over 3 seeds: [0.21, 0.75])' in plain text
    (no markup), so that every output format states the correlation in the same words. Where some
    strategy has seeds the others lack, the interval says it uses only the shared ones."""
    rho, n = rank_correlation(table, scenario)
    low, high, k = rank_correlation_interval(table, scenario)
    per_seed = seed_values(table, scenario)
    ragged = len({frozenset(v) for v in per_seed.values()}) > 1
    which = f"the {k} seeds every strategy has" if ragged else f"{k} seeds"
    interval = "" if math.isnan(low) else f" (95% bootstrap interval over {which}: [{low:.2f}, {high:.2f}])"
    return f"over {n} strategies: {'n/a' if math.isnan(rho) else f'{rho:.2f}'}{interval}" + (
        "" if T == 8 else f"; ours ends at task {T}, the paper's at 8"
    )


def compared_columns(paper: dict[str, dict[str, float]]) -> list[str]:
    """The Table 1 columns the paper gives a number for, in table order."""
    return [c for c in ("rho<=2", "rho<=T", "A<=T") if any(c in v for v in paper.values())]


def comparison_cells(r, paper: dict[str, dict[str, float]], cols: list[str]) -> list[tuple[str, str]]:
    """(ours, the paper's) per column for one row of a rho_table, as '12.34' (accuracies in %), 'n/a' where
    ours is missing and '' where the paper gives none: what every output format of the comparison shows."""
    cells = []
    for c in cols:
        scale = 100 if c.startswith("A") else 1
        theirs = paper.get(r["strategy"], {}).get(c)
        cells.append(
            ("n/a" if math.isnan(r[c]) else f"{r[c] * scale:.2f}", "" if theirs is None else f"{theirs * scale:.2f}")
        )
    return cells


def format_comparison(table: pd.DataFrame) -> str:
    """Markdown: per section the paper's numbers beside ours (main variants), under the section's scale
    (so a reduced-scale run is never read as the paper's protocol), and for the mixture the rank
    correlation of the rho<=T column with Table 1's rho<=8."""
    lines = []
    keys = [c for c in ("scenario", "options", "protocol") if c in table]
    for key, part in table.groupby(keys, sort=False):
        scenario = key[0]
        paper = paper_values(scenario)
        if not paper:
            continue
        T = int(part["T"].max())
        cols = compared_columns(paper)
        head = " | ".join(f"{c.replace('<=T', f'<={T}')} ours | paper" for c in cols)
        lines += [f"### {section_title(key)}: ours beside the paper's", ""]
        if "scale" in part:
            lines += [str(part["scale"].iloc[0]), ""]
        lines += [f"| strategy | {head} |", "|---|" + "---:|---:|" * len(cols)]
        for _, r in part.iterrows():  # strategies beyond the paper are shown, marked, and never correlated
            mark = "" if r["strategy"] in paper else " (not in the paper)"
            cells = [f"{mine} | {theirs or '-'}" for mine, theirs in comparison_cells(r, paper, cols)]
            lines.append(f"| {r['strategy']}{mark} | " + " | ".join(cells) + " |")
        if scenario == "mixture":
            text = correlation_text(part, scenario, T)
            lines += ["", f"Spearman rank correlation of rho<={T} (ours) with Table 1's rho<=8, {text}"]
        lines.append("")
    return "\n".join(lines) if lines else "(the paper gives no number for these scenarios)"
