"""``cl-bench demo``: SGD and HAT against the Joint and Random references at a reduced scale, then rho."""

from __future__ import annotations

import click
import numpy as np

from cl_bench.cli.common import user_errors
from cl_bench.registry import all_strategies
from cl_bench.report import format_markdown, rho_table
from cl_bench.results import with_rho
from cl_bench.runner import RunConfig, execute
from cl_bench.store import Store
from cl_bench.trainer import PRESETS


@click.command()
@click.option("--store", default="cl-bench-demo.db", show_default=True)
@click.option("--scenario", default="split_mnist", show_default=True)
@click.option("--max-train-per-task", type=int, default=2000, show_default=True)
@click.option("--epochs", type=int, default=5, show_default=True)
@click.option("--seeds", default="0", show_default=True, help="e.g. 0,1,2")
@click.option("--data-root", envvar="CL_BENCH_DATA", help="Dataset folder [env CL_BENCH_DATA].")
@click.option("--download/--no-download", default=False, show_default=True)
def demo(store, scenario, max_train_per_task, epochs, seeds, data_root, download):
    """A few-minute, reduced-scale demo: SGD and HAT against the Joint and Random references,
    then the rho table. Reduced scale (capped samples, few epochs): not the paper's numbers."""
    names = [s for s in ("random", "joint", "sgd", "hat") if s in all_strategies()]
    protocol = PRESETS["quick"].replace(epochs=epochs)
    db = Store(store)
    for seed in (int(x) for x in seeds.split(",")):
        for name in names:
            config = RunConfig(name, scenario, seed, {}, protocol, {"max_train_per_task": max_train_per_task})
            with user_errors():
                rec = execute(config, db, data_root=data_root, download=download)
            click.echo(f"{name:>8} seed {seed}: A<=T {100 * np.nanmean(rec.accuracy[-1]):.1f}%  "
                       f"({rec.wall_s:.1f} s)")
    click.echo(format_markdown(rho_table(with_rho(db.query("scenario = ?", (scenario,))))))
