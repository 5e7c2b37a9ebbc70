"""Whether HAT's attention masks learned: the share of units whose binarised mask left its random start.

HAT's mask of a unit for task t is a = sigmoid(s e) (Eq. 1); before task t trains, e is its random
initial embedding, so the unit starts "on" (a > 0.5) exactly when e > 0, for any s > 0. After the task,
a unit whose binarised mask (a > threshold) differs from that start has moved: the task learned to open
or close it. With too few steps per task the embeddings barely move and the masks stay a random half of
every layer (N(0,1) start): HAT then protects and reuses units at random, not as learned.

A pure function of arrays (numpy, or anything ``np.asarray`` reads: CPU tensors), so the strategy can
record it after each task and the report can check it against a hand-computed example.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NOT_LEARNED_BELOW = 0.10  # a run whose units moved less than this on average: its masks did not learn


def _layers(x) -> list[np.ndarray]:
    if isinstance(x, np.ndarray) or not isinstance(x, Sequence) or not len(x) or np.isscalar(x[0]):
        return [np.asarray(x, dtype=float).ravel()]
    return [np.asarray(layer, dtype=float).ravel() for layer in x]


def moved_units(initial_embedding, final_mask, threshold: float = 0.5) -> int:
    """How many units' binarised final mask (``final_mask > threshold``) differs from their initial
    state (``initial_embedding > 0``). Each argument is one layer's array or a list of layers."""
    initial, final = _layers(initial_embedding), _layers(final_mask)
    if [a.shape for a in initial] != [b.shape for b in final]:
        raise ValueError(
            f"initial embeddings {[a.shape for a in initial]} and final masks "
            f"{[b.shape for b in final]} must have one value per unit, layer by layer"
        )
    return int(sum(((e > 0) != (a > threshold)).sum() for e, a in zip(initial, final)))


def mask_learning_share(initial_embedding, final_mask, threshold: float = 0.5) -> float:
    """The share (0..1) of units whose binarised final mask differs from their initial state, over all
    the layers given (each unit counts once). NaN when there is no unit."""
    n = sum(a.size for a in _layers(initial_embedding))
    return moved_units(initial_embedding, final_mask, threshold) / n if n else float("nan")


def units_weighted(shares: Sequence[float], units: Sequence[int]) -> float:
    """One share from per-layer shares (as HAT records them) weighted by each layer's units."""
    total = sum(units)
    return float(sum(s * u for s, u in zip(shares, units)) / total) if total else float("nan")
