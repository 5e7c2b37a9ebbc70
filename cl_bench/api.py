"""The Python API: one run, a sweep, and the stored results, in three calls.

``cl_bench.run``, ``cl_bench.run_sweep`` and ``cl_bench.load_results`` (this module, re-exported by the
package on first use) do what ``cl-bench run``, ``cl-bench sweep`` and ``cl_bench.results.load`` do, with
the same validation and the same store, so runs made here and on the command line are the same runs
(same ``run_id``) and are skipped, resumed and reported alike::

    import cl_bench

    record = cl_bench.run("hat", "split_mnist", seed=0, protocol={"epochs": 2},
                          scenario_options={"max_train_per_task": 500}, store="quickstart.db")
    print(record.accuracy)                      # A[t, tau]: test accuracy on task tau after task t
    cl_bench.run_sweep({"scenario": "split_mnist", "strategies": {"sgd": None}, "references": True},
                       store="quickstart.db", workers=0)
    runs, accuracy = cl_bench.load_results("quickstart.db")

Values may be typed (``{"epochs": 2}``) or text (``{"epochs": "2"}``): both go through the one parser
(cl_bench.values), and a bad name or value is a ``ValueError`` that says which and what is accepted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cl_bench.loggers import Logger
from cl_bench.registry import parse_scenario_options
from cl_bench.results import load
from cl_bench.runner import ResolvedRun, RunConfig, execute
from cl_bench.store import DEFAULT_STORE, RunRecord, Store
from cl_bench.sweep import Outcome, Sweep, load_sweep, parse_sweep, sweep_file
from cl_bench.sweep import run_sweep as _run_sweep
from cl_bench.threads import set_run_threads
from cl_bench.trainer import Callbacks, EpochLog, Protocol, protocol_from_dict

__all__ = ["load_results", "run", "run_sweep"]

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


def run_sweep(
    sweep: str | os.PathLike | Mapping[str, Any] | Sweep,
    store: StoreLike = DEFAULT_STORE,
    *,
    workers: int | None = None,
    threads: int | None = None,
    backend: str = "local",
    device: str | None = None,
    data_root: str | os.PathLike | None = None,
    retry_failed: bool = False,
    checkpoints: bool = True,
    ray_address: str | None = None,
    progress: bool = True,
    name: str = "sweep",
    devices: str | list[str] | None = None,
    workers_per_device: int | None = None,
    loggers: tuple[str, ...] = (),
) -> list[Outcome]:
    """Run every run of a sweep that is not yet in the store: the Python form of ``cl-bench sweep``.

    A sweep is resumable: runs already finished in ``store`` are skipped, runs killed part-way resume
    from their last finished task, so calling this again finishes exactly what is missing.

    Args:
        sweep: A sweep file's path, a bundled preset's name (``"mini"``), the sweep as a mapping (the
            parsed YAML: see the sweep-file reference), or a ``Sweep`` from
            ``cl_bench.sweep.load_sweep`` / ``parse_sweep``.
        store: Path of the SQLite results file, or a ``Store``.
        workers: Local worker processes; None is one per core (as the CLI), 0 runs everything in this
            process (notebooks, debuggers).
        threads: torch threads per worker; None is cores / workers.
        backend: ``"local"`` (a pool of processes on this machine) or ``"ray"`` (the ``[ray]`` extra).
        device: ``"cpu"`` (None: the default), ``"cuda"`` or ``"cuda:N"``.
        devices: Several devices (``"cuda:0,cuda:1"`` or a list), each with ``workers_per_device``
            workers pinned to it; not with ``device`` or ``workers``.
        workers_per_device: Workers per device (with ``devices``, or on ``device``).
        loggers: File or dashboard loggers every run writes, beside the sweep file's (``"jsonl"``,
            ``"csv"``, ``"tensorboard"``, ``"wandb"``).
        data_root: The data sets' folder; default ``$CL_BENCH_DATA``, else ``./data``.
        retry_failed: Also run again the runs stored as failed.
        checkpoints: Checkpoint each run after each task, so a killed sweep resumes mid-run.
        ray_address: The Ray cluster to use with ``backend="ray"`` (default: start a local Ray).
        progress: Show progress bars (on stderr).
        name: The sweep's name when ``sweep`` is a mapping without ``name`` (runs are tagged
            ``sweep:<name>``).

    Returns:
        One ``Outcome`` per run attempted in this call (``run_id``, ``label``, ``status``: finished,
        failed or error, ``message``, ``wall_s``); the records are in the store.

    Raises:
        cl_bench.sweep.SweepError: The sweep is not valid (the message says where and what is
            accepted); nothing is run.
        FileNotFoundError: No such sweep file or bundled preset.

    Example:
        >>> outcomes = cl_bench.run_sweep({
        ...     "scenario": {"name": "split_mnist", "max_train_per_task": 500},
        ...     "strategies": {"sgd": None, "hat": {"c": [0.1, 0.75]}},
        ...     "protocol": {"epochs": 2},
        ...     "references": True,
        ... }, store="demo.db", workers=0, progress=False)
        >>> [o.status for o in outcomes]  # sgd, hat c=0.1, hat c=0.75, joint, random
    """
    if isinstance(sweep, Mapping):
        sweep = parse_sweep(dict(sweep), default_name=name)
    elif not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep_file(os.fspath(sweep)))
    path = store.path if isinstance(store, Store) else store
    if (workers is not None and workers < 0) or (threads is not None and threads < 1):
        raise ValueError(f"workers must be >= 0 and threads >= 1, got workers={workers}, threads={threads}")
    return _run_sweep(
        sweep,
        path,
        backend=backend,
        workers=workers,
        threads=threads,
        device=device,
        data_root=data_root,
        retry_failed=retry_failed,
        checkpoints=checkpoints,
        ray_address=ray_address,
        progress=progress,
        devices=devices,
        workers_per_device=workers_per_device,
        loggers=loggers,
    )


def load_results(store: StoreLike = DEFAULT_STORE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs of a results store as two tidy DataFrames, ``(runs, accuracy)``.

    Args:
        store: Path of the SQLite results file, or a ``Store``.

    Returns:
        ``runs``: one row per run (run_id, strategy, scenario, seed, status, n_tasks, wall_s, error,
        tags, hparams and scenario_options as JSON, max_train_per_task, protocol as JSON, epochs,
        precision, channels_last, code_version). ``accuracy``: one row per (run, t, tau) with the
        run's run_id, strategy, scenario and seed, and ``acc``, the test accuracy on task tau after
        training task t (both 0-based).

    Raises:
        FileNotFoundError: No store at that path (a new one is not created).

    Example:
        >>> runs, accuracy = cl_bench.load_results("demo.db")
        >>> last = accuracy[accuracy.t == accuracy.groupby("run_id").t.transform("max")]
        >>> last.groupby("strategy").acc.mean()    # A<=T: mean accuracy after the last task
    """
    if not isinstance(store, Store) and not Path(store).is_file():
        raise FileNotFoundError(f"no results store at {store}")
    return load(store)  # opens a path the way reading needs (cl_bench.results)
