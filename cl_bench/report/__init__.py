"""Tables and figures from the store: the paper's Table 1 and Figs. 3-7 (`cl-bench report`).

This file is only the package's public face; each job has its own module, and the modules import each
other directly (never through this file), so the package has no import circles:

- naming.py: one key per strategy (a user file by its resolved path), its defaults if importable.
- variants.py: the one rule for which configuration makes a strategy's row (``variants``), and the
  settings sweeps selected (``sweep_selections``).
- grouping.py: which runs (``select_records``), sections (one scale each), rho per run (``analyse``).
- provenance.py: each section's scale in words, the verdict on the paper's protocol, the footer.
- hat_health.py: whether HAT's masks learned (cl_bench.strategies.hat_mask_learning) and its capacity, in words.
- tables.py / latex.py: Table 1 (``rho_table``) as markdown / LaTeX; the accuracy matrices.
- figures.py: the figures' data (``curves``, ``mean_matrices``) and ``build_figures``.
- hat_figures.py: the data of HAT's Figs. 4-7 (``hat_grids``, ``hat_compression_run``, ...) and of its
  peers' Figs. 5-6 (``isolation_series``).
- style.py / plots.py: the strategies' names, colours, markers / the drawing (300 dpi, Type 42 fonts).
- peer_plots.py: the drawing of PackNet's and WSN's Figs. 5-6 beside HAT's.
- build.py: ``build_report``, ``write_tables``, ``render_figures``.
- html_page.py: one self-contained HTML page (``write_html``).
- paper.py: the paper's published numbers beside ours (``format_comparison``).
"""

from __future__ import annotations

from cl_bench.report.build import RULE, Report, build_report, render_figures, section_extras, write_tables
from cl_bench.report.figures import FigureItem, build_figures, curves, mean_matrices
from cl_bench.report.grouping import (
    Section,
    analyse,
    runnable,
    section_key,
    section_slug,
    section_title,
    select_records,
    task_names,
    variants,
)
from cl_bench.report.hat_figures import (
    HatGrid,
    hat_compression_run,
    hat_grids,
    hat_monitored,
    sgd_single_task_accuracy,
)
from cl_bench.report.hat_health import HatHealth, health_note, run_health, section_health
from cl_bench.report.html_page import render_html, write_html
from cl_bench.report.latex import format_comparison_latex, format_latex
from cl_bench.report.naming import default_hparams, normalise_records, strategy_key
from cl_bench.report.paper import format_comparison, paper_values, rank_correlation
from cl_bench.report.provenance import Scale, footer, section_scale
from cl_bench.report.style import strategy_colors, strategy_label, strategy_markers
from cl_bench.report.tables import (
    format_accuracy_matrix,
    format_markdown,
    rho_table,
    table_columns,
)
from cl_bench.report.variants import Variant, sweep_selections

__all__ = [
    "RULE",
    "FigureItem",
    "HatGrid",
    "HatHealth",
    "Report",
    "Scale",
    "Section",
    "Variant",
    "analyse",
    "build_figures",
    "build_report",
    "curves",
    "default_hparams",
    "footer",
    "format_accuracy_matrix",
    "format_comparison",
    "format_comparison_latex",
    "format_latex",
    "format_markdown",
    "hat_compression_run",
    "hat_grids",
    "hat_monitored",
    "health_note",
    "mean_matrices",
    "normalise_records",
    "paper_values",
    "rank_correlation",
    "render_figures",
    "render_html",
    "rho_table",
    "run_health",
    "runnable",
    "section_extras",
    "section_health",
    "section_key",
    "section_scale",
    "section_slug",
    "section_title",
    "select_records",
    "sgd_single_task_accuracy",
    "strategy_colors",
    "strategy_key",
    "strategy_label",
    "strategy_markers",
    "sweep_selections",
    "table_columns",
    "task_names",
    "variants",
    "write_html",
    "write_tables",
]
