"""The open-time check compares the file's tables and columns with its version's schema: a store that
lacks a column is refused (or repaired, when nothing is lost or invented) before any work; a run whose
save fails anyway is written beside the store and `cl-bench runs import` stores it."""

import json
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cl_bench.cli import main
from cl_bench.store import RunRecord, Store, StoreError, read_spilled, save_or_spill
from cl_bench.store.schema import EXPECTED, RUNS, SCHEMA_VERSION


def record(run_id="r1", status="finished", loss=float("nan")):
    acc = np.array([[0.9, np.nan], [0.8, 0.7]])
    return RunRecord(
        run_id, "sgd", "split_mnist", 0, {"lr": 0.05}, {"epochs": 1}, {"max_train_per_task": 50}, status, acc,
        ["t"], None, "0.2.0", {"tasks": [{"name": "a"}]}, 1.0, 2.0, 1.0, {"m": 1}, [{"task": 0, "loss": loss}],
        {"strategy_file": None},
    )  # fmt: skip


def store_with(tmp_path: Path, sql: str) -> Path:
    path = tmp_path / "s.db"
    Store(path).save(record())
    conn = sqlite3.connect(path)
    conn.executescript(sql)
    conn.close()
    return path


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_the_expected_columns_are_the_schema_cl_bench_creates(tmp_path):
    conn = sqlite3.connect(tmp_path / "x.db")
    conn.executescript(RUNS)
    from cl_bench.store.schema import ATTEMPTS_AND_CLAIMS

    conn.executescript(ATTEMPTS_AND_CLAIMS)
    for table, cols in EXPECTED[SCHEMA_VERSION].items():
        assert tuple(r[1] for r in conn.execute(f"PRAGMA table_info({table})")) == cols


def test_a_missing_column_that_cannot_be_filled_is_refused_at_open_for_writing_and_reading(tmp_path):
    path = store_with(tmp_path, "ALTER TABLE runs DROP COLUMN history")
    for open_ in (Store, Store.open_read):
        with pytest.raises(StoreError, match=r"does not have the tables cl-bench expects: runs.history is missing"):
            open_(path)


def test_a_missing_identity_column_and_tables_are_repaired_at_open_without_losing_a_run(tmp_path):
    path = store_with(tmp_path, "ALTER TABLE runs DROP COLUMN identity; DROP TABLE attempts; DROP TABLE claims")
    assert Store.open_read(path).get("r1").identity == {}  # readers do without them
    with pytest.warns(UserWarning, match="repaired.*runs.identity is missing.*table attempts is missing"):
        store = Store(path)
    cols = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(runs)")]
    assert "identity" in cols
    assert [a.status for a in store.attempts("r1")] == ["finished"]  # its one recorded attempt
    store.save(record("r2"))  # the save that used to fail after training
    assert store.get("r2").identity == {"strategy_file": None}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Store(path)  # nothing left to repair: no warning


def test_an_unknown_not_null_column_is_refused_before_work(tmp_path):
    path = store_with(tmp_path, "ALTER TABLE accuracy ADD COLUMN extra TEXT NOT NULL DEFAULT 'x'")
    Store(path)  # a default: inserts still work
    path2 = tmp_path / "b.db"
    conn = sqlite3.connect(path2)
    conn.executescript(RUNS.replace("identity TEXT", "identity TEXT, owner TEXT NOT NULL"))
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    with pytest.raises(StoreError, match="runs.owner is an unknown NOT NULL column"):
        Store(path2)


def test_a_foreign_runs_table_is_named_as_such(tmp_path):
    path = tmp_path / "foreign.db"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE runs (a, b); CREATE TABLE accuracy (x);")
    conn.close()
    res = run_cli("runs", "list", "--store", path)
    assert res.exit_code == 1
    assert "its runs table has the columns a, b, not cl-bench's" in res.output
    assert "has no runs table" not in res.output


def test_a_failed_save_writes_the_run_beside_the_store_and_import_stores_it(tmp_path, monkeypatch):
    path = tmp_path / "s.db"
    store = Store(path)
    rec = record("r9")

    def broken(_rec):
        raise StoreError("cannot write results store s.db: disk full")

    monkeypatch.setattr(store, "save", broken)
    with pytest.raises(StoreError, match=r"disk full\. The finished run r9 was written to (\S+):") as info:
        save_or_spill(store, rec)
    spilled = Path(str(info.value).split("written to ")[1].split(": once")[0])
    assert spilled.parent == Path(f"{path}.unsaved") and spilled.is_file()
    assert f"cl-bench runs import {spilled} --store {path}" in str(info.value)
    back = read_spilled(spilled)
    np.testing.assert_array_equal(back.accuracy, rec.accuracy)  # NaN above the diagonal kept
    assert np.isnan(back.history[0]["loss"]) and back.identity == rec.identity
    assert {**vars(back), "accuracy": None, "history": None} == {**vars(rec), "accuracy": None, "history": None}
    assert Store.open_read(path).get("r9") is None
    res = run_cli("runs", "import", spilled, "--store", path)
    assert res.exit_code == 0, res.output
    assert "stored finished run r9" in res.output and not spilled.exists()
    got = Store.open_read(path).get("r9")
    np.testing.assert_array_equal(got.accuracy, rec.accuracy)
    assert [a.status for a in Store.open_read(path).attempts("r9")] == ["finished"]


def test_a_spill_goes_to_the_working_folder_when_the_store_folder_is_read_only(tmp_path, monkeypatch):
    from cl_bench import store as store_module

    blocked = tmp_path / "ro"
    blocked.mkdir()
    (blocked / "s.db.unsaved").write_text("a file where the folder would be")
    monkeypatch.chdir(tmp_path)
    out = store_module.spill(blocked / "s.db", record("r5"))
    assert out.parent == tmp_path and read_spilled(out).run_id == "r5"


@pytest.mark.parametrize("content", ["not json", json.dumps({"format": "other"}), json.dumps([1])])
def test_importing_a_file_that_is_no_spilled_run_is_a_one_line_error(tmp_path, content):
    Store(tmp_path / "s.db")
    bad = tmp_path / "x.json"
    bad.write_text(content)
    res = run_cli("runs", "import", bad, "--store", tmp_path / "s.db")
    assert res.exit_code == 1 and "is not a run cl-bench wrote when a save failed" in res.output
    assert bad.exists()


def test_merge_or_import_into_a_missing_store_says_so_once(tmp_path):
    Store(tmp_path / "other.db")
    res = run_cli("runs", "merge", tmp_path / "other.db", "--store", tmp_path / "missing.db")
    assert res.exit_code == 1
    assert res.output.count("no store at") == 1 and "to merge into" in res.output
    assert "reading commands" not in res.output
    assert not (tmp_path / "missing.db").exists()
