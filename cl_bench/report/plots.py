"""The paper's figures as functions that return a matplotlib Figure (Agg backend), and how they are saved
for print: PNG at 300 dpi and PDF with embedded TrueType (Type 42) fonts, which venues accept where they
reject Type 3.

Every function takes plain arrays or lists (computed in cl_bench.report.figures from the store), so a
figure's data can be checked on its Axes before it is saved:

- Fig. 3: ``curves_figure``: rho^{<=t} (or A^{<=t}) against t, mean over seeds with a band of +-1 std
  or of the 95% t-interval (the legend says which).
- accuracy matrices: ``accuracy_matrices_figure``: one heatmap per strategy (mean over seeds), tasks
  named (the mixture's data sets) on both axes.
- Fig. 4: ``hat_grid_figure``: HAT's rho^{<=T} over s_max x c.
- Fig. 5: ``capacity_figure``: HAT's capacity usage over training steps, dashed task switches.
- Fig. 6: ``reuse_figure``: HAT's weight reuse from task t_i to t_j (j > i).
- Figs. 5-6 beside HAT's peers (PackNet, WSN): peer_plots.py, in this style.
- Fig. 7: ``compression_figure``: HAT's validation accuracy against compression, a dot per epoch.

One style for all (``RC``: seaborn's "ticks" look at print sizes); heatmaps are seaborn's. A strategy
has one colour and one marker in every figure (style.py; colour-blind safe).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure

from cl_bench.report.style import (
    FREE_COLORS,
    KNOWN_COLORS,
    LABELS,
    REFERENCE_STYLE,
    strategy_colors,
    strategy_label,
    strategy_markers,
)

# The names and colours live in style.py; they are part of this module's face too (plots.KNOWN_COLORS).
__all__ = [
    "DPI",
    "FREE_COLORS",
    "KNOWN_COLORS",
    "LABELS",
    "RC",
    "REFERENCE_STYLE",
    "Curve",
    "accuracy_matrices_figure",
    "capacity_figure",
    "compression_figure",
    "curves_figure",
    "hat_grid_figure",
    "heatmap",
    "plt",
    "png_bytes",
    "reuse_figure",
    "save_figure",
    "strategy_colors",
    "strategy_label",
    "task_switches",
]

DPI = 300  # PNG files, for print
HTML_DPI = 150  # PNG embedded in the HTML page: sharp on screen, a page that still loads fast
BANDS = {"std": "mean $\\pm$ 1 std over seeds", "ci95": "mean $\\pm$ 95% t-interval over seeds"}
# Sized for a two-column paper: full width is ~7 in, so 9 pt text stays readable when printed. Type 42:
# TrueType fonts embedded in PDF and PS (the default, Type 3, is refused by several venues).
RC = {
    **sns.axes_style("ticks"),
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "figure.dpi": 100,
    "savefig.dpi": DPI,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
}


@dataclass
class Curve:
    """One strategy's per-t values over seeds: ``mean[t]``, ``std[t]`` (ddof 0) and the 95% t-interval
    half-width ``ci95[t]`` (NaN with one seed), t = 1..T."""

    label: str
    strategy: str
    mean: np.ndarray
    std: np.ndarray
    n: int  # seeds
    ci95: np.ndarray | None = None


def curves_figure(
    curves: Sequence[Curve],
    ylabel: str,
    title: str,
    colors: dict[str, str] | None = None,
    percent: bool = False,
    band: str = "std",
) -> Figure:
    """Fig. 3: a line per strategy (mean over seeds, its marker at each t) and a band of +-1 std
    (``band='std'``) or of the 95% t-interval (``'ci95'``); the legend's title says which."""
    if band not in BANDS:
        raise ValueError(f"band must be one of {', '.join(BANDS)}, got {band!r}")
    colors = colors or strategy_colors(c.strategy for c in curves)
    markers = strategy_markers(c.strategy for c in curves)
    scale = 100.0 if percent else 1.0
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(6.0, 3.4), layout="constrained")
        T = max((len(c.mean) for c in curves), default=1)
        for c in curves:
            t = np.arange(1, len(c.mean) + 1)
            color = colors[c.strategy]
            ax.plot(
                t,
                c.mean * scale,
                marker=markers[c.strategy],
                ms=4,
                lw=1.5,
                color=color,
                ls=REFERENCE_STYLE.get(c.strategy, "-"),
                label=f"{c.label} (n={c.n})",
            )
            width = c.std if band == "std" else c.ci95
            if c.n > 1 and width is not None and np.isfinite(width).all():
                ax.fill_between(t, (c.mean - width) * scale, (c.mean + width) * scale, color=color, alpha=0.15, lw=0)
        ax.set_xticks(range(1, T + 1))
        ax.set_xlim(0.8, T + 0.2)
        ax.set_xlabel("task t (after learning tasks 1..t)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3, lw=0.5)
        if not percent:
            ax.axhline(0.0, color="0.3", lw=0.6)  # rho = 0: as good as Joint
        _zoom_past_chance(ax, curves, scale)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title=BANDS[band], title_fontsize=8)
    return fig


def _zoom_past_chance(ax, curves: Sequence[Curve], scale: float) -> None:
    """When Random lies far below every other curve (it squashes them into a strip), zoom the y axis on
    the others and say Random's range in its legend entry instead of drawing it off the scale."""
    chance = [c for c in curves if c.strategy == "random"]
    others = [c for c in curves if c.strategy != "random"]
    if not chance or not others:
        return
    lo = min(float(np.min(c.mean - c.std)) for c in others) * scale
    hi = max(float(np.max(c.mean + c.std)) for c in others) * scale
    span = max(hi - lo, 1e-9)
    r = chance[0].mean * scale
    if r.max() < lo - span:  # including Random would give the others less than half the axis
        ax.set_ylim(lo - 0.08 * span, hi + 0.08 * span)
        line = next(ln for ln in ax.get_lines() if ln.get_label().startswith(chance[0].label + " "))
        values = f"{r.min():.3g}" if f"{r.min():.3g}" == f"{r.max():.3g}" else f"{r.min():.3g}-{r.max():.3g}"
        line.set_label(f"{line.get_label()}: {values}, below")


def heatmap(
    ax,
    values: np.ndarray,
    fmt: str,
    cmap: str,
    vmin: float | None,
    vmax: float | None,
    fontsize: float = 7,
    xticklabels="auto",
    yticklabels="auto",
):
    """seaborn's heatmap: NaN cells blank, each defined cell annotated (text colour set by the cell's
    lightness), no colour bar (the caller adds one); returns the QuadMesh for the colour bar."""
    values = np.asarray(values, dtype=float)
    sns.heatmap(
        values,
        ax=ax,
        annot=True,
        fmt=fmt,
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        cbar=False,
        mask=~np.isfinite(values),
        annot_kws={"fontsize": fontsize},
        xticklabels=xticklabels,
        yticklabels=yticklabels,
        linewidths=0.5,
        linecolor="white",
    )
    ax.tick_params(length=0)
    return ax.collections[0]


def _slant(ax, degrees: float, size: float | None = None) -> None:
    """Tilt the x tick labels, each ending under its column (anchored at its right end)."""
    for label in ax.get_xticklabels():
        label.set(rotation=degrees, ha="right" if degrees else "center", rotation_mode="anchor")
        if size:
            label.set_fontsize(size)


def accuracy_matrices_figure(
    matrices: Sequence[tuple[str, str, np.ndarray, int]], task_names: Sequence[str], title: str
) -> Figure:
    """Raw accuracy matrices: (label, strategy, mean matrix (T x T, NaN above the diagonal), seeds)
    per panel; rows = after task t, columns = task tau, cells in %; the tasks named on both axes."""
    n = len(matrices)
    T = len(task_names)
    cols = min(n, 4 if T <= 6 else 3)
    rows = math.ceil(n / cols)
    named = any(not name.startswith("task ") for name in task_names)
    size = max(1.9, 0.3 * T + 0.8) + (0.5 if named else 0)  # ~0.3 in per cell: two digits at 6 pt fit
    labels = [f"{i + 1} {name}" if named else str(i + 1) for i, name in enumerate(task_names)]
    with plt.rc_context(RC):
        fig, axes = plt.subplots(
            rows, cols, figsize=(size * cols + 0.9, size * rows + 0.5), squeeze=False, layout="constrained"
        )
        mesh = None
        for k, (ax, (label, _strategy, acc, seeds)) in enumerate(zip(axes.flat, matrices)):
            mesh = heatmap(
                ax,
                100 * np.asarray(acc, dtype=float),
                ".0f" if T > 4 else ".1f",
                "viridis",
                0,
                100,
                fontsize=6 if T > 6 else 7,
                xticklabels=labels,
                yticklabels=labels if k % cols == 0 else False,
            )
            ax.set_title(f"{label} (n={seeds})")
            ax.set_xlabel("tested on task $\\tau$")
            ax.set_ylabel("after task t" if k % cols == 0 else "")
            if named:
                _slant(ax, 60, 6)
                ax.tick_params(axis="y", labelrotation=0, labelsize=6)
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
        if mesh is not None:
            fig.colorbar(mesh, ax=axes, shrink=0.8, label="test accuracy (%), mean over seeds")
        fig.suptitle(title)
    return fig


def hat_grid_figure(
    values: np.ndarray,
    s_max: Sequence[float],
    c: Sequence[float],
    value_label: str,
    title: str,
    counts: np.ndarray | None = None,
) -> Figure:
    """Fig. 4: ``values[i, j]`` at s_max[i] (rows) and c[j] (columns); NaN where not run."""
    values = np.asarray(values, dtype=float)
    with plt.rc_context(RC):
        fig, ax = plt.subplots(
            figsize=(max(3.4, 0.62 * len(c) + 1.8), max(2.4, 0.42 * len(s_max) + 1.2)), layout="constrained"
        )
        finite = values[np.isfinite(values)]
        spread = float(finite.max() - finite.min()) if finite.size else 1.0
        im = heatmap(
            ax,
            values,
            ".2f" if spread >= 0.05 else ".3f",
            "viridis",
            None,
            None,  # cells must differ
            xticklabels=[f"{v:g}" for v in c],
            yticklabels=[f"{v:g}" for v in s_max],
        )
        ax.tick_params(axis="y", labelrotation=0)
        ax.set_xlabel("compressibility c")
        ax.set_ylabel("stability $s_{\\max}$")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, label=value_label)
        if counts is not None and np.nanmax(counts) != np.nanmin(counts[counts > 0]):
            ax.text(
                1.0, -0.22, "cells average different numbers of seeds", transform=ax.transAxes, ha="right", fontsize=7
            )
    return fig


def task_switches(steps: Sequence[int], tasks: Sequence[int]) -> list[tuple[int, int]]:
    """(first step, task) of each task, in training order."""
    out: list[tuple[int, int]] = []
    for s, t in zip(steps, tasks):
        if not out or out[-1][1] != t:
            out.append((int(s), int(t)))
    return out


def capacity_figure(steps: Sequence[int], tasks: Sequence[int], usage: Sequence[float], title: str) -> Figure:
    """Fig. 5: capacity usage (% of weights whose cumulative mask is 1) against the training step,
    dashed vertical lines at each task switch, task numbers along the top."""
    steps, usage = np.asarray(steps), 100 * np.asarray(usage, dtype=float)
    switches = task_switches(steps, tasks)
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(6.0, 2.8), layout="constrained")
        ax.plot(steps, usage, color=KNOWN_COLORS["hat"], lw=1.3)
        for k, (s, t) in enumerate(switches):
            if k > 0:
                ax.axvline(s, color="0.35", ls="--", lw=0.8)
            end = switches[k + 1][0] if k + 1 < len(switches) else steps.max()
            ax.text(
                (s + end) / 2,
                1.01,
                f"task {t + 1}" if len(switches) <= 5 else str(t + 1),
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=7,
                color="0.3",
            )
        ax.set_ylim(0, 100)
        ax.set_xlim(steps.min(), steps.max())
        ax.set_xlabel("training step (batches)")
        ax.set_ylabel("capacity usage (%)")
        ax.set_title(title, pad=14)
        ax.grid(alpha=0.3, lw=0.5)
    return fig


def reuse_figure(reuse: Sequence[Sequence[float | None]], task_names: Sequence[str], title: str) -> Figure:
    """Fig. 6: reuse[i][j] (%) = share of task t_i's active weights also active for t_j, j > i. Drawn
    for rows t_1..t_{T-1} and columns t_2..t_T, the part where j > i can hold."""
    values = 100 * np.array([[np.nan if v is None else v for v in row] for row in reuse], dtype=float)
    T = values.shape[0]
    names = [f"{i + 1}: {n}" for i, n in enumerate(task_names)]
    with plt.rc_context(RC):
        side = max(2.6, 0.5 * (T - 1) + 1.6)
        fig, ax = plt.subplots(figsize=(side + 1.6, side), layout="constrained")
        im = heatmap(ax, values[:-1, 1:], ".0f", "Blues", 0, 100, xticklabels=names[1:], yticklabels=names[:-1])
        _slant(ax, 30 if T > 4 else 0)
        ax.tick_params(axis="y", labelrotation=0)
        ax.set_xlabel("later task $t_j$")
        ax.set_ylabel("task $t_i$")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, label="weights of $t_i$ reused in $t_j$ (%)")
    return fig


def compression_figure(
    points: Sequence[dict], task_names: Sequence[str], title: str, sgd_accuracy: dict[int, float] | None = None
) -> Figure:
    """Fig. 7: validation accuracy against compression (% of weights active in the task's mask), a dot
    per epoch joined in epoch order, one colour per task; triangles: SGD's accuracy (no compression)."""
    tasks = sorted({int(p["task"]) for p in points})
    palette = sns.color_palette("colorblind", max(len(tasks), 1))
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(6.0, 3.4), layout="constrained")
        comp_all = []
        for k, t in enumerate(tasks):
            pts = sorted((p for p in points if int(p["task"]) == t), key=lambda p: p["epoch"])
            x = np.array([100 * p["compression"] for p in pts])
            y = np.array([100 * p["valid_acc"] for p in pts])
            comp_all.extend(x)
            name = task_names[t] if t < len(task_names) else f"task {t + 1}"
            color = palette[k]
            ax.plot(x, y, marker="o", ms=3, lw=0.6, color=color, label=f"{t + 1}: {name}")
            if sgd_accuracy and t in sgd_accuracy:  # spread within 100 % +-3 % so equal accuracies show
                nudge = 1.06 ** ((k - (len(tasks) - 1) / 2) / max(len(tasks) - 1, 1))
                ax.plot(
                    [100.0 * nudge],
                    [100 * sgd_accuracy[t]],
                    marker="^",
                    ms=7,
                    ls="none",
                    color=color,
                    markeredgecolor="black",
                    markeredgewidth=0.5,
                )
        if sgd_accuracy:
            ax.plot([], [], marker="^", ls="none", color="0.6", markeredgecolor="black", label="SGD, no compression")
        positive = [v for v in comp_all if v > 0]
        if positive:  # log axis, as compression spans decades (the paper's 1-21 %) and SGD sits at 100 %
            ax.set_xscale("log")
            lo = min(positive) / 1.3
            ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 3, 5, 10, 20, 30, 40, 50, 70, 100) if t >= lo]
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
            ax.set_xlim(lo, 125)
        ax.set_xlabel("compression: weights active in the task's mask (%)")
        ax.set_ylabel("validation accuracy $A^1$ (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3, lw=0.5, which="both")
        ax.legend(
            loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="task (dot = epoch)", title_fontsize=8
        )
    return fig


def save_figure(fig: Figure, directory: str | Path, name: str) -> list[Path]:
    """Write ``name``.png (300 dpi) and ``name``.pdf (TrueType fonts) in ``directory``; closes the figure."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{name}.png", directory / f"{name}.pdf"]
    try:
        with plt.rc_context(RC):  # the font type and dpi are read when saving, not when drawing
            for p in paths:
                fig.savefig(p, bbox_inches="tight", dpi=DPI)
    finally:
        plt.close(fig)
    return paths


def png_bytes(fig: Figure, close: bool = True, dpi: int = HTML_DPI) -> bytes:
    """The figure as PNG bytes (for embedding in the HTML report)."""
    buf = io.BytesIO()
    try:
        with plt.rc_context(RC):
            fig.savefig(buf, format="png", bbox_inches="tight", dpi=dpi)
    finally:
        if close:
            plt.close(fig)
    return buf.getvalue()
