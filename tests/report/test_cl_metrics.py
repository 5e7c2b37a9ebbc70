"""ACC, BWT, forgetting (and FWT's n/a) in the runs DataFrame and in `cl-bench report --metrics`, against
values computed by hand from two made-up accuracy matrices."""

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner

from cl_bench.cli import main
from cl_bench.results import load
from cl_bench.store import RunRecord, Store
from cl_bench.trainer import Protocol

MATRICES = {  # seed -> A[t, tau]
    0: np.array([[0.9, np.nan], [0.6, 0.8]]),  # ACC 0.70, BWT 0.6 - 0.9 = -0.30, forgetting 0.30
    1: np.array([[0.8, np.nan], [0.7, 0.9]]),  # ACC 0.80, BWT -0.10, forgetting 0.10
}


@pytest.fixture
def store(tmp_path):
    db = Store(tmp_path / "m.db")
    for seed, acc in MATRICES.items():
        protocol = dataclasses.asdict(Protocol(epochs=3))
        db.save(
            RunRecord(
                f"sgd-{seed}",
                "sgd",
                "split_mnist",
                seed,
                {},
                protocol,
                {"max_train_per_task": 100},
                "finished",
                acc,
                tags=[],
                code_version="test",
                wall_s=1.0,
            )
        )
    return tmp_path / "m.db"


def test_the_runs_dataframe_has_the_field_s_metrics(store):
    runs, _ = load(store)
    runs = runs.set_index("seed")
    assert runs.loc[0, ["acc", "bwt", "forgetting"]].tolist() == pytest.approx([0.70, -0.30, 0.30])
    assert runs.loc[1, ["acc", "bwt", "forgetting"]].tolist() == pytest.approx([0.80, -0.10, 0.10])
    assert runs["fwt"].isna().all()  # never measured: a task is tested only after it is trained


def test_report_metrics_table_is_the_mean_and_std_over_seeds(store):
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--metrics", "acc,bwt,fwt,forgetting"])
    assert result.exit_code == 0, result.output
    assert "| SGD | 2 | 75.00 (5.00) | -20.00 (10.00) | 20.00 (10.00) | n/a |" in result.output
    assert "FWT is n/a" in result.output
    assert "Table 1" not in result.output and "rho<=" not in result.output  # rho not asked for


def test_an_unknown_metric_lists_the_valid_ones(store):
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--metrics", "acc,bogus"])
    assert result.exit_code == 2 and "bogus" in result.output and "rho, acc, bwt, forgetting, fwt" in result.output
