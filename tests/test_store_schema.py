"""The store's schema version, migration, writability and read-only opening, checked when it opens."""

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cl_bench.cli import main
from cl_bench.store import SCHEMA_VERSION, RunRecord, Store, StoreError

REPORTS_DB = Path(__file__).resolve().parents[1] / "reports" / "runs.db"
SWEEP = "{scenario: split_mnist, strategies: {sgd: }, seeds: [0]}"

# The schema of cl-bench <= 0.2.0 (schema version 1, user_version 0), frozen here as that code wrote it.
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, strategy TEXT NOT NULL, scenario TEXT NOT NULL,
    seed INTEGER NOT NULL, hparams TEXT NOT NULL, protocol TEXT NOT NULL, scenario_options TEXT NOT NULL,
    tags TEXT NOT NULL, status TEXT NOT NULL, error TEXT, code_version TEXT, data TEXT, started REAL,
    finished REAL, wall_s REAL, n_tasks INTEGER, monitoring TEXT, history TEXT);
CREATE TABLE IF NOT EXISTS accuracy (run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    t INTEGER NOT NULL, tau INTEGER NOT NULL, acc REAL NOT NULL, PRIMARY KEY (run_id, t, tau));
"""


def v1_store(path: Path, n: int = 3) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(V1_SCHEMA)
    for i in range(n):
        conn.execute(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                f"run{i}",
                "sgd",
                "split_mnist",
                i,
                "{}",
                "{}",
                "{}",
                "[]",
                "finished",
                None,
                "0.1.0",
                "{}",
                1.0,
                2.0,
                1.0,
                1,
                "{}",
                "[]",
            ),
        )
        conn.execute("INSERT INTO accuracy VALUES (?,?,?,?)", (f"run{i}", 0, 0, 0.5 + i / 10))
    conn.commit()
    conn.close()
    return path


def record(run_id="new", status="finished"):
    return RunRecord(
        run_id, "sgd", "split_mnist", 0, {}, {}, {}, status, np.array([[0.9]]), started=3.0, finished=4.0, wall_s=1.0
    )


def user_version(path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


# ---- versions and migration --------------------------------------------------------------------------
def test_a_new_store_has_the_current_version(tmp_path):
    Store(tmp_path / "s.db")
    assert user_version(tmp_path / "s.db") == SCHEMA_VERSION == 2


def test_a_version_1_store_is_migrated_in_place_by_its_first_write(tmp_path):
    path = v1_store(tmp_path / "old.db")
    store = Store(path)
    assert store.version == 1 and user_version(path) == 0  # opening checks, it does not write
    store.save(record())
    assert user_version(path) == SCHEMA_VERSION
    runs = {r.run_id: r for r in Store.open_read(path).query()}
    assert sorted(runs) == ["new", "run0", "run1", "run2"]
    assert runs["run2"].accuracy[0, 0] == pytest.approx(0.7) and runs["run2"].identity == {}
    # every stored run became its configuration's first attempt
    assert [(a.attempt, a.status) for a in store.attempts("run1")] == [(1, "finished")]
    assert [a.attempt for a in store.attempts("new")] == [1]


def test_a_copy_of_a_committed_report_store_migrates_and_keeps_every_run(tmp_path):
    if not REPORTS_DB.is_file():
        pytest.skip("reports/runs.db is not in this checkout")
    before = digest(REPORTS_DB)
    copy = tmp_path / "runs.db"
    shutil.copy(REPORTS_DB, copy)
    old = {r.run_id: r for r in Store.open_read(copy).query()}
    store = Store(copy)
    store.record_attempt("some-run", "killed", "test")  # any write migrates
    assert user_version(copy) == SCHEMA_VERSION
    new = {r.run_id: r for r in Store.open_read(copy).query()}
    assert sorted(new) == sorted(old)
    for run_id, rec in old.items():
        np.testing.assert_array_equal(new[run_id].accuracy, rec.accuracy)
        assert new[run_id].history == rec.history and new[run_id].data == rec.data
    assert all(len(store.attempts(run_id)) == 1 for run_id in list(old)[:5])
    assert digest(REPORTS_DB) == before  # the committed store itself is untouched


def test_a_newer_store_is_refused_naming_both_versions(tmp_path):
    path = tmp_path / "future.db"
    Store(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    conn.close()
    for open_ in (Store, Store.open_read):
        with pytest.raises(StoreError, match="schema version 7, newer than the version 2 .*upgrade cl-bench"):
            open_(path)
    res = CliRunner().invoke(main, ["status", str(_sweep_file(tmp_path)), "--store", str(path)])
    assert res.exit_code == 1 and "upgrade cl-bench" in res.output and "Traceback" not in res.output


def test_a_database_that_is_not_a_store_is_refused(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE people (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a cl-bench results store"):
        Store(path)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x89PNG not sqlite" * 100)
    for open_ in (Store, Store.open_read):
        with pytest.raises(StoreError, match="corrupt or not a cl-bench store"):
            open_(garbage)


# ---- reading only ----------------------------------------------------------------------------------
def test_reading_creates_migrates_and_writes_nothing(tmp_path):
    path = v1_store(tmp_path / "old.db")
    before, files = digest(path), listing(tmp_path)
    reader = Store.open_read(path)
    assert [r.run_id for r in reader.query()] == ["run0", "run1", "run2"]
    assert reader.status("run1") == "finished" and reader.attempts("run1") == []  # version 1: none recorded
    assert listing(tmp_path) == files and digest(path) == before and user_version(path) == 0
    with pytest.raises(StoreError, match="read-only"):
        reader.save(record())
    assert digest(path) == before


def test_reading_a_missing_store_is_an_error_and_creates_nothing(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        Store.open_read(tmp_path / "typo.db")
    assert listing(tmp_path) == []
    res = CliRunner().invoke(main, ["status", str(_sweep_file(tmp_path)), "--store", str(tmp_path / "typo.db")])
    assert res.exit_code == 1 and "no store at" in res.output
    assert not (tmp_path / "typo.db").exists()


def test_a_reader_sees_what_a_writer_commits_meanwhile(tmp_path):
    path = tmp_path / "s.db"
    writer = Store(path)
    reader = Store.open_read(path)
    writer.save(record("a"))
    assert reader.status("a") == "finished"
    writer.save(record("b"))
    assert sorted(reader.statuses(["a", "b", "c"])) == ["a", "b"]


def test_dry_run_without_a_store_creates_none(tmp_path):
    res = CliRunner().invoke(
        main, ["sweep", str(_sweep_file(tmp_path)), "--store", str(tmp_path / "new.db"), "--dry-run"]
    )
    assert res.exit_code == 0, res.output
    assert "1 to run" in res.output and not (tmp_path / "new.db").exists()


def test_a_missing_folder_is_an_error_at_open(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "no" / "such" / "s.db")


# ---- a read-only file system (tests run as root: chmod would not stop them) -----------------------------
def _read_only_mount(folder: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in Python with ``folder`` remounted read-only (a private mount namespace)."""
    script = folder.parent / "probe.py"
    script.write_text(textwrap.dedent(code))
    shell = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && {sys.executable} {script}"
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", shell],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def _can_mount_read_only(tmp_path) -> bool:
    probe = tmp_path / "probe-ro"
    probe.mkdir()
    try:
        done = subprocess.run(
            [
                "unshare",
                "-rm",
                "sh",
                "-c",
                f"mount --bind {probe} {probe} && mount -o remount,bind,ro {probe} && ! touch {probe}/x",
            ],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def test_on_a_read_only_file_system_readers_work_and_writers_fail_at_open(tmp_path):
    if not _can_mount_read_only(tmp_path):
        pytest.skip("cannot make a read-only mount here (needs unshare -rm and mount in a user namespace)")
    folder = tmp_path / "ro"
    folder.mkdir()
    Store(folder / "s.db").save(record("a"))
    v1_store(folder / "old.db")
    files = listing(folder)
    sweep = _sweep_file(tmp_path)
    done = _read_only_mount(
        folder,
        f"""
        from click.testing import CliRunner
        from cl_bench.cli import main
        from cl_bench.store import Store, StoreError
        for name in ("s.db", "old.db"):
            print(name, "read", len(Store.open_read({str(folder)!r} + "/" + name).query()))
            try:
                Store({str(folder)!r} + "/" + name)
            except StoreError as e:
                print(name, "write refused:", e)
        res = CliRunner().invoke(main, ["status", {str(sweep)!r}, "--store", {str(folder / "s.db")!r}])
        print("status exit", res.exit_code, res.output.splitlines()[-1])
        res = CliRunner().invoke(main, ["run", "--strategy", "sgd", "--scenario", "split_mnist", "--store",
                                        {str(folder / "s.db")!r}])
        print("run exit", res.exit_code, res.output.strip().splitlines()[-1])
    """,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr + out
    assert "s.db read 1" in out and "old.db read 3" in out
    assert out.count("write refused:") == 2 and "cannot be written" in out
    assert "status exit 0 total:" in out
    assert "run exit 1 Error: results store" in out and "cannot be written" in out  # before any training
    assert listing(folder) == files and user_version(folder / "old.db") == 0


def _sweep_file(tmp_path) -> Path:
    file = tmp_path / "sweep.yaml"
    file.write_text(SWEEP)
    return file
