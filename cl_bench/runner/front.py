"""``cl_bench.run``: one run from Python, the front door ``cl-bench run`` goes through too (so runs made
either way are the same runs). Light on imports: no pandas, no sweep machinery."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from cl_bench.loggers import Logger
from cl_bench.registry import parse_scenario_options
from cl_bench.runner.execution import ResolvedRun, RunConfig, execute
from cl_bench.store import DEFAULT_STORE, RunRecord, Store
from cl_bench.threads import set_run_threads
from cl_bench.trainer import Callbacks, EpochLog, Protocol, protocol_from_dict

StoreLike = str | os.PathLike | Store


def run(
    strategy: str,
    scenario: str,
    seed: int = 0,
    *,
    hparams: Mapping[str, Any] | None = None,
    protocol: Protocol | Mapping[str, Any] | None = None,
    preset: str = "paper",
    scenario_options: Mapping[str, Any] | None = None,
    tags: Iterable[str] = (),
    store: StoreLike | None = DEFAULT_STORE,
    data_root: str | os.PathLike | None = None,
    download: bool = False,
    device: str = "cpu",
    force: bool = False,
    checkpoints: bool = True,
    threads: int | None = None,
    logger: Logger | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
    on_task: Callable[[int, np.ndarray], None] | None = None,
) -> RunRecord:
    """Run one strategy on one scenario and seed under the training protocol, and store the result.

    The Python form of ``cl-bench run``. An identical configuration already finished in ``store`` is
    returned from the store without training (unless ``force``); a run killed part-way resumes from
    its last finished task.

    Args:
        strategy: A registered name (``cl-bench list strategies``), ``path/to/file.py:ClassName`` or
            ``avalanche:NAME``.
        scenario: A registered scenario name (``cl-bench list scenarios``).
        seed: Seeds the task order, the splits, the weights and the batch order (0 to 2**32 - 1).
        hparams: The strategy's hyperparameters, e.g. ``{"c": 0.75, "s_max": 400}``; the others keep
            their defaults.
        protocol: A ``Protocol``, or a mapping of protocol settings applied to ``preset``, e.g.
            ``{"epochs": 10}``; None is the preset itself.
        preset: ``"paper"`` (the authors' protocol) or ``"quick"`` (3 epochs, patience 1), the base of
            a mapping ``protocol``. Not allowed with a ``Protocol`` instance, which is complete.
        scenario_options: The scenario's options, e.g. ``{"max_train_per_task": 500, "tasks": [0, 1]}``.
        tags: Labels stored with the run (``cl-bench report --tag``), a string or several; they do not
            change its id.
        store: Path of the SQLite results file, a ``Store``, or None to store nothing (no skipping,
            no checkpoints).
        data_root: The data sets' folder; default ``$CL_BENCH_DATA``, else ``./data``.
        download: Download missing data sets that can be downloaded (MNIST, CIFAR, ...).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        force: Run again even if the configuration already finished in the store.
        checkpoints: Checkpoint the run after each task beside the store, so a killed run resumes.
        threads: torch's intra-op threads for this run; None picks them from the cores that are free
            (cl_bench.threads).
        logger: A ``cl_bench.loggers`` logger (console, files, dashboards) told of the run as it trains.
        on_epoch: Called with each epoch's ``EpochLog`` (task, epoch, lr, losses, validation accuracy).
        on_task: Called after each task ``t`` with the accuracy matrix so far.

    Returns:
        The stored ``RunRecord``: ``run_id``, ``status``, ``accuracy`` (T x T, NaN above the diagonal),
        ``history`` (one dict per epoch), ``monitoring`` (HAT's capacity, ...), ``wall_s``, ...

    Raises:
        ValueError: An unknown strategy, scenario, hyperparameter, option or protocol setting, or a
            value of the wrong type or outside its range; nothing is run or stored.
        FileNotFoundError: A data set the scenario needs is not under the data root.
        cl_bench.runner.RunFailed: The run diverged or raised; it is stored as failed and the
            exception's ``record`` holds it.

    Example:
        >>> record = cl_bench.run("sgd", "split_mnist", protocol={"epochs": 2},
        ...                       scenario_options={"max_train_per_task": 500}, store="demo.db")
        >>> record.accuracy  # after task 1: [acc1, nan]; after task 2: [acc1, acc2]
    """
    if isinstance(protocol, Protocol):
        if preset != "paper":
            raise ValueError("give either a Protocol or a preset (with a mapping of settings), not both")
    else:
        protocol = protocol_from_dict(dict(protocol or {}), preset)
    options = parse_scenario_options(scenario, dict(scenario_options or {}))
    tags = [tags] if isinstance(tags, str) else list(tags)
    config = RunConfig(strategy, scenario, seed, dict(hparams or {}), protocol, options, tags)
    run = ResolvedRun.of(config)  # the one lookup: a bad strategy or hyperparameter fails before the store opens
    set_run_threads(threads)
    db = store if isinstance(store, Store) or store is None else Store(store)
    return execute(
        run,
        db,
        data_root=data_root,
        download=download,
        device=device,
        force=force,
        checkpoints=checkpoints,
        logger=logger,
        listeners=[Callbacks(on_epoch, on_task)] if on_epoch or on_task else [],
    )
