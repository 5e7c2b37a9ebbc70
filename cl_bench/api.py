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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from cl_bench.results import load
from cl_bench.runner.front import StoreLike, run
from cl_bench.store import DEFAULT_STORE, Store
from cl_bench.sweep import Outcome, Sweep, load_sweep, parse_sweep, sweep_file
from cl_bench.sweep import run_sweep as _run_sweep

__all__ = ["load_results", "run", "run_sweep"]


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
    if not isinstance(sweep, (Mapping, Sweep, str, os.PathLike)):
        raise TypeError(
            f"run_sweep: sweep must be a sweep file's path, a preset's name, a mapping or a Sweep, got {sweep!r}"
        )
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
    if not isinstance(store, (str, os.PathLike, Store)):
        raise TypeError(
            f"load_results: store must be a results file's path (str or os.PathLike) or a Store, got {store!r}"
        )
    if not isinstance(store, Store) and not Path(store).is_file():
        raise FileNotFoundError(f"no results store at {store}")
    return load(store)  # opens a path the way reading needs (cl_bench.results)
