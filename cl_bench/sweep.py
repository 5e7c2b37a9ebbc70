"""Sweeps: a YAML file of scenarios x strategies x hyperparameter grids x seeds, run resumably.

A sweep file (every key optional but the scenario(s) and ``strategies``)::

    name: hat-split-mnist              # default: the file name; runs are tagged sweep:<name>
    scenarios:                         # or `scenario: split_mnist`
      - name: split_mnist
        max_train_per_task: 5000       # every other key is a scenario option (`cl-bench list --details`)
    strategies:
      hat: {s_max: [25, 100, 400], c: [0.1, 0.75, 2.5]}  # a list is a grid axis, a scalar is fixed
      ewc: {lamb: paper}               # `paper`: the grid declared with hparam(..., grid=...)
      sgd:                             # defaults; `name: paper` expands every declared grid
    seeds: [0, 1, 2]                   # or a count: 3 -> 0, 1, 2
    protocol: {preset: paper, epochs: 10}   # cl_bench.trainer.Protocol fields; a list is a grid axis
    references: true                   # adds Joint and Random per scenario and seed, for rho (Eq. 6)
    tags: [r1]
    select: {seed: 0, metric: valid_acc, then_seeds: [0, 1, 2]}   # instead of `seeds`

Without ``select`` every grid point runs on every seed. With it, the paper's protocol (Sec. 4.1,
reference §4): the whole grid runs on ``select.seed``, the point with the best validation score is
chosen per (scenario, strategy), and only that point runs on ``then_seeds``. Test accuracy never takes
part. The score (``validation_score``) is the mean over tasks of the validation metric of the weights
the trainer kept for each task, i.e. of the epoch with the lowest (regularised) validation loss
(reference §3). On split and permuted MNIST the reference validates on the training set (§9 #7).

``cl-bench sweep FILE`` expands the file into ``RunConfig`` objects, skips every run already in the
store (same ``run_id``: finished ones, and failed ones unless ``--retry-failed``), and runs the rest on a
pool of worker processes (or on Ray: ``--backend ray``, see cl_bench.sweep_ray). Each run is written
to the store in its own transaction as it ends and checkpointed after each task (cl_bench.checkpoint),
so Ctrl-C or ``kill -9`` loses at most the unfinished tasks of the runs in flight, and running the
same command again finishes exactly what is missing. ``cl-bench status FILE`` shows what is done.

Local backend: ``--workers`` spawned processes x ``--threads`` torch threads each. The default is one
single-threaded worker per core: on the 2-core reference machine, ``--measure-split`` on
examples/sweeps/measure_split.yaml gave 2 x 1 threads 959 runs/hour against 536 for 1 x 2 (runs of
small nets gain little from a second intra-op thread); ``--workers 0``
runs everything in the calling process (debuggers, tests). A worker killed by the OS is replaced and
its run retried once; a second death stores the run as failed.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from cl_bench.registry import all_scenarios, scenario_options
from cl_bench.store import DEFAULT_STORE, RunRecord, Store, StoreError
from cl_bench.strategy import HparamError, Strategy
from cl_bench.registry import get_strategy
from cl_bench.trainer import PRESETS, Protocol

REFERENCE_STRATEGIES = ("joint", "random")
METRICS = {"valid_acc": max, "valid_loss": min}  # how to pick the best value of each score
COMMON_SCENARIO_OPTIONS = ("max_train_per_task", "tasks")  # build_scenario takes these for every scenario
NOTHING_TO_CHOOSE = "every search run failed"
SWEEP_KEYS = ("name", "scenario", "scenarios", "strategies", "seeds", "protocol", "references", "tags",
              "select")


class SweepError(ValueError):
    """A sweep file that cannot be expanded; the message says where and what is accepted."""


# ---- the sweep, expanded ---------------------------------------------------------------------------
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
    metric: str = "valid_acc"
    then_seeds: tuple[int, ...] = (0, 1, 2)


@dataclass
class PlanItem:
    config: Any  # cl_bench.runner.RunConfig
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

    def pending(self, retry_failed: bool = False) -> list[PlanItem]:
        return [i for i in self.items if i.status is None or (retry_failed and i.status == "failed")]


@dataclass
class Sweep:
    name: str
    cells: list[Cell]
    seeds: tuple[int, ...] = (0,)
    select: Select | None = None
    tags: tuple[str, ...] = ()

    def plan(self, store: Store) -> Plan:
        """Every run this sweep needs that is known now, with its status in ``store``. With ``select``,
        a cell's selected runs appear once its whole search grid is in the store."""
        items, waiting, unselectable = [], [], []
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
                items += [self._item(cell, chosen, s, "selected") for s in self.select.then_seeds]
        unique: dict[str, PlanItem] = {}
        for item in items:  # the search run of the chosen point on a then_seed is the same run
            unique.setdefault(item.run_id, item)
        items = list(unique.values())
        _fill_status(store, items)
        return Plan(items, waiting, unselectable)

    def final_seeds(self) -> tuple[int, ...]:
        return self.select.then_seeds if self.select else self.seeds

    def _item(self, cell: Cell, point: Point, seed: int, phase: str) -> PlanItem:
        from cl_bench.runner import RunConfig

        config = RunConfig(cell.strategy, cell.scenario, seed, dict(point.hparams), point.protocol,
                           dict(cell.options), [*self.tags, f"sweep:{self.name}"])
        return PlanItem(config, cell, point, phase, config.run_id(point.resolved))


def _fill_status(store: Store, items: list[PlanItem]) -> None:
    found = store.statuses([i.run_id for i in items]) if store.path.exists() else {}
    for item in items:
        item.status = found.get(item.run_id)


# ---- selection ---------------------------------------------------------------------------------------
def validation_score(history: list[dict[str, Any]], metric: str = "valid_acc") -> float:
    """Mean over tasks of ``metric`` at each task's epoch of lowest validation loss: the weights the
    trainer restored and kept (reference §3). Uses validation data only, never test."""
    if metric not in METRICS:
        raise SweepError(f"unknown selection metric {metric!r}; valid: {', '.join(METRICS)}")
    by_task: dict[int, list[dict[str, Any]]] = {}
    for log in history:
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
    scored = []
    for item in search:
        if item.status == "finished":
            score = validation_score(store.get(item.run_id).history, metric)
            if not math.isnan(score):
                scored.append((score, item.point))
    if not scored:
        return None, NOTHING_TO_CHOOSE
    best = METRICS[metric](s for s, _ in scored)
    return next(p for s, p in scored if s == best), ""


# ---- parsing the file --------------------------------------------------------------------------------
def load_sweep(path: str | os.PathLike) -> Sweep:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise SweepError(f"cannot read sweep file {path}: {e}") from None
    except yaml.YAMLError as e:
        raise SweepError(f"{path} is not valid YAML: {e}") from None
    return parse_sweep(data, default_name=path.stem, source=str(path))


def parse_sweep(data: Any, default_name: str = "sweep", source: str = "sweep") -> Sweep:
    """A Sweep from the parsed YAML, every name and value validated before anything runs."""
    if not isinstance(data, dict):
        raise SweepError(f"{source}: expected a mapping with keys {', '.join(SWEEP_KEYS)}")
    unknown = sorted(set(data) - set(SWEEP_KEYS))
    if unknown:
        raise SweepError(f"{source}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(SWEEP_KEYS)}")
    if "strategies" not in data:
        raise SweepError(f"{source}: `strategies` is required")
    if "scenario" in data and "scenarios" in data:
        raise SweepError(f"{source}: give `scenario` or `scenarios`, not both")
    name = str(data.get("name") or default_name)
    scenarios = _scenarios(data.get("scenarios", data.get("scenario")), source)
    protocols = _protocols(data.get("protocol"), source)
    strategies = _strategies(data["strategies"], source)
    select = _select(data.get("select"), source)
    if select is not None and "seeds" in data:
        raise SweepError(f"{source}: with `select`, give the seeds as select.then_seeds, not `seeds`")
    seeds = _seeds(data.get("seeds", [0]), f"{source}: seeds")
    tags = data.get("tags") or []
    tags = [tags] if isinstance(tags, str) else [str(t) for t in tags]

    cells = []
    for scenario, options in scenarios:
        for strategy, hp_points in strategies:
            points = [_point(hp, proto, shown, resolved) for hp, shown, resolved in hp_points
                      for proto in protocols]
            cells.append(Cell(scenario, options, strategy, points))
    refs = data.get("references", False)
    if refs:
        wanted = REFERENCE_STRATEGIES if refs is True else refs
        if isinstance(wanted, str):
            wanted = [wanted]
        bad = [r for r in wanted if r not in REFERENCE_STRATEGIES]
        if bad or not isinstance(wanted, (list, tuple)):
            raise SweepError(f"{source}: references must be true or a list of {REFERENCE_STRATEGIES}")
        for scenario, options in scenarios:
            for ref in wanted:
                # Random ignores the protocol: one run per seed, with the first protocol.
                protos = protocols if ref == "joint" else protocols[:1]
                resolved = dataclasses.asdict(get_strategy(ref).parse_hparams({}))
                cells.append(Cell(scenario, options, ref, [_point({}, p, (), resolved) for p in protos],
                                  role="reference"))
    return Sweep(name, cells, tuple(seeds), select, tuple(tags))


def _seeds(value: Any, where: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise SweepError(f"{where}: a count of seeds must be >= 1, got {value}")
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool)
                                                 for s in value):
        return list(dict.fromkeys(value))
    raise SweepError(f"{where}: expected a list of integer seeds or a count, got {value!r}")


def _scenarios(value: Any, source: str) -> list[tuple[str, dict[str, Any]]]:
    if value is None:
        raise SweepError(f"{source}: `scenarios` (or `scenario`) is required")
    entries = value if isinstance(value, list) else [value]
    known = all_scenarios()
    out = []
    for entry in entries:
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or "name" not in entry:
            raise SweepError(f"{source}: a scenario is a name or a mapping with `name` and options, "
                             f"got {entry!r}")
        entry = dict(entry)
        name = entry.pop("name")
        if name not in known:
            raise SweepError(f"{source}: unknown scenario {name!r}; valid: {', '.join(known)}")
        accepted = {**scenario_options(name), **dict.fromkeys(COMMON_SCENARIO_OPTIONS)}
        bad = sorted(set(entry) - set(accepted))
        if bad:
            raise SweepError(f"{source}: scenario {name!r} has no option {', '.join(bad)}; it accepts: "
                             f"{', '.join(f'{k}={v!r}' for k, v in accepted.items())}")
        for key, default in accepted.items():
            if key in entry and default is not None and entry[key] is not None:
                entry[key] = _coerce(entry[key], default, f"{source}: scenario {name!r} option {key!r}")
        out.append((name, entry))
    return out


def _protocols(value: Any, source: str) -> list[Protocol]:
    """The protocol points: the preset with the overrides; a list value is a grid axis."""
    value = dict(value or {})
    preset = value.pop("preset", "paper")
    if preset not in PRESETS:
        raise SweepError(f"{source}: unknown protocol preset {preset!r}; valid: {', '.join(PRESETS)}")
    base = PRESETS[preset]
    defaults = {f.name: getattr(base, f.name) for f in dataclasses.fields(Protocol)}
    bad = sorted(set(value) - set(defaults))
    if bad:
        raise SweepError(f"{source}: unknown protocol setting(s) {', '.join(bad)}; valid: preset, "
                         f"{', '.join(defaults)}")
    axes = []
    for key, raw in value.items():
        values = raw if isinstance(raw, list) else [raw]
        kind = defaults[key] if defaults[key] is not None else 1.0  # clip_grad: a float or null
        axes.append([(key, None if v is None and key == "clip_grad" else
                      _coerce(v, kind, f"{source}: protocol {key!r}")) for v in values])
    return [base.replace(**dict(combo)) for combo in itertools.product(*axes)]


def _strategies(value: Any, source: str) -> list[tuple[str, list[tuple[dict, tuple[str, ...], dict]]]]:
    """[(strategy, expand_grid's points)], validated against each strategy's Hparams."""
    if isinstance(value, dict):
        entries = [(k, v) for k, v in value.items()]
    elif isinstance(value, list):
        entries = []
        for e in value:
            if isinstance(e, str):
                entries.append((e, None))
            elif isinstance(e, dict) and "name" in e:
                rest = {k: v for k, v in e.items() if k != "name"}
                entries.append((e["name"], rest.get("grid") if set(rest) == {"grid"} else rest))
            else:
                raise SweepError(f"{source}: a strategy is a name or a mapping with `name`, got {e!r}")
    else:
        raise SweepError(f"{source}: `strategies` must map names to grids (or list them)")
    out = []
    for name, spec in entries:
        try:
            cls = get_strategy(name)
        except (ValueError, FileNotFoundError) as e:
            raise SweepError(f"{source}: {e}") from None
        out.append((name, expand_grid(cls, spec, f"{source}: strategy {name!r}")))
    return out


def expand_grid(cls: type[Strategy], spec: Any, where: str = "") -> list[tuple[dict, tuple[str, ...], dict]]:
    """Grid points of a strategy spec: None (defaults), ``paper`` (every declared grid), or a mapping
    of hyperparameter -> value | list of values (an axis) | ``paper`` (that field's declared grid).
    Each point: (the values set, the names to show in labels, every hyperparameter resolved)."""
    fields = {f.name: f for f in cls.hparam_fields()}
    accepted = ", ".join(f"{n}: {type(f.default).__name__} = {f.default!r}" for n, f in fields.items()) or "none"
    if spec is None:
        spec = {}
    elif spec == "paper":
        spec = {n: "paper" for n, f in fields.items() if f.metadata.get("grid")}
        if not spec:
            raise SweepError(f"{where}: `paper` asks for the declared grids, but no hyperparameter "
                             f"declares one (accepted: {accepted})")
    elif not isinstance(spec, dict):
        raise SweepError(f"{where}: expected a mapping of hyperparameters, `paper` or nothing, got {spec!r}")
    unknown = sorted(set(spec) - set(fields))
    if unknown:
        raise SweepError(f"{where} has no hyperparameter {', '.join(unknown)}; it accepts: {accepted}")
    axes, shown = [], []
    for key, raw in spec.items():
        f = fields[key]
        if raw == "paper":
            values = f.metadata.get("grid")
            if not values:
                raise SweepError(f"{where}: hyperparameter {key!r} declares no paper grid")
        elif isinstance(raw, list) and not isinstance(f.default, (list, tuple)):
            values = raw
        elif isinstance(raw, list) and raw and all(isinstance(v, list) for v in raw):
            values = raw  # a list-valued hyperparameter: a list of lists is the axis
        else:
            values = [raw]
        if not values:
            raise SweepError(f"{where}: hyperparameter {key!r} has an empty list of values")
        axes.append([(key, v) for v in values])
        shown.append(key)
    points = []
    for combo in itertools.product(*axes):
        hp = dict(combo)
        try:
            parsed = dataclasses.asdict(cls.parse_hparams(hp))
        except HparamError as e:
            raise SweepError(f"{where}: {e}") from None
        points.append(({k: parsed[k] for k in hp}, tuple(shown), parsed))
    return points


def _point(hparams: dict[str, Any], protocol: Protocol, label_keys: Iterable[str],
           resolved: dict[str, Any]) -> Point:
    hp = " ".join(f"{k}={hparams[k]:g}" if isinstance(hparams[k], float) else f"{k}={hparams[k]}"
                  for k in label_keys)
    changed = [f"{f.name}={getattr(protocol, f.name)}" for f in dataclasses.fields(Protocol)
               if getattr(protocol, f.name) != f.default]
    label = " | ".join(part for part in (hp or "defaults", " ".join(changed)) if part)
    return Point(hparams, protocol, label, resolved)


def _select(value: Any, source: str) -> Select | None:
    if value is None or value is False:
        return None
    if not isinstance(value, dict):
        raise SweepError(f"{source}: select must be a mapping with seed, metric, then_seeds")
    bad = sorted(set(value) - {"seed", "metric", "then_seeds"})
    if bad:
        raise SweepError(f"{source}: select has no key {', '.join(bad)}; accepted: seed, metric, then_seeds")
    metric = value.get("metric", "valid_acc")
    if metric not in METRICS:
        raise SweepError(f"{source}: select.metric {metric!r} unknown; valid: {', '.join(METRICS)} "
                         f"(validation metrics only: test data never selects)")
    seed = value.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise SweepError(f"{source}: select.seed must be an integer, got {seed!r}")
    then = _seeds(value.get("then_seeds", [0, 1, 2]), f"{source}: select.then_seeds")
    return Select(seed, metric, tuple(then))


def _coerce(raw: Any, default: Any, where: str) -> Any:
    """``raw`` as the type of ``default`` (YAML already types values; this catches 'abc' for a float)."""
    kind = type(default)
    if kind is bool:
        if isinstance(raw, bool):
            return raw
    elif kind is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
    elif kind is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw)  # YAML reads 1e-4 (no dot) as a string
            except ValueError:
                pass
    elif isinstance(raw, kind):
        return raw
    elif kind in (list, tuple) and isinstance(raw, list):
        return raw
    raise SweepError(f"{where} must be {kind.__name__}, got {raw!r}")


# ---- running -----------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What a backend reports about one run."""

    run_id: str
    label: str
    status: str  # "finished" | "failed" | "error" (not stored: missing data, bad option, store unreachable)
    message: str = ""
    wall_s: float = 0.0


@dataclass
class Scheduler:
    """Hands out the runs a sweep still needs, re-planning when selections get decided."""

    sweep: Sweep
    store: Store
    retry_failed: bool = False
    handed: set[str] = field(default_factory=set)
    plan: Plan | None = None

    def next_runs(self) -> list[PlanItem]:
        """Runs not handed out yet; call after each finished run (selections may have been decided)."""
        self.plan = self.sweep.plan(self.store)
        new = [i for i in self.plan.pending(self.retry_failed) if i.run_id not in self.handed]
        self.handed |= {i.run_id for i in new}
        return new

    def expected_total(self) -> int:
        """Runs this invocation will do, counting undecided selections at their full size."""
        return len(self.handed) + len(self.plan.waiting) * len(self.sweep.final_seeds())


def run_label(config) -> str:
    hp = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.hparams.items())
    return f"{config.strategy}{' ' + hp if hp else ''} {config.scenario} s{config.seed}"


def run_sweep(sweep: Sweep, store: str | os.PathLike = DEFAULT_STORE, *, backend: str = "local",
              workers: int = 1, threads: int | None = None, device: str = "cpu", data_root=None,
              retry_failed: bool = False, checkpoints: bool = True, ray_address: str | None = None,
              progress: bool = True) -> list[Outcome]:
    """Run what the sweep still needs; returns an Outcome per run attempted in this call."""
    store = Store(store)
    scheduler = Scheduler(sweep, store, retry_failed)
    # 1 worker x all threads is the default until the split is measured on an idle machine
    # (`cl-bench sweep --measure-split examples/sweeps/measure_split.yaml`).
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    if backend == "local" and workers == 0:
        outcomes = _run_inline(scheduler, threads, device, data_root, checkpoints, progress)
    elif backend == "local":
        outcomes = _run_local(scheduler, workers, threads, device, data_root, checkpoints, progress)
    elif backend == "ray":
        from cl_bench.sweep_ray import run_ray  # Ray only when asked for

        outcomes = run_ray(scheduler, threads=threads, device=device, data_root=data_root,
                           checkpoints=checkpoints, address=ray_address, progress=progress)
    else:
        raise SweepError(f"unknown backend {backend!r}; valid: local, ray")
    return outcomes


# ---- local backend: a pool of spawned worker processes -----------------------------------------------
_EVENTS = None  # in a worker: the queue of progress events to the driver
_IN_WORKER = False  # True in the processes of the local pool


def _worker_init(threads: int, events) -> None:
    import torch

    global _EVENTS, _IN_WORKER
    torch.set_num_threads(threads)
    _EVENTS, _IN_WORKER = events, True
    parent = os.getppid()

    def watchdog():  # the driver was killed (kill -9): do not live on as an orphan
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watchdog, daemon=True).start()


def _emit(*event) -> None:
    try:
        _EVENTS.put_nowait((os.getpid(), *event))
    except Exception:  # progress is best effort
        pass


def _worker_run(config, store_path: str, device: str, data_root, checkpoints: bool) -> Outcome:
    """Run one configuration in a worker; the worker writes the record to the store itself."""
    from cl_bench.runner import RunFailed, execute

    label = run_label(config)
    _emit("start", config.run_id(), label)
    n_tasks = len(config.scenario_options.get("tasks") or []) or None

    def on_epoch(log):
        _emit("epoch", f"{label} | task {log.task + 1}{'/' + str(n_tasks) if n_tasks else ''} "
                       f"epoch {log.epoch} val_acc {100 * log.valid_acc:.1f}")

    start = time.perf_counter()
    try:
        record = execute(config, Store(store_path), data_root=data_root, device=device,
                         on_epoch=on_epoch, checkpoints=checkpoints)
        return Outcome(record.run_id, label, "finished", wall_s=time.perf_counter() - start)
    except RunFailed as e:
        return Outcome(e.record.run_id, label, "failed", (e.record.error or "").splitlines()[0],
                       time.perf_counter() - start)
    except Exception as e:  # raised before the run existed (missing data, bad option): not stored,
        # so the next sweep tries again once the cause is fixed
        return Outcome(config.run_id(), label, "error", f"{type(e).__name__}: {e}".splitlines()[0],
                       time.perf_counter() - start)
    except KeyboardInterrupt:
        if _IN_WORKER:  # stop now: else the pool would go on with the calls already queued to it
            os._exit(130)  # the run is not stored; its checkpoint stays for the next sweep
        raise
    finally:
        _emit("end")


class _Progress:
    """One tqdm bar over runs, plus one status line per worker with its current run."""

    def __init__(self, enabled: bool, slots: int, total: int):
        from tqdm import tqdm

        self.enabled = enabled
        self.bar = tqdm(total=total, unit="run", dynamic_ncols=True, file=sys.stderr, disable=not enabled)
        self.lines = [tqdm(total=0, position=i + 1, bar_format="{desc}", file=sys.stderr,
                           disable=not enabled, dynamic_ncols=True) for i in range(slots)]
        self.slot_of: dict[int, int] = {}

    def event(self, pid: int, kind: str, *args) -> None:
        if pid not in self.slot_of:
            used = set(self.slot_of.values())
            free = [i for i in range(len(self.lines)) if i not in used]
            self.slot_of[pid] = free[0] if free else 0
        line = self.lines[self.slot_of[pid]]
        text = {"start": lambda: f"  [{pid}] {args[1]}", "epoch": lambda: f"  [{pid}] {args[0]}",
                "end": lambda: f"  [{pid}] idle"}[kind]()
        line.set_description_str(text[:200])

    def reset_workers(self) -> None:
        self.slot_of.clear()
        for line in self.lines:
            line.set_description_str("  (restarting worker)")

    def done(self, outcome: Outcome, total: int) -> None:
        self.bar.total = max(total, self.bar.n + 1)
        if outcome.status != "finished":
            self.write(f"{outcome.status}: {outcome.label}: {outcome.message}")
        self.bar.update()

    def write(self, text: str) -> None:
        from tqdm import tqdm

        if self.enabled:
            tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        for line in self.lines:
            line.close()
        self.bar.close()


def _run_local(scheduler: Scheduler, workers: int, threads: int, device: str, data_root,
               checkpoints: bool, progress: bool) -> list[Outcome]:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")  # fork after torch threads exist can deadlock; spawn is portable
    events = ctx.Queue()
    todo = scheduler.next_runs()
    ui = _Progress(progress, workers, scheduler.expected_total())
    store_path = str(scheduler.store.path)
    outcomes: list[Outcome] = []
    kills: dict[str, int] = {}  # run_id -> times a worker died while running it
    running: dict[int, str] = {}  # worker pid -> run_id, from the workers' events
    worker_pids: set[int] = set()

    def new_pool():
        return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                   initargs=(threads, events))

    def drain():
        while True:
            try:
                pid, kind, *args = events.get_nowait()
            except queue.Empty:
                return
            worker_pids.add(pid)
            if kind == "start":
                running[pid] = args[0]
            elif kind == "end":
                running.pop(pid, None)
            ui.event(pid, kind, *args)

    pool = new_pool()
    futures: dict[Any, PlanItem] = {}
    try:
        while todo or futures:
            for item in todo:
                futures[pool.submit(_worker_run, item.config, store_path, device, data_root, checkpoints)] = item
            todo = []
            done, _ = wait(list(futures), timeout=0.25, return_when=FIRST_COMPLETED)
            drain()
            broken = []
            for fut in done:
                item = futures.pop(fut)
                try:
                    outcome = fut.result()
                except BrokenProcessPool:
                    broken.append(item)
                    continue
                except Exception as e:  # not a run failure: e.g. the store could not be written
                    outcome = Outcome(item.run_id, run_label(item.config), "error", f"{type(e).__name__}: {e}")
                outcomes.append(outcome)
                ui.done(outcome, scheduler.expected_total())
            if broken:  # a worker was killed (out of memory, ...): every queued future fails with it
                time.sleep(0.2)
                drain()
                broken += list(futures.values())
                futures.clear()
                in_flight = set(running.values())
                running.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                pool = new_pool()
                ui.reset_workers()
                for item in broken:
                    if item.run_id in in_flight:
                        kills[item.run_id] = kills.get(item.run_id, 0) + 1
                    if kills.get(item.run_id, 0) >= 2:  # retried once already: store it as failed
                        outcome = _store_killed(scheduler.store, item)
                        outcomes.append(outcome)
                        ui.done(outcome, scheduler.expected_total())
                    else:
                        if item.run_id in in_flight:
                            ui.write(f"worker died while running {run_label(item.config)}; retrying once")
                        todo.append(item)
            if done and not broken:
                todo += scheduler.next_runs()  # selections decided by these runs release their seeds
    except KeyboardInterrupt:
        ui.write("interrupted: runs in flight stop; finished runs are in the store and each run in flight "
                 "resumes from its last checkpointed task next time")
        # A Ctrl-C in a terminal reached the workers already; `kill -INT <driver>` did not.
        for pid in {p.pid for p in mp.active_children()} | worker_pids:
            try:
                os.kill(pid, signal.SIGINT)
            except OSError:
                pass
        pool.shutdown(wait=True, cancel_futures=True)
        ui.close()
        raise
    pool.shutdown(wait=True)
    ui.close()
    return outcomes


def _run_inline(scheduler: Scheduler, threads: int, device: str, data_root, checkpoints: bool,
                progress: bool) -> list[Outcome]:
    """``--workers 0``: every run in this process, one after another (debuggers, tests)."""
    import torch

    global _EVENTS
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    ui = _Progress(progress, 1, 0)
    events: queue.Queue = queue.Queue()
    _EVENTS, saved = events, _EVENTS
    outcomes: list[Outcome] = []
    try:
        while todo := scheduler.next_runs():
            for item in todo:
                ui.bar.total = scheduler.expected_total()
                outcome = _worker_run(item.config, str(scheduler.store.path), device, data_root, checkpoints)
                while not events.empty():
                    pid, kind, *args = events.get_nowait()
                    ui.event(pid, kind, *args)
                outcomes.append(outcome)
                ui.done(outcome, scheduler.expected_total())
    finally:
        _EVENTS = saved
        torch.set_num_threads(previous)
        ui.close()
    return outcomes


def _store_killed(store: Store, item: PlanItem) -> Outcome:
    """A run that killed its worker twice is stored as failed, so later sweeps skip it."""
    from cl_bench.runner import code_version

    c = item.config
    msg = ("worker process died twice while running this configuration (killed by the OS: out of "
           "memory?); run it alone with `cl-bench run` to see why, or `cl-bench sweep --retry-failed`")
    now = time.time()
    store.save(RunRecord(c.run_id(), c.strategy, c.scenario, c.seed, c.resolved_hparams(),
                         dataclasses.asdict(c.protocol), c.scenario_options, "failed", tags=list(c.tags),
                         error=msg, code_version=code_version(), started=now, finished=now, wall_s=0.0))
    return Outcome(c.run_id(), run_label(c), "failed", msg)


# ---- the commands ------------------------------------------------------------------------------------
BUNDLED_SWEEPS = Path(__file__).parent / "sweeps"  # presets shipped with the package, e.g. `mini`


def bundled_sweeps() -> list[str]:
    return sorted(p.stem for p in BUNDLED_SWEEPS.glob("*.yaml"))


def sweep_file(file: str) -> Path:
    """A sweep file's path, or the bundled preset of that name (``cl-bench sweep mini``)."""
    path = Path(file)
    if path.is_file():
        return path
    bundled = BUNDLED_SWEEPS / f"{file}.yaml"
    if path.suffix == "" and bundled.is_file():
        return bundled
    raise click.ClickException(f"no sweep file {file!r}, and no bundled preset of that name; "
                               f"bundled: {', '.join(bundled_sweeps()) or 'none'}")


def _load_or_fail(file: str) -> Sweep:
    try:
        return load_sweep(sweep_file(file))
    except (SweepError, HparamError) as e:
        raise click.ClickException(str(e))


def measure_split(sweep: Sweep, cores: int, device: str, data_root, echo=click.echo) -> list[tuple[int, int, float]]:
    """Run the sweep once per split workers x threads = cores, each into a fresh store; runs/hour."""
    from cl_bench.scenario import build_scenario

    splits = [(w, cores // w) for w in range(1, cores + 1) if cores % w == 0]
    for cell in {(c.scenario, json.dumps(c.options, sort_keys=True)): c for c in sweep.cells}.values():
        build_scenario(cell.scenario, data_root=data_root, **cell.options)  # warm the dataset caches
    results = []
    for workers, threads in splits:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            outcomes = run_sweep(sweep, Path(tmp) / "measure.db", workers=workers, threads=threads,
                                 device=device, data_root=data_root, progress=False)
            seconds = time.perf_counter() - start
        ok = sum(o.status == "finished" for o in outcomes)
        rate = 3600 * ok / seconds
        results.append((workers, threads, rate))
        echo(f"{workers} worker(s) x {threads} thread(s): {ok} runs in {seconds:.1f} s = {rate:.1f} runs/hour")
    best = max(results, key=lambda r: r[2])
    echo(f"best: --workers {best[0]} --threads {best[1]}")
    return results


@click.command("sweep")
@click.argument("file")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help="SQLite results file.")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--workers", type=int, default=lambda: os.cpu_count() or 1, show_default="one per core",
              help="Local worker processes (0: run in this process); measured fastest with one "
                   "single-threaded worker per core (see --measure-split).")
@click.option("--threads", type=int, help="torch threads per worker [default: cores / workers].")
@click.option("--ray-address", help="Ray cluster address (default: start a local Ray).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--data-root", envvar="CL_BENCH_DATA", help="Dataset folder [env CL_BENCH_DATA].")
@click.option("--retry-failed", is_flag=True, help="Also re-run runs stored as failed.")
@click.option("--no-checkpoints", is_flag=True, help="Do not checkpoint runs after each task.")
@click.option("--dry-run", is_flag=True, help="List the runs still to do, run nothing.")
@click.option("--measure-split", "measure", is_flag=True,
              help="Time FILE's runs with every workers x threads split of the cores (fresh temporary "
                   "stores, nothing kept) and print the fastest.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def sweep_command(file, store, backend, workers, threads, ray_address, device, data_root, retry_failed,
                  no_checkpoints, dry_run, measure, quiet):
    """Run every configuration of a sweep FILE not yet in the store (see examples/sweeps/). FILE may
    also name a bundled preset: `mini` (the mixture's laptop-sized benchmark)."""
    sweep = _load_or_fail(file)
    if measure:
        cores = os.cpu_count() or 1
        click.echo(f"measuring on {cores} cores; run this on an otherwise idle machine")
        measure_split(sweep, cores, device, data_root)
        return
    if workers < 0 or (threads is not None and threads < 1):
        raise click.BadParameter("--workers must be >= 0 and --threads >= 1")
    try:
        if dry_run:
            plan = sweep.plan(Store(store))
            todo = plan.pending(retry_failed)
            for item in todo:
                click.echo(f"{item.run_id}  {item.phase:<9}  {run_label(item.config)}  [{item.point.label}]")
            click.echo(f"{len(todo)} to run, {len(plan.items) - len(todo)} in the store"
                       + (f", {len(plan.waiting)} selection(s) waiting" if plan.waiting else ""))
            return
        outcomes = run_sweep(sweep, store, backend=backend, workers=workers, threads=threads, device=device,
                             data_root=data_root, retry_failed=retry_failed, checkpoints=not no_checkpoints,
                             ray_address=ray_address, progress=not quiet)
    except StoreError as e:
        raise click.ClickException(str(e))
    except KeyboardInterrupt:
        click.echo("sweep interrupted; run the same command again to finish it", err=True)
        sys.exit(130)
    n_ok = sum(o.status == "finished" for o in outcomes)
    bad = [o for o in outcomes if o.status != "finished"]
    click.echo(f"sweep {sweep.name}: {n_ok} run(s) finished, {len(bad)} failed in this call")
    for o in bad:
        click.echo(f"  {o.status}: {o.label} ({o.run_id}): {o.message}")
    _echo_status(sweep, Store(store), errors=False)


def status_rows(sweep: Sweep, store: Store) -> list[dict[str, Any]]:
    """One row per (scenario, strategy, grid point, phase): finished / failed / pending over seeds,
    and pending runs with a checkpoint (resumable), plus one row per selection still waiting."""
    from cl_bench.checkpoint import checkpoint_path

    plan = sweep.plan(store)
    rows: dict[tuple, dict[str, Any]] = {}
    for item in plan.items:
        key = (item.cell.key, item.point.label, item.phase)
        row = rows.setdefault(key, {"cell": item.cell.key, "point": item.point.label, "phase": item.phase,
                                    "seeds": [], "finished": 0, "failed": 0, "pending": 0, "partial": 0})
        row["seeds"].append(item.config.seed)
        row[item.status or "pending"] += 1
        if item.status is None and checkpoint_path(store.path, item.run_id).exists():
            row["partial"] += 1
    out = list(rows.values())
    for cell, why in plan.waiting:
        out.append({"cell": cell.key, "point": f"(selection waits: {why})", "phase": "selected",
                    "seeds": list(sweep.final_seeds()), "finished": 0, "failed": 0,
                    "pending": len(sweep.final_seeds()), "partial": 0})
    for cell in plan.unselectable:
        out.append({"cell": cell.key, "point": f"(nothing to select: {NOTHING_TO_CHOOSE}, see --errors)",
                    "phase": "selected", "seeds": [], "finished": 0, "failed": 0, "pending": 0,
                    "partial": 0})
    return out


def _echo_status(sweep: Sweep, store: Store, errors: bool) -> None:
    rows = status_rows(sweep, store)
    header = ["scenario strategy", "grid point", "phase", "seeds", "done", "failed", "pending"]
    table = [[r["cell"], r["point"], r["phase"], ",".join(map(str, r["seeds"])), str(r["finished"]),
              str(r["failed"]), f"{r['pending']}" + (f" ({r['partial']} resumable)" if r["partial"] else "")]
             for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(header)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for t in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(t, widths)))
    totals = [sum(r[k] for r in rows) for k in ("finished", "failed", "pending")]
    click.echo(f"total: {totals[0]} finished, {totals[1]} failed, {totals[2]} pending")
    if errors:
        plan = sweep.plan(store)
        for item in plan.items:
            if item.status == "failed":
                rec = store.get(item.run_id)
                click.echo(f"\n{run_label(item.config)} ({item.run_id}):\n{rec.error}")


@click.command("status")
@click.argument("file")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help="SQLite results file.")
@click.option("--errors", is_flag=True, help="Print the error of every failed run.")
def status_command(file, store, errors):
    """Finished / failed / pending runs of a sweep FILE, per grid cell."""
    sweep = _load_or_fail(file)
    try:
        _echo_status(sweep, Store(store), errors)
    except StoreError as e:
        raise click.ClickException(str(e))
