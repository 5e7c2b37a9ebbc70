"""``cl-bench sweep`` and ``cl-bench status``: run a sweep file resumably, and show what is done.

``sweep`` exits with status 1 when a run failed, diverged or could not start in this call, or when the
store holds failed runs of the sweep (so scripts and CI notice), after a summary line. ``status`` and
``sweep --dry-run`` only read the store (``Store.open_read``: nothing is created or migrated). Workers
go on one device (``--device``, ``--workers`` x ``--threads``) or on several (``--devices``,
``--workers-per-device``): cl_bench.sweep.placement. ``--backend slurm`` submits job arrays (flags
override the sweep file's ``slurm`` key; cl_bench.sweep.slurm_backend), and ``status`` shows their job
ids. SIGTERM stops a sweep as Ctrl-C does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cl_bench.cli.common import user_errors
from cl_bench.runner.identity import CurrentView
from cl_bench.store import DEFAULT_STORE, FAILED, Store, StoreError
from cl_bench.store.claims import live_claims
from cl_bench.sweep import (
    SWEEP_LOGGERS,
    Outcome,
    Sweep,
    Terminated,
    WorkerStartError,
    load_sweep,
    measure_split,
    parse_devices,
    run_label,
    run_sweep,
)
from cl_bench.sweep import sweep_file as find_sweep_file
from cl_bench.sweep.plan import Plan, PlanItem, SweepError
from cl_bench.sweep.slurm_backend import JobBook, result_file, slurm_dir, squeue_states
from cl_bench.sweep.status import sweep_status


def sweep_file(file: str) -> Path:
    """cl_bench.sweep.sweep_file, a missing file or preset as a one-line error."""
    with user_errors():
        return find_sweep_file(file)


def _load_or_fail(file: str, run_code: bool = True) -> Sweep:
    """The sweep of FILE; ``run_code=False`` (status, --dry-run): user strategy files are read, not run."""
    path = sweep_file(file)
    with user_errors():  # SweepError, HparamError: a bad sweep file
        return load_sweep(path, run_code=run_code, max_runs=click.get_current_context().meta.get("max_runs"))


@click.command("sweep")
@click.argument("file")
@click.option(
    "--max-runs",
    type=click.IntRange(min=1),
    expose_value=False,  # read by _load_or_fail through the context
    callback=lambda ctx, _param, n: ctx.meta.update(max_runs=n),
    help="Refuse a sweep that plans more runs than this [default: 100,000].",
)
@click.option("--store", default=DEFAULT_STORE, show_default=True, help="SQLite results file.")
@click.option("--backend", type=click.Choice(["local", "ray", "slurm"]), default="local", show_default=True)
@click.option(
    "--workers",
    type=int,
    help="Local worker processes (0: run in this process) [default: one per "
    "core]; measured fastest with one single-threaded worker per core (see --measure-split).",
)
@click.option("--threads", type=int, help="torch threads per worker [default: cores / workers].")
@click.option("--ray-address", help="Ray cluster address (default: start a local Ray).")
@click.option("--device", help="Where every run trains: cpu, cuda, cuda:N [default: cpu].")
@click.option(
    "--devices",
    metavar="DEV,DEV,...",
    help="Spread the workers over these devices, e.g. cuda:0,cuda:1 (instead of --device); each "
    "worker stays on its device.",
)
@click.option(
    "--workers-per-device",
    type=int,
    help="Workers on each device of --devices (or on --device) [default: 1 with --devices]; small "
    "nets use a fraction of a GPU, so several runs per GPU finish more runs per hour. With "
    "--backend ray: runs sharing each GPU (each asks for 1/N of one).",
)
@click.option(
    "--logger",
    "loggers",
    multiple=True,
    type=click.Choice(SWEEP_LOGGERS),
    help="Log every run to files or a dashboard, beside the store in <store>.logs/ (repeatable; "
    "added to the sweep file's `loggers`).",
)
@click.option("--data-root", envvar="CL_BENCH_DATA", help="Dataset folder [env CL_BENCH_DATA].")
@click.option("--retry-failed", is_flag=True, help="Also re-run runs stored as failed.")
@click.option("--no-checkpoints", is_flag=True, help="Do not checkpoint runs after each task.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="List the runs still to do (loading the data sets to compare "
    "their checksums with the stored runs'), run nothing, write nothing.",
)
@click.option(
    "--measure-split",
    "measure",
    is_flag=True,
    help="Time FILE's runs with every workers x threads split of the cores (fresh temporary "
    "stores, nothing kept) and print the fastest.",
)
@click.option("--quiet", is_flag=True, help="No progress display; failures are still reported.")
@click.option("--partition", help="slurm: the partition every array task runs in [default: the cluster's].")
@click.option("--time", "time_limit", help="slurm: time limit per task, minutes or D-HH:MM:SS [default: 60]; "
              "a run that needs more is requeued and resumes from its last task.")  # fmt: skip
@click.option("--cpus", help="slurm: CPUs per task, also its torch threads [default: 1].")
@click.option("--gpus", help="slurm: GPUs per task [default: 0; 1 with --device cuda].")
@click.option("--mem", help="slurm: memory per task, e.g. 16G [default: the partition's].")
@click.option("--max-parallel", help="slurm: array tasks running at once [default: no cap].")
@click.option("--sbatch", "sbatch", multiple=True, metavar="KEY=VALUE",
              help="slurm: another sbatch directive, e.g. --sbatch qos=high (repeatable).")  # fmt: skip
def sweep_command(
    file,
    store,
    backend,
    workers,
    threads,
    ray_address,
    device,
    devices,
    workers_per_device,
    loggers,
    data_root,
    retry_failed,
    no_checkpoints,
    dry_run,
    measure,
    quiet,
    partition,
    time_limit,
    cpus,
    gpus,
    mem,
    max_parallel,
    sbatch,
):
    """Run every configuration of a sweep FILE not yet in the store (see examples/sweeps/). FILE may
    also name a bundled preset: `mini` (the mixture under the paper's protocol and selection, <= 300
    samples per task, 3 seeds) or `smoke` (15 epochs: does every strategy run). Exits with status 1 when
    a run failed or diverged (in this call, or stored as failed)."""
    sweep = _load_or_fail(file, run_code=not dry_run)
    if measure:
        cores = os.cpu_count() or 1
        click.echo(f"measuring on {cores} cores; run this on an otherwise idle machine")
        with user_errors():
            measure_split(sweep, cores, device or "cpu", data_root, echo=click.echo)
        return
    flags = {"partition": partition, "time": time_limit, "cpus": cpus, "gpus": gpus, "mem": mem}
    flags |= {"max_parallel": max_parallel, "sbatch": tuple(sbatch)}
    with user_errors():
        devices = parse_devices(devices)
        given = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v not in (None, ())]
        if given and backend != "slurm":
            raise ValueError(f"{', '.join(given)} only apply to --backend slurm (got --backend {backend})")
        slurm = getattr(sweep, "slurm", None)
        slurm = slurm.merged(**flags) if slurm is not None and backend == "slurm" else None
    try:
        with user_errors(StoreError, WorkerStartError):
            if dry_run:
                db = Store.open_read(store) if Path(store).exists() else None
                _echo_dry_run(sweep, CurrentView(db, store, data_root=data_root), retry_failed)
                return
            outcomes = run_sweep(
                sweep,
                store,
                backend=backend,
                workers=workers,
                threads=threads,
                device=device,
                devices=devices,
                workers_per_device=workers_per_device,
                data_root=data_root,
                retry_failed=retry_failed,
                checkpoints=not no_checkpoints,
                ray_address=ray_address,
                progress=not quiet,
                loggers=loggers,
                slurm=slurm,
            )
    except KeyboardInterrupt as e:
        click.echo("sweep interrupted; run the same command again to finish it", err=True)
        sys.exit(128 + Terminated.signum if isinstance(e, Terminated) else 130)
    with user_errors(StoreError):
        view = CurrentView(Store.open_read(store), check_data=False)
        stored_failures = _echo_status(sweep, view, errors=False).counts["failed"]
    if not _summary(sweep.name, outcomes, stored_failures):
        sys.exit(1)


def _summary(name: str, outcomes: list[Outcome], stored_failures: int) -> bool:
    """Print what this call did; True when nothing failed."""
    count = {s: sum(o.status == s for o in outcomes) for s in ("finished", "failed", "error", "busy", "skipped")}
    bad = [o for o in outcomes if o.status in ("failed", "error")]
    for o in bad:
        click.echo(f"  {o.status}: {o.label} ({o.run_id}): {o.message}")
    for o in outcomes:
        if o.status == "busy":
            click.echo(f"  left to another process: {o.label} ({o.run_id}): {o.message}")
    extra = "".join(
        f", {count[s]} {what}"
        for s, what in (
            ("busy", "left to another process running them"),
            ("skipped", "finished meanwhile by another process"),
        )
        if count[s]
    )
    click.echo(f"sweep {name}: {count['finished']} run(s) finished, {len(bad)} failed in this call{extra}")
    if stored_failures or bad:
        click.echo(
            f"sweep {name}: FAILED: {count['failed']} run(s) failed or diverged and {count['error']} could "
            f"not start in this call; {stored_failures} run(s) of this sweep are stored as failed "
            f"(`cl-bench status FILE --errors` shows why, `--retry-failed` runs them again)"
        )
        return False
    return True


@click.command("status")
@click.argument("file")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help="SQLite results file.")
@click.option("--errors", is_flag=True, help="Print the error of every failed run and attempt.")
def status_command(file, store, errors):
    """Finished / failed / pending runs of a sweep FILE, per grid cell (reads the store only; data
    changes since a run are found by `cl-bench sweep` and `sweep --dry-run`, which load the data)."""
    sweep = _load_or_fail(file, run_code=False)
    with user_errors(StoreError):
        _echo_status(sweep, CurrentView(Store.open_read(store), check_data=False), errors)


def _echo_dry_run(sweep: Sweep, view: CurrentView, retry_failed: bool) -> None:
    plan = sweep.plan(view, keep_finished=False)  # the finished runs are counted, not kept
    todo = plan.pending(retry_failed)
    for item in todo:
        why = view.changed.get(item.run_id)
        note = f"  (again: {' and '.join(why)} changed since the stored run)" if why else ""
        click.echo(
            f"{view.run_id_for(item.run_id)}  {item.phase:<9}  {run_label(item.config)}  [{item.point.label}]{note}"
        )
    click.echo(
        f"{len(todo)} to run, {plan.size - len(todo)} in the store"
        + (f", {len(plan.waiting)} selection(s) waiting" if plan.waiting else "")
        + ("" if view.store is not None else f" (no store at {view.path} yet)")
    )


def _echo_status(sweep: Sweep, view: CurrentView, errors: bool) -> Plan:
    """Print the sweep's status table, its runs running now, their failed attempts (and with ``errors``
    each failed run's error); returns the plan it was read from (without its finished runs)."""
    store = view.store
    running = {c.run_id: c for c in live_claims(store)}
    seen = _StatusNotes(view, running)
    rows, plan = sweep_status(sweep, view, each_chunk=seen.add)  # one pass over the runs, chunk by chunk
    _echo_table(sweep, rows)
    in_slurm = JobBook(slurm_dir(store.path)).read()  # shown with their job ids below, not their driver's pid
    for item in sweep.in_order(seen.running):
        if item.run_id not in in_slurm:
            click.echo(f"running now: {run_label(item.config)} ({item.run_id}): {running[item.run_id].describe()}")
    _echo_slurm_jobs(plan, store.path)
    for run_id, (item, attempts) in seen.attempts.items():
        failed = [a for a in attempts if a.status in FAILED]
        now = view.status(item.run_id) or "pending"
        last = (failed[-1].error or "").splitlines()[0] if failed[-1].error else failed[-1].status
        click.echo(
            f"attempts: {run_label(item.config)} ({run_id}): {now} now; {len(failed)} of "
            f"{len(attempts)} attempt(s) failed, the last: {last}"
        )
        if errors:
            for a in failed:
                click.echo(f"    attempt {a.attempt} ({a.status}, {a.code_version}): {a.error}")
    if errors:
        for item in plan.items:
            if item.status == "failed":
                rec = view.get(item.run_id)
                click.echo(f"\n{run_label(item.config)} ({rec.run_id}):\n{rec.error}")
    return plan


class _StatusNotes:
    """What ``status`` prints beside its table, gathered chunk by chunk while the plan is made (so no list
    of every run is held): the runs claimed now, and the runs with failed attempts."""

    def __init__(self, view: CurrentView, running: dict):
        self.view, self.claimed = view, running
        self.running: list[PlanItem] = []
        self.attempts: dict[str, tuple[PlanItem, list]] = {}  # stored run id -> (its run, its attempts)

    def add(self, chunk: list[PlanItem]) -> None:
        self.running += [item for item in chunk if item.run_id in self.claimed]
        ids = {self.view.run_id_for(i.run_id): i for i in chunk}
        for run_id, attempts in self.view.store.attempts_of(list(ids)).items():
            if any(a.status in FAILED for a in attempts):
                self.attempts[run_id] = (ids[run_id], attempts)


def _echo_table(sweep: Sweep, rows: list[dict]) -> None:
    header = ["scenario strategy", "grid point", "phase", "seeds", "done", "failed", "pending"]
    if sweep.select is not None:
        header.append(sweep.select.metric)
    table = [
        [
            r["cell"],
            r["point"],
            r["phase"] + (" (chosen)" if r.get("chosen") else ""),
            ",".join(map(str, r["seeds"])),
            str(r["finished"]),
            str(r["failed"]),
            f"{r['pending']}" + (f" ({r['partial']} resumable)" if r["partial"] else ""),
        ]
        + ([f"{r['score']:.4f}" if "score" in r else ""] if sweep.select is not None else [])
        for r in rows
    ]
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(header)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for t in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(t, widths)))
    totals = [sum(r[k] for r in rows) for k in ("finished", "failed", "pending")]
    click.echo(f"total: {totals[0]} finished, {totals[1]} failed, {totals[2]} pending")


def _echo_slurm_jobs(plan, store_path) -> None:
    """The SLURM jobs of this sweep's unfinished runs (``--backend slurm``), with their squeue state."""
    folder = slurm_dir(store_path)
    book = JobBook(folder).read()
    jobs = [(item, book[item.run_id]["job"]) for item in plan.items if item.run_id in book and item.status is None]
    if not jobs:
        return
    try:
        states = squeue_states()
    except SweepError as e:
        states, unknown = {}, f"state unknown: {e}"
    else:
        unknown = "not in the queue: ended without a result; `cl-bench sweep` submits it again"
    for item, job in jobs:
        if result_file(folder, job).exists():
            state = "ended; its result is stored when a `cl-bench sweep` driver collects it"
        else:
            state = states.get(job, unknown)
        click.echo(f"slurm job {job}: {state}: {run_label(item.config)} ({item.run_id})")
