"""Import: Avalanche strategies as cl-bench strategies (``--strategy avalanche:NAME``).

``AVALANCHE_STRATEGIES`` lists the Avalanche classes that run task-incrementally on a cl-bench network;
``strategy_class(name)`` builds, once per process, a subclass of ``AvalancheStrategy`` for one of them,
with hyperparameters read from the constructor (``hparams``). ``AvalancheStrategy.train_task`` drives the
Avalanche strategy's ``train(experience)`` on the exported task (``export``), on the cl-bench net seen
through ``network.task_aware_net``, with the protocol plugin (``protocol_plugin``) first in its plugins;
evaluation is cl-bench's, through ``predict(x, t)``.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cl_bench import nets
from cl_bench.avalanche_interop.export import to_avalanche
from cl_bench.avalanche_interop.hparams import hparams_dataclass, parse_hparams
from cl_bench.avalanche_interop.library import PREFIX, import_avalanche
from cl_bench.avalanche_interop.network import task_aware_net
from cl_bench.avalanche_interop.protocol_plugin import protocol_plugin
from cl_bench.registry import get_strategy
from cl_bench.strategy import Strategy, TaskData


@dataclass(frozen=True)
class AvalancheSpec:
    """An Avalanche strategy runnable as ``avalanche:NAME``."""

    cls: str  # class name in avalanche.training
    counterpart: str | None = None  # cl-bench strategy whose clipping threshold applies
    net: str = "base"  # default cl-bench network variant, as the counterpart uses


# The strategies that run task-incrementally on a cl-bench network through the generic adapter, by
# their class names in avalanche.training. The others there need their own model (PNN, AR1, PackNet's
# PackNetModel, ICaRL's feature extractor, L2P's ViT), a generator (generative replay), a QP solver
# (GEM), or are class-incremental by design (GDumb, CoPE, BiC, ER-ACE, ...).
AVALANCHE_STRATEGIES: dict[str, AvalancheSpec] = {
    "Naive": AvalancheSpec("Naive", "sgd"),
    "EWC": AvalancheSpec("EWC", "ewc"),
    "LwF": AvalancheSpec("LwF", "lwf"),
    "LFL": AvalancheSpec("LFL", "lfl", net="lfl"),  # cl-bench's LFL net: no dropout on the features
    "SynapticIntelligence": AvalancheSpec("SynapticIntelligence", "si"),
    "MAS": AvalancheSpec("MAS", "mas"),
    "AGEM": AvalancheSpec("AGEM", "agem"),
    "Replay": AvalancheSpec("Replay", "er"),
    "Cumulative": AvalancheSpec("Cumulative"),
}

ALIASES = {"SI": "SynapticIntelligence"}  # for the "did you mean" of an unknown name only


class AvalancheStrategy(Strategy):
    """An Avalanche training strategy under the cl-bench protocol (subclassed per Avalanche class by
    ``strategy_class``). ``train_task`` drives the Avalanche strategy's ``train(experience)`` on task t;
    evaluation is cl-bench's, through ``predict(x, t)``."""

    avalanche_class: ClassVar[type]
    spec: ClassVar[AvalancheSpec]

    def setup(self) -> None:
        self.avalanche: Any = None  # the Avalanche strategy, built at the first task (it needs the protocol)
        self.benchmark: Any = None
        self.trainer = None
        self.task = -1

    def build_model(self) -> nn.Module:
        return nets.build_network(self.scenario, variant=self.hp.net)

    @property
    def clip_threshold(self) -> float:
        clip = self.trainer.protocol.clip_grad
        return clip if clip is not None else self.clip_grad

    def avalanche_kwargs(self) -> dict[str, Any]:
        """The Avalanche constructor's hyperparameters (every field but cl-bench's own ``net``)."""
        return {k: v for k, v in dataclasses.asdict(self.hp).items() if k != "net"}

    def _build(self, trainer) -> None:
        import_avalanche()
        from avalanche.training.plugins import EvaluationPlugin

        p = trainer.protocol
        if getattr(p, "precision", "fp32") != "fp32":
            raise ValueError(
                f"{self.name}: precision {p.precision!r} is not supported (Avalanche's training "
                f"loop has no autocast); use fp32"
            )
        model = task_aware_net(self.model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No loggers specified": cl-bench records the run itself
            evaluator = EvaluationPlugin(loggers=[])
        plugin = protocol_plugin(self)
        self.avalanche = self.avalanche_class(
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=p.lr),  # plain SGD, as the protocol
            criterion=nn.CrossEntropyLoss(),
            train_mb_size=p.batch_size,
            train_epochs=p.epochs,
            eval_mb_size=p.eval_batch_size,
            device=self.device,
            plugins=[plugin],
            evaluator=evaluator,
            **self.avalanche_kwargs(),
        )
        if self.avalanche.plugins[0] is not plugin:  # the best weights must be back first
            raise RuntimeError(f"{self.name}: Avalanche put its own plugins before the protocol's")
        self.benchmark = to_avalanche(self.scenario, streams=("train",))

    def train_task(self, task: TaskData, trainer) -> None:
        """Avalanche's ``train`` on experience t; the protocol plugin validates, schedules and restores."""
        t = task.index
        self.trainer, self.task = trainer, t
        if self.avalanche is None:
            self._build(trainer)
        p = task.protocol
        self.avalanche.train_epochs, self.avalanche.train_mb_size = p.epochs, p.batch_size
        self.avalanche.eval_mb_size = p.eval_batch_size
        self.avalanche.train(self.benchmark.train_stream[t], eval_streams=[], num_workers=0, pin_memory=False)

    def loss(self, x: Tensor, y: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """Plain cross-entropy of head t: the validation loss (the regularisers live in Avalanche's loop)."""
        logits = self.forward(x, t)
        return F.cross_entropy(logits, y), logits

    def monitoring(self) -> dict[str, Any]:
        avalanche = import_avalanche()
        cls = self.avalanche_class
        return {
            "avalanche": {
                "version": getattr(avalanche, "__version__", "?"),
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "arguments": self.avalanche_kwargs(),
                "net": self.hp.net,
                "clip_grad": self.clip_threshold,
            }
        }


def strategy_names() -> list[str]:
    """Every ``avalanche:NAME`` accepted by ``--strategy``."""
    return [PREFIX + n for n in AVALANCHE_STRATEGIES]


def strategy_class(name: str) -> type[AvalancheStrategy]:
    """The cl-bench strategy class for ``avalanche:NAME`` (or ``NAME``), built once per process."""
    return _strategy_class(name.removeprefix(PREFIX))


@functools.cache
def _strategy_class(short: str) -> type[AvalancheStrategy]:
    spec = AVALANCHE_STRATEGIES.get(short)
    if spec is None:
        near = [n for n in AVALANCHE_STRATEGIES if n.lower() == ALIASES.get(short, short).lower()]
        hint = f" (did you mean {PREFIX}{near[0]}?)" if near else ""
        raise ValueError(f"unknown Avalanche strategy {PREFIX}{short}{hint}; valid: {', '.join(strategy_names())}")
    av = import_avalanche()
    av_cls = getattr(av.training, spec.cls)
    clip = get_strategy(spec.counterpart).clip_grad if spec.counterpart else Strategy.clip_grad
    return type(
        f"Avalanche{short}",
        (AvalancheStrategy,),
        {
            "__doc__": f"Avalanche's {spec.cls} under the cl-bench protocol.",
            "__module__": __name__,
            "name": PREFIX + short,
            "Hparams": hparams_dataclass(short, av_cls, spec.net),
            "clip_grad": clip,
            "avalanche_class": av_cls,
            "spec": spec,
            "parse_hparams": classmethod(parse_hparams),
        },
    )
