"""HAT: hard attention to the task (Serra, Suris, Miron & Karatzoglou, ICML 2018, Sec. 2).

Every masked layer l (the conv filters and fc units of the base net; not the input, not the heads)
has one embedding e_l^t per task t. The task's attention mask gates the layer's output units:

    a_l^t = sigmoid(s e_l^t)                                                        Eq. 1

with s annealed from 1/s_max to s_max within every epoch (Eq. 3) and s = s_max at evaluation. After
task t the masks are kept, a^t = sigmoid(s_max e^t), and accumulated, a^{<=t} = max(a^t, a^{<=t-1}).
While later tasks train, the gradient of every weight is multiplied by one minus the smaller of the
cumulative attentions of the two units it connects (Eq. 2), so weights that earlier tasks rely on
stay put. The loss adds c R, an L1 penalty on the units the task attends to that earlier tasks left
free (Eqs. 4-5), and the embeddings' gradients are rescaled to undo the annealing (Sec. 2.5).

Where the paper and the authors' code (github.com/joansj/hat) differ, this file follows the code,
whose numbers are the published ones, with the paper's form as an option where there is a choice
(docs/faithfulness.md lists every difference):

- s is annealed by the batch's sample offset i/N, not (b-1)/(B-1): ``annealing="reference"``
  (default) or ``"paper"``;
- the validation loss that drives the lr schedule and best-weight choice is CE + c R at s_max;
- biases are masked by their unit's cumulative attention, like the weights (the paper describes
  weights only);
- |s e| <= 50 inside the cosh of the compensation, embeddings clamped to [-6, 6] after each step (as
  the paper); the global gradient norm is clipped at 10,000 by the trainer (the paper names no clipping);
- PyTorch's default init, not Xavier (``init="xavier"`` for the paper's);
- on the MNIST setups HAT uses its own 2x2000 MLP with input dropout 0.2, where the baselines use a
  3x800 MLP without it (the paper does not say).

The compression experiment (Sec. 4.4, Fig. 7) is a single-task run with U(0,2) embeddings and c = 1.5
(``--tasks 0 --hp embedding_init=uniform --hp c=1.5``); its reference script also evaluated at
s = 10000 s_max, which is not reproduced here (at s_max = 400 a mask is already within 2e-9 of 0 or 1
once |e| > 0.05).

The trainer owns the loop (plain SGD, clipping, lr schedule, best-weight restore); HAT is the hooks
below, in the order the trainer calls them. It must be trained with plain SGD: see ``train_task``.

Monitoring (paper Sec. 4.4; the authors' code does not compute it): mask sizes per task and layer, capacity usage along
training (Fig. 5), weight reuse between tasks (Fig. 6) and per-epoch compression (Fig. 7), returned
by ``monitoring()`` and stored with the run; the functions that compute them are pure functions of
the masks, in strategies/hat_monitoring.py. Also, after each task, whether its masks learned: the share of
units per layer whose binarised mask left the on/off state of their random initial embedding
(cl_bench.strategies.hat_mask_learning), and the capacity then used (``monitoring()["hat"]["mask_learning"]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cl_bench import nets
from cl_bench.registry import register_strategy
from cl_bench.strategies.hat_monitoring import (  # noqa: F401 (the monitoring functions, importable from here too)
    CAPACITY_SAMPLES_PER_EPOCH,
    THRESHOLD,
    HATMonitor,
    active_weights,
    capacity_usage,
    weight_fraction,
    weight_reuse,
)
from cl_bench.strategy import BatchInfo, Strategy, TaskData, hparam

# Masks below this are zeroed in the forward pass (their gradient is kept exact, see `gate`).
# Why: sigmoid(s e) reaches float32's denormal range (< 1.2e-38) for s e in about [-103, -87], and
# denormal activations and gradients slow CPU kernels down ~1.7x (measured on a 2-core CPU). Zeroing
# a mask below 1e-20 changes a unit's output by less than 1e-20 of its value, 13 orders of magnitude
# under float32's resolution (6e-8), so no sum it enters changes in practice; and it leaves 18
# orders of magnitude of headroom before a product mask x activation (or x gradient) is denormal.
# (Counted on one step of the 2x2000 MLP with N(0,1) embeddings: 67,000 denormal gradient entries
# without the floor, 436 with it, and no denormal activation.)
# It is local to HAT's tensors: unlike torch.set_flush_denormal, which sets the calling thread's
# floating-point mode for every later computation in the process (and not the intra-op worker
# threads), it changes nothing for other strategies and works the same on every device.
MASK_FLOOR = 1e-20


@dataclass
class HATHparams:
    # s_max >= 1: the annealing runs from 1/s_max up to s_max (Sec. 2.4)
    s_max: float = hparam(
        400.0,
        "stability: slope of the gate at evaluation, end of the annealing (Eqs. 1, 3)",
        [25.0, 50.0, 100.0, 200.0, 400.0, 800.0],
        at_least=1,
    )
    c: float = hparam(
        0.75,
        "compressibility: weight of the attention regulariser (Eq. 4)",
        [0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 4.0],
        at_least=0,
    )
    thres_cosh: float = hparam(50.0, "clamp of |s e| inside the cosh of the compensation (Sec. 2.5)", above=0)
    thres_emb: float = hparam(
        6.0, "embeddings are clamped to [-thres_emb, thres_emb] after each step (Sec. 2.5)", above=0
    )
    annealing: str = hparam(
        "reference",
        "'reference': s from the batch's sample offset i/N (the authors' code); "
        "'paper': (b-1)/(B-1) of Eq. 3, reaching s_max on the last batch",
        choices=("reference", "paper"),
    )
    embedding_init: str = hparam(
        "normal",
        "'normal': N(0,1) (paper and code); 'uniform': U(0,2), the compression experiment's (Sec. 4.4, use with c=1.5)",
        choices=("normal", "uniform"),
    )
    init: str = hparam(
        "default",
        "weights: 'default' PyTorch's U(+-1/sqrt(fan_in)) as the authors' code; 'xavier' the paper's Xavier uniform",
        choices=("default", "xavier"),
    )


# ---- the equations, as functions ----------------------------------------------------------------
def gate(e: Tensor, s: float) -> Tensor:
    """Eq. 1, a = sigmoid(s e); values under MASK_FLOOR read as 0 in the forward pass only.

    The floored part is subtracted as a constant (detached), so the gradient reaching e is exactly
    the sigmoid's: the embedding learns as in the reference.
    """
    a = torch.sigmoid(s * e)  # Eq. 1
    return a - (a * (a < MASK_FLOOR)).detach()


def annealed_s(s_max: float, batch: BatchInfo, form: str = "reference") -> float:
    """Eq. 3: s grows linearly from 1/s_max on the first batch of every epoch towards s_max.

    "reference": progress = sample offset / samples, so the last batch stays just under s_max
    (the authors' code). "paper": (b-1)/(B-1), s_max on the last batch (an epoch of a single batch
    gets s_max).
    """
    if form == "reference":
        progress = batch.offset / batch.n_samples  # the authors' code: i/N, i the batch's first sample
    else:
        progress = batch.index / (batch.n_batches - 1) if batch.n_batches > 1 else 1.0
    return 1 / s_max + (s_max - 1 / s_max) * progress  # Eq. 3


def regularizer(masks: Sequence[Tensor], free: Sequence[Tensor]) -> Tensor:
    """Eq. 5: R = sum_l,i a_li^t (1 - a_li^{<t}) / sum_l,i (1 - a_li^{<t}), with ``free`` = 1 - a^{<t}
    (all ones for the first task: R = sum of a / number of units, as the reference).

    The reference has no epsilon in the denominator. It is 0 only if earlier tasks hold every unit
    at exactly 1; the numerator is then 0 too (each term is at most its weight 1 - a^{<t}), and we
    return R = 0 (nothing is left to protect) where the reference would return NaN.
    """
    used = sum((a * f).sum() for a, f in zip(masks, free))
    total = sum(f.sum() for f in free)
    return used / total.clamp_min(torch.finfo(total.dtype).tiny)  # Eq. 5


def compensate_embedding_grad(grad: Tensor, e: Tensor, s: float, s_max: float, thres_cosh: float) -> None:
    """Sec. 2.5, in place: q' = s_max [cosh(s e) + 1] / (s [cosh(e) + 1]) q, with |s e| <= thres_cosh.

    The same as dividing by the annealed sigmoid's derivative s sigma(se)(1 - sigma(se)) and
    multiplying by s_max sigma(e)(1 - sigma(e)); the clamp keeps cosh finite (as the paper and the authors' code).
    """
    num = torch.cosh(torch.clamp(s * e, -thres_cosh, thres_cosh)) + 1
    den = torch.cosh(e) + 1
    grad.mul_(s_max / s * num / den)


def weight_masks(unit_masks: Sequence[Tensor], weight_shapes: Sequence[torch.Size]) -> list[Tensor]:
    """The per-weight view of unit masks used by Eq. 2: min(a_l[out], a_{l-1}[in]) for every weight
    of every masked layer, shaped to broadcast against the weight (a conv's kernel axes have size 1:
    all taps of a filter-channel pair share it).

    The first layer's input is not masked, so its weights get a_1[out] alone (as the authors' code). At a
    conv -> fc flatten, input k of the fc layer comes from channel k // spatial (channel-major), so
    the conv mask is repeated over each channel's spatial positions (``net.flatten_spatial``).
    """
    views = []
    for l, (a, shape) in enumerate(zip(unit_masks, weight_shapes)):
        kernel = (1,) * (len(shape) - 2)
        if l == 0:
            views.append(a.view(-1, 1, *kernel))
            continue
        pre = unit_masks[l - 1]
        spatial = shape[1] // len(pre)
        if spatial * len(pre) != shape[1]:
            raise ValueError(f"layer {l} has {shape[1]} inputs, not a multiple of the {len(pre)} units before it")
        pre = pre.repeat_interleave(spatial)  # conv -> fc: one value per channel and position
        views.append(torch.minimum(a.view(-1, 1), pre.view(1, -1)).view(shape[0], shape[1], *kernel))  # Eq. 2
    return views


# ---- the network ----------------------------------------------------------------------------------
class HATNet(nn.Module):
    """A base network whose masked layers are gated by per-task embeddings (the authors' ``alexnet_hat``,
    ``mlp_hat``).

    ``embeddings[l]`` is an ``nn.Embedding(n_tasks, units_l)``: row t is e_l^t. They are submodules,
    so they live in the state_dict the trainer snapshots and restores at the best epoch.
    """

    def __init__(self, net: nets.MultiHeadNet, n_tasks: int, embedding_init: str = "normal"):
        super().__init__()
        self.net = net
        self.embeddings = nn.ModuleList(nn.Embedding(n_tasks, units) for units in net.units)
        if embedding_init == "uniform":  # the compression experiment (Sec. 4.4); else N(0,1), the default
            for emb in self.embeddings:
                nn.init.uniform_(emb.weight, 0.0, 2.0)

    def masks(self, t: int, s: float) -> list[Tensor]:
        return [gate(emb.weight[t], s) for emb in self.embeddings]  # Eq. 1

    def forward(self, x: Tensor, t: int, s: float) -> tuple[Tensor, list[Tensor]]:
        """(logits of head t, the masks used): h_l' = a_l^t * h_l on every masked layer."""
        masks = self.masks(t, s)
        return self.net(x, t, masks), masks


# ---- the strategy ---------------------------------------------------------------------------------
@register_strategy
class HAT(Strategy[HATHparams]):
    """Hard attention to the task: learned unit masks protect earlier tasks' weights (Serra et al. 2018)."""

    name = "hat"
    clip_grad = 10000.0  # the authors' code's threshold for HAT
    model: HATNet

    def setup(self) -> None:
        self.s = self.hp.s_max  # the current s; before_batch anneals it while training (Eq. 3)
        self.task_masks: list[list[Tensor]] = []  # a^t = sigmoid(s_max e^t) of each finished task
        self.cumulative: list[Tensor] | None = None  # a^{<=t} after the last finished task
        self._prepare_next_task()
        self._batch: BatchInfo | None = None
        self._step = 0  # training steps so far, over all tasks (x axis of Fig. 5)
        embeddings = [emb.weight for emb in self.model.embeddings]
        self.monitor = HATMonitor(embeddings, self.weight_shapes, self.model.net.units)  # Sec. 4.4

    def base_network(self) -> nets.MultiHeadNet:
        """The network HAT gates: the authors' for the scenario (2x2000 MLP on MNIST)."""
        return nets.build_network(self.scenario, variant="hat")

    def build_model(self) -> HATNet:
        net = self.base_network()
        if self.hp.init == "xavier":
            nets.xavier_init_(net)
        return HATNet(net, len(self.scenario.tasks), self.hp.embedding_init)

    @property
    def weight_shapes(self) -> list[torch.Size]:
        return [layer.weight.shape for layer in self.model.net.layers]

    # ---- per task ---------------------------------------------------------------------------------
    def train_task(self, task: TaskData, trainer) -> None:
        """Refuses any optimiser but plain SGD, then trains as usual.

        Eq. 2 protects earlier tasks by scaling gradients, which only works if the update is the
        gradient times lr. Weight decay moves protected weights whatever their gradient; Adam-like
        rescaling turns a gradient masked to 1e-9 back into a full step; momentum amplifies what
        leaks through non-binary masks by 1/(1 - momentum). The authors' code trains with plain SGD
        and so does cl_bench's trainer today; this guard is for the day the protocol
        grows an optimiser option.
        """
        p = task.protocol
        for knob in ("momentum", "weight_decay", "nesterov"):
            if getattr(p, knob, 0):
                raise ValueError(
                    f"hat needs plain SGD, but the protocol sets {knob}={getattr(p, knob)!r}: "
                    f"it would move the weights that HAT's gradient masks protect (Eq. 2)"
                )
        if getattr(p, "optimizer", "sgd") != "sgd":
            raise ValueError(f"hat needs plain SGD, not {p.optimizer!r} (Eq. 2 scales gradients, not steps)")
        super().train_task(task, trainer)

    def after_task(self, task: TaskData) -> None:
        """Keep a^t at s_max and fold it into a^{<=t}; rebuild what the next task's steps use."""
        t = task.index
        if t != len(self.task_masks):
            raise RuntimeError(f"hat: tasks must be learned in order; got task {t} after {len(self.task_masks)} tasks")
        with torch.no_grad():
            a_t = [torch.sigmoid(self.hp.s_max * emb.weight[t]).detach().clone() for emb in self.model.embeddings]
        self.task_masks.append(a_t)
        self.cumulative = (
            a_t if self.cumulative is None else [torch.maximum(a, prev) for a, prev in zip(a_t, self.cumulative)]
        )  # a^{<=t} = max(a^t, a^{<=t-1})
        self.monitor.task_learned(t, a_t, self.cumulative)
        self._prepare_next_task()

    def _prepare_next_task(self) -> None:
        """Once per task, the constants of the hot loop: the Eq. 2 factors 1 - m for every weight and
        bias of the masked layers, and the Eq. 5 weights 1 - a^{<t}."""
        self._grad_keep: list[tuple[nn.Parameter, Tensor]] = []
        if self.cumulative is None:  # first task: nothing to protect, R = sum a / units
            self._free = [torch.ones(emb.weight.shape[1], device=self.device) for emb in self.model.embeddings]
            return
        views = weight_masks(self.cumulative, self.weight_shapes)
        for layer, m, a in zip(self.model.net.layers, views, self.cumulative):
            self._grad_keep.append((layer.weight, (1 - m).contiguous()))  # Eq. 2
            self._grad_keep.append((layer.bias, 1 - a))  # biases follow their unit (the authors' code)
        self._free = [1 - a for a in self.cumulative]  # Eq. 5 weights

    # ---- per step ---------------------------------------------------------------------------------
    def before_batch(self, info: BatchInfo) -> None:
        self.s = annealed_s(self.hp.s_max, info, self.hp.annealing)  # Eq. 3, restarts every epoch
        self._batch = info

    def forward(self, x: Tensor, t: int) -> Tensor:
        return self.model(x, t, self._current_s())[0]

    def predict(self, x: Tensor, t: int) -> Tensor:
        return self.model(x, t, self.hp.s_max)[0].argmax(1)  # evaluation: s = s_max

    def loss(self, x: Tensor, y: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """Eq. 4: CE + c R on the current masks at the current s. In eval mode s = s_max, so the
        validation loss driving early stopping includes c R at s_max (the authors' code; the paper does not say)."""
        logits, masks = self.model(x, t, self._current_s())
        return F.cross_entropy(logits, y) + self.hp.c * regularizer(masks, self._free), logits  # Eq. 4

    def _current_s(self) -> float:
        return self.s if self.model.training else self.hp.s_max

    def after_backward(self, t: int) -> None:
        """Eq. 2 on every weight and bias of the masked layers, then the embedding compensation."""
        if self._grad_keep:  # empty for the first task; one multi-tensor call for every layer
            params, keeps = zip(*self._grad_keep)
            torch._foreach_mul_([p.grad for p in params], keeps)  # Eq. 2: g' = (1 - min(a^{<t}_out, a^{<t}_in)) g
        for emb in self.model.embeddings:  # only row t has a gradient: the other tasks' rows are unused
            compensate_embedding_grad(
                emb.weight.grad[t], emb.weight.detach()[t], self.s, self.hp.s_max, self.hp.thres_cosh
            )  # Sec. 2.5

    def after_step(self, t: int) -> None:
        with torch.no_grad():
            for emb in self.model.embeddings:  # e in [-6, 6] (Sec. 2.5); all rows, as the reference
                emb.weight.clamp_(-self.hp.thres_emb, self.hp.thres_emb)
        self._step += 1
        info = self._batch
        if info is not None and (info.index + 1) % max(1, info.n_batches // CAPACITY_SAMPLES_PER_EPOCH) == 0:
            self.monitor.sample_capacity(self._step, t, self._cumulative_with(self._current_task_masks(t)))  # Fig. 5

    def after_epoch(self, t: int, log) -> None:
        self.monitor.epoch(t, log.epoch, log.valid_acc, self._current_task_masks(t))  # Fig. 7

    # ---- monitoring (paper Sec. 4.4) --------------------------------------------------------------
    def _current_task_masks(self, t: int) -> list[Tensor]:
        with torch.no_grad():
            return [torch.sigmoid(self.hp.s_max * emb.weight[t]) for emb in self.model.embeddings]

    def _cumulative_with(self, masks: list[Tensor]) -> list[Tensor]:
        if self.cumulative is None:
            return masks
        return [torch.maximum(a, prev) for a, prev in zip(masks, self.cumulative)]

    def monitoring(self) -> dict[str, Any]:
        """Everything Figs. 5-7 need (hat_monitoring.HATMonitor), JSON-serialisable."""
        kinds = ["conv" if isinstance(layer, nn.Conv2d) else "fc" for layer in self.model.net.layers]
        layers = [f"{kind}{kinds[: i + 1].count(kind)}" for i, kind in enumerate(kinds)]
        parameters = {
            "total": nets.count_parameters(self.model),
            "embeddings": sum(e.weight.numel() for e in self.model.embeddings),
        }
        return {"hat": self.monitor.record(self.task_masks, layers, parameters, self.hp.embedding_init)}

    # ---- checkpointing (cl_bench.runner.checkpoint): the state kept outside the model ---------------------
    def save_state(self) -> dict[str, Any]:
        return {
            "task_masks": [[a.cpu() for a in masks] for masks in self.task_masks],
            "step": self._step,
            **self.monitor.save_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.task_masks, self.cumulative = [], None
        for masks in state["task_masks"]:
            masks = [a.to(self.device) for a in masks]
            self.task_masks.append(masks)
            self.cumulative = (
                masks
                if self.cumulative is None
                else [torch.maximum(a, prev) for a, prev in zip(masks, self.cumulative)]
            )
        self._prepare_next_task()
        self._step = int(state["step"])
        self.monitor.load_state(state, self.device)
