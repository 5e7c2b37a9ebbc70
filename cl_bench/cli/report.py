"""``cl-bench report``: Table 1 (and with ``--figures``/``--html`` Figs. 3-7) from a results store.

Only the options and the printing live here; the report itself is cl_bench.report. Tables go to stdout
(markdown, CSV or pure LaTeX), everything else (missing references, files written) to stderr.
"""

from __future__ import annotations

import click

from cl_bench.cli.common import check_output, key_values, user_errors
from cl_bench.report.build import build_report, render_figures, write_tables
from cl_bench.report.figures import mean_matrices
from cl_bench.report.grouping import select_records
from cl_bench.report.html_page import write_html
from cl_bench.report.latex import format_comparison_latex
from cl_bench.report.naming import normalise_records, search_folders, strategy_key
from cl_bench.report.paper import format_comparison
from cl_bench.report.plots import BANDS
from cl_bench.report.tables import CL_METRICS, format_accuracy_matrix, format_cl_metrics
from cl_bench.report.variants import sweep_selections
from cl_bench.results import MissingReferences
from cl_bench.store import DEFAULT_STORE, Store, StoreError


def _say(line: str) -> None:
    click.echo(line, err=True)


@click.command()
@click.option("--store", default=DEFAULT_STORE, show_default=True)
@click.option("--scenario", "scenarios", multiple=True, help="Only these scenarios.")
@click.option("--strategy", "strategies", multiple=True, help="Only these strategies (Joint/Random are kept).")
@click.option("--seeds", help="Only these seeds, e.g. 0,1,2.")
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag (Joint/Random are kept).")
@click.option(
    "--where",
    "where_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Only runs whose hyperparameter, protocol setting or scenario option NAME has VALUE, e.g. "
    "--where precision=bf16 --where c=0.1 (Joint/Random are kept); shows every configuration "
    "that matches.",
)
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of markdown.")
@click.option(
    "--latex", "as_latex", is_flag=True, help="LaTeX (booktabs) instead of markdown; pure LaTeX, with --paper too."
)
@click.option("--matrices", is_flag=True, help="Also print the mean accuracy matrix per strategy.")
@click.option(
    "--all-variants",
    is_flag=True,
    help="Show every configuration of a strategy (default: the setting a sweep selected on "
    "validation, else its default hyperparameters, in fp32).",
)
@click.option(
    "--sweep",
    "sweeps",
    multiple=True,
    metavar="FILE",
    help="A sweep file (or bundled preset) whose validation-selected settings to show, for runs "
    "made before sweeps tagged them (selected:NAME); recomputed from the store.",
)
@click.option(
    "--band",
    type=click.Choice(sorted(BANDS)),
    default="std",
    show_default=True,
    help="Fig. 3's band: +-1 std over seeds, or the 95% Student-t interval.",
)
@click.option(
    "--figures",
    "figures_dir",
    type=click.Path(file_okay=False),
    help="Write every supported figure here as PNG (300 dpi) and PDF (TrueType fonts), with the tables and captions.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    help="Write one self-contained HTML report (provenance, contents, tables, figures, run metadata).",
)
@click.option(
    "--metrics",
    default="rho",
    show_default=True,
    metavar="LIST",
    help="Which tables to print, comma-separated: rho (Table 1) and any of acc, bwt, fwt, forgetting (the "
    "field's metrics after the last task, one more table). CSV output always has every column.",
)
@click.option(
    "--paper", is_flag=True, help="Also the paper's numbers beside ours (in the printed output and the HTML page)."
)
def report_command(
    store,
    scenarios,
    strategies,
    seeds,
    tags,
    where_pairs,
    as_csv,
    as_latex,
    matrices,
    all_variants,
    sweeps,
    band,
    figures_dir,
    html_path,
    metrics,
    paper,
):
    """Table 1 (rho<=2, rho<=T per strategy, mean (std) [95% CI] over seeds), one table per scale
    (scenario, options, training protocol), each stating its scale and which configuration each row is;
    with --figures/--html also Figs. 3-7 and the accuracy matrices."""
    check_output(figures_dir, "--figures", folder=True)  # before the report is built
    check_output(html_path, "--html")
    with user_errors(StoreError):
        db = Store.open_read(store)
        records = normalise_records(db.query(), store)
        selected = sweep_selections(sweeps, db)
    seed_set = _seeds(seeds)
    where = key_values(where_pairs, "--where")
    wanted = _metrics(metrics)
    field_metrics = [m for m in CL_METRICS if m in wanted]
    folders = search_folders(store)
    with user_errors():
        keep = select_records(records, scenarios, [strategy_key(s, folders) for s in strategies], seed_set, tags, where)
    filters = {
        "store": str(store),
        "scenario": list(scenarios),
        "strategy": list(strategies),
        "seeds": sorted(seed_set) if seed_set else [],
        "tag": list(tags),
        "where": where,
        "sweep": list(sweeps),
    }
    all_variants = all_variants or bool(where)
    rep = build_report(keep, all_variants, filters, store, selected)
    if rep.missing:
        _say(str(MissingReferences(rep.missing)))
    for sec in rep.sections:
        for note in sec.remarks(all_variants):
            _say(f"{sec.title}: {note}")
    _print_tables(rep, as_csv, as_latex, paper, wanted, field_metrics)
    if matrices:
        _print_matrices(rep, all_variants, markdown=not (as_csv or as_latex))
    if figures_dir or html_path:
        items = render_figures(rep, all_variants, figures_dir, keep_png=bool(html_path), say=_say, band=band)
        if figures_dir:
            write_tables(rep, figures_dir, all_variants)
            _say(f"wrote {figures_dir}/table1.{{md,csv,tex}}, accuracy_matrices.md and captions.md")
        if html_path:
            write_html(rep, items, html_path, paper)
            _say(f"wrote {html_path}")


def _print_matrices(rep, all_variants: bool, markdown: bool) -> None:
    """--matrices: each row's mean accuracy matrix over seeds, with the markdown output only."""
    if not markdown:
        _say(
            "--matrices: the accuracy matrices are printed with the markdown output only (--figures writes "
            "them to accuracy_matrices.md)"
        )
        return
    for sec in rep.sections:
        for label, _strategy, mean, n in mean_matrices(sec, all_variants):
            click.echo(f"\n{label} on {sec.title}, mean accuracy (%) over {n} seed(s):")
            click.echo(format_accuracy_matrix(mean, sec.task_names()))


def _seeds(seeds: str | None) -> set[int] | None:
    try:
        return {int(s) for s in seeds.split(",")} if seeds else None
    except ValueError:
        raise click.BadParameter(f"--seeds takes integers separated by commas, got {seeds!r}") from None


def _metrics(metrics: str) -> list[str]:
    wanted = [m.strip().lower() for m in metrics.split(",") if m.strip()]
    unknown = sorted(set(wanted) - {"rho", *CL_METRICS})
    if unknown or not wanted:
        raise click.BadParameter(
            f"unknown metric(s) {', '.join(unknown) or '(none given)'}; valid: rho, {', '.join(CL_METRICS)}",
            param_hint="--metrics",
        )
    return wanted


def _print_tables(rep, as_csv: bool, as_latex: bool, paper: bool, wanted: list[str], field_metrics: list[str]) -> None:
    """Table 1 (and the field's metrics, the paper's numbers) to stdout in the format asked."""
    if as_csv:
        click.echo(rep.table.to_csv(index=False), nl=False)
    elif as_latex:
        click.echo(rep.latex())
        if paper and not rep.table.empty:
            click.echo("\n" + format_comparison_latex(rep.table))
    else:
        if "rho" in wanted:
            click.echo(rep.markdown())
        if field_metrics and not rep.table.empty:
            click.echo(("\n" if "rho" in wanted else "") + format_cl_metrics(rep.table, field_metrics))
        if paper and not rep.table.empty:
            click.echo("\n" + format_comparison(rep.table))
