"""Store housekeeping (cl_bench.store.admin, Store.add_tags): tags added to stored runs, runs deleted
(never one a live process is running), stores merged without duplicates and with conflicts reported,
runs exported to CSV and JSON that read back."""

import csv
import json
import sqlite3

import numpy as np
import pytest
from conftest import make_scenario

from cl_bench.registry import register_scenario
from cl_bench.runner import RunConfig, execute
from cl_bench.store import RunRecord, SchemaError, Store, UnknownRunError, claims
from cl_bench.store.admin import delete, export, merge_from, resolve_run_ids
from cl_bench.store.claims import Owner, RunBusy
from cl_bench.trainer import PRESETS


@register_scenario("tiny_store_admin", "2 synthetic tasks (tests only)")
def _tiny(seed=0, data_root_path=None, download=False):
    return make_scenario(n_tasks=2, n_train=30, n_test=30, seed=seed)


PROTOCOL = PRESETS["quick"].replace(epochs=1)
CONFIGS = [
    RunConfig("sgd", "tiny_store_admin", 0, {}, PROTOCOL),
    RunConfig("ewc", "tiny_store_admin", 1, {"lamb": 100.0}, PROTOCOL, tags=["r1"]),
    RunConfig("joint", "tiny_store_admin", 0, {}, PROTOCOL),
]


def fill(path, configs=CONFIGS) -> Store:
    store = Store(path)
    for config in configs:
        execute(config, store, checkpoints=False)
    return store


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two stores holding the same configurations, run separately (so the runs differ in their times)."""
    folder = tmp_path_factory.mktemp("stores")
    fill(folder / "a.db")
    fill(folder / "b.db")
    return folder


def copy_store(made, name, tmp_path) -> Store:
    """A copy made through SQLite (the store is in WAL mode: the file alone may lack commits)."""
    src = sqlite3.connect(made / name)
    dst = sqlite3.connect(tmp_path / name)
    src.backup(dst)
    src.close()
    dst.close()
    return Store(tmp_path / name)


def failed(run_id, accuracy=None, tags=()):
    return RunRecord(
        run_id,
        "sgd",
        "tiny_store_admin",
        0,
        {},
        {},
        {},
        "failed",
        accuracy,
        tags=list(tags),
        error="RuntimeError: boom\ntraceback",
        started=1.0,
        finished=2.0,
        wall_s=1.0,
    )


def test_add_tags_unites_in_order_and_unknown_ids_write_nothing(made, tmp_path):
    store = copy_store(made, "a.db", tmp_path)
    ids = store.run_ids()
    tagged = CONFIGS[1].run_id()
    assert store.add_tags([tagged], ["b", "r1", "a"]) == 1
    assert store.get(tagged).tags == ["r1", "b", "a"]  # its tags first, then the new ones as given
    assert store.add_tags([tagged], ["a"]) == 0  # already there: nothing changes
    assert store.add_tags(ids, ["all"]) == 3
    assert all(store.get(i).tags[-1] == "all" for i in ids)
    with pytest.raises(UnknownRunError, match="no run nope"):
        store.add_tags([ids[0], "nope"], ["x"])
    assert "x" not in store.get(ids[0]).tags
    with pytest.raises(ValueError, match="empty"):
        store.add_tags(ids, [" "])


def test_a_new_tag_on_a_finished_configuration_is_added(made, tmp_path):
    store = copy_store(made, "a.db", tmp_path)
    config = RunConfig("sgd", "tiny_store_admin", 0, {}, PROTOCOL, tags=["again"])
    execute(config, store, checkpoints=False)  # served from the store, not run again
    assert store.get(config.run_id()).tags == ["again"] and len(store.attempts(config.run_id())) == 1


def test_resolve_by_prefix(made):
    store = Store.open_read(made / "a.db")
    ids = store.run_ids()
    assert resolve_run_ids(store, [ids[0][:6], ids[0]]) == [ids[0]]
    with pytest.raises(UnknownRunError, match="no run zzz"):
        resolve_run_ids(store, ["zzz"])


def test_resolve_an_ambiguous_prefix_is_an_error(tmp_path):
    store = Store(tmp_path / "s.db")
    store.save(failed("abc1"))
    store.save(failed("abc2"))
    with pytest.raises(UnknownRunError, match="ambiguous.*abc1, abc2"):
        resolve_run_ids(store, ["abc"])
    assert resolve_run_ids(store, ["abc2"]) == ["abc2"]


def test_delete_removes_the_run_its_accuracy_and_attempts(made, tmp_path):
    store = copy_store(made, "a.db", tmp_path)
    gone, kept = CONFIGS[0].run_id(), CONFIGS[2].run_id()
    assert delete(store, [gone]) == [gone]
    assert store.get(gone) is None and store.attempts(gone) == []
    assert store.read(lambda c: c.execute("SELECT COUNT(*) FROM accuracy WHERE run_id = ?", (gone,)).fetchone()) == (0,)
    assert store.get(kept).status == "finished"
    with pytest.raises(UnknownRunError):
        delete(store, [kept, gone])  # one unknown: nothing deleted
    assert store.get(kept) is not None


def test_delete_refuses_a_run_a_live_process_claims(made, tmp_path):
    store = copy_store(made, "a.db", tmp_path)
    run_id, other = CONFIGS[0].run_id(), CONFIGS[2].run_id()
    owner = Owner.here()  # this process: alive
    assert claims.claim(store, run_id, owner) is None
    with pytest.raises(RunBusy, match=f"run {run_id} is being run by another process"):
        delete(store, [other, run_id])
    assert store.get(other) is not None and store.get(run_id) is not None  # nothing deleted
    claims.release(store, run_id, owner)
    assert delete(store, [run_id]) == [run_id]


def test_delete_refuses_a_run_stored_beside_a_claimed_configuration(tmp_path):
    store = Store(tmp_path / "s.db")
    salted = failed("salted")
    salted.identity = {"base_run_id": "config"}  # claims name the configuration's id (cl_bench.runner.identity)
    store.save(salted)
    owner = Owner.here()
    claims.claim(store, "config", owner)
    with pytest.raises(RunBusy):
        delete(store, ["salted"])
    claims.release(store, "config", owner)
    delete(store, ["salted"])


def snapshot(store):
    return {
        r.run_id: (r.status, r.tags, r.started, np.nan_to_num(r.accuracy, nan=-1).tolist(), r.history)
        for r in store.query()
    }


def test_merge_copies_runs_with_accuracy_and_attempts_and_twice_adds_nothing(made, tmp_path):
    store = Store(tmp_path / "new.db")
    source = Store.open_read(made / "a.db")
    added, skipped, conflicts = merge_from(store, made / "a.db")
    assert sorted(added) == source.run_ids() and skipped == [] and conflicts == []
    assert snapshot(store) == snapshot(source)
    for run_id in added:
        assert [(a.status, a.started) for a in store.attempts(run_id)] == [
            (a.status, a.started) for a in source.attempts(run_id)
        ]
    again = merge_from(store, made / "a.db")
    assert again.added == [] and sorted(again.skipped) == source.run_ids() and again.conflicts == []
    assert snapshot(store) == snapshot(source)
    assert all(len(store.attempts(i)) == 1 for i in added)  # no attempt copied twice


def test_merge_unites_the_tags_of_identical_runs(made, tmp_path):
    store = copy_store(made, "a.db", tmp_path)
    other = Store(tmp_path / "other.db")
    merge_from(other, store.path)  # an identical copy
    run_id = CONFIGS[0].run_id()
    other.add_tags([run_id], ["there"])
    store.add_tags([run_id], ["here"])
    merged = merge_from(store, other.path)
    assert run_id in merged.skipped and merged.conflicts == []
    assert store.get(run_id).tags == ["here", "there"]


def test_merge_reports_conflicts_and_keeps_this_stores_finished_runs(made, tmp_path):
    store = copy_store(made, "a.db", tmp_path)
    before = snapshot(store)
    added, skipped, conflicts = merge_from(store, made / "b.db")  # same ids, other times and results
    assert added == [] and skipped == []
    assert sorted(c.run_id for c in conflicts) == store.run_ids()
    assert all(c.kept == "this" and "started" in c.differences for c in conflicts)
    assert "kept this store's" in conflicts[0].describe()
    assert snapshot(store) == before


def test_a_failed_run_gives_way_to_a_finished_one_never_the_reverse(made, tmp_path):
    finished_id, other_id = CONFIGS[0].run_id(), CONFIGS[2].run_id()
    store = Store(tmp_path / "mine.db")
    store.save(failed(finished_id, tags=["mine"]))  # failed here, finished in a.db
    kept = copy_store(made, "a.db", tmp_path)
    kept.save(failed(other_id))  # a failed attempt never replaces a finished run: kept as an attempt
    src = Store(tmp_path / "failed.db")
    src.save(failed(other_id))  # failed there, finished here
    result = merge_from(store, kept.path)
    [conflict] = [c for c in result.conflicts if c.run_id == finished_id]
    assert conflict.kept == "other" and (conflict.this_status, conflict.other_status) == ("failed", "finished")
    run = store.get(finished_id)
    assert run.status == "finished" and run.tags == ["mine"]
    assert [a.status for a in store.attempts(finished_id)] == ["failed", "finished"]
    assert merge_from(store, kept.path).conflicts == []  # now identical
    result = merge_from(store, src.path)
    assert [(c.run_id, c.kept) for c in result.conflicts] == [(other_id, "this")]
    assert store.get(other_id).status == "finished"


def test_merge_checks_the_other_store(made, tmp_path):
    store = copy_store(made, "a.db", tmp_path)
    with pytest.raises(ValueError, match="into itself"):
        merge_from(store, store.path)
    newer = tmp_path / "newer.db"
    Store(newer)
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 9")
    conn.close()
    with pytest.raises(SchemaError, match="newer"):
        merge_from(store, newer)
    with pytest.raises(Exception, match="no store at"):
        merge_from(store, tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_merge_reads_a_version_1_store_without_changing_it(tmp_path):
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.executescript(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, strategy TEXT NOT NULL, scenario TEXT NOT NULL, seed INTEGER "
        "NOT NULL, hparams TEXT NOT NULL, protocol TEXT NOT NULL, scenario_options TEXT NOT NULL, tags TEXT NOT "
        "NULL, status TEXT NOT NULL, error TEXT, code_version TEXT, data TEXT, started REAL, finished REAL, "
        "wall_s REAL, n_tasks INTEGER, monitoring TEXT, history TEXT);"
        "CREATE TABLE accuracy (run_id TEXT NOT NULL, t INTEGER NOT NULL, tau INTEGER NOT NULL, acc REAL NOT NULL, "
        "PRIMARY KEY (run_id, t, tau));"
        "INSERT INTO runs VALUES ('old1', 'sgd', 'split_mnist', 0, '{}', '{}', '{}', '[]', 'finished', NULL, "
        "'0.1.0', '{}', 1.0, 2.0, 1.0, 1, '{}', '[]');"
        "INSERT INTO accuracy VALUES ('old1', 0, 0, 0.75);"
    )
    conn.close()
    before = old.read_bytes()
    store = Store(tmp_path / "new.db")
    assert merge_from(store, old).added == ["old1"]
    assert old.read_bytes() == before
    assert store.get("old1").accuracy.tolist() == [[0.75]]
    assert [(a.attempt, a.status) for a in store.attempts("old1")] == [(1, "finished")]
    assert merge_from(store, old).skipped == ["old1"]


def test_export_csv_is_tidy_and_reads_back(made, tmp_path):
    store = Store.open_read(made / "a.db")
    assert export(store, tmp_path / "runs.csv") == 3
    with open(tmp_path / "runs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * 3  # 2 tasks: 3 cells per run
    expected = {
        "run_id",
        "strategy",
        "seed",
        "status",
        "tags",
        "hp.lamb",
        "protocol.lr",
        "protocol.epochs",
        "t",
        "tau",
        "acc",
    }
    assert expected <= set(rows[0])
    for r in store.query():
        mine = [row for row in rows if row["run_id"] == r.run_id]
        assert {(int(x["t"]), int(x["tau"])): float(x["acc"]) for x in mine} == {
            (t, tau): r.accuracy[t, tau] for t in range(2) for tau in range(t + 1)
        }
        assert all(x["protocol.epochs"] == "1" and x["tags"] == ",".join(r.tags) for x in mine)
        assert all(x["hp.lamb"] == ("100.0" if r.strategy == "ewc" else "") for x in mine)


def test_export_csv_keeps_a_run_without_accuracy(tmp_path):
    store = Store(tmp_path / "s.db")
    store.save(failed("broken"))
    export(store, tmp_path / "runs.csv")
    with open(tmp_path / "runs.csv", newline="") as fh:
        [row] = list(csv.DictReader(fh))
    assert row["status"] == "failed" and row["error"] == "RuntimeError: boom" and row["acc"] == ""


def test_export_json_one_object_per_run(made, tmp_path):
    store = Store.open_read(made / "a.db")
    ids = store.run_ids()[:2]
    assert export(store, tmp_path / "runs.json", "json", ids) == 2
    objects = json.loads((tmp_path / "runs.json").read_text())
    assert sorted(o["run_id"] for o in objects) == ids
    for o in objects:
        r = store.get(o["run_id"])
        np.testing.assert_array_equal(np.array(o["accuracy"], dtype=float), r.accuracy)  # None -> NaN
        assert o["accuracy"][0][1] is None
        assert len(o["history"]) == len(r.history) == 2 and o["hparams"] == r.hparams
        assert [a["status"] for a in o["attempts"]] == ["finished"]
    with pytest.raises(ValueError, match="csv, json"):
        export(store, tmp_path / "x", "xml")
