"""The console logger: a progress bar on a terminal, plain lines anywhere else."""

from __future__ import annotations

import sys
from typing import IO

from tqdm import tqdm

from cl_bench.loggers.base import Logger, is_finite, metric_text


class ConsoleLogger(Logger):
    """Progress on a stream (stderr by default): on a terminal a tqdm bar per task whose total is the
    protocol's epoch cap (early stopping ends it sooner), else one plain line per epoch (``task 2/5 epoch
    3/<=200: ...``), so output piped to a file has no escape codes or carriage returns. ``progress``
    forces the bar on (True) or off (False). Tasks are numbered from 1."""

    def __init__(self, stream: IO[str] | None = None, progress: bool | None = None):
        self._stream = stream
        self.progress = progress
        self.bar = None
        self.run_id = None
        self.max_epochs: int | None = None  # the protocol's cap, from run_info
        self.n_tasks: int | None = None  # known from run_info's task list, or once resumed
        self.task: int | None = None

    @property
    def stream(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stderr  # sys.stderr as it is at call time

    def _tty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return self.progress if self.progress is not None else bool(isatty and isatty())

    def _line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def start_run(self, run_info):
        self.close()
        self.run_id = run_info.get("run_id", "?")
        epochs = (run_info.get("protocol") or {}).get("epochs")
        self.max_epochs = epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None
        tasks = (run_info.get("scenario_options") or {}).get("tasks")
        self.n_tasks = len(tasks) if isinstance(tasks, (list, tuple)) and tasks else None
        self.task = None
        what = ""
        if "strategy" in run_info and "scenario" in run_info:
            what = f": {run_info['strategy']} on {run_info['scenario']}, seed {run_info.get('seed', '?')}"
        self._line(f"run {self.run_id}{what}")

    def _task(self, t: int) -> str:
        return f"task {t + 1}" + (f"/{self.n_tasks}" if self.n_tasks else "")

    def _epoch(self, epoch: int) -> str:
        return f"epoch {epoch}" + (f"/<={self.max_epochs}" if self.max_epochs else "")

    def resumed(self, next_task, n_tasks):
        self.n_tasks = n_tasks
        self._line(f"resuming after task {next_task} of {n_tasks} (from its checkpoint)")

    def log_epoch(self, log):
        if self._tty() and (self.bar is None or self.task != log.task):  # a bar per task, up to the cap
            self.close()
            self.bar = tqdm(total=self.max_epochs, unit="epoch", dynamic_ncols=True, file=self.stream)
            self.bar.set_description(self._task(log.task))
        self.task = log.task
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{log.train_loss:.3f}",
                val_loss=f"{log.valid_loss:.3f}",
                val_acc=f"{100 * log.valid_acc:.1f}",
                lr=f"{log.lr:.2g}",
            )
            self.bar.update()
        else:
            self._line(
                f"{self._task(log.task)} {self._epoch(log.epoch)}: loss {log.train_loss:.4f}  "
                f"val_loss {log.valid_loss:.4f}  val_acc {100 * log.valid_acc:.1f}  lr {log.lr:.3g}  "
                f"{log.seconds:.1f} s"
            )

    def log_task(self, t, accuracy_row, metrics):
        row = " ".join(f"{100 * a:.1f}" for a in accuracy_row)
        extra = metric_text(metrics)
        self._line(f"after task {t + 1}: test acc {row}" + (f" | {extra}" if extra else ""))

    def end_run(self, status, summary):
        self.close()
        summary = dict(summary)
        error, wall = summary.pop("error", None), summary.pop("wall_s", None)
        extra = metric_text(summary)
        self._line(
            f"run {self.run_id} {status}"
            + (f" in {wall:.1f} s" if is_finite(wall) else "")
            + (f": {extra}" if extra else "")
            + (f": {str(error).splitlines()[0]}" if error else "")
        )

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
