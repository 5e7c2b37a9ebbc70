"""Figures drawn from the synthetic store of test_report.py: the data on each Axes, checked before saving,
equals an independent computation from the hand-made matrices and monitoring."""

from __future__ import annotations

import math

import matplotlib.colors as mcolors
import numpy as np
import pytest
from test_report import (
    SEEDS,
    SWEEP,
    T,
    hand_acc_upto,
    hand_rho_upto,
    matrix,
    monitoring,
    synthetic_records,
)

from cl_bench.report import (
    analyse,
    curves,
    hat_grids,
    mean_matrices,
    plots,
    sgd_single_task_accuracy,
)


@pytest.fixture(scope="module")
def section():
    (sec,) = analyse(synthetic_records())
    return sec


def _mean_std(values):
    n = len(values)
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / n)


def test_fig3_lines_are_mean_rho_over_seeds_and_band_is_one_std(section):
    fig = plots.curves_figure(curves(section, "rho"), "rho", "t")
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    assert set(lines) == {"HAT (n=3)", "SGD (n=3)"}  # references are not in the rho plot
    bands = ax.collections
    for strategy, label in [("hat", "HAT (n=3)"), ("sgd", "SGD (n=3)")]:
        per_t = [_mean_std([hand_rho_upto(strategy, s)[t] for s in SEEDS]) for t in range(T)]
        line = lines[label]
        np.testing.assert_allclose(line.get_xdata(), [1, 2, 3])
        np.testing.assert_allclose(line.get_ydata(), [m for m, _ in per_t], atol=1e-12)
        assert mcolors.to_hex(line.get_color()) == plots.KNOWN_COLORS[strategy]
        band = next(b for b in bands if mcolors.to_hex(b.get_facecolor()[0]) == plots.KNOWN_COLORS[strategy])
        ys = band.get_paths()[0].vertices[:, 1]
        for m, sd in per_t:
            assert np.isclose(ys, m - sd, atol=1e-9).any() and np.isclose(ys, m + sd, atol=1e-9).any()
    plots.plt.close(fig)


def test_accuracy_curves_include_references_dashed(section):
    fig = plots.curves_figure(curves(section, "acc"), "A", "t", percent=True)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")}
    assert list(lines)[:3] == ["Joint (n=3)", "HAT (n=3)", "SGD (n=3)"]  # best last value first
    # Random (~50 %) is far below the others (75-94 %): the axis zooms on them and the legend says so
    assert list(lines)[3] == "Random (n=3): 50-51, below"
    lines["Random (n=3)"] = lines.pop("Random (n=3): 50-51, below")
    assert fig.axes[0].get_ylim()[0] > 70
    for strategy, label in [("joint", "Joint (n=3)"), ("sgd", "SGD (n=3)"), ("random", "Random (n=3)")]:
        expected = [100 * _mean_std([hand_acc_upto(strategy, s)[t] for s in SEEDS])[0] for t in range(T)]
        np.testing.assert_allclose(lines[label].get_ydata(), expected, atol=1e-10)
    assert lines["Joint (n=3)"].get_linestyle() == "--" and lines["Random (n=3)"].get_linestyle() == ":"
    plots.plt.close(fig)


def test_accuracy_matrix_heatmaps_hold_the_seed_means(section):
    mats = mean_matrices(section)
    fig = plots.accuracy_matrices_figure(mats, section.task_names(), "m")
    panels = {ax.get_title(): ax for ax in fig.axes if ax.collections and ax.get_title()}  # not the colour bar
    assert set(panels) == {"HAT (n=3)", "SGD (n=3)", "Joint (n=3)", "Random (n=3)"}
    for strategy, title in [("sgd", "SGD (n=3)"), ("random", "Random (n=3)")]:
        shown = panels[title].collections[0].get_array()
        for t in range(T):
            for tau in range(T):
                if tau > t:
                    assert shown.mask[t, tau]
                else:
                    expected = 100 * sum(matrix(strategy, s)[t][tau] for s in SEEDS) / len(SEEDS)
                    assert shown[t, tau] == pytest.approx(expected, abs=1e-10)
    plots.plt.close(fig)


def test_fig4_grid_is_hat_rho_at_each_s_max_and_c_on_the_common_seed(section):
    (grid,) = hat_grids(section)
    assert grid.s_max == [25.0, 400.0] and grid.c == [0.1, 0.75] and grid.metric == "rho<=T"
    assert grid.seeds == [0]  # the sweep ran seed 0 only, so the default cell uses seed 0 too
    fig = plots.hat_grid_figure(grid.values, grid.s_max, grid.c, "rho", "g", grid.counts)
    shown = fig.axes[0].collections[0].get_array()
    for i, s_max in enumerate([25.0, 400.0]):
        for j, c in enumerate([0.1, 0.75]):
            assert (s_max, c) in SWEEP + [(400.0, 0.75)]
            assert shown[i, j] == pytest.approx(hand_rho_upto("hat", 0, s_max=s_max, c=c)[-1], abs=1e-12)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.1", "0.75"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["25", "400"]
    plots.plt.close(fig)


def test_fig5_capacity_curve_and_task_switches():
    cap = monitoring()["hat"]["capacity"]
    fig = plots.capacity_figure([p["step"] for p in cap], [p["task"] for p in cap], [p["usage"] for p in cap], "c")
    ax = fig.axes[0]
    curve, *vlines = ax.get_lines()
    np.testing.assert_allclose(curve.get_ydata(), [100 * p["usage"] for p in cap])
    np.testing.assert_allclose(curve.get_xdata(), [p["step"] for p in cap])
    # steps 0, 3, ..., 27 with task = step // 10: task 2 starts at step 12, task 3 at step 21
    assert [ln.get_xdata()[0] for ln in vlines] == [12, 21]
    assert all(ln.get_linestyle() == "--" for ln in vlines)
    assert {t.get_text() for t in ax.texts} == {"task 1", "task 2", "task 3"}
    plots.plt.close(fig)


def test_fig6_reuse_shows_the_defined_upper_triangle_in_percent():
    fig = plots.reuse_figure(monitoring()["hat"]["reuse"], ["a", "b", "c"], "r")
    shown = fig.axes[0].collections[0].get_array()  # rows t_1..t_2, columns t_2..t_3
    assert shown[0, 0] == pytest.approx(60) and shown[0, 1] == pytest.approx(50)
    assert shown[1, 1] == pytest.approx(70) and shown.mask[1, 0]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["2: b", "3: c"]
    plots.plt.close(fig)


def test_fig7_dots_per_epoch_and_sgd_triangles(section):
    sgd = sgd_single_task_accuracy(section, 0)
    assert sgd == {0: 0.81, 1: 0.77, 2: 0.88}  # each task's best-validation-loss epoch
    comp = monitoring()["hat"]["compression"]
    fig = plots.compression_figure(comp, ["a", "b", "c"], "c", sgd)
    lines = fig.axes[0].get_lines()
    dots = [ln for ln in lines if ln.get_marker() == "o"]
    triangles = [ln for ln in lines if ln.get_marker() == "^" and len(ln.get_xdata())]
    for t, ln in enumerate(dots):
        pts = [p for p in comp if p["task"] == t]
        np.testing.assert_allclose(ln.get_xdata(), [100 * p["compression"] for p in pts])
        np.testing.assert_allclose(ln.get_ydata(), [100 * p["valid_acc"] for p in pts])
    assert [ln.get_ydata()[0] for ln in triangles] == [pytest.approx(81.0), pytest.approx(77.0), pytest.approx(88.0)]
    assert all(97 <= ln.get_xdata()[0] <= 103 for ln in triangles)  # at 100 %, nudged apart
    plots.plt.close(fig)


def test_strategy_colours_fixed_for_known_names_and_deterministic_for_others():
    a = plots.strategy_colors(["hat", "zeta", "alpha", "sgd"])
    b = plots.strategy_colors(["alpha", "zeta", "ewc", "hat"])
    assert a["hat"] == b["hat"] == plots.KNOWN_COLORS["hat"]
    assert a["alpha"] == b["alpha"] == plots.FREE_COLORS[0] and a["zeta"] == plots.FREE_COLORS[1]
    known = list(plots.KNOWN_COLORS.values())
    assert len(set(known)) == len(known) and not set(known) & set(plots.FREE_COLORS)
    assert set(plots.KNOWN_COLORS) == {
        "sgd",
        "sgd_frozen",
        "ewc",
        "imm_mean",
        "imm_mode",
        "lwf",
        "lfl",
        "pathnet",
        "pnn",
        "hat",
        "si",
        "mas",
        "er",
        "agem",
        "packnet",
        "wsn",
        "gpm",
        "joint",
        "random",
    }


def test_save_figure_writes_png_and_pdf(tmp_path, section):
    paths = plots.save_figure(plots.curves_figure(curves(section, "rho"), "rho", "t"), tmp_path / "d", "f")
    png, pdf = (p.read_bytes() for p in paths)
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert pdf.startswith(b"%PDF") and len(pdf) > 5000
