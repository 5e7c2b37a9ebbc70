"""The SLURM backend of ``cl-bench sweep`` (``--backend slurm``): one job array per sweep, on submitit.

Each run still to do is one task of a job array (``--max-parallel`` caps how many run at once), submitted
by submitit (imported only here: ``pip install 'cl-bench[slurm]'``) into ``<store>.slurm/``, where every
array task's log is named by its job id (``<jobid>_<task>_0_log.out`` / ``.err``). A job runs its run
with a capturing store, as a Ray task does, and returns the record in submitit's result file; this driver
writes it to the one SQLite store, so compute nodes never lock SQLite over a network file system. The
per-task checkpoints (cl_bench.runner.checkpoint) are written by the jobs beside the store, so the store's
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
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cl_bench.loggers import log_dir, make_loggers
from cl_bench.registry import get_scenario, get_strategy, is_strategy_file
from cl_bench.runner import RunConfig, RunFailed, execute
from cl_bench.store import RunRecord
from cl_bench.sweep.plan import Sweep, SweepError
from cl_bench.sweep.progress import run_label
from cl_bench.sweep.ray_backend import _Capture

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
