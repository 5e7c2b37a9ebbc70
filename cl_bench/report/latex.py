"""Table 1 and the paper comparison as LaTeX (booktabs), and nothing else: every line of the output is
LaTeX (the provenance in captions and notes under each table, the launch commands and the footer as
``%`` comments), so ``cl-bench report --latex [--paper] > table.tex`` can be ``\\input`` as is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cl_bench.report.grouping import section_slug
from cl_bench.report.paper import compared_columns, comparison_cells, correlation_text, paper_values
from cl_bench.report.tables import cell_seeds, row_label, row_notes, section_heading, sections_of, table_columns

UNICODE = {
    "≤": r"$\leq$",
    "ρ": r"$\rho$",
    "τ": r"$\tau$",
    "±": r"$\pm$",
    "×": r"$\times$",
    "–": "--",
    "—": "---",
    "’": "'",
    "`": "",
    "…": r"\ldots{}",
}
SPECIAL = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "_": r"\_",
    "%": r"\%",
    "&": r"\&",
    "#": r"\#",
    "$": r"\$",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def tex(s: str) -> str:
    """Plain text as LaTeX: its special characters escaped, the few non-ASCII symbols the report writes
    as math."""
    out = re.sub(r"[\\{}_%&#$~^]", lambda m: SPECIAL[m.group()], str(s))
    return "".join(UNICODE.get(ch, ch) for ch in out)


def _comment(s: str) -> str:
    return "\n".join("% " + line for line in str(s).splitlines())


def _tex_cell(r, key: str, scale: float = 1.0) -> str:
    if np.isnan(r[key]):
        return "n/a"
    if cell_seeds(r, key) < 2:
        return f"${r[key] * scale:.2f}$"
    std = f" ({r[f'{key} std'] * scale:.2f})"
    ci = "" if np.isnan(r[f"{key} ci95"]) else f" $\\pm${r[f'{key} ci95'] * scale:.2f}"
    return f"${r[key] * scale:.2f}${std}{ci}"


def _tex_head(column: str, T: int) -> str:
    return {"rho<=2": r"$\rho^{\leq 2}$", "rho<=T": rf"$\rho^{{\leq {T}}}$", "A<=T": rf"$A^{{\leq {T}}}$ (\%)"}[column]


def format_latex(
    df: pd.DataFrame, extras: Mapping[tuple, Sequence[str]] | None = None, footer: str | None = None
) -> str:
    """Table 1 as the paper sets it: one table per section, rows sorted with the best rho^{<=T} last;
    cells 'mean (std) +-ci95'; n = runs (seeds) per row, 'k/n' when only k of them have their references.
    The caption states the scale and whether it is the paper's protocol; a note under the table says
    which configuration each row is, why rho is n/a, and ``extras`` (HAT's health, hidden variants)."""
    head = ["% needs \\usepackage{booktabs}"] + ([_comment(footer)] if footer else [])
    if df.empty:
        return "\n".join(head + ["% (no finished runs match)"])
    out = head
    for key, part in sections_of(df):
        T = int(part["T"].iloc[0])
        cols = table_columns(T)
        what = (
            "after the second ($\\rho^{\\leq 2}$) and the last " if T > 2 else "after the last "
        ) + f"($\\rho^{{\\leq {T}}}$) task"
        notes = row_notes(part, launch=False) + list((extras or {}).get(key, []))
        out += [
            "\\begin{table}[t]",
            "\\centering",
            (
                f"\\caption{{Average forgetting ratio {what}, and mean accuracy $A^{{\\leq {T}}}$, on "
                f"{tex(section_heading(key, part))}: mean over $n$ runs, standard deviation in parentheses, "
                f"half-width of the 95\\% Student-$t$ interval after $\\pm$. {tex(part['scale'].iloc[0])}}}"
            ),
            f"\\label{{tab:rho-{section_slug(key).replace('_', '-')}}}",
            "\\begin{tabular}{lr" + "l" * len(cols) + "}",
            "\\toprule",
            "Approach & $n$ & " + " & ".join(_tex_head(c, T) for c in cols) + " \\\\",
            "\\midrule",
        ]
        for _, r in part.iterrows():
            n_cell = str(r["seeds"]) if r["rho seeds"] == r["seeds"] else f"{r['rho seeds']}/{r['seeds']}"
            cells = [_tex_cell(r, c, 100 if c.startswith("A") else 1) for c in cols]
            out.append(f"{tex(row_label(r))} & {n_cell} & " + " & ".join(cells) + " \\\\")
        out += [
            "\\bottomrule",
            "\\end{tabular}",
            "\\par\\smallskip",
            "{\\footnotesize " + " \\par ".join(tex(n) for n in notes) + "\\par}",
        ]
        launch = sorted({c for cmds in part["launch"] for c in str(cmds).split("; ") if c})
        if launch:
            out.append(_comment("rho n/a: the matching references would come from:\n" + "\n".join(launch)))
        out += ["\\end{table}", ""]
    return "\n".join(out)


def format_comparison_latex(table: pd.DataFrame) -> str:
    """The paper's published numbers beside ours (paper.format_comparison) as LaTeX tables, one per
    section the paper gives numbers for, each caption stating our scale."""
    out = []
    for key, part in sections_of(table):
        paper = paper_values(key[0])
        if not paper:
            continue
        T = int(part["T"].max())
        cols = compared_columns(paper)
        heads = " & ".join(f"{_tex_head(c, T)} ours & paper" for c in cols)
        out += [
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{Ours beside the paper's published numbers, {tex(section_heading(key, part))}. "
            f"{tex(part['scale'].iloc[0])}}}",
            "\\begin{tabular}{l" + "rr" * len(cols) + "}",
            "\\toprule",
            f"Approach & {heads} \\\\",
            "\\midrule",
        ]
        for _, r in part.iterrows():
            if r["strategy"] not in paper:
                continue
            cells = [f"${x}$" if x not in ("", "n/a") else x for pair in comparison_cells(r, paper, cols) for x in pair]
            out.append(f"{tex(row_label(r))} & " + " & ".join(cells) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}"]
        if key[0] == "mixture":
            out.append(
                f"\\par\\smallskip{{\\footnotesize Spearman rank correlation of our "
                f"$\\rho^{{\\leq {T}}}$ with Table 1's $\\rho^{{\\leq 8}}$ "
                f"{tex(correlation_text(part, key[0], T))}.\\par}}"
            )
        out += ["\\end{table}", ""]
    return "\n".join(out) if out else "% (the paper gives no number for these scenarios)"
