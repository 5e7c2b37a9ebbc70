"""Figures ready for print, read back from the files: PNG at 300 dpi, PDF with TrueType (Type 42) fonts
and no Type 3 font; data-set names on the accuracy-matrix axes; Fig. 3's band is the std or the 95%
interval and says which; one colour-blind-safe colour and one marker per strategy."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_report import SEEDS, T, hand_rho_upto, synthetic_records, synthetic_store

from cl_bench.cli import main
from cl_bench.metrics import summarize
from cl_bench.report import analyse, curves, mean_matrices, plots
from cl_bench.report.style import KNOWN_COLORS, MARKERS


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    d = tmp_path_factory.mktemp("figs")
    synthetic_store(d / "x.db")
    res = CliRunner().invoke(main, ["report", "--store", str(d / "x.db"), "--figures", str(d / "out")])
    assert res.exit_code == 0, res.output
    return d / "out"


def _pdf_fonts(data: bytes) -> list[bytes]:
    return re.findall(rb"/Subtype\s*/(\w+)", data)


def test_png_files_are_300_dpi(figures):
    pngs = sorted(figures.glob("*.png"))
    assert len(pngs) == 7
    for p in pngs:
        with Image.open(p) as im:
            dpi = im.info["dpi"]
        assert dpi == pytest.approx((300, 300), abs=0.5), p.name


def test_pdf_files_embed_truetype_fonts_and_no_type3(figures):
    pdfs = sorted(figures.glob("*.pdf"))
    assert len(pdfs) == 7
    for p in pdfs:
        data = p.read_bytes()
        subtypes = _pdf_fonts(data)
        assert b"Type3" not in subtypes, p.name
        assert b"CIDFontType2" in subtypes or b"TrueType" in subtypes, (p.name, subtypes)
        assert b"/FontFile2" in data, p.name  # the TrueType program is embedded


def test_captions_file_lists_every_figure_with_its_scale(figures):
    text = (figures / "captions.md").read_text()
    assert text.count("\n- `") == 7 and text.count("Not the paper's full protocol") == 7


def test_mixture_heatmaps_name_the_data_sets():
    names = ["FaceScrub", "MNIST", "CIFAR10"]
    (sec,) = analyse(synthetic_records())
    fig = plots.accuracy_matrices_figure(mean_matrices(sec), names, "m")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 4
    for ax in panels:  # every panel names the tested tasks; the first of a row names the rows too
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1 FaceScrub", "2 MNIST", "3 CIFAR10"]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["1 FaceScrub", "2 MNIST", "3 CIFAR10"]
    plots.plt.close(fig)


@pytest.mark.parametrize("band", ["std", "ci95"])
def test_fig3_band_is_the_std_or_the_95_interval_and_says_which(band):
    (sec,) = analyse(synthetic_records())
    fig = plots.curves_figure(curves(sec, "rho"), "rho", "t", band=band)
    ax = fig.axes[0]
    assert ax.get_legend().get_title().get_text() == plots.BANDS[band]
    assert ("1 std" if band == "std" else "95% t-interval") in plots.BANDS[band]
    band_poly = next(
        b
        for b in ax.collections
        if b.get_facecolor()[0][:3].round(4).tolist()
        == [round(int(KNOWN_COLORS["sgd"][i : i + 2], 16) / 255, 4) for i in (1, 3, 5)]
    )
    ys = band_poly.get_paths()[0].vertices[:, 1]
    for t in range(T):
        values = [hand_rho_upto("sgd", s)[t] for s in SEEDS]
        s = summarize(values)
        half = s.std if band == "std" else s.ci95
        assert np.isclose(ys, s.mean + half, atol=1e-9).any() and np.isclose(ys, s.mean - half, atol=1e-9).any()
    plots.plt.close(fig)


def test_the_cli_band_option(tmp_path):
    synthetic_store(tmp_path / "x.db")
    res = CliRunner().invoke(
        main, ["report", "--store", str(tmp_path / "x.db"), "--band", "ci95", "--figures", str(tmp_path / "f")]
    )
    assert res.exit_code == 0, res.output
    assert "mean and 95% Student-t interval over seeds" in (tmp_path / "f" / "captions.md").read_text()


def test_each_strategy_has_its_own_colour_and_marker():
    assert len(set(KNOWN_COLORS.values())) == len(KNOWN_COLORS)
    assert set(MARKERS) == set(KNOWN_COLORS)
    strategies = [k for k in MARKERS if k not in ("joint", "random")]
    assert len({MARKERS[k] for k in strategies}) == len(strategies)
    # Paul Tol's colour-blind-safe "muted" palette for the nine baselines
    muted = {"#cc6677", "#332288", "#ddcc77", "#117733", "#88ccee", "#882255", "#44aa99", "#999933", "#aa4499"}
    paper = {"sgd", "sgd_frozen", "ewc", "imm_mean", "imm_mode", "lwf", "lfl", "pathnet", "pnn"}
    assert {KNOWN_COLORS[k] for k in paper} == muted
    assert not {KNOWN_COLORS[k] for k in strategies if k not in paper} & muted  # beyond the paper: apart
