"""``cl-bench list``: strategies with their hyperparameters, scenarios with their options and data."""

from __future__ import annotations

import click

from cl_bench.benchmarks.datasets import availability, format_availability
from cl_bench.cli.common import user_errors
from cl_bench.data import data_root
from cl_bench.registry import all_scenarios, all_strategies, scenario_options


@click.command("list")
@click.argument("what", type=click.Choice(["strategies", "scenarios", "all"]), default="all")
@click.option("--details", is_flag=True, help="Scenarios: their options and datasets.")
def list_(what, details):
    """Strategies with their hyperparameters; scenarios with their options."""
    if what in ("strategies", "all"):
        click.echo("Strategies:")
        for name, cls in all_strategies().items():
            click.echo(f"  {name:<10} {(cls.__doc__ or '').strip().splitlines()[0]}  [clip_grad {cls.clip_grad:g}]")
            for f in cls.hparam_fields():
                grid = f" grid={f.metadata.get('grid')}" if f.metadata.get("grid") else ""
                rng = f" ({f.metadata['range']})" if f.metadata.get("range") else ""
                click.echo(
                    f"      {f.name}: {type(f.default).__name__} = {f.default!r}{rng}{grid}  "
                    f"{f.metadata.get('help', '')}"
                )
    if what in ("scenarios", "all"):
        click.echo("Scenarios:")
        for name, spec in all_scenarios().items():
            click.echo(f"  {name:<16} {spec.description}")
            if details:
                click.echo(f"      datasets: {', '.join(spec.datasets)}")
                for k, v in scenario_options(name).items():
                    click.echo(f"      option {k} = {v!r}")
                click.echo("      every scenario also takes --max-train-per-task and --tasks")
        if details:
            with user_errors():
                root = data_root()
                click.echo(f"Data sets in {root} (first call prepares the cache):")
                rows = availability(root, load=True)
            click.echo(format_availability(rows))
            click.echo("sha256 of the source files:")
            for row in rows:
                for path, digest in (row.get("files") or {}).items():
                    click.echo(f"  {digest[:16]}  {path}")
