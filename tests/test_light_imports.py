"""A run imports only what it needs: the accuracy matrix it prints comes from cl_bench.metrics, which
(like the runner) imports neither scipy, pandas nor matplotlib; the report's name for it still works."""

import subprocess
import sys

import numpy as np

from cl_bench.metrics import format_accuracy_matrix

HEAVY = ("scipy", "pandas", "matplotlib", "cl_bench.report")


def test_the_run_path_imports_no_report_library():
    code = f"import sys, cl_bench.runner, cl_bench.metrics; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_the_matrix_is_the_same_function_under_both_names():
    from cl_bench.report import format_accuracy_matrix as from_report
    from cl_bench.report.tables import format_accuracy_matrix as from_tables

    assert from_report is format_accuracy_matrix is from_tables
    acc = np.array([[0.5, np.nan], [0.25, 0.125]])
    assert format_accuracy_matrix(acc, ["a", "b"]).splitlines() == [
        "| after \\ on | a | b |",
        "|---|---:|---:|",
        "| a | 50.0 |  |",
        "| b | 25.0 | 12.5 |",
    ]
