"""A whole report from the selected runs: ``build_report`` (sections + Table 1), and the files it writes:
``write_tables`` (Table 1 as markdown, CSV and LaTeX; the accuracy matrices) and ``render_figures``
(every figure as PNG and PDF, and/or as PNG bytes for the HTML page).

Data flow: the store's records -> grouping.select_records (CLI filters) -> grouping.analyse (sections,
variants, rho) -> tables.rho_table and figures.build_figures -> files here and html_page.write_html.
Missing references are never faked: rho cells are n/a, the accuracy-based views are still shown, and
``Report.missing`` lists the exact ``cl-bench run`` commands that would complete them.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cl_bench.report.figures import FigureItem, build_figures, mean_matrices
from cl_bench.report.grouping import Section, analyse
from cl_bench.report.plots import plt, png_bytes, save_figure
from cl_bench.report.tables import (
    format_accuracy_matrix,
    format_latex,
    format_markdown,
    rho_table,
)
from cl_bench.store import RunRecord


@dataclass
class Report:
    records: list[RunRecord]  # selected, failed ones included
    sections: list[Section]
    table: pd.DataFrame
    filters: dict[str, object] = field(default_factory=dict)

    @property
    def missing(self) -> list[str]:
        return sorted({c for s in self.sections for c in s.missing})


def build_report(records: Sequence[RunRecord], all_variants: bool = False,
                 filters: dict[str, object] | None = None, store: str | None = None) -> Report:
    sections = analyse(records, store)
    metrics = [m for s in sections for m in s.metrics]
    return Report(list(records), sections, rho_table(metrics, all_variants=all_variants),
                  dict(filters or {}, all_variants=all_variants))


def write_tables(rep: Report, directory: str | Path, all_variants: bool = False) -> None:
    """Table 1 as table1.md, table1.csv and table1.tex, and the mean accuracy matrices as markdown."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "table1.md").write_text(format_markdown(rep.table) + "\n")
    (directory / "table1.csv").write_text(rep.table.to_csv(index=False))
    (directory / "table1.tex").write_text(format_latex(rep.table) + "\n")
    blocks = [f"## {label} on {sec.title}, mean accuracy (%) over {n} seed(s)\n\n"
              f"{format_accuracy_matrix(mean)}\n"
              for sec in rep.sections for label, _s, mean, n in mean_matrices(sec, all_variants)]
    (directory / "accuracy_matrices.md").write_text("\n".join(blocks))


def render_figures(rep: Report, all_variants: bool = False, directory: str | Path | None = None,
                   keep_png: bool = False, say: Callable[[str], None] = print) -> list[FigureItem]:
    """Draw every figure, save it as PNG and PDF in ``directory`` (if given) and keep its PNG bytes on the
    item (if ``keep_png``, for the HTML page); each figure is closed once rendered, so they never pile
    up. ``say`` gets one line per figure written or skipped."""
    items = []
    for item in build_figures(rep.sections, all_variants):
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
    return items
