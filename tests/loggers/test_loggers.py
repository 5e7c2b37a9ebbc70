"""Run loggers: every logger's output read back, the console without escape codes off a terminal, the
factory's names and errors."""

import csv
import importlib.util
import io
import json
import math
import struct
from pathlib import Path

import pytest

import cl_bench.loggers.base as logger_base
from cl_bench.loggers import (
    LOGGER_NAMES,
    ConsoleLogger,
    CsvLogger,
    JsonlLogger,
    Logger,
    MissingExtraError,
    MultiLogger,
    TensorBoardLogger,
    UnknownLoggerError,
    WandbLogger,
    log_dir,
    make_loggers,
)
from cl_bench.trainer import EpochLog

ROOT = Path(__file__).resolve().parents[2]  # the checkout

nan = math.nan
RUN = {"run_id": "abc123", "strategy": "sgd", "scenario": "pmnist", "seed": 3, "hparams": {"lr": 0.05}}
EPOCHS = [
    EpochLog(0, 1, 0.05, 1.0, 0.9, 0.5, 0.1),
    EpochLog(0, 2, 0.05, 0.8, 0.7, 0.6, 0.1, train_eval_loss=0.75, train_eval_acc=0.65),
    EpochLog(1, 1, 0.05, 0.9, 0.85, 0.55, 0.2),
    EpochLog(1, 2, 0.025, 0.6, 0.5, 0.7, 0.2),
]
TASKS = [
    (0, [0.9], {"acc": 0.9, "bwt": nan, "forgetting": nan}),
    (1, [0.8, 0.7], {"acc": 0.75, "bwt": -0.1, "forgetting": 0.1}),
]
SUMMARY = {"acc": 0.75, "bwt": -0.1, "forgetting": 0.1, "wall_s": 3.5}


def drive(logger: Logger, status="finished", summary=SUMMARY, run=RUN) -> None:
    """A 2-task run of 2 epochs per task, as the runner calls its loggers."""
    logger.start_run(run)
    for t, row, metrics in TASKS:
        for log in EPOCHS:
            if log.task == t:
                logger.log_epoch(log)
        logger.log_task(t, row, metrics)
    logger.end_run(status, summary)


def test_jsonl_reads_back(tmp_path):
    logger = JsonlLogger(tmp_path)
    drive(logger)
    lines = [json.loads(line) for line in (tmp_path / "abc123.jsonl").read_text().splitlines()]
    assert [r["event"] for r in lines] == ["start", "epoch", "epoch", "task", "epoch", "epoch", "task", "end"]
    assert lines[0]["run"] == RUN
    epochs = [r for r in lines if r["event"] == "epoch"]
    assert [(r["task"], r["epoch"], r["step"]) for r in epochs] == [(1, 1, 1), (1, 2, 2), (2, 1, 3), (2, 2, 4)]
    assert epochs[1]["train_loss"] == 0.8 and epochs[1]["train_eval_acc"] == 0.65 and epochs[3]["lr"] == 0.025
    assert epochs[0]["train_eval_acc"] is None
    tasks = [r for r in lines if r["event"] == "task"]
    assert tasks[0] == {
        "event": "task",
        "time": tasks[0]["time"],
        "task": 1,
        "test_acc": [0.9],
        "metrics": {"acc": 0.9, "bwt": None, "forgetting": None},
    }  # NaN -> null: strict JSON
    assert tasks[1]["test_acc"] == [0.8, 0.7] and tasks[1]["metrics"]["bwt"] == -0.1
    assert lines[-1]["status"] == "finished" and lines[-1]["summary"] == SUMMARY
    assert logger.file is None  # closed by end_run


def test_jsonl_appends_each_attempt_and_needs_a_run(tmp_path):
    logger = JsonlLogger(tmp_path)
    drive(logger, status="failed", summary={"error": "diverged: loss is nan"})
    drive(logger)
    events = [json.loads(line)["event"] for line in (tmp_path / "abc123.jsonl").read_text().splitlines()]
    assert events.count("start") == 2 and events.count("end") == 2
    with pytest.raises(RuntimeError, match="outside start_run"):
        logger.log_epoch(EPOCHS[0])
    with pytest.raises(ValueError, match="run_id"):
        logger.start_run({"strategy": "sgd"})
    with pytest.raises(ValueError, match="run_id"):
        logger.start_run({"run_id": "../escape"})


def test_csv_reads_back(tmp_path):
    drive(CsvLogger(tmp_path))
    drive(CsvLogger(tmp_path))  # a second attempt appends, without a second header
    with open(tmp_path / "abc123.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["time", "event", "task", "epoch", "tau", "name", "value"]
    assert not any(r["time"] == "time" for r in rows)  # one header
    rows = rows[: len(rows) // 2]  # the first attempt
    assert rows[0]["event"] == "start" and rows[0]["name"] == "status" and rows[0]["value"] == "running"

    def values(event, **where):
        return {
            r["name"]: r["value"] for r in rows if r["event"] == event and all(r[k] == str(v) for k, v in where.items())
        }

    first = values("epoch", task=1, epoch=1)  # tasks numbered from 1, as everywhere a person reads them
    assert first == {"lr": "0.05", "train_loss": "1.0", "valid_loss": "0.9", "valid_acc": "0.5", "seconds": "0.1"}
    assert values("epoch", task=1, epoch=2)["train_eval_acc"] == "0.65"
    assert values("epoch", task=2, epoch=2)["lr"] == "0.025"
    accs = [(r["task"], r["tau"], float(r["value"])) for r in rows if r["name"] == "test_acc"]
    assert accs == [("1", "1", 0.9), ("2", "1", 0.8), ("2", "2", 0.7)]
    assert values("task", task=1, tau="") == {"acc": "0.9", "bwt": "", "forgetting": ""}  # NaN left empty
    assert values("task", task=2, tau="") == {"acc": "0.75", "bwt": "-0.1", "forgetting": "0.1"}
    assert values("end") == {"status": "finished", "acc": "0.75", "bwt": "-0.1", "forgetting": "0.1", "wall_s": "3.5"}


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_console_writes_plain_lines_off_a_terminal():
    stream = io.StringIO()
    drive(ConsoleLogger(stream))
    text = stream.getvalue()
    assert "\x1b" not in text and "\r" not in text
    assert text.splitlines() == [
        "run abc123: sgd on pmnist, seed 3",
        "task 1 epoch 1: loss 1.0000  val_loss 0.9000  val_acc 50.0  lr 0.05  0.1 s",
        "task 1 epoch 2: loss 0.8000  val_loss 0.7000  val_acc 60.0  lr 0.05  0.1 s",
        "after task 1: test acc 90.0 | ACC 90.0",  # BWT and forgetting are undefined after one task
        "task 2 epoch 1: loss 0.9000  val_loss 0.8500  val_acc 55.0  lr 0.05  0.2 s",
        "task 2 epoch 2: loss 0.6000  val_loss 0.5000  val_acc 70.0  lr 0.025  0.2 s",
        "after task 2: test acc 80.0 70.0 | ACC 75.0  BWT -10.0  forgetting 10.0",
        "run abc123 finished in 3.5 s: ACC 75.0  BWT -10.0  forgetting 10.0",
    ]
    failed = io.StringIO()
    drive(ConsoleLogger(failed), "failed", {"error": "diverged: loss is nan\ntraceback ...", "wall_s": 1.0})
    assert failed.getvalue().splitlines()[-1] == "run abc123 failed in 1.0 s: diverged: loss is nan"


def test_console_epoch_lines_show_the_caps_and_a_resume():
    stream = io.StringIO()
    console = ConsoleLogger(stream)
    console.start_run({**RUN, "protocol": {"epochs": 200}, "scenario_options": {"tasks": [3, 1]}})
    console.log_epoch(EPOCHS[0])
    console.resumed(1, 5)  # the runner: tasks 1..1 of 5 come from the checkpoint
    console.log_epoch(EPOCHS[2])
    lines = stream.getvalue().splitlines()
    assert lines[1].startswith("task 1/2 epoch 1/<=200: loss 1.0000")
    assert lines[2] == "resuming after task 1 of 5 (from its checkpoint)"
    assert lines[3].startswith("task 2/5 epoch 1/<=200: loss 0.9000")


def test_console_bar_per_task_knows_the_epoch_cap():
    terminal = FakeTerminal()
    console = ConsoleLogger(terminal)
    console.start_run({**RUN, "protocol": {"epochs": 200}})
    console.log_epoch(EPOCHS[0])
    assert console.bar.total == 200 and console.bar.n == 1
    console.log_epoch(EPOCHS[2])  # task 2: a new bar
    assert console.bar.total == 200 and console.bar.n == 1
    console.close()


def test_console_defaults_to_stderr_and_draws_a_bar_only_on_a_terminal(capsys):
    drive(ConsoleLogger())
    captured = capsys.readouterr()
    assert captured.out == "" and "after task 2" in captured.err and "\r" not in captured.err
    terminal = FakeTerminal()
    logger = ConsoleLogger(terminal)
    drive(logger)
    assert "\r" in terminal.getvalue() and "after task 2: test acc 80.0 70.0" in terminal.getvalue()
    assert logger.bar is None  # closed at the end of the run
    forced_off = FakeTerminal()
    drive(ConsoleLogger(forced_off, progress=False))
    assert "\r" not in forced_off.getvalue()


has_tensorboard = importlib.util.find_spec("tensorboard") is not None
has_wandb = importlib.util.find_spec("wandb") is not None


@pytest.mark.skipif(not has_tensorboard, reason="tensorboard is not installed (pip install cl-bench[tensorboard])")
def test_tensorboard_scalars_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    drive(TensorBoardLogger(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["sgd-lr=0.05-s3-abc123"]  # readable, then the run id
    events = EventAccumulator(str(tmp_path / "sgd-lr=0.05-s3-abc123"))
    events.Reload()

    def scalars(tag):
        return [(e.step, pytest.approx(e.value, abs=1e-6)) for e in events.Scalars(tag)]

    assert scalars("epoch/train_loss") == [(1, 1.0), (2, 0.8), (3, 0.9), (4, 0.6)]
    assert scalars("epoch/task") == [(1, 1), (2, 1), (3, 2), (4, 2)]  # 1-based
    assert scalars("epoch/lr") == [(1, 0.05), (2, 0.05), (3, 0.05), (4, 0.025)]
    assert scalars("epoch/train_eval_acc") == [(2, 0.65)]
    assert scalars("test_acc/task1") == [(1, 0.9), (2, 0.8)]
    assert scalars("test_acc/task2") == [(2, 0.7)]
    assert scalars("metrics/acc") == [(1, 0.9), (2, 0.75)]
    assert scalars("metrics/bwt") == [(2, -0.1)]  # NaN after task 1 skipped
    assert scalars("summary/acc") == [(2, 0.75)] and scalars("summary/wall_s") == [(2, 3.5)]
    assert {"run/text_summary", "status/text_summary"} <= set(events.Tags()["tensors"])
    plugins = {e.summary.value[0].metadata.plugin_data.plugin_name for e in _events(tmp_path) if e.summary.value}
    assert "hparams" in plugins  # the run is in TensorBoard's HParams tab
    start = "_hparams_/session_start_info"
    hp = next(e for e in _events(tmp_path) if e.summary.value and e.summary.value[0].tag == start)
    from tensorboard.plugins.hparams import plugin_data_pb2

    info = plugin_data_pb2.HParamsPluginData.FromString(hp.summary.value[0].metadata.plugin_data.content)
    values = {k: v.string_value or v.number_value for k, v in info.session_start_info.hparams.items()}
    assert values["strategy"] == "sgd" and values["seed"] == 3 and values["hp/lr"] == 0.05
    assert values["status"] == "finished"


def _events(folder):
    """Every event of the event files under ``folder``."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return [e for f in sorted(folder.rglob("events.out.tfevents.*")) for e in EventFileLoader(str(f)).Load()]


def wandb_records(path):
    """The records of a W&B transaction log (.wandb): a 7-byte header, then LevelDB-log-style blocks of
    32 KiB of chunks (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) holding Record protobufs."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, chunk, records = 7, b"", []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer: padding
            pos += 32768 - pos % 32768
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def items(updates):
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in updates}


@pytest.mark.skipif(not has_wandb, reason="wandb is not installed (pip install cl-bench[wandb])")
def test_wandb_offline_run_reads_back(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_SILENT", "true")
    drive(WandbLogger(tmp_path, mode="offline"))
    wandb.teardown()  # finish() returns before wandb's service process has written the log to disk
    (log,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(log)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.display_name == "sgd-lr=0.05-s3" and run.project == "cl-bench"  # readable, not the id
    assert run.run_group == "sgd/pmnist" and list(run.tags) == ["sgd", "pmnist"]  # no sweep tag: strategy/scenario
    config = items(run.config.update)
    assert config["run_id"] == "abc123" and config["hparams"] == {"lr": 0.05}
    history = [items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
    epochs = [h for h in history if "epochs" in h]
    assert [(h["epochs"], h["epoch/task"], h["epoch/epoch"], h["epoch/train_loss"]) for h in epochs] == [
        (1, 1, 1, 1.0),
        (2, 1, 2, 0.8),
        (3, 2, 1, 0.9),
        (4, 2, 2, 0.6),
    ]
    tasks = [h for h in history if "task" in h]
    assert [(h["task"], h["test_acc/task1"], h["metrics/acc"]) for h in tasks] == [(1, 0.9, 0.9), (2, 0.8, 0.75)]
    assert "metrics/bwt" not in tasks[0] and tasks[1]["metrics/bwt"] == -0.1 and tasks[1]["test_acc/task2"] == 0.7
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update(items(r.summary.update))
    assert summary["status"] == "finished" and summary["acc"] == 0.75 and summary["wall_s"] == 3.5
    exit_record = next(r.exit for r in records if r.WhichOneof("record_type") == "exit")
    assert exit_record.exit_code == 0
    with pytest.raises(ValueError, match="online, offline, disabled"):
        WandbLogger(tmp_path, mode="airplane")


def test_missing_optional_packages_name_the_extra(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        logger_base.importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("tensorboard", "wandb") else real(name, *a),
    )
    for name, make in (("tensorboard", lambda: TensorBoardLogger(tmp_path)), ("wandb", lambda: WandbLogger(tmp_path))):
        # this test runs from a checkout: the command installs the extra into it
        with pytest.raises(MissingExtraError, match=rf"pip install -e '(\.|{ROOT})\[{name}\]'") as error:
            make()
        assert "\n" not in str(error.value)
        assert isinstance(error.value, ImportError) and isinstance(error.value, ValueError)
        with pytest.raises(MissingExtraError, match=name):
            make_loggers(["jsonl", name], tmp_path)


def test_the_install_command_fits_how_cl_bench_was_installed(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    assert logger_base.install_command("ray") == "pip install -e '.[ray]'"
    monkeypatch.chdir(tmp_path)
    assert logger_base.install_command("ray") == f"pip install -e '{ROOT}[ray]'"
    wheel = tmp_path / "site-packages" / "cl_bench" / "loggers" / "base.py"  # no setup.cfg above it
    monkeypatch.setattr(logger_base, "__file__", str(wheel))
    assert logger_base.install_command("slurm") == "pip install 'cl-bench[slurm]'"


def test_make_loggers_maps_names_and_lays_out_files(tmp_path):
    kinds = {"console": ConsoleLogger, "jsonl": JsonlLogger, "csv": CsvLogger}
    if has_tensorboard:
        kinds["tensorboard"] = TensorBoardLogger
    if has_wandb:
        kinds["wandb"] = WandbLogger
    made = make_loggers(list(kinds), tmp_path)
    assert [type(logger) for logger in made.loggers] == list(kinds.values())
    assert made.loggers[1].directory == tmp_path
    if has_tensorboard:
        assert made.loggers[3].directory == tmp_path / "tensorboard"
    assert list(tmp_path.iterdir()) == []  # nothing is written before a run starts
    made = make_loggers(["jsonl", "csv", "jsonl"], tmp_path)
    assert len(made.loggers) == 2  # a repeated name counts once
    with made:
        drive(made)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abc123.csv", "abc123.jsonl"]
    drive(make_loggers([], tmp_path))  # no logger: nothing happens
    assert set(LOGGER_NAMES) == {"console", "jsonl", "csv", "tensorboard", "wandb"}


def test_unknown_logger_name_lists_the_valid_ones(tmp_path):
    with pytest.raises(
        UnknownLoggerError, match="unknown logger 'mlflow'; valid names: console, jsonl, csv, tensorboard, wandb"
    ):
        make_loggers(["console", "mlflow"], tmp_path / "logs")
    assert not (tmp_path / "logs").exists()
    assert issubclass(UnknownLoggerError, ValueError)


def test_multi_logger_fans_out_and_closes_every_logger():
    calls = []

    class Recorder(Logger):
        def __init__(self, name, fail_close=False):
            self.name, self.fail_close = name, fail_close

        def log_task(self, t, accuracy_row, metrics):
            calls.append((self.name, "task", t))

        def close(self):
            calls.append((self.name, "close"))
            if self.fail_close:
                raise OSError(f"{self.name} cannot close")

    multi = MultiLogger([Recorder("a", fail_close=True), Recorder("b")])
    multi.log_task(1, [0.5, 0.5], {})
    with pytest.raises(OSError, match="a cannot close"):
        multi.close()
    assert calls == [("a", "task", 1), ("b", "task", 1), ("a", "close"), ("b", "close")]


def test_log_dir_is_beside_the_store(tmp_path):
    assert log_dir(tmp_path / "cl-bench.db") == tmp_path / "cl-bench.db.logs"


def test_dashboard_names_groups_and_tags_are_readable():
    from cl_bench.loggers.base import run_name
    from cl_bench.loggers.dashboards import wandb_group

    info = {**RUN, "hparams": {"s_max": 400.0, "c": 0.75}, "strategy": "hat", "tags": ["r1", "sweep:mini"]}
    assert run_name(info) == "hat-s_max=400-c=0.75-s3"
    assert run_name({**info, "strategy": "/x/my_method.py:MyMethod", "hparams": {}}) == "MyMethod-s3"
    assert wandb_group(info) == "mini" and wandb_group(RUN) == "sgd/pmnist"
