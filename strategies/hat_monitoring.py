"""HAT's monitoring (paper Sec. 4.4): capacity usage along training (Fig. 5), weight reuse between
tasks (Fig. 6), each task's compression against its validation accuracy (Fig. 7), and whether the masks
learned at all (the share of units whose binarised mask left its random initial state,
cl_bench.strategies.hat_mask_learning). Pure functions of unit masks, and ``HATMonitor``, what a HAT run records.
The authors' code does not compute these; they are measured as the paper describes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from cl_bench.strategies.hat_mask_learning import mask_learning_share

# A unit (and so a weight) is "active" for monitoring if its mask exceeds this. The paper says
# "binarize" without a threshold and the authors' code has none; at s_max = 400 masks are almost binary, so any
# threshold far from 0 and 1 gives the same counts, and 0.5 is the sigmoid's midpoint.
THRESHOLD = 0.5

# Capacity usage (Fig. 5) is sampled this many times per epoch; O(units) each, so it is free.
CAPACITY_SAMPLES_PER_EPOCH = 10


class HATMonitor:
    """The records of one HAT run, kept as plain numbers (JSON for the store, tensors for checkpoints).

    Capacity samples keep their unit counts on the device until ``flush`` (once per epoch), so
    sampling never makes the host wait for the GPU inside the training steps.
    """

    def __init__(
        self, initial_embeddings: Sequence[Tensor], weight_shapes: Sequence[torch.Size], layer_units: Sequence[int]
    ):
        # Every unit's initial embedding: its mask starts on exactly where e > 0. Row t is untouched until
        # task t trains, so after task t the units whose mask differs from that start are what it learned.
        self.initial = [e.detach().clone() for e in initial_embeddings]
        self.weight_shapes, self.layer_units = list(weight_shapes), list(layer_units)
        self.capacity: list[dict[str, Any]] = []  # Fig. 5: {"step", "task", "usage"}
        self.pending: list[tuple[int, int, Tensor]] = []  # (step, task, active units per layer) on the device
        self.compression: list[dict[str, Any]] = []  # Fig. 7: {"task", "epoch", "valid_acc", "compression"}
        self.moved: list[list[float]] = []  # per task, per layer: share of units that left their start
        self.capacity_after: list[float] = []  # per task: capacity used by a^{<=t}

    def sample_capacity(self, step: int, t: int, cumulative_masks: Sequence[Tensor]) -> None:
        self.pending.append((step, t, torch.stack([(a > THRESHOLD).sum() for a in cumulative_masks])))

    def flush(self) -> None:
        """The pending capacity samples as numbers, with one read from the device."""
        if not self.pending:
            return
        steps, tasks, counts = zip(*self.pending)
        total = n_weights(self.weight_shapes)
        for step, task, active in zip(steps, tasks, torch.stack(counts).tolist()):
            usage = sum(active_weight_counts(active, self.layer_units, self.weight_shapes)) / total
            self.capacity.append({"step": step, "task": task, "usage": usage})
        self.pending = []

    def epoch(self, t: int, epoch: int, valid_acc: float, task_masks: Sequence[Tensor]) -> None:
        """Fig. 7: validation accuracy against the share of weights task t's own mask keeps."""
        self.flush()
        compression = weight_fraction(task_masks, self.weight_shapes)
        self.compression.append({"task": t, "epoch": epoch, "valid_acc": valid_acc, "compression": compression})

    def task_learned(self, t: int, task_masks: Sequence[Tensor], cumulative_masks: Sequence[Tensor]) -> None:
        """After task t: how many of its units left their initial state, and the capacity now used."""
        self.moved.append(
            [mask_learning_share(e[t].cpu(), a.cpu(), THRESHOLD) for e, a in zip(self.initial, task_masks)]
        )
        self.capacity_after.append(capacity_usage(cumulative_masks, self.weight_shapes))

    def record(
        self, task_masks: Sequence[Sequence[Tensor]], layers: list[str], parameters: dict[str, int], embedding_init: str
    ) -> dict[str, Any]:
        """Everything Figs. 5-7 and the mask-learning check need, JSON-serialisable."""
        self.flush()
        reuse = weight_reuse(task_masks, self.weight_shapes)
        return {
            "threshold": THRESHOLD,
            "layers": layers,
            "units": list(self.layer_units),
            "mask_sizes": [[int((a > THRESHOLD).sum()) for a in masks] for masks in task_masks],
            "capacity": list(self.capacity),
            "reuse": [[None if math.isnan(v) else v for v in row] for row in reuse],
            "compression": list(self.compression),
            "parameters": parameters,
            "mask_learning": {
                "moved": [list(m) for m in self.moved],
                "capacity": list(self.capacity_after),
                "threshold": THRESHOLD,
                "embedding_init": embedding_init,
            },
        }

    def save_state(self) -> dict[str, Any]:
        self.flush()
        return {
            "capacity": list(self.capacity),
            "compression": list(self.compression),
            "initial": [e.cpu() for e in self.initial],
            "moved": [list(m) for m in self.moved],
            "capacity_after": list(self.capacity_after),
        }

    def load_state(self, state: dict[str, Any], device: torch.device) -> None:
        self.capacity, self.compression, self.pending = list(state["capacity"]), list(state["compression"]), []
        if "initial" in state:  # checkpoints made before 0.2.0 lack them: the fresh model's are the same seed's
            self.initial = [e.to(device) for e in state["initial"]]
        self.moved, self.capacity_after = list(state.get("moved", [])), list(state.get("capacity_after", []))


# ---- monitoring quantities as pure functions of unit masks (paper Sec. 4.4) -----------------------------
# A weight's mask is min(a_l[out], a_{l-1}[in]) (`weight_masks`), and min(x, y) > thr exactly when
# x > thr and y > thr. So the active weights of a layer are (active outputs) x (active inputs) x
# kernel, and every count below is a product of unit counts: nothing of the weights' size is built.


def active_weights(
    unit_masks: Sequence[Tensor], weight_shapes: Sequence[torch.Size], threshold: float = THRESHOLD
) -> list[int]:
    """Per masked layer, how many weights have a binarised weight-level mask of 1."""
    active = [(a > threshold) if a.dtype != torch.bool else a for a in unit_masks]
    return active_weight_counts([int(a.sum()) for a in active], [len(a) for a in active], weight_shapes)


def active_weight_counts(
    active_units: Sequence[int], layer_units: Sequence[int], weight_shapes: Sequence[torch.Size]
) -> list[int]:
    """Per masked layer, the active weights given how many units of each layer are active."""
    counts = []
    for l, (n_out, shape) in enumerate(zip(active_units, weight_shapes)):
        kernel = math.prod(shape[2:])
        if l == 0:  # the input is not masked: every input of an active unit counts
            counts.append(n_out * shape[1] * kernel)
        else:
            spatial = shape[1] // layer_units[l - 1]  # conv -> fc flatten
            counts.append(n_out * active_units[l - 1] * spatial * kernel)
    return counts


def n_weights(weight_shapes: Sequence[torch.Size]) -> int:
    return sum(math.prod(shape) for shape in weight_shapes)


def weight_fraction(
    unit_masks: Sequence[Tensor], weight_shapes: Sequence[torch.Size], threshold: float = THRESHOLD
) -> float:
    """Fraction of the masked layers' weights active under these masks: a task's compression (Fig. 7)."""
    return sum(active_weights(unit_masks, weight_shapes, threshold)) / n_weights(weight_shapes)


def capacity_usage(
    cumulative_masks: Sequence[Tensor], weight_shapes: Sequence[torch.Size], threshold: float = THRESHOLD
) -> float:
    """Fig. 5: fraction of weights that the cumulative masks a^{<=t} hold (binarised weight masks = 1)."""
    return weight_fraction(cumulative_masks, weight_shapes, threshold)


def weight_reuse(
    task_masks: Sequence[Sequence[Tensor]], weight_shapes: Sequence[torch.Size], threshold: float = THRESHOLD
) -> list[list[float]]:
    """Fig. 6: reuse[i][j], for j > i, the fraction of the weights active for task i that are also
    active for task j; NaN elsewhere, and where task i has no active weight."""
    T = len(task_masks)
    binary = [[a > threshold for a in masks] for masks in task_masks]
    reuse = [[math.nan] * T for _ in range(T)]
    for i in range(T):
        own = sum(active_weights(binary[i], weight_shapes))
        for j in range(i + 1, T):
            both = sum(active_weights([a & b for a, b in zip(binary[i], binary[j])], weight_shapes))
            reuse[i][j] = both / own if own else math.nan
    return reuse
