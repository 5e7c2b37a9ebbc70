"""Dashboard loggers on optional packages: TensorBoard (extra ``tensorboard``), Weights & Biases (``wandb``).

The package is imported when the logger is made, so a missing one fails before the run starts, naming
the extra that installs it. Tasks are numbered from 1 in names and values; non-finite values are skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cl_bench.loggers.base import Logger, epoch_values, is_finite, plain, require_extra, run_id_of

WANDB_MODES = ("online", "offline", "disabled")


class TensorBoardLogger(Logger):
    """Event files in ``<directory>/<run_id>/`` (``tensorboard --logdir <directory>``). Scalars: per epoch
    ``epoch/<field>`` (train_loss, valid_loss, valid_acc, lr, seconds, ..., and ``epoch/task``) at the
    run's epoch count; per task ``test_acc/task<n>`` and ``metrics/<name>`` at the task number; at the end
    ``summary/<name>``. The run's configuration and its final status are text summaries."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self._SummaryWriter = require_extra("tensorboard", "torch.utils.tensorboard").SummaryWriter
        self.writer = None
        self.step = self.tasks = 0

    def start_run(self, run_info):
        self.close()
        self.writer = self._SummaryWriter(log_dir=str(self.directory / run_id_of(run_info)))
        self.step = self.tasks = 0
        config = json.dumps(plain(dict(run_info)), indent=2)
        self.writer.add_text("run", "\n".join("    " + line for line in config.splitlines()))  # markdown code

    def _scalars(self, prefix: str, values, step: int) -> None:
        for name, value in values.items():
            if is_finite(value):
                self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def log_epoch(self, log):
        self.step += 1
        self._scalars("epoch", {"task": log.task + 1, **epoch_values(log)}, self.step)

    def log_task(self, t, accuracy_row, metrics):
        self.tasks = t + 1
        self._scalars("test_acc", {f"task{tau + 1}": a for tau, a in enumerate(accuracy_row)}, t + 1)
        self._scalars("metrics", metrics, t + 1)
        self.writer.flush()

    def end_run(self, status, summary):
        if self.writer is not None:
            self._scalars("summary", summary, self.tasks)
            self.writer.add_text("status", str(status) + (f": {summary['error']}" if summary.get("error") else ""))
        self.close()

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class WandbLogger(Logger):
    """One Weights & Biases run per cl-bench run, named by run id, its configuration = run_info; files
    under ``<directory>/wandb/``. ``mode="offline"`` needs no network or account (``wandb sync`` uploads
    later); None leaves it to wandb (WANDB_MODE, login). Logged: ``epoch/<field>`` against ``epochs`` (the
    run's epoch count), ``test_acc/task<n>`` and ``metrics/<name>`` against ``task``; the summary and
    ``status`` go to the run summary. ``init_kwargs`` pass on to ``wandb.init`` (group, tags, ...)."""

    def __init__(
        self,
        directory: str | os.PathLike,
        project: str = "cl-bench",
        mode: str | None = None,
        entity: str | None = None,
        **init_kwargs: Any,
    ):
        if mode is not None and mode not in WANDB_MODES:
            raise ValueError(f"wandb mode must be one of {', '.join(WANDB_MODES)}, got {mode!r}")
        self.wandb = require_extra("wandb")
        self.directory = Path(directory)
        self.project, self.mode, self.entity, self.init_kwargs = project, mode, entity, init_kwargs
        self.run = None
        self.step = 0

    def start_run(self, run_info):
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        kwargs = {"settings": self.wandb.Settings(console="off"), **self.init_kwargs}  # leave our stdout alone
        self.run = self.wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.mode,
            dir=str(self.directory),
            name=run_id_of(run_info),
            config=plain(dict(run_info)),
            **kwargs,
        )
        self.step = 0
        for name, step in (
            ("epochs", None),
            ("epoch/*", "epochs"),
            ("task", None),
            ("test_acc/*", "task"),
            ("metrics/*", "task"),
        ):
            self.run.define_metric(name, step_metric=step)

    def log_epoch(self, log):
        self.step += 1
        values = {"task": log.task + 1, "epoch": log.epoch, **epoch_values(log)}
        self.run.log({"epochs": self.step, **{f"epoch/{k}": v for k, v in values.items()}})

    def log_task(self, t, accuracy_row, metrics):
        values = {f"test_acc/task{tau + 1}": a for tau, a in enumerate(accuracy_row)}
        values.update({f"metrics/{k}": v for k, v in metrics.items()})
        self.run.log({"task": t + 1, **{k: float(v) for k, v in values.items() if is_finite(v)}})

    def end_run(self, status, summary):
        if self.run is not None:
            values = {k: v for k, v in plain(dict(summary)).items() if v is not None}
            self.run.summary.update({"status": status, **values})
            self.run.finish(exit_code=0 if status == "finished" else 1)
            self.run = None

    def close(self):
        if self.run is not None:  # closed mid-run: the run did not finish
            self.run.finish(exit_code=1)
            self.run = None
