"""Does a device compute what the CPU computes? The cross-device checks behind ``cl-bench doctor`` and
tests/devices.

A check runs one tiny continual-learning sequence (every task: ``before_task``, ``train_task``,
``after_task``, the accuracy row) of a strategy on the device and on the CPU, from the same initial
weights (built on the CPU, then moved), the same batches (the trainer's CPU generator) and the same
strategy draws (PathNet's and Random's CPU generators), and compares the accuracy matrices, every
epoch's losses and the final test logits within a ``Tolerance``. Optionally the run is checkpointed
after a task and resumed on another device (cl_bench.runner.checkpoint), as a killed GPU run resumed on a CPU.

Dropout is switched off in these runs (``without_dropout``): its masks come from the device's own
generator, so CPU and CUDA runs with dropout agree only in distribution, never within rounding.
TF32 is switched off while a check runs (``strict_fp32``): the comparison is of fp32 arithmetic, and
TF32 convolutions (cuDNN's default) would round to 10 bits; the doctor's report says whether runs
use TF32. On CPU against CPU the tolerance is zero: the check is then one of determinism.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cl_bench.registry import get_strategy
from cl_bench.runner import checkpoint as ckpt
from cl_bench.runner import seed_everything
from cl_bench.scenario import Scenario, Split, Task
from cl_bench.strategy import Strategy
from cl_bench.trainer import Protocol, Trainer, resolve_device

# Two epochs per task with a fast lr decay: every code path of the protocol runs (plateau, restore).
TINY_PROTOCOL = Protocol(epochs=2, lr_patience=1, batch_size=32, eval_batch_size=64)

# Smaller than the defaults where a default would make a tiny run slow; each still runs its regime.
TINY_HPARAMS: dict[str, dict[str, Any]] = {
    "pathnet": {"modules": 4, "active": 2, "generations": 2, "population": 2},
    "imm_mode": {"faithful": False},  # the merge and its Fisher run too
}

INPUT_SHAPES = {"mlp": (1, 8, 8), "alexnet": (3, 16, 16)}


# ---- tolerances --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tolerance:
    """How far a device's run may be from the CPU's.

    ``loss``: relative difference of each epoch's training and validation loss. ``logit``: largest
    difference of a final test logit, relative to max(1, largest |logit|). ``samples``: test samples
    per task whose prediction may differ (a logit within rounding of a tie flips one)."""

    loss: float
    logit: float
    samples: int


EXACT = Tolerance(0.0, 0.0, 0)  # CPU against CPU: the same program on the same arithmetic
# fp32 on another device: reductions in another order round differently (~1e-7 relative per
# operation); over the few dozen SGD steps of a tiny run that grows to ~1e-5. 1e-4 leaves 10x of room
# and still catches any real difference (a missed mask, a wrong device, an unseeded draw: >= 1e-2).
FP32 = Tolerance(1e-4, 1e-3, 1)
# bf16 autocast: 8-bit mantissas (relative rounding 4e-3) and autocast op lists that differ between
# the CPU and CUDA; a few steps take losses ~1e-2 apart.
BF16 = Tolerance(5e-2, 1e-1, 3)


def tolerance(device: str | torch.device, precision: str = "fp32", other: str | torch.device = "cpu") -> Tolerance:
    """EXACT when both runs are on the CPU, else FP32 or BF16 by ``precision``."""
    if torch.device(device).type == "cpu" and torch.device(other).type == "cpu":
        return EXACT
    return BF16 if precision == "bf16" else FP32


# ---- tiny runs ---------------------------------------------------------------------------------
def tiny_scenario(
    arch: str = "mlp", n_tasks: int = 2, n_classes: int = 3, n_train: int = 96, n_test: int = 64, seed: int = 0
) -> Scenario:
    """Random uint8 images whose class is written into a few pixels (learnable in a few steps), tasks
    that disagree (so sequential training forgets): a scenario of the given architecture in KBs."""
    shape = INPUT_SHAPES[arch]
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(n_tasks):
        splits = []
        for n in (n_train, n_train // 2, n_test):
            y = torch.randint(n_classes, (n,), generator=g)
            x = torch.randint(0, 60, (n, *shape), generator=g, dtype=torch.uint8)
            flat = x.view(n, -1)
            code = (y + t) % n_classes
            for c in range(n_classes):
                flat[code == c, c * 4 : (c + 1) * 4] = 250
            splits.append(Split(x, y))
        tasks.append(Task(f"tiny{t}", n_classes, *splits, mean=(0.2,) * shape[0], std=(0.3,) * shape[0]))
    return Scenario(f"tiny-{arch}", tasks, shape, arch, seed, {"synthetic": True})


def without_dropout(model: nn.Module) -> nn.Module:
    """Every nn.Dropout of ``model`` at p = 0 (see the module docstring); returns ``model``."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """No TF32 in matmuls and convolutions while the block runs (a no-op on CPU)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@dataclass
class SequenceResult:
    """What a tiny run produced: comparable across devices (everything on the CPU)."""

    device: str
    accuracy: np.ndarray  # (T, T), row t after task t
    train_losses: list[float]
    valid_losses: list[float]
    logits: list[Tensor] | None  # per task, its test logits after the last task; None: no network
    seconds: float
    resumed_on: str | None = None
    strategy: Strategy | None = field(default=None, repr=False)  # the trained strategy, for inspection


def build(
    strategy: str,
    scenario: Scenario,
    device: torch.device,
    hparams: dict[str, Any] | None = None,
    seed: int = 0,
    dropout: bool = False,
) -> Strategy:
    """The strategy on ``device``, seeded as ``runner.execute`` seeds it (weights built on the CPU)."""
    cls = get_strategy(strategy)
    hp = cls.parse_hparams({**TINY_HPARAMS.get(strategy, {}), **(hparams or {})})
    seed_everything(seed)
    algo = cls(scenario, hp, device=device)
    if not dropout:
        without_dropout(algo.model)
    return algo


def run_sequence(
    strategy: str,
    device: str | torch.device = "cpu",
    *,
    scenario: Scenario | None = None,
    protocol: Protocol = TINY_PROTOCOL,
    hparams: dict[str, Any] | None = None,
    seed: int = 0,
    dropout: bool = False,
    resume_after: int | None = None,
    resume_on: str | torch.device | None = None,
) -> SequenceResult:
    """Train every task of ``scenario`` (default: ``tiny_scenario()``) in order on ``device``.

    With ``resume_after=k`` the run is checkpointed after task k (``checkpoint.save``), and a freshly
    built strategy and trainer on ``resume_on`` load it (``checkpoint.load``/``restore``) and train
    the remaining tasks, as ``runner.execute`` resumes a killed run."""
    dev = resolve_device(device)
    sc = scenario if scenario is not None else tiny_scenario()
    started = time.perf_counter()
    algo = build(strategy, sc.to(dev), dev, hparams, seed, dropout)
    trainer = Trainer(algo.scenario, protocol, seed=seed)
    trainer.prepare(algo)
    T = len(sc.tasks)
    resume = resume_after is not None and resume_after < T - 1
    acc, _ = trainer.learn(algo, stop=resume_after + 1 if resume else None)
    if resume:
        next_task = resume_after + 1
        on = resolve_device(resume_on or dev)
        algo, trainer = _resumed(algo, trainer, acc, next_task, on, strategy, sc, protocol, hparams, seed, dropout)
        trainer.learn(algo, next_task, acc)
    return SequenceResult(
        str(dev),
        acc,
        [h.train_loss for h in trainer.history],
        [h.valid_loss for h in trainer.history],
        final_logits(algo, trainer),
        time.perf_counter() - started,
        None if resume_after is None else str(algo.device),
        algo,
    )


def _resumed(algo, trainer, acc, next_task, dev, strategy, sc, protocol, hparams, seed, dropout):
    """Checkpoint after the task just finished and continue from the file on ``dev``."""
    refusal = ckpt.resume_refusal(type(algo))
    if refusal:
        raise ValueError(refusal)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.pt"
        if not ckpt.save(
            path,
            run_id="device-check",
            code_version="",
            next_task=next_task,
            strategy=algo,
            trainer=trainer,
            accuracy=acc,
        ):
            raise OSError(f"could not write a checkpoint to {path}")
        payload = ckpt.load(path, "device-check")
    if payload is None:
        raise OSError(f"the checkpoint just written to {path} does not load back")
    fresh = build(strategy, sc.to(dev), dev, hparams, seed, dropout)
    fresh_trainer = Trainer(fresh.scenario, protocol, seed=seed)
    fresh_trainer.prepare(fresh)
    ckpt.restore(payload, fresh, fresh_trainer, acc)
    return fresh, fresh_trainer


@torch.no_grad()
def final_logits(algo: Strategy, trainer: Trainer) -> list[Tensor] | None:
    """Each task's test logits with its own head, in eval mode, on the CPU (None: no parameters)."""
    if not any(True for _ in algo.model.parameters()):
        return None
    algo.model.eval()
    out = []
    for t in range(len(algo.scenario.tasks)):
        data = trainer.data(t, "test")
        x, _, task = data.batch(torch.arange(len(data), device=data.y.device))
        with trainer.autocast(data.y.device):
            out.append(algo.forward(x, task).float().cpu())
    return out


# ---- comparison --------------------------------------------------------------------------------
@dataclass
class Agreement:
    """How far two runs are apart, and what of that exceeds the tolerance (empty: they agree)."""

    loss: float  # largest relative difference of an epoch's loss
    logit: float  # largest logit difference relative to max(1, largest |logit|)
    samples: int  # most test predictions of one task that differ
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        return f"loss {self.loss:.1e}, logit {self.logit:.1e}, predictions {self.samples}"


def compare(a: SequenceResult, b: SequenceResult, tol: Tolerance, n_test: int | list[int]) -> Agreement:
    """``a`` against ``b`` within ``tol``; ``n_test``: test samples per task (to count predictions)."""
    problems: list[str] = []
    loss = logit = 0.0
    samples = 0
    if len(a.train_losses) != len(b.train_losses):
        problems.append(
            f"{len(a.train_losses)} epochs on {a.device}, {len(b.train_losses)} on {b.device} "
            f"(the lr schedule took another turn)"
        )
    else:
        for x, y in zip(a.train_losses + a.valid_losses, b.train_losses + b.valid_losses):
            if not (math.isfinite(x) and math.isfinite(y)):
                problems.append(f"a loss is not finite ({x} on {a.device}, {y} on {b.device})")
                break
            loss = max(loss, abs(x - y) / max(1.0, abs(y)))
        if loss > tol.loss:
            problems.append(f"losses differ by {loss:.2e} (relative) > {tol.loss:g}")
    if (a.logits is None) != (b.logits is None):
        problems.append("one run has logits, the other none")
    elif a.logits is not None:
        for la, lb in zip(a.logits, b.logits):
            if la.shape != lb.shape:
                problems.append(f"logits of shape {tuple(la.shape)} and {tuple(lb.shape)}")
                break
            scale = max(1.0, float(lb.abs().max()))
            logit = max(logit, float((la - lb).abs().max()) / scale)
        if logit > tol.logit:
            problems.append(f"test logits differ by {logit:.2e} (relative) > {tol.logit:g}")
    counts = [n_test] * len(a.accuracy) if isinstance(n_test, int) else list(n_test)
    finished = ~np.isnan(b.accuracy)
    if not np.array_equal(finished, ~np.isnan(a.accuracy)):
        problems.append("the accuracy matrices have different finished entries")
    else:
        diff = np.abs(a.accuracy - b.accuracy)[finished]
        n = np.broadcast_to(np.asarray(counts, dtype=float)[None, :], a.accuracy.shape)[finished]
        samples = int(np.rint((diff * n).max())) if diff.size else 0
        if samples > tol.samples:
            problems.append(f"accuracies differ by {samples} test predictions > {tol.samples}")
    return Agreement(loss, logit, samples, problems)


def n_test_samples(scenario: Scenario) -> list[int]:
    return [len(task.test) for task in scenario.tasks]


def check_against_cpu(
    strategy: str,
    device: str | torch.device,
    *,
    arch: str = "mlp",
    precision: str = "fp32",
    resume_after: int | None = None,
    resume_on: str | torch.device | None = None,
    hparams: dict[str, Any] | None = None,
) -> tuple[Agreement, SequenceResult, SequenceResult]:
    """One tiny sequence on ``device`` (resumed on ``resume_on`` after task ``resume_after`` if given)
    against the uninterrupted CPU run: (agreement, device's run, CPU's run). TF32 is off meanwhile."""
    sc = tiny_scenario(arch)
    protocol = TINY_PROTOCOL.replace(precision=precision)
    with strict_fp32():
        cpu = run_sequence(strategy, "cpu", scenario=sc, protocol=protocol, hparams=hparams)
        other = run_sequence(
            strategy,
            device,
            scenario=sc,
            protocol=protocol,
            hparams=hparams,
            resume_after=resume_after,
            resume_on=resume_on,
        )
    devices = {str(device), str(resume_on or device)}
    tol = EXACT if all(torch.device(d).type == "cpu" for d in devices) else tolerance("cuda", precision)
    return compare(other, cpu, tol, n_test_samples(sc)), other, cpu
