"""A whole report from the selected runs: ``build_report`` (sections, Table 1, the notes under each table,
the footer), and the files it writes: ``write_tables`` (Table 1 as markdown, CSV and LaTeX; the
accuracy matrices) and ``render_figures`` (every figure as PNG and PDF, and/or as PNG bytes for the
HTML page).

Data flow: the store's records -> naming.normalise_records (one key per strategy) ->
grouping.select_records (CLI filters) -> grouping.analyse (sections, variants, rho against matching
references) -> tables.rho_table and figures.build_figures -> files here and html_page.write_html.
Missing references are never faked: rho cells are n/a, the accuracy-based views are still shown, and
``Report.missing`` lists the exact ``cl-bench run`` commands that would complete them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cl_bench.report.figures import FigureItem, build_figures, mean_matrices
from cl_bench.report.grouping import Section, analyse
from cl_bench.report.hat_health import health_note, not_learned, section_health
from cl_bench.report.latex import format_latex
from cl_bench.report.plots import plt, png_bytes, save_figure
from cl_bench.report.provenance import footer
from cl_bench.report.tables import format_accuracy_matrix, format_markdown, rho_table
from cl_bench.store import RunRecord

FLAG = "masks did not learn"
RULE = (
    "Which runs make a row: the setting a sweep selected on validation, else the strategy's default "
    "hyperparameters, in fp32 (other configurations only with --all-variants or --where NAME=VALUE)."
)


@dataclass
class Report:
    records: list[RunRecord]  # selected, failed ones included
    sections: list[Section]
    table: pd.DataFrame
    filters: dict[str, object] = field(default_factory=dict)
    footer: str = ""  # store, cl-bench version, date
    extras: dict[tuple, list[str]] = field(default_factory=dict)  # notes under each section's table

    @property
    def all_variants(self) -> bool:
        return bool(self.filters.get("all_variants"))

    @property
    def missing(self) -> list[str]:
        return sorted({c for s in self.sections for c in s.launch(self.all_variants)})

    def markdown(self) -> str:
        return format_markdown(self.table, self.extras, f"{RULE}\n\n{self.footer}")

    def latex(self) -> str:
        return format_latex(self.table, self.extras, f"{RULE}\n{self.footer}")


def section_extras(sec: Section, all_variants: bool = False) -> list[str]:
    """The notes under a section's table beyond each row's configuration: what is not shown, and
    HAT's mask learning and capacity in plain words."""
    out = []
    if not all_variants and sec.hidden():
        out.append("Not shown: " + "; ".join(sec.hidden()) + " (--all-variants, or --where NAME=VALUE, shows them).")
    note = health_note(section_health(sec, all_variants))
    if note:
        out.append(note)
    return out


def build_report(
    records: Sequence[RunRecord],
    all_variants: bool = False,
    filters: dict[str, object] | None = None,
    store: str | None = None,
    selected: Mapping[str, str] | None = None,
) -> Report:
    """The report of ``records`` (already normalised and filtered). ``selected``: run ids -> the sweep
    that selected their setting, for runs made before sweeps tagged them."""
    sections = analyse(records, store, selected)
    metrics = [m for s in sections for m in s.metrics]
    var = {k: v for s in sections for k, v in s.variants.items()}
    extras = {s.key: section_extras(s, all_variants) for s in sections}
    table = rho_table(metrics, all_variants=all_variants, var=var, store=store)
    flagged = {(*s.key, label) for s in sections for label in not_learned(s, all_variants)}
    if not table.empty:  # beside HAT's row: its masks did not learn (the line under the table says more)
        table["flag"] = [
            FLAG if (r["scenario"], r["options"], r["protocol"], r["variant"]) in flagged else ""
            for _, r in table.iterrows()
        ]
    return Report(list(records), sections, table, dict(filters or {}, all_variants=all_variants), footer(store), extras)


def write_tables(rep: Report, directory: str | Path, all_variants: bool = False) -> None:
    """Table 1 as table1.md, table1.csv and table1.tex, and the mean accuracy matrices as markdown."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "table1.md").write_text(rep.markdown() + "\n")
    (directory / "table1.csv").write_text(rep.table.to_csv(index=False))
    (directory / "table1.tex").write_text(rep.latex() + "\n")
    blocks = [
        f"## {label} on {sec.title}, mean accuracy (%) over {n} seed(s)\n\n{sec.scale().text()}\n\n"
        f"{format_accuracy_matrix(mean, sec.task_names())}\n"
        for sec in rep.sections
        for label, _s, mean, n in mean_matrices(sec, all_variants)
    ]
    (directory / "accuracy_matrices.md").write_text("\n".join(blocks) + f"\n{rep.footer}\n")


def render_figures(
    rep: Report,
    all_variants: bool = False,
    directory: str | Path | None = None,
    keep_png: bool = False,
    say: Callable[[str], None] = print,
    band: str = "std",
) -> list[FigureItem]:
    """Draw every figure, save it as PNG (300 dpi) and PDF (TrueType fonts) in ``directory`` (if given)
    and keep its PNG bytes on the item (if ``keep_png``, for the HTML page); each figure is closed once
    rendered, so they never pile up. ``say`` gets one line per figure written or skipped."""
    items = []
    for item in build_figures(rep.sections, all_variants, band):
        if item.figure is None:
            say(f"skipped {item.name}: {item.note}")
        else:
            png = png_bytes(item.figure, close=False) if keep_png else None
            if directory:
                paths = save_figure(item.figure, directory, item.name)
                say(f"wrote {paths[0]} (+ .pdf)")
            else:
                plt.close(item.figure)
            item.figure, item.png = None, png
        items.append(item)
    if directory:
        captions = [f"- `{i.name}`: not drawn: {i.note}" if i.note else f"- `{i.name}`: {i.caption}" for i in items]
        Path(directory, "captions.md").write_text("# Figure captions\n\n" + "\n".join(captions) + f"\n\n{rep.footer}\n")
    return items
