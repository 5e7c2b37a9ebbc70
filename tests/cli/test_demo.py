"""The first-run demo: clear errors without data, plain progress when piped, a store that `report` reads."""

import os

import pytest
from click.testing import CliRunner

from cl_bench.cli import main

MNIST = os.path.join(os.environ.get("CL_BENCH_DATA", ""), "MNIST")


def test_demo_without_data_and_without_download_says_how_to_fix_it(tmp_path):
    result = CliRunner().invoke(
        main, ["demo", "--data-root", str(tmp_path / "empty"), "--no-download", "--store", str(tmp_path / "demo.db")]
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "MNIST" in result.output and "--download" in result.output
    assert "../shared" not in result.output


@pytest.mark.skipif(not os.path.isdir(MNIST), reason="MNIST is not under CL_BENCH_DATA")
def test_demo_prints_progress_and_report_reads_its_store(tmp_path):
    store = str(tmp_path / "demo.db")
    result = CliRunner().invoke(main, ["demo", "--max-train-per-task", "100", "--epochs", "1", "--store", store])
    assert result.exit_code == 0, result.output
    assert "not the paper's protocol" in result.output
    assert "task 2 epoch 1/<=1:" in result.output  # per-epoch progress as plain lines, with the epoch cap
    assert "\r" not in result.output and "\x1b" not in result.output
    assert f"cl-bench report --store {store}" in result.output
    report = CliRunner().invoke(main, ["report", "--store", store])
    assert report.exit_code == 0, report.output
    assert "hat" in report.output and "sgd" in report.output
