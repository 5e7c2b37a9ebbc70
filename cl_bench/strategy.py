"""The strategy plugin interface, version 1.

The trainer owns the continual loop and the protocol (``Trainer.learn``: batching, SGD, lr schedule,
clipping, early stopping, best-weight restore, evaluation). A strategy only says what differs, through
these hooks, called in this order::

    build_model()                          once, after the seed is set: only builds the network
    setup()                                once, the model on its device: create the state kept between tasks
    for each task (a ``TaskData``: index, train, valid, protocol, seen()):
        before_task(task)
        train_task(task, trainer)          default: trainer.fit(self, task.index, task.train, task.valid), per batch:
            before_batch(info)             per-batch schedule (HAT's annealing of s)
            loss(x, y, t) -> (loss, logits)  criterion incl. regularisers; also the validation loss
            after_backward(t)              gradient surgery (HAT's Eq. 2 masks, compensation)
            [global grad-norm clipping at ``clip_grad``, SGD step on trainable_parameters(t)]
            after_step(t)                  constraints (HAT's embedding clamp)
            after_epoch(t, log)            per-epoch monitoring (HAT's compression curve)
        after_task(task)                   after the best weights are restored (Fisher, masks, ...)
        predict(x, t) for every tau <= t   accuracy matrix row t

Hooks are handed what they read: a strategy never reaches into the scenario's other tasks, their test
splits, or the trainer's settings. ``TaskData.seen(split)`` is tasks 0..t of a split in mixed-task
batches (Joint's data); ``task.protocol`` is the training protocol (read only).

State kept between tasks (for per-task checkpoints, cl_bench.runner.checkpoint): name the attributes in
``keeps`` (``keeps = ("anchor", "fisher")``): tensors, numbers, lists, dicts and None, saved after each
task and restored, tensors back on the run's device. A strategy with state of another shape overrides
``save_state()`` / ``load_state(state)`` instead. A strategy that declares neither is never resumed from
its model alone: a killed run restarts from task 1 (``keeps = ()`` says "the model is everything").

Hyperparameters are a dataclass per strategy, each field declared with ``hparam``; write
``class MyMethod(Strategy[MyHparams])`` and ``self.hp`` is typed (``Hparams`` is taken from the type
argument). The CLI, ``cl-bench list``, sweeps and the run record all read it. Strategies are found by
name through ``cl_bench.registry`` (``@register_strategy``, entry points, or ``file.py:Class``).

Strategies written against the interface of 0.1 (an ``__init__`` override instead of ``setup``, hooks
that take ``t: int`` instead of the ``TaskData``, ``state_dict`` / ``load_state_dict`` instead of
``save_state`` / ``load_state``) still run, with a ``FutureWarning`` naming what to change; that
support goes in the next release.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cl_bench import nets
from cl_bench.protocol import Protocol
from cl_bench.ranges import Range
from cl_bench.scenario import Data, Scenario
from cl_bench.values import BadValue, parse_like


def hparam(
    default: Any,
    help: str,
    grid: Iterable[Any] | None = None,
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
    choices: Iterable[Any] | None = None,
):
    """A hyperparameter: its default, one line of help, the grid the reference searched, and its valid
    range: numeric bounds (``at_least``/``above`` and ``at_most``/``below``; a bounded float must also
    be finite) or ``choices``. The range is checked by ``Strategy.parse_hparams`` (so by the CLI, sweep
    files and RunConfig) and by the constructor, and shown by ``cl-bench list`` (``metadata["range"]``)."""
    declared = (at_least, above, at_most, below, choices)
    valid = None
    if any(v is not None for v in declared):
        valid = Range(
            at_least, above, at_most, below, None if choices is None else tuple(choices), optional=default is None
        )
        if not valid.contains(default, type(default)):
            raise ValueError(f"hparam default {default!r} is outside its own range {valid}")
    return field(default=default, metadata={"help": help, "grid": list(grid) if grid else None, "range": valid})


@dataclass
class NoHparams:
    pass


@dataclass
class BatchInfo:
    """Where a training step is: epoch, batch index b (0-based) of n_batches, sample offset of n."""

    epoch: int
    index: int
    n_batches: int
    offset: int
    n_samples: int


class HparamError(BadValue):
    """A hyperparameter name or value a strategy does not accept."""


H = TypeVar("H")

LIFE_CYCLE_HOOKS = ("before_task", "train_task", "after_task")  # the hooks handed a TaskData


@dataclass(frozen=True)
class TaskData:
    """What a strategy may read of the task being learned: its position ``index`` (0-based) of
    ``n_tasks``, its ``train`` and ``valid`` splits, the training ``protocol``; ``seen(split)``: the
    split of tasks 0..index in mixed-task batches (each sample keeps its task id). Never a test split."""

    index: int
    n_tasks: int
    protocol: Protocol
    _scenario: Scenario = field(repr=False, compare=False)  # read only through train, valid and seen()

    @classmethod
    def of(cls, scenario: Scenario, t: int, protocol: Protocol | None = None) -> TaskData:
        return cls(t, len(scenario.tasks), protocol if protocol is not None else Protocol(), scenario)

    @property
    def train(self) -> Data:
        return Data.of(self._scenario.tasks[self.index], "train", self.index)

    @property
    def valid(self) -> Data:
        return Data.of(self._scenario.tasks[self.index], "valid", self.index)

    def seen(self, split: str) -> Data:
        if split not in ("train", "valid"):
            raise ValueError(f"TaskData.seen: split must be 'train' or 'valid', got {split!r}")
        return Data.union(self._scenario.tasks[: self.index + 1], split, list(range(self.index + 1)))


class Strategy(Generic[H]):
    """Base strategy: plain fine-tuning (the reference's SGD). Subclasses override only what differs."""

    name: ClassVar[str] = ""
    Hparams: ClassVar[type] = NoHparams
    clip_grad: ClassVar[float] = 10000.0  # global grad-norm threshold, per method (the authors' code's thresholds)
    keeps: ClassVar[tuple[str, ...] | None] = None  # attributes checkpointed between tasks; None: not resumable
    hp: H
    model: nets.MultiHeadNet  # what build_model returns; strategies with another network redeclare it

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = _type_argument(cls)
        if declared is not None and "Hparams" not in cls.__dict__:
            cls.Hparams = declared  # class MyMethod(Strategy[MyHparams]) declares its hyperparameters
        _adapt_legacy_hooks(cls)

    def __init__(self, scenario: Scenario, hparams: Any = None, device: str | torch.device = "cpu"):
        self.scenario = scenario  # for build_model; hooks get their data as arguments
        self.hp = hparams if hparams is not None else self.Hparams()
        self.check_hparams(self.hp)  # also for Hparams built in Python, not parsed
        self.device = torch.device(device)
        self.model = self.build_model().to(self.device)  # type: ignore[assignment]  # a subclass's own net
        self._trainer: Any = None  # set by Trainer.learn: turns a task index into its TaskData
        self.setup()

    # ---- life cycle --------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """The network, and nothing else; by default the reference's base network of the scenario."""
        return nets.build_network(self.scenario)

    def setup(self) -> None:
        """Create the state kept between tasks (``self.model`` exists, on ``self.device``)."""

    def before_task(self, task: TaskData) -> None:
        pass

    def train_task(self, task: TaskData, trainer: Any) -> None:
        """Train on the task; strategies with another regime (Joint, PathNet's GA) override this."""
        task = self.task_data(task)
        trainer.fit(self, task.index, task.train, task.valid)

    def after_task(self, task: TaskData) -> None:
        pass

    # ---- per step ----------------------------------------------------------------------------------
    def forward(self, x: Tensor, t: int | Tensor) -> Tensor:
        """Logits of head t."""
        return self.model(x, t)

    def loss(self, x: Tensor, y: Tensor, t: int | Tensor) -> tuple[Tensor, Tensor]:
        """(training criterion, logits of head t; ``t`` is a tensor of task ids for Joint's mixed-task
        batches). Also the (regularised) validation loss."""
        logits = self.forward(x, t)
        return F.cross_entropy(logits, y), logits

    def predict(self, x: Tensor, t: int | Tensor) -> Tensor:
        return self.forward(x, t).argmax(1)

    def before_batch(self, info: BatchInfo) -> None:
        pass

    def after_backward(self, t: int) -> None:
        pass

    def after_step(self, t: int) -> None:
        pass

    def after_epoch(self, t: int, log: Any) -> None:
        """After each epoch's validation; ``log`` is the trainer's EpochLog."""

    def trainable_parameters(self, t: int) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def monitoring(self) -> dict[str, Any]:
        """Extra results stored with the run (JSON-serialisable), e.g. HAT's capacity usage. The key
        "validation" is the runner's (the validation accuracy matrix): a strategy must not use it."""
        return {}

    # ---- state between tasks (cl_bench.runner.checkpoint) -----------------------------------------------
    @classmethod
    def resumable(cls) -> bool:
        """Runs can be checkpointed and resumed exactly: the strategy says what it keeps."""
        return cls.keeps is not None or _overrides(cls, "save_state") or _overrides(cls, "state_dict")

    def save_state(self) -> dict[str, Any]:
        """The state kept outside ``self.model``, as plain values: by default the ``keeps`` attributes."""
        if self.keeps is None and _overrides(type(self), "state_dict"):
            return self.state_dict()  # type: ignore[attr-defined]  # a 0.1 strategy
        return {name: getattr(self, name) for name in self.keeps or ()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Put back what ``save_state`` returned (loaded on the CPU): tensors go to ``self.device``."""
        if self.keeps is None and _overrides(type(self), "load_state_dict"):
            self.load_state_dict(state)  # type: ignore[attr-defined]  # a 0.1 strategy
            return
        for name in self.keeps or ():
            setattr(self, name, to_device(state[name], self.device))

    # ---- tasks -------------------------------------------------------------------------------------
    def task_data(self, task: TaskData | int) -> TaskData:
        """The TaskData of ``task`` (a 0.1-style hook may pass its index)."""
        if isinstance(task, TaskData):
            return task
        if self._trainer is not None:
            return self._trainer.task(task)
        return TaskData.of(self.scenario, task)  # outside a run (hooks driven by hand): the default protocol

    # ---- hyperparameters -----------------------------------------------------------------------
    @classmethod
    def hparam_fields(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls.Hparams))

    @classmethod
    def parse_hparams(cls, values: dict[str, Any] | None) -> Any:
        """Hparams from a dict of (possibly string) values, with a clear error on bad names/types."""
        values = dict(values or {})
        fields = {f.name: f for f in cls.hparam_fields()}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise HparamError(
                f"strategy {cls.name!r} has no hyperparameter {', '.join(unknown)}; "
                f"it accepts: {describe_hparams(cls) or 'none'}"
            )
        try:
            parsed = {
                key: parse_like(raw, fields[key].default, f"hyperparameter {key!r} of {cls.name!r}")
                for key, raw in values.items()
            }
        except BadValue as e:
            raise HparamError(str(e)) from None
        hp = cls.Hparams(**parsed)
        cls.check_hparams(hp)
        return hp

    @classmethod
    def check_hparams(cls, hp: Any) -> None:
        """HparamError unless every declared range holds (``hparam(..., at_least=...)``). Strategies with
        constraints between fields extend it (super() first); it runs at parse time and in ``__init__``."""
        if not dataclasses.is_dataclass(hp):
            return  # hand-made hyperparameters (no declarations to check)
        for f in dataclasses.fields(hp):
            valid = f.metadata.get("range")
            if valid is not None:
                valid.check(
                    getattr(hp, f.name), f"hyperparameter {f.name!r} of {cls.name!r}", type(f.default), HparamError
                )


def describe_hparams(cls: type[Strategy]) -> str:
    """``name: type = default`` for each hyperparameter, with its range where one is declared."""
    return ", ".join(
        f"{f.name}: {type(f.default).__name__} = {f.default!r}"
        + (f" ({f.metadata['range']})" if f.metadata.get("range") else "")
        for f in cls.hparam_fields()
    )


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it (inside dicts, lists, tuples) moved to ``device``."""
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value


def _type_argument(cls: type) -> type | None:
    """X of ``class C(Strategy[X])``, if C names one."""
    for base in getattr(cls, "__orig_bases__", ()):
        if get_origin(base) is Strategy and get_args(base) and isinstance(get_args(base)[0], type):
            return get_args(base)[0]
    return None


def _overrides(cls: type, name: str) -> bool:
    return callable(getattr(cls, name, None)) and getattr(cls, name) is not getattr(Strategy, name, None)


# ---- strategies written against the 0.1 interface ----------------------------------------------------
def _adapt_legacy_hooks(cls: type[Strategy]) -> None:
    """Let a 0.1 strategy run, with a FutureWarning per thing to change: an ``__init__`` override (it still
    runs, after setup()), hooks taking the task index ``t`` (they get
    ``task.index``), and ``state_dict`` / ``load_state_dict`` (called by save_state / load_state).
    Hooks of the new form accept an index too, so a 0.1 subclass may call ``super().after_task(t)``."""
    where = f"strategy {cls.__module__}.{cls.__qualname__}"
    if "__init__" in cls.__dict__:
        _deprecated(f"{where} overrides __init__: create its state in setup() instead")
    for name in LIFE_CYCLE_HOOKS:
        hook = cls.__dict__.get(name)
        if hook is None or getattr(hook, "_adapted", False):
            continue
        params = list(inspect.signature(hook).parameters)
        if len(params) > 1 and params[1] != "task":
            _deprecated(f"{where}.{name}({params[1]}, ...) takes a task index: take the TaskData `task` instead")
            setattr(cls, name, _index_hook(hook))
        else:
            setattr(cls, name, _task_hook(hook))
    if "state_dict" in cls.__dict__ or "load_state_dict" in cls.__dict__:
        _deprecated(f"{where} defines state_dict/load_state_dict: declare `keeps` or define save_state/load_state")


def _deprecated(message: str) -> None:
    warnings.warn(f"{message} (the 0.1 form runs until the next release)", FutureWarning, stacklevel=4)


def _index_hook(hook: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(hook)
    def call(self: Strategy, task: TaskData | int, *args: Any) -> None:
        return hook(self, task.index if isinstance(task, TaskData) else task, *args)

    call._adapted = True  # type: ignore[attr-defined]
    return call


def _task_hook(hook: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(hook)
    def call(self: Strategy, task: TaskData | int, *args: Any) -> None:
        if not isinstance(task, TaskData) and args and callable(getattr(args[0], "task", None)):
            task = args[0].task(task)  # train_task(t, trainer) called the 0.1 way: the trainer's TaskData
        return hook(self, self.task_data(task), *args)

    call._adapted = True  # type: ignore[attr-defined]
    return call
