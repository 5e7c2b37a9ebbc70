"""A run's identity: an edited strategy file or other data never serves the old result (both are kept),
while a store whose code and data did not change serves every finished run under its own id."""

import hashlib
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SHARED_DATA, make_scenario, requires_mnist

from cl_bench.cli import main
from cl_bench.registry import get_strategy, register_scenario
from cl_bench.runner import RunConfig, execute
from cl_bench.runner import checkpoint as ckpt
from cl_bench.runner.identity import CurrentView, data_fingerprint, salted_id
from cl_bench.store import Store
from cl_bench.sweep import load_sweep, run_sweep
from cl_bench.trainer import Protocol, Trainer

REPORTS_DB = Path(__file__).resolve().parents[1] / "reports" / "runs.db"
MINE = """
from cl_bench.strategy import Strategy


class Mine(Strategy):
    name = "mine"  # version 1
"""


@register_scenario("tiny_files", "2 synthetic tasks drawn from the file <data root>/tiny/seed.txt (tests only)")
def _tiny_files(seed=0, data_root_path=None, download=False):
    file = Path(data_root_path) / "tiny" / "seed.txt"
    content = file.read_bytes()
    scenario = make_scenario(n_tasks=2, n_train=45, n_test=30, seed=seed + int(content))
    scenario.info = {"datasets": {"tiny": {"files": {str(file): hashlib.sha256(content).hexdigest()}}}}
    return scenario


def data_root(tmp_path, name: str, content: str) -> Path:
    root = tmp_path / name
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "seed.txt").write_text(content)
    return root


def config(strategy="sgd", seed=0):
    return RunConfig(strategy, "tiny_files", seed, protocol=Protocol(epochs=1))


def test_an_edited_strategy_file_runs_again_beside_the_old_result(tmp_path):
    root = data_root(tmp_path, "data", "1")
    file = tmp_path / "mine.py"
    file.write_text(MINE)
    store = Store(tmp_path / "s.db")
    c = config(f"{file}:Mine")
    first = execute(c, store, data_root=root)
    assert first.run_id == c.run_id() and first.identity["strategy_source"]
    assert execute(c, store, data_root=root).started == first.started  # unchanged: served
    file.write_text(MINE.replace("version 1", "version 2"))
    second = execute(c, store, data_root=root)
    assert second.started > first.started and second.run_id != first.run_id  # run again, not served
    assert second.run_id == salted_id(c.run_id(), second.identity)
    assert second.identity["base_run_id"] == c.run_id()
    assert sorted(r.run_id for r in store.query()) == sorted([first.run_id, second.run_id])  # both kept
    assert execute(c, store, data_root=root).started == second.started  # version 2: its own result
    file.write_text(MINE)
    assert execute(c, store, data_root=root).started == first.started  # version 1 again: the first


def test_other_data_run_again_beside_the_old_result_and_the_same_files_elsewhere_do_not(tmp_path):
    a, b, copy_of_a = (data_root(tmp_path, "a", "1"), data_root(tmp_path, "b", "2"), data_root(tmp_path, "a2", "1"))
    store = Store(tmp_path / "s.db")
    on_a = execute(config(), store, data_root=a)
    assert execute(config(), store, data_root=copy_of_a).started == on_a.started  # same checksums
    on_b = execute(config(), store, data_root=b)
    assert on_b.started > on_a.started and on_b.run_id != on_a.run_id
    assert on_b.identity["data"] != on_a.identity["data"]
    assert execute(config(), store, data_root=a).started == on_a.started
    assert execute(config(), store, data_root=b).started == on_b.started
    assert len(store.query()) == 2


def test_the_sweep_planner_serves_and_reruns_exactly_as_execute(tmp_path):
    a, b = data_root(tmp_path, "a", "1"), data_root(tmp_path, "b", "2")
    file = tmp_path / "sweep.yaml"
    file.write_text("{scenario: tiny_files, strategies: {sgd: }, seeds: [0, 1], protocol: {epochs: 1}}")
    store_path = tmp_path / "s.db"
    assert [o.status for o in run_sweep(load_sweep(file), store_path, workers=0, data_root=a, progress=False)] == [
        "finished"
    ] * 2
    assert run_sweep(load_sweep(file), store_path, workers=0, data_root=a, progress=False) == []
    res = CliRunner().invoke(main, ["sweep", str(file), "--store", str(store_path), "--dry-run", "--data-root", str(b)])
    assert res.exit_code == 0, res.output
    assert "2 to run, 0 in the store" in res.output and res.output.count("(again: data changed") == 2
    on_b = run_sweep(load_sweep(file), store_path, workers=0, data_root=b, progress=False)
    assert [o.status for o in on_b] == ["finished"] * 2
    assert run_sweep(load_sweep(file), store_path, workers=0, data_root=b, progress=False) == []
    assert run_sweep(load_sweep(file), store_path, workers=0, data_root=a, progress=False) == []
    assert len(Store.open_read(store_path).query("status = 'finished'")) == 4


def test_a_checkpoint_made_with_other_data_is_not_resumed(tmp_path):
    scenario = make_scenario()
    strategy = get_strategy("sgd")(scenario)
    trainer = Trainer(scenario, Protocol(epochs=1))
    path = tmp_path / "run.pt"
    ckpt.save(
        path,
        run_id="r",
        code_version="v",
        next_task=1,
        strategy=strategy,
        trainer=trainer,
        accuracy=np.zeros((2, 2)),
        identity={"data": "aaaa"},
    )
    assert ckpt.load(path, "r", {"data": "aaaa"}) is not None
    assert ckpt.load(path, "r", {}) is not None  # nothing to compare
    with pytest.warns(UserWarning, match="made with another data"):
        assert ckpt.load(path, "r", {"data": "bbbb"}) is None


@requires_mnist
def test_an_old_store_whose_data_did_not_change_serves_its_runs(tmp_path):
    if not REPORTS_DB.is_file():
        pytest.skip("reports/runs.db is not in this checkout")
    copy = tmp_path / "runs.db"
    shutil.copy(REPORTS_DB, copy)
    store = Store(copy)
    records = store.query("scenario = 'split_mnist' AND status = 'finished'")
    recorded = {data_fingerprint(r.data) for r in records}
    assert records and len(recorded) == 1 and None not in recorded
    view = CurrentView(store, data_root=SHARED_DATA)
    if view.identity_of("sgd", "split_mnist", records[0].scenario_options).get("data") not in recorded:
        pytest.skip(f"the MNIST files under {SHARED_DATA} are not the ones these runs read")
    assert set(view.statuses([r.run_id for r in records]).values()) == {"finished"} and not view.changed
    old = records[0]
    again = execute(
        RunConfig(old.strategy, old.scenario, old.seed, old.hparams, Protocol(**old.protocol), old.scenario_options),
        store,
        data_root=SHARED_DATA,
    )
    assert again.run_id == old.run_id and again.started == old.started  # served, not run again
    assert len(store.query()) == len(Store.open_read(REPORTS_DB).query())


def test_a_sweep_file_naming_an_edited_strategy_runs_it_again(tmp_path):
    root = data_root(tmp_path, "data", "1")
    strategy = tmp_path / "mine.py"
    strategy.write_text(MINE)
    file = tmp_path / "sweep.yaml"
    file.write_text(
        textwrap.dedent(f"""
        scenario: tiny_files
        strategies: {{"{strategy}:Mine": }}
        protocol: {{epochs: 1}}
    """)
    )
    store_path = tmp_path / "s.db"
    first = run_sweep(load_sweep(file), store_path, workers=0, data_root=root, progress=False)
    assert [o.status for o in first] == ["finished"]
    strategy.write_text(MINE.replace("version 1", "version 2"))
    res = CliRunner().invoke(main, ["status", str(file), "--store", str(store_path)])
    assert "total: 0 finished, 0 failed, 1 pending" in res.output, res.output  # status compares the file's hash
    second = run_sweep(load_sweep(file), store_path, workers=0, data_root=root, progress=False)
    assert [o.status for o in second] == ["finished"] and second[0].run_id != first[0].run_id
