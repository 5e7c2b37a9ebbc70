"""The console logger: a progress bar on a terminal, plain lines anywhere else."""

from __future__ import annotations

import sys
from typing import IO

from tqdm import tqdm

from cl_bench.loggers.base import Logger, is_finite, metric_text


class ConsoleLogger(Logger):
    """Progress on a stream (stderr by default): a tqdm bar over epochs when the stream is a terminal,
    else one plain line per epoch, so output piped to a file has no escape codes or carriage returns.
    ``progress`` forces the bar on (True) or off (False). Tasks are numbered from 1."""

    def __init__(self, stream: IO[str] | None = None, progress: bool | None = None):
        self._stream = stream
        self.progress = progress
        self.bar = None
        self.run_id = None

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
        what = ""
        if "strategy" in run_info and "scenario" in run_info:
            what = f": {run_info['strategy']} on {run_info['scenario']}, seed {run_info.get('seed', '?')}"
        self._line(f"run {self.run_id}{what}")
        if self._tty():
            self.bar = tqdm(total=None, unit="epoch", dynamic_ncols=True, file=self.stream)

    def log_epoch(self, log):
        if self.bar is not None:
            self.bar.set_description(f"task {log.task + 1}")
            self.bar.set_postfix(
                loss=f"{log.train_loss:.3f}",
                val_loss=f"{log.valid_loss:.3f}",
                val_acc=f"{100 * log.valid_acc:.1f}",
                lr=f"{log.lr:.2g}",
            )
            self.bar.update()
        else:
            self._line(
                f"task {log.task + 1} epoch {log.epoch}: loss {log.train_loss:.4f}  "
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
