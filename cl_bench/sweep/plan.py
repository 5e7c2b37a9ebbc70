"""The expanded sweep and what it still needs from the store.

A ``Sweep`` is cells (scenario with options x strategy) of grid points. ``Sweep.plan(store)`` lists
every run known now with its status in the store. With ``select`` (the paper's protocol, Sec. 4.1,
the authors' code) the whole grid runs on ``select.seed``, the point with the best validation score is
chosen per cell, and only that point runs on ``then_seeds``; test accuracy never takes part. The score
(``validation_score``), one of ``METRICS``:

- ``final_valid_acc`` (default): the final model's accuracy on every task's validation split, averaged
  over tasks, A^{<=T} on validation data. It counts forgetting, so it can choose a stability knob
  (EWC's lambda, HAT's c); the paper does not say what its seed-0 search maximised.
- ``valid_acc`` / ``valid_loss``: the mean over tasks of that validation metric of the weights the trainer
  kept for each task (the epoch with the lowest regularised validation loss), measured right after the
  task was learned: how well each task is learned, blind to forgetting (for knobs such as the lr).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cl_bench.registry import is_strategy_file
from cl_bench.runner import RunConfig
from cl_bench.runner.checkpoint import checkpoint_path
from cl_bench.runner.identity import CurrentView
from cl_bench.store import RunRecord, Store
from cl_bench.strategy_files import static_name
from cl_bench.trainer import Protocol

ORDERS = ("cells", "seeds")  # the order runs are handed out in (Sweep.order)
METRICS = {"final_valid_acc": max, "valid_acc": max, "valid_loss": min}  # how to pick the best of each score
NO_FINAL_VALIDATION = (
    "search runs have no validation accuracy after the last task (made before cl-bench recorded it): "
    "select with metric valid_acc, or run them again (cl-bench run ... --force)"
)
NOTHING_TO_CHOOSE = "every search run failed"
# Tag of the runs of a chosen point on then_seeds: the report shows the selected setting by default.
SELECTED_TAG = "selected:"  # + the sweep's name


# A sweep of more runs is refused unless lifted (``cl-bench sweep --max-runs``): its plan is held in
# memory, and a count this large is more often a typo (seeds: 1000000000) than a plan.
MAX_RUNS = 100_000


class SweepError(ValueError):
    """A sweep file that cannot be expanded; the message says where and what is accepted."""


def check_max_runs(max_runs: Any) -> int:
    """The limit given (None: MAX_RUNS), an integer >= 1."""
    if max_runs is None:
        return MAX_RUNS
    if not isinstance(max_runs, int) or isinstance(max_runs, bool) or max_runs < 1:
        raise SweepError(f"max_runs must be an integer >= 1, got {max_runs!r}")
    return max_runs


def sweep_size(
    n_scenarios: int,
    points: Sequence[int],
    n_protocols: int,
    n_seeds: int,
    select: Select | None,
    references: Any,
) -> int:
    """The runs a sweep plans at most, from its counts alone (nothing expanded): every grid point
    (x protocol) on every seed, or with ``select`` the whole grid on one seed and one point on
    ``then_seeds``; Joint per protocol and Random once per scenario and final seed."""
    if select is None:
        grid = sum(p * n_protocols for p in points) * n_seeds
        final = n_seeds
    else:
        final = len(select.then_seeds)
        grid = sum(p * n_protocols + final for p in points)  # at most: the search seed may be a final one
    refs = 0
    if references:
        wanted = (
            ("joint", "random") if references is True else [references] if isinstance(references, str) else references
        )
        if isinstance(wanted, (list, tuple)):
            refs = sum(n_protocols if r == "joint" else 1 for r in wanted) * final
    return n_scenarios * (grid + refs)


def check_size(n_runs: int, max_runs: int, source: str) -> None:
    if n_runs > max_runs:
        raise SweepError(
            f"{source}: this sweep plans {n_runs:,} runs, more than the limit of {max_runs:,}; check `seeds` "
            f"and the grid axes, or lift the limit with cl-bench sweep --max-runs {n_runs}"
        )


@dataclass(frozen=True)
class Point:
    """One grid point of a cell: hyperparameter values as written (validated) and a protocol."""

    hparams: dict[str, Any]
    protocol: Protocol
    label: str  # the values that vary or were set, e.g. "s_max=400 c=0.75 | lr=0.1"
    resolved: dict[str, Any] = field(default_factory=dict, compare=False)  # every field, defaults filled


@dataclass
class Cell:
    """A (scenario with options, strategy) pair and its grid points."""

    scenario: str
    options: dict[str, Any]
    strategy: str
    points: list[Point]
    role: str = "grid"  # or "reference" (Joint/Random added by `references`)

    @property
    def key(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.scenario}[{opts}] {self.strategy}" if opts else f"{self.scenario} {self.strategy}"


@dataclass(frozen=True)
class Select:
    seed: int = 0
    metric: str = "final_valid_acc"
    then_seeds: tuple[int, ...] = (0, 1, 2)


@dataclass
class PlanItem:
    config: RunConfig
    cell: Cell
    point: Point
    phase: str  # "all seeds" | "search" (select.seed) | "selected" (then_seeds) | "reference"
    run_id: str
    status: str | None = None  # "finished" | "failed" | None (not in the store)


@dataclass
class Plan:
    items: list[PlanItem]
    waiting: list[tuple[Cell, str]]  # cells whose selection is not decided yet, and why
    unselectable: list[Cell] = field(default_factory=list)  # every search run failed: nothing to choose
    chosen: dict[str, Point] = field(default_factory=dict)  # cell key -> the point selection chose (grids only)

    def pending(self, retry_failed: bool = False) -> list[PlanItem]:
        return [i for i in self.items if i.status is None or (retry_failed and i.status == "failed")]


@dataclass
class Sweep:
    """Cells x seeds, and how to plan them (``order``: ORDERS)."""

    name: str
    cells: list[Cell]
    seeds: Sequence[int] = (0,)  # a tuple, or a range (`seeds: N`): never expanded into a list
    select: Select | None = None
    tags: tuple[str, ...] = ()
    loggers: tuple[str, ...] = ()  # file/dashboard loggers each run writes (cl_bench.loggers)
    order: str = "cells"  # "cells": cell by cell; "seeds": every cell's first seed before any second seed

    def plan(self, store: Store) -> Plan:
        """Every run this sweep needs that is known now, with its status in ``store``. With ``select``,
        a cell's selected runs appear once its whole search grid is in the store."""
        items, waiting, unselectable, chosen_points = [], [], [], {}
        if isinstance(store, CurrentView):  # a file strategy is stored under its name: say which file that is
            for cell in self.cells:
                if is_strategy_file(cell.strategy):
                    store.strategy_files[static_name(cell.strategy)] = cell.strategy
        for cell in self.cells:
            if cell.role == "reference" or self.select is None:
                seeds = self.final_seeds() if cell.role == "reference" else self.seeds
                phase = "reference" if cell.role == "reference" else "all seeds"
                items += [self._item(cell, p, s, phase) for p in cell.points for s in seeds]
                continue
            search = [self._item(cell, p, self.select.seed, "search") for p in cell.points]
            items += search
            if len(cell.points) == 1:  # nothing to choose: do not wait for the search run
                chosen, why = cell.points[0], ""
            else:
                _fill_status(store, search)
                chosen, why = choose(search, store, self.select.metric)
            if chosen is None and why == NOTHING_TO_CHOOSE:
                unselectable.append(cell)
            elif chosen is None:
                waiting.append((cell, why))
            else:
                if len(cell.points) > 1:
                    chosen_points[cell.key] = chosen
                items += [self._item(cell, chosen, s, "selected") for s in self.select.then_seeds]
        unique: dict[str, PlanItem] = {}
        for item in items:  # the search run of the chosen point on a then_seed is the same run: one item
            kept = unique.setdefault(item.run_id, item)  # with both items' tags (the selected tag included)
            if kept is not item and not set(item.config.tags) <= set(kept.config.tags):
                tags = list(dict.fromkeys([*kept.config.tags, *item.config.tags]))
                unique[item.run_id] = dataclasses.replace(kept, config=dataclasses.replace(kept.config, tags=tags))
        items = list(unique.values())
        if self.order == "seeds":  # a complete table of the first seed before any run of the next one
            rank = {s: i for i, s in enumerate(dict.fromkeys(self._seed_order()))}
            items.sort(key=lambda item: rank[item.config.seed])  # stable: cell order within a seed
        _fill_status(store, items)
        return Plan(items, waiting, unselectable, chosen_points)

    def _seed_order(self) -> list[int]:
        return [self.select.seed, *self.select.then_seeds] if self.select else list(self.seeds)

    def final_seeds(self) -> Sequence[int]:
        return self.select.then_seeds if self.select else self.seeds

    def _item(self, cell: Cell, point: Point, seed: int, phase: str) -> PlanItem:
        tags = [*self.tags, f"sweep:{self.name}"]
        if phase == "selected" and len(cell.points) > 1:  # chosen on validation (tags do not enter run ids)
            tags.append(f"{SELECTED_TAG}{self.name}")
        config = RunConfig(
            cell.strategy, cell.scenario, seed, dict(point.hparams), point.protocol, dict(cell.options), tags
        )
        return PlanItem(config, cell, point, phase, config.run_id(point.resolved))


def _fill_status(store: Store, items: list[PlanItem]) -> None:
    found = store.statuses([i.run_id for i in items]) if store.path.exists() else {}
    for item in items:
        item.status = found.get(item.run_id)


# ---- selection ---------------------------------------------------------------------------------------
def validation_score(record: RunRecord, metric: str = "final_valid_acc") -> float:
    """A finished run's score for ``metric`` (module docstring), from validation data only, never test;
    NaN when the run has none (``final_valid_acc`` of a run stored before it was recorded)."""
    if metric not in METRICS:
        raise SweepError(f"unknown selection metric {metric!r}; valid: {', '.join(METRICS)}")
    if metric == "final_valid_acc":
        valid = record.valid_accuracy
        return math.nan if valid is None or np.isnan(valid[-1]).any() else float(valid[-1].mean())
    by_task: dict[int, list[dict[str, Any]]] = {}
    for log in record.history:
        by_task.setdefault(log["task"], []).append(log)
    if not by_task:
        return math.nan
    kept = [min(logs, key=lambda h: h["valid_loss"]) for logs in by_task.values()]  # first minimum
    return sum(h[metric] for h in kept) / len(kept)


def choose(search: list[PlanItem], store: Store, metric: str) -> tuple[Point | None, str]:
    """The point of the best validation score among finished search runs (ties: first in grid
    order), or (None, why) while some are not in the store or if none finished."""
    missing = [i for i in search if i.status is None]
    if missing:
        return None, f"{len(missing)} of {len(search)} search runs not done"
    scored, unscored = [], 0
    for item in search:
        if item.status == "finished":
            score = validation_score(store.get(item.run_id), metric)
            if math.isnan(score):
                unscored += 1
            else:
                scored.append((score, item.point))
    if unscored and metric == "final_valid_acc":  # never choose from part of the grid
        return None, f"{unscored} of {len(search)} {NO_FINAL_VALIDATION}"
    if not scored:
        return None, NOTHING_TO_CHOOSE
    best = METRICS[metric](s for s, _ in scored)
    return next(p for s, p in scored if s == best), ""


# ---- status --------------------------------------------------------------------------------------------
def status_rows(sweep: Sweep, store: Store) -> list[dict[str, Any]]:
    """One row per (scenario, strategy, grid point, phase): finished / failed / pending over seeds,
    and pending runs with a checkpoint (resumable), plus one row per selection still waiting. A finished
    search run of a grid has its validation ``score`` (``select.metric``), the chosen point ``chosen``."""
    plan = sweep.plan(store)
    rows: dict[tuple, dict[str, Any]] = {}
    for item in plan.items:
        key = (item.cell.key, item.point.label, item.phase)
        row = rows.setdefault(
            key,
            {
                "cell": item.cell.key,
                "point": item.point.label,
                "phase": item.phase,
                "seeds": [],
                "finished": 0,
                "failed": 0,
                "pending": 0,
                "partial": 0,
            },
        )
        row["seeds"].append(item.config.seed)
        row[item.status or "pending"] += 1
        if item.phase == "search" and len(item.cell.points) > 1:
            row["chosen"] = plan.chosen.get(item.cell.key) == item.point
            if item.status == "finished":
                row["score"] = validation_score(store.get(item.run_id), sweep.select.metric)
        if item.status is None and checkpoint_path(store.path, item.run_id).exists():
            row["partial"] += 1
    out = list(rows.values())
    for cell, why in plan.waiting:
        out.append(
            {
                "cell": cell.key,
                "point": f"(selection waits: {why})",
                "phase": "selected",
                "seeds": list(sweep.final_seeds()),
                "finished": 0,
                "failed": 0,
                "pending": len(sweep.final_seeds()),
                "partial": 0,
            }
        )
    for cell in plan.unselectable:
        out.append(
            {
                "cell": cell.key,
                "point": f"(nothing to select: {NOTHING_TO_CHOOSE}, see --errors)",
                "phase": "selected",
                "seeds": [],
                "finished": 0,
                "failed": 0,
                "pending": 0,
                "partial": 0,
            }
        )
    return out
