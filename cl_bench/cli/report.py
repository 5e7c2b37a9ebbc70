"""``cl-bench report``: Table 1 (and with ``--figures``/``--html`` Figs. 3-7) from a results store.

Only the options and the printing live here; the report itself is cl_bench.report. Tables go to stdout,
everything else (missing references, hidden variants, files written) to stderr.
"""
from __future__ import annotations

import click

from cl_bench.cli.common import user_errors
from cl_bench.report.build import build_report, render_figures, write_tables
from cl_bench.report.figures import mean_matrices
from cl_bench.report.grouping import select_records
from cl_bench.report.html_page import write_html
from cl_bench.report.paper import format_comparison
from cl_bench.report.tables import format_accuracy_matrix, format_latex, format_markdown
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
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of markdown.")
@click.option("--latex", "as_latex", is_flag=True, help="LaTeX (booktabs) instead of markdown.")
@click.option("--matrices", is_flag=True, help="Also print the mean accuracy matrix per strategy.")
@click.option("--all-variants", is_flag=True,
              help="Show every hyperparameter setting of a strategy (default: its main one).")
@click.option("--figures", "figures_dir", type=click.Path(file_okay=False),
              help="Write every supported figure here as PNG and PDF.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Write one self-contained HTML report (tables, figures, run metadata).")
@click.option("--paper", is_flag=True, help="Also print the paper's numbers beside ours (cl_bench.report.paper).")
def report_command(store, scenarios, strategies, seeds, tags, as_csv, as_latex, matrices, all_variants,
                   figures_dir, html_path, paper):
    """Table 1 (rho<=2, rho<=T per strategy, mean (std) [95% CI] over seeds); with --figures/--html
    also Figs. 3-7 and the accuracy matrices."""
    with user_errors(StoreError):
        records = Store(store).query()
    try:
        seed_set = {int(s) for s in seeds.split(",")} if seeds else None
    except ValueError:
        raise click.BadParameter(f"--seeds takes integers separated by commas, got {seeds!r}") from None
    keep = select_records(records, scenarios, strategies, seed_set, tags)
    filters = {"store": str(store), "scenario": list(scenarios), "strategy": list(strategies),
               "seeds": sorted(seed_set) if seed_set else [], "tag": list(tags)}
    rep = build_report(keep, all_variants, filters, store)
    if rep.missing:
        _say(str(MissingReferences(rep.missing)))
    for sec in rep.sections:
        for note in sec.notes:
            _say(f"{sec.title}: {note}")
        if sec.hidden() and not all_variants:
            _say(f"{sec.title}: strategies run under several settings: {'; '.join(sec.hidden())} "
                 f"(--all-variants shows them all)")
    if as_csv:
        click.echo(rep.table.to_csv(index=False), nl=False)
    elif as_latex:
        click.echo(format_latex(rep.table))
    else:
        click.echo(format_markdown(rep.table))
    if paper and not rep.table.empty:
        click.echo("\n" + format_comparison(rep.table))
    if matrices:
        for sec in rep.sections:
            for label, _strategy, mean, n in mean_matrices(sec, all_variants):
                click.echo(f"\n{label} on {sec.title}, mean accuracy (%) over {n} seed(s):")
                click.echo(format_accuracy_matrix(mean))
    if figures_dir or html_path:
        items = render_figures(rep, all_variants, figures_dir, keep_png=bool(html_path), say=_say)
        if figures_dir:
            write_tables(rep, figures_dir, all_variants)
            _say(f"wrote {figures_dir}/table1.{{md,csv,tex}} and accuracy_matrices.md")
        if html_path:
            write_html(rep, items, html_path)
            _say(f"wrote {html_path}")
