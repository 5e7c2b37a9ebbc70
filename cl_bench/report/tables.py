"""Table 1 and the accuracy matrices as text: the numbers (``rho_table``) and their markdown and LaTeX.

``rho_table`` has one row per section and strategy variant: mean over seeds of rho^{<=2}, rho^{<=T} and
A^{<=T}, with numpy's std (ddof 0) and the 95% t-interval half-width. Every format writes a cell as
'mean (std) [+-ci95]', the mean alone when one seed stands behind it, and n/a where rho has no references.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from cl_bench.metrics import summarize
from cl_bench.report.grouping import section_slug, section_title, variants
from cl_bench.report.style import strategy_label
from cl_bench.results import REFERENCES, RunMetrics


def rho_table(metrics: list[RunMetrics], include_references: bool = False,
              all_variants: bool = False) -> pd.DataFrame:
    """One row per (scenario + options, strategy variant): mean over seeds of rho^{<=2}, rho^{<=T} and
    A^{<=T}, with numpy's std (ddof 0) and the 95% t-interval half-width (reference §7.1), sorted by
    rho^{<=T} (best last, as Table 1). ``seeds`` counts the runs, ``rho seeds`` those with references."""
    var = variants([m.record for m in metrics])
    groups: dict[tuple, list[RunMetrics]] = {}
    for m in metrics:
        v = var[m.record.run_id]
        if (include_references or m.record.strategy not in REFERENCES) and (all_variants or v.main):
            groups.setdefault((v.section, m.record.strategy, v.label), []).append(m)
    rows = []
    for ((scenario, options), strategy, label), ms in groups.items():
        T = ms[0].record.n_tasks
        with_refs = [m for m in ms if m.rho_upto is not None]
        row = {"scenario": scenario, "options": options, "strategy": strategy, "variant": label,
               "name": label if all_variants else strategy,
               "seeds": len(ms), "rho seeds": len(with_refs), "T": T}
        for label_, values in [
            ("rho<=2", [m.rho_upto[min(1, T - 1)] for m in with_refs]),  # after the second task
            ("rho<=T", [m.rho_upto[-1] for m in with_refs]),  # after the last task
            ("A<=T", [m.acc_upto[-1] for m in ms]),
        ]:
            s = summarize(values)
            row |= {label_: s.mean, f"{label_} std": s.std, f"{label_} ci95": s.ci95}
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    return df.sort_values(["scenario", "options", "rho<=T", "A<=T", "variant"],
                          na_position="first").reset_index(drop=True)


def table_columns(T: int) -> list[str]:
    """Table 1's metric columns: rho<=2 and rho<=T, one column when T <= 2 (they coincide), and A<=T."""
    return (["rho<=2", "rho<=T"] if T > 2 else ["rho<=T"]) + ["A<=T"]


def cell_seeds(r, key: str) -> int:
    """Seeds behind a cell of a ``rho_table`` row: rho cells count the runs with references."""
    return int(r["rho seeds"] if key.startswith("rho") else r["seeds"])


def row_label(r) -> str:
    """A row's strategy in the paper's spelling, with its settings when variants are shown."""
    return strategy_label(r["strategy"]) + r["name"][len(r["strategy"]):]


def format_markdown(df: pd.DataFrame) -> str:
    """Table 1 style: 'mean (std) [+-ci95]' per cell, a block per scenario + options."""
    if df.empty:
        return "(no finished runs match)"
    lines = []
    for (scenario, options), part in df.groupby(["scenario", "options"], sort=False):
        T = int(part["T"].iloc[0])
        cols = table_columns(T)
        head = [c.replace("<=T", f"<={T}") + (" (%)" if c.startswith("A") else "") for c in cols]
        lines += [f"### {section_title((scenario, options))} (T = {T})", "",
                  "| strategy | seeds | " + " | ".join(head) + " |", "|---|---:|" + "---:|" * len(cols)]
        for _, r in part.iterrows():
            cells = [_cell(r, c, 100 if c.startswith("A") else 1) for c in cols]
            lines.append(f"| {r['name']} | {_seeds(r)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("mean (std) [+-95% t-interval half-width] over seeds; std is numpy's (ddof 0), as the "
                 "reference's plot script. rho needs Joint and Random runs of the same seed.")
    return "\n".join(lines)


def _seeds(r) -> str:
    return str(r["seeds"]) if r["rho seeds"] == r["seeds"] else f"{r['seeds']} (rho: {r['rho seeds']})"


def _cell(r, key: str, scale: float = 1.0) -> str:
    if np.isnan(r[key]):
        return "n/a"
    if cell_seeds(r, key) < 2:  # one seed: no spread to show
        return f"{r[key] * scale:.2f}"
    ci = "" if np.isnan(r[f"{key} ci95"]) else f" [+-{r[f'{key} ci95'] * scale:.2f}]"
    return f"{r[key] * scale:.2f} ({r[f'{key} std'] * scale:.2f}){ci}"


def _tex(s: str) -> str:
    return re.sub(r"([_%&#$])", r"\\\1", s)


def _tex_cell(r, key: str, scale: float = 1.0) -> str:
    if np.isnan(r[key]):
        return "--"
    if cell_seeds(r, key) < 2:
        return f"${r[key] * scale:.2f}$"
    std = f" ({r[f'{key} std'] * scale:.2f})"
    ci = "" if np.isnan(r[f"{key} ci95"]) else f" $\\pm${r[f'{key} ci95'] * scale:.2f}"
    return f"${r[key] * scale:.2f}${std}{ci}"


def _tex_head(column: str, T: int) -> str:
    return {"rho<=2": r"$\rho^{\leq 2}$", "rho<=T": rf"$\rho^{{\leq {T}}}$",
            "A<=T": rf"$A^{{\leq {T}}}$ (\%)"}[column]


def format_latex(df: pd.DataFrame) -> str:
    """Table 1 as the paper sets it (booktabs): one table per scenario + options, rows sorted with the
    best rho^{<=T} last; cells 'mean (std) +-ci95'; n = runs (seeds) per row, 'k/n' when only k of
    them have their references."""
    if df.empty:
        return "% (no finished runs match)"
    out = ["% needs \\usepackage{booktabs}"]
    for (scenario, options), part in df.groupby(["scenario", "options"], sort=False):
        T = int(part["T"].iloc[0])
        cols = table_columns(T)
        title = _tex(section_title((scenario, options)))
        what = ("after the second ($\\rho^{\\leq 2}$) and the last " if T > 2 else "after the last ") + \
            f"($\\rho^{{\\leq {T}}}$) task"
        out += [
            "\\begin{table}[t]", "\\centering",
            (f"\\caption{{Average forgetting ratio {what}, and mean accuracy $A^{{\\leq {T}}}$, on {title}: "
             f"mean over $n$ runs, standard deviation in parentheses, half-width of the 95\\% Student-$t$ "
             f"interval after $\\pm$.}}"),
            f"\\label{{tab:rho-{section_slug((scenario, options)).replace('_', '-')}}}",
            "\\begin{tabular}{lr" + "l" * len(cols) + "}", "\\toprule",
            "Approach & $n$ & " + " & ".join(_tex_head(c, T) for c in cols) + " \\\\",
            "\\midrule"]
        for _, r in part.iterrows():
            name = _tex(row_label(r))
            n_cell = str(r["seeds"]) if r["rho seeds"] == r["seeds"] else f"{r['rho seeds']}/{r['seeds']}"
            cells = [_tex_cell(r, c, 100 if c.startswith("A") else 1) for c in cols]
            out.append(f"{name} & {n_cell} & " + " & ".join(cells) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)


def format_accuracy_matrix(acc: np.ndarray, names: list[str] | None = None) -> str:
    """A markdown accuracy matrix (%, rows: after task t, columns: task tau)."""
    T = acc.shape[0]
    names = names or [str(i + 1) for i in range(T)]
    lines = ["| after \\ on | " + " | ".join(names) + " |", "|---|" + "---:|" * T]
    for t in range(T):
        cells = ["" if np.isnan(acc[t, tau]) else f"{100 * acc[t, tau]:.1f}" for tau in range(T)]
        lines.append(f"| {names[t]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
