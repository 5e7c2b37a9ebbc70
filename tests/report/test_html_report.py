"""The HTML report: one self-contained file (no external CSS/JS), every figure embedded and rendered by
headless Chromium, the tables' numbers and the run metadata (versions, data checksums, configuration).

Chromium: `apt-get install -y chromium`. Without it the browser test skips, unless
CL_BENCH_REQUIRE_CHROMIUM=1 (CI), where it fails.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import struct
import subprocess

import pytest
from click.testing import CliRunner
from test_report import SEEDS, T, hand_rho_upto, mean_std_ci, synthetic_store

from cl_bench.cli import main

N_FIGURES = 7  # fig3 rho, fig3 acc, matrices, fig4, fig5, fig6, fig7
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=10000",
]


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("html")
    synthetic_store(d / "x.db")
    res = CliRunner().invoke(main, ["report", "--store", str(d / "x.db"), "--html", str(d / "report.html")])
    assert res.exit_code == 0, res.output
    return d / "report.html"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)]


def test_every_figure_is_embedded_as_png_and_nothing_is_fetched(report):
    html = report.read_text()
    images = _images(html)
    assert len(images) == N_FIGURES == html.count("<img ")
    assert all(min(_png_size(png)) > 100 for png in images)
    # offline: no external stylesheet, script, font or image
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:|//)""", html)
    assert "<link" not in html and "@import" not in html and "<script" not in html


def test_tables_and_run_metadata(report):
    html = report.read_text()
    mean, std, ci = mean_std_ci([hand_rho_upto("hat", s)[T - 1] for s in SEEDS])
    assert f"{mean:.2f} ({std:.2f}) &plusmn;{ci:.2f}" in html
    assert "ab" * 32 in html and "cd" * 32 in html  # data checksums from RunRecord.data
    assert "0.1.0+gtest" in html  # each run's code version
    assert "&quot;s_max&quot;: 25.0" in html and "&quot;epochs&quot;: 2" in html  # hparams, protocol
    assert "diverged: loss is NaN" in html  # failed runs are listed with their error
    assert html.count("<code>hat-0-") == 4 and "torch" in html  # sweep runs; report's library versions


def test_missing_references_are_listed_with_commands(tmp_path):
    synthetic_store(tmp_path / "x.db", references=False)
    out = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["report", "--store", str(tmp_path / "x.db"), "--html", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    for seed in SEEDS:
        for ref in ("joint", "random"):
            assert f"cl-bench run --strategy {ref} --scenario toy --seed {seed} --max-train-per-task 50" in html
    assert "fig3_rho_toy__max_train_per_task-50__epochs-2</b> not drawn" in html
    assert len(_images(html)) == N_FIGURES - 1  # all but the rho curves


@pytest.mark.skipif(
    not _chromium() and os.environ.get("CL_BENCH_REQUIRE_CHROMIUM") != "1",
    reason="chromium not installed (apt-get install -y chromium); CL_BENCH_REQUIRE_CHROMIUM=1 makes this a failure",
)
def test_chromium_renders_every_figure(report, tmp_path):
    chromium = _chromium()
    assert chromium, "CL_BENCH_REQUIRE_CHROMIUM=1 but no chromium on PATH: apt-get install -y chromium"
    html = report.read_text()
    expected = [_png_size(png) for png in _images(html)]
    # After load, write each image's decoded size into the DOM, then dump the DOM.
    probe = (
        "<script>addEventListener('load',function(){var p=document.createElement('pre');p.id='probe';"
        "p.textContent=Array.prototype.map.call(document.images,function(i){return i.complete+':'+"
        "i.naturalWidth+'x'+i.naturalHeight}).join(' ');document.body.appendChild(p)})</script>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", probe + "</body>"))

    def run(*args):
        return subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    dom = run("--dump-dom", probed.as_uri()).stdout
    found = re.search(r'<pre id="probe">([^<]*)</pre>', dom)
    assert found, f"probe did not run; chromium printed: {dom[-500:]}"
    shown = found.group(1).split()
    assert shown == [f"true:{w}x{h}" for w, h in expected]  # every image decoded at its own size
    shot = tmp_path / "shot.png"
    run("--window-size=1200,1600", f"--screenshot={shot}", report.as_uri())
    assert _png_size(shot.read_bytes()) == (1200, 1600) and shot.stat().st_size > 30_000  # not blank


def test_every_figure_kind_has_its_own_name_in_the_contents():
    """Names are matched by prefix: the peers' Figs. 5-6 must not be listed under HAT's names."""
    from cl_bench.report.figures import FigureItem
    from cl_bench.report.html_page import _toc_name

    names = ["fig5_capacity_s", "fig5_capacity_peers_s", "fig6_reuse_s", "fig6_reuse_peers_s"]
    shown = [_toc_name(FigureItem(name, "", ("s", ""))) for name in names]
    assert len(set(shown)) == 4 and "peers" in shown[1] and "peers" in shown[3], shown
