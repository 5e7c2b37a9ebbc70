"""The training protocol of the HAT authors' code, owned here once for every strategy.

Per task: plain SGD at lr 0.05 (no momentum, no weight decay), batches of 64 sliced from one random
permutation per epoch (the last batch smaller), global grad-norm clipping at the strategy's
threshold, lr / 3 after 5 epochs without improvement of the (regularised) validation loss, stop when
lr < 1e-4 or after 200 epochs, and restore the best-validation weights at the end.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cl_bench.protocol import (  # noqa: F401 (re-exported: the protocol's settings were defined here)
    LATER_SETTINGS,
    PRECISIONS,
    PRESETS,
    PROTOCOL_RANGES,
    Protocol,
    protocol_from_dict,
)
from cl_bench.scenario import Data, Scenario
from cl_bench.strategy import BatchInfo, Strategy, TaskData


def resolve_device(name: str | torch.device) -> torch.device:
    """The compute device, with a clear error where it does not exist (the one place that checks)."""
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"bad device {name!r} ({e}); use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} asked for, but torch sees no CUDA GPU (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda}); use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif device.type != "cpu":
        raise ValueError(f"device {name!r} is not supported; use cpu, cuda or cuda:N")
    return device


class DivergedError(RuntimeError):
    """The loss became NaN or infinite, or exploded above LOSS_LIMIT; the run is stored as failed with
    this message (task and epoch counted from 1, the losses, the lr and the reason)."""


# A loss above this is a diverged run even while it is still finite: lr=1e6 reached 1.7e30 and stayed
# finite. Legitimate losses are orders of magnitude smaller: cross-entropy is a few units (ln 100 = 4.6
# at chance on 100 classes), HAT's c R is at most c, LwF's distillation is at most ~12 per old head; the
# penalties of EWC (lambda up to 50,000), IMM and LFL (summed over the batch) start at 0 at each task's
# anchor and are minimised with the cross-entropy, so they stay near its size unless SGD is unstable.
# The largest plausible one, LFL's sum over 64 samples x 2048 features at lambda = 0.1, is ~1e5 even
# with a mean squared feature change of 10. An absolute bound is used rather than one relative to the
# task's first epoch, since an lr too large explodes within the first epoch already (lr=5 on a tiny
# MLP: 6e3 after one epoch, 1.6e11 after two). Losses grow geometrically once unstable, so a bound
# this high costs at most an epoch or two over a tighter one.
LOSS_LIMIT = 1e8


def check_divergence(t: int, epoch: int, lr: float, train_loss: float, valid_loss: float) -> None:
    """DivergedError if either loss of task ``t``'s epoch ``epoch`` (both 0-based) is not finite or above
    LOSS_LIMIT; the message counts from 1, like the accuracy matrices."""
    if math.isfinite(train_loss) and math.isfinite(valid_loss):
        if max(train_loss, valid_loss) <= LOSS_LIMIT:
            return
        reason = f"exploded above {LOSS_LIMIT:g}"
    else:
        reason = "is not finite"
    raise DivergedError(
        f"loss {reason} at task {t + 1} epoch {epoch + 1} (train {train_loss:.4g}, valid {valid_loss:.4g}, lr {lr:g})"
    )


@dataclass
class EpochLog:
    task: int
    epoch: int
    lr: float
    train_loss: float
    valid_loss: float
    valid_acc: float
    seconds: float
    train_eval_loss: float | None = None
    train_eval_acc: float | None = None


class Listener:
    """Told of the continual loop's progress by ``Trainer.learn``: the runner's checkpoints, loggers and
    the command line's progress are listeners. Override what you need; each is called in list order."""

    def epoch_end(self, log: EpochLog) -> None:
        """After each epoch's validation."""

    def task_end(self, t: int, accuracy: np.ndarray, valid_accuracy: np.ndarray) -> None:
        """After task ``t`` is learned and rows ``t`` of both accuracy matrices are measured."""


class Callbacks(Listener):
    """Plain functions as a listener: ``on_epoch(log)`` after each epoch, ``on_task(t, accuracy)`` after
    each task (the Python API's callbacks)."""

    def __init__(
        self,
        on_epoch: Callable[[EpochLog], None] | None = None,
        on_task: Callable[[int, np.ndarray], None] | None = None,
    ):
        self.on_epoch, self.on_task = on_epoch, on_task

    def epoch_end(self, log: EpochLog) -> None:
        if self.on_epoch is not None:
            self.on_epoch(log)

    def task_end(self, t: int, accuracy: np.ndarray, valid_accuracy: np.ndarray) -> None:
        if self.on_task is not None:
            self.on_task(t, accuracy)


class Trainer:
    """Runs the protocol for a strategy over a scenario: ``learn`` is the continual loop. Public pieces,
    for strategies that compose their own regime (PathNet's GA): ``epoch``, ``evaluate``, ``fit``."""

    def __init__(
        self,
        scenario: Scenario,
        protocol: Protocol | None = None,
        seed: int = 0,
        listeners: Sequence[Listener] = (),
    ):
        self.scenario = scenario
        self.protocol = protocol if protocol is not None else Protocol()
        self.generator = torch.Generator().manual_seed(seed)  # batch shuffling only
        self.listeners = list(listeners)
        self.history: list[EpochLog] = []

    # ---- the continual loop ------------------------------------------------------------------------
    def learn(
        self,
        strategy: Strategy,
        first_task: int = 0,
        accuracy: np.ndarray | None = None,
        valid_accuracy: np.ndarray | None = None,
        stop: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Learn tasks ``first_task``..``stop - 1`` (default: to the last) in order; after each, measure every
        task so far on its test split (the accuracy matrix A[t, tau]) and its validation split (what
        selection reads), then tell the listeners. Rows before ``first_task`` (a resumed run) and those
        a failure part-way leaves unfinished stay as given (NaN)."""
        T = len(self.scenario.tasks)
        accuracy = np.full((T, T), np.nan) if accuracy is None else accuracy
        valid_accuracy = np.full((T, T), np.nan) if valid_accuracy is None else valid_accuracy
        strategy._trainer = self
        for t in range(first_task, T if stop is None else stop):
            task = self.task(t)
            strategy.before_task(task)
            strategy.train_task(task, self)
            strategy.after_task(task)
            for tau in range(t + 1):
                accuracy[t, tau] = self.test_accuracy(strategy, tau)
                valid_accuracy[t, tau] = self.valid_accuracy(strategy, tau)
            for listener in self.listeners:
                listener.task_end(t, accuracy, valid_accuracy)
        return accuracy, valid_accuracy

    def task(self, t: int) -> TaskData:
        """What the strategy's hooks may read of task ``t`` (never its test split)."""
        return TaskData.of(self.scenario, t, self.protocol)

    def data(self, t: int, split: str) -> Data:
        return Data.of(self.scenario.tasks[t], split, t)

    # ---- primitives ------------------------------------------------------------------------------
    def train_epoch(self, strategy: Strategy, t: int, data: Data, lr: float, epoch: int = 0) -> float:
        """One pass over ``data`` in shuffled batches; returns the mean training loss."""
        model = strategy.model
        model.train()
        params = strategy.trainable_parameters(t)
        clip = self.protocol.clip_grad if self.protocol.clip_grad is not None else strategy.clip_grad
        n, bs = len(data), self.protocol.batch_size
        order = torch.randperm(n, generator=self.generator).to(data.y.device)
        total = torch.zeros((), device=data.y.device)  # summed on the device: no sync per batch
        n_batches = math.ceil(n / bs)
        for b in range(n_batches):
            idx = order[b * bs : (b + 1) * bs]
            x, y, task = data.batch(idx)
            strategy.before_batch(BatchInfo(epoch, b, n_batches, b * bs, n))
            with self.autocast(data.y.device):
                loss, _ = strategy.loss(x, y, task)
            for p in params:
                p.grad = None
            loss.backward()
            strategy.after_backward(t)
            clip_and_step(params, lr, clip)
            strategy.after_step(t)
            total += loss.detach() * len(idx)
        return total.item() / n

    def autocast(self, device: torch.device):
        """bf16 autocast when the protocol asks for it (forward passes only; weights, gradients and
        the SGD step stay fp32)."""
        if self.protocol.precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, strategy: Strategy) -> None:
        """Put the strategy's model in the protocol's memory format (once, before training)."""
        if self.protocol.channels_last:
            strategy.model.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def evaluate(self, strategy: Strategy, t: int, data: Data) -> tuple[float, float]:
        """(mean loss with the strategy's full criterion, accuracy) in eval mode."""
        strategy.model.eval()
        loss_sum = torch.zeros((), device=data.y.device)
        correct = torch.zeros((), device=data.y.device)
        bs = self.protocol.eval_batch_size
        for start in range(0, len(data), bs):
            idx = torch.arange(start, min(start + bs, len(data)), device=data.y.device)
            x, y, task = data.batch(idx)
            with self.autocast(data.y.device):
                loss, logits = strategy.loss(x, y, task)
            loss_sum += loss.float() * len(idx)
            correct += (logits.argmax(1) == y).sum()
        return loss_sum.item() / len(data), correct.item() / len(data)

    def test_accuracy(self, strategy: Strategy, t: int) -> float:
        """Accuracy on task t's test split with its own head (and the strategy's ``predict``)."""
        return self.accuracy(strategy, self.data(t, "test"))

    def valid_accuracy(self, strategy: Strategy, t: int) -> float:
        """Accuracy on task t's validation split, as ``test_accuracy``: what selection may use."""
        return self.accuracy(strategy, self.data(t, "valid"))

    @torch.no_grad()
    def accuracy(self, strategy: Strategy, data: Data) -> float:
        """Accuracy of ``strategy.predict`` on ``data``, in eval mode."""
        strategy.model.eval()
        correct = torch.zeros((), dtype=torch.long, device=data.y.device)  # no sync per batch
        bs = self.protocol.eval_batch_size
        for start in range(0, len(data), bs):
            idx = torch.arange(start, min(start + bs, len(data)), device=data.y.device)
            x, y, task = data.batch(idx)
            with self.autocast(data.y.device):
                correct += (strategy.predict(x, task) == y).sum()
        return correct.item() / len(data)

    def epoch(self, strategy: Strategy, t: int, train: Data, valid: Data, lr: float, epoch: int) -> EpochLog:
        """One protocol epoch: train on ``train`` at ``lr``, then validate and log (``end_epoch``)."""
        start = time.perf_counter()
        train_loss = self.train_epoch(strategy, t, train, lr, epoch)
        return self.end_epoch(strategy, t, train, valid, lr, epoch, train_loss, start)

    def end_epoch(
        self,
        strategy: Strategy,
        t: int,
        train: Data,
        valid: Data,
        lr: float,
        epoch: int,
        train_loss: float,
        start: float,
    ) -> EpochLog:
        """After an epoch's training (here or in another loop: the Avalanche adapter): validate with the
        strategy's full criterion, stop a diverged run, and log the epoch to the history and the hooks."""
        train_eval = self.evaluate(strategy, t, train) if self.protocol.eval_train_each_epoch else (None, None)
        valid_loss, valid_acc = self.evaluate(strategy, t, valid)
        check_divergence(t, epoch, lr, train_loss, valid_loss)
        log = EpochLog(t, epoch + 1, lr, train_loss, valid_loss, valid_acc, time.perf_counter() - start, *train_eval)
        self.history.append(log)
        strategy.after_epoch(t, log)
        for listener in self.listeners:
            listener.epoch_end(log)
        return log

    # ---- the protocol ------------------------------------------------------------------------------
    def fit(self, strategy: Strategy, t: int, train: Data, valid: Data) -> None:
        """Train until lr < lr_min or ``epochs``; leave the best-validation weights in the model."""
        model = strategy.model
        schedule = Plateau.start(self.protocol)
        best_state = snapshot(model)
        for epoch in range(self.protocol.epochs):
            log = self.epoch(strategy, t, train, valid, schedule.lr, epoch)
            if schedule.update(log.valid_loss):
                best_state = snapshot(model)
            if schedule.stopped:
                break
        model.load_state_dict(best_state)


@dataclass
class Plateau:
    """The protocol's lr schedule, the one place it is written: after ``patience`` epochs without a
    lower validation loss, lr /= ``factor`` (and patience refills); training stops once lr < ``lr_min``.
    ``update`` returns True when the loss is a new best (the caller keeps those weights)."""

    lr: float
    factor: float
    patience: int
    lr_min: float
    best: float = math.inf
    left: int = -1  # epochs without improvement still allowed; -1: a full ``patience``

    def __post_init__(self):
        if self.left < 0:
            self.left = self.patience

    @classmethod
    def start(cls, protocol: Protocol, lr: float | None = None) -> Plateau:
        return cls(protocol.lr if lr is None else lr, protocol.lr_factor, protocol.lr_patience, protocol.lr_min)

    @property
    def stopped(self) -> bool:
        return self.lr < self.lr_min

    def update(self, valid_loss: float) -> bool:
        if valid_loss < self.best:
            self.best, self.left = valid_loss, self.patience
            return True
        self.left -= 1
        if self.left <= 0:
            self.lr /= self.factor
            self.left = self.patience
        return False

    def restart(self) -> Plateau:
        """The same lr with a full patience and no best yet (PathNet's next generation of paths)."""
        return Plateau(self.lr, self.factor, self.patience, self.lr_min)


@torch.no_grad()
def clip_and_step(params: Sequence[torch.nn.Parameter], lr: float, max_norm: float) -> None:
    """Global grad-norm clipping at ``max_norm``, then a plain SGD step (no momentum, no decay).

    The arithmetic of ``torch.nn.utils.clip_grad_norm_`` followed by ``torch.optim.SGD.step``:
    gradients are multiplied by min(1, max_norm / (norm + 1e-6)) and then ``p -= lr * g``. Faster on
    CPU in two ways that leave the result unchanged: the squared norm is a BLAS dot product per
    tensor (~2x faster here than vector_norm; it only decides whether to clip), and the multiply by
    the coefficient is skipped when it is exactly 1, i.e. almost always (torch always multiplies, to
    avoid a device sync). On CUDA the sync would cost more than the multiply, so torch's path runs.
    """
    params = [p for p in params if p.grad is not None]
    if not params:
        return
    grads: list[Tensor] = [p.grad for p in params if p.grad is not None]
    if grads[0].device.type == "cpu":
        squares: float = sum(
            float(torch.dot(g.view(-1), g.view(-1))) if g.is_contiguous() else float(torch.linalg.vector_norm(g)) ** 2
            for g in grads
        )
        coefficient = max_norm / (math.sqrt(squares) + 1e-6)
        if not coefficient >= 1.0:  # also when the norm is inf or NaN, as torch
            torch._foreach_mul_(grads, coefficient)
    else:
        torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    torch._foreach_add_(list(params), grads, alpha=-lr)  # what SGD(lr).step() does without momentum


def snapshot(model: torch.nn.Module) -> dict[str, Tensor]:
    """A copy of the model's weights and buffers (``load_state_dict`` restores it): the best weights."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
