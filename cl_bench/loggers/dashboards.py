"""Dashboard loggers on optional packages: TensorBoard (extra ``tensorboard``), Weights & Biases (``wandb``).

The package is imported when the logger is made, so a missing one fails before the run starts, naming
the extra that installs it. Tasks are numbered from 1 in names and values; non-finite values are skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cl_bench.loggers.base import Logger, epoch_values, is_finite, plain, require_extra, run_id_of, run_name

WANDB_MODES = ("online", "offline", "disabled")


class TensorBoardLogger(Logger):
    """Event files in ``<directory>/<run name>-<run_id[:8]>/`` (``tensorboard --logdir <directory>``; the
    name is ``run_name``: strategy, hyperparameters, seed). Scalars: per epoch ``epoch/<field>``
    (train_loss, valid_loss, valid_acc, lr, seconds, ..., and ``epoch/task``) at the run's epoch count; per
    task ``test_acc/task<n>`` and ``metrics/<name>`` at the task number; at the end ``summary/<name>``. At
    the end the HParams tab gets the run (``add_hparams``): strategy, scenario, seed, each hyperparameter
    (``hp/<name>``) and protocol setting (``protocol/<name>``) against ``final/<metric>``. The run's
    configuration and its final status are also text summaries."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self._SummaryWriter = require_extra("tensorboard", "torch.utils.tensorboard").SummaryWriter
        self.writer = None
        self.step = self.tasks = 0
        self.run_info: dict[str, Any] = {}

    def start_run(self, run_info):
        self.close()
        folder = f"{run_name(run_info)}-{run_id_of(run_info)[:8]}"  # readable, and unique per run
        self.writer = self._SummaryWriter(log_dir=str(self.directory / folder))
        self.step = self.tasks = 0
        self.run_info = dict(run_info)
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
            metrics = {f"final/{k}": v for k, v in summary.items() if k != "wall_s" and is_finite(v)}
            metrics = metrics or {"final/acc": float("nan")}  # a failed run is still in the HParams table
            self.writer.add_hparams(hparams_of(self.run_info, status), metrics, run_name=".")  # in this run's folder
        self.close()

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def hparams_of(run_info: dict[str, Any], status: str) -> dict[str, Any]:
    """The run's settings as TensorBoard HParams values (numbers, texts, booleans)."""
    out: dict[str, Any] = {k: run_info[k] for k in ("strategy", "scenario", "seed") if k in run_info}
    for group in ("hparams", "protocol"):
        prefix = "hp" if group == "hparams" else group
        for key, value in (run_info.get(group) or {}).items():
            out[f"{prefix}/{key}"] = value if isinstance(value, (int, float, str, bool)) else json.dumps(plain(value))
    out["tags"] = ",".join(map(str, run_info.get("tags") or []))
    out["status"] = status
    return out


def wandb_group(run_info: dict[str, Any]) -> str:
    """The sweep a run belongs to (its ``sweep:<name>`` tag), else its strategy on its scenario."""
    for tag in run_info.get("tags") or []:
        if str(tag).startswith("sweep:"):
            return str(tag)[len("sweep:") :]
    return f"{run_info.get('strategy', 'run')}/{run_info.get('scenario', '?')}"


class WandbLogger(Logger):
    """One Weights & Biases run per cl-bench run, named ``run_name`` (strategy-key=value-s<seed>), in the
    group of its sweep (else strategy/scenario), tagged with its tags, strategy and scenario; the run id is
    in its configuration (= run_info); files
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
        tags = [*(run_info.get("tags") or []), *(str(run_info[k]) for k in ("strategy", "scenario") if k in run_info)]
        kwargs = {
            "name": run_name(run_info),
            "group": wandb_group(run_info),
            "tags": [str(t)[:64] for t in dict.fromkeys(tags)],  # W&B refuses tags over 64 characters
            "settings": self.wandb.Settings(console="off"),  # leave our stdout alone
            **self.init_kwargs,
        }
        run_id_of(run_info)  # a run without a usable id is refused, as by the file loggers
        self.run = self.wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.mode,
            dir=str(self.directory),
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
