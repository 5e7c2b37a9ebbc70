"""The SLURM backend of ``cl-bench sweep`` (``--backend slurm``): one job array per sweep, on submitit.

Each run still to do is one task of a job array (``--max-parallel`` caps how many run at once), submitted
by submitit (imported only here: ``pip install 'cl-bench[slurm]'``) into ``<store>.slurm/``, where every
array task's log is named by its job id (``<jobid>_<task>_0_log.out`` / ``.err``). A job runs its run
with a capturing store, as a Ray task does, and returns the record in submitit's result file; this driver
writes it to the one SQLite store, so compute nodes never lock SQLite over a network file system. The
per-task checkpoints (cl_bench.checkpoint) are written by the jobs beside the store, so the store's
folder, the data root and the Python environment must be on a file system every node sees.

Requeue: jobs are submitted with ``--requeue`` (SLURM requeues a preempted job) and submitit's
time-out signal (USR2, 90 s before the limit) checkpoints the job and requeues it; either way the
restarted job runs the same run again, which resumes after its last checkpointed task.

The driver may die: ``<store>.slurm/jobs.json`` maps each submitted run to its job id, so the next
driver on the same store watches jobs still queued or running instead of submitting them again,
stores results that arrived meanwhile, and submits again (resuming from the checkpoint) a run whose
job ended without a result (``scancel``, a node failure). Job states come from ``squeue`` (no
accounting database needed).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from cl_bench.checkpoint import checkpoint_path
from cl_bench.loggers import log_dir, make_loggers, require_extra
from cl_bench.registry import get_scenario, get_strategy, is_strategy_file
from cl_bench.runner import RunConfig, RunFailed, code_version, execute
from cl_bench.store import RunRecord
from cl_bench.sweep.plan import PlanItem, Sweep, SweepError
from cl_bench.sweep.progress import Outcome, Progress, Scheduler, run_label
from cl_bench.sweep.ray_backend import _Capture
from cl_bench.sweep.slurm_options import SlurmOptions

LIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING"}
LIVE_STATES |= {"SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}
MAX_TIMEOUTS = 10  # time-outs a run may requeue after (submitit's countdown); preemptions are not counted


def slurm_dir(store_path: str | os.PathLike) -> Path:
    """``<store>.slurm``: the jobs' logs, submitit's files and jobs.json, beside the store."""
    path = Path(store_path)
    return path.with_name(path.name + ".slurm")


# ---- in a job --------------------------------------------------------------------------------------------
class SlurmRun:
    """What each array task runs: one configuration, its record returned (finished or failed). It
    prints the run's epochs and tasks to the task's log. ``checkpoint`` is submitit's requeue hook."""

    def __init__(self, modules: Sequence[str], paths: Sequence[str]):
        self.modules, self.paths = tuple(modules), tuple(paths)

    def __call__(self, config: RunConfig, store_path: str, run_id: str, device: str, data_root, threads: int,
                 checkpoints: bool, loggers: tuple[str, ...] = ()) -> RunRecord:  # fmt: skip
        sys.path[:0] = [p for p in self.paths if p not in sys.path]
        for module in self.modules:  # the driver's registered scenarios and strategies
            importlib.import_module(module)
        torch.set_num_threads(threads)
        capture = _Capture(store_path)
        print(f"{run_label(config)} ({run_id}) on {device}, {threads} thread(s)", flush=True)
        with make_loggers(("console", *loggers), log_dir(store_path), stream=sys.stdout, progress=False) as logger:
            try:
                return execute(config, capture, data_root=data_root, device=device, checkpoints=checkpoints,
                               claimed=True, run_id=run_id, logger=logger)  # fmt: skip
            except RunFailed as e:
                return e.record

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Time-out or preemption: run again as it is; the run resumes from its last checkpointed task."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def job_imports(sweep: Sweep, main_ok: bool = False) -> list[str]:
    """Modules the jobs must import so that the sweep's scenarios and registered strategies exist there
    (those registered outside cl-bench, e.g. by the script or test that runs the sweep). One defined in
    ``__main__`` is an error unless ``main_ok`` (spawned local workers import the main script themselves)."""
    modules = set()
    for cell in sweep.cells:
        found = [get_scenario(cell.scenario).build]
        if not is_strategy_file(cell.strategy):
            found.append(get_strategy(cell.strategy))
        for obj in found:
            module = getattr(obj, "__module__", "") or ""
            if module == "__main__" and main_ok:
                continue
            if module == "__main__":
                raise SweepError(
                    f"{cell.scenario if obj is found[0] else cell.strategy} is defined in the script being run "
                    f"(__main__): SLURM jobs cannot import it; move it into a module that script imports"
                )
            if module.split(".")[0] != "cl_bench":
                modules.add(module)
    return sorted(modules)


# ---- the driver's book of submitted jobs ---------------------------------------------------------------
class JobBook:
    """``jobs.json``: config run_id -> {"job": "<id>_<task>", "run_id": where it is stored, "label"}, read
    and written under a file lock (two drivers on one store)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / "jobs.json"

    @contextlib.contextmanager
    def _locked(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "jobs.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def read(self) -> dict[str, dict[str, str]]:
        """Without taking the lock or creating anything (``cl-bench status``)."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def update(self, add: Mapping[str, Mapping[str, str]] = (), remove: Sequence[str] = ()) -> None:
        with self._locked():
            book = self.read()
            book.update(add)
            for key in remove:
                book.pop(key, None)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(book, indent=1, sort_keys=True))
            os.replace(tmp, self.path)  # atomic: a killed driver leaves the old book or the new one


def squeue_states() -> dict[str, str]:
    """Job id (``123_4`` for an array task, ``123`` alone) -> state, for this user's jobs. Raises
    SweepError when squeue fails: a job is never taken for lost because the controller did not answer."""
    try:
        out = subprocess.run(
            ["squeue", "--me", "--array", "--noheader", "--format=%i|%T"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        raise SweepError(f"squeue failed ({e}); is SLURM reachable from here?") from None
    if out.returncode != 0:
        raise SweepError(f"squeue failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")
    return dict(line.strip().split("|", 1) for line in out.stdout.splitlines() if "|" in line)


def result_file(folder: Path, job_id: str) -> Path:
    return folder / f"{job_id}_0_result.pkl"


def log_files(folder: Path, job_id: str) -> str:
    return str(folder / f"{job_id}_0_log.out")


# ---- the driver ---------------------------------------------------------------------------------------
@dataclass
class _Watch:
    item: PlanItem
    job: str
    run_id: str
    missing: int = 0  # polls that found the job neither in squeue nor with a result
    state: str = "PENDING"
    since: float = field(default_factory=time.perf_counter)


def run_slurm(
    scheduler: Scheduler,
    options: SlurmOptions,
    *,
    threads: int | None = None,
    device: str | None = None,
    data_root=None,
    checkpoints: bool = True,
    progress: bool = True,
    loggers: Sequence[str] = (),
    poll_s: float = 2.0,
) -> list[Outcome]:
    """Submit the scheduler's runs as SLURM job arrays and store each record as its job ends. Jobs left
    by an earlier driver on this store (jobs.json) are watched, not submitted again. Returns when every
    run of this sweep has ended, or raises KeyboardInterrupt (the jobs go on: run again to collect)."""
    submitit = require_extra("slurm", what="--backend slurm", package="submitit")
    missing = [c for c in ("sbatch", "squeue") if shutil.which(c) is None]
    if missing:
        raise SweepError(
            f"--backend slurm needs the SLURM commands {' and '.join(missing)} on PATH (run the sweep on a "
            f"cluster's login node; scripts/slurm_local.sh starts a one-node cluster here)"
        )
    if device is None:
        device = "cuda" if options.gpus else "cpu"
    if str(device).startswith("cuda") and not options.gpus:
        options = replace(options, gpus=1)
    threads = threads or options.cpus
    store = scheduler.store
    store_path = str(store.path.resolve())
    folder = slurm_dir(store_path)
    data_root = None if data_root is None else str(Path(data_root).resolve())
    job = SlurmRun(job_imports(scheduler.sweep), [os.path.abspath(p or ".") for p in sys.path])
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_TIMEOUTS)
    params: dict[str, Any] = {
        "job_name": f"cl-bench-{scheduler.sweep.name}",
        "time": options.time,
        "cpus_per_task": options.cpus,
        "additional_parameters": {"requeue": True, **dict(options.sbatch)},
    }
    params.update({"partition": options.partition} if options.partition else {})
    params.update({"gpus_per_node": options.gpus} if options.gpus else {})
    params.update({"mem": options.mem} if options.mem else {})
    params.update({"array_parallelism": options.max_parallel} if options.max_parallel else {})
    params.update({"setup": list(options.setup)} if options.setup else {})
    executor.update_parameters(**params)
    book = JobBook(folder)
    ui = Progress(progress, 0, 0)
    outcomes: list[Outcome] = []
    watching: dict[str, _Watch] = {}

    def end(w: _Watch, outcome: Outcome, remove: bool = True) -> None:
        if remove:
            book.update(remove=[w.item.run_id])
        watching.pop(w.item.run_id, None)
        scheduler.release(w.item)
        outcomes.append(outcome)
        ui.done(outcome, scheduler.expected_total())

    def collect(w: _Watch) -> None:
        """Store the record of ``w``'s job, from its result file."""
        label = run_label(w.item.config)
        try:
            kind, value = submitit.core.utils.pickle_load(result_file(folder, w.job))
        except Exception as e:  # noqa: BLE001 a result file cut short: the job is to run again
            return end(w, Outcome(w.run_id, label, "error", f"job {w.job}: unreadable result ({e}); run again"))
        if kind != "success":  # raised before the run existed (missing data, ...) or gave up requeueing
            last = [line for line in str(value).strip().splitlines() if line.strip()][-1:]
            msg = f"job {w.job}: {last[0] if last else 'failed'} (log: {log_files(folder, w.job)})"
            return end(w, Outcome(w.run_id, label, "error", msg, time.perf_counter() - w.since))
        record: RunRecord = value
        saved = store.save(record)  # one transaction per run, here on the driver
        checkpoint_path(store.path, record.run_id).unlink(missing_ok=True)
        message = "" if record.status == "finished" else (record.error or "").splitlines()[0]
        if getattr(saved, "kept", None):
            message += " (an earlier finished result of this run is kept)"
        end(w, Outcome(record.run_id, label, record.status, message, record.wall_s or 0.0, worker=f"job {w.job}"))

    def lost(w: _Watch) -> None:
        """The job left the queue without a result: scancel, node failure, out of memory."""
        with contextlib.suppress(Exception):
            store.record_attempt(w.run_id, "killed", f"slurm job {w.job} ended without a result",
                                 finished=time.time(), code_version=code_version())  # fmt: skip
        msg = (
            f"slurm job {w.job} ended without a result (cancelled, out of memory or a node failure; log: "
            f"{log_files(folder, w.job)}); run the same command again to resume it from its checkpoint"
        )
        end(w, Outcome(w.run_id, run_label(w.item.config), "error", msg, worker=f"job {w.job}"))

    def poll() -> bool:
        """Check every watched job once; True when one ended."""
        states = squeue_states() if any(not result_file(folder, w.job).exists() for w in watching.values()) else {}
        ended = False
        for w in list(watching.values()):
            if result_file(folder, w.job).exists():
                collect(w)
                ended = True
            elif w.job in states:
                w.missing, w.state = 0, states[w.job]
            else:
                w.missing += 1
                if w.missing >= 3:  # a result file may lag on a network file system
                    lost(w)
                    ended = True
        running = [w.job for w in watching.values() if w.state == "RUNNING"]
        ui.set_total(scheduler.expected_total())
        ui.status(f"{len(running)} running, {len(watching) - len(running)} queued")
        return ended

    def submit(items: list[PlanItem]) -> None:
        ready = []
        for item in items:
            refused = scheduler.claim(item)
            if refused is not None:
                outcomes.append(refused)
                ui.done(refused, scheduler.expected_total())
            else:
                ready.append(item)
        if not ready:
            return
        with _signals_deferred():  # the book must name every array task sbatch accepted
            with executor.batch():
                jobs = [
                    executor.submit(
                        job,
                        i.config,
                        store_path,
                        scheduler.run_id_for(i),
                        device,
                        data_root,
                        threads,
                        checkpoints,
                        tuple(loggers),
                    )  # fmt: skip
                    for i in ready
                ]
            book.update(
                add={
                    i.run_id: {"job": j.job_id, "run_id": scheduler.run_id_for(i), "label": run_label(i.config)}
                    for i, j in zip(ready, jobs)
                }
            )
        for i, j in zip(ready, jobs):
            watching[i.run_id] = _Watch(i, j.job_id, scheduler.run_id_for(i))
        ui.write(f"submitted {len(jobs)} run(s) as slurm job {jobs[0].job_id.split('_')[0]}; logs in {folder}")

    try:
        todo = scheduler.next_runs()
        earlier = book.read()
        adopted = [i for i in todo if i.run_id in earlier]
        for item in adopted:  # submitted by an earlier driver: watch them, do not submit again
            todo.remove(item)
            refused = scheduler.claim(item)
            if refused is not None:
                outcomes.append(refused)
                continue
            watching[item.run_id] = _Watch(item, earlier[item.run_id]["job"], scheduler.run_id_for(item))
        if adopted:
            ids = ", ".join(sorted({w.job.split("_")[0] for w in watching.values()}))
            ui.write(f"watching {len(watching)} run(s) submitted by an earlier driver (slurm job {ids})")
            poll()
            again = [w.item for w in watching.values() if w.missing]  # gone without a result: submit again
            for w in [watching[i.run_id] for i in again]:
                with contextlib.suppress(Exception):
                    store.record_attempt(w.run_id, "killed", f"slurm job {w.job} ended without a result",
                                         finished=time.time(), code_version=code_version())  # fmt: skip
                watching.pop(w.item.run_id)
            if again:
                book.update(remove=[i.run_id for i in again])
                ui.write(f"{len(again)} run(s) whose job ended without a result are submitted again (they resume)")
                todo = again + todo
                for item in again:
                    scheduler.release(item)
        while True:
            if todo:
                submit(todo)
                todo = []
            if not watching:
                todo = scheduler.next_runs()
                if not todo:
                    break
                continue
            time.sleep(poll_s)
            if poll():
                todo = scheduler.next_runs()  # selections decided by these runs release their seeds
    except KeyboardInterrupt:
        jobs = sorted({w.job.split("_")[0] for w in watching.values()})
        if jobs:
            ui.write(
                f"interrupted: {len(watching)} run(s) stay queued or running in slurm job(s) {', '.join(jobs)}; "
                f"run the same command again to collect them, or `scancel {' '.join(jobs)}` to stop them",
                always=True,
            )
        for w in watching.values():
            with contextlib.suppress(Exception):
                scheduler.release(w.item)
        raise
    finally:
        ui.close()
    return outcomes


@contextlib.contextmanager
def _signals_deferred():
    """SIGINT and SIGTERM wait until the block is done (between sbatch and writing the book)."""
    caught: list[int] = []
    try:
        old = {s: signal.signal(s, lambda n, f: caught.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if caught:
            os.kill(os.getpid(), caught[0])
