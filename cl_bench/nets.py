"""The authors' base networks, shared by every strategy so parameter counts stay comparable.

Both networks are a body of "masked layers" (units a strategy may gate, as HAT does) followed by one
linear head per task. ``forward(x, t, masks)`` multiplies the output of masked layer ``l`` by
``masks[l]`` (shape: units) where the authors' code applies HAT's masks; with
``masks=None`` the network is the plain baseline net. Initialisation is PyTorch's default,
U(+-1/sqrt(fan_in)), as the authors' code (the paper says Xavier, an option here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MultiHeadNet(nn.Module):
    """A body of masked layers and one linear head per task.

    Subclasses fill ``self.layers`` (the nn.Linear/nn.Conv2d modules whose output units can be masked,
    in forward order) and implement ``features(x, masks)``. ``flatten_spatial`` tells strategies how
    many input positions of the first fc layer each channel of the last conv layer feeds.
    """

    layers: nn.ModuleList
    heads: nn.ModuleList
    flatten_spatial: int = 1

    def features(self, x: Tensor, masks: Sequence[Tensor] | None = None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, t: int, masks: Sequence[Tensor] | None = None) -> Tensor:
        return self.heads[t](self.features(x, masks))

    @property
    def units(self) -> list[int]:
        """Number of output units (neurons or conv filters) of each masked layer."""
        return [m.out_channels if isinstance(m, nn.Conv2d) else cast(nn.Linear, m).out_features for m in self.layers]

    def body_parameters(self) -> list[nn.Parameter]:
        head_params = {id(p) for p in self.heads.parameters()}
        return [p for p in self.parameters() if id(p) not in head_params]


def _gate(h: Tensor, masks: Sequence[Tensor] | None, l: int) -> Tensor:
    if masks is None:
        return h
    m = masks[l]
    return h * (m.view(1, -1, 1, 1) if h.dim() == 4 else m.view(1, -1))


class MLP(MultiHeadNet):
    """Flatten -> [Dropout(p_in)] -> (Linear -> ReLU -> Dropout(p) -> mask) x L -> heads.

    Baselines on (split/permuted) MNIST use 3x800 without input dropout; HAT uses
    2x2000 with input dropout 0.2 (as the authors' code; the paper does not say).
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        head_sizes: Sequence[int],
        input_dropout: float = 0.0,
        dropout: float = 0.5,
        last_dropout: bool = True,
    ):
        super().__init__()
        self.input_dropout = nn.Dropout(input_dropout)
        self.dropout = nn.Dropout(dropout)
        # LFL's variant: no dropout on the last hidden layer, the features it penalises (as alexnet_lfl)
        self.last_dropout = nn.Dropout(dropout) if last_dropout else nn.Identity()
        sizes = [in_features, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.heads = nn.ModuleList(nn.Linear(sizes[-1], n) for n in head_sizes)

    def features(self, x: Tensor, masks: Sequence[Tensor] | None = None) -> Tensor:
        h = self.input_dropout(x.reshape(x.shape[0], -1))
        for l, fc in enumerate(self.layers):
            drop = self.last_dropout if l == len(self.layers) - 1 else self.dropout
            h = _gate(drop(torch.relu(fc(h))), masks, l)
        return h


class AlexNet(MultiHeadNet):
    """The AlexNet-like net of the mixture and CIFAR setups (the authors' ``alexnet``).

    conv(64, S//8) -> conv(128, S//10) -> conv(256, 2), each ReLU -> Dropout -> MaxPool(2) -> mask,
    then fc 2048 -> fc 2048 (ReLU -> Dropout -> mask), then heads. Dropout 0.2 after conv1/conv2,
    0.5 elsewhere. ``fc2_dropout=False`` gives LFL's variant (the authors' ``alexnet_lfl``).
    """

    def __init__(
        self, input_shape: Sequence[int], head_sizes: Sequence[int], fc2_dropout: bool = True, width: float = 1.0
    ):
        super().__init__()
        c, s, _ = input_shape
        k1, k2, k3 = s // 8, s // 10, 2
        w = [int(64 * width), int(128 * width), int(256 * width), int(2048 * width), int(2048 * width)]
        self.layers = nn.ModuleList(
            [
                nn.Conv2d(c, w[0], k1),
                nn.Conv2d(w[0], w[1], k2),
                nn.Conv2d(w[1], w[2], k3),
            ]
        )
        size = s
        for k in (k1, k2, k3):
            size = (size - k + 1) // 2
        self.flatten_spatial = size * size
        self.layers.append(nn.Linear(w[2] * self.flatten_spatial, w[3]))
        self.layers.append(nn.Linear(w[3], w[4]))
        self.drop_conv = nn.Dropout(0.2)
        self.drop = nn.Dropout(0.5)
        self.drop_fc2 = nn.Dropout(0.5) if fc2_dropout else nn.Identity()
        self.pool = nn.MaxPool2d(2)
        self.heads = nn.ModuleList(nn.Linear(w[4], n) for n in head_sizes)

    def features(self, x: Tensor, masks: Sequence[Tensor] | None = None) -> Tensor:
        c1, c2, c3, fc1, fc2 = self.layers
        h = _gate(self.pool(self.drop_conv(torch.relu(c1(x)))), masks, 0)
        h = _gate(self.pool(self.drop_conv(torch.relu(c2(h)))), masks, 1)
        h = _gate(self.pool(self.drop(torch.relu(c3(h)))), masks, 2)
        h = h.flatten(1)  # channel-major: input k of fc1 comes from channel k // flatten_spatial
        h = _gate(self.drop(torch.relu(fc1(h))), masks, 3)
        return _gate(self.drop_fc2(torch.relu(fc2(h))), masks, 4)


def xavier_init_(net: nn.Module) -> None:
    """The paper's Xavier-uniform init (the authors' code used PyTorch's default)."""
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_network(scenario, variant: str = "base", **kwargs) -> MultiHeadNet:
    """The reference's network for a scenario.

    ``variant``: "base" (what SGD, EWC, ... use), "hat" (HAT's own MLP on the MNIST setups, as
    the authors' code; identical to "base" on image setups) or "lfl" (no dropout on fc2; on the
    MLP, none on the last hidden layer: the reference never ran LFL there).
    """
    heads = [task.n_classes for task in scenario.tasks]
    shape = tuple(scenario.input_shape)
    if scenario.arch == "mlp":
        n_in = math.prod(shape)
        if variant == "hat":
            return MLP(n_in, [2000, 2000], heads, input_dropout=0.2, **kwargs)
        return MLP(n_in, [800, 800, 800], heads, last_dropout=(variant != "lfl"), **kwargs)
    if scenario.arch == "alexnet":
        return AlexNet(shape, heads, fc2_dropout=(variant != "lfl"), **kwargs)
    raise ValueError(f"unknown architecture {scenario.arch!r}; known: 'mlp', 'alexnet'")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---- the base bodies, described layer by layer (for strategies that build their own: PNN, PathNet) --
@dataclass(frozen=True)
class Block:
    """One layer of a base body: conv (``kernel``) or fc with ``width`` units, then ReLU -> Dropout
    -> [MaxPool 2x2]. An fc layer flattens its input (channel-major, as the reference)."""

    kind: str  # "conv" or "fc"
    width: int
    kernel: int = 0
    dropout: float = 0.5
    pool: bool = False


def base_blocks(scenario) -> list[Block]:
    """The scenario's base body, layer by layer: the same layers as ``build_network``;
    tests/test_nets.py checks that they agree."""
    if scenario.arch == "mlp":
        return [Block("fc", 800)] * 3  # the authors' ``mlp``: 3x800, dropout 0.5, no input dropout
    if scenario.arch == "alexnet":
        if len(scenario.input_shape) != 3:
            raise ValueError(f"the AlexNet needs a (C, S, S) input, got {scenario.input_shape}")
        s = scenario.input_shape[1]
        return [
            Block("conv", 64, s // 8, 0.2, True),
            Block("conv", 128, s // 10, 0.2, True),
            Block("conv", 256, 2, 0.5, True),
            Block("fc", 2048),
            Block("fc", 2048),
        ]
    raise ValueError(f"no layer description for architecture {scenario.arch!r}; known: 'mlp', 'alexnet'")


def layer_inputs(blocks: Sequence[Block], widths: Sequence[int], input_shape: Sequence[int]) -> tuple[list[int], int]:
    """(input size of each layer: channels for a conv, features for an fc; features out of the body)."""
    channels, side, flat = input_shape[0], input_shape[-1], math.prod(input_shape)
    sizes = []
    for block, width in zip(blocks, widths):
        if block.kind == "conv":
            sizes.append(channels)
            side = (side - block.kernel + 1) // (2 if block.pool else 1)
            channels, flat = width, width * side * side
        else:
            sizes.append(flat)
            flat = width
    return sizes, flat


def make_layer(block: Block, n_in: int, n_out: int) -> nn.Module:
    return nn.Conv2d(n_in, n_out, block.kernel) if block.kind == "conv" else nn.Linear(n_in, n_out)


def activate(block: Block, pre: Tensor, dropout: nn.Module) -> Tensor:
    """ReLU -> Dropout -> [MaxPool], the order of the authors' blocks."""
    h = dropout(torch.relu(pre))
    return F.max_pool2d(h, 2) if block.pool else h


def count_parameters_of(build) -> int:
    """Parameters of ``build()`` without allocating them (built on the meta device)."""
    with torch.device("meta"):
        return count_parameters(build())


def matched_widths(blocks: Sequence[Block], count, target: int) -> list[int]:
    """Widths scaled by one factor (the widest layer has k units) with ``count(widths)`` closest to
    ``target``; the count increases with k, so k is found by bisection."""
    widest = max(b.width for b in blocks)

    def widths(k: int) -> list[int]:
        return [max(1, k * b.width // widest) for b in blocks]

    lo, hi = 1, 4 * widest
    while lo < hi:  # smallest k whose count reaches the target
        mid = (lo + hi) // 2
        if count(widths(mid)) < target:
            lo = mid + 1
        else:
            hi = mid
    best = min({max(1, lo - 1), lo}, key=lambda k: abs(count(widths(k)) - target))
    return widths(best)
