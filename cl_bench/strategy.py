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
CLI, ``cl-bench list``, sweeps and the run record all read it.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cl_bench import nets
from cl_bench.scenario import Scenario


def hparam(default: Any, help: str, grid: Iterable[Any] | None = None):
    """A hyperparameter: its default, one line of help, and the grid the reference searched."""
    return field(default=default, metadata={"help": help, "grid": list(grid) if grid else None})


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


class HparamError(ValueError):
    pass


class Strategy:
    """Base strategy: plain fine-tuning (the reference's SGD). Subclasses override only what differs."""

    name: ClassVar[str] = ""
    Hparams: ClassVar[type] = NoHparams
    clip_grad: ClassVar[float] = 10000.0  # global grad-norm threshold, per approach (reference §3)

    def __init__(self, scenario: Scenario, hparams: Any = None, device: str | torch.device = "cpu"):
        self.scenario = scenario
        self.hp = hparams if hparams is not None else self.Hparams()
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
        """Extra results stored with the run (JSON-serialisable), e.g. HAT's capacity usage."""
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
            raise HparamError(f"strategy {cls.name!r} has no hyperparameter {', '.join(unknown)}; "
                              f"it accepts: {describe_hparams(cls) or 'none'}")
        parsed = {}
        for key, raw in values.items():
            f = fields[key]
            kind = type(f.default)
            try:
                parsed[key] = _coerce(raw, kind)
            except (TypeError, ValueError):
                raise HparamError(f"hyperparameter {key!r} of {cls.name!r} must be {kind.__name__}, "
                                  f"got {raw!r}") from None
        return cls.Hparams(**parsed)


def _coerce(raw: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("1", "true", "yes", "on"):
            return True
        if str(raw).lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)
    if kind is float and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    if kind is int and isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, kind):
        return raw
    if isinstance(raw, str) and kind in (int, float, str):
        return kind(raw)
    raise TypeError(raw)


def describe_hparams(cls: type[Strategy]) -> str:
    return ", ".join(f"{f.name}: {type(f.default).__name__} = {f.default!r}" for f in cls.hparam_fields())


# ---- registry ------------------------------------------------------------------------------------
STRATEGIES: dict[str, type[Strategy]] = {}
ENTRY_POINT_GROUP = "cl_bench.strategies"


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a strategy available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a class attribute `name`")
    STRATEGIES[cls.name] = cls
    return cls


_DISCOVERED = False


def _discover() -> None:
    """Import the built-ins and the entry points once per process (entry-point scans cost ~35 ms)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    importlib.import_module("cl_bench.strategies")  # built-ins register on import
    from importlib.metadata import entry_points
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in STRATEGIES:
            cls = ep.load()
            STRATEGIES.setdefault(getattr(cls, "name", "") or ep.name, cls)
    _DISCOVERED = True


def load_from_file(spec: str) -> type[Strategy]:
    """``path/to/file.py:ClassName`` -> the class (a third-party strategy not installed as a package)."""
    path, _, cls_name = spec.rpartition(":")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"strategy file {file} does not exist (expected path/to/file.py:ClassName)")
    mod_name = f"cl_bench_user_{file.stem}"
    module_spec = importlib.util.spec_from_file_location(mod_name, file)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    module_spec.loader.exec_module(module)
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ValueError(f"{file} has no Strategy subclass named {cls_name!r}")
    return cls


def get_strategy(name: str) -> type[Strategy]:
    """A strategy class by registered name, entry point, ``file.py:ClassName``, or ``avalanche:NAME``
    (an Avalanche strategy under the cl-bench protocol; cl_bench.avalanche_interop, imported only here)."""
    if name.startswith("avalanche:"):
        from cl_bench import avalanche_interop
        return avalanche_interop.strategy_class(name)
    if name.endswith(".py") or ".py:" in name:
        return load_from_file(name)
    _discover()
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; valid: {', '.join(sorted(STRATEGIES))} "
                         f"(and avalanche:NAME, e.g. avalanche:EWC)")
    return STRATEGIES[name]


def all_strategies() -> dict[str, type[Strategy]]:
    """The registered strategies (built-ins and entry points). ``avalanche:NAME`` strategies are not
    listed: get_strategy resolves them on demand (cl_bench.avalanche_interop.strategy_names())."""
    _discover()
    return dict(sorted(STRATEGIES.items()))
