"""The ``cl-bench`` command line: run, list, report."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click
import numpy as np
import torch

from cl_bench.report import format_accuracy_matrix
from cl_bench.registry import all_scenarios, scenario_options
from cl_bench.store import DEFAULT_STORE, Store, StoreError
from cl_bench.strategy import HparamError
from cl_bench.registry import all_strategies
from cl_bench.trainer import PRESETS, Protocol, protocol_from_dict


def parse_key_values(pairs: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{what} must be NAME=VALUE, got {pair!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _typed(values: dict[str, str], fields: dict[str, object]) -> dict[str, object]:
    """Cast strings to the type of each field's default."""
    out = {}
    for k, v in values.items():
        default = fields.get(k)
        if isinstance(default, bool):
            out[k] = v.lower() in ("1", "true", "yes", "on")
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            out[k] = type(default)(float(v)) if isinstance(default, int) else float(v)
        elif default is None and k == "clip_grad":
            out[k] = float(v)
        else:
            out[k] = v
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="cl-bench")
def main():
    """cl-bench: continual-learning benchmarks with the HAT paper's protocol."""


@main.command()
@click.option("--strategy", "-s", required=True, help="Registered name, or path/to/file.py:ClassName.")
@click.option("--scenario", "-c", required=True, help="See `cl-bench list scenarios`.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--hp", "-p", "hparams", multiple=True, metavar="NAME=VALUE", help="Strategy hyperparameter.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="paper", show_default=True,
              help="paper: the reference protocol; quick: 3 epochs, for demos.")
@click.option("--set", "protocol_sets", multiple=True, metavar="NAME=VALUE",
              help=f"Protocol override: {', '.join(f.name for f in dataclasses.fields(Protocol))}.")
@click.option("--epochs", type=int, help="Shortcut for --set epochs=N.")
@click.option("--max-train-per-task", type=int, help="Cap training samples per task (stratified).")
@click.option("--tasks", help="Keep only these task positions, e.g. 0,1,2.")
@click.option("--option", "-o", "options", multiple=True, metavar="NAME=VALUE", help="Scenario option.")
@click.option("--tag", "tags", multiple=True)
@click.option("--data-root", envvar="CL_BENCH_DATA", help="Dataset folder [env CL_BENCH_DATA].")
@click.option("--download/--no-download", default=False, show_default=True)
@click.option("--store", default=DEFAULT_STORE, show_default=True, help="SQLite results file.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ...")
@click.option("--threads", type=int, help="torch intra-op threads (default: torch's).")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]),
              help="Shortcut for --set precision=...: bf16 autocast (CPU AMX, CUDA); fp32 is the default.")
@click.option("--channels-last", is_flag=True, default=None, help="Shortcut for --set channels_last=true.")
@click.option("--force", is_flag=True, help="Re-run even if this configuration already finished.")
def run(strategy, scenario, seed, hparams, preset, protocol_sets, epochs, max_train_per_task, tasks,
        options, tags, data_root, download, store, device, threads, precision, channels_last, force):
    """Run one strategy on one scenario and seed; store the accuracy matrix."""
    from tqdm import tqdm

    from cl_bench.runner import RunConfig, RunFailed, execute

    if threads:
        torch.set_num_threads(threads)
    sets = parse_key_values(protocol_sets, "--set")
    if epochs is not None:
        sets["epochs"] = str(epochs)
    if precision:
        sets["precision"] = precision
    if channels_last:
        sets["channels_last"] = "true"
    defaults = dataclasses.asdict(PRESETS[preset])
    try:
        protocol = protocol_from_dict(_typed(sets, defaults), preset)
        opts = {}
        if max_train_per_task is not None:
            opts["max_train_per_task"] = max_train_per_task
        if tasks:
            opts["tasks"] = [int(i) for i in tasks.split(",")]
        if options:
            known = scenario_options(scenario) if scenario in all_scenarios() else {}
            opts |= _typed(parse_key_values(options, "--option"), known)
        config = RunConfig(strategy, scenario, seed, parse_key_values(hparams, "--hp"), protocol, opts, list(tags))
        bar = tqdm(total=None, unit="epoch", dynamic_ncols=True, file=sys.stderr)

        def on_epoch(log):
            bar.set_description(f"task {log.task + 1}")
            bar.set_postfix(loss=f"{log.train_loss:.3f}", val_loss=f"{log.valid_loss:.3f}",
                            val_acc=f"{100 * log.valid_acc:.1f}", lr=f"{log.lr:.2g}")
            bar.update()

        def on_task(t, acc):
            bar.write(f"after task {t + 1}: test acc " +
                      " ".join(f"{100 * a:.1f}" for a in acc[t, :t + 1]))

        record = execute(config, Store(store), data_root=data_root, download=download, device=device,
                         force=force, on_epoch=on_epoch, on_task=on_task)
        bar.close()
    except RunFailed as e:
        raise click.ClickException(f"run failed and was stored as failed: {e.record.error}")
    except (ValueError, HparamError, StoreError, FileNotFoundError) as e:
        raise click.ClickException(str(e))
    click.echo(f"run {record.run_id} ({record.strategy} on {record.scenario}, seed {record.seed}): "
               f"{record.status} in {record.wall_s:.1f} s")
    click.echo(format_accuracy_matrix(record.accuracy))


@main.command("list")
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
                click.echo(f"      {f.name}: {type(f.default).__name__} = {f.default!r}{grid}  "
                           f"{f.metadata.get('help', '')}")
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
            from cl_bench.benchmarks.datasets import availability, file_sha256s, format_availability
            from cl_bench.data import data_root
            click.echo(f"Data sets in {data_root()} (first call prepares the cache):")
            rows = availability(data_root(), load=True)
            click.echo(format_availability(rows))
            click.echo("sha256 of the source files:")
            for row in rows:
                if row.get("files"):
                    for path, digest in file_sha256s([Path(f) for f in row["files"]], data_root()).items():
                        click.echo(f"  {digest[:16]}  {path}")


@main.command()
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
    from cl_bench.report import format_markdown, rho_table
    from cl_bench.results import with_rho
    from cl_bench.runner import RunConfig, execute

    names = [s for s in ("random", "joint", "sgd", "hat") if s in all_strategies()]
    protocol = PRESETS["quick"].replace(epochs=epochs)
    db = Store(store)
    for seed in (int(x) for x in seeds.split(",")):
        for name in names:
            config = RunConfig(name, scenario, seed, {}, protocol, {"max_train_per_task": max_train_per_task})
            try:
                rec = execute(config, db, data_root=data_root, download=download)
            except (ValueError, FileNotFoundError) as e:
                raise click.ClickException(str(e))
            click.echo(f"{name:>8} seed {seed}: A<=T {100 * np.nanmean(rec.accuracy[-1]):.1f}%  "
                       f"({rec.wall_s:.1f} s)")
    click.echo(format_markdown(rho_table(with_rho(db.query("scenario = ?", (scenario,))))))


COMMANDS = [  # (module, click command object, name): commands that live beside the code they drive
    ("cl_bench.report", "report_command", "report"),
    ("cl_bench.sweep", "sweep_command", "sweep"),
    ("cl_bench.sweep", "status_command", "status"),
    ("cl_bench.bench", "bench_command", "bench"),
]


def _register_commands() -> None:
    import importlib
    for module, attr, name in COMMANDS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue  # not written yet
        main.add_command(getattr(mod, attr), name)


_register_commands()

if __name__ == "__main__":
    main()
