"""The data of HAT's own figures (Figs. 4-7), taken from a section's runs.

- Fig. 4: ``hat_grids``: HAT's rho^{<=T} (or A^{<=T}) over its s_max x c sweep.
- Figs. 5-6: ``hat_monitored``: the HAT runs that stored their monitoring (capacity usage, weight reuse);
  ``isolation_monitored``: the same records of HAT's weight-mask peers (PackNet, WSN), and
  ``isolation_series``: per strategy, HAT's and the peers' capacity after each task and reuse, drawn
  side by side.
- Fig. 7: ``hat_compression_run`` (the run whose compression log is drawn) and
  ``sgd_single_task_accuracy`` (SGD's uncompressed accuracy beside it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cl_bench.report.grouping import Section, json_key
from cl_bench.results import RunMetrics
from cl_bench.store import RunRecord

HAT = "hat"
GRID_KEYS = ("s_max", "c")  # Fig. 4 axes: HAT's stability and compressibility hyperparameters


@dataclass
class HatGrid:
    """Fig. 4 data: ``values[i, j]`` (mean over seeds) at s_max[i], c[j]; NaN where not run."""

    label: str  # the settings shared by the grid's runs, when the section has several grids
    s_max: list[float]
    c: list[float]
    values: np.ndarray
    counts: np.ndarray
    metric: str  # 'rho<=T' or 'A<=T' (when some cell lacks its references)
    seeds: list[int]


def hat_grids(section: Section) -> list[HatGrid]:
    """HAT runs grouped by every setting except s_max and c; a group with >= 2 (s_max, c) cells is a grid."""
    groups: dict[str, list[RunMetrics]] = {}
    for m in section.runs(HAT, main_only=False):
        hp = m.record.hparams
        if all(k in hp for k in GRID_KEYS):
            rest = {k: v for k, v in hp.items() if k not in GRID_KEYS}
            groups.setdefault(json_key({"hparams": rest, "protocol": m.record.protocol}), []).append(m)
    grids = []
    for ms in groups.values():
        cells = {(float(m.record.hparams["s_max"]), float(m.record.hparams["c"])) for m in ms}
        if len(cells) < 2:
            continue
        # Compare cells on the same seeds (the paper's grid is seed 0): the seeds every cell has, if any.
        seed_sets = [
            {m.record.seed for m in ms if (float(m.record.hparams["s_max"]), float(m.record.hparams["c"])) == cell}
            for cell in cells
        ]
        common = set.intersection(*seed_sets)
        if common:
            ms = [m for m in ms if m.record.seed in common]
        s_vals, c_vals = sorted({s for s, _ in cells}), sorted({c for _, c in cells})
        use_rho = all(m.rho_upto is not None for m in ms)
        values = np.full((len(s_vals), len(c_vals)), np.nan)
        counts = np.zeros_like(values)
        for i, s in enumerate(s_vals):
            for j, c in enumerate(c_vals):
                cell = [m for m in ms if float(m.record.hparams["s_max"]) == s and float(m.record.hparams["c"]) == c]
                if cell:
                    values[i, j] = np.mean([m.rho_upto[-1] if use_rho else m.acc_upto[-1] for m in cell])
                    counts[i, j] = len(cell)
        grids.append(
            HatGrid(
                f" [{len(grids) + 1}]",
                s_vals,
                c_vals,
                values,
                counts,
                "rho<=T" if use_rho else "A<=T",
                sorted({m.record.seed for m in ms}),
            )
        )
    if len(grids) == 1:  # one grid needs no number
        grids[0].label = ""
    return grids


def hat_monitored(section: Section) -> list[RunMetrics]:
    """Main-variant HAT runs that stored HAT's monitoring, lowest seed first (the paper shows seed 0)."""
    return sorted((m for m in section.runs(HAT) if "hat" in (m.record.monitoring or {})), key=lambda m: m.record.seed)


# HAT's peers whose monitoring has Figs. 5-6's shape (``monitoring()["isolation"]``: "capacity" as
# {"step", "task", "usage"} points, here one per task end, and the "reuse" matrix); GPM keeps subspaces,
# not weight masks, so it has neither figure (its "gpm" record: basis sizes per task and layer).
ISOLATION_PEERS = ("packnet", "wsn")


def isolation_monitored(section: Section) -> dict[str, list[RunMetrics]]:
    """Per peer strategy, its main-variant runs that stored the isolation monitoring, lowest seed first."""
    found = {}
    for name in ISOLATION_PEERS:
        runs = [m for m in section.runs(name) if "isolation" in (m.record.monitoring or {})]
        if runs:
            found[name] = sorted(runs, key=lambda m: m.record.seed)
    return found


@dataclass
class IsolationSeries:
    """One strategy's Figs. 5-6 values as drawn beside its peers': a single run, its lowest seed."""

    strategy: str
    record: RunRecord
    capacity: list[float]  # per task t: share of the masked layers' weights in use after learning t
    reuse: list[list[float | None]]  # reuse[i][j], j > i: share of task i's weights that task j uses too
    capacity_exact: bool  # False: HAT's run predates its post-task value; its trace's last point per task


def hat_capacity_after_tasks(mon: dict) -> tuple[list[float], bool]:
    """HAT's capacity after each task: the stored post-task value (``mask_learning``, from 0.2.0) with
    True, else the last point of each task in its Fig. 5 trace (sampled during training) with False."""
    stored = (mon.get("mask_learning") or {}).get("capacity")
    if stored is not None:
        return [float(v) for v in stored], True
    last: dict[int, float] = {}
    for p in mon.get("capacity") or []:
        last[int(p["task"])] = float(p["usage"])
    return [last[t] for t in sorted(last)], False


def isolation_series(section: Section) -> list[IsolationSeries]:
    """HAT (if a main-variant run stored its monitoring) then PackNet and WSN, each its lowest seed; empty
    when the section has no peer with monitoring (HAT alone is Figs. 5-6 themselves)."""
    peers = isolation_monitored(section)
    if not peers:
        return []
    out = []
    hat = hat_monitored(section)
    if hat:
        r = hat[0].record
        capacity, exact = hat_capacity_after_tasks(r.monitoring["hat"])
        out.append(IsolationSeries(HAT, r, capacity, r.monitoring["hat"].get("reuse") or [], exact))
    for name, runs in peers.items():
        r = runs[0].record
        iso = r.monitoring["isolation"]
        capacity = [float(p["usage"]) for p in sorted(iso.get("capacity") or [], key=lambda p: int(p["task"]))]
        out.append(IsolationSeries(name, r, capacity, iso.get("reuse") or [], True))
    return out


def hat_compression_run(section: Section) -> RunMetrics | None:
    """Fig. 7's run: a HAT run with a compression log, preferring the paper's compression setting
    (c = 1.5, U(0,2) embeddings, Sec. 4.4), then the main variant; lowest seed first."""
    runs = [
        m for m in section.runs(HAT, main_only=False) if (m.record.monitoring or {}).get("hat", {}).get("compression")
    ]
    if not runs:
        return None
    return min(
        runs,
        key=lambda m: (
            not (m.record.hparams.get("c") == 1.5 and m.record.hparams.get("embedding_init") == "uniform"),
            not section.variants[m.record.run_id].main,
            m.record.seed,
        ),
    )


def sgd_single_task_accuracy(section: Section, seed: int) -> dict[int, float]:
    """Fig. 7's triangles: per task, SGD's validation accuracy at its best (lowest) validation loss while
    learning that task (the weights the trainer restores), from the SGD run of the same seed."""
    runs = [m for m in section.runs("sgd") if m.record.seed == seed]
    if not runs:
        return {}
    best: dict[int, dict] = {}
    for h in runs[0].record.history:
        t = int(h["task"])
        if t not in best or h["valid_loss"] < best[t]["valid_loss"]:
            best[t] = h
    return {t: float(h["valid_acc"]) for t, h in best.items()}


def hat_label(r: RunRecord) -> str:
    """'HAT (s_max=400, c=0.75)': the run's place on the Fig. 4 grid, for captions and titles."""
    hp = r.hparams
    return "HAT" + (
        " (" + ", ".join(f"{k}={hp[k]:g}" for k in GRID_KEYS) + ")"
        if all(isinstance(hp.get(k), (int, float)) for k in GRID_KEYS)
        else ""
    )
