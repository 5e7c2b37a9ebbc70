"""The driver of ``cl-bench sweep --backend slurm``: submits the runs as job arrays, watches them with
``squeue``, and writes each record to the store as its job ends (cl_bench.sweep.slurm_backend has what
runs in a job, the book of submitted jobs and the job states).

A run whose job leaves the queue without a result (``scancel``, out of memory, a node failure) is
recorded as a ``killed`` attempt and reported; it is not submitted again in this call (a cancellation is
the user's), but the next driver submits it again and it resumes from its checkpoint. Runs submitted by
an earlier driver (jobs.json) are watched, not submitted again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cl_bench.loggers import require_extra
from cl_bench.runner import code_version
from cl_bench.runner.checkpoint import checkpoint_path
from cl_bench.store import RunRecord, save_or_spill
from cl_bench.sweep.plan import PlanItem, SweepError
from cl_bench.sweep.progress import Outcome, Progress, Scheduler, run_label
from cl_bench.sweep.slurm_backend import (
    JobBook,
    SlurmRun,
    _signals_deferred,
    job_imports,
    log_files,
    result_file,
    slurm_dir,
    squeue_states,
)
from cl_bench.sweep.slurm_options import SlurmOptions

MAX_TIMEOUTS = 10  # time-outs a run may requeue after (submitit's countdown); preemptions are not counted
SQUEUE_TRIES = 10  # polls in a row without an answer from squeue before the driver gives up


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
    """Submit the scheduler's runs as SLURM job arrays and store each record as its job ends. Returns when
    every run of this sweep has ended, or raises KeyboardInterrupt (the jobs go on: run again to collect
    them)."""
    submitit = require_extra("slurm", what="--backend slurm", package="submitit")
    missing = [c for c in ("sbatch", "squeue") if shutil.which(c) is None]
    if missing:
        raise SweepError(
            f"--backend slurm needs the SLURM commands {' and '.join(missing)} on PATH (run the sweep on a "
            f"cluster's login node; scripts/slurm_local.sh starts a one-node cluster here)"
        )
    driver = _Driver(scheduler, options, submitit, threads, device, data_root, checkpoints, progress, loggers, poll_s)
    return driver.run()


class _Driver:
    def __init__(
        self, scheduler, options, submitit, threads, device, data_root, checkpoints, progress, loggers, poll_s
    ):
        if device is None:
            device = "cuda" if options.gpus else "cpu"
        if str(device).startswith("cuda") and not options.gpus:
            options = replace(options, gpus=1)
        self.scheduler, self.store, self.submitit, self.poll_s = scheduler, scheduler.store, submitit, poll_s
        self.store_path = str(self.store.path.resolve())
        self.folder = slurm_dir(self.store_path)
        root = None if data_root is None else str(Path(data_root).resolve())
        # every job's arguments but its configuration and run id
        self.args = (device, root, threads or options.cpus, checkpoints, tuple(loggers))
        self.job = SlurmRun(job_imports(scheduler.sweep), [os.path.abspath(p or ".") for p in sys.path])
        self.executor = submitit.SlurmExecutor(folder=self.folder, max_num_timeout=MAX_TIMEOUTS)
        self.executor.update_parameters(**_parameters(options, scheduler.sweep.name))
        self.book = JobBook(self.folder)
        self.ui = Progress(progress, 0, 0)
        self.outcomes: list[Outcome] = []
        self.watching: dict[str, _Watch] = {}
        self.failures = 0  # squeue calls failed in a row

    # ---- the loop ----
    def run(self) -> list[Outcome]:
        try:
            todo = self.adopt(self.scheduler.next_runs())
            while True:
                if todo:
                    self.submit(todo)
                    todo = []
                if not self.watching:
                    todo = self.scheduler.next_runs()
                    if not todo:
                        break
                    continue
                time.sleep(self.poll_s)
                if self.poll():
                    todo = self.scheduler.next_runs()  # selections decided by these runs release their seeds
        except KeyboardInterrupt:
            self.interrupted()
            raise
        finally:
            self.ui.close()
        return self.outcomes

    def adopt(self, todo: list[PlanItem]) -> list[PlanItem]:
        """Watch the runs an earlier driver submitted (jobs.json); the rest of ``todo`` is to submit, with
        the runs whose job ended without a result first (they resume from their checkpoints)."""
        earlier = self.book.read()
        adopted = [i for i in todo if i.run_id in earlier]
        for item in adopted:
            todo.remove(item)
            refused = self.scheduler.claim(item)
            if refused is not None:
                self.outcomes.append(refused)
                continue
            self.watching[item.run_id] = _Watch(item, earlier[item.run_id]["job"], self.scheduler.run_id_for(item))
        if not self.watching:
            return todo
        ids = ", ".join(sorted({w.job.split("_")[0] for w in self.watching.values()}))
        self.ui.write(f"watching {len(self.watching)} run(s) submitted by an earlier driver (slurm job {ids})")
        self.poll()
        if any(w.missing for w in self.watching.values()):  # a result file may lag on a network file system
            time.sleep(self.poll_s)
            self.poll()
        again = [w for w in self.watching.values() if w.missing]
        for w in again:
            self.record_killed(w)
            del self.watching[w.item.run_id]
            self.scheduler.release(w.item)
        if again:
            self.book.update(remove=[w.item.run_id for w in again])
            self.ui.write(f"{len(again)} run(s) whose job ended without a result are submitted again (they resume)")
        return [w.item for w in again] + todo

    def submit(self, items: list[PlanItem]) -> None:
        ready = []
        for item in items:
            refused = self.scheduler.claim(item)
            if refused is None:
                ready.append(item)
            else:
                self.outcomes.append(refused)
                self.ui.done(refused, self.scheduler.expected_total())
        if not ready:
            return
        run_ids = [self.scheduler.run_id_for(i) for i in ready]
        with _signals_deferred():  # the book must name every array task sbatch accepted
            try:
                with self.executor.batch():
                    jobs = [
                        self.executor.submit(self.job, i.config, self.store_path, run_id, *self.args)
                        for i, run_id in zip(ready, run_ids)
                    ]
            except Exception as e:  # noqa: BLE001 sbatch refused (a bad partition, account, limit): one line
                for item in ready:
                    self.scheduler.release(item)
                lines = [line for line in str(e).splitlines() if line.strip()]
                raise SweepError(f"sbatch refused the job array: {lines[-1] if lines else e}") from None
            entries = {
                i.run_id: {"job": j.job_id, "run_id": r, "label": run_label(i.config)}
                for i, j, r in zip(ready, jobs, run_ids)
            }
            self.book.update(add=entries)
        for i, j, r in zip(ready, jobs, run_ids):
            self.watching[i.run_id] = _Watch(i, j.job_id, r)
        self.ui.set_total(self.scheduler.expected_total())
        array = jobs[0].job_id.split("_")[0]
        self.ui.write(f"submitted {len(jobs)} run(s) as slurm job {array}; logs in {self.folder}")

    def poll(self) -> bool:
        """Check every watched job once; True when one ended."""
        states = self.states()
        ended = False
        for w in list(self.watching.values()):
            if result_file(self.folder, w.job).exists():
                self.collect(w)
                ended = True
            elif states is None:  # no answer from squeue: no job is taken for lost on this poll
                continue
            elif w.job in states:
                w.missing, w.state = 0, states[w.job]
            else:
                w.missing += 1
                if w.missing >= 3 and w.item.run_id in self.watching:  # a result file may lag on NFS
                    self.lost(w)
                    ended = True
        running = sum(w.state == "RUNNING" for w in self.watching.values())
        self.ui.set_total(self.scheduler.expected_total())
        self.ui.status(f"{running} running, {len(self.watching) - running} queued")
        return ended

    def states(self) -> dict[str, str] | None:
        """squeue's states, or None when it did not answer (raises after SQUEUE_TRIES in a row)."""
        if all(result_file(self.folder, w.job).exists() for w in self.watching.values()):
            return {}
        try:
            states = squeue_states()
        except SweepError:
            self.failures += 1
            if self.failures >= SQUEUE_TRIES:
                raise
            return None
        self.failures = 0
        return states

    # ---- a run's end ----
    def end(self, w: _Watch, outcome: Outcome) -> None:
        self.book.update(remove=[w.item.run_id])
        self.watching.pop(w.item.run_id, None)
        self.scheduler.release(w.item)
        self.outcomes.append(outcome)
        self.ui.done(outcome, self.scheduler.expected_total())

    def collect(self, w: _Watch) -> None:
        """Store the record of ``w``'s job, from its result file."""
        label = run_label(w.item.config)
        try:
            kind, value = self.submitit.core.utils.pickle_load(result_file(self.folder, w.job))
        except Exception as e:  # noqa: BLE001 a result file cut short: the run is to run again
            return self.end(w, Outcome(w.run_id, label, "error", f"job {w.job}: unreadable result ({e}); run again"))
        if kind != "success":  # raised before the run existed (missing data, ...) or gave up requeueing
            last = [line for line in str(value).strip().splitlines() if line.strip()][-1:]
            msg = f"job {w.job}: {last[0] if last else 'failed'} (log: {log_files(self.folder, w.job)})"
            return self.end(w, Outcome(w.run_id, label, "error", msg, time.perf_counter() - w.since))
        record: RunRecord = value
        saved = save_or_spill(self.store, record)  # one transaction per run, here on the driver (else a file)
        checkpoint_path(self.store.path, record.run_id).unlink(missing_ok=True)
        message = "" if record.status == "finished" else (record.error or "").splitlines()[0]
        if getattr(saved, "kept", None):
            message += " (an earlier finished result of this run is kept)"
        outcome = Outcome(record.run_id, label, record.status, message, record.wall_s or 0.0, worker=f"job {w.job}")
        self.end(w, outcome)

    def lost(self, w: _Watch) -> None:
        """The job left the queue without a result: scancel, out of memory, a node failure."""
        self.record_killed(w)
        msg = (
            f"slurm job {w.job} ended without a result (cancelled, out of memory or a node failure; log: "
            f"{log_files(self.folder, w.job)}); run the same command again to resume it from its checkpoint"
        )
        self.end(w, Outcome(w.run_id, run_label(w.item.config), "error", msg, worker=f"job {w.job}"))

    def record_killed(self, w: _Watch) -> None:
        """Kept as an attempt, so `cl-bench status --errors` shows it."""
        with contextlib.suppress(Exception):
            self.store.record_attempt(
                w.run_id, "killed", f"slurm job {w.job} ended without a result", finished=time.time(),
                code_version=code_version(),
            )  # fmt: skip

    def interrupted(self) -> None:
        """Ctrl-C or SIGTERM: the jobs go on; say which, and release this driver's claims."""
        jobs = sorted({w.job.split("_")[0] for w in self.watching.values()})
        if jobs:
            self.ui.write(
                f"interrupted: {len(self.watching)} run(s) stay queued or running in slurm job(s) "
                f"{', '.join(jobs)}; run the same command again to collect them, or `scancel {' '.join(jobs)}` "
                f"to stop them",
                always=True,
            )
        for w in self.watching.values():
            with contextlib.suppress(Exception):
                self.scheduler.release(w.item)


def _parameters(options: SlurmOptions, name: str) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters for ``options``; every task may be requeued."""
    params: dict[str, Any] = {
        "job_name": f"cl-bench-{name}",
        "time": options.time,
        "cpus_per_task": options.cpus,
        "additional_parameters": {"requeue": True, **dict(options.sbatch)},
    }
    optional = {
        "partition": options.partition,
        "gpus_per_node": options.gpus or None,
        "mem": options.mem,
        "array_parallelism": options.max_parallel,
        "setup": list(options.setup) or None,
    }
    return params | {k: v for k, v in optional.items() if v is not None}
