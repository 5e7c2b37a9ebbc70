"""Progressive neural networks (PNN; Rusu et al., 2016, arXiv:1606.04671), as the HAT reference codes
them (github.com/joansj/hat: network ``alexnet_progressive``).

One column per task, each a narrow copy of the scenario's base body (the AlexNet-like net or the
3x800 MLP) with its own head. Column t > 0 also receives, at every layer l >= 1 and at its head, a lateral
adapter from all earlier columns (Rusu et al. Eq. 2)::

    h_l^t = f( W_l^t h_{l-1}^t + U_l^t σ( V_l^t [α_0 h_{l-1}^0, ..., α_{t-1} h_{l-1}^{t-1}] ) )

(columns and tasks 0-based) with f the layer's ReLU -> Dropout [-> MaxPool], one learnable scalar α
per earlier column (initialised N(0, 1)), V a 1x1 conv (conv targets) or a linear map (fc targets)
back to one column's width, σ a ReLU, and U a layer of the target's own type and kernel whose output
is added to column t's pre-activation. The head's adapter has no σ (V then U, both linear). Training
task t trains column t and its adapters only: earlier columns are frozen, so forgetting is zero by
construction; task tau is always evaluated with column tau.

Faithful to the reference code, with three of its properties kept and noted:

* Frozen columns run in the model's train/eval mode, so their dropout is active while a later column
  trains.
* When column t runs, the earlier columns it reads are computed as *plain* columns, without their own
  lateral inputs (the reference's ``alexnet_progressive.forward`` computes ``h_prev`` from each old
  column's own layers only). This matters from the third task on.
  ``recursive_laterals=True`` gives Rusu et al.'s form, where each earlier column includes its
  laterals exactly as when it was trained.
* Task t's logits are column t's plain head. The reference builds a head adapter for every column
  t > 0 (so it counts in the parameters), but its ``forward`` adds it only to the heads of *earlier*
  columns, whose outputs the loss of task t never reads: the adapter never trains and never changes
  an accuracy. ``lateral_head=True`` adds it to task t's logits, as Rusu et al.'s Eq. 2 does for
  every layer (cl-bench's default before 0.2.0).

Column widths: int(1.117 x base width / n_tasks) per layer on the AlexNet (the authors' ``expand_factor``: conv 8, 17,
35, fc 285, 285 for 8 tasks), which makes the total close to the base network's. The reference has no
MLP PNN; its analogue here uses the same rule with the width factor chosen so that the total parameter
count is the closest to the base 3x800 MLP's (searched over the integer column width):

==========================================  ================  ==============  ===============
scenario                                    column widths     PNN parameters  base parameters
==========================================  ================  ==============  ===============
split_mnist (2 tasks x 5 classes)           381 x 3           1,913,781       1,917,610
permuted_mnist (10 tasks x 10 classes)      86 x 3            1,976,863       1,989,700
AlexNet, 8 tasks x 10 classes, 3x32x32      8,17,35,285,285   7,038,870       6,667,792
AlexNet, mixture heads in seed-0 order      8,17,35,285,285   7,134,966       7,104,229
==========================================  ================  ==============  ===============

That is -0.20%, -0.65%, +5.57% and +0.43% of the base (MLP width factors 381 x 2 / 800 = 0.9525 and
86 x 10 / 800 = 1.075). The mixture row is the authors' count; it depends on the task order,
since only tasks t > 0 have a head adapter (seed 0 starts with FaceScrub's 100 classes). Each run
stores its widths and counts in ``monitoring``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cl_bench import nets
from cl_bench.nets import Block, activate, base_blocks, count_parameters_of, layer_inputs, make_layer, matched_widths
from cl_bench.registry import register_strategy
from cl_bench.strategy import Strategy, TaskData, hparam

REFERENCE_WIDTH_FACTOR = {"alexnet": 1.117}  # the authors' ``expand_factor``; none for the MLP


# ---- the network ----------------------------------------------------------------------------------
class Lateral(nn.Module):
    """The adapter into column t at one layer: U σ(V [α_1 h_1, ..., α_t h_t]) (Rusu et al. Eq. 2)."""

    def __init__(self, n_prev: int, kind: str, size: int, U: nn.Module, relu: bool = True):
        super().__init__()
        self.alpha = nn.Parameter(torch.randn(n_prev))  # reference: Embedding(1, t), N(0, 1) init
        self.V = nn.Conv2d(n_prev * size, size, 1) if kind == "conv" else nn.Linear(n_prev * size, size)
        self.U = U
        self.relu = relu  # the head's adapter has no non-linearity (the authors' code)

    def forward(self, hs: Sequence[Tensor]) -> Tensor:
        z = self.V(torch.cat([a * h for a, h in zip(self.alpha, hs)], 1))
        return self.U(torch.relu(z) if self.relu else z)


class Column(nn.Module):
    def __init__(self, layers: Sequence[nn.Module], head: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.head = head


class ProgressiveNet(nn.Module):
    """Columns 0..T-1 of ``widths`` units per layer; ``laterals[t]`` holds column t's adapters, one per
    layer l >= 1 and one for the head (empty for t = 0)."""

    def __init__(
        self, blocks: Sequence[Block], widths: Sequence[int], input_shape: Sequence[int], head_sizes: Sequence[int]
    ):
        super().__init__()
        self.blocks, self.widths = list(blocks), list(widths)
        sizes, n_features = layer_inputs(blocks, widths, input_shape)
        self.dropouts = nn.ModuleList(nn.Dropout(b.dropout) for b in blocks)
        self.columns = nn.ModuleList()
        self.laterals = nn.ModuleList()
        for t, n_classes in enumerate(head_sizes):
            self.columns.append(
                Column(
                    [make_layer(b, n, w) for b, n, w in zip(blocks, sizes, widths)], nn.Linear(n_features, n_classes)
                )
            )
            adapters = []
            if t > 0:
                # Into layer l the earlier columns feed their layer l-1 output (post-pool, post-dropout,
                # flattened for an fc target): ``sizes[l]`` values per column, mapped back to one width.
                for l in range(1, len(blocks)):
                    adapters.append(Lateral(t, blocks[l].kind, sizes[l], make_layer(blocks[l], sizes[l], widths[l])))
                adapters.append(Lateral(t, "fc", n_features, nn.Linear(n_features, n_classes), relu=False))
            self.laterals.append(nn.ModuleList(adapters))

    def forward(self, x: Tensor, t: int, recursive: bool = False, lateral_head: bool = False) -> Tensor:
        """Logits of column t. Earlier columns are frozen, so they run without an autograd graph."""
        grad = torch.is_grad_enabled()
        hs = [x] * (t + 1)
        for l, block in enumerate(self.blocks):
            if block.kind == "fc":
                hs = [h.flatten(1) for h in hs]
            out = []
            for j in range(t + 1):
                with torch.set_grad_enabled(grad and j == t):
                    pre = self.columns[j].layers[l](hs[j])
                    if l > 0 and j > 0 and (j == t or recursive):  # reference: old columns run plain
                        pre = pre + self.laterals[j][l - 1](hs[:j])  # Rusu et al. Eq. 2
                    out.append(activate(block, pre, self.dropouts[l]))
            hs = out
        logits = self.columns[t].head(hs[t])
        if t > 0 and lateral_head:  # Rusu et al.; the reference code reads column t's plain head
            logits = logits + self.laterals[t][-1](hs[:t])  # head adapter: linear V then U
        return logits


def column_widths(blocks: Sequence[Block], factor: float, n_tasks: int) -> list[int]:
    """int(factor x base width / n_tasks) per layer (the authors' rule), at least one unit."""
    return [max(1, int(factor * b.width / n_tasks)) for b in blocks]


# ---- the strategy ---------------------------------------------------------------------------------
@dataclass
class PNNHparams:
    width_factor: float = hparam(
        0.0,
        "Column width = int(width_factor x base width / n_tasks); 0 = the authors' 1.117 on the "
        "AlexNet, and on the MLP the width whose total parameter count is closest to the "
        "base 3x800 MLP's",
        at_least=0,
    )
    recursive_laterals: bool = hparam(
        False,
        "True: earlier columns include their own laterals when feeding column t (Rusu et al.); "
        "False: they run as plain columns, as the reference code does",
    )
    lateral_head: bool = hparam(
        False,
        "True: task t's logits add the head's lateral adapter (Rusu et al.); False: column t's "
        "plain head, as the reference code (its head adapter exists but never reaches the loss)",
    )


@register_strategy
class PNN(Strategy[PNNHparams]):
    """Progressive networks: a new column per task, laterals from the frozen earlier columns."""

    name = "pnn"
    clip_grad = 10000.0  # the authors' code's clipping threshold for this method
    keeps = ()  # nothing beyond the model: build_model rebuilds the widths, before_task the flags

    def build_model(self) -> nn.Module:
        sc = self.scenario
        blocks, heads = base_blocks(sc), [task.n_classes for task in sc.tasks]

        def build(widths):
            return ProgressiveNet(blocks, widths, sc.input_shape, heads)

        base_parameters = count_parameters_of(lambda: nets.build_network(sc))
        factor = self.hp.width_factor or REFERENCE_WIDTH_FACTOR.get(sc.arch)
        if factor:
            widths = column_widths(blocks, factor, len(heads))
        else:  # no reference factor (the MLP): match the base network's parameter count
            widths = matched_widths(blocks, lambda w: count_parameters_of(lambda: build(w)), base_parameters)
        model = build(widths)
        model.base_parameters = base_parameters  # what its widths were matched to (monitoring)
        return model

    def setup(self) -> None:
        self.widths, self.base_parameters = self.model.widths, self.model.base_parameters

    def forward(self, x: Tensor, t: int) -> Tensor:
        return self.model(x, t, self.hp.recursive_laterals, self.hp.lateral_head)

    def before_task(self, task: TaskData) -> None:
        """Freeze everything but column t and its adapters (the authors' ``unfreeze_column``)."""
        self.model.requires_grad_(False)
        for p in self.trainable_parameters(task.index):
            p.requires_grad_(True)

    def trainable_parameters(self, t: int) -> list[nn.Parameter]:
        return [*self.model.columns[t].parameters(), *self.model.laterals[t].parameters()]

    def monitoring(self) -> dict:
        return {
            "column_widths": self.widths,
            "parameters": nets.count_parameters(self.model),
            "base_parameters": self.base_parameters,
        }
