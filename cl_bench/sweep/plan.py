"""The expanded sweep and what it still needs from the store.

A ``Sweep`` is cells (scenario with options x strategy) of grid points. ``Sweep.plan(store)`` lists
every run known now with its status in the store; ``keep_finished=False`` keeps only what is still to
do and counts the rest, made and looked up chunk by chunk, so a sweep of a million runs that is nearly
done plans in the memory of what is pending. With ``select`` (the paper's protocol, Sec. 4.1,
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

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cl_bench.registry import is_strategy_file
from cl_bench.runner import RunConfig
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


# What a plan reads runs from: a store, or a store as today's strategy files and data see it (CurrentView).
Runs = Store | CurrentView

# A sweep of more runs is refused unless lifted (``cl-bench sweep --max-runs``): a count this large is more
# often a typo (seeds: 1000000000) than a plan, and its runs are made (hashed) one by one at every plan.
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
    items: list[PlanItem]  # every run known now, or without the finished ones (Sweep.plan's keep_finished)
    waiting: list[tuple[Cell, str]]  # cells whose selection is not decided yet, and why
    unselectable: list[Cell] = field(default_factory=list)  # every search run failed: nothing to choose
    chosen: dict[str, Point] = field(default_factory=dict)  # cell key -> the point selection chose (grids only)
    # Runs known now per status ("finished", "failed", "pending"), kept in ``items`` or not.
    counts: dict[str, int] = field(default_factory=dict)

    def pending(self, retry_failed: bool = False) -> list[PlanItem]:
        return [i for i in self.items if i.status is None or (retry_failed and i.status == "failed")]

    @property
    def size(self) -> int:
        """Every run known now, the finished ones a plan did not keep included."""
        return sum(self.counts.values())


# Runs made and looked up in the store at once while planning: a plan holds one chunk of finished runs at
# most. A multiple of the store's reads of 500 ids, so status reads the attempts in the same batches as before.
CHUNK = 2_000


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

    def plan(
        self,
        store: Runs,
        keep_finished: bool = True,
        cells: Sequence[Cell] | None = None,
        each_chunk: Callable[[list[PlanItem]], None] | None = None,
    ) -> Plan:
        """Every run this sweep needs that is known now, with its status in ``store``. With ``select``,
        a cell's selected runs appear once its whole search grid is in the store.

        Runs are made and their statuses read chunk by chunk (CHUNK). ``keep_finished=False`` keeps only
        what is still to do (pending runs, and failed ones for --retry-failed) and counts the finished ones
        (``Plan.counts``): memory grows with what is pending, not with the grid (plus one run id per grid
        point). The sweep driver, ``sweep --dry-run`` and ``cl-bench status`` plan so. The full plan (the
        default) keeps every run: the report's selections (cl_bench.report.variants) read it.
        ``cells``: plan only these (the driver re-plans the cells whose selection waits). ``each_chunk``:
        called with each chunk of runs once their statuses are read, finished ones included, in the order
        of the cells (before ``order: seeds`` sorts what is kept)."""
        self._name_strategy_files(store)
        planner = _Planner(self, store, self.cells if cells is None else list(cells))
        items: list[PlanItem] = []
        counts = {"finished": 0, "failed": 0, "pending": 0}
        for chunk in _chunks(planner.runs(), CHUNK):
            _fill_status(store, chunk)
            if each_chunk is not None:
                each_chunk(chunk)
            for item in chunk:
                status = item.status or "pending"
                counts[status] = counts.get(status, 0) + 1
            items += chunk if keep_finished else [i for i in chunk if i.status != "finished"]
        found = planner.selections
        return Plan(self.in_order(items), found.waiting, found.unselectable, found.chosen, counts)

    def _name_strategy_files(self, store: Runs) -> None:
        if isinstance(store, CurrentView):  # a file strategy is stored under its name: say which file that is
            for cell in self.cells:
                if is_strategy_file(cell.strategy):
                    store.strategy_files[static_name(cell.strategy)] = cell.strategy

    def in_order(self, items: list[PlanItem]) -> list[PlanItem]:
        """``items`` (in the order of the cells) in the order runs are handed out. ``order: seeds``: a
        complete table of the first seed before any run of the next one; a stable sort, so sorting only
        some of the runs gives the order sorting all of them would, with the others left out."""
        if self.order != "seeds":
            return items
        rank = self.seed_rank()
        return sorted(items, key=lambda item: rank(item.config.seed))  # stable: cell order within a seed

    def seed_rank(self) -> Callable[[int], int]:
        """Each seed's place in ``order: seeds``: the selection seed, then ``then_seeds``; or ``seeds``."""
        if self.select is None and isinstance(self.seeds, range):
            return self.seeds.index  # O(1) on a range: no table of a million seeds
        rank = {s: i for i, s in enumerate(dict.fromkeys(self._seed_order()))}
        return rank.__getitem__

    def _seed_order(self) -> list[int]:
        return [self.select.seed, *self.select.then_seeds] if self.select else list(self.seeds)

    def final_seeds(self) -> Sequence[int]:
        return self.select.then_seeds if self.select else self.seeds


@dataclass
class _Selections:
    """What ``select`` decided for the cells of a plan, from their search runs in the store."""

    runs: dict[int, int] = field(default_factory=dict)  # id(cell) -> index of the point its selected runs run
    waiting: list[tuple[Cell, str]] = field(default_factory=list)
    unselectable: list[Cell] = field(default_factory=list)
    chosen: dict[str, Point] = field(default_factory=dict)  # cell key -> chosen point (grids of several points)


class _Planner:
    """The making of one plan: the selections first (they need only the search runs), then every run of the
    cells one by one, in the order of the cells, each run once.

    Two grid points (of one cell or of two cells of the same scenario and strategy) may be one configuration,
    and the chosen point's search run is one of its selected runs when ``select.seed`` is in ``then_seeds``:
    such runs are the same run (one run id). The first is kept with the tags of all (the selected tag
    included); only points whose configuration comes more than once are remembered run by run, so the
    plan never holds a set of every run id."""

    def __init__(self, sweep: Sweep, store: Runs, cells: list[Cell]):
        self.sweep, self.store, self.cells = sweep, store, cells
        # Every point's configuration, as its run id on one seed: the first of `order: seeds` (reused for
        # that seed's runs, so no run id is hashed twice)
        self.key_seed = sweep.select.seed if sweep.select else sweep.seeds[0]
        self.then_seeds = frozenset(sweep.select.then_seeds if sweep.select else ())
        self.keys: dict[tuple[int, int], str] = {}  # (id(cell), point index) -> run id on key_seed
        self.selected_keys: set[str] = set()  # configurations of chosen points of grids (the selected tag)
        self.selections = self._decide()
        self.selected_keys = {
            self._key(cell, index)
            for cell in cells
            if len(cell.points) > 1 and (index := self.selections.runs.get(id(cell))) is not None
        }
        self.repeated = self._repeated_keys()
        self.seen: set[str] = set()  # run ids of the runs of repeated configurations made so far

    def _decide(self) -> _Selections:
        """Per cell of a grid under ``select``: its chosen point, or why it waits or has nothing to choose."""
        out, select = _Selections(), self.sweep.select
        for cell in self.cells:
            if select is None or cell.role == "reference":
                continue
            if len(cell.points) == 1:  # nothing to choose: do not wait for the search run
                out.runs[id(cell)] = 0
                continue
            search = [self._item(cell, i, select.seed, "search") for i in range(len(cell.points))]
            _fill_status(self.store, search)
            chosen, why = choose(search, self.store, select.metric)
            if chosen is None and why == NOTHING_TO_CHOOSE:
                out.unselectable.append(cell)
            elif chosen is None:
                out.waiting.append((cell, why))
            else:
                out.runs[id(cell)] = next(i for i, p in enumerate(cell.points) if p is chosen)
                out.chosen[cell.key] = chosen
        return out

    def _repeated_keys(self) -> set[str]:
        """Configurations that more than one (cell, point, phase) runs: their runs may come twice."""
        times: dict[str, int] = {}
        for cell in self.cells:
            chosen = self.selections.runs.get(id(cell)) if cell.role == "grid" else None
            for index in [*range(len(cell.points)), *([] if chosen is None else [chosen])]:
                key = self._key(cell, index)
                times[key] = times.get(key, 0) + 1
        return {key for key, n in times.items() if n > 1}

    def runs(self) -> Iterator[PlanItem]:
        """Every run of the cells once, in the order of the cells (module docstring, Sweep.plan)."""
        for cell in self.cells:
            for index, seed, phase in self._cell_runs(cell):
                item = self._item(cell, index, seed, phase)
                if self._key(cell, index) in self.repeated:
                    if item.run_id in self.seen:
                        continue  # the same run came before: that one is kept, with this one's tags
                    self.seen.add(item.run_id)
                yield item

    def _cell_runs(self, cell: Cell) -> Iterable[tuple[int, int, str]]:
        """(point index, seed, phase) of each run of ``cell``: its grid on every seed, or with ``select``
        its search grid, then the chosen point on ``then_seeds`` once decided."""
        select = self.sweep.select
        if cell.role == "reference" or select is None:
            seeds = self.sweep.final_seeds() if cell.role == "reference" else self.sweep.seeds
            phase = "reference" if cell.role == "reference" else "all seeds"
            return ((i, s, phase) for i in range(len(cell.points)) for s in seeds)
        search = [(i, select.seed, "search") for i in range(len(cell.points))]
        chosen = self.selections.runs.get(id(cell))
        return search if chosen is None else [*search, *((chosen, s, "selected") for s in select.then_seeds)]

    def _key(self, cell: Cell, index: int) -> str:
        """The configuration of ``cell``'s point ``index``, as its run id on ``key_seed``."""
        key = (id(cell), index)
        if key not in self.keys:
            self.keys[key] = _config(cell, index, self.key_seed).run_id(cell.points[index].resolved)
        return self.keys[key]

    def _item(self, cell: Cell, index: int, seed: int, phase: str) -> PlanItem:
        point = cell.points[index]
        config = _config(cell, index, seed, self._tags(cell, index, seed, phase))
        run_id = self._key(cell, index) if seed == self.key_seed else config.run_id(point.resolved)
        return PlanItem(config, cell, point, phase, run_id)

    def _tags(self, cell: Cell, index: int, seed: int, phase: str) -> list[str]:
        """The sweep's tags, and the selected tag on the chosen point's runs on ``then_seeds`` (tags do not
        enter run ids), also where that run came first as another cell's run or as the search run."""
        tags = [*self.sweep.tags, f"sweep:{self.sweep.name}"]
        mark = f"{SELECTED_TAG}{self.sweep.name}"
        if phase == "selected" and len(cell.points) > 1:  # chosen on validation
            tags.append(mark)
        elif seed in self.then_seeds and self._key(cell, index) in self.selected_keys and mark not in tags:
            tags = list(dict.fromkeys([*tags, mark]))  # as the selected run's tags merged into this one
        return tags


def _config(cell: Cell, index: int, seed: int, tags: Sequence[str] = ()) -> RunConfig:
    """The run of ``cell``'s point ``index`` on ``seed`` (tags do not enter its id)."""
    point = cell.points[index]
    return RunConfig(
        cell.strategy, cell.scenario, seed, dict(point.hparams), point.protocol, dict(cell.options), list(tags)
    )


def _chunks(items: Iterator[PlanItem], size: int) -> Iterator[list[PlanItem]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _fill_status(store: Runs, items: list[PlanItem]) -> None:
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


def choose(search: list[PlanItem], store: Runs, metric: str) -> tuple[Point | None, str]:
    """The point of the best validation score among finished search runs (ties: first in grid
    order), or (None, why) while some are not in the store or if none finished."""
    missing = [i for i in search if i.status is None]
    if missing:
        return None, f"{len(missing)} of {len(search)} search runs not done"
    scored, unscored = [], 0
    for item in search:
        if item.status == "finished":
            score = validation_score(stored_run(store, item.run_id), metric)
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


def stored_run(store: Runs, run_id: str) -> RunRecord:
    """The stored record of ``run_id``, whose status the plan just read."""
    record = store.get(run_id)
    if record is None:  # its status was read a moment ago: only a deletion in between gets here
        raise SweepError(f"run {run_id} left the store while the sweep was planned; plan it again")
    return record
