"""Avalanche interop: cl-bench scenarios as Avalanche benchmarks, Avalanche strategies as cl-bench strategies.

Needs the ``[avalanche]`` extra (avalanche-lib 0.6.0). Avalanche is imported only inside the functions
below (importing it takes seconds and pulls in many libraries), so ``import cl_bench`` and the CLI never
load it; ``cl_bench.registry.get_strategy`` imports this module only for names starting ``avalanche:`` (the
prefix hook declared as an entry point in setup.cfg).

**Export.** ``to_avalanche(scenario)`` is a task-incremental Avalanche benchmark with the scenario's
splits as streams (``train_stream``, ``valid_stream``, ``test_stream``), one experience per task,
task label = task index, holding float tensors normalised by cl-bench's own code path
(``Data.of(task, split, t).batch``), so a sample is bit-for-bit what cl-bench trains on.

**Import.** ``--strategy avalanche:NAME`` (``AVALANCHE_STRATEGIES``) runs Avalanche's strategy class
inside the cl-bench runner: the accuracy matrix, rho and the store are the same as for built-in
strategies. Hyperparameters are the class's scalar constructor arguments (``-p ewc_lambda=5000``),
plus ``net``, the cl-bench network variant. What maps onto the cl-bench protocol (reference §3):

| cl-bench protocol | in the Avalanche run |
|---|---|
| network | the strategy's cl-bench net (``nets.build_network``), seen through ``TaskAwareNet`` |
| plain SGD, lr, batch size, epochs cap | ``torch.optim.SGD(lr)``, ``train_mb_size``, ``train_epochs`` |
| global grad-norm clipping | in ``before_update``, at the threshold of the cl-bench counterpart |
| per-epoch validation, lr / 3 after 5 bad epochs, stop at lr < 1e-4 | ``ProtocolPlugin.after_training_epoch`` |
| best-validation weights restored | ``ProtocolPlugin.after_training_exp``, before the method's own hooks |
| evaluation, accuracy matrix | ``predict(x, t)`` on the cl-bench test splits |

What does not map: the validation loss is the plain cross-entropy of the task's head (Avalanche adds
its regularisers to the loss only inside the training loop, so the regularised validation loss the
reference early-stops on is not available); batches are shuffled by Avalanche's DataLoader (torch's
global generator, not the trainer's); the forward passes are fp32 (no ``precision=bf16``); and a run
has no per-task checkpoint (no ``state_dict``): a killed run restarts. Method-level differences (EWC's Fisher, LwF's distillation, LFL's penalty) are
documented in ``examples/avalanche_crosscheck.py`` and the README.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
import time
import types
import typing
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cl_bench import nets
from cl_bench.scenario import Data, Scenario
from cl_bench.strategy import HparamError, Strategy
from cl_bench.values import BadValue, parse_value
from cl_bench.registry import get_strategy
from cl_bench.trainer import DivergedError, EpochLog

PREFIX = "avalanche:"
INSTALL_HINT = "pip install cl-bench[avalanche]"
PAD_LOGIT = -1000.0  # logits of units a task's head lacks in a mixed-task batch (Avalanche's mask value)


class AvalancheNotInstalled(ImportError, ValueError):
    """Avalanche is not importable. A ValueError too, so the CLI and the report treat it like an
    unknown strategy (a clear message, not a traceback)."""


@dataclass(frozen=True)
class AvalancheSpec:
    """An Avalanche strategy runnable as ``avalanche:NAME``."""

    cls: str  # class name in avalanche.training
    counterpart: str | None = None  # cl-bench strategy whose clipping threshold (reference §3) applies
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
    "SynapticIntelligence": AvalancheSpec("SynapticIntelligence"),
    "MAS": AvalancheSpec("MAS"),
    "AGEM": AvalancheSpec("AGEM"),
    "Replay": AvalancheSpec("Replay"),
    "Cumulative": AvalancheSpec("Cumulative"),
}

ALIASES = {"SI": "SynapticIntelligence"}  # for the "did you mean" of an unknown name only

# Constructor arguments the adapter sets from the cl-bench protocol (never hyperparameters).
FRAMEWORK_ARGS = frozenset({"self", "model", "optimizer", "criterion", "train_mb_size", "train_epochs",
                            "eval_mb_size", "device", "plugins", "evaluator", "eval_every", "peval_mode"})
SCALARS = (float, int, bool, str)


def import_avalanche():
    """The ``avalanche`` package, or AvalancheNotInstalled with the install command."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # import-time notices (qpsolvers' "no QP solver", ...)
            import avalanche.benchmarks.utils
            import avalanche.training
    except ImportError as e:
        raise AvalancheNotInstalled(f"Avalanche strategies and benchmarks need avalanche-lib: "
                                    f"{INSTALL_HINT} ({e})") from e
    return avalanche


# ---- export ---------------------------------------------------------------------------------------
def task_dataset(task, split: str, t: int):
    """One split of task ``t`` as an Avalanche classification dataset of ``(x, y, t)`` samples: the
    floats cl-bench's ``Data.batch`` gives (the task's per-channel normalisation), labels, task label t."""
    import_avalanche()
    from avalanche.benchmarks.utils import (
        ConstantSequence,
        DataAttribute,
        TaskAwareSupervisedClassificationDataset,
    )

    data = Data.of(task, split, t)
    x, y, _ = data.batch(torch.arange(len(data), device=data.y.device))
    return TaskAwareSupervisedClassificationDataset(
        [torch.utils.data.TensorDataset(x, y)],
        data_attributes=[DataAttribute(y, "targets"),
                         DataAttribute(ConstantSequence(t, len(y)), "targets_task_labels",
                                       use_in_getitem=True)])


def to_avalanche(scenario: Scenario, streams: Sequence[str] = ("train", "valid", "test")):
    """The scenario as a task-incremental Avalanche benchmark (a ``CLScenario``).

    One stream per split (``benchmark.train_stream`` ...), experience t = task t with task label t,
    ``classes_in_this_experience`` set. Where a task validates on its training set (the MNIST setups),
    the valid stream shares the train stream's datasets. Tensors stay on the scenario's device.
    """
    import_avalanche()
    from avalanche.benchmarks.scenarios import (
        benchmark_from_datasets,
        with_classes_timeline,
        with_task_labels,
    )

    bad = [s for s in streams if s not in ("train", "valid", "test")]
    if bad:
        raise ValueError(f"unknown split(s) {bad}; valid: train, valid, test")
    datasets: dict[str, list] = {s: [] for s in streams}
    for t, task in enumerate(scenario.tasks):
        made = {}
        for s in streams:
            shared = "train" if s == "valid" and task.valid.x is task.train.x else s
            if shared not in made:
                made[shared] = task_dataset(task, shared, t)
            datasets[s].append(made[shared])
    return with_classes_timeline(with_task_labels(benchmark_from_datasets(**datasets)))


# ---- import: the model ----------------------------------------------------------------------------
@functools.cache
def _task_aware_net_class() -> type:
    import_avalanche()
    from avalanche.models import MultiTaskModule
    from avalanche.models.base_model import BaseModel

    class TaskAwareNet(MultiTaskModule, BaseModel):
        """A cl-bench multi-head net as Avalanche sees one: ``forward(x, task_labels)`` and
        ``get_features(x)`` (LFL's features: the input of the heads)."""

        def __init__(self, net: nets.MultiHeadNet):
            super().__init__()
            self.net = net

        def get_features(self, x: Tensor) -> Tensor:
            return self.net.features(x)

        def forward_single_task(self, x: Tensor, task_label: int) -> Tensor:
            return self.net(x, int(task_label))

        def forward_all_tasks(self, x: Tensor) -> dict[int, Tensor]:
            h = self.net.features(x)  # one pass through the body for every known head (LwF)
            return {u: self.net.heads[u](h) for u in sorted(self.known_train_tasks_labels)}

        def forward(self, x: Tensor, task_labels) -> Tensor | dict[int, Tensor]:
            if task_labels is None:
                return self.forward_all_tasks(x)
            if isinstance(task_labels, int):
                return self.forward_single_task(x, task_labels)
            tasks = task_labels.unique().tolist()
            if len(tasks) == 1:  # the usual batch: one head, no padding
                return self.forward_single_task(x, tasks[0])
            # A mixed batch (replay): each sample through its own head, narrower heads padded with a
            # large negative logit (it takes no probability mass) instead of MultiTaskModule's zeros.
            h = self.net.features(x)
            width = max(self.net.heads[u].out_features for u in tasks)
            out = h.new_full((len(x), width), PAD_LOGIT)
            for u in tasks:
                rows = task_labels == u
                logits = self.net.heads[u](h[rows])
                out[rows, :logits.shape[1]] = logits
            return out

    return TaskAwareNet


def task_aware_net(net: nets.MultiHeadNet) -> nn.Module:
    """``net`` (shared, not copied) as an Avalanche ``MultiTaskModule``."""
    return _task_aware_net_class()(net)


# ---- import: the protocol as a plugin -------------------------------------------------------------
@functools.cache
def _protocol_plugin_class() -> type:
    import_avalanche()
    from avalanche.training.plugins import SupervisedPlugin

    class ProtocolPlugin(SupervisedPlugin):
        """The cl-bench protocol inside Avalanche's training loop (see the module docstring). First in
        the plugin list, so the best weights are back before the method's ``after_training_exp``
        (EWC's importances, LwF's and LFL's frozen copies)."""

        def __init__(self, owner: AvalancheStrategy):
            super().__init__()
            self.owner = owner

        def _set_lr(self, strategy) -> None:
            for group in strategy.optimizer.param_groups:
                group["lr"] = self.lr

        def before_training_exp(self, strategy, **kwargs):
            """Start task t as Trainer.fit does: lr reset, patience full, best = the initial weights."""
            o = self.owner
            p = o.trainer.protocol
            self.lr, self.patience = p.lr, p.lr_patience
            self.best_loss, self.best_state = math.inf, _snapshot(o.model)
            self.epoch = 0
            self._set_lr(strategy)
            # The head of the task being learned trains. (Avalanche's LFL freezes "the last Linear",
            # its single classifier in class-incremental use; on a multi-head net that is the last
            # task's head, which would stay at its random initialisation.)
            o.model.heads[o.task].requires_grad_(True)

        def before_training_epoch(self, strategy, **kwargs):
            self.start = time.perf_counter()
            self.loss_sum, self.n_seen = torch.zeros((), device=self.owner.device), 0

        def before_update(self, strategy, **kwargs):
            """Global grad-norm clipping at the threshold of the cl-bench counterpart (reference §3)."""
            params = [p for g in strategy.optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.owner.clip_threshold)

        def after_training_iteration(self, strategy, **kwargs):
            n = len(strategy.mb_y)
            self.loss_sum += strategy.loss.detach().sum() * n  # the full loss, regularisers included
            self.n_seen += n

        def after_training_epoch(self, strategy, **kwargs):
            """Validate, log, and apply the lr schedule of Trainer.fit; stop when lr < lr_min."""
            o = self.owner
            trainer, p, t = o.trainer, o.trainer.protocol, o.task
            self.epoch += 1
            was_training = strategy.model.training
            train_eval = (trainer.evaluate(o, t, trainer.data(t, "train")) if p.eval_train_each_epoch
                          else (None, None))
            valid_loss, valid_acc = trainer.evaluate(o, t, trainer.data(t, "valid"))
            strategy.model.train(was_training)
            train_loss = self.loss_sum.item() / max(self.n_seen, 1)
            if not (math.isfinite(train_loss) and math.isfinite(valid_loss)):
                raise DivergedError(f"loss is not finite at task {t} epoch {self.epoch} "
                                    f"(train {train_loss}, valid {valid_loss}, lr {self.lr:g})")
            log = EpochLog(t, self.epoch, self.lr, train_loss, valid_loss, valid_acc,
                           time.perf_counter() - self.start, *train_eval)
            trainer.history.append(log)
            o.after_epoch(t, log)
            trainer.on_epoch(log)
            if valid_loss < self.best_loss:
                self.best_loss, self.best_state, self.patience = valid_loss, _snapshot(o.model), p.lr_patience
            else:
                self.patience -= 1
                if self.patience <= 0:
                    self.lr /= p.lr_factor
                    if self.lr < p.lr_min:
                        strategy.stop_training()
                    self.patience = p.lr_patience
                    self._set_lr(strategy)

        def after_training_exp(self, strategy, **kwargs):
            self.owner.model.load_state_dict(self.best_state)

    return ProtocolPlugin


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---- import: the strategy -------------------------------------------------------------------------
class AvalancheStrategy(Strategy):
    """An Avalanche training strategy under the cl-bench protocol (subclassed per Avalanche class by
    ``strategy_class``). ``train_task`` drives the Avalanche strategy's ``train(experience)`` on task t;
    evaluation is cl-bench's, through ``predict(x, t)``."""

    avalanche_class: ClassVar[type]
    spec: ClassVar[AvalancheSpec]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
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
            raise ValueError(f"{self.name}: precision {p.precision!r} is not supported (Avalanche's training "
                             f"loop has no autocast); use fp32")
        model = task_aware_net(self.model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No loggers specified": cl-bench records the run itself
            evaluator = EvaluationPlugin(loggers=[])
        protocol_plugin = _protocol_plugin_class()(self)
        self.avalanche = self.avalanche_class(
            model=model, optimizer=torch.optim.SGD(model.parameters(), lr=p.lr),  # plain SGD (§3)
            criterion=nn.CrossEntropyLoss(), train_mb_size=p.batch_size, train_epochs=p.epochs,
            eval_mb_size=p.eval_batch_size, device=self.device,
            plugins=[protocol_plugin], evaluator=evaluator, **self.avalanche_kwargs())
        if self.avalanche.plugins[0] is not protocol_plugin:  # the best weights must be back first
            raise RuntimeError(f"{self.name}: Avalanche put its own plugins before the protocol's")
        self.benchmark = to_avalanche(self.scenario, streams=("train",))

    def train_task(self, t: int, trainer) -> None:
        """Avalanche's ``train`` on experience t; the protocol plugin validates, schedules and restores."""
        self.trainer, self.task = trainer, t
        if self.avalanche is None:
            self._build(trainer)
        p = trainer.protocol  # the protocol of this task's trainer (the runner has one for every task)
        self.avalanche.train_epochs, self.avalanche.train_mb_size = p.epochs, p.batch_size
        self.avalanche.eval_mb_size = p.eval_batch_size
        self.avalanche.train(self.benchmark.train_stream[t], eval_streams=[], num_workers=0,
                             pin_memory=False)

    def loss(self, x: Tensor, y: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """Plain cross-entropy of head t: the validation loss (the regularisers live in Avalanche's loop)."""
        logits = self.forward(x, t)
        return F.cross_entropy(logits, y), logits

    def monitoring(self) -> dict[str, Any]:
        import avalanche

        cls = self.avalanche_class
        return {"avalanche": {"version": getattr(avalanche, "__version__", "?"),
                              "class": f"{cls.__module__}.{cls.__qualname__}",
                              "arguments": self.avalanche_kwargs(), "net": self.hp.net,
                              "clip_grad": self.clip_threshold}}


# ---- hyperparameters from the constructor ---------------------------------------------------------
def _scalar_kind(annotation: Any, default: Any) -> type | None:
    """float/int/bool/str for an argument annotated (or defaulting) as one, Optional of one, or a
    Union whose first member is one (``Union[float, Sequence[float]]`` -> float); else None."""
    if annotation in SCALARS:
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg in SCALARS:
                return arg
        return None
    if annotation is inspect.Parameter.empty and default is not None and type(default) in SCALARS:
        return type(default)
    return None


def _param_help(doc: str, name: str) -> str:
    """The first sentence of ``:param name:`` in an Avalanche docstring."""
    match = re.search(rf":param {re.escape(name)}:(.*?)(?=:param |:return|\Z)", doc or "", re.DOTALL)
    text = " ".join(match.group(1).split()) if match else ""
    return text.split(". ")[0].rstrip(".")


def _hparams_dataclass(short: str, av_cls: type, spec: AvalancheSpec) -> type:
    """A cl-bench ``Hparams`` dataclass from the constructor's scalar keyword arguments. Arguments
    without an Avalanche default stay required; non-scalar ones with a default keep it."""
    doc = av_cls.__init__.__doc__ or ""
    required, optional = [], []
    for p in inspect.signature(av_cls.__init__).parameters.values():
        if p.name in FRAMEWORK_ARGS or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        default = None if p.default is p.empty else p.default
        kind = _scalar_kind(p.annotation, default)
        if kind is None:
            if p.default is p.empty:
                raise ValueError(f"{PREFIX}{short}: Avalanche's {av_cls.__name__} needs {p.name!r}, which "
                                 f"is not a number or string")
            continue
        meta = {"help": _param_help(doc, p.name), "grid": None, "kind": kind}
        if p.default is p.empty:
            required.append((p.name, kind, dataclasses.field(metadata=meta)))
        else:
            optional.append((p.name, kind | None if p.default is None else kind,
                             dataclasses.field(default=p.default, metadata=meta)))
    net_help = "cl-bench network variant (nets.build_network): base, hat or lfl"
    optional.append(("net", str, dataclasses.field(default=spec.net, metadata={"help": net_help, "grid": None,
                                                                              "kind": str})))
    return dataclasses.make_dataclass(f"Avalanche{short}Hparams", required + optional)


def describe(cls: type[AvalancheStrategy]) -> str:
    """``name: type = default`` (or ``(required)``) for each hyperparameter."""
    return ", ".join(f"{f.name}: {f.metadata['kind'].__name__}"
                     + (" (required)" if f.default is dataclasses.MISSING else f" = {f.default!r}")
                     for f in dataclasses.fields(cls.Hparams))


def _parse_hparams(cls: type[AvalancheStrategy], values: dict[str, Any] | None) -> Any:
    """Typed Hparams with clear errors: unknown names, values of the wrong type, required ones missing."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls.Hparams)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise HparamError(f"strategy {cls.name!r} has no hyperparameter {', '.join(unknown)}; it accepts: "
                          f"{describe(cls)}")
    missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING and n not in values]
    if missing:
        raise HparamError(f"strategy {cls.name!r} needs " + ", ".join(
            f"-p {n}={fields[n].metadata['kind'].__name__.upper()}" for n in missing)
            + f" (Avalanche has no default); it accepts: {describe(cls)}")
    parsed = {}
    for key, raw in values.items():
        f = fields[key]
        if f.default is None and str(raw).lower() == "none":
            parsed[key] = None
            continue
        try:
            parsed[key] = parse_value(raw, f.metadata["kind"], f"hyperparameter {key!r} of {cls.name!r}")
        except BadValue as e:
            raise HparamError(str(e)) from None
    hp = cls.Hparams(**parsed)
    if hp.net not in ("base", "hat", "lfl"):
        raise HparamError(f"hyperparameter 'net' of {cls.name!r} must be base, hat or lfl, got {hp.net!r}")
    return hp


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
        raise ValueError(f"unknown Avalanche strategy {PREFIX}{short}{hint}; valid: "
                         f"{', '.join(strategy_names())}")
    av = import_avalanche()
    av_cls = getattr(av.training, spec.cls)
    clip = get_strategy(spec.counterpart).clip_grad if spec.counterpart else Strategy.clip_grad
    return type(f"Avalanche{short}", (AvalancheStrategy,), {
        "__doc__": f"Avalanche's {spec.cls} under the cl-bench protocol.",
        "__module__": __name__,
        "name": PREFIX + short,
        "Hparams": _hparams_dataclass(short, av_cls, spec),
        "clip_grad": clip,
        "avalanche_class": av_cls,
        "spec": spec,
        "parse_hparams": classmethod(_parse_hparams),
    })
