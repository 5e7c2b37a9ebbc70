"""Run loggers: where a run's progress goes while it trains (console, JSONL, CSV, TensorBoard, W&B).

A logger is called per epoch and per task, never per batch: ``start_run(run_info)``, then
``log_epoch(EpochLog)`` and ``log_task(t, accuracy_row, metrics)`` as the run goes, then
``end_run(status, summary)``; the next run may then start on the same logger. ``close()`` releases
everything, also mid-run after an error (a logger is a context manager that closes on exit).

``run_info`` holds at least ``run_id`` (the file loggers name their output by it); ``strategy``,
``scenario`` and ``seed`` are shown by the console when present; the whole dict is stored as the run's
configuration. ``accuracy_row`` is A[t, 0..t], the test accuracies after task t (fractions); ``metrics``
the metrics after task t (``cl_bench.metrics.step_metrics``). Task numbers: every output counts tasks
from 1 (console, JSONL, CSV, TensorBoard, W&B), as the accuracy matrices in reports do; only EpochLog,
the hooks' ``t`` and the store count from 0. Dashboards name a run ``strategy-key=value-...-s<seed>``
(``run_name``), followed in TensorBoard's folder by the first characters of its run id.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from cl_bench.loggers.base import (
    LogDirError,
    Logger,
    MissingExtraError,
    MultiLogger,
    UnknownLoggerError,
    check_log_dir,
    install_command,
    log_dir,
    require_extra,
)
from cl_bench.loggers.console import ConsoleLogger
from cl_bench.loggers.dashboards import WANDB_MODES, TensorBoardLogger, WandbLogger
from cl_bench.loggers.files import CsvLogger, JsonlLogger

__all__ = [
    "LOGGER_NAMES",
    "WANDB_MODES",
    "ConsoleLogger",
    "CsvLogger",
    "JsonlLogger",
    "LogDirError",
    "Logger",
    "MissingExtraError",
    "MultiLogger",
    "TensorBoardLogger",
    "UnknownLoggerError",
    "WandbLogger",
    "install_command",
    "log_dir",
    "make_loggers",
    "require_extra",
]

LOGGER_NAMES = ("console", "jsonl", "csv", "tensorboard", "wandb")


def make_loggers(
    names: Sequence[str],
    directory: str | os.PathLike,
    *,
    stream: IO[str] | None = None,
    progress: bool | None = None,
    wandb_project: str = "cl-bench",
    wandb_mode: str | None = None,
    wandb_entity: str | None = None,
) -> MultiLogger:
    """Loggers by name (LOGGER_NAMES), in one MultiLogger, writing under ``directory``: ``<run_id>.jsonl``
    and ``<run_id>.csv`` in it, TensorBoard runs in ``tensorboard/<run name>-<run_id[:8]>/``, W&B runs in
    ``wandb/``.
    Every name is checked, and every optional package found, before any logger is made; a name given
    twice counts once, and ``directory`` is checked when a logger writes there. Raises UnknownLoggerError,
    LogDirError (ValueErrors) or MissingExtraError."""
    unknown = [n for n in names if n not in LOGGER_NAMES]
    if unknown:
        raise UnknownLoggerError(f"unknown logger {unknown[0]!r}; valid names: {', '.join(LOGGER_NAMES)}")
    names = list(dict.fromkeys(names))
    for name in names:
        if name in ("tensorboard", "wandb"):
            require_extra(name)
    directory = Path(directory)
    if any(name != "console" for name in names):
        check_log_dir(directory)
    make = {
        "console": lambda: ConsoleLogger(stream, progress),
        "jsonl": lambda: JsonlLogger(directory),
        "csv": lambda: CsvLogger(directory),
        "tensorboard": lambda: TensorBoardLogger(directory / "tensorboard"),
        "wandb": lambda: WandbLogger(directory, wandb_project, wandb_mode, wandb_entity),
    }
    return MultiLogger([make[name]() for name in names])
