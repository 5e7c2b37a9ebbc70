"""How strategies look in every table and figure: the paper's spelling of their names, one colour and one
marker each.

The colours are Paul Tol's colour-blind-safe "muted" palette for the nine baselines, his "vibrant"
orange for HAT, his medium-contrast colours (and light pear) for the strategies beyond the paper, black and
grey for the Joint and Random bounds; each strategy also has its own marker,
so lines stay apart in greyscale print. Kept apart from the drawing (plots.py) so the tables and the
HTML page name and colour strategies without importing matplotlib.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cl_bench.registry import is_strategy_file

# Fixed colours of the known strategies (Tol muted + vibrant orange; colour-blind safe).
KNOWN_COLORS = {
    "sgd": "#332288",
    "sgd_frozen": "#88ccee",
    "ewc": "#117733",
    "imm_mean": "#44aa99",
    "imm_mode": "#999933",
    "lwf": "#ddcc77",
    "lfl": "#aa4499",
    "pathnet": "#882255",
    "pnn": "#cc6677",
    "hat": "#ee7733",
    # beyond the paper: Tol's "medium-contrast" palette and his light pear, apart from the muted one
    "si": "#004488",
    "mas": "#997700",
    "er": "#994455",
    "agem": "#6699cc",
    "packnet": "#eecc66",
    "wsn": "#ee99aa",
    "gpm": "#bbcc33",
    "joint": "#000000",
    "random": "#777777",
}
# Handed in order to strategies not in KNOWN_COLORS (sorted by name), then cycled (Tol light/dark).
FREE_COLORS = [
    "#0077bb",
    "#33bbee",
    "#009988",
    "#cc3311",
    "#ee3377",
    "#bbbbbb",
    "#77aadd",
    "#ee8866",
    "#aaaa00",
    "#ffaabb",
]
MARKERS = {
    "sgd": "o",
    "sgd_frozen": "s",
    "ewc": "^",
    "imm_mean": "v",
    "imm_mode": "<",
    "lwf": ">",
    "lfl": "P",
    "pathnet": "X",
    "pnn": "D",
    "hat": "*",
    "si": "h",
    "mas": "p",
    "er": "d",
    "agem": "H",
    "packnet": "8",
    "wsn": "+",
    "gpm": "x",
    "joint": "o",
    "random": ".",
}
FREE_MARKERS = ["h", "p", "d", "H", "8"]
LABELS = {
    "sgd": "SGD",
    "sgd_frozen": "SGD-F",
    "ewc": "EWC",
    "imm_mean": "IMM-mean",
    "imm_mode": "IMM-mode",
    "lwf": "LwF",
    "lfl": "LFL",
    "pathnet": "PathNet",
    "pnn": "PNN",
    "hat": "HAT",
    "si": "SI",  # beyond the paper
    "mas": "MAS",
    "er": "ER",
    "agem": "A-GEM",
    "packnet": "PackNet",  # beyond the paper (issue 33)
    "wsn": "WSN",
    "gpm": "GPM",
    "joint": "Joint",
    "random": "Random",
}
REFERENCE_STYLE = {"joint": "--", "random": ":"}  # line styles of the bounds in the curve figures


def strategy_label(name: str) -> str:
    """The paper's spelling of a strategy name (SGD-F, IMM-mean, ...); a user file as ``file.py:Class``;
    other names unchanged."""
    if name in LABELS:
        return LABELS[name]
    if is_strategy_file(name):
        path, sep, cls = name.rpartition(":") if ".py:" in name else (name, "", "")
        return f"{Path(path).name}{sep}{cls}"
    return name


def strategy_colors(names: Iterable[str]) -> dict[str, str]:
    """strategy -> colour: fixed for the known names; the others, sorted, take FREE_COLORS in order."""
    names = sorted(set(names))
    colors = {n: KNOWN_COLORS[n] for n in names if n in KNOWN_COLORS}
    others = [n for n in names if n not in KNOWN_COLORS]
    for i, n in enumerate(others):
        colors[n] = FREE_COLORS[i % len(FREE_COLORS)]
    return colors


def strategy_markers(names: Iterable[str]) -> dict[str, str]:
    """strategy -> matplotlib marker: fixed for the known names; the others, sorted, cycle FREE_MARKERS."""
    names = sorted(set(names))
    others = [n for n in names if n not in MARKERS]
    return {n: MARKERS[n] for n in names if n in MARKERS} | {
        n: FREE_MARKERS[i % len(FREE_MARKERS)] for i, n in enumerate(others)
    }
