"""Table 1 and the accuracy matrices as text: the numbers (``rho_table``) and their markdown.

``rho_table`` has one row per section (one scale) and strategy variant: mean over seeds of rho^{<=2},
rho^{<=T} and A^{<=T}, with numpy's std (ddof 0) and the 95% t-interval half-width, and what the text
around a table needs: the row's configuration in words and its seeds, why rho is n/a and the commands
that would fix it, the section's scale and whether it is the paper's protocol. Every format writes a
cell as 'mean (std) [+-ci95]', the mean alone when one seed stands behind it, and n/a where rho has no
matching references. The LaTeX forms are in latex.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cl_bench.metrics import FWT_UNDEFINED, final_metrics, summarize
from cl_bench.metrics import format_accuracy_matrix as format_accuracy_matrix  # its home before 0.2.0
from cl_bench.registry import is_strategy_file
from cl_bench.report.grouping import runnable, section_title, task_names, variants
from cl_bench.report.provenance import section_scale
from cl_bench.report.style import strategy_label
from cl_bench.report.variants import Variant
from cl_bench.results import REFERENCES, RunMetrics

LEGEND = (
    "mean (std) [+-95% t-interval half-width] over seeds; std is numpy's (ddof 0), as the reference's "
    "plot script. rho is computed only against the Joint and Random runs of the same scenario, options, "
    "seed, protocol and data; n/a otherwise."
)
SECTION_COLUMNS = ["scenario", "options", "protocol"]


def rho_table(
    metrics: list[RunMetrics],
    include_references: bool = False,
    all_variants: bool = False,
    var: Mapping[str, Variant] | None = None,
    store: str | None = None,
) -> pd.DataFrame:
    """One row per (section, strategy variant), sorted by rho^{<=T} (best last, as Table 1). ``seeds``
    counts the runs, ``rho seeds`` those with matching references. ``var``: the variants (from analyse);
    computed here by the same rule when not given. ``store``: named in the launch commands."""
    var = var or variants([m.record for m in metrics])
    by_section: dict[tuple, list[RunMetrics]] = {}
    groups: dict[tuple, list[RunMetrics]] = {}
    for m in metrics:
        v = var[m.record.run_id]
        by_section.setdefault(v.section, []).append(m)
        if (include_references or m.record.strategy not in REFERENCES) and (all_variants or v.main):
            groups.setdefault((v.section, m.record.strategy, v.config), []).append(m)
    scales = {}
    for key, ms in by_section.items():
        shown = [m for m in ms if var[m.record.run_id].main] or ms
        records = [m.record for m in ms]
        scales[key] = section_scale(records, json.loads(key[2]), task_names(records), [m.record.seed for m in shown])
    rows = []
    for (key, strategy, _config), ms in groups.items():
        v = var[ms[0].record.run_id]
        T = ms[0].record.n_tasks
        with_refs = [m for m in ms if m.rho_upto is not None]
        scale = scales[key]
        shown = v.settings if all_variants else ""
        short = strategy_label(strategy) if is_strategy_file(strategy) else strategy  # a file: its name
        row = {
            "scenario": key[0],
            "options": key[1],
            "protocol": key[2],
            "section": section_title(key),
            "strategy": strategy,
            "variant": v.label,
            "settings": shown,
            "name": short + shown,
            "configuration": v.why,
            "seed list": ",".join(map(str, sorted({m.record.seed for m in ms}))),
            "seeds": len(ms),
            "rho seeds": len(with_refs),
            "T": T,
        }
        for label_, values in [
            ("rho<=2", [m.rho_upto[min(1, T - 1)] for m in with_refs]),  # after the second task
            ("rho<=T", [m.rho_upto[-1] for m in with_refs]),  # after the last task
            ("A<=T", [m.acc_upto[-1] for m in ms]),
            *[(name, [final_metrics(m.record.accuracy)[key] for m in ms]) for key, name in CL_METRICS.items()],
        ]:
            s = summarize(values)
            row |= {label_: s.mean, f"{label_} std": s.std, f"{label_} ci95": s.ci95}
        row |= {
            # per seed, for statistics over seeds (the paper comparison's bootstrap interval); JSON text
            "rho<=T by seed": json.dumps({str(m.record.seed): m.rho_upto[-1] for m in with_refs}),
            "rho n/a": _reasons(ms),
            "launch": "; ".join(sorted({runnable(c, store) for m in ms for c in m.commands})),
            "scale": scale.text(),
            "paper protocol": scale.paper,
        }
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    return df.sort_values([*SECTION_COLUMNS, "rho<=T", "A<=T", "variant"], na_position="first").reset_index(drop=True)


CL_METRICS = {"acc": "ACC", "bwt": "BWT", "forgetting": "forgetting", "fwt": "FWT"}  # --metrics -> column


def format_cl_metrics(df: pd.DataFrame, names: Sequence[str]) -> str:
    """The field's metrics after the last task (ACC, BWT, FWT, forgetting; ``names`` in ``CL_METRICS``),
    in %, mean (std) over seeds, one table per section, with the same rows as Table 1."""
    out = []
    for key, part in sections_of(df):
        columns = [CL_METRICS[n] for n in names]
        lines = [f"### {section_heading(key, part)}: " + ", ".join(columns) + " (%)", ""]
        lines += ["| strategy | seeds | " + " | ".join(columns) + " |", "|---|---:|" + "---:|" * len(columns)]
        for _, r in part.iterrows():
            cells = []
            for c in columns:
                mean, std = r[c] * 100, r[f"{c} std"] * 100
                cells.append("n/a" if math.isnan(mean) else f"{mean:.2f}" + (f" ({std:.2f})" if r["seeds"] > 1 else ""))
            lines.append(f"| {row_label(r)} | {r['seeds']} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "ACC: mean accuracy after the last task; BWT: mean change of each earlier task's accuracy from "
            "right after it was learned to the end (negative: forgetting); forgetting: mean drop from each "
            "task's best accuracy to its last (Chaudhry et al. 2018).",
        ]
        if "fwt" in names:
            lines.append(FWT_UNDEFINED + ".")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def _reasons(ms: Sequence[RunMetrics]) -> str:
    """Why rho is n/a for some runs of a row: each reason once, with the seeds it holds for."""
    seeds: dict[str, set[int]] = {}
    for m in ms:
        for why in m.missing + ([m.error] if m.error else []):
            seeds.setdefault(why, set()).add(m.record.seed)
    return "; ".join(f"{_seeds_text(sorted(s))}: {why}" for why, s in sorted(seeds.items(), key=lambda x: sorted(x[1])))


def _seeds_text(seeds: Sequence) -> str:
    seeds = [str(s) for s in seeds]
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} seeds ({', '.join(seeds)})"


def table_columns(T: int) -> list[str]:
    """Table 1's metric columns: rho<=2 and rho<=T, one column when T <= 2 (they coincide), and A<=T."""
    return (["rho<=2", "rho<=T"] if T > 2 else ["rho<=T"]) + ["A<=T"]


def cell_seeds(r, key: str) -> int:
    """Seeds behind a cell of a ``rho_table`` row: rho cells count the runs with references."""
    return int(r["rho seeds"] if key.startswith("rho") else r["seeds"])


def row_name(r) -> str:
    """A row's strategy in the paper's spelling, with its settings when variants are shown."""
    return strategy_label(r["strategy"]) + r["settings"]


def row_label(r) -> str:
    """``row_name`` and the row's flag (HAT's 'masks did not learn'), as the tables show it."""
    return row_name(r) + _flag(r)


def _flag(r) -> str:
    flag = r.get("flag", "")
    return f" ({flag})" if isinstance(flag, str) and flag else ""


def sections_of(df: pd.DataFrame):
    """(section key, its rows) in the table's order."""
    for key, part in df.groupby(SECTION_COLUMNS, sort=False):
        yield tuple(key), part


def section_heading(key: Sequence[str], part: pd.DataFrame) -> str:
    """'split_mnist (max_train_per_task=5000), ≤ 10 epochs (T = 2), not the paper's protocol'."""
    T = int(part["T"].iloc[0])
    verdict = "the paper's full protocol" if bool(part["paper protocol"].iloc[0]) else "not the paper's protocol"
    return f"{section_title(key)} (T = {T}), {verdict}"


def row_notes(part: pd.DataFrame, label=row_name, launch: bool = True) -> list[str]:
    """Below a table: which configuration each row is and on how many seeds; why rho is n/a and (with
    ``launch``) what to launch."""
    groups: dict[str, list[str]] = {}
    for _, r in part.iterrows():
        groups.setdefault(f"{r['configuration']}, {_seeds_text(str(r['seed list']).split(','))}", []).append(label(r))
    out = ["Rows: " + "; ".join(f"{', '.join(names)}: {what}" for what, names in groups.items()) + "."]
    for _, r in part.iterrows():
        if r["rho seeds"] < r["seeds"] and r["rho n/a"]:
            n = r["seeds"] - r["rho seeds"]
            out.append(
                f"{label(r)}: rho n/a for {n} of {r['seeds']} seed(s): {r['rho n/a']}."
                + (" Launch: " + "; ".join(f"`{c}`" for c in r["launch"].split("; ")) if launch and r["launch"] else "")
            )
    return out


def format_markdown(
    df: pd.DataFrame, extras: Mapping[tuple, Sequence[str]] | None = None, footer: str | None = None
) -> str:
    """Table 1 style: per section its heading with the scale, the table ('mean (std) [+-ci95]' per cell)
    and below it which configuration each row is, ``extras[section key]`` (hidden variants, HAT's
    health), and at the end the legend and ``footer`` (store, version, date)."""
    if df.empty:
        return "(no finished runs match)" + (f"\n\n{footer}" if footer else "")
    lines = []
    for key, part in sections_of(df):
        T = int(part["T"].iloc[0])
        cols = table_columns(T)
        head = [c.replace("<=T", f"<={T}") + (" (%)" if c.startswith("A") else "") for c in cols]
        lines += [
            f"### {section_heading(key, part)}",
            "",
            str(part["scale"].iloc[0]),
            "",
            "| strategy | seeds | " + " | ".join(head) + " |",
            "|---|---:|" + "---:|" * len(cols),
        ]
        for _, r in part.iterrows():
            cells = [_cell(r, c, 100 if c.startswith("A") else 1) for c in cols]
            lines.append(f"| {r['name']}{_flag(r)} | {_seeds(r)} | " + " | ".join(cells) + " |")
        lines += [""] + [f"{x}\n" for x in row_notes(part, lambda r: r["name"])]
        lines += [f"{x}\n" for x in (extras or {}).get(key, [])]
    lines.append(LEGEND)
    if footer:
        lines += ["", footer]
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
