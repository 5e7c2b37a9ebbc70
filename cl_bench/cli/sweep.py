"""``cl-bench sweep`` and ``cl-bench status``: run a sweep file resumably, and show what is done."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cl_bench.cli.common import user_errors
from cl_bench.store import DEFAULT_STORE, Store, StoreError
from cl_bench.sweep import Sweep, load_sweep, measure_split, run_label, run_sweep, status_rows
from cl_bench.sweep import sweep_file as find_sweep_file


def sweep_file(file: str) -> Path:
    """cl_bench.sweep.sweep_file, a missing file or preset as a one-line error."""
    with user_errors():
        return find_sweep_file(file)


def _load_or_fail(file: str) -> Sweep:
    path = sweep_file(file)
    with user_errors():  # SweepError, HparamError: a bad sweep file
        return load_sweep(path)


@click.command("sweep")
@click.argument("file")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help="SQLite results file.")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--workers", type=int, default=lambda: os.cpu_count() or 1, show_default="one per core",
              help="Local worker processes (0: run in this process); measured fastest with one "
                   "single-threaded worker per core (see --measure-split).")
@click.option("--threads", type=int, help="torch threads per worker [default: cores / workers].")
@click.option("--ray-address", help="Ray cluster address (default: start a local Ray).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--data-root", envvar="CL_BENCH_DATA", help="Dataset folder [env CL_BENCH_DATA].")
@click.option("--retry-failed", is_flag=True, help="Also re-run runs stored as failed.")
@click.option("--no-checkpoints", is_flag=True, help="Do not checkpoint runs after each task.")
@click.option("--dry-run", is_flag=True, help="List the runs still to do, run nothing.")
@click.option("--measure-split", "measure", is_flag=True,
              help="Time FILE's runs with every workers x threads split of the cores (fresh temporary "
                   "stores, nothing kept) and print the fastest.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def sweep_command(file, store, backend, workers, threads, ray_address, device, data_root, retry_failed,
                  no_checkpoints, dry_run, measure, quiet):
    """Run every configuration of a sweep FILE not yet in the store (see examples/sweeps/). FILE may
    also name a bundled preset: `mini` (the mixture's laptop-sized benchmark)."""
    sweep = _load_or_fail(file)
    if measure:
        cores = os.cpu_count() or 1
        click.echo(f"measuring on {cores} cores; run this on an otherwise idle machine")
        measure_split(sweep, cores, device, data_root, echo=click.echo)
        return
    if workers < 0 or (threads is not None and threads < 1):
        raise click.BadParameter("--workers must be >= 0 and --threads >= 1")
    try:
        with user_errors(StoreError):
            if dry_run:
                _echo_dry_run(sweep, Store(store), retry_failed)
                return
            outcomes = run_sweep(sweep, store, backend=backend, workers=workers, threads=threads,
                                 device=device, data_root=data_root, retry_failed=retry_failed,
                                 checkpoints=not no_checkpoints, ray_address=ray_address, progress=not quiet)
    except KeyboardInterrupt:
        click.echo("sweep interrupted; run the same command again to finish it", err=True)
        sys.exit(130)
    n_ok = sum(o.status == "finished" for o in outcomes)
    bad = [o for o in outcomes if o.status != "finished"]
    click.echo(f"sweep {sweep.name}: {n_ok} run(s) finished, {len(bad)} failed in this call")
    for o in bad:
        click.echo(f"  {o.status}: {o.label} ({o.run_id}): {o.message}")
    _echo_status(sweep, Store(store), errors=False)


@click.command("status")
@click.argument("file")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help="SQLite results file.")
@click.option("--errors", is_flag=True, help="Print the error of every failed run.")
def status_command(file, store, errors):
    """Finished / failed / pending runs of a sweep FILE, per grid cell."""
    sweep = _load_or_fail(file)
    with user_errors(StoreError):
        _echo_status(sweep, Store(store), errors)


def _echo_dry_run(sweep: Sweep, store: Store, retry_failed: bool) -> None:
    plan = sweep.plan(store)
    todo = plan.pending(retry_failed)
    for item in todo:
        click.echo(f"{item.run_id}  {item.phase:<9}  {run_label(item.config)}  [{item.point.label}]")
    click.echo(f"{len(todo)} to run, {len(plan.items) - len(todo)} in the store"
               + (f", {len(plan.waiting)} selection(s) waiting" if plan.waiting else ""))


def _echo_status(sweep: Sweep, store: Store, errors: bool) -> None:
    rows = status_rows(sweep, store)
    header = ["scenario strategy", "grid point", "phase", "seeds", "done", "failed", "pending"]
    table = [[r["cell"], r["point"], r["phase"], ",".join(map(str, r["seeds"])), str(r["finished"]),
              str(r["failed"]), f"{r['pending']}" + (f" ({r['partial']} resumable)" if r["partial"] else "")]
             for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(header)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for t in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(t, widths)))
    totals = [sum(r[k] for r in rows) for k in ("finished", "failed", "pending")]
    click.echo(f"total: {totals[0]} finished, {totals[1]} failed, {totals[2]} pending")
    if errors:
        plan = sweep.plan(store)
        for item in plan.items:
            if item.status == "failed":
                rec = store.get(item.run_id)
                click.echo(f"\n{run_label(item.config)} ({item.run_id}):\n{rec.error}")
