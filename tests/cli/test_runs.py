"""``cl-bench runs``: list with filters, show one run, tag, remove (never a claimed run), export, merge."""

import csv
import json
import sqlite3

import pytest
from click.testing import CliRunner
from conftest import make_scenario

from cl_bench.cli.runs import runs
from cl_bench.registry import register_scenario
from cl_bench.runner import RunConfig, execute
from cl_bench.store import RunRecord, Store, claims
from cl_bench.store.claims import Owner
from cl_bench.trainer import PRESETS


@register_scenario("tiny_runs_cli", "2 synthetic tasks (tests only)")
def _tiny(seed=0, data_root_path=None, download=False):
    return make_scenario(n_tasks=2, n_train=30, n_test=30, seed=seed)


PROTOCOL = PRESETS["quick"].replace(epochs=1)
SGD0 = RunConfig("sgd", "tiny_runs_cli", 0, {}, PROTOCOL)
EWC1 = RunConfig("ewc", "tiny_runs_cli", 1, {"lamb": 100.0}, PROTOCOL, tags=["r1"])
JOINT0 = RunConfig("joint", "tiny_runs_cli", 0, {}, PROTOCOL.replace(epochs=2))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs_cli")
    store = Store(folder / "a.db")
    for config in (SGD0, EWC1, JOINT0):
        execute(config, store, checkpoints=False)
    store.save(
        RunRecord(
            "f00dfailed",
            "sgd",
            "tiny_runs_cli",
            2,
            {},
            {},
            {},
            "failed",
            error="boom\ntrace",
            started=1.0,
            finished=2.0,
            wall_s=1.0,
        )
    )
    return folder


@pytest.fixture
def store(made, tmp_path):
    """A fresh copy of the made store (through SQLite: in WAL mode the file alone may lack commits)."""
    src, dst = sqlite3.connect(made / "a.db"), sqlite3.connect(tmp_path / "a.db")
    src.backup(dst)
    src.close()
    dst.close()
    return str(tmp_path / "a.db")


def invoke(*args, input=None):
    return CliRunner().invoke(runs, [str(a) for a in args], input=input, catch_exceptions=False)


def ids_in(output: str) -> set[str]:
    known = {SGD0.run_id(), EWC1.run_id(), JOINT0.run_id(), "f00dfailed"}
    return {word for line in output.splitlines() for word in line.split()[:1] if word in known}


def test_list_shows_every_run_with_its_columns(store):
    res = invoke("list", "--store", store)
    assert res.exit_code == 0, res.output
    header = res.output.splitlines()[0].split()
    assert header[:4] == ["run", "id", "strategy", "scenario"] and "A<=T" in header and "wall" in header
    assert ids_in(res.output) == {SGD0.run_id(), EWC1.run_id(), JOINT0.run_id(), "f00dfailed"}
    assert "4 run(s)" in res.output
    line = next(x for x in res.output.splitlines() if x.startswith(EWC1.run_id()))
    assert "ewc" in line and "r1" in line and "finished" in line


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--strategy", "sgd"], {"SGD0", "failed"}),
        (["--strategy", "sgd", "--status", "finished"], {"SGD0"}),
        (["--seed", "1"], {"EWC1"}),
        (["--tag", "r1"], {"EWC1"}),
        (["--status", "failed"], {"failed"}),
        (["--where", "epochs=2"], {"JOINT0"}),
        (["--where", "lamb=100"], {"EWC1"}),
        (["--scenario", "nope"], set()),
    ],
)
def test_list_filters(store, args, expected):
    names = {"SGD0": SGD0.run_id(), "EWC1": EWC1.run_id(), "JOINT0": JOINT0.run_id(), "failed": "f00dfailed"}
    res = invoke("list", "--store", store, *args)
    assert res.exit_code == 0, res.output
    assert ids_in(res.output) == {names[n] for n in expected}
    if not expected:
        assert "no run matches (4 in" in res.output


def test_list_errors_are_one_line(store, tmp_path):
    res = CliRunner().invoke(runs, ["list", "--store", store, "--where", "nosuch=1"])
    assert res.exit_code == 1 and "no run has a setting named nosuch" in res.output
    res = CliRunner().invoke(runs, ["list", "--store", str(tmp_path / "missing.db")])
    assert res.exit_code == 1 and res.output.startswith("Error: no store at") and len(res.output.splitlines()) == 1
    assert not (tmp_path / "missing.db").exists()
    for command in (
        ["show", "abc"],
        ["tag", "abc", "--add", "x"],
        ["remove", "abc", "--yes"],
        ["export", "--out", str(tmp_path / "x.csv")],
        ["merge", store],
    ):
        res = CliRunner().invoke(runs, [*command, "--store", str(tmp_path / "missing.db")])
        assert res.exit_code == 1 and "no store at" in res.output, command
    assert not (tmp_path / "missing.db").exists()


def test_show_prints_config_matrix_attempts_and_history(store):
    run_id = EWC1.run_id()
    res = invoke("show", run_id[:5], "--store", store)
    assert res.exit_code == 0, res.output
    out = res.output
    assert out.startswith(f"run {run_id}: ewc on tiny_runs_cli, seed 1: finished")
    assert "lamb=100.0" in out and "epochs=1" in out and "r1" in out
    assert "| after \\ on | 1 | 2 |" in out  # the accuracy matrix
    assert "attempts:\n  1. finished" in out
    assert "history:" in out and "best valid acc" in out
    assert "task task0: 3 classes, 30 train / 10 valid / 30 test" in out
    assert "validation accuracy (%), what selection reads:" in out  # the run recorded it


def test_show_prints_hats_mask_learning_per_task(store):
    hat = {"layers": ["fc1", "fc2"], "units": [100, 300]}
    hat["mask_learning"] = {"moved": [[0.1, 0.3], [0.2, 0.0]], "capacity": [0.5, 0.75]}
    Store(store).save(RunRecord("4a7", "hat", "tiny_runs_cli", 0, {}, {}, {}, "finished", monitoring={"hat": hat}))
    out = invoke("show", "4a7", "--store", store).output
    table = out.split("HAT mask learning (% of units that left their initial on/off state):\n")[1]
    # all units: weighted by the layers' sizes, (0.1 * 100 + 0.3 * 300) / 400 = 25%, (0.2 * 100) / 400 = 5%
    assert table.splitlines()[:3] == [
        "task  fc1   fc2   all units  capacity used",
        "1     10.0  30.0  25.0       50.0",
        "2     20.0  0.0   5.0        75.0",
    ]


def test_show_a_failed_run_and_bad_ids(store):
    res = invoke("show", "f00d", "--store", store)
    assert res.exit_code == 0 and "error:            boom" in res.output and "accuracy: none measured" in res.output
    res = CliRunner().invoke(runs, ["show", "zzzz", "--store", store])
    assert res.exit_code == 1 and "no run zzzz" in res.output
    Store(store).save(RunRecord("f00dother", "sgd", "tiny_runs_cli", 3, {}, {}, {}, "failed", error="x"))
    res = CliRunner().invoke(runs, ["show", "f00d", "--store", store])
    assert res.exit_code == 1 and "ambiguous" in res.output and "f00dfailed, f00dother" in res.output


def test_tag_adds_tags_to_runs(store):
    res = invoke("tag", SGD0.run_id()[:6], EWC1.run_id(), "--add", "paper", "--add", "r1", "--store", store)
    assert res.exit_code == 0 and "tagged 2 run(s)" in res.output, res.output
    db = Store.open_read(store)
    assert db.get(SGD0.run_id()).tags == ["paper", "r1"] and db.get(EWC1.run_id()).tags == ["r1", "paper"]
    assert ids_in(invoke("list", "--store", store, "--tag", "paper").output) == {SGD0.run_id(), EWC1.run_id()}
    res = invoke("tag", SGD0.run_id(), "--add", "paper", "--store", store)
    assert "tagged 0 run(s) (1 already had the tag(s))" in res.output


def test_remove_asks_first(store):
    run_id = SGD0.run_id()
    res = invoke("remove", run_id, "--store", store, input="n\n")
    assert res.exit_code == 1 and "Aborted" in res.output and "sgd on tiny_runs_cli, seed 0" in res.output
    assert Store.open_read(store).get(run_id) is not None
    res = invoke("remove", run_id[:6], "--store", store, input="y\n")
    assert res.exit_code == 0 and "removed 1 run(s)" in res.output
    db = Store.open_read(store)
    assert db.get(run_id) is None and db.attempts(run_id) == []
    res = invoke("remove", JOINT0.run_id(), "f00dfailed", "--yes", "--store", store)
    assert res.exit_code == 0 and "removed 2 run(s)" in res.output
    assert Store.open_read(store).run_ids() == [EWC1.run_id()]


def test_remove_refuses_a_claimed_run(store):
    db, owner = Store(store), Owner.here()
    claims.claim(db, JOINT0.run_id(), owner)
    try:
        res = CliRunner().invoke(runs, ["remove", JOINT0.run_id(), "--yes", "--store", store])
    finally:
        claims.release(db, JOINT0.run_id(), owner)
    assert res.exit_code == 1 and "is being run by another process" in res.output
    assert Store.open_read(store).get(JOINT0.run_id()) is not None


def test_export_csv_and_json_read_back(store, tmp_path):
    res = invoke("export", "--out", tmp_path / "r.csv", "--store", store, "--status", "finished")
    assert res.exit_code == 0 and "wrote 3 run(s)" in res.output, res.output
    with open(tmp_path / "r.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9 and {r["strategy"] for r in rows} == {"sgd", "ewc", "joint"}
    res = invoke("export", "--format", "json", "--out", tmp_path / "r.json", "--store", store, "--tag", "r1")
    assert res.exit_code == 0 and "wrote 1 run(s)" in res.output
    [obj] = json.loads((tmp_path / "r.json").read_text())
    assert obj["run_id"] == EWC1.run_id() and len(obj["accuracy"]) == 2 and obj["hparams"]["lamb"] == 100.0
    res = CliRunner().invoke(runs, ["export", "--out", str(tmp_path / "no" / "r.csv"), "--store", store])
    assert res.exit_code == 1 and "does not exist" in res.output


def test_merge_adds_once_and_reports_conflicts(store, made, tmp_path):
    target = tmp_path / "b.db"
    db = Store(target)
    execute(SGD0, db, checkpoints=False)  # the same configuration, run again: a conflict
    res = invoke("merge", store, "--store", target)
    assert res.exit_code == 0, res.output
    assert "3 run(s) added, 0 already here, 1 conflict(s)" in res.output
    assert f"conflict {SGD0.run_id()}: kept this store's" in res.output
    res = invoke("merge", store, "--store", target)
    assert "0 run(s) added, 3 already here, 1 conflict(s)" in res.output
    assert sorted(Store.open_read(target).run_ids()) == sorted(Store.open_read(store).run_ids())
    res = CliRunner().invoke(runs, ["merge", str(tmp_path / "none.db"), "--store", str(target)])
    assert res.exit_code == 1 and "no store at" in res.output


def test_show_says_when_a_run_s_wall_time_spans_several_sittings(tmp_path):
    import numpy as np

    path = tmp_path / "s.db"
    acc = np.array([[0.9, np.nan], [0.8, 0.7]])
    common = dict(started=1000.0, finished=1200.0)  # the last sitting's span: 200 s
    Store(path).save(
        RunRecord("onesitting", "sgd", "tiny_runs_cli", 0, {}, {}, {}, "finished", acc, wall_s=200.0, **common)
    )
    Store(path).save(
        RunRecord("resumed", "sgd", "tiny_runs_cli", 1, {}, {}, {}, "finished", acc, wall_s=600.0, **common)
    )
    one, resumed = (invoke("show", run_id, "--store", path).output for run_id in ("onesitting", "resumed"))
    assert "wall: 3m20s\n" in one and "sittings" not in one
    assert "wall: 10m00s   (over several sittings: resumed from a checkpoint)" in resumed
