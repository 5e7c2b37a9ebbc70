"""Sweeps: a YAML file of scenarios x strategies x hyperparameter grids x seeds, run resumably.

``cl-bench sweep FILE`` expands the file (cl_bench.sweep.spec) into runs (cl_bench.sweep.plan), skips
every run already in the store (same ``run_id``: finished ones, and failed ones unless
``--retry-failed``), and runs the rest on a pool of worker processes (cl_bench.sweep.local) or on Ray
(``--backend ray``, cl_bench.sweep.ray_backend). Each run is written to the store in its own
transaction as it ends and checkpointed after each task (cl_bench.checkpoint), so Ctrl-C or
``kill -9`` loses at most the unfinished tasks of the runs in flight, and running the same command
again finishes exactly what is missing. Each run is claimed before it starts (cl_bench.claims), so two
sweeps on one store share the work and never both run a configuration; a finished run made with
another version of its strategy file or other data is run again beside it (cl_bench.identity).
``cl-bench status FILE`` shows what is done (``status_rows``).

This module is the public face: ``run_sweep`` picks the backend.
"""

from __future__ import annotations

import os

from cl_bench.claims import Heartbeat
from cl_bench.store import DEFAULT_STORE, Store
from cl_bench.sweep.local import measure_split, run_inline, run_local
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
    status_rows,
    validation_score,
)
from cl_bench.sweep.progress import Outcome, Progress, Scheduler, run_label
from cl_bench.sweep.ray_backend import run_ray  # imports Ray only when it runs
from cl_bench.sweep.spec import (
    BUNDLED_SWEEPS,
    REFERENCE_STRATEGIES,
    bundled_sweeps,
    expand_grid,
    load_sweep,
    parse_sweep,
    sweep_file,
)

BACKENDS = ("local", "ray")

__all__ = [
    "BACKENDS", "BUNDLED_SWEEPS", "METRICS", "NOTHING_TO_CHOOSE", "REFERENCE_STRATEGIES", "Cell", "Outcome",
    "Plan", "PlanItem", "Point", "Progress", "Scheduler", "Select", "Sweep", "SweepError", "bundled_sweeps",
    "choose", "expand_grid", "load_sweep", "measure_split", "parse_sweep", "run_label", "run_sweep",
    "status_rows", "sweep_file", "validation_score",
]


def run_sweep(sweep: Sweep, store: str | os.PathLike = DEFAULT_STORE, *, backend: str = "local",
              workers: int = 1, threads: int | None = None, device: str = "cpu", data_root=None,
              retry_failed: bool = False, checkpoints: bool = True, ray_address: str | None = None,
              progress: bool = True) -> list[Outcome]:
    """Run what the sweep still needs; returns an Outcome per run attempted in this call (and per run
    found busy in another process or done meanwhile: status "busy" / "skipped")."""
    if backend not in BACKENDS:
        raise SweepError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    scheduler = Scheduler(sweep, Store(store), retry_failed, data_root=data_root)
    # 1 worker x all threads is the default until the split is measured on an idle machine
    # (`cl-bench sweep --measure-split examples/sweeps/measure_split.yaml`).
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    with Heartbeat(scheduler.store, scheduler.owner):  # keeps this driver's claims alive
        if backend == "local" and workers == 0:
            return run_inline(scheduler, threads, device, data_root, checkpoints, progress)
        if backend == "local":
            return run_local(scheduler, workers, threads, device, data_root, checkpoints, progress)
        return run_ray(scheduler, threads=threads, device=device, data_root=data_root,
                       checkpoints=checkpoints, address=ray_address, progress=progress)
