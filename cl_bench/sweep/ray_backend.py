"""The Ray backend of ``cl-bench sweep`` (``--backend ray``): the same sweep on a Ray cluster.

Ray is imported only when this backend runs, so the core never needs it (the ``ray`` extra; a missing
Ray is a one-line error with the install command).
Each run is a Ray task reserving ``threads`` CPUs, and on a CUDA device ``1 / workers_per_device`` of
a GPU (Ray places the task on a GPU and makes it the only one the task sees). It returns its RunRecord
and the driver writes it to the one store, so workers need no access to the store's filesystem, only
the package and the data (``--data-root`` must exist at the same path on every node, or set
CL_BENCH_DATA in the cluster's runtime environment). A task whose worker process dies is retried once
by Ray (``max_retries=1``); a run that raises or diverges comes back as a failed record and is stored
as such. The driver claims each run before submitting it (cl_bench.store.claims), at most as many as the
cluster's CPUs (and GPUs) can run at once.

Workers checkpoint after each task beside the store path when that path is writable on their node
(always on a single machine), so a retried or re-submitted run resumes there; elsewhere it restarts.
The sweep's file and dashboard loggers (cl_bench.loggers) are made inside each task and write beside
the store path too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from cl_bench.loggers import log_dir, make_loggers, require_extra
from cl_bench.runner import RunConfig, RunFailed, execute
from cl_bench.runner.checkpoint import checkpoint_path
from cl_bench.store import RunRecord, save_or_spill
from cl_bench.sweep.progress import Outcome, Progress, Scheduler, run_label


def ray_gpus(device: str, workers_per_device: int = 1) -> float:
    """The GPU share each Ray task asks for: ``1 / workers_per_device`` on CUDA, none on CPU."""
    return 1 / workers_per_device if str(device).startswith("cuda") else 0


class _Capture:
    """A stand-in store for ``execute`` inside a Ray task: it remembers the record instead of writing
    it, and lends its path to the checkpoints."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.record: RunRecord | None = None

    def save(self, record: RunRecord) -> None:
        self.record = record


def _ray_run(
    config: RunConfig,
    store_path: str,
    device: str,
    data_root,
    threads: int,
    checkpoints: bool,
    run_id: str,
    loggers: tuple[str, ...] = (),
) -> RunRecord:
    """The Ray task: run one configuration, return its record (finished or failed). The driver holds
    its claim and chose ``run_id`` (cl_bench.runner.identity)."""
    torch.set_num_threads(threads)
    capture = _Capture(store_path)
    with make_loggers(loggers, log_dir(store_path)) as logger:
        try:
            return execute(
                config,
                capture,
                data_root=data_root,
                device=device,
                checkpoints=checkpoints,
                claimed=True,
                run_id=run_id,
                logger=logger,
            )
        except RunFailed as e:
            return e.record


def run_ray(
    scheduler: Scheduler,
    *,
    threads: int,
    device: str = "cpu",
    data_root=None,
    checkpoints: bool = True,
    address: str | None = None,
    progress: bool = True,
    init_kwargs: dict[str, Any] | None = None,
    workers_per_device: int = 1,
    loggers: tuple[str, ...] = (),
) -> list[Outcome]:
    """Run the scheduler's runs as Ray tasks; records are written to the store by this driver.
    On a CUDA ``device`` each task asks for ``1 / workers_per_device`` GPU, so that many runs share a GPU.

    Uses the Ray session already initialised in this process if any, else ``ray.init(address)``
    (``None``: a local Ray on this machine), shut down again at the end."""
    if workers_per_device < 1:
        raise ValueError(f"workers_per_device must be >= 1, got {workers_per_device}")
    ray = require_extra("ray", what="--backend ray")  # the optional extra: only here; one line if missing

    own_session = not ray.is_initialized()
    if own_session:
        ray.init(address=address, include_dashboard=False, **(init_kwargs or {}))
    gpus = ray_gpus(device, workers_per_device)
    task = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=1)(_ray_run)
    store = scheduler.store
    store_path = str(store.path.resolve())
    data_root = None if data_root is None else str(Path(data_root).resolve())
    loggers = tuple(loggers)
    ui = Progress(progress, 0, 0)
    outcomes: list[Outcome] = []
    in_flight: dict[Any, Any] = {}  # ObjectRef -> PlanItem
    started: dict[Any, float] = {}
    try:
        resources = ray.cluster_resources()
        slots = max(1, int(resources.get("CPU", 1) // threads))  # claim only what can run now
        if gpus:
            slots = min(slots, max(1, int(resources.get("GPU", 0) * workers_per_device)))
        todo = scheduler.next_runs()
        while True:
            while todo and len(in_flight) < slots:
                item = todo.pop(0)
                refused = scheduler.claim(item)
                if refused is not None:
                    outcomes.append(refused)
                    ui.done(refused, scheduler.expected_total())
                    continue
                run_id = scheduler.run_id_for(item)
                ref = task.remote(item.config, store_path, device, data_root, threads, checkpoints, run_id, loggers)
                in_flight[ref], started[ref] = item, time.perf_counter()
            if not in_flight:
                todo = scheduler.next_runs()
                if not todo:
                    break
                continue
            ui.set_total(scheduler.expected_total())
            ui.status(f"{len(in_flight)} running")
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
            for ref in ready:
                item = in_flight.pop(ref)
                outcome = _store_result(ray, ref, item, store, time.perf_counter() - started.pop(ref))
                scheduler.release(item)
                outcomes.append(outcome)
                ui.done(outcome, scheduler.expected_total())
            if ready:
                todo += scheduler.next_runs()
    except KeyboardInterrupt:
        for ref, item in in_flight.items():
            ray.cancel(ref, force=True)
            scheduler.release(item)
        raise
    finally:
        ui.close()
        if own_session:
            ray.shutdown()
    return outcomes


def _store_result(ray, ref, item, store, wall: float) -> Outcome:
    """Write a finished Ray task's record to the store (one transaction, on the driver); its Outcome."""
    label = run_label(item.config)
    try:
        record: RunRecord = ray.get(ref)
    except Exception as e:  # noqa: BLE001 the worker died twice, or Ray lost the task
        return Outcome(item.run_id, label, "error", f"{type(e).__name__}: {e}".splitlines()[0])
    saved = save_or_spill(store, record)  # a save that fails writes the run to a file, never loses it
    checkpoint_path(store.path, record.run_id).unlink(missing_ok=True)
    message = "" if record.status == "finished" else (record.error or "").splitlines()[0]
    if saved.kept:
        message += " (an earlier finished result of this run is kept)"
    return Outcome(record.run_id, label, record.status, message, wall)
