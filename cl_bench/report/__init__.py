"""Tables and figures from the store: the paper's Table 1 and Figs. 3-7 (`cl-bench report`).

This file is only the package's public face; each job has its own module, and the modules import each
other directly (never through this file), so the package has no import circles:

- grouping.py: which runs (``select_records``), sections and variants, rho per run (``analyse``).
- tables.py: Table 1 (``rho_table``) as markdown, LaTeX; the accuracy matrices as markdown.
- figures.py: the figures' data (``curves``, ``mean_matrices``) and ``build_figures``.
- hat_figures.py: the data of HAT's Figs. 4-7 (``hat_grids``, ``hat_compression_run``, ...).
- style.py / plots.py: the strategies' names and colours / the matplotlib drawing.
- build.py: ``build_report``, ``write_tables``, ``render_figures``.
- html_page.py: one self-contained HTML page (``write_html``).
- paper.py: the paper's published numbers beside ours (``format_comparison``).
"""
from __future__ import annotations

from cl_bench.report.build import Report, build_report, render_figures, write_tables
from cl_bench.report.figures import FigureItem, build_figures, curves, mean_matrices
from cl_bench.report.grouping import (
    Section,
    Variant,
    analyse,
    runnable,
    section_key,
    section_slug,
    section_title,
    select_records,
    variants,
)
from cl_bench.report.hat_figures import (
    HatGrid,
    hat_compression_run,
    hat_grids,
    hat_monitored,
    sgd_single_task_accuracy,
)
from cl_bench.report.html_page import render_html, write_html
from cl_bench.report.paper import format_comparison, paper_values, rank_correlation
from cl_bench.report.style import strategy_colors, strategy_label
from cl_bench.report.tables import (
    format_accuracy_matrix,
    format_latex,
    format_markdown,
    rho_table,
    table_columns,
)

__all__ = [
    "FigureItem", "HatGrid", "Report", "Section", "Variant", "analyse", "build_figures", "build_report",
    "curves", "format_accuracy_matrix", "format_comparison", "format_latex", "format_markdown",
    "hat_compression_run", "hat_grids", "hat_monitored", "mean_matrices", "paper_values", "rank_correlation",
    "render_figures", "render_html", "rho_table", "runnable", "section_key", "section_slug", "section_title",
    "select_records", "sgd_single_task_accuracy", "strategy_colors", "strategy_label", "table_columns",
    "variants", "write_html", "write_tables",
]
