"""``--backend slurm`` against a real SLURM: a one-node cluster on this machine (scripts/slurm_local.sh,
which CI runs), never a mock. Where no cluster answers, every test here skips and says why.

The sweeps are tiny (synthetic tasks); ``Paused`` holds a run at the start of its second task, after its
first task is checkpointed, until the test writes ``go``, so the tests can cancel, requeue or kill jobs
at a known point."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_scenario

from cl_bench.cli.sweep import status_command
from cl_bench.registry import register_scenario
from cl_bench.store import Store
from cl_bench.sweep import load_sweep, run_sweep
from cl_bench.sweep.slurm_backend import slurm_dir, squeue_states

HERE = Path(__file__).resolve().parent


def _no_cluster() -> str | None:
    """Why the SLURM tests cannot run here, or None."""
    import importlib.util

    if importlib.util.find_spec("submitit") is None:
        return "submitit is not installed (the slurm extra: pip install -e '.[slurm]')"
    if shutil.which("sbatch") is None:
        return "no SLURM commands on PATH (run scripts/slurm_local.sh as root to start a one-node cluster)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    if "UP" not in ping.stdout:
        return f"slurmctld does not answer (scontrol ping: {(ping.stdout + ping.stderr).strip()[:200]})"
    nodes = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30).stdout.split()
    if not {"idle", "mixed", "allocated"} & set(nodes):
        return f"no SLURM node takes jobs (sinfo states: {', '.join(nodes) or 'none'})"
    return None


REASON = _no_cluster()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"SLURM: {REASON}")


@register_scenario("tiny_slurm", "3 synthetic tasks (tests only; SLURM jobs import this module)")
def _tiny(seed=0, data_root_path=None, download=False):
    return make_scenario(n_tasks=3, seed=seed)


PAUSED = '''
import os, time
from pathlib import Path
from cl_bench.strategy import Strategy


class Paused(Strategy):
    """Waits at the start of task 2 (task 1 is checkpointed by then) until the file `go` exists."""
    name = "paused"
    keeps = ()  # nothing outside the model: checkpointed, resumable

    def before_task(self, task):
        super().before_task(task)
        if getattr(task, "index", task) == 1:  # the task's position (an int in cl-bench 0.1)
            here = Path(__file__).parent
            (here / f"in_task2.{self.scenario.seed}.{os.getpid()}").touch()
            deadline = time.time() + 120
            while not (here / "go").exists() and time.time() < deadline:
                time.sleep(0.2)
'''


@pytest.fixture(autouse=True)
def cancel_leftovers(tmp_path):
    """A failing test must not leave its jobs holding the cluster's CPUs for the next ones."""
    yield
    for store in tmp_path.glob("*.db"):
        jobs = sorted({entry["job"] for entry in book(store).values()})
        if jobs:
            subprocess.run(["scancel", *jobs], check=False)
    (tmp_path / "go").touch()  # a paused job still starting goes on and ends


def write_sweep(tmp_path: Path, body: str) -> Path:
    (tmp_path / "paused.py").write_text(PAUSED)
    file = tmp_path / "sweep.yaml"
    file.write_text(textwrap.dedent(body).replace("PAUSED", str(tmp_path / "paused.py")))
    return file


def driver(file: Path, store: Path) -> subprocess.Popen:
    """``cl-bench sweep FILE --backend slurm`` in its own process (this module registers the scenario)."""
    code = "import test_slurm; from cl_bench.cli import main; main()"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
    cmd = [sys.executable, "-c", code, "sweep", str(file), "--store", str(store), "--backend", "slurm"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=file.parent)


def wait_for(what, timeout=120.0, every=0.3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = what()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what.__doc__ or what}")


def book(store: Path) -> dict:
    path = slurm_dir(store) / "jobs.json"
    return json.loads(path.read_text()) if path.exists() else {}


def finished_attempts(store: Path) -> dict[str, list[str]]:
    db = Store(store)
    ids = [r.run_id for r in db.query()]
    return {run_id: [a.status for a in attempts] for run_id, attempts in db.attempts_of(ids).items()}


# ---- the tests -----------------------------------------------------------------------------------------
def test_a_sweep_on_slurm_gives_the_local_backends_matrices(tmp_path):
    file = write_sweep(
        tmp_path,
        """
        name: slurm-same
        scenario: tiny_slurm
        strategies: {sgd: }
        seeds: [0, 1]
        protocol: {preset: quick, epochs: 2, lr: [0.05, 1.0e+30]}   # lr 1e30 diverges: stored as failed
        slurm: {time: 5, cpus: 1, max_parallel: 2}
        """,
    )
    outcomes = run_sweep(load_sweep(file), tmp_path / "slurm.db", backend="slurm", progress=False)
    assert sorted(o.status for o in outcomes) == ["failed", "failed", "finished", "finished"]
    assert all(o.worker.startswith("job ") for o in outcomes)
    array = [p.read_text() for p in slurm_dir(tmp_path / "slurm.db").glob("*.sh")]
    assert array and "#SBATCH --array=0-3%2" in array[0] and "#SBATCH --requeue" in array[0]
    logs = sorted(slurm_dir(tmp_path / "slurm.db").glob("*_0_log.out"))
    texts = [log.read_text() for log in logs]  # a log per array task, named by its job id
    assert len(texts) == 4 and all("sgd lr=" in t or "sgd tiny_slurm" in t for t in texts)
    assert sum("task 2 epoch 2/<=2" in t for t in texts) == 2  # the finished runs' epochs, with their cap
    assert book(tmp_path / "slurm.db") == {}  # every job collected

    run_sweep(load_sweep(file), tmp_path / "local.db", workers=0, threads=1, progress=False)
    on_slurm = {r.run_id: r for r in Store(tmp_path / "slurm.db").query()}
    local = {r.run_id: r for r in Store(tmp_path / "local.db").query()}
    assert sorted(on_slurm) == sorted(local)
    for run_id, rec in local.items():
        assert on_slurm[run_id].status == rec.status
        if rec.status == "finished":
            np.testing.assert_array_equal(on_slurm[run_id].accuracy, rec.accuracy)
        else:
            assert on_slurm[run_id].error.startswith("diverged")
    assert not (tmp_path / "slurm.db.checkpoints").exists() or not any((tmp_path / "slurm.db.checkpoints").iterdir())


def test_scancel_and_a_killed_driver_then_a_rerun_lose_and_duplicate_nothing(tmp_path):
    file = write_sweep(
        tmp_path,
        """
        name: slurm-cancel
        scenario: tiny_slurm
        strategies: {"PAUSED:Paused": }
        seeds: [0, 1, 2]
        protocol: {preset: quick, epochs: 1}
        slurm: {time: 5, cpus: 1, max_parallel: 2}
        """,
    )
    store = tmp_path / "runs.db"
    first = driver(file, store)
    try:

        def two_paused():
            """two array tasks inside their second task"""
            return len(list(tmp_path.glob("in_task2.*"))) >= 2 and len(book(store)) == 3

        wait_for(two_paused)
        jobs = {entry["job"] for entry in book(store).values()}
        running = sorted(j for j, state in squeue_states().items() if j in jobs and state == "RUNNING")
        assert len(running) == 2
        subprocess.run(["scancel", running[0]], check=True)  # one running array task cancelled
        first.send_signal(signal.SIGTERM)  # and the driver stopped, as SLURM stops a batch driver
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 128 + signal.SIGTERM, err
    assert "stay queued or running in slurm job" in err and "run the same command again" in err
    assert "Traceback" not in err

    def cancelled():
        """the cancelled task out of the queue (SIGTERM, then SIGKILL after KillWait)"""
        return running[0] not in squeue_states()

    wait_for(cancelled, timeout=60)
    status = CliRunner().invoke(status_command, [str(file), "--store", str(store)])
    assert status.exit_code == 0, status.output
    assert f"slurm job {running[1]}: RUNNING" in status.output  # the job ids of runs in flight
    assert f"slurm job {running[0]}: not in the queue" in status.output
    assert "total: 0 finished, 0 failed, 3 pending" in status.output
    (tmp_path / "go").touch()
    second = run_sweep(load_sweep(file), store, backend="slurm", progress=False)
    assert sorted(o.status for o in second) == ["finished"] * 3
    resubmitted = [o for o in second if o.worker != f"job {book_job(o, jobs)}"]
    assert len(resubmitted) == 1  # only the cancelled run was submitted again; the others were watched
    records = Store(store).query()
    assert len(records) == 3 and {r.status for r in records} == {"finished"}
    attempts = finished_attempts(store)
    assert sorted(s.count("finished") for s in attempts.values()) == [1, 1, 1]  # nothing ran twice to the end
    assert sum(s.count("killed") for s in attempts.values()) == 1  # the cancelled job, kept as an attempt
    assert book(store) == {}


def book_job(outcome, jobs: set[str]) -> str:
    """The job of the first driver that ran ``outcome``'s run, if it was one of them."""
    job = outcome.worker.removeprefix("job ")
    return job if job in jobs else ""


def test_a_job_killed_mid_task_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    file = write_sweep(
        tmp_path,
        """
        name: slurm-requeue
        scenario: tiny_slurm
        strategies: {"PAUSED:Paused": }
        seeds: [0]
        protocol: {preset: quick, epochs: 2}
        loggers: [jsonl]
        slurm: {time: 5, cpus: 1}
        """,
    )
    store = tmp_path / "runs.db"
    run = driver(file, store)
    try:
        wait_for(lambda: list(tmp_path.glob("in_task2.*")))
        [entry] = book(store).values()
        job = entry["job"]
        assert (tmp_path / "runs.db.checkpoints" / f"{entry['run_id']}.pt").exists()  # task 1 is checkpointed
        subprocess.run(["scontrol", "requeue", job], check=True)  # killed mid-task and requeued (preemption)

        def requeued():
            """the job back in the queue"""
            return squeue_states().get(job) in ("PENDING", "REQUEUED")

        wait_for(requeued, timeout=60)
        (tmp_path / "go").touch()
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)  # skip the requeue hold
        out, err = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    [record] = Store(store).query()
    assert record.status == "finished"
    events = [json.loads(line) for line in (tmp_path / "runs.db.logs" / f"{record.run_id}.jsonl").open()]
    starts = [i for i, e in enumerate(events) if e["event"] == "start"]
    assert len(starts) == 2  # the killed attempt and the requeued one
    again = [e for e in events[starts[1] :] if e["event"] == "epoch"]
    assert again and min(e["task"] for e in again) > min(e["task"] for e in events if e["event"] == "epoch")
    assert Path(slurm_dir(store) / f"{job}_0_log.out").read_text().count("Starting with JobEnvironment") == 2

    run_sweep(load_sweep(file), tmp_path / "local.db", workers=0, threads=1, progress=False)
    [local] = Store(tmp_path / "local.db").query()
    np.testing.assert_array_equal(record.accuracy, local.accuracy)  # resumed exactly
