"""File loggers: one JSONL or CSV file per run, named by run id, in a folder given to the constructor."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import IO, Any

from cl_bench.loggers.base import Logger, is_finite, plain, run_id_of


class _FileLogger(Logger):
    """``<directory>/<run_id>.<suffix>``, appended to: a re-run or a resumed run adds its own start
    record after the earlier attempt's. Flushed after every record, so ``tail -f`` follows it and a killed
    run keeps what it logged. Tasks are numbered from 1, as in every output a person reads (the
    console, the dashboards, the accuracy matrices of reports); EpochLog and the store count from 0."""

    suffix = ""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.file: IO[str] | None = None
        self.path: Path | None = None
        self.step = 0  # epochs logged in this run, across tasks

    def _open(self, run_info) -> None:
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{run_id_of(run_info)}.{self.suffix}"
        self.file = open(self.path, "a", newline="" if self.suffix == "csv" else None, encoding="utf-8")
        self.step = 0

    def _live(self) -> IO[str]:
        if self.file is None:
            raise RuntimeError(f"{type(self).__name__}: log_* called outside start_run ... end_run")
        return self.file

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None


class JsonlLogger(_FileLogger):
    """``<run_id>.jsonl``: one JSON object per line with an ``event`` of start, epoch, task or end:
    {"event": "start", "time", "run": run_info}; {"event": "epoch", "time", "step", <EpochLog fields>};
    {"event": "task", "time", "task", "test_acc": [A[t, 0..t]], "metrics": {...}};
    {"event": "end", "time", "status", "summary": {...}}. NaN is written as null (strict JSON)."""

    suffix = "jsonl"

    def _write(self, event: str, **fields) -> None:
        record = plain({"event": event, "time": time.time(), **fields})
        self._live().write(json.dumps(record, allow_nan=False) + "\n")
        self.file.flush()

    def start_run(self, run_info):
        self._open(run_info)
        self._write("start", run=dict(run_info))

    def log_epoch(self, log):
        self.step += 1
        self._write("epoch", step=self.step, **{**dataclasses.asdict(log), "task": log.task + 1})

    def log_task(self, t, accuracy_row, metrics):
        self._write("task", task=t + 1, test_acc=list(accuracy_row), metrics=dict(metrics))

    def end_run(self, status, summary):
        if self.file is not None:
            self._write("end", status=status, summary=dict(summary))
        self.close()


class CsvLogger(_FileLogger):
    """``<run_id>.csv`` in long form, one value per row: ``time, event, task, epoch, tau, name, value``.
    epoch rows: name is an EpochLog field (train_loss, valid_loss, valid_acc, lr, seconds, ...); task rows:
    name ``test_acc`` with ``tau`` the task tested, then one row per metric (NaN left empty); start and end
    rows: name ``status`` (running, then the final status), then one row per numeric summary value. As a
    table: ``df[df.event == "epoch"].pivot(index=["task", "epoch"], columns="name", values="value")``."""

    suffix = "csv"
    COLUMNS = ("time", "event", "task", "epoch", "tau", "name", "value")

    def _rows(self, event: str, rows: list[tuple[Any, Any, Any, str, Any]]) -> None:
        now = f"{time.time():.3f}"
        writer = csv.writer(self._live())
        for *where, name, value in rows:
            writer.writerow(
                [
                    now,
                    event,
                    *("" if w is None else w for w in where),
                    name,
                    "" if plain(value) is None else plain(value),
                ]
            )
        self.file.flush()

    def start_run(self, run_info):
        self._open(run_info)
        if self.file.tell() == 0:
            csv.writer(self.file).writerow(self.COLUMNS)
        self._rows("start", [(None, None, None, "status", "running")])

    def log_epoch(self, log):
        self._rows(
            "epoch",
            [
                (log.task + 1, log.epoch, None, k, v)
                for k, v in dataclasses.asdict(log).items()
                if k not in ("task", "epoch") and v is not None
            ],
        )

    def log_task(self, t, accuracy_row, metrics):
        self._rows(
            "task",
            [(t + 1, None, tau + 1, "test_acc", a) for tau, a in enumerate(accuracy_row)]
            + [(t + 1, None, None, k, v) for k, v in metrics.items()],
        )

    def end_run(self, status, summary):
        if self.file is not None:
            self._rows(
                "end",
                [(None, None, None, "status", status)]
                + [(None, None, None, k, v) for k, v in summary.items() if is_finite(v)],
            )
        self.close()
