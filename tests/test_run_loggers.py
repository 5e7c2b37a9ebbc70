"""Loggers wired into runs: execute() tells a logger of each epoch and task, `cl-bench run --logger`
writes files that read back as the run, sweeps log each run with the loggers of the sweep file."""

import csv
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_scenario

from cl_bench.cli import main
from cl_bench.loggers import Logger, log_dir
from cl_bench.metrics import step_metrics
from cl_bench.registry import register_scenario
from cl_bench.runner import RunConfig, RunFailed, execute
from cl_bench.store import Store
from cl_bench.sweep import SweepError, parse_sweep, run_sweep
from cl_bench.trainer import Callbacks, Protocol


@register_scenario("tiny_loggers", "3 synthetic tasks (tests only)")
def _tiny(seed=0, data_root_path=None, download=False):
    return make_scenario(n_tasks=3, n_train=45, n_test=30, seed=seed)


class Recorder(Logger):
    def __init__(self):
        self.calls = []

    def start_run(self, run_info):
        self.calls.append(("start", dict(run_info)))

    def log_epoch(self, log):
        self.calls.append(("epoch", log))

    def log_task(self, t, accuracy_row, metrics):
        self.calls.append(("task", t, list(accuracy_row), dict(metrics)))

    def end_run(self, status, summary):
        self.calls.append(("end", status, dict(summary)))


def config(**protocol):
    return RunConfig("sgd", "tiny_loggers", 0, protocol=Protocol(epochs=2, **protocol), tags=["t"])


def same(a, b):
    return a == b or (math.isnan(a) and math.isnan(b))


# ---- execute ----------------------------------------------------------------------------------------------
def test_execute_logs_each_epoch_and_task_then_the_end(tmp_path):
    logger, epochs = Recorder(), []
    record = execute(config(), Store(tmp_path / "s.db"), logger=logger, listeners=[Callbacks(on_epoch=epochs.append)])
    kinds = [c[0] for c in logger.calls]
    assert kinds[0] == "start" and kinds[-1] == "end"
    start = logger.calls[0][1]
    assert start == {
        "run_id": record.run_id,
        "strategy": "sgd",
        "scenario": "tiny_loggers",
        "seed": 0,
        "hparams": record.hparams,
        "protocol": record.protocol,
        "scenario_options": {},
        "tags": ["t"],
    }
    logged = [c[1] for c in logger.calls if c[0] == "epoch"]
    assert logged == epochs and len(logged) == len(record.history)  # beside on_epoch, never per batch
    tasks = [c for c in logger.calls if c[0] == "task"]
    assert [c[1] for c in tasks] == [0, 1, 2]
    for _, t, row, metrics in tasks:
        assert row == list(record.accuracy[t, : t + 1])
        assert all(same(metrics[k], v) for k, v in step_metrics(record.accuracy, t).items())
    last_epoch = None
    for call in logger.calls[1:-1]:  # each task's line comes after that task's epochs
        if call[0] == "epoch":
            last_epoch = call[1]
        else:
            assert last_epoch.task == call[1]
    _, status, summary = logger.calls[-1]
    assert status == "finished" and summary["wall_s"] == record.wall_s
    assert summary["acc"] == step_metrics(record.accuracy, 2)["acc"]

    again = Recorder()  # served from the store: nothing trained, nothing logged
    execute(config(), Store(tmp_path / "s.db"), logger=again)
    assert again.calls == []


def test_a_failed_run_ends_its_log_with_the_error(tmp_path):
    logger = Recorder()
    with pytest.raises(RunFailed):
        execute(config(lr=1e30, clip_grad=1e30), Store(tmp_path / "s.db"), logger=logger)
    _, status, summary = logger.calls[-1]
    assert status == "failed" and summary["error"].startswith("diverged") and summary["wall_s"] >= 0
    assert [c[0] for c in logger.calls].count("task") == 0


# ---- cl-bench run ---------------------------------------------------------------------------------------
def test_cli_run_writes_jsonl_and_csv_that_read_back_as_the_run(tmp_path):
    store = tmp_path / "runs.db"
    res = CliRunner().invoke(
        main,
        [
            "run",
            "-s",
            "sgd",
            "-c",
            "tiny_loggers",
            "--epochs",
            "2",
            "--store",
            str(store),
            "--logger",
            "jsonl",
            "--logger",
            "csv",
        ],
    )
    assert res.exit_code == 0, res.output
    [record] = Store(store).query()
    directory = log_dir(store)
    events = [json.loads(line) for line in (directory / f"{record.run_id}.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("task") == 3
    assert events[0]["run"]["run_id"] == record.run_id and events[-1]["status"] == "finished"
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [(e["task"], e["epoch"], e["valid_loss"]) for e in epochs] == [
        (h["task"] + 1, h["epoch"], h["valid_loss"])
        for h in record.history  # files count tasks from 1
    ]
    tasks = [e for e in events if e["event"] == "task"]
    assert [e["task"] for e in tasks] == [1, 2, 3]
    assert [e["test_acc"] for e in tasks] == [list(record.accuracy[t, : t + 1]) for t in range(3)]

    with open(directory / f"{record.run_id}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    losses = [
        (int(r["task"]), int(r["epoch"]), float(r["value"]))
        for r in rows
        if r["event"] == "epoch" and r["name"] == "valid_loss"
    ]
    assert losses == [(h["task"] + 1, h["epoch"], h["valid_loss"]) for h in record.history]
    acc = {
        (int(r["task"]), int(r["tau"])): float(r["value"])
        for r in rows
        if r["event"] == "task" and r["name"] == "test_acc"
    }
    assert acc == {(t + 1, tau + 1): record.accuracy[t, tau] for t in range(3) for tau in range(t + 1)}
    assert [r["value"] for r in rows if r["event"] == "end" and r["name"] == "status"] == ["finished"]


def test_cli_run_piped_prints_plain_lines_and_quiet_prints_none(tmp_path):
    res = CliRunner().invoke(
        main, ["run", "-s", "sgd", "-c", "tiny_loggers", "--epochs", "2", "--store", str(tmp_path / "runs.db")]
    )
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.output and "\r" not in res.output  # no escape codes or bar redraws
    assert "task 1 epoch 1/<=2: loss" in res.output and "after task 3: test acc" in res.output
    assert not log_dir(tmp_path / "runs.db").exists()  # the console logger writes no files

    quiet = CliRunner().invoke(
        main,
        [
            "run",
            "-s",
            "sgd",
            "-c",
            "tiny_loggers",
            "--epochs",
            "2",
            "--seed",
            "1",
            "--store",
            str(tmp_path / "runs.db"),
            "--quiet",
        ],
    )
    assert quiet.exit_code == 0, quiet.output
    assert "epoch 1/<=2: loss" not in quiet.output and "| after \\ on |" in quiet.output  # the result is printed


# ---- sweeps ---------------------------------------------------------------------------------------------
def test_sweep_file_loggers_are_validated():
    base = {"scenario": "tiny_loggers", "strategies": {"sgd": None}}
    assert parse_sweep({**base, "loggers": "jsonl"}).loggers == ("jsonl",)
    assert parse_sweep({**base, "loggers": ["csv", "jsonl", "csv"]}).loggers == ("csv", "jsonl")
    assert parse_sweep(base).loggers == ()
    for bad, message in (
        ("console", "not a sweep logger"),
        (["jsonl", "tb"], "unknown logger 'tb'"),
        ({"jsonl": 1}, "expected a logger name"),
    ):
        with pytest.raises(SweepError, match=message):
            parse_sweep({**base, "loggers": bad})


def test_sweep_with_jsonl_logger_writes_one_file_per_run(tmp_path):
    sweep = parse_sweep(
        {
            "scenario": "tiny_loggers",
            "strategies": {"sgd": None},
            "seeds": [0, 1],
            "protocol": {"epochs": 1},
            "loggers": ["jsonl"],
        }
    )
    store = tmp_path / "runs.db"
    outcomes = run_sweep(sweep, store, workers=0, threads=1, progress=False, loggers=["csv"])
    assert [o.status for o in outcomes] == ["finished", "finished"]
    runs = {r.run_id for r in Store(store).query()}
    assert {p.name for p in log_dir(store).iterdir()} == {f"{r}.{s}" for r in runs for s in ("jsonl", "csv")}
    for run_id in runs:
        events = [json.loads(line)["event"] for line in (log_dir(store) / f"{run_id}.jsonl").read_text().splitlines()]
        assert events[0] == "start" and events[-1] == "end" and events.count("task") == 3


def test_cli_sweep_logger_option(tmp_path):
    file = tmp_path / "s.yaml"
    file.write_text("{scenario: tiny_loggers, strategies: {sgd: }, protocol: {epochs: 1}}")
    store = tmp_path / "runs.db"
    res = CliRunner().invoke(
        main, ["sweep", str(file), "--store", str(store), "--workers", "0", "--quiet", "--logger", "csv"]
    )
    assert res.exit_code == 0, res.output
    [record] = Store(store).query()
    assert [p.name for p in log_dir(store).iterdir()] == [f"{record.run_id}.csv"]
    bad = CliRunner().invoke(main, ["sweep", str(file), "--store", str(store), "--logger", "console"])
    assert bad.exit_code == 2 and "console" in bad.output
    np.testing.assert_array_equal(Store(store).query()[0].accuracy, record.accuracy)
