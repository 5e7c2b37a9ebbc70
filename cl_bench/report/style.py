"""How strategies look in every table and figure: the paper's spelling of their names and one colour each.

Kept apart from the drawing (plots.py) so the tables and the HTML page name and colour strategies without
importing matplotlib.
"""
from __future__ import annotations

from collections.abc import Iterable

# Fixed colours of the known strategies (tab20 pairs: a baseline and its variant share a hue).
KNOWN_COLORS = {
    "sgd": "#1f77b4", "sgd_frozen": "#6baed6",
    "ewc": "#2ca02c", "imm_mean": "#98df8a", "imm_mode": "#bcbd22",
    "lwf": "#ff7f0e", "lfl": "#f4a460",
    "pathnet": "#9467bd", "pnn": "#c5b0d5",
    "hat": "#d62728",
    "joint": "#000000", "random": "#7f7f7f",
}
# Handed in order to strategies not in KNOWN_COLORS (sorted by name), then cycled.
FREE_COLORS = ["#e377c2", "#17becf", "#8c564b", "#393b79", "#637939", "#843c39", "#7b4173",
               "#9edae5", "#c49c94", "#f7b6d2"]
LABELS = {"sgd": "SGD", "sgd_frozen": "SGD-F", "ewc": "EWC", "imm_mean": "IMM-mean",
          "imm_mode": "IMM-mode", "lwf": "LwF", "lfl": "LFL", "pathnet": "PathNet", "pnn": "PNN",
          "hat": "HAT", "joint": "Joint", "random": "Random"}
REFERENCE_STYLE = {"joint": "--", "random": ":"}  # line styles of the bounds in the curve figures


def strategy_label(name: str) -> str:
    """The paper's spelling of a strategy name (SGD-F, IMM-mean, ...); unknown names unchanged."""
    return LABELS.get(name, name)


def strategy_colors(names: Iterable[str]) -> dict[str, str]:
    """strategy -> colour: fixed for the known names; the others, sorted, take FREE_COLORS in order."""
    names = sorted(set(names))
    colors = {n: KNOWN_COLORS[n] for n in names if n in KNOWN_COLORS}
    others = [n for n in names if n not in KNOWN_COLORS]
    for i, n in enumerate(others):
        colors[n] = FREE_COLORS[i % len(FREE_COLORS)]
    return colors
