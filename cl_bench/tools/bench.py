"""Training and evaluation throughput of strategies against a bare PyTorch loop: the measurement
behind ``cl-bench bench`` (the command, its flags and its printing are in ``cl_bench.cli.bench``).

Every loop trains the same network architecture, from the same initial weights, on the same samples,
in one process:

- each strategy: ``Trainer.train_epoch`` with every hook of the strategy (HAT's annealing, masks,
  compensation, clamp, ...), batches sliced from uint8 tensors and normalised per batch, global
  grad-norm clipping;
- bare: the strategy's base network without any hook (masks=None), inputs preloaded as normalised
  float tensors, and per epoch ``randperm`` -> slice -> forward -> cross-entropy -> backward ->
  ``torch.optim.SGD`` step. Nothing else: no clipping, no evaluation. It is the floor: the
  fastest loop that trains the same network on the same data. Strategies whose base nets
  differ (HAT's 2x2000 MLP and the baselines' 3x800 one on MNIST) each get their own bare loop.

Both sides use the same execution settings (``--precision``, ``--channels-last``, ``--compile``),
so a ratio measures the harness's and the strategy's overhead, not the settings; compare two runs
of the command to see what a setting buys. Evaluation is timed too: the strategy's ``predict`` over
the training samples (what the accuracy matrix runs) against a no-grad bare loop, in batches of
``--eval-batch-size``; and the scenario's preparation (loading from the cache, subsetting).

Each loop first makes one untimed warm-up pass; then the repetitions rotate which loop runs first,
since a process gets slower as it ages (the speed note measured the bare loop 11% slower after other
runs in the same process). Reported: every repetition, the median, samples/s, seconds per 10,000
samples, and ratios of medians, of wall time and (on the CPU) of the process's CPU time. Wall times
mean something only on an idle machine: the load average is printed before and after. On a busy,
shared machine the CPU-time ratios are the steadier ones (time spent waiting for a core does not
count; a busy memory bus still slows every loop).

Tasks before ``--task`` are marked finished without training (``before_task``/``after_task`` on the
initial weights), as the speed note did with ``nepochs=0``: with ``--task 1`` HAT's gradient masks
are on.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import platform
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from cl_bench import nets
from cl_bench.registry import build_scenario, get_strategy
from cl_bench.scenario import Data, Scenario, Split, Task
from cl_bench.strategy import HparamError, Strategy
from cl_bench.trainer import Protocol, Trainer, resolve_device
from cl_bench.version import __version__

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
        split = Split(
            torch.randint(0, 256, (n_samples, *shape), generator=g, dtype=torch.uint8),
            torch.randint(0, 10, (n_samples,), generator=g),
        )
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
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cl_bench": __version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "device": str(device),
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "load_average": load_average(),
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages; None where the platform has none."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def base_network(strategy: Strategy) -> nets.MultiHeadNet | None:
    """The plain network inside a strategy's model (HAT wraps it with embeddings); None for strategies
    that build their own (PNN's columns, PathNet's modules)."""
    for module in strategy.model.modules():
        if isinstance(module, nets.MultiHeadNet):
            return module
    return None


def bare_epoch(
    net: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    t: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    autocast=contextlib.nullcontext,
) -> None:
    """The floor: one epoch of plain PyTorch on preloaded, normalised tensors."""
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    order = torch.randperm(len(y), generator=generator).to(y.device)
    for start in range(0, len(y), batch_size):
        idx = order[start : start + batch_size]
        with autocast():
            loss = F.cross_entropy(net(x[idx], t), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _timed(fn, device: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``fn()``. On a shared machine the CPU time is the
    steadier measure: time spent waiting for a core another process holds does not count."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


def _summary(timings: list[tuple[float, float]], n: int) -> dict[str, Any]:
    seconds, cpu_seconds = [w for w, _ in timings], [c for _, c in timings]
    median = statistics.median(seconds)
    return {
        "seconds": seconds,
        "median_s": median,
        "samples_per_s": n / median,
        "s_per_10k": 1e4 * median / n,
        "cpu_seconds": cpu_seconds,
        "median_cpu_s": statistics.median(cpu_seconds),
    }


def _bare_eval(net: torch.nn.Module, x: torch.Tensor, t: int, batch_size: int, autocast) -> None:
    """The floor for evaluation: no-grad forward passes and argmax, nothing else."""
    net.eval()
    with torch.no_grad(), autocast():
        for start in range(0, len(x), batch_size):
            net(x[start : start + batch_size], t).argmax(1)


def _network_key(net: nets.MultiHeadNet) -> str:
    """A name for a base network: strategies with the same one share a bare loop."""
    return f"{type(net).__name__} {nets.count_parameters(net):,}"


def run_bench(
    strategies: tuple[str, ...] = ("hat",),
    scenario: str = "synthetic-alexnet",
    samples: int = 10000,
    reps: int = 3,
    warmup: int = 640,
    batch_size: int = 64,
    lr: float = 0.05,
    task: int = 1,
    device: str = "cpu",
    hparams: dict[str, str] | None = None,
    seed: int = 0,
    data_root=None,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    eval_batch_size: int = 1024,
    echo=lambda line: None,
) -> dict[str, Any]:
    """Time ``reps`` epochs of each strategy's ``train_epoch`` and of the bare loop on the same net,
    then evaluation passes of both; returns the result as a JSON-ready dict.

    ``hparams`` go to every strategy that declares them (an unknown name is an error)."""
    if samples < 1 or reps < 1 or warmup < 0 or batch_size < 1 or task < 0 or eval_batch_size < 1:
        raise ValueError("samples, reps and batch sizes must be >= 1; warmup and task >= 0")
    strategies = tuple(dict.fromkeys(strategies))  # once each, in the given order
    dev = resolve_device(device)
    classes, hps = _strategies_and_hparams(strategies, hparams or {})
    started = time.perf_counter()
    sc = _scenario(scenario, samples, task, seed, data_root).to(dev)
    prepare_s = time.perf_counter() - started

    protocol = Protocol(
        batch_size=batch_size, lr=lr, eval_batch_size=eval_batch_size, precision=precision, channels_last=channels_last
    )
    trainer = Trainer(sc, protocol, seed=seed)
    data = trainer.data(task, "train")
    n = len(data)
    if n < samples:
        echo(f"note: task {task} of {scenario} has {n} training samples; timing {n}")
    x_all, y_all, _ = data.batch(torch.arange(n, device=data.y.device))  # bare loop: preloaded floats
    if channels_last and x_all.dim() == 4:
        x_all = x_all.contiguous(memory_format=torch.channels_last)

    algos: dict[str, Strategy] = {}
    bare_nets: dict[str, torch.nn.Module] = {}
    bare_of: dict[str, str] = {}
    for name, cls in classes.items():
        torch.manual_seed(seed)
        algo = cls(sc, hps[name], device=dev)
        net = base_network(algo)
        if net is None:  # PNN, PathNet: compared with the scenario's base net, whose size they match
            torch.manual_seed(seed)
            reference = nets.build_network(sc).to(dev)
        else:
            reference = net
        key = bare_of[name] = _network_key(reference)
        if key not in bare_nets:  # same architecture, same initial weights, no hooks
            bare_nets[key] = copy.deepcopy(reference)
        trainer.prepare(algo)
        if compile:
            (net or algo.model).compile()
        _ready_for(algo, name, trainer, task)
        algos[name] = algo
    for net in bare_nets.values():
        if channels_last:
            net.to(memory_format=torch.channels_last)
        if compile:
            net.compile()

    generator = torch.Generator().manual_seed(seed)

    def autocast():  # the strategies' precision, for the bare loops too
        return trainer.autocast(dev)

    train = {
        f"bare {key}": (
            lambda m, ep, net=net: bare_epoch(net, x_all[:m], y_all[:m], task, batch_size, lr, generator, autocast)
        )
        for key, net in bare_nets.items()
    }
    train |= {
        name: (lambda m, ep, algo=algo: trainer.train_epoch(algo, task, _head(data, m), lr, ep))
        for name, algo in algos.items()
    }
    evaluate = {
        f"bare {key}": (lambda net=net: _bare_eval(net, x_all, task, eval_batch_size, autocast))
        for key, net in bare_nets.items()
    }
    evaluate |= {name: (lambda algo=algo: trainer.accuracy(algo, data)) for name, algo in algos.items()}

    seconds, eval_seconds = _time_loops(train, evaluate, reps, warmup, n, dev, echo)

    result: dict[str, Any] = {
        "config": {
            "strategies": list(strategies),
            "hparams": {k: dataclasses.asdict(v) for k, v in hps.items()},
            "scenario": scenario,
            "task": task,
            "samples": n,
            "batch_size": batch_size,
            "lr": lr,
            "eval_batch_size": eval_batch_size,
            "reps": reps,
            "warmup": warmup,
            "seed": seed,
            "precision": precision,
            "channels_last": channels_last,
            "compile": compile,
        },
        "prepare_s": prepare_s,
        "networks": {f"bare {key}": key for key in bare_nets} | {name: _network_of(a) for name, a in algos.items()},
        "bare_of": {name: f"bare {key}" for name, key in bare_of.items()},
        "train": {name: _summary(s, n) for name, s in seconds.items()},
        "eval": {name: _summary(s, n) for name, s in eval_seconds.items()},
    }
    for what in ("train", "eval"):
        result[f"{what}_ratio"] = {
            name: result[what][name]["median_s"] / result[what][bare]["median_s"]
            for name, bare in result["bare_of"].items()
        }
        if dev.type == "cpu":  # on a GPU the host's CPU time measures launches and waits, not the work
            result[f"{what}_cpu_ratio"] = {
                name: result[what][name]["median_cpu_s"] / max(result[what][bare]["median_cpu_s"], 1e-9)
                for name, bare in result["bare_of"].items()
            }
    return result


def _time_loops(train, evaluate, reps: int, warmup: int, n: int, dev: torch.device, echo):
    """Seconds of each training loop (``reps`` epochs of ``n`` samples) and evaluation pass, the loops
    taking turns to go first; a warm-up pass of each first, untimed (allocations, oneDNN primitives,
    compilation)."""
    if warmup:
        for loop in train.values():
            loop(min(warmup, n), 0)
        for loop in evaluate.values():
            loop()
    seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in train}
    eval_seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in evaluate}
    names = list(train)
    for r in range(reps):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate who goes first
        for name in order:
            wall, cpu = _timed(lambda name=name, r=r: train[name](n, r + 1), dev)
            seconds[name].append((wall, cpu))
            echo(f"  rep {r + 1}: train {name:<24} {wall:8.3f} s ({cpu:.3f} CPU s)")
        for name in order:
            eval_seconds[name].append(_timed(evaluate[name], dev))
    return seconds, eval_seconds


def _network_of(algo: Strategy) -> str:
    base = base_network(algo)
    if base is None:
        return f"own, {nets.count_parameters(algo.model):,} parameters"
    return f"{_network_key(base)} ({nets.count_parameters(algo.model):,} with the strategy's)"


def _strategies_and_hparams(
    strategies: tuple[str, ...], hparams: dict[str, str]
) -> tuple[dict[str, type[Strategy]], dict[str, Any]]:
    """The classes, and each one's hyperparameters: ``hparams`` go to every strategy that declares them."""
    foreign = [s for s in strategies if s.startswith("avalanche:")]
    if foreign:  # their training runs in Avalanche's loop, not Trainer.train_epoch: nothing to time here
        raise ValueError(
            f"{', '.join(foreign)}: Avalanche strategies train in Avalanche's own loop; "
            f"examples/avalanche_crosscheck.py times them against cl-bench's"
        )
    classes = {name: get_strategy(name) for name in strategies}
    declared = {f.name for cls in classes.values() for f in cls.hparam_fields()}
    unknown = sorted(set(hparams) - declared)
    if unknown:
        raise HparamError(f"no benchmarked strategy has hyperparameter(s) {', '.join(unknown)}")
    hps = {
        name: cls.parse_hparams({k: v for k, v in hparams.items() if k in {f.name for f in cls.hparam_fields()}})
        for name, cls in classes.items()
    }
    return classes, hps


def _scenario(scenario: str, samples: int, task: int, seed: int, data_root) -> Scenario:
    if scenario in SYNTHETIC:
        sc = synthetic_scenario(scenario, samples, n_tasks=max(2, task + 1), seed=seed)
    else:
        sc = build_scenario(
            scenario, seed=seed, data_root=data_root, max_train_per_task=samples, tasks=list(range(task + 1))
        )
    if task >= len(sc.tasks):
        raise ValueError(f"--task {task}: scenario {scenario!r} has {len(sc.tasks)} tasks")
    return sc


def _ready_for(algo: Strategy, name: str, trainer: Trainer, task: int) -> None:
    """Earlier tasks "finished" on the initial weights (HAT: their masks exist), then task ``task`` begun."""
    try:
        for u in range(task):
            algo.before_task(trainer.task(u))
            algo.after_task(trainer.task(u))
        algo.before_task(trainer.task(task))
        trainable = algo.trainable_parameters(task)
    except (KeyError, IndexError, RuntimeError) as e:  # e.g. PathNet: its GA picks the paths
        raise ValueError(
            f"strategy {name!r} cannot be timed per epoch: marking tasks 0..{task - 1} finished without "
            f"training failed ({type(e).__name__}: {e}); try --task 0"
        ) from None
    if not any(p.requires_grad for p in trainable):
        raise ValueError(f"strategy {name!r} has nothing to train: no throughput to measure")


def _head(data: Data, m: int) -> Data:
    """The first ``m`` samples of ``data`` (the warm-up pass)."""
    return data if m >= len(data) else Data(data.x[:m], data.y[:m], data.task, data.scale, data.shift)
