"""EWC's Fisher against Avalanche's importances on the same data, the same network, one thread.

    OMP_NUM_THREADS=1 CL_BENCH_DATA=/path/to/data python scripts/bench_fisher.py --reps 5

Data: split MNIST's first task (digits 0-4), its first ``--samples`` training images. Network: the
MNIST baselines' MLP (3x800, dropout 0.5), seed 0. Timed, CPU seconds per call (process time), each
``--reps`` times, alternating:

- cl-bench ``empirical_fisher`` (batches of 20, train mode, what EWC computes): the per-batch loop it
  takes on a CPU, and the vmap path it took before (forced), which draws the same dropout masks;
- Avalanche 0.6.0 ``EWCPlugin.compute_importances`` (eval mode, a DataLoader of float tensors) with
  batches of 64 (the protocol's batch size, what an Avalanche EWC run uses) and of 20 (the same number
  of backward passes as cl-bench).

Writes ``--out`` (JSON) and the markdown table beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from pathlib import Path

import torch
from torch import nn

warnings.simplefilter("ignore")


class Adapter(nn.Module):
    """The multi-head MLP as the single-head model Avalanche's forward calls (head 0)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default="reports/bench/fisher.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from avalanche.training.plugins import EWCPlugin

    import cl_bench.strategies.shared as shared
    from cl_bench import nets
    from cl_bench.registry import build_scenario
    from cl_bench.scenario import Data

    task = build_scenario("split_mnist", seed=0).tasks[0]
    n = min(args.samples, len(task.train))
    data = Data.of(task, "train", 0)
    data = Data(data.x[:n], data.y[:n], 0, data.scale, data.shift)
    x_float, y_all, _ = data.batch(torch.arange(n))
    dataset = torch.utils.data.TensorDataset(x_float, y_all, torch.zeros(n, dtype=torch.long))
    torch.manual_seed(0)
    model = nets.MLP(784, [800, 800, 800], [5, 5])
    adapter, plugin = Adapter(model), EWCPlugin(ewc_lambda=1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    criterion = nn.CrossEntropyLoss()
    real_calls = shared._dropout_calls

    def cl_bench_loop():
        shared.empirical_fisher(model, shared.cross_entropy_of(model, 0), data, 20)

    def cl_bench_vmap():
        shared._dropout_calls = lambda *a: None
        try:
            shared.empirical_fisher(model, shared.cross_entropy_of(model, 0), data, 20)
        finally:
            shared._dropout_calls = real_calls

    def avalanche(batch):
        return lambda: plugin.compute_importances(adapter, criterion, optimizer, dataset, "cpu", batch)

    cases = {
        "cl-bench empirical_fisher, batches of 20 (per-batch loop, now)": cl_bench_loop,
        "cl-bench empirical_fisher, batches of 20 (vmap, before)": cl_bench_vmap,
        "Avalanche compute_importances, batches of 64 (as its EWC runs)": avalanche(64),
        "Avalanche compute_importances, batches of 20": avalanche(20),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    loads = []
    for _ in range(args.reps):
        for name, fn in cases.items():
            start = time.process_time()
            fn()
            times[name].append(time.process_time() - start)
        loads.append(os.getloadavg()[0])
    result = {
        "samples": n,
        "reps": args.reps,
        "threads": 1,
        "load_average": [round(v, 2) for v in loads],
        "cpu_s": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
    }
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=1) + "\n")
    ref = statistics.median(times["Avalanche compute_importances, batches of 64 (as its EWC runs)"])
    lines = [
        "# EWC's Fisher against Avalanche's importances",
        "",
        f"`python scripts/bench_fisher.py --samples {args.samples} --reps {args.reps}`: split MNIST task 1, "
        f"{n} training images, the 3x800 MLP, 1 thread, CPU seconds per call over {args.reps} alternating "
        f"repetitions; load average {min(loads):.1f}-{max(loads):.1f} on 2 cores (another job on one core).",
        "",
        "| computation | median CPU s | min | max | median / Avalanche (64) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, vs in times.items():
        med = statistics.median(vs)
        lines.append(f"| {name} | {med:.2f} | {min(vs):.2f} | {max(vs):.2f} | {med / ref:.2f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
