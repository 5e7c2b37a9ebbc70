"""Sweep planning at scale: a plan holds what is pending, not the grid; it hands out the same runs in the
same order, with the same selections and tags, as planning every run did (``plan_as_before`` below is
that planner); and the sweep driver plans again only when a selection can change."""

import dataclasses
import gc
import random
import textwrap

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import make_scenario

import cl_bench.sweep.plan as plan_module
from cl_bench.cli import main
from cl_bench.registry import register_scenario
from cl_bench.runner import RunConfig
from cl_bench.store import RunRecord, Store
from cl_bench.store.records import validation_monitoring
from cl_bench.sweep import Plan, PlanItem, Scheduler, Sweep, choose, parse_sweep, run_sweep


@register_scenario("tiny_plan", "2 synthetic tasks (tests only)")
def _tiny(seed=0, data_root_path=None, download=False, n_tasks: int = 2):
    return make_scenario(n_tasks=n_tasks, seed=seed)


def sweep_of(text: str) -> Sweep:
    return parse_sweep(yaml.safe_load(textwrap.dedent(text)), max_runs=10**6)


def record(item: PlanItem, status: str = "finished", rng: random.Random | None = None) -> RunRecord:
    """``item``'s run as a worker stores it (its tags too), with a random validation score."""
    rng = rng or random.Random(item.run_id)
    valid = np.array([[0.9, np.nan], [rng.random(), rng.random()]])
    c = item.config
    return RunRecord(
        item.run_id,
        c.strategy,
        c.scenario,
        c.seed,
        item.point.resolved,
        dataclasses.asdict(c.protocol),
        c.scenario_options,
        status,
        accuracy=np.array([[0.5, np.nan], [0.5, 0.5]]),
        tags=list(c.tags),
        history=[{"task": 0, "epoch": 1, "valid_loss": rng.random(), "valid_acc": rng.random()}],
        monitoring={"validation": validation_monitoring(valid)},
    )


# ---- the planner as it was: every run of the grid in memory -------------------------------------------
def plan_as_before(sweep: Sweep, store: Store) -> Plan:
    """cl-bench 0.2.0's planner before planning went chunk by chunk (ec290cc): every run made, the same
    run once (tags united), sorted by seed for ``order: seeds``, then every status read."""
    items, waiting, unselectable, chosen_points = [], [], [], {}
    for cell in sweep.cells:
        if cell.role == "reference" or sweep.select is None:
            seeds = sweep.final_seeds() if cell.role == "reference" else sweep.seeds
            phase = "reference" if cell.role == "reference" else "all seeds"
            items += [_item(sweep, cell, p, s, phase) for p in cell.points for s in seeds]
            continue
        search = [_item(sweep, cell, p, sweep.select.seed, "search") for p in cell.points]
        items += search
        chosen, why = cell.points[0], ""
        if len(cell.points) > 1:
            _fill(store, search)
            chosen, why = choose(search, store, sweep.select.metric)
        if chosen is None:
            (unselectable.append(cell) if why == plan_module.NOTHING_TO_CHOOSE else waiting.append((cell, why)))
            continue
        if len(cell.points) > 1:
            chosen_points[cell.key] = chosen
        items += [_item(sweep, cell, chosen, s, "selected") for s in sweep.select.then_seeds]
    items = _unite(items)
    if sweep.order == "seeds":
        rank = {s: i for i, s in enumerate(dict.fromkeys(sweep._seed_order()))}
        items.sort(key=lambda item: rank[item.config.seed])
    _fill(store, items)
    return Plan(items, waiting, unselectable, chosen_points)


def _item(sweep, cell, point, seed, phase) -> PlanItem:
    tags = [*sweep.tags, f"sweep:{sweep.name}"]
    if phase == "selected" and len(cell.points) > 1:
        tags.append(f"selected:{sweep.name}")
    config = RunConfig(
        cell.strategy, cell.scenario, seed, dict(point.hparams), point.protocol, dict(cell.options), tags
    )
    return PlanItem(config, cell, point, phase, config.run_id(point.resolved))


def _unite(items: list[PlanItem]) -> list[PlanItem]:
    unique: dict[str, PlanItem] = {}
    for item in items:
        kept = unique.setdefault(item.run_id, item)
        if kept is not item and not set(item.config.tags) <= set(kept.config.tags):
            tags = list(dict.fromkeys([*kept.config.tags, *item.config.tags]))
            unique[item.run_id] = dataclasses.replace(kept, config=dataclasses.replace(kept.config, tags=tags))
    return list(unique.values())


def _fill(store: Store, items: list[PlanItem]) -> None:
    found = store.statuses([i.run_id for i in items]) if store.path.exists() else {}
    for item in items:
        item.status = found.get(item.run_id)


def outline(plan: Plan) -> tuple:
    """What a plan says, comparable: its runs in order (id, phase, cell, point, seed, tags, status), the
    waiting and unselectable cells, the chosen points."""
    runs = [
        (i.run_id, i.phase, i.cell.key, i.point.label, i.config.seed, tuple(i.config.tags), i.status)
        for i in plan.items
    ]
    waits = [(c.key, why) for c, why in plan.waiting]
    return runs, waits, [c.key for c in plan.unselectable], {k: p.label for k, p in plan.chosen.items()}


# ---- a plan holds what is pending -----------------------------------------------------------------------
def test_a_mostly_finished_sweep_plans_only_its_pending_runs(tmp_path, monkeypatch):
    sweep = sweep_of("{name: big, scenario: tiny_plan, strategies: {sgd: , ewc: {lamb: [1, 2]}}, seeds: 40}")
    store = Store(tmp_path / "s.db")
    every = sweep.plan(store).items
    assert len(every) == 120
    for item in every:
        if item.config.seed < 38:  # seeds 38 and 39 of each of the 3 points are pending
            store.save(record(item))
    monkeypatch.setattr(plan_module, "CHUNK", 10)
    alive = []  # PlanItems in memory while the plan is made, counted at each chunk

    def live_items() -> int:
        gc.collect()
        return sum(type(o) is PlanItem for o in gc.get_objects())

    del every
    before = live_items()  # any other test's leftovers
    lean = sweep.plan(store, keep_finished=False, each_chunk=lambda chunk: alive.append(live_items() - before))
    assert [(i.config.strategy, i.config.seed) for i in lean.items] == [
        (s, seed) for s in ("sgd", "ewc", "ewc") for seed in (38, 39)
    ]
    assert lean.counts == {"finished": 114, "failed": 0, "pending": 6} and lean.size == 120
    assert max(alive) <= 6 + 2 * 10 + 2  # the pending runs, a chunk or two, a point's search: never 120
    assert outline(sweep.plan(store))[0] == outline(plan_as_before(sweep, store))[0]  # the full plan: all 120
    res = CliRunner().invoke(main, ["sweep", "--dry-run", "--store", str(tmp_path / "s.db"), str(_file(tmp_path))])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1] == "6 to run, 114 in the store"


def _file(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("{name: big, scenario: tiny_plan, strategies: {sgd: , ewc: {lamb: [1, 2]}}, seeds: 40}")
    return path


# ---- the same runs, order, selections and tags as planning every run --------------------------------
SWEEPS = [
    "{scenario: tiny_plan, strategies: {sgd: , ewc: {lamb: [1, 2]}}, seeds: [3, 0, 5], references: true, order: seeds}",
    "{scenarios: [tiny_plan, {name: tiny_plan, n_tasks: 3}], strategies: {ewc: {lamb: [1, 2, 3]}, sgd: }, "
    "select: {seed: 7, then_seeds: [0, 7]}, references: true, order: seeds}",
    # the same configuration twice (a scenario, a strategy and a protocol value repeated; Joint in the grid
    # and as a reference), the selection seed among then_seeds: the same run comes more than once
    "{name: twice, scenarios: [tiny_plan, tiny_plan], strategies: [ewc, {name: ewc, lamb: [1, 2, 5000]}, joint], "
    "protocol: {lr: [0.1, 0.1, 0.2]}, select: {seed: 0, then_seeds: [2, 0, 1]}, references: true, tags: [a]}",
    "{scenario: tiny_plan, strategies: [{name: ewc, lamb: [1, 2]}, {name: ewc, lamb: [2, 3]}], "
    "select: {seed: 1, then_seeds: [2, 1], metric: valid_acc}, references: [joint], order: seeds}",
]


@pytest.mark.parametrize("text", SWEEPS)
def test_plans_equal_planning_every_run_as_the_store_fills(text, tmp_path):
    """Search runs finish, fail (a cell with nothing to select) or are missing (waiting cells); at each
    step the plan (full, and without its finished runs) is the old planner's."""
    sweep, store, rng = sweep_of(text), Store(tmp_path / "s.db"), random.Random(text)
    for step in range(5):
        before = outline(plan_as_before(sweep, store))
        assert outline(sweep.plan(store)) == before
        lean = sweep.plan(store, keep_finished=False)
        assert outline(lean) == ([r for r in before[0] if r[-1] != "finished"], *before[1:])
        assert lean.size == len(before[0])
        todo = [i for i in sweep.plan(store).items if i.status is None]
        for item in rng.sample(todo, k=min(len(todo), 4)):
            store.save(record(item, "failed" if rng.random() < (0.8 if step == 0 else 0.2) else "finished", rng))
    assert any(i.phase == "selected" for i in sweep.plan(store).items) or sweep.select is None


def test_order_seeds_sorts_the_pending_runs_as_it_sorted_every_run(tmp_path):
    sweep = sweep_of("{scenario: tiny_plan, strategies: {sgd: , ewc: {lamb: [1, 2]}}, seeds: 6, order: seeds}")
    store = Store(tmp_path / "s.db")
    for item in sweep.plan(store).items[::2]:
        store.save(record(item))
    lean = sweep.plan(store, keep_finished=False).items
    everything = plan_as_before(sweep, store).items
    assert [i.run_id for i in lean] == [i.run_id for i in everything if i.status is None]
    assert [i.config.seed for i in lean] == sorted(i.config.seed for i in lean)  # seed by seed


# ---- the driver plans again only when a selection can change -------------------------------------------
class Counting:
    """Sweep.plan, counted: how often, and of which cells."""

    def __init__(self, monkeypatch):
        self.calls: list[list[str] | None] = []
        real = Sweep.plan

        def plan(sweep, store, keep_finished=True, cells=None, each_chunk=None):
            self.calls.append(None if cells is None else [c.key for c in cells])
            return real(sweep, store, keep_finished, cells, each_chunk)

        monkeypatch.setattr(Sweep, "plan", plan)


def drive(scheduler: Scheduler) -> list[PlanItem]:
    """A driver's loop, one run at a time (as the local backend asks after each finished run): each run
    claimed, stored as its worker would, released; the runs in the order handed out."""
    queue, done = scheduler.next_runs(), []
    while queue or (queue := scheduler.next_runs()):
        item = queue.pop(0)
        assert scheduler.claim(item) is None
        scheduler.store.save(record(item))
        scheduler.release(item)
        done.append(item)
        queue += scheduler.next_runs()
    return done


def test_the_driver_plans_once_when_no_selection_waits(tmp_path, monkeypatch):
    sweep = sweep_of("{name: flat, scenario: tiny_plan, strategies: {sgd: , ewc: {lamb: [1, 2]}}, seeds: 4}")
    store = Store(tmp_path / "s.db")
    earlier = [i for i in sweep.plan(store).items if i.config.seed == 0]
    for item in earlier:  # made by another sweep: this one tags them once
        store.save(dataclasses.replace(record(item), tags=["other"]))
    counted = Counting(monkeypatch)
    tagged = []
    monkeypatch.setattr(Store, "add_tags", lambda self, ids, tags: tagged.append(list(ids)) or 0)
    done = drive(Scheduler(sweep, store))
    assert len(done) == 9 and counted.calls == [None]  # was a plan after each of the 9 runs
    assert sorted(i for ids in tagged for i in ids) == sorted(i.run_id for i in earlier)  # once each


def test_the_driver_plans_a_waiting_cell_again_once_its_search_is_stored(tmp_path, monkeypatch):
    sweep = sweep_of("""
        name: pick
        scenario: tiny_plan
        strategies: {ewc: {lamb: [1, 2, 3]}, sgd: }
        select: {seed: 0, then_seeds: [0, 1]}
    """)
    counted = Counting(monkeypatch)
    done = drive(Scheduler(sweep, Store(tmp_path / "s.db")))
    assert counted.calls == [None, ["tiny_plan ewc"]]  # the whole sweep, then the ewc cell once decided
    phases = [(i.config.strategy, i.phase) for i in done]
    assert phases == [("ewc", "search")] * 3 + [("sgd", "search"), ("sgd", "selected"), ("ewc", "selected")]
    store = Store(tmp_path / "s.db")
    chosen = plan_as_before(sweep, store).chosen["tiny_plan ewc"]
    selected = sorted((r.hparams["lamb"], r.seed) for r in store.query() if "selected:pick" in r.tags)
    assert selected == [(chosen.hparams["lamb"], 0), (chosen.hparams["lamb"], 1)]  # its search run tagged too


def test_a_real_sweep_plans_once_without_selection(tmp_path, monkeypatch):
    counted = Counting(monkeypatch)
    sweep = sweep_of("{scenario: tiny_plan, strategies: {sgd: }, seeds: 3, protocol: {preset: quick, epochs: 1}}")
    outcomes = run_sweep(sweep, tmp_path / "runs.db", workers=0, threads=1, progress=False)
    assert [o.status for o in outcomes] == ["finished"] * 3 and counted.calls == [None]
