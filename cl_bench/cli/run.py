"""``cl-bench run``: one strategy x scenario x seed under the protocol, stored with its accuracy matrix.

Progress goes to stderr through the console logger (a bar on a terminal, plain lines when piped;
``--quiet``: none); ``--logger`` adds file and dashboard loggers, writing in ``<store>.logs/``."""

from __future__ import annotations

import dataclasses
import time

import click

from cl_bench.cli.common import key_values, user_errors
from cl_bench.cli.options import data_root_option, device_option, store_option
from cl_bench.loggers import LOGGER_NAMES, log_dir, make_loggers
from cl_bench.metrics import format_accuracy_matrix
from cl_bench.runner import RunFailed
from cl_bench.runner.front import run as run_api
from cl_bench.store import StoreError
from cl_bench.trainer import PRECISIONS, PRESETS, Protocol, protocol_from_dict


@click.command()
@click.option("--strategy", "-s", required=True, help="Registered name, or path/to/file.py:ClassName.")
@click.option("--scenario", "-c", required=True, help="See `cl-bench list scenarios`.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--hp", "-p", "hparams", multiple=True, metavar="NAME=VALUE", help="Strategy hyperparameter.")
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    default="paper",
    show_default=True,
    help="paper: the reference protocol; quick: 3 epochs, for demos.",
)
@click.option(
    "--set",
    "protocol_sets",
    multiple=True,
    metavar="NAME=VALUE",
    help=f"Protocol override: {', '.join(f.name for f in dataclasses.fields(Protocol))}.",
)
@click.option("--epochs", type=int, help="Shortcut for --set epochs=N.")
@click.option("--max-train-per-task", type=int, help="Cap training samples per task (stratified).")
@click.option("--tasks", help="Keep only these task positions, e.g. 0,1,2.")
@click.option("--option", "-o", "options", multiple=True, metavar="NAME=VALUE", help="Scenario option.")
@click.option("--tag", "tags", multiple=True)
@data_root_option()
@click.option("--download/--no-download", default=False, show_default=True)
@store_option()
@device_option()
@click.option("--threads", type=int, help="torch intra-op threads [default: the cores that are free].")
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    help="Shortcut for --set precision=...: bf16 autocast (CPU AMX, CUDA); fp32 is the default.",
)
@click.option("--channels-last", is_flag=True, default=None, help="Shortcut for --set channels_last=true.")
@click.option(
    "--logger",
    "loggers",
    multiple=True,
    type=click.Choice(LOGGER_NAMES),
    help="Also log the run to files or a dashboard, in <store>.logs/ (repeatable): jsonl, csv, "
    "tensorboard, wandb. The console logger (progress on stderr) is on unless --quiet.",
)
@click.option("--quiet", is_flag=True, help="No progress on stderr (the result is still printed).")
@click.option(
    "--force",
    is_flag=True,
    help="Re-run even if this configuration already finished (a failed "
    "re-run keeps the finished result; a finished one replaces it, the old one kept as an attempt).",
)
def run(
    strategy,
    scenario,
    seed,
    hparams,
    preset,
    protocol_sets,
    epochs,
    max_train_per_task,
    tasks,
    options,
    tags,
    data_root,
    download,
    store,
    device,
    threads,
    precision,
    channels_last,
    loggers,
    quiet,
    force,
):
    """Run one strategy on one scenario and seed; store the accuracy matrix."""
    sets = key_values(protocol_sets, "--set")
    if epochs is not None:
        sets["epochs"] = epochs
    if precision:
        sets["precision"] = precision
    if channels_last:
        sets["channels_last"] = True
    opts = key_values(options, "--option")
    if max_train_per_task is not None:
        opts["max_train_per_task"] = max_train_per_task
    if tasks:
        opts["tasks"] = tasks
    with user_errors(StoreError):
        protocol = protocol_from_dict(sets, preset, where="--set")
        names = [n for n in ("console", *loggers) if not (quiet and n == "console")]
        since = time.time()
        with make_loggers(names, log_dir(store)) as logger:  # an unknown or uninstalled one fails here
            try:
                record = run_api(
                    strategy,
                    scenario,
                    seed,
                    hparams=key_values(hparams, "--hp"),
                    protocol=protocol,
                    scenario_options=opts,
                    tags=tags,
                    store=store,
                    data_root=data_root,
                    download=download,
                    device=device,
                    force=force,
                    threads=threads,
                    logger=logger,
                )
            except RunFailed as e:
                raise click.ClickException(_failure(e)) from None
    what = f"run {record.run_id} ({record.strategy} on {record.scenario}, seed {record.seed})"
    if record.finished is not None and record.finished < since:  # served, not trained
        click.echo(f"{what}: already in the store" + (" (tag added)" if tags else "") + "; nothing trained")
    else:
        click.echo(f"{what}: {record.status} in {record.wall_s:.1f} s")
    click.echo(format_accuracy_matrix(record.accuracy))


def _failure(e: RunFailed) -> str:
    attempt = f" (attempt {e.attempt})" if e.attempt else ""
    if e.kept is not None:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.kept.finished)) if e.kept.finished else "earlier"
        return (
            f"run failed{attempt}; the earlier finished result of this run (finished {when}) was kept in the "
            f"store, the failure is recorded as an attempt (`cl-bench status` shows attempts): {e.record.error}"
        )
    return f"run failed{attempt} and was stored as failed: {e.record.error}"
