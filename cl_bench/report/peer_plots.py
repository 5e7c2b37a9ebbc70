"""Figs. 5-6 of HAT's weight-mask peers (PackNet, WSN) beside HAT's, in the style of plots.py: data in
(cl_bench.report.figures builds it from the store), a matplotlib Figure out, its values on its Axes.

- ``capacity_by_task_figure``: a line per strategy of its capacity usage after each task.
- ``reuse_panels_figure``: a weight-reuse heatmap per strategy, every panel on one 0-100 % scale.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from cl_bench.report.plots import RC, heatmap, plt
from cl_bench.report.style import strategy_colors, strategy_markers


def capacity_by_task_figure(series: Sequence[tuple[str, str, Sequence[float]]], title: str) -> Figure:
    """Fig. 5 beside HAT's peers: per (strategy, label, usage after each task), the capacity usage (%)
    after learning task t, a marker per task. Per task, not per step: the strategies' step counts differ
    (epochs, early stopping, PackNet's retraining), so a shared step axis would misplace their tasks."""
    colors = strategy_colors(s for s, _, _ in series)
    markers = strategy_markers(s for s, _, _ in series)
    T = max((len(u) for _, _, u in series), default=1)
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(6.8, 2.8), layout="constrained")  # room for the legend
        for strategy, label, usage in series:
            t = np.arange(1, len(usage) + 1)
            ax.plot(
                t,
                100 * np.asarray(usage, dtype=float),
                marker=markers[strategy],
                ms=5,
                lw=1.3,
                color=colors[strategy],
                label=label,
            )
        ax.set_xticks(range(1, T + 1))
        ax.set_xlim(0.8, T + 0.2)
        ax.set_ylim(0, 102)
        ax.set_xlabel("task t (after learning tasks 1..t)")
        ax.set_ylabel("capacity usage (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3, lw=0.5)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _decimals_keeping_ends(values: np.ndarray) -> str:
    """The fewest decimals (up to 3) at which no percentage short of 100 (or above 0) prints as 100 (or
    0): WSN's 99.97 % must not read as PackNet's 100 % by construction."""
    finite = values[np.isfinite(values)]
    inner = finite[(finite > 0) & (finite < 100)]
    for d in range(3):
        if not ((np.round(inner, d) >= 100) | (np.round(inner, d) <= 0)).any():
            return f".{d}f"
    return ".3f"


def reuse_panels_figure(panels: Sequence[tuple[str, Sequence[Sequence[float | None]]]], title: str) -> Figure:
    """Fig. 6 beside HAT's peers: a panel per (label, reuse) as ``reuse_figure`` (rows t_1..t_{T-1},
    columns t_2..t_T, %), every panel on the same 0-100 scale with one colour bar; tasks by number (the
    caption names them: the runs' task orders may differ)."""
    T = max(len(reuse) for _, reuse in panels)
    cols = min(len(panels), 3 if T <= 6 else 2)
    rows = math.ceil(len(panels) / cols)
    side = max(2.0, 0.32 * (T - 1) + 1.0)  # ~0.32 in per cell: two digits at 6 pt fit
    names = [str(i + 1) for i in range(T)]
    with plt.rc_context(RC):
        fig, axes = plt.subplots(
            rows, cols, figsize=(side * cols + 1.0, side * rows + 0.6), squeeze=False, layout="constrained"
        )
        mesh = None
        for k, (ax, (label, reuse)) in enumerate(zip(axes.flat, panels)):
            values = 100 * np.array([[np.nan if v is None else v for v in row] for row in reuse], dtype=float)
            mesh = heatmap(
                ax,
                values[:-1, 1:],
                _decimals_keeping_ends(values[:-1, 1:]),
                "Blues",
                0,
                100,
                fontsize=6 if T > 6 else 7,
                xticklabels=names[1:],
                yticklabels=names[:-1],
            )
            ax.tick_params(axis="y", labelrotation=0)
            ax.set_title("\n".join(textwrap.wrap(label, int(13 * side))))  # ~13 characters an inch at 9 pt
            ax.set_xlabel("later task $t_j$")
            ax.set_ylabel("task $t_i$" if k % cols == 0 else "")
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        if mesh is not None:
            fig.colorbar(mesh, ax=axes, shrink=0.8, label="weights of $t_i$ reused in $t_j$ (%)")
        fig.suptitle(title)
    return fig
