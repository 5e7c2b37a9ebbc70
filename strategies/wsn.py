"""WSN, Winning SubNetworks (Kang et al., ICML 2022), as the authors' code does it (github.com/ihaeyong/WSN,
``networks/subnet.py``, ``main_wsn_pmnist.py``), on the base network of the scenario.

Every weight and bias of the masked layers (``model.layers``; not the heads) has a learned score, one
score tensor per layer shared by all tasks (initialised as the layer's own weights: Kaiming-uniform
with a = sqrt(5), biases U(+-1/sqrt(fan_in))). While task t trains, its subnetwork is the top-c of each
layer by |score|: with sparsity 1 - c, k = 1 + round(0.01 x (100 sparsity) x (n - 1)) and the mask is
|s| >= the k-th smallest |s| (``percentile`` and ``GetSubnetFaster``); the layer computes with
``mask x weight``. The mask's gradient passes straight through to the scores (the straight-through
estimator: d mask / d |s| = 1), so d loss / d s = sign(s) x weight x d loss / d(mask x weight). Scores
are never re-initialised and the top-c may pick weights that earlier tasks hold (they are reused, not
excluded). After each backward pass, the gradients of the weights and biases that an earlier task's
mask holds are zeroed (``consolidated_masks``), so they never move; the scores keep training. After the
task (best weights restored, scores included), its mask is stored, bit-packed (``numpy.packbits``, 1
bit per weight), and ORed into the consolidated mask. Task tau is evaluated with its stored mask, whose
weights no later task changed: its outputs are bitwise those it had.

Biases: the authors' nets have none (``bias=False``); the base nets here have them, so they get scores
and masks as the code's ``bias=True`` path does. Heads: one per task, unmasked, trained with its task
(the code's ``last``). Not the code: the protocol's plain SGD at lr 0.05 and its Plateau schedule (the
code's PMNIST script: Adam at lr 1e-3 for weights, scores and heads alike, a fresh Adam per task);
docs/faithfulness.md. Under plain SGD the subnetwork does not grow: a score's step is its weight's step
times |weight| (~1/sqrt(fan_in), ~0.035 here), so at lr 0.05 the scores move < 0.1% of their size per
task and every task keeps the first task's (initial) top-c, training little but its head; Adam's
normalised step moves them by 40-50% (issue 33: permuted MNIST, 4 tasks, capacity 50 -> 50.03% at SGD
lr 0.05, 50.8% at the code's unused SGD default lr 0.3, 50 -> 73% under Adam at 1e-3). The stored
mask is the top-c of the restored best scores (the one validation measured); the code stores the mask
of the last training batch. Monitoring: capacity per task and layer and weight reuse (HAT's Figs. 5-6),
``isolation_record`` shared with PackNet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from cl_bench import nets
from cl_bench.registry import register_strategy
from cl_bench.strategies.packnet import isolation_record, layer_names
from cl_bench.strategy import Strategy, TaskData, hparam


# ---- pure functions -----------------------------------------------------------------------------------
def kth_score(scores: Tensor, sparsity: float) -> Tensor:
    """The code's ``percentile``: the k-th smallest score, k = 1 + round(0.01 x (100 sparsity) x (n - 1))."""
    k = 1 + round(0.01 * float(sparsity * 100) * (scores.numel() - 1))
    return scores.reshape(-1).kthvalue(k).values


class TopC(torch.autograd.Function):
    """Forward: 1 where the score reaches the k-th smallest, else 0; backward: the gradient unchanged
    (straight-through, as ``GetSubnetFaster``)."""

    @staticmethod
    def forward(ctx, scores: Tensor, sparsity: float) -> Tensor:
        return (scores >= kth_score(scores, sparsity)).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def subnet_mask(scores: Tensor, capacity: float) -> Tensor:
    """Top-``capacity`` mask of |scores| (float, differentiable to the scores by straight-through)."""
    return TopC.apply(scores.abs(), 1 - capacity)


def pack(mask: Tensor) -> Tensor:
    """A boolean mask as 1 bit per entry (uint8, numpy's bit order); its shape is the layer's."""
    return torch.from_numpy(np.packbits(mask.detach().cpu().numpy().reshape(-1)))


def unpack(bits: Tensor, shape: torch.Size, device: torch.device) -> Tensor:
    n = math.prod(shape)
    return torch.from_numpy(np.unpackbits(bits.cpu().numpy(), count=n).astype(bool)).reshape(shape).to(device)


# ---- the strategy -------------------------------------------------------------------------------------
@dataclass
class WSNHparams:
    capacity: float = hparam(
        0.5,
        "c: share of each layer's weights in a task's subnetwork (the paper's c: 0.03 to 0.5)",
        grid=[0.03, 0.05, 0.1, 0.3, 0.5],
        above=0,
        at_most=1,
    )


@register_strategy
class WSN(Strategy[WSNHparams]):
    """WSN (not in the paper): a learned top-c subnetwork per task; weights of earlier subnetworks are frozen."""

    name = "wsn"
    keeps = ("packed", "steps", "step_count")

    def build_model(self) -> nn.Module:
        model = nets.build_network(self.scenario)
        model.weight_scores = nn.ParameterList()
        model.bias_scores = nn.ParameterList()
        for m in model.layers:
            s = torch.empty_like(m.weight)
            nn.init.kaiming_uniform_(s, a=math.sqrt(5))  # the code's init_mask_parameters
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(s)
            b = torch.empty_like(m.bias).uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
            model.weight_scores.append(nn.Parameter(s))
            model.bias_scores.append(nn.Parameter(b))
        return model

    def setup(self) -> None:
        self.packed: dict[int, list[Tensor]] = {}  # task -> bit-packed masks: weights of each layer, then biases
        self.steps: list[int] = []
        self.step_count = 0
        self.rebuild()

    def rebuild(self) -> None:
        """The stored masks unpacked on the device, and their union (what later tasks may not change)."""
        layers = self.model.layers
        shapes = [m.weight.shape for m in layers] + [m.bias.shape for m in layers]
        self.masks = {
            t: [unpack(b, s, self.device) for b, s in zip(bits, shapes)] for t, bits in sorted(self.packed.items())
        }
        self.consolidated = [torch.zeros(s, dtype=torch.bool, device=self.device) for s in shapes]
        for masks in self.masks.values():
            self.consolidated = [c | m for c, m in zip(self.consolidated, masks)]

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.packed = {int(t): bits for t, bits in self.packed.items()}
        self.rebuild()

    # ---- the subnetworks --------------------------------------------------------------------------
    def current_masks(self) -> list[Tensor]:
        m = self.model
        c = self.hp.capacity
        return [subnet_mask(s, c) for s in m.weight_scores] + [subnet_mask(s, c) for s in m.bias_scores]

    def forward(self, x: Tensor, t: int) -> Tensor:
        layers = self.model.layers
        masks = self.masks[t] if t in self.masks else self.current_masks()
        params = {}
        for l, m in enumerate(layers):
            params[f"layers.{l}.weight"] = masks[l] * m.weight
            params[f"layers.{l}.bias"] = masks[len(layers) + l] * m.bias
        return functional_call(self.model, params, (x, t))

    def after_backward(self, t: int) -> None:
        """Weights and biases of earlier tasks' subnetworks do not move (the code's consolidated masks)."""
        if not self.masks:
            return
        params = [m.weight for m in self.model.layers] + [m.bias for m in self.model.layers]
        for p, used in zip(params, self.consolidated):
            if p.grad is not None:
                p.grad.masked_fill_(used, 0.0)

    def after_step(self, t: int) -> None:
        self.step_count += 1

    @torch.no_grad()
    def after_task(self, task: TaskData) -> None:
        masks = [m.bool() for m in self.current_masks()]
        self.packed[task.index] = [pack(m) for m in masks]
        self.steps.append(self.step_count)
        self.rebuild()

    # ---- monitoring -------------------------------------------------------------------------------
    def monitoring(self) -> dict[str, Any]:
        L = len(self.model.layers)
        task_masks = [masks[:L] for _, masks in sorted(self.masks.items())]
        record = isolation_record(task_masks, self.steps, layer_names(self.model))
        record["packed_bytes"] = sum(b.numel() for bits in self.packed.values() for b in bits)
        return {"isolation": record}
