"""``cl-bench bench``: training throughput of a strategy against a bare PyTorch loop.

Both loops train the same network architecture, from the same initial weights, on the same samples,
in one process:

- the strategy: ``Trainer.train_epoch`` with every hook of the strategy (HAT's annealing, masks,
  compensation, clamp, ...), batches sliced from uint8 tensors and normalised per batch, global
  grad-norm clipping;
- bare: the strategy's base network without any hook (masks=None), inputs preloaded as normalised
  float tensors, and per epoch ``randperm`` -> slice -> forward -> cross-entropy -> backward ->
  ``torch.optim.SGD`` step. Nothing else: no clipping, no evaluation. It is the floor (the
  reference's speed note calls it the bare loop, hat_reference_speed.md).

Each loop first makes one untimed warm-up pass; then the repetitions alternate which loop runs
first (ABBA...), since a process gets slower as it ages (the speed note measured the bare loop 11%
slower after other runs in the same process). Reported: every repetition, the median, samples/s,
seconds per 10,000 samples, and the ratio of the medians. Timings mean something only on an idle
machine: the load average is printed before and after.

Tasks before ``--task`` are marked finished without training (``before_task``/``after_task`` on the
initial weights), as the speed note did with ``nepochs=0``: with ``--task 1`` HAT's gradient masks
are on.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import click
import torch
import torch.nn.functional as F

from cl_bench import nets
from cl_bench.scenario import Data, Scenario, Split, Task, build_scenario
from cl_bench.strategy import HparamError, Strategy, get_strategy
from cl_bench.trainer import Protocol, Trainer

SYNTHETIC = {  # name -> (arch, input shape): random uint8 data, 10 classes per task
    "synthetic-alexnet": ("alexnet", (3, 32, 32)),  # the speed note's setting
    "synthetic-mlp": ("mlp", (1, 28, 28)),
}


def synthetic_scenario(name: str, n_samples: int, n_tasks: int, seed: int = 0) -> Scenario:
    """Random uint8 images and labels: throughput does not depend on what the pixels say."""
    arch, shape = SYNTHETIC[name]
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(n_tasks):
        split = Split(torch.randint(0, 256, (n_samples, *shape), generator=g, dtype=torch.uint8),
                      torch.randint(0, 10, (n_samples,), generator=g))
        tasks.append(Task(f"random{t}", 10, split, split, split, (0.5,) * shape[0], (0.25,) * shape[0]))
    return Scenario(name, tasks, shape, arch, seed, {"synthetic": True})


def environment(device: torch.device) -> dict[str, Any]:
    """What the numbers depend on: versions, threads, the device, and how busy the machine is."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
    import cl_bench
    return {"torch": torch.__version__, "python": platform.python_version(), "cl_bench": cl_bench.__version__,
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "device": str(device), "device_name": name, "cpu_count": os.cpu_count(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def base_network(strategy: Strategy) -> nets.MultiHeadNet:
    """The plain network inside a strategy's model (HAT wraps it with embeddings)."""
    for module in strategy.model.modules():
        if isinstance(module, nets.MultiHeadNet):
            return module
    raise click.ClickException(f"strategy {strategy.name!r} has no base network (cl_bench.nets.MultiHeadNet) "
                               f"to compare with a bare loop")


def bare_epoch(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, t: int, batch_size: int, lr: float,
               generator: torch.Generator) -> None:
    """The floor: one epoch of plain PyTorch on preloaded, normalised tensors."""
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    order = torch.randperm(len(y), generator=generator).to(y.device)
    for start in range(0, len(y), batch_size):
        idx = order[start:start + batch_size]
        loss = F.cross_entropy(net(x[idx], t), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _summary(seconds: list[float], n: int) -> dict[str, Any]:
    median = statistics.median(seconds)
    return {"seconds": seconds, "median_s": median, "samples_per_s": n / median, "s_per_10k": 1e4 * median / n}


def run_bench(strategy: str = "hat", scenario: str = "synthetic-alexnet", samples: int = 10000, reps: int = 3,
              warmup: int = 640, batch_size: int = 64, lr: float = 0.05, task: int = 1, device: str = "cpu",
              hparams: dict[str, str] | None = None, seed: int = 0, data_root=None,
              echo=lambda line: None) -> dict[str, Any]:
    """Time ``reps`` epochs of the strategy's ``train_epoch`` and of the bare loop; returns the result."""
    if samples < 1 or reps < 1 or warmup < 0 or batch_size < 1 or task < 0:
        raise click.BadParameter("samples, reps and batch size must be >= 1; warmup and task >= 0")
    dev = torch.device(device)
    strategy_cls = get_strategy(strategy)
    hp = strategy_cls.parse_hparams(hparams or {})
    if scenario in SYNTHETIC:
        sc = synthetic_scenario(scenario, samples, n_tasks=max(2, task + 1), seed=seed)
    else:
        sc = build_scenario(scenario, seed=seed, data_root=data_root, max_train_per_task=samples,
                            tasks=list(range(task + 1)))
    if task >= len(sc.tasks):
        raise click.BadParameter(f"--task {task}: scenario {scenario!r} has {len(sc.tasks)} tasks")
    sc = sc.to(dev)
    torch.manual_seed(seed)
    algo = strategy_cls(sc, hp, device=dev)
    bare_net = copy.deepcopy(base_network(algo))  # same architecture, same initial weights
    if not any(p.requires_grad for p in algo.trainable_parameters(task)):
        raise click.ClickException(f"strategy {strategy!r} has nothing to train: no throughput to measure")
    for u in range(task):  # earlier tasks "finished" on the initial weights (HAT: masks exist)
        algo.before_task(u)
        algo.after_task(u)
    algo.before_task(task)

    trainer = Trainer(sc, Protocol(batch_size=batch_size, lr=lr), seed=seed)
    data = trainer.data(task, "train")
    n = len(data)
    if n < samples:
        echo(f"note: task {task} of {scenario} has {n} training samples; timing {n}")
    x_all, y_all, _ = data.batch(torch.arange(n, device=data.y.device))  # bare loop: preloaded floats
    generator = torch.Generator().manual_seed(seed)
    loops = {
        "strategy": lambda d, epoch: trainer.train_epoch(algo, task, d, lr, epoch),
        "bare": lambda d, epoch: bare_epoch(bare_net, d.x, d.y, task, batch_size, lr, generator),
    }
    sets = {"strategy": data, "bare": _Tensors(x_all, y_all)}
    if warmup:
        w = min(warmup, n)
        loops["strategy"](Data(data.x[:w], data.y[:w], task, data.scale, data.shift), 0)
        loops["bare"](_Tensors(x_all[:w], y_all[:w]), 0)
    seconds: dict[str, list[float]] = {"strategy": [], "bare": []}
    for r in range(reps):
        for which in (("strategy", "bare") if r % 2 == 0 else ("bare", "strategy")):
            s = _timed(lambda which=which, r=r: loops[which](sets[which], r + 1), dev)
            seconds[which].append(s)
            echo(f"  rep {r + 1}: {'bare loop' if which == 'bare' else strategy:<12} {s:8.3f} s")
    result = {
        "config": {"strategy": strategy, "hparams": dataclasses.asdict(hp),
                   "scenario": scenario, "task": task, "samples": n, "batch_size": batch_size, "lr": lr,
                   "reps": reps, "warmup": warmup, "seed": seed,
                   "network": type(bare_net).__name__,
                   "parameters": {"bare": nets.count_parameters(bare_net),
                                  "strategy": nets.count_parameters(algo.model)}},
        "strategy": _summary(seconds["strategy"], n),
        "bare": _summary(seconds["bare"], n),
    }
    result["ratio"] = result["strategy"]["median_s"] / result["bare"]["median_s"]
    return result


class _Tensors:
    """Preloaded (x, y) for the bare loop."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y


def format_markdown(result: dict[str, Any]) -> str:
    c, env = result["config"], result["environment"]
    reps = len(result["bare"]["seconds"])
    head = "| loop | " + " | ".join(f"rep {i + 1} (s)" for i in range(reps)) + \
           " | median (s) | samples/s | s per 10k |"
    lines = [
        f"# cl-bench bench: {c['strategy']} on {c['scenario']} (task {c['task']})",
        "",
        f"`{result['command']}`",
        "",
        f"- torch {env['torch']}, python {env['python']}, cl-bench {env['cl_bench']}",
        (f"- device {env['device']} ({env['device_name']}), {env['threads']} threads "
         f"({env['interop_threads']} inter-op), {env['cpu_count']} CPUs"),
        f"- load average before {_load(env['load_average'])}, after {_load(result['load_average_after'])}",
        (f"- {c['samples']} samples, batch {c['batch_size']}, lr {c['lr']}, network {c['network']} "
         f"({c['parameters']['bare']:,} parameters; {c['parameters']['strategy']:,} with the strategy's), "
         f"warm-up {c['warmup']} samples, {reps} repetitions alternating the order"),
        "",
        head,
        "|" + "---|" * (reps + 4),
    ]
    for key, label in (("strategy", f"{c['strategy']} `Trainer.train_epoch`"), ("bare", "bare PyTorch loop")):
        r = result[key]
        lines.append(f"| {label} | " + " | ".join(f"{s:.3f}" for s in r["seconds"]) +
                     f" | {r['median_s']:.3f} | {r['samples_per_s']:.1f} | {r['s_per_10k']:.2f} |")
    lines += ["", f"Ratio of medians ({c['strategy']} / bare): **{result['ratio']:.3f}**", ""]
    return "\n".join(lines)


def _command_line(params: dict[str, Any]) -> str:
    """The command that reproduces this result, every option spelled out."""
    words = ["cl-bench", "bench"]
    for name, value in params.items():
        flag = "--hp" if name == "hparams" else "--" + name.replace("_", "-")
        for v in (value if isinstance(value, tuple) else (value,)):
            if v is not None:
                words += [flag, str(v)]
    return " ".join(words)


def _load(values) -> str:
    return "n/a" if values is None else " ".join(f"{v:.2f}" for v in values)


@click.command("bench", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--strategy", "-s", default="hat", show_default=True, help="Registered name or file.py:Class.")
@click.option("--scenario", "-c", default="synthetic-alexnet", show_default=True,
              help=f"A registered scenario (split_mnist, permuted_mnist, ...) or {', '.join(SYNTHETIC)} "
                   f"(random 3x32x32 or 1x28x28 uint8 data).")
@click.option("--samples", type=int, default=10000, show_default=True, help="Training samples per epoch.")
@click.option("--reps", type=int, default=3, show_default=True, help="Timed epochs of each loop.")
@click.option("--warmup", type=int, default=640, show_default=True, help="Samples of the untimed first pass.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True)
@click.option("--task", type=int, default=1, show_default=True,
              help="Task timed; earlier tasks are marked finished untrained (1: HAT's gradient masks on).")
@click.option("--hp", "-p", "hparams", multiple=True, metavar="NAME=VALUE", help="Strategy hyperparameter.")
@click.option("--threads", type=int, help="torch intra-op threads (default: torch's).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-root", envvar="CL_BENCH_DATA", help="Dataset folder [env CL_BENCH_DATA].")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write the result as JSON here and as markdown beside it (.md), e.g. reports/bench/hat.json.")
def bench_command(strategy, scenario, samples, reps, warmup, batch_size, lr, task, hparams, threads, device,
                  seed, data_root, out):
    """Training throughput of a strategy's train_epoch against a bare PyTorch loop (same net, same data)."""
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    env = environment(dev)
    click.echo(f"torch {env['torch']} | {env['threads']} threads ({env['interop_threads']} inter-op) | "
               f"device {env['device']} ({env['device_name']}) | load average {_load(env['load_average'])}")
    if env["load_average"] and env["load_average"][0] >= 1.0:
        click.echo("warning: the machine is busy (load average >= 1): these timings are not comparable "
                   "to ones taken on an idle machine", err=True)
    click.echo(f"{strategy} on {scenario}, task {task}: {samples} samples, batch {batch_size}, {reps} reps")
    from cl_bench.cli import parse_key_values  # lazily: cli imports this module to register `bench`
    pairs = parse_key_values(hparams, "--hp")
    try:
        result = run_bench(strategy, scenario, samples, reps, warmup, batch_size, lr, task, device, pairs, seed,
                           data_root, echo=click.echo)
    except (ValueError, HparamError, FileNotFoundError) as e:
        raise click.ClickException(str(e))
    result["command"] = _command_line(click.get_current_context().params)
    result["environment"] = env
    result["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    for key, label in (("strategy", f"{strategy} train_epoch"), ("bare", "bare PyTorch loop")):
        r = result[key]
        click.echo(f"{label:<24} median {r['median_s']:.3f} s | {r['samples_per_s']:.1f} samples/s | "
                   f"{r['s_per_10k']:.2f} s per 10k | reps " + ", ".join(f"{s:.3f}" for s in r["seconds"]))
    click.echo(f"ratio {strategy} / bare: {result['ratio']:.3f}")
    if out:
        path = Path(out).with_suffix(".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
        path.with_suffix(".md").write_text(format_markdown(result))
        click.echo(f"wrote {path} and {path.with_suffix('.md')}")
