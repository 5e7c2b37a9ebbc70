"""``cl-bench demo``: SGD and HAT against the Joint and Random references at a reduced scale, then rho.

It writes to the default store, so ``cl-bench report`` shows the same runs next, and it downloads MNIST
(torchvision's mirrors) when the data root does not have it.
"""

from __future__ import annotations

import dataclasses

import click
import numpy as np

from cl_bench.cli.common import user_errors
from cl_bench.loggers import ConsoleLogger
from cl_bench.registry import all_strategies
from cl_bench.report import format_markdown, rho_table
from cl_bench.results import with_rho
from cl_bench.runner import LoggerListener, RunConfig, execute
from cl_bench.store import DEFAULT_STORE, Store, StoreError
from cl_bench.threads import set_run_threads
from cl_bench.trainer import PRESETS

DEMO_STRATEGIES = ("random", "joint", "sgd", "hat")


@click.command()
@click.option(
    "--store", default=DEFAULT_STORE, show_default=True, help="SQLite results file (`cl-bench report` reads it)."
)
@click.option("--scenario", default="split_mnist", show_default=True)
@click.option("--max-train-per-task", type=int, default=2000, show_default=True)
@click.option("--epochs", type=int, default=5, show_default=True)
@click.option("--seeds", default="0", show_default=True, help="e.g. 0,1,2")
@click.option("--data-root", envvar="CL_BENCH_DATA", help="Dataset folder [env CL_BENCH_DATA].")
@click.option(
    "--threads",
    type=int,
    help="torch intra-op threads [default: the cores that are free; a busy machine is said on stderr].",
)
@click.option(
    "--download/--no-download",
    default=True,
    show_default=True,
    help="Download MNIST into the data root when it is missing.",
)
def demo(store, scenario, max_train_per_task, epochs, seeds, data_root, threads, download):
    """A few-minute, reduced-scale demo: SGD and HAT against the Joint and Random references,
    then the rho table. Reduced scale (capped samples, few epochs): not the paper's numbers."""
    with user_errors(StoreError):
        set_run_threads(threads)  # beside busy processes, torch's one thread per core is many times slower
        seed_list = [int(x) for x in seeds.split(",")]
        protocol = PRESETS["quick"].replace(epochs=epochs)
        configs = [
            RunConfig(name, scenario, seed, {}, protocol, {"max_train_per_task": max_train_per_task}, ["demo"])
            for seed in seed_list
            for name in DEMO_STRATEGIES
            if name in all_strategies()
        ]
        db = Store(store)
    console = ConsoleLogger()
    click.echo(
        f"{len(configs)} runs at a reduced scale ({max_train_per_task} training samples per task, "
        f"<= {epochs} epochs): not the paper's protocol. Results go to {store}."
    )
    for config in configs:
        console.start_run(
            {
                "run_id": config.run_id(),
                "strategy": config.strategy,
                "scenario": config.scenario,
                "seed": config.seed,
                "protocol": dataclasses.asdict(config.protocol),  # the epoch cap in each epoch line
            }
        )
        with user_errors():
            rec = execute(
                config,
                db,
                data_root=data_root,
                download=download,
                listeners=[LoggerListener(console)],
            )
        console.end_run(rec.status, {"wall_s": rec.wall_s})
        click.echo(f"{config.strategy:>8} seed {config.seed}: A<=T {100 * np.nanmean(rec.accuracy[-1]):.1f}%")
    click.echo(format_markdown(rho_table(with_rho(db.query("scenario = ?", (scenario,))))))
    click.echo(f"Next: cl-bench report --store {store}")
