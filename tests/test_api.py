"""The Python API (cl_bench.api, re-exported by the package on first use): run, run_sweep, load_results."""

import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import make_scenario

import cl_bench
from cl_bench.registry import register_scenario
from cl_bench.runner import RunFailed
from cl_bench.store import Store
from cl_bench.sweep import SweepError
from cl_bench.trainer import PRESETS


@register_scenario("tiny_api", "2 synthetic tasks (tests only)")
def _tiny(seed=0, data_root_path=None, download=False):
    return make_scenario(n_tasks=2, seed=seed)


QUICK = {"epochs": 1}


def test_import_does_not_load_torch():
    probe = (
        "import sys, cl_bench; before = 'torch' in sys.modules; names = dir(cl_bench); "
        "cl_bench.run; print(before, 'run' in names and 'run_sweep' in names, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert out.stdout.split() == ["False", "True", "True"], out.stdout + out.stderr


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cl_bench.nope  # noqa: B018


def test_run_stores_and_returns_the_record(tmp_path):
    db = tmp_path / "api.db"
    epochs = []
    record = cl_bench.run(
        "sgd", "tiny_api", seed=1, protocol=QUICK, preset="quick", tags="api", store=db, on_epoch=epochs.append
    )
    assert record.status == "finished" and record.accuracy.shape == (2, 2)
    assert record.protocol["epochs"] == 1 and record.protocol["lr_patience"] == PRESETS["quick"].lr_patience
    assert len(epochs) == 2  # one epoch per task
    assert Store(db).get(record.run_id).tags == ["api"]
    again = cl_bench.run("sgd", "tiny_api", seed=1, protocol={"epochs": "1"}, preset="quick", store=db)
    assert again.run_id == record.run_id and again.started == record.started  # from the store, not re-run

    protocol = PRESETS["quick"].replace(epochs=1)
    same = cl_bench.run("sgd", "tiny_api", seed=1, protocol=protocol, store=str(db))
    assert same.run_id == record.run_id


def test_run_without_store_and_with_options(tmp_path):
    record = cl_bench.run(
        "ewc",
        "tiny_api",
        hparams={"lamb": "10"},
        protocol=QUICK,
        scenario_options={"max_train_per_task": 30, "tasks": "1"},
        store=None,
    )
    assert record.hparams["lamb"] == 10.0
    assert record.scenario_options == {"max_train_per_task": 30, "tasks": [1]}
    assert record.accuracy.shape == (1, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hparams": {"nope": 1}}, "no hyperparameter nope"),
        ({"protocol": {"epochs": 1.5}}, "epochs"),
        ({"scenario_options": {"nope": 1}}, "no option nope"),
        ({"protocol": PRESETS["paper"], "preset": "quick"}, "not both"),
    ],
)
def test_run_refuses_bad_values_before_the_store(tmp_path, kwargs, match):
    db = tmp_path / "never.db"
    with pytest.raises(ValueError, match=match):
        cl_bench.run("sgd", "tiny_api", store=db, **kwargs)
    assert not db.exists()


def test_failed_run_is_stored_and_raised(tmp_path):
    db = tmp_path / "api.db"
    with pytest.raises(RunFailed) as e:
        cl_bench.run("sgd", "tiny_api", protocol={"epochs": 1, "lr": 1e9}, store=db)
    assert e.value.record.status == "failed" and "diverged" in e.value.record.error
    runs, _ = cl_bench.load_results(db)
    assert list(runs.status) == ["failed"]


def test_run_sweep_and_load_results(tmp_path):
    db = tmp_path / "sweep.db"
    spec = {
        "scenario": "tiny_api",
        "strategies": {"sgd": None, "ewc": {"lamb": [1, 10]}},
        "protocol": {"preset": "quick", "epochs": 1},
        "references": True,
    }
    outcomes = cl_bench.run_sweep(spec, store=db, workers=0, progress=False, name="api")
    assert sorted(o.status for o in outcomes) == ["finished"] * 5
    assert cl_bench.run_sweep(spec, store=Store(db), workers=0, progress=False, name="api") == []  # resumed: done

    runs, accuracy = cl_bench.load_results(db)
    assert isinstance(runs, pd.DataFrame) and isinstance(accuracy, pd.DataFrame)
    assert sorted(runs.strategy) == ["ewc", "ewc", "joint", "random", "sgd"]
    assert set(runs.tags) == {"sweep:api"}
    assert len(accuracy) == 5 * 3  # (t, tau) for t = 0, 1 and tau <= t
    assert set(accuracy.columns) >= {"run_id", "strategy", "t", "tau", "acc"}
    assert accuracy.acc.between(0, 1).all()


def test_run_sweep_from_a_file_and_errors(tmp_path):
    file = tmp_path / "s.yaml"
    file.write_text("scenario: tiny_api\nstrategies: {sgd: }\nprotocol: {epochs: 1}\n")
    outcomes = cl_bench.run_sweep(file, store=tmp_path / "f.db", workers=0, progress=False)
    assert [o.status for o in outcomes] == ["finished"]
    with pytest.raises(SweepError, match="unknown key"):
        cl_bench.run_sweep(
            {"scenario": "tiny_api", "strategies": {"sgd": None}, "bogus": 1}, store=tmp_path / "g.db", workers=0
        )
    with pytest.raises(FileNotFoundError):
        cl_bench.run_sweep(tmp_path / "missing.yaml", store=tmp_path / "g.db", workers=0)
    with pytest.raises(FileNotFoundError, match="no results store"):
        cl_bench.load_results(tmp_path / "missing.db")
