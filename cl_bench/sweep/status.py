"""What ``cl-bench status`` shows of a sweep: per grid cell and phase, finished / failed / pending runs,
resumable ones and selection scores (``status_rows``, ``sweep_status``), from one pass over the plan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cl_bench.runner.checkpoint import checkpoint_path
from cl_bench.sweep.plan import (
    NOTHING_TO_CHOOSE,
    Cell,
    Plan,
    PlanItem,
    Point,
    Runs,
    Sweep,
    stored_run,
    validation_score,
)


# ---- status --------------------------------------------------------------------------------------------
def status_rows(sweep: Sweep, store: Runs) -> list[dict[str, Any]]:
    """One row per (scenario, strategy, grid point, phase): finished / failed / pending over seeds,
    and pending runs with a checkpoint (resumable), plus one row per selection still waiting. A finished
    search run of a grid has its validation ``score`` (``select.metric``), the chosen point ``chosen``."""
    return sweep_status(sweep, store)[0]


def sweep_status(
    sweep: Sweep, store: Runs, each_chunk: Callable[[list[PlanItem]], None] | None = None
) -> tuple[list[dict[str, Any]], Plan]:
    """``status_rows`` and the plan they were counted from, in one pass over the runs: the rows are
    counted chunk by chunk and the plan keeps no finished run (Sweep.plan's keep_finished=False).
    ``each_chunk``: also called with each chunk (Sweep.plan)."""
    tally = _RowTally(sweep, store)

    def count(chunk: list[PlanItem]) -> None:
        tally.add(chunk)
        if each_chunk is not None:
            each_chunk(chunk)

    plan = sweep.plan(store, keep_finished=False, each_chunk=count)
    return tally.rows(plan) + _selection_rows(sweep, plan), plan


class _RowTally:
    """status_rows' rows, counted as the runs come (in the order of the cells), put in the order of the
    plan at the end: with ``order: seeds`` a row comes where its first run comes in the sorted plan."""

    def __init__(self, sweep: Sweep, store: Runs):
        self.sweep, self.store = sweep, store
        self.rank = sweep.seed_rank() if sweep.order == "seeds" else None
        self.by_key: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.first: dict[tuple[str, str, str], tuple[int, int]] = {}  # (seed rank, place) of its first run
        self.search_points: dict[tuple[str, str, str], tuple[str, Point]] = {}  # row -> (cell key, its point)
        self.placed = 0  # runs counted so far

    def add(self, chunk: list[PlanItem]) -> None:
        for item in chunk:
            key = (item.cell.key, item.point.label, item.phase)
            row = self.by_key.get(key) or self._new(key, item)
            row["seeds"].append(item.config.seed)
            row[item.status or "pending"] += 1
            if item.phase == "search" and len(item.cell.points) > 1:
                row["chosen"] = False  # known once the plan is made (rows)
                self.search_points[key] = (item.cell.key, item.point)
                if item.status == "finished" and self.sweep.select is not None:
                    row["score"] = validation_score(stored_run(self.store, item.run_id), self.sweep.select.metric)
            if item.status is None and checkpoint_path(self.store.path, item.run_id).exists():
                row["partial"] += 1
            if self.rank is not None and self.rank(item.config.seed) < self.first[key][0]:
                self.first[key] = (self.rank(item.config.seed), self.placed)
            self.placed += 1

    def _new(self, key: tuple[str, str, str], item: PlanItem) -> dict[str, Any]:
        row = {"cell": key[0], "point": key[1], "phase": key[2], "seeds": []}
        self.by_key[key] = row | {"finished": 0, "failed": 0, "pending": 0, "partial": 0}
        self.first[key] = (self.rank(item.config.seed) if self.rank else 0, self.placed)
        return self.by_key[key]

    def rows(self, plan: Plan) -> list[dict[str, Any]]:
        for key, (cell_key, point) in self.search_points.items():
            self.by_key[key]["chosen"] = plan.chosen.get(cell_key) == point
        if self.rank is None:
            return list(self.by_key.values())
        rank = self.rank
        for row in self.by_key.values():  # the plan's order within a row: stable by seed rank
            row["seeds"].sort(key=rank)
        return [self.by_key[key] for key in sorted(self.by_key, key=self.first.__getitem__)]


def _selection_rows(sweep: Sweep, plan: Plan) -> list[dict[str, Any]]:
    """A row per selection still waiting, and per cell with nothing to select."""

    def row(cell: Cell, point: str, seeds: list[int]) -> dict[str, Any]:
        counts = {"finished": 0, "failed": 0, "pending": len(seeds), "partial": 0}
        return {"cell": cell.key, "point": point, "phase": "selected", "seeds": seeds, **counts}

    waits = [row(cell, f"(selection waits: {why})", list(sweep.final_seeds())) for cell, why in plan.waiting]
    nothing = f"(nothing to select: {NOTHING_TO_CHOOSE}, see --errors)"
    return waits + [row(cell, nothing, []) for cell in plan.unselectable]
