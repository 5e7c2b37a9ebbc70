"""``cl-bench bench``: the command over ``cl_bench.tools.bench`` (flags, the printed lines, the reproducing
command line stored with the result, writing ``--out``)."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from cl_bench.cli.common import key_values, user_errors
from cl_bench.tools.bench import SYNTHETIC, environment, load_average, run_bench
from cl_bench.tools.bench_report import format_load, write_result
from cl_bench.trainer import PRECISIONS, Protocol, resolve_device


def _command_line(context: click.Context) -> str:
    """The command that reproduces this result, every option spelled out but the data root: that is where
    this machine keeps the data sets, not part of the measurement (elsewhere, --data-root or
    CL_BENCH_DATA names the reader's own)."""
    words = ["cl-bench", "bench"]
    for param in context.command.params:
        if param.name == "data_root":
            continue
        value = context.params.get(param.name)
        if param.name == "out" and value is not None:
            value = _relative(Path(value))
        flag = max(param.opts, key=len)  # the long form
        if isinstance(param, click.Option) and param.is_flag:
            words += [flag] if value else []
            continue
        for v in value if isinstance(value, tuple) else (value,):
            if v is not None:
                words += [flag, str(v)]
    return " ".join(words)


def _relative(path: Path) -> str:
    """The output path as written from the working directory when it lies under it (no home folders)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@click.command("bench", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--strategy",
    "-s",
    "strategies",
    multiple=True,
    default=("hat",),
    show_default=True,
    help="Registered name or file.py:Class; repeat to compare several in one run (-s sgd -s hat).",
)
@click.option(
    "--scenario",
    "-c",
    default="synthetic-alexnet",
    show_default=True,
    help=f"A registered scenario (split_mnist, permuted_mnist, ...) or {', '.join(SYNTHETIC)} "
    f"(random 3x32x32 or 1x28x28 uint8 data).",
)
@click.option("--samples", type=int, default=10000, show_default=True, help="Training samples per epoch.")
@click.option("--reps", type=int, default=3, show_default=True, help="Timed epochs of each loop.")
@click.option("--warmup", type=int, default=640, show_default=True, help="Samples of the untimed first pass.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--eval-batch-size", type=int, default=Protocol.eval_batch_size, show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True)
@click.option(
    "--task",
    type=int,
    default=1,
    show_default=True,
    help="Task timed; earlier tasks are marked finished untrained (1: HAT's gradient masks on).",
)
@click.option(
    "--hp",
    "-p",
    "hparams",
    multiple=True,
    metavar="NAME=VALUE",
    help="Hyperparameter, given to every benchmarked strategy that has it.",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="fp32",
    show_default=True,
    help="bf16: autocast on both sides (CPU AMX / CUDA).",
)
@click.option("--channels-last", is_flag=True, help="NHWC memory format for conv nets, on both sides.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the base networks (both sides).")
@click.option("--threads", type=int, help="torch intra-op threads (default: torch's).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N: data and nets live there.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-root", envvar="CL_BENCH_DATA", help="Dataset folder [env CL_BENCH_DATA].")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Write the result as JSON here and as markdown beside it (.md), e.g. reports/bench/hat.json.",
)
def bench_command(
    strategies,
    scenario,
    samples,
    reps,
    warmup,
    batch_size,
    eval_batch_size,
    lr,
    task,
    hparams,
    precision,
    channels_last,
    compile_,
    threads,
    device,
    seed,
    data_root,
    out,
):
    """Training and evaluation throughput of strategies against a bare PyTorch loop (same net, same data)."""
    if threads:
        torch.set_num_threads(threads)
    with user_errors():
        dev = resolve_device(device)
    env = environment(dev)
    click.echo(
        f"torch {env['torch']} | {env['threads']} threads ({env['interop_threads']} inter-op) | "
        f"device {env['device']} ({env['device_name']}) | load average {format_load(env['load_average'])}"
    )
    if env["load_average"] and env["load_average"][0] >= 1.0:
        click.echo(
            "warning: the machine is busy (load average >= 1): these timings are not comparable "
            "to ones taken on an idle machine",
            err=True,
        )
    click.echo(
        f"{', '.join(strategies)} on {scenario}, task {task}: {samples} samples, batch {batch_size}, "
        f"{reps} reps, {precision}{', channels_last' if channels_last else ''}"
        f"{', torch.compile' if compile_ else ''}"
    )
    pairs = key_values(hparams, "--hp")
    with user_errors():
        result = run_bench(
            strategies,
            scenario,
            samples,
            reps,
            warmup,
            batch_size,
            lr,
            task,
            device,
            pairs,
            seed,
            data_root,
            precision,
            channels_last,
            compile_,
            eval_batch_size,
            echo=click.echo,
        )
    result["command"] = _command_line(click.get_current_context())
    result["environment"] = env
    result["load_average_after"] = load_average()
    click.echo(f"scenario prepared in {result['prepare_s']:.2f} s")
    for name, r in result["train"].items():
        e = result["eval"][name]
        ratios = ""
        if name in result["train_ratio"]:
            ratios = f" | x{result['train_ratio'][name]:.3f} train, x{result['eval_ratio'][name]:.3f} eval vs bare"
            if "train_cpu_ratio" in result:
                ratios += (
                    f" (CPU time: x{result['train_cpu_ratio'][name]:.3f} train, "
                    f"x{result['eval_cpu_ratio'][name]:.3f} eval)"
                )
        click.echo(
            f"{name:<28} train {r['s_per_10k']:7.2f} s/10k ({r['samples_per_s']:7.0f}/s) | "
            f"eval {e['s_per_10k']:6.3f} s/10k{ratios}"
        )
    if out:
        path = write_result(result, out)
        click.echo(f"wrote {path} and {path.with_suffix('.md')}")
