"""Tables from the store: the paper's Table 1 (rho^{<=2}, rho^{<=T}) with mean, std and 95% CI."""
from __future__ import annotations

import warnings

import click
import numpy as np
import pandas as pd

from cl_bench.metrics import summarize
from cl_bench.results import REFERENCES, MissingReferences, RunMetrics, with_rho
from cl_bench.store import DEFAULT_STORE, Store, StoreError


def rho_table(metrics: list[RunMetrics], include_references: bool = False) -> pd.DataFrame:
    """One row per (scenario, strategy): mean over seeds of rho^{<=2}, rho^{<=T} and A^{<=T}, with
    numpy's std (ddof 0) and the 95% t-interval half-width, sorted by rho^{<=T} (best last, as Table 1)."""
    groups: dict[tuple[str, str], list[RunMetrics]] = {}
    for m in metrics:
        if include_references or m.record.strategy not in REFERENCES:
            groups.setdefault((m.record.scenario, m.record.strategy), []).append(m)
    rows = []
    for (scenario, strategy), ms in groups.items():
        T = ms[0].record.n_tasks
        row = {"scenario": scenario, "strategy": strategy, "seeds": len(ms), "T": T}
        for label, values in [
            ("rho<=2", [m.rho_upto[min(1, T - 1)] for m in ms if m.rho_upto is not None]),
            ("rho<=T", [m.rho_upto[-1] for m in ms if m.rho_upto is not None]),
            ("A<=T", [m.acc_upto[-1] for m in ms]),
        ]:
            s = summarize(values)
            row |= {label: s.mean, f"{label} std": s.std, f"{label} ci95": s.ci95}
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    return df.sort_values(["scenario", "rho<=T", "A<=T"], na_position="first").reset_index(drop=True)


def format_markdown(df: pd.DataFrame) -> str:
    """Table 1 style: 'mean (std) [+-ci95]' per cell."""
    if df.empty:
        return "(no finished runs match)"
    lines = []
    for scenario, part in df.groupby("scenario", sort=False):
        T = int(part["T"].iloc[0])
        lines += [f"### {scenario} (T = {T})", "",
                  f"| strategy | seeds | rho<=2 | rho<={T} | A<={T} (%) |", "|---|---:|---:|---:|---:|"]
        for _, r in part.iterrows():
            cells = [_cell(r, "rho<=2"), _cell(r, "rho<=T"), _cell(r, "A<=T", 100)]
            lines.append(f"| {r['strategy']} | {r['seeds']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("mean (std) [+-95% t-interval half-width] over seeds; std is numpy's (ddof 0), as the "
                 "reference's plot script. rho needs Joint and Random runs of the same seed.")
    return "\n".join(lines)


def _cell(r, key: str, scale: float = 1.0) -> str:
    if np.isnan(r[key]):
        return "n/a"
    ci = "" if np.isnan(r[f"{key} ci95"]) else f" [+-{r[f'{key} ci95'] * scale:.2f}]"
    return f"{r[key] * scale:.2f} ({r[f'{key} std'] * scale:.2f}){ci}"


def format_accuracy_matrix(acc: np.ndarray, names: list[str] | None = None) -> str:
    """A markdown accuracy matrix (%, rows: after task t, columns: task tau)."""
    T = acc.shape[0]
    names = names or [str(i + 1) for i in range(T)]
    lines = ["| after \\ on | " + " | ".join(names) + " |", "|---|" + "---:|" * T]
    for t in range(T):
        cells = ["" if np.isnan(acc[t, tau]) else f"{100 * acc[t, tau]:.1f}" for tau in range(T)]
        lines.append(f"| {names[t]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@click.command()
@click.option("--store", default=DEFAULT_STORE, show_default=True)
@click.option("--scenario", "scenarios", multiple=True, help="Only these scenarios.")
@click.option("--strategy", "strategies", multiple=True, help="Only these strategies.")
@click.option("--seeds", help="Only these seeds, e.g. 0,1,2.")
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of markdown.")
@click.option("--latex", "as_latex", is_flag=True, help="LaTeX instead of markdown.")
@click.option("--matrices", is_flag=True, help="Also print the mean accuracy matrix per strategy.")
def report_command(store, scenarios, strategies, seeds, tags, as_csv, as_latex, matrices):
    """Table 1: rho<=2 and rho<=T per strategy, mean (std) [95% CI] over seeds."""
    try:
        records = Store(store).query()
    except StoreError as e:
        raise click.ClickException(str(e))
    seed_set = {int(s) for s in seeds.split(",")} if seeds else None
    keep = [r for r in records
            if (not scenarios or r.scenario in scenarios)
            and (not strategies or r.strategy in strategies or r.strategy in ("joint", "random"))
            and (seed_set is None or r.seed in seed_set)
            and (not tags or set(tags) & set(r.tags) or r.strategy in ("joint", "random"))]
    try:
        metrics = with_rho(keep)
    except MissingReferences as e:
        click.echo(str(e), err=True)
        metrics = with_rho(keep, require_references=False)
    df = rho_table(metrics)
    if as_csv:
        click.echo(df.to_csv(index=False), nl=False)
    elif as_latex:
        click.echo(df.to_latex(index=False, float_format="%.3f", na_rep="--"))
    else:
        click.echo(format_markdown(df))
    if matrices:
        for (scenario, strategy) in sorted({(m.record.scenario, m.record.strategy) for m in metrics}):
            accs = [m.record.accuracy for m in metrics
                    if m.record.scenario == scenario and m.record.strategy == strategy]
            click.echo(f"\n{strategy} on {scenario}, mean accuracy (%) over {len(accs)} seed(s):")
            with warnings.catch_warnings():  # NaN above the diagonal
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(np.stack(accs), axis=0)
            click.echo(format_accuracy_matrix(mean))
