"""Cross-check of cl-bench's EWC, LwF and LFL against Avalanche 0.6.0's, both run by the cl-bench runner.

    python examples/avalanche_crosscheck.py --seeds 0,1,2 --max-train-per-task 2000 --epochs 5

Both sides train the same cl-bench network (the 3x800 MLP of split MNIST; LFL's variant without
dropout on the last hidden layer) on the same data under the same protocol (plain SGD lr 0.05,
batch 64, at most ``--epochs`` epochs, lr / 3 after 5 bad epochs, best-validation restore) and are
evaluated into the same accuracy matrix; Joint and Random give rho (Eq. 6). Runs go to ``--store``
(resumable: finished configurations are skipped), the table to ``--out``. Then, in the same process,
the per-epoch training time of each side on the same work (task 2 of split MNIST, the regulariser on).

Where the methods differ by design, so that "the same hyperparameters" has two readings (both are
run): ``DIFFERENCES`` below, also written into the report.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cl_bench import avalanche_interop as ai
from cl_bench.metrics import summarize
from cl_bench.registry import build_scenario, get_strategy
from cl_bench.results import with_rho
from cl_bench.runner import RunConfig, execute
from cl_bench.scenario import Data
from cl_bench.store import Store
from cl_bench.trainer import Protocol, Trainer

DIFFERENCES = """\
- EWC. cl-bench (the HAT reference): λ Σ F (θ − θ*)² / 2 with F = (1/N) Σ_b 20 ḡ_b² over consecutive
  batches b of 20 (ḡ_b: gradient of the batch's mean loss), i.e. the mean of ḡ₂₀², network in train
  mode (dropout on). Avalanche: λ Σ F (θ − θ*)² (no ½) with F = the mean over the training minibatches
  (64) of ḡ₆₄², network in eval mode. Its F is smaller by the measured ratio
  R = ΣF_cl-bench / ΣF_Avalanche (batch 20 vs 64, and dropout), so ``ewc_lambda = λ · R / 2`` matches
  the penalty's scale; the row with ``ewc_lambda = λ`` is the same number with Avalanche's meaning.
- LwF. Both: λ Σ_{old heads} KD at temperature T without T², so alpha = λ, temperature = T is the same
  loss (cl-bench's cross-entropy KD and Avalanche's KL differ by the teacher's entropy, a constant, and
  cl-bench adds 1e-5/C to the student's probabilities). Avalanche's teacher is copied in train mode
  (dropout on) and its student's distillation outputs come from a second forward pass (another
  dropout draw); cl-bench's teacher runs in eval mode and one forward pass serves both terms.
- LFL. cl-bench: λ Σ_batch Σ_units (h_old − h)² / 2; Avalanche: λ_e · mean over batch and units, so
  λ_e = λ · 64 · 800 / 2 matches (the last batch aside). Avalanche's penalty switches the model to
  eval mode on the first step of task 2 (dropout off for the rest of the task) and freezes the model's
  last Linear (on this multi-head net, task 2's head: the interop re-enables the head being trained).
- All: the cl-bench side early-stops on the regularised validation loss, the Avalanche side on plain
  cross-entropy (``cl_bench.avalanche_interop``); batch order and dropout draws differ.
"""

TAG = "avalanche-crosscheck"
SCENARIO = "split_mnist"
LFL_UNITS = 800  # width of the features LFL penalises (the 3x800 MLP's last hidden layer)


@dataclass
class Pair:
    method: str
    ours: tuple[str, dict]
    theirs: tuple[str, dict]
    reading: str  # how the Avalanche hyperparameters relate to ours


def pairs(ewc_ratio: float, batch: int) -> list[Pair]:
    """The compared configurations; ``ewc_ratio`` is the measured ΣF_cl-bench / ΣF_Avalanche."""
    ewc_matched = float(f"{5000 * ewc_ratio / 2:.2g}")
    return [
        Pair("SGD / Naive", ("sgd", {}), ("avalanche:Naive", {}), "no hyperparameters"),
        Pair(
            "EWC",
            ("ewc", {"lamb": 5000.0}),
            ("avalanche:EWC", {"ewc_lambda": 5000.0}),
            "same number (Avalanche's meaning)",
        ),
        Pair(
            "EWC",
            ("ewc", {"lamb": 5000.0}),
            ("avalanche:EWC", {"ewc_lambda": ewc_matched}),
            f"matched scale: λ·R/2, R = {ewc_ratio:.2f}",
        ),
        Pair(
            "LwF",
            ("lwf", {"lamb": 2.0, "T": 1.0}),
            ("avalanche:LwF", {"alpha": 2.0, "temperature": 1.0}),
            "same loss (alpha = λ, temperature = T)",
        ),
        Pair(
            "LFL", ("lfl", {"lamb": 0.05}), ("avalanche:LFL", {"lambda_e": 0.05}), "same number (Avalanche's meaning)"
        ),
        Pair(
            "LFL",
            ("lfl", {"lamb": 0.05}),
            ("avalanche:LFL", {"lambda_e": 0.05 * batch * LFL_UNITS / 2}),
            f"matched scale: λ·{batch}·{LFL_UNITS}/2",
        ),
    ]


# ---- the Fisher ratio ------------------------------------------------------------------------------
def fisher_sums(scenario, epochs: int, seed: int) -> dict[str, float]:
    """Train SGD on task 1, then both Fishers of that model on task 1's training set: their sums and
    the seconds each takes (the same work EWC does after each task)."""
    from avalanche.training.plugins import EWCPlugin

    from cl_bench.strategies.shared import cross_entropy_of, empirical_fisher

    torch.manual_seed(seed)
    strategy = get_strategy("sgd")(scenario)
    strategy.train_task(0, Trainer(scenario, Protocol(epochs=epochs), seed=seed))
    model = strategy.model
    start = time.perf_counter()
    ours = empirical_fisher(model, cross_entropy_of(model, 0), Data.of(scenario.tasks[0], "train", 0), 20)
    ours_s = time.perf_counter() - start
    net = ai.task_aware_net(model)
    dataset = ai.task_dataset(scenario.tasks[0], "train", 0)
    start = time.perf_counter()
    theirs = EWCPlugin(1.0).compute_importances(
        net,
        torch.nn.CrossEntropyLoss(),
        torch.optim.SGD(net.parameters(), lr=0.0),
        dataset,
        "cpu",
        Protocol().batch_size,
    )
    theirs_s = time.perf_counter() - start
    return {
        "ours": sum(float(f.sum()) for f in ours.values()),
        "ours_s": ours_s,
        "theirs": sum(float(f.data.sum()) for f in theirs.values()),
        "theirs_s": theirs_s,
    }


# ---- timing ----------------------------------------------------------------------------------------
def ours_epochs(name: str, hp: dict, scenario, epochs: int) -> list[float]:
    """Seconds of each cl-bench training epoch (Trainer.train_epoch) on task 2, after task 1."""
    cls = get_strategy(name)
    torch.manual_seed(0)
    strategy = cls(scenario, cls.parse_hparams(hp))
    trainer = Trainer(scenario, Protocol(epochs=1))
    strategy.before_task(0)
    strategy.train_task(0, trainer)
    strategy.after_task(0)
    strategy.before_task(1)
    data = trainer.data(1, "train")
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        trainer.train_epoch(strategy, 1, data, trainer.protocol.lr, epoch)
        times.append(time.perf_counter() - start)
    return times


def theirs_epochs(name: str, hp: dict, scenario, epochs: int) -> list[float]:
    """Seconds of each Avalanche training epoch (the loop alone: the cl-bench validation after it is
    not counted) on task 2, after task 1."""
    from avalanche.training.plugins import SupervisedPlugin

    class EpochTimer(SupervisedPlugin):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def before_training_epoch(self, strategy, **kwargs):
            self.start = time.perf_counter()

        def after_training_epoch(self, strategy, **kwargs):
            self.times.append(time.perf_counter() - self.start)

    cls = get_strategy(name)
    torch.manual_seed(0)
    strategy = cls(scenario, cls.parse_hparams(hp))
    strategy.train_task(0, Trainer(scenario, Protocol(epochs=1)))
    strategy.after_task(0)
    timer = EpochTimer()
    strategy.avalanche.plugins.insert(0, timer)  # first: its after_training_epoch precedes validation
    strategy.train_task(1, Trainer(scenario, Protocol(epochs=epochs)))
    return timer.times


def data_passes(scenario, passes: int) -> dict[str, float]:
    """Median seconds of one pass over task 2's training batches without a model: cl-bench's slices
    (randperm, index, normalise) and the DataLoader Avalanche builds for an experience."""
    from avalanche.benchmarks.utils.data_loader import TaskBalancedDataLoader

    batch = Protocol().batch_size
    data = Data.of(scenario.tasks[1], "train", 1)
    dataset = ai.to_avalanche(scenario, streams=("train",)).train_stream[1].dataset.train()
    loader = TaskBalancedDataLoader(
        dataset,
        oversample_small_groups=True,
        batch_size=batch,
        shuffle=True,
        num_workers=0,
        pin_memory=False,
        drop_last=False,
    )
    ours, theirs = [], []
    for _ in range(passes):
        start = time.perf_counter()
        order = torch.randperm(len(data))
        for b in range(0, len(data), batch):
            data.batch(order[b : b + batch])
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in loader:
            pass
        theirs.append(time.perf_counter() - start)
    return {
        "label": "data only (no model)",
        "ours": statistics.median(ours),
        "theirs": statistics.median(theirs),
        "n": passes,
    }


def timing(scenario, epochs: int, rounds: int) -> list[dict]:
    """Median seconds per training epoch, each side measured ``rounds`` times in alternating order."""
    out = []
    for label, ours, theirs in (
        ("SGD vs Naive", ("sgd", {}), ("avalanche:Naive", {})),
        ("EWC vs EWC", ("ewc", {"lamb": 5000.0}), ("avalanche:EWC", {"ewc_lambda": 5000.0})),
    ):
        mine, other = [], []
        for r in range(rounds):
            order = [(mine, ours_epochs, ours), (other, theirs_epochs, theirs)]
            for sink, fn, (name, hp) in order if r % 2 == 0 else order[::-1]:
                sink += fn(name, hp, scenario, epochs)
        out.append(
            {"label": label, "ours": statistics.median(mine), "theirs": statistics.median(other), "n": len(mine)}
        )
    out.append(data_passes(scenario, epochs * rounds))
    return out


# ---- the table -------------------------------------------------------------------------------------
def pm(values, scale=100.0, digits=1) -> str:
    s = summarize([v * scale for v in values])
    return f"{s.mean:.{digits}f} ± {s.std:.{digits}f}"


def _hp_text(hp: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items()) or "-"


def collect(store: Store, configs: dict[tuple, list[str]]) -> dict[tuple, list]:
    """(strategy, hparams) -> the RunMetrics of its seeds (rho against this store's Joint/Random)."""
    records = [r for r in store.query("scenario = ?", (SCENARIO,)) if TAG in r.tags]
    metrics = with_rho(records, require_references=False)
    by_id = {m.record.run_id: m for m in metrics}
    return {key: [by_id[i] for i in ids if i in by_id] for key, ids in configs.items()}


def render(args, pair_list, results, fisher, times, env) -> str:
    lines = [
        "# Avalanche cross-check: cl-bench vs Avalanche 0.6.0 on split MNIST",
        "",
        f"Generated by `python examples/avalanche_crosscheck.py {' '.join(args.argv)}`".rstrip() + ".",
        "",
        (
            f"Split MNIST (2 tasks of 5 classes), {args.max_train_per_task:,} training samples per task "
            f"(stratified cap), at most {args.epochs} epochs, the cl-bench protocol (plain SGD lr 0.05, batch "
            f"64, lr / 3 after 5 bad epochs, best-validation weights restored), the 3x800 MLP (LFL: without "
            f"dropout on the last hidden layer), seeds {args.seeds}, {args.threads} thread(s). Both sides run "
            f"through the cl-bench runner (store `{args.store}`, tag `{TAG}`); mean ± std (ddof 0) over "
            f"seeds, accuracies in %. rho<=2 against Joint and Random of the same scale and seeds."
        ),
        "",
        (
            "| method | Avalanche hyperparameters | A<=2 cl-bench | A<=2 Avalanche | rho<=2 cl-bench | "
            "rho<=2 Avalanche | A[1,1] cl-bench / Av. | A[2,1] cl-bench / Av. | A[2,2] cl-bench / Av. |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in pair_list:
        ours, theirs = results[p.ours[0], _key(p.ours[1])], results[p.theirs[0], _key(p.theirs[1])]
        cells = [
            p.method + f" ({_hp_text(p.ours[1])})" if p.ours[1] else p.method,
            f"{_hp_text(p.theirs[1])}: {p.reading}",
        ]
        cells += [pm([m.acc_upto[-1] for m in ours]), pm([m.acc_upto[-1] for m in theirs])]
        for side in (ours, theirs):
            rhos = [m.rho_upto[-1] for m in side if m.rho_upto is not None]
            cells.append(pm(rhos, scale=1.0, digits=3) if rhos else "n/a")
        for t, tau in ((0, 0), (1, 0), (1, 1)):
            cells.append(
                f"{pm([m.record.accuracy[t, tau] for m in ours])} / {pm([m.record.accuracy[t, tau] for m in theirs])}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    n = {len(v) for v in results.values()}
    lines += ["", f"Seeds per cell: {', '.join(map(str, sorted(n)))}.", ""]
    lines += [
        "## EWC's Fisher scale",
        "",
        (
            f"On the SGD model after task 1 (seed {args.seeds.split(',')[0]}, {args.epochs} epochs): "
            f"ΣF cl-bench (batches of 20, train mode) = {fisher['ours']:.4g}, ΣF Avalanche (minibatches of 64, "
            f"eval mode) = {fisher['theirs']:.4g}, ratio R = {fisher['ours'] / fisher['theirs']:.2f} "
            f"(batch size alone would give 64/20 = 3.2; the rest is dropout). Time on the same model and data: "
            f"cl-bench {fisher['ours_s']:.2f} s (vmap over batches of 20), Avalanche {fisher['theirs_s']:.2f} s "
            f"(one backward per minibatch of 64): different work by design."
        ),
        "",
        "## Training time per epoch, same work, same process",
        "",
        (
            f"Task 2 of split MNIST ({args.max_train_per_task:,} samples, batch 64, regulariser on), the same "
            f"3x800 MLP, plain SGD, {args.threads} thread(s); the training loop only (cl-bench: "
            f"`Trainer.train_epoch`; Avalanche: from `before_training_epoch` to `after_training_epoch`, "
            f"including its DataLoader, plugins and the interop's clipping). Median of {times[0]['n']} epochs "
            f"per side over {args.timing_rounds} alternating rounds. {env['load']}"
        ),
        "",
        "| comparison | cl-bench s/epoch | Avalanche s/epoch | Avalanche / cl-bench |",
        "|---|---:|---:|---:|",
    ]
    for row in times:
        lines.append(
            f"| {row['label']} | {row['ours']:.3f} | {row['theirs']:.3f} | {row['theirs'] / row['ours']:.2f} |"
        )
    n_batches = -(-args.max_train_per_task // 64)
    extra = [(row["theirs"] - row["ours"]) / n_batches * 1000 for row in times[:2]]
    note = (
        f"Avalanche's extra time per batch of 64: {extra[0]:.2f} ms (Naive), {extra[1]:.2f} ms (EWC), over "
        f"{n_batches} batches per epoch."
    )
    lines += ["", note]
    lines += ["", f"Environment: {env['text']}", "", "## Why the two sides differ (by design)", ""]
    lines += [DIFFERENCES.strip(), ""]
    return "\n".join(lines)


def _key(hp: dict) -> tuple:
    return tuple(sorted(hp.items()))


def environment(threads: int) -> dict[str, str]:
    import avalanche

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5, check=False
        ).stdout.strip()

    try:
        commit, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "?", ""
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "text": f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, avalanche-lib "
        f"{avalanche.__version__}, Python {platform.python_version()}, {threads} thread(s), "
        f"cl-bench at {commit}{' with uncommitted changes' if dirty else ''}.",
        "load": "",
    }


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-train-per-task", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--store", default="reports/avalanche/runs.db")
    parser.add_argument("--out", default="reports/avalanche/crosscheck.md")
    parser.add_argument("--data-root", default=os.environ.get("CL_BENCH_DATA"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timing-epochs", type=int, default=5, help="epochs timed per side and round")
    parser.add_argument("--timing-rounds", type=int, default=2)
    parser.add_argument("--runs-only", action="store_true", help="run (or resume) the runs; no table")
    args = parser.parse_args(argv)
    args.argv = argv
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    Path(args.store).parent.mkdir(parents=True, exist_ok=True)
    store = Store(args.store)
    protocol = Protocol(epochs=args.epochs)
    options = {"max_train_per_task": args.max_train_per_task}
    scenario = build_scenario(SCENARIO, seed=seeds[0], data_root=args.data_root, **options)

    fisher = fisher_sums(scenario, args.epochs, seeds[0])
    ratio = fisher["ours"] / fisher["theirs"]
    print(f"EWC Fisher sums: cl-bench {fisher['ours']:.4g}, Avalanche {fisher['theirs']:.4g}, R = {ratio:.2f}")
    pair_list = pairs(ratio, protocol.batch_size)
    strategies = [("joint", {}), ("random", {})]
    for p in pair_list:
        for s in (p.ours, p.theirs):
            if s not in strategies:
                strategies.append(s)
    configs: dict[tuple, list[str]] = {}
    for name, hp in strategies:
        for seed in seeds:
            config = RunConfig(name, SCENARIO, seed, dict(hp), protocol, dict(options), [TAG])
            start = time.perf_counter()
            rec = execute(config, store, data_root=args.data_root, checkpoints=False)
            configs.setdefault((name, _key(hp)), []).append(rec.run_id)
            print(
                f"{name:>16} {_hp_text(hp):<28} seed {seed}: A<=2 {100 * np.nanmean(rec.accuracy[-1]):.2f}%"
                f"  ({time.perf_counter() - start:.1f} s)",
                flush=True,
            )
    if args.runs_only:
        return
    results = collect(store, configs)
    load_before = os.getloadavg()
    times = timing(
        build_scenario(SCENARIO, seed=0, data_root=args.data_root, **options), args.timing_epochs, args.timing_rounds
    )
    load_after = os.getloadavg()
    env = environment(args.threads)
    env["load"] = (
        f"Load average (1, 5, 15 min) before timing {', '.join(f'{v:.2f}' for v in load_before)}, "
        f"after {', '.join(f'{v:.2f}' for v in load_after)}."
    )
    text = render(args, pair_list, results, fisher, times, env)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
