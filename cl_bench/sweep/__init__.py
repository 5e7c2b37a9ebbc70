"""Sweeps: a YAML file of scenarios x strategies x hyperparameter grids x seeds, run resumably.

``cl-bench sweep FILE`` expands the file (cl_bench.sweep.spec) into runs (cl_bench.sweep.plan), skips
every run already in the store (same ``run_id``: finished ones, and failed ones unless
``--retry-failed``), and runs the rest on a pool of worker processes (cl_bench.sweep.local) or on Ray
(``--backend ray``, cl_bench.sweep.ray_backend) or as SLURM job arrays (``--backend slurm``,
cl_bench.sweep.slurm_backend). Each run is written to the store in its own
transaction as it ends and checkpointed after each task (cl_bench.runner.checkpoint), so Ctrl-C or
``kill -9`` loses at most the unfinished tasks of the runs in flight, and running the same command
again finishes exactly what is missing. Each run is claimed before it starts (cl_bench.store.claims), so two
sweeps on one store share the work and never both run a configuration; a finished run made with
another version of its strategy file or other data is run again beside it (cl_bench.runner.identity).
``cl-bench status FILE`` shows what is done (``status_rows``). Workers are placed on devices by
cl_bench.sweep.placement (``--devices cuda:0,cuda:1 --workers-per-device N``); the file and dashboard
loggers of the sweep file's ``loggers`` (and ``--logger``) log each run in its worker (cl_bench.loggers).

This module is the public face: ``run_sweep`` picks the backend.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator, Sequence

from cl_bench.loggers import log_dir, make_loggers
from cl_bench.store import DEFAULT_STORE, Store
from cl_bench.store.claims import Heartbeat
from cl_bench.sweep.local import WorkerStartError, measure_split, run_inline, run_local, worker_slot
from cl_bench.sweep.placement import PlacementError, Slot, parse_devices, place_workers
from cl_bench.sweep.plan import (
    METRICS,
    NOTHING_TO_CHOOSE,
    Cell,
    Plan,
    PlanItem,
    Point,
    Select,
    Sweep,
    SweepError,
    choose,
    validation_score,
)
from cl_bench.sweep.progress import Outcome, Progress, Scheduler, run_label
from cl_bench.sweep.ray_backend import run_ray  # imports Ray only when it runs
from cl_bench.sweep.slurm_driver import run_slurm  # imports submitit only when it runs
from cl_bench.sweep.slurm_options import SlurmOptions, parse_slurm_options
from cl_bench.sweep.spec import (
    BUNDLED_SWEEPS,
    REFERENCE_STRATEGIES,
    SWEEP_LOGGERS,
    bundled_sweeps,
    expand_grid,
    load_sweep,
    parse_sweep,
    sweep_file,
    sweep_loggers,
)
from cl_bench.sweep.status import status_rows

BACKENDS = ("local", "ray", "slurm")

__all__ = [
    "BACKENDS",
    "BUNDLED_SWEEPS",
    "METRICS",
    "NOTHING_TO_CHOOSE",
    "REFERENCE_STRATEGIES",
    "SWEEP_LOGGERS",
    "Cell",
    "Outcome",
    "PlacementError",
    "Plan",
    "PlanItem",
    "Point",
    "Progress",
    "Scheduler",
    "Select",
    "SlurmOptions",
    "Slot",
    "Sweep",
    "SweepError",
    "Terminated",
    "WorkerStartError",
    "bundled_sweeps",
    "choose",
    "expand_grid",
    "load_sweep",
    "measure_split",
    "parse_devices",
    "parse_slurm_options",
    "parse_sweep",
    "place_workers",
    "run_label",
    "run_sweep",
    "status_rows",
    "sweep_file",
    "sweep_loggers",
    "validation_score",
    "worker_slot",
]


def run_sweep(
    sweep: Sweep,
    store: str | os.PathLike = DEFAULT_STORE,
    *,
    backend: str = "local",
    workers: int | None = None,
    threads: int | None = None,
    device: str | None = None,
    devices: Sequence[str] | None = None,
    workers_per_device: int | None = None,
    data_root=None,
    retry_failed: bool = False,
    checkpoints: bool = True,
    ray_address: str | None = None,
    progress: bool = True,
    loggers: Sequence[str] = (),
    slurm: SlurmOptions | None = None,
) -> list[Outcome]:
    """Run what the sweep still needs; returns an Outcome per run attempted in this call (and per run
    found busy in another process or done meanwhile: status "busy" / "skipped").

    Placement (cl_bench.sweep.placement): ``workers`` (None: one per core; 0: in this process) x
    ``threads`` on ``device`` (None: cpu), or ``devices`` x ``workers_per_device``. On Ray, ``device``
    ``cuda`` asks ``1 / workers_per_device`` GPU per run. ``loggers``: file and dashboard loggers
    (cl_bench.loggers) for every run, besides those of the sweep's ``loggers`` key. ``slurm``: what each
    SLURM array task asks for (default: the sweep file's ``slurm`` key). SIGTERM stops the driver as
    Ctrl-C does (KeyboardInterrupt; ``Terminated`` for SIGTERM)."""
    if backend not in BACKENDS:
        raise SweepError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    names = sweep_loggers([*sweep.loggers, *loggers], "loggers")
    make_loggers(names, log_dir(store)).close()  # a missing extra (tensorboard, wandb) fails before any run
    if backend == "slurm":
        if devices is not None or workers is not None or workers_per_device is not None:
            raise PlacementError(
                "with --backend slurm each run is one array task: give --max-parallel (tasks at once), "
                "--cpus and --gpus, not --workers, --devices or --workers-per-device"
            )
        options = slurm or getattr(sweep, "slurm", None) or SlurmOptions()
        return _with_heartbeat(
            sweep,
            store,
            retry_failed,
            data_root,
            lambda scheduler: run_slurm(
                scheduler,
                options,
                threads=threads,
                device=device,
                data_root=data_root,
                checkpoints=checkpoints,
                progress=progress,
                loggers=names,
            ),
        )
    if backend == "ray":
        if devices is not None:
            raise PlacementError(
                "Ray places each run on a GPU itself: give --device cuda and "
                "--workers-per-device N (runs per GPU), not --devices"
            )
        cores = os.cpu_count() or 1
        threads = threads or max(1, cores // max(1, cores if workers is None else workers))
        return _with_heartbeat(
            sweep,
            store,
            retry_failed,
            data_root,
            lambda scheduler: run_ray(
                scheduler,
                threads=threads,
                device=device or "cpu",
                data_root=data_root,
                checkpoints=checkpoints,
                address=ray_address,
                progress=progress,
                workers_per_device=workers_per_device or 1,
                loggers=names,
            ),
        )
    slots = place_workers(
        workers=workers, threads=threads, device=device, devices=devices, workers_per_device=workers_per_device
    )
    if workers == 0:
        return _with_heartbeat(
            sweep,
            store,
            retry_failed,
            data_root,
            lambda scheduler: run_inline(scheduler, slots[0], data_root, checkpoints, progress, names),
        )
    return _with_heartbeat(
        sweep,
        store,
        retry_failed,
        data_root,
        lambda scheduler: run_local(scheduler, slots, data_root, checkpoints, progress, names),
    )


class Terminated(KeyboardInterrupt):
    """The sweep driver got SIGTERM (``kill``, SLURM's end of a job): it stops as on Ctrl-C."""

    signum = signal.SIGTERM


@contextlib.contextmanager
def sigterm_stops() -> Iterator[None]:
    """SIGTERM raises Terminated (a KeyboardInterrupt) in this thread while in the block, so every
    backend's clean stop on Ctrl-C (claims released, workers stopped, checkpoints kept) runs for it too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _with_heartbeat(sweep: Sweep, store, retry_failed: bool, data_root, backend) -> list[Outcome]:
    with sigterm_stops():
        scheduler = Scheduler(sweep, Store(store), retry_failed, data_root=data_root)
        with Heartbeat(scheduler.store, scheduler.owner):  # keeps this driver's claims alive
            return backend(scheduler)
