"""The strategy plugin interface.

The trainer owns the loop (batching, SGD, lr schedule, clipping, early stopping, best-weight restore,
evaluation). A strategy only says what differs, through these hooks, called in this order::

    build_model()                          once, after the seed is set
    for each task t:
        before_task(t)
        train_task(t, trainer)             default: trainer.fit(self, t, train, valid), which per batch calls
            before_batch(info)             per-batch schedule (HAT's annealing of s)
            loss(x, y, t) -> (loss, logits)  criterion incl. regularisers; also the validation loss
            after_backward(t)              gradient surgery (HAT's Eq. 2 masks, compensation)
            [global grad-norm clipping at ``clip_grad``, SGD step on trainable_parameters(t)]
            after_step(t)                  constraints (HAT's embedding clamp)
            after_epoch(t, log)            per-epoch monitoring (HAT's compression curve)
        after_task(t)                      after the best weights are restored (Fisher, masks, ...)
        predict(x, t) for every tau <= t   accuracy matrix row t

Optional, for per-task checkpoints (cl_bench.checkpoint): ``state_dict()`` / ``load_state_dict(state)``
returning what the strategy keeps outside ``self.model`` between tasks as plain tensors, numbers and
lists. A strategy without its own pair is never resumed from its model alone: a killed run restarts.

Hyperparameters are a dataclass per strategy (``Hparams``), each field declared with ``hparam``: the
CLI, ``cl-bench list``, sweeps and the run record all read it. Strategies are found by name through
``cl_bench.registry`` (``@register_strategy``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cl_bench import nets
from cl_bench.ranges import Range
from cl_bench.values import BadValue, parse_like

if TYPE_CHECKING:
    from cl_bench.scenario import Scenario


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


class Strategy:
    """Base strategy: plain fine-tuning (the reference's SGD). Subclasses override only what differs."""

    name: ClassVar[str] = ""
    Hparams: ClassVar[type] = NoHparams
    clip_grad: ClassVar[float] = 10000.0  # global grad-norm threshold, per method (the authors' code's thresholds)

    def __init__(self, scenario: Scenario, hparams: Any = None, device: str | torch.device = "cpu"):
        self.scenario = scenario
        self.hp = hparams if hparams is not None else self.Hparams()
        self.check_hparams(self.hp)  # also for Hparams built in Python, not parsed
        self.device = torch.device(device)
        self.model: nn.Module = self.build_model().to(self.device)

    # ---- hooks -----------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """The network; by default the reference's base network of the scenario."""
        return nets.build_network(self.scenario)

    def forward(self, x: Tensor, t: int) -> Tensor:
        """Logits of head t."""
        return self.model(x, t)

    def loss(self, x: Tensor, y: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """(training criterion, logits of head t). Also the (regularised) validation loss."""
        logits = self.forward(x, t)
        return F.cross_entropy(logits, y), logits

    def predict(self, x: Tensor, t: int) -> Tensor:
        return self.forward(x, t).argmax(1)

    def before_task(self, t: int) -> None:
        pass

    def train_task(self, t: int, trainer) -> None:
        """Train on task t; strategies with another regime (Joint, PathNet's GA) override this."""
        trainer.fit(self, t, trainer.data(t, "train"), trainer.data(t, "valid"))

    def after_task(self, t: int) -> None:
        pass

    def before_batch(self, info: BatchInfo) -> None:
        pass

    def after_backward(self, t: int) -> None:
        pass

    def after_step(self, t: int) -> None:
        pass

    def after_epoch(self, t: int, log) -> None:
        """After each epoch's validation; ``log`` is the trainer's EpochLog."""

    def trainable_parameters(self, t: int) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def monitoring(self) -> dict[str, Any]:
        """Extra results stored with the run (JSON-serialisable), e.g. HAT's capacity usage. The key
        "validation" is the runner's (the validation accuracy matrix): a strategy must not use it."""
        return {}

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
