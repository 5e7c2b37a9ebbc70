"""What every sweep backend shares: the scheduler that hands out runs, the outcome it reports per run,
and the progress display (one bar over runs, one status line per worker)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

from tqdm import tqdm

from cl_bench.registry import is_strategy_file
from cl_bench.runner import RunConfig
from cl_bench.runner.identity import CurrentView, check_name_claim
from cl_bench.store import Store, claims
from cl_bench.store.claims import Owner
from cl_bench.strategy_files import class_label, static_name
from cl_bench.sweep.plan import Cell, Plan, PlanItem, Sweep


@dataclass
class Outcome:
    """What a backend reports about one run."""

    run_id: str
    label: str
    # "finished" | "failed" (stored: diverged or raised) | "error" (not stored: missing data, bad option,
    # store unreachable) | "busy" (another live process is running it) | "skipped" (found finished in the
    # store, by another process since this sweep planned it)
    status: str
    message: str = ""
    wall_s: float = 0.0
    worker: str = ""  # the worker that ran it, e.g. "cuda:1 #3" (local backend); "" when none did


@dataclass
class Scheduler:
    """Hands out the runs a sweep still needs, re-planning when selections get decided, and claims each
    run before it starts (cl_bench.store.claims) so that concurrent sweeps on one store never both run it.

    Plans are made against a ``CurrentView`` of the store (cl_bench.runner.identity): a finished run made with
    another version of its strategy file or other data counts as missing. The first plan is of the whole
    sweep and keeps only what is pending (Sweep.plan's keep_finished=False); after it, only a selection can
    add runs, so only the cells of a grid under ``select`` whose search runs changed are planned again."""

    sweep: Sweep
    store: Store
    retry_failed: bool = False
    data_root: Any = None
    owner: Owner = field(default_factory=Owner.here)
    handed: set[str] = field(default_factory=set)
    plan: Plan | None = None  # the last plan made: of the whole sweep, then of the cells planned again
    view: CurrentView | None = None
    not_run: int = 0  # handed out, then found busy or done elsewhere
    waiting: list[tuple[Cell, str]] = field(default_factory=list)  # selections not decided yet, and why
    # Search runs of grids handed out and not stored yet -> their cell's key: the runs that can change a
    # selection (cells of one key may share search runs: the same configuration is the same run); failed
    # ones run again (--retry-failed) apart: a selection does not wait for them
    searching: dict[str, str] = field(default_factory=dict)
    searching_again: dict[str, str] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)  # keys of cells a search run of which got stored since
    # Runs handed out before a selection gave them more tags (the chosen point's run on a then_seed, handed
    # as a reference run) -> those tags: added once the run is stored finished
    retag: dict[str, list[str]] = field(default_factory=dict)
    # Handed out and not ended here yet (queued by the driver, or running): none left is a driver with
    # nothing to do but ask again
    outstanding: set[str] = field(default_factory=set)
    elsewhere: dict[str, PlanItem] = field(default_factory=dict)  # handed out, left to another process

    def __post_init__(self):
        if self.view is None:
            self.view = CurrentView(self.store, data_root=self.data_root)
        for strategy in {c.strategy for c in self.sweep.cells if is_strategy_file(c.strategy)}:
            if self.store.path.exists():  # a file's class may not take a name another class has in the store
                check_name_claim(self.store, static_name(strategy), class_label(strategy))

    @property
    def current(self) -> CurrentView:
        assert self.view is not None  # made by __post_init__
        return self.view

    def next_runs(self) -> list[PlanItem]:
        """Runs not handed out yet; call after each finished run (selections may have been decided). The
        first call plans the whole sweep and gives its finished runs the tags the plan has for them (the
        sweep's). Later calls plan nothing unless a selection can have changed (replan_cells): then they plan
        those cells again, and the finished runs of each selection decided get their tags once (the chosen
        point's run on ``select.seed`` is tagged selected: it finished as a search run)."""
        self._collect_elsewhere()
        if self.plan is None:
            self.plan = self.sweep.plan(self.current, keep_finished=False, each_chunk=self._tag_finished)
            self.waiting = list(self.plan.waiting)
            return self._hand_out(self.plan)
        cells = self.replan_cells()
        if not cells:
            return []
        self.plan = self.sweep.plan(self.current, cells=cells)  # a few cells: kept whole, to tag
        # Their finished runs get the tags the decisions give (a run of a waiting cell may be another's choice);
        # runs handed out before, still to finish, get them once stored
        self._tag_finished(self.plan.items)
        self.retag |= {
            i.run_id: i.config.tags for i in self.plan.items if i.status != "finished" and i.run_id in self.handed
        }
        planned = {id(c) for c in cells}
        self.waiting = [w for w in self.waiting if id(w[0]) not in planned] + self.plan.waiting
        self.changed -= {c.key for c in cells}
        return self._hand_out(self.plan)

    def replan_cells(self) -> list[Cell]:
        """The grids under ``select`` whose selection may have changed since they were planned: once a
        search run of theirs is stored, a waiting one once every search run this sweep handed out for it is
        (a decided one has failed search runs run again: at each). Cells of one key share runs: all are
        planned again at each. With nothing outstanding (the driver idle or done), every waiting cell and
        every cell with search runs out: another process may have stored them."""
        grids = [c for c in self.sweep.cells if c.role == "grid" and len(c.points) > 1]
        busy = set(self.searching.values())  # keys of cells with search runs not stored yet
        waiting = {id(cell) for cell, _ in self.waiting}
        due = set()
        for key in self.changed:
            group = [c for c in grids if c.key == key]
            if key not in busy or len(group) > 1 or id(group[0]) not in waiting:
                due.add(key)  # else its one cell still waits for its other search runs
        if not self.outstanding:
            due |= {cell.key for cell, _ in self.waiting} | busy | set(self.searching_again.values())
        return [cell for cell in grids if cell.key in due]

    def _hand_out(self, plan: Plan) -> list[PlanItem]:
        new = [i for i in plan.pending(self.retry_failed) if i.run_id not in self.handed]
        self.handed |= {i.run_id for i in new}
        self.outstanding |= {i.run_id for i in new}
        for item in new:
            if item.phase == "search" and len(item.cell.points) > 1:
                again = self.searching_again if item.status == "failed" else self.searching
                again[item.run_id] = item.cell.key
        return new

    def _tag_finished(self, items: list[PlanItem]) -> None:
        """Add the plan's tags to the finished runs among ``items`` that lack them."""
        by_tags: dict[tuple[str, ...], list[str]] = {}  # one read of the store per tag set, not per run
        for item in items:
            if item.status == "finished" and item.config.tags:
                by_tags.setdefault(tuple(item.config.tags), []).append(self.current.run_id_for(item.run_id))
        for tags, run_ids in by_tags.items():
            self.store.add_tags(run_ids, list(tags))

    def _stored(self, item: PlanItem, status: str) -> None:
        """``item``, handed out, is in the store now with ``status`` (stored here or by another process):
        if it is a search run its selection may change; if it finished elsewhere it gets this sweep's tags,
        as the next plan used to give them."""
        key = self.searching.pop(item.run_id, None) or self.searching_again.pop(item.run_id, None)
        if key is not None:
            self.changed.add(key)
        tags = list(dict.fromkeys([*item.config.tags, *self.retag.pop(item.run_id, [])]))
        if status == "finished" and tags:
            self.store.add_tags([self.current.run_id_for(item.run_id)], tags)

    def _collect_elsewhere(self) -> None:
        """Runs left to another process (busy) that it has stored since."""
        if not self.elsewhere:
            return
        for run_id, status in self.current.statuses(list(self.elsewhere)).items():
            self._stored(self.elsewhere.pop(run_id), status)

    def expected_total(self) -> int:
        """Runs this invocation will do, counting undecided selections at their full size."""
        return len(self.handed) - self.not_run + len(self.waiting) * len(self.sweep.final_seeds())

    def claim(self, item: PlanItem) -> Outcome | None:
        """Claim ``item`` for this sweep: None when it may start, else the Outcome saying why not (another
        process runs it, or finished it since the plan was made)."""
        holder = claims.claim(self.store, item.run_id, self.owner)
        if holder is not None:
            self.not_run += 1
            self.elsewhere[item.run_id] = item
            self.outstanding.discard(item.run_id)
            return Outcome(
                item.run_id, run_label(item.config), "busy", f"being run by another process ({holder.describe()})"
            )
        status = self.current.status(item.run_id)
        if status == "finished" or (status == "failed" and not self.retry_failed):
            self._stored(item, status)
            self.release(item)
            self.not_run += 1
            return Outcome(
                self.current.run_id_for(item.run_id),
                run_label(item.config),
                "skipped",
                f"{status} in the store since this sweep planned it",
            )
        return None

    def release(self, item: PlanItem) -> None:
        claims.release(self.store, item.run_id, self.owner)
        self.outstanding.discard(item.run_id)
        if any(item.run_id in d for d in (self.searching, self.searching_again, self.retag)):
            # stored, it may change a selection, or get tags a selection gave it
            status = self.current.status(item.run_id)
            if status is not None:
                self._stored(item, status)

    def run_id_for(self, item: PlanItem) -> str:
        """Where ``item``'s result is stored (its run_id, or its salted id: cl_bench.runner.identity)."""
        return self.current.run_id_for(item.run_id)


def run_label(config: RunConfig) -> str:
    hp = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.hparams.items())
    return f"{config.strategy}{' ' + hp if hp else ''} {config.scenario} s{config.seed}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s" if rest >= 60 else f"{rest}s"


class Progress:
    """What a sweep shows on stderr. On a terminal: one tqdm bar over runs (its total and ETA known),
    plus one status line per worker slot with its current run and epoch. Anywhere else (a batch job's log,
    ``2> sweep.err``): one plain line per finished, failed or resumed run with the counts and an ETA, no
    control characters. ``enabled=False`` (``--quiet``): failures only, as plain lines."""

    def __init__(self, enabled: bool, slots: int | list[str], total: int, stream: IO[str] | None = None):
        """``slots``: the workers' names (one status line each), or how many (named by number)."""
        names = [f"#{i + 1}" for i in range(slots)] if isinstance(slots, int) else list(slots)
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = enabled
        self.tty = enabled and bool(isatty and isatty())
        self.total, self.counts = total, {"finished": 0, "failed": 0}
        self.started = time.perf_counter()
        bars = not self.tty
        self.bar = tqdm(total=total, unit="run", dynamic_ncols=True, file=self.stream, disable=bars)
        self.names = names
        self.lines = [
            tqdm(total=0, position=i + 1, bar_format="{desc}", file=self.stream, disable=bars, dynamic_ncols=True)
            for i in range(len(names))
        ]

    def set_total(self, total: int) -> None:
        """Runs this sweep expects to do (it grows when selections are decided)."""
        self.total = max(total, self.done_runs)
        self.bar.total = self.total
        self.bar.refresh()

    def status(self, text: str) -> None:
        """A short state after the bar (e.g. ``2 running, 3 queued``); shown on a terminal only."""
        self.bar.set_postfix_str(text, refresh=True)

    @property
    def done_runs(self) -> int:
        return self.counts["finished"] + self.counts["failed"]

    def event(self, slot: int, kind: str, *args) -> None:
        """Worker ``slot``'s event: ("start", run_id, label), ("epoch", text), ("resumed", label,
        next_task, n_tasks) or ("end",)."""
        if kind == "resumed":
            label, next_task, n_tasks = args
            self._plain(f"resumed: {label}: after task {next_task} of {n_tasks} (from its checkpoint)")
            return
        if not 0 <= slot < len(self.lines) or not self.tty:
            return
        text = {"start": lambda: args[1], "epoch": lambda: args[0], "end": lambda: "idle"}[kind]()
        self.lines[slot].set_description_str(f"  [{self.names[slot]}] {text}"[:200])

    def reset_worker(self, slot: int) -> None:
        if 0 <= slot < len(self.lines):
            self.lines[slot].set_description_str(f"  [{self.names[slot]}] (restarting worker)")

    def done(self, outcome: Outcome, total: int) -> None:
        """A run ended (or was left to another process: busy / skipped, not counted)."""
        counted = outcome.status not in ("busy", "skipped")  # not run by this sweep (Scheduler.expected_total)
        if counted:
            self.counts["finished" if outcome.status == "finished" else "failed"] += 1
        self.total = max(total, self.done_runs)
        bad = outcome.status in ("failed", "error")
        if self.tty:
            if outcome.status != "finished":
                self.write(f"{outcome.status}: {outcome.label}: {outcome.message}")
            if counted:
                self.bar.total = self.total
                self.bar.update()
            return
        if not self.enabled and not bad:
            return
        took = f" in {outcome.wall_s:.1f} s" if outcome.wall_s and outcome.status in ("finished", "failed") else ""
        why = f": {outcome.message}" if outcome.message else ""
        self._plain(f"{outcome.status}: {outcome.label}{took}{why} [{self._counts()}]", always=bad)

    def _counts(self) -> str:
        n, left = self.done_runs, max(0, self.total - self.done_runs)
        text = f"{n}/{self.total} done, {self.counts['failed']} failed"
        if n and left:
            text += f", ETA {_duration((time.perf_counter() - self.started) / n * left)}"
        return text

    def _plain(self, text: str, always: bool = False) -> None:
        if self.tty:
            tqdm.write(text, file=self.stream)
        elif self.enabled or always:
            print(_printable(text), file=self.stream, flush=True)

    def write(self, text: str, always: bool = False) -> None:
        """A message; ``always``: also under ``--quiet`` (interruptions, lost jobs)."""
        if self.tty:
            tqdm.write(text, file=self.stream)
        else:
            self._plain(text, always)

    def close(self) -> None:
        for line in self.lines:
            line.close()
        self.bar.close()


def _printable(text: str) -> str:
    """One line without control characters (a run's error message may hold any)."""
    return "".join(c if c.isprintable() else " " for c in text.replace("\n", " | "))
