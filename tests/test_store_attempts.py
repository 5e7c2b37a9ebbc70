"""Attempts: a failed attempt never replaces a finished result; every attempt is kept and shown."""

import json
import sqlite3
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_scenario

from cl_bench.cli import main
from cl_bench.registry import register_scenario
from cl_bench.runner import RunConfig, RunFailed, execute
from cl_bench.store import RunRecord, Store
from cl_bench.trainer import Protocol

FLAKY = '''
from pathlib import Path
from cl_bench.strategy import Strategy


class Flaky(Strategy):
    """Fails while a file `<this file>.fail` exists."""
    name = "flaky"

    def before_task(self, t):
        if Path(__file__).with_suffix(".fail").exists():
            raise RuntimeError("flaky failure")
'''


@register_scenario("tiny_attempts", "2 synthetic tasks (tests only)")
def _tiny(seed=0, data_root_path=None, download=False):
    return make_scenario(n_tasks=2, n_train=45, n_test=30, seed=seed)


def record(status="finished", acc=0.8, run_id="r1", error=None):
    return RunRecord(
        run_id,
        "sgd",
        "split_mnist",
        0,
        {},
        {},
        {},
        status,
        np.array([[acc, np.nan], [acc, acc]]),
        error=error,
        started=1.0,
        finished=2.0,
        wall_s=1.0,
        code_version="v",
    )


def test_a_failed_attempt_never_replaces_a_finished_run(tmp_path):
    store = Store(tmp_path / "s.db")
    assert store.save(record()).kept is False
    saved = store.save(record("failed", acc=0.1, error="RuntimeError: boom"))
    assert saved.kept is True and saved.attempt == 2
    kept = store.get("r1")
    assert kept.status == "finished" and kept.accuracy[1, 1] == pytest.approx(0.8)
    assert [(a.attempt, a.status, a.error) for a in store.attempts("r1")] == [
        (1, "finished", None),
        (2, "failed", "RuntimeError: boom"),
    ]


def test_a_failed_run_replaces_a_failed_one_and_a_finished_one_replaces_any(tmp_path):
    store = Store(tmp_path / "s.db")
    store.save(record("failed", error="first"))
    store.save(record("failed", error="second"))
    assert store.get("r1").error == "second"
    store.save(record(acc=0.5))
    store.save(record(acc=0.6))  # --force that finished: replaces, the old result kept in its attempt
    assert store.get("r1").accuracy[0, 0] == pytest.approx(0.6)
    attempts = store.attempts("r1")
    assert [a.status for a in attempts] == ["failed", "failed", "finished", "finished"]
    assert [a.replaced for a in attempts] == [False, False, True, False]
    conn = sqlite3.connect(tmp_path / "s.db")
    result = json.loads(conn.execute("SELECT result FROM attempts WHERE attempt = 3").fetchone()[0])
    conn.close()
    assert result["n_tasks"] == 2 and [0, 0, 0.5] in result["accuracy"]


def test_force_rerun_that_fails_keeps_the_finished_result_and_says_so(tmp_path):
    strategy = tmp_path / "flaky.py"
    strategy.write_text(FLAKY)
    config = RunConfig(f"{strategy}:Flaky", "tiny_attempts", 0, protocol=Protocol(epochs=1))
    store = Store(tmp_path / "s.db")
    first = execute(config, store)
    strategy.with_suffix(".fail").touch()
    with pytest.raises(RunFailed) as err:
        execute(config, store, force=True)
    assert err.value.kept is not None and err.value.kept.started == first.started
    assert err.value.attempt == 2 and "flaky failure" in err.value.record.error
    stored = store.get(first.run_id)
    assert stored.status == "finished" and stored.started == first.started
    np.testing.assert_array_equal(stored.accuracy, first.accuracy)
    assert [a.status for a in store.attempts(first.run_id)] == ["finished", "failed"]

    # the command line says that the finished result was kept, and status shows the attempts
    args = [
        "run",
        "--strategy",
        f"{strategy}:Flaky",
        "--scenario",
        "tiny_attempts",
        "--epochs",
        "1",
        "--store",
        str(tmp_path / "s.db"),
    ]
    res = CliRunner().invoke(main, [*args, "--force"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)  # a one-line error, then the stored one
    assert "attempt 3" in res.output and "earlier finished result of this run" in res.output
    assert "was kept in the store" in res.output
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        textwrap.dedent(f"""
        scenario: tiny_attempts
        strategies: {{"{strategy}:Flaky": }}
        protocol: {{epochs: 1}}
    """)
    )
    res = CliRunner().invoke(main, ["status", str(sweep), "--store", str(tmp_path / "s.db"), "--errors"])
    assert res.exit_code == 0, res.output
    assert "total: 1 finished, 0 failed, 0 pending" in res.output
    assert f"({first.run_id}): finished now; 2 of 3 attempt(s) failed, the last: RuntimeError: flaky" in res.output
    assert "attempt 2 (failed" in res.output

    # a forced re-run that finishes replaces the result; the replaced one stays in its attempt
    strategy.with_suffix(".fail").unlink()
    again = execute(config, store, force=True)
    assert store.get(first.run_id).started == again.started > first.started
    assert [a.replaced for a in store.attempts(first.run_id)] == [True, False, False, False]
