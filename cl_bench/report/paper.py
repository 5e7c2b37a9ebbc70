"""The HAT paper's published numbers, to print beside ours (`cl-bench report --paper`).

Only what the paper's main text states: Table 1 for the mixture (10 seeds), and the
single numbers it quotes for incremental CIFAR, permuted MNIST and split MNIST (Sec. 4.2; the rest of
those tables is in its supplementary material, which is not here). Ours come from `tables.rho_table`.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy.stats import spearmanr

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
    if len(ours) < 3:
        return math.nan, len(ours)
    names = sorted(ours)
    rho, _ = spearmanr([ours[n] for n in names], [paper[n][column] for n in names])
    return float(rho), len(names)


def compared_columns(paper: dict[str, dict[str, float]]) -> list[str]:
    """The Table 1 columns the paper gives a number for, in table order."""
    return [c for c in ("rho<=2", "rho<=T", "A<=T") if any(c in v for v in paper.values())]


def comparison_cells(r, paper: dict[str, dict[str, float]], cols: list[str]) -> list[tuple[str, str]]:
    """(ours, the paper's) per column for one row of a rho_table, as '12.34' (accuracies in %), 'n/a' where
    ours is missing and '' where the paper gives none: what every output format of the comparison shows."""
    cells = []
    for c in cols:
        scale = 100 if c.startswith("A") else 1
        theirs = paper[r["strategy"]].get(c)
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
        for _, r in part.iterrows():
            if r["strategy"] not in paper:
                continue
            cells = [f"{mine} | {theirs}" for mine, theirs in comparison_cells(r, paper, cols)]
            lines.append(f"| {r['strategy']} | " + " | ".join(cells) + " |")
        if scenario == "mixture":
            rho, n = rank_correlation(part, scenario)
            lines += [
                "",
                f"Spearman rank correlation of rho<={T} (ours) with Table 1's rho<=8, over {n} "
                f"strategies: {'n/a' if math.isnan(rho) else f'{rho:.2f}'}"
                + ("" if T == 8 else f" (ours ends at task {T}, the paper's at 8)"),
            ]
        lines.append("")
    return "\n".join(lines) if lines else "(the paper gives no number for these scenarios)"
