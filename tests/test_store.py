"""The results store: round trip, one transaction per run, clear errors."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cl_bench.results import load
from cl_bench.store import RunRecord, Store, StoreError, config_hash


def record(run_id="r1", T=3, status="finished", seed=0, strategy="sgd"):
    acc = np.full((T, T), np.nan)
    acc[np.tril_indices(T)] = np.linspace(0.1, 0.9, T * (T + 1) // 2)
    return RunRecord(
        run_id,
        strategy,
        "split_mnist",
        seed,
        {"lamb": 2.0},
        {"lr": 0.05},
        {"max_train_per_task": 10},
        status,
        acc,
        tags=["a"],
        error=None,
        code_version="0.1.0",
        data={"x": 1},
        started=1.0,
        finished=2.0,
        wall_s=1.0,
        monitoring={"hat": {"reuse": [[None, 0.5]]}},
        history=[{"epoch": 1, "valid_loss": 0.3}],
    )


def test_round_trip(tmp_path):
    store = Store(tmp_path / "s.db")
    rec = record()
    store.save(rec)
    back = store.get("r1")
    np.testing.assert_array_equal(back.accuracy, rec.accuracy)
    for field in (
        "strategy",
        "scenario",
        "seed",
        "hparams",
        "protocol",
        "scenario_options",
        "status",
        "tags",
        "code_version",
        "data",
        "monitoring",
        "history",
        "wall_s",
    ):
        assert getattr(back, field) == getattr(rec, field), field
    assert store.status("r1") == "finished" and store.status("nope") is None


def test_save_replaces_a_run_and_load_gives_tidy_frames(tmp_path):
    store = Store(tmp_path / "s.db")
    store.save(record(status="failed"))
    store.save(record())
    store.save(record("r2", T=2, seed=1))
    runs, acc = load(tmp_path / "s.db")
    assert sorted(runs.run_id) == ["r1", "r2"] and set(runs.status) == {"finished"}
    assert len(acc) == 6 + 3
    row = acc[(acc.run_id == "r1") & (acc.t == 2) & (acc.tau == 1)]
    assert row.acc.item() == pytest.approx(record().accuracy[2, 1])


def test_config_hash_is_order_independent():
    assert config_hash({"a": 1, "b": {"c": 2, "d": 3}}) == config_hash({"b": {"d": 3, "c": 2}, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_error_inside_the_transaction_writes_nothing(tmp_path, monkeypatch):
    """The runs row is inserted first; a failure while writing the matrix must roll it back."""
    import cl_bench.store.runs as store_mod

    store = Store(tmp_path / "s.db")

    class Boom:
        def isnan(self, _):
            raise RuntimeError("disk on fire")

    monkeypatch.setattr(store_mod, "np", Boom())
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.save(record())
    monkeypatch.undo()
    assert store.query() == []


def test_killed_writer_leaves_only_whole_runs(tmp_path):
    """SIGKILL a process that writes big runs in a loop: every stored run has all its rows."""
    db = tmp_path / "s.db"
    Store(db)
    script = textwrap.dedent(f"""
        import numpy as np
        from cl_bench.store import RunRecord, Store
        store = Store({str(db)!r})
        T = 80
        acc = np.tril(np.full((T, T), 0.5)) + np.triu(np.full((T, T), np.nan), 1)
        i = 0
        while True:
            store.save(RunRecord(f"run{{i}}", "sgd", "s", i, {{}}, {{}}, {{}}, "finished", acc))
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    time.sleep(3.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    conn = sqlite3.connect(db)
    runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    counts = conn.execute("SELECT COUNT(*) FROM accuracy GROUP BY run_id").fetchall()
    orphans = conn.execute("SELECT COUNT(*) FROM accuracy WHERE run_id NOT IN (SELECT run_id FROM runs)").fetchone()[0]
    conn.close()
    assert runs > 0
    assert len(counts) == runs and all(c == 80 * 81 // 2 for (c,) in counts)
    assert orphans == 0


def test_corrupt_store_gives_a_clear_message(tmp_path):
    path = tmp_path / "bad.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="corrupt or not a cl-bench store|cannot open"):
        Store(path).save(record())


def test_locked_store_gives_a_clear_message(tmp_path, monkeypatch):
    path = tmp_path / "s.db"
    Store(path)
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    import cl_bench.store.runs as store_mod

    real_connect = sqlite3.connect
    monkeypatch.setattr(store_mod.sqlite3, "connect", lambda p, timeout=60: real_connect(p, timeout=0.2))
    try:
        with pytest.raises(StoreError, match="locked"):
            Store(path).save(record())
    finally:
        holder.rollback()
        holder.close()
    assert os.path.exists(path)
