"""The sweep file: its schema, validated and expanded into a ``Sweep`` before anything runs.

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
    select: {seed: 0, metric: final_valid_acc, then_seeds: [0, 1, 2]}   # instead of `seeds`
    loggers: [jsonl]                   # file / dashboard loggers of every run (cl_bench.loggers)
    order: seeds                       # run every cell's first seed before any second seed (default: cells)
    slurm: {partition: gpu, time: "12:00:00", gpus: 1}   # --backend slurm: what each array task asks for

Without ``select`` every grid point runs on every seed (with it: cl_bench.sweep.plan). Values are typed by
the one parser (cl_bench.values) through each schema's owner. Presets: the YAML files of cl_bench/presets/.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from cl_bench.loggers import LOGGER_NAMES
from cl_bench.registry import all_scenarios, get_strategy, is_strategy_file, parse_scenario_options
from cl_bench.runner import MAX_SEED
from cl_bench.scenario import check_task_positions
from cl_bench.store.records import check_tags
from cl_bench.strategy import HparamError, Strategy, describe_hparams
from cl_bench.strategy_files import static_strategy
from cl_bench.sweep.plan import (
    MAX_RUNS,
    METRICS,
    ORDERS,
    Cell,
    Point,
    Select,
    Sweep,
    SweepError,
    check_max_runs,
    check_size,
    sweep_size,
)
from cl_bench.sweep.slurm_options import parse_slurm_options
from cl_bench.trainer import PRESETS, Protocol, protocol_from_dict

REFERENCE_STRATEGIES = ("joint", "random")
SWEEP_KEYS = (
    "name",
    "scenario",
    "scenarios",
    "strategies",
    "seeds",
    "protocol",
    "references",
    "tags",
    "select",
    "loggers",
    "order",
    "slurm",
)
# The console logger is left out: a sweep shows its own progress display.
SWEEP_LOGGERS = tuple(n for n in LOGGER_NAMES if n != "console")
BUNDLED_SWEEPS = Path(__file__).parents[1] / "presets"  # presets shipped with the package, e.g. `mini`


# ---- files and presets ---------------------------------------------------------------------------------
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
    raise FileNotFoundError(
        f"no sweep file {file!r}, and no bundled preset of that name; bundled: {', '.join(bundled_sweeps()) or 'none'}"
    )


def load_sweep(path: str | os.PathLike, run_code: bool = True, max_runs: int | None = None) -> Sweep:
    """The sweep of a YAML file. ``run_code=False`` (reading commands): user strategy files are read,
    never imported (cl_bench.strategy_files). ``max_runs``: refuse a sweep of more runs (default
    MAX_RUNS), counted before anything is expanded."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_sweep: path must be a file path (str or os.PathLike), got {type(path).__name__}")
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise SweepError(f"cannot read sweep file {path}: {e}") from None
    except UnicodeDecodeError as e:
        raise SweepError(
            f"{path} is not a sweep file: not UTF-8 text ({e.reason} at byte {e.start}); "
            f"a sweep file is YAML text (see examples/sweeps/)"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SweepError(f"{path} is not valid YAML: {e}") from None
    return parse_sweep(data, default_name=path.stem, source=str(path), run_code=run_code, max_runs=max_runs)


# ---- the schema ----------------------------------------------------------------------------------------
def parse_sweep(
    data: Any, default_name: str = "sweep", source: str = "sweep", run_code: bool = True, max_runs: int | None = None
) -> Sweep:
    """A Sweep from the parsed YAML, every name and value validated before anything runs. ``run_code``:
    import user strategy files (else read them: cl_bench.strategy_files). ``max_runs``: see load_sweep."""
    max_runs = check_max_runs(max_runs)
    try:
        return _parse(data, default_name, source, run_code, max_runs)
    except TypeError as e:  # a value of a shape no check above foresaw: still the file's fault, one line
        raise SweepError(f"{source}: a value has the wrong type ({e}); see examples/sweeps/ for the format") from None


def _parse(data: Any, default_name: str, source: str, run_code: bool, max_runs: int = MAX_RUNS) -> Sweep:
    name = _check_keys(data, default_name, source)
    scenarios = _scenarios(data.get("scenarios", data.get("scenario")), source)
    select = _select(data.get("select"), source)
    if select is not None and "seeds" in data:
        raise SweepError(f"{source}: with `select`, give the seeds as select.then_seeds, not `seeds`")
    seeds = _seeds(data.get("seeds", [0]), f"{source}: seeds")
    # Counted before any grid is expanded: a typo such as seeds: 1000000000 is refused, not planned.
    n_protocols = _protocol_count(data.get("protocol"), source)
    n_points = [
        _grid_count(cls, spec, where)
        for cls, spec, where, _name in _strategy_specs(data["strategies"], source, run_code)
    ]
    refs = data.get("references", False)
    check_size(sweep_size(len(scenarios), n_points, n_protocols, len(seeds), select, refs), max_runs, source)
    protocols = _protocols(data.get("protocol"), source)
    strategies = _strategies(data["strategies"], source, run_code)
    tags = _tags(data.get("tags"), source)
    loggers = sweep_loggers(data.get("loggers") or [], f"{source}: loggers")
    order = data.get("order", "cells")
    if order not in ORDERS:
        raise SweepError(f"{source}: order must be one of {', '.join(ORDERS)}, got {order!r}")
    slurm = parse_slurm_options(data.get("slurm"), f"{source}: slurm")  # used by --backend slurm only

    cells = []
    for scenario, options in scenarios:
        for strategy, hp_points in strategies:
            points = [_point(hp, proto, shown, resolved) for hp, shown, resolved in hp_points for proto in protocols]
            cells.append(Cell(scenario, options, strategy, points))
    if refs:
        wanted = REFERENCE_STRATEGIES if refs is True else [refs] if isinstance(refs, str) else refs
        if not isinstance(wanted, (list, tuple)) or [r for r in wanted if r not in REFERENCE_STRATEGIES]:
            raise SweepError(f"{source}: references must be true or a list of {REFERENCE_STRATEGIES}, got {refs!r}")
        for scenario, options in scenarios:
            for ref in wanted:
                # Random ignores the protocol: one run per seed, with the first protocol.
                protos = protocols if ref == "joint" else protocols[:1]
                resolved = dataclasses.asdict(get_strategy(ref).parse_hparams({}))
                cells.append(
                    Cell(scenario, options, ref, [_point({}, p, (), resolved) for p in protos], role="reference")
                )
    sweep = Sweep(
        name, cells, seeds if isinstance(seeds, range) else tuple(seeds), select, tuple(tags), tuple(loggers), order
    )
    sweep.slurm = slurm  # read by run_sweep --backend slurm; not part of any run's identity
    return sweep


def _check_keys(data: Any, default_name: str, source: str) -> str:
    """The sweep's name, once the file is a mapping of known keys with its required ones."""
    if not isinstance(data, dict):
        raise SweepError(f"{source}: expected a mapping with keys {', '.join(SWEEP_KEYS)}")
    unknown = sorted(str(k) for k in set(data) - set(SWEEP_KEYS))
    if unknown:
        raise SweepError(f"{source}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(SWEEP_KEYS)}")
    if "strategies" not in data:
        raise SweepError(f"{source}: `strategies` is required")
    if "scenario" in data and "scenarios" in data:
        raise SweepError(f"{source}: give `scenario` or `scenarios`, not both")
    name = data.get("name") or default_name
    if not isinstance(name, (str, int)) or isinstance(name, bool):
        raise SweepError(f"{source}: name must be a text, got {name!r}")
    return str(name)


def _tags(value: Any, source: str) -> list[str]:
    """The sweep's tags: a text or a list of texts, each checked (cl_bench.store.records.check_tags)."""
    tags = value or []
    tags = [tags] if isinstance(tags, str) else tags
    if not isinstance(tags, list) or not all(isinstance(t, (str, int, float)) for t in tags):
        raise SweepError(f"{source}: tags must be a text or a list of texts, got {value!r}")
    try:
        return check_tags(tags, f"{source}: tags")
    except ValueError as e:
        raise SweepError(str(e)) from None


def sweep_loggers(value: Any, where: str = "loggers") -> tuple[str, ...]:
    """The names of a sweep's loggers, validated (SWEEP_LOGGERS); a text is one name, a name given twice
    counts once."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise SweepError(
            f"{where}: expected a logger name or a list of them ({', '.join(SWEEP_LOGGERS)}), got {value!r}"
        )
    for name in names:
        if name == "console":
            raise SweepError(
                f"{where}: `console` is not a sweep logger (a sweep shows its own progress); "
                f"valid: {', '.join(SWEEP_LOGGERS)}"
            )
        if name not in SWEEP_LOGGERS:
            raise SweepError(f"{where}: unknown logger {name!r}; valid: {', '.join(SWEEP_LOGGERS)}")
    return tuple(dict.fromkeys(names))


def _seeds(value: Any, where: str) -> Sequence[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise SweepError(f"{where}: a count of seeds must be >= 1, got {value}")
        if value > MAX_SEED + 1:
            raise SweepError(f"{where}: a count of seeds must be <= {MAX_SEED + 1} (seeds are in [0, {MAX_SEED}])")
        return range(value)  # not a list: counted before anything is expanded
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        bad = [s for s in value if not 0 <= s <= MAX_SEED]
        if bad:
            raise SweepError(f"{where}: seeds must be integers in [0, {MAX_SEED}], got {bad}")
        return list(dict.fromkeys(value))
    raise SweepError(f"{where}: expected a list of integer seeds or a count, got {value!r}")


def _scenarios(value: Any, source: str) -> list[tuple[str, dict[str, Any]]]:
    if value is None:
        raise SweepError(f"{source}: `scenarios` (or `scenario`) is required")
    entries = value if isinstance(value, list) else [value]
    if not entries:
        raise SweepError(f"{source}: `scenarios` names no scenario (0 runs); list at least one")
    known = all_scenarios()
    out = []
    for entry in entries:
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or "name" not in entry:
            raise SweepError(f"{source}: a scenario is a name or a mapping with `name` and options, got {entry!r}")
        entry = dict(entry)
        name = entry.pop("name")
        if not isinstance(name, str) or name not in known:
            raise SweepError(f"{source}: unknown scenario {name!r}; valid: {', '.join(known)}")
        try:
            options = parse_scenario_options(name, entry, f"scenario {name!r}")
            check_task_positions(name, options, f"scenario {name!r}")
            out.append((name, options))
        except ValueError as e:
            raise SweepError(f"{source}: {e}") from None
    return out


def _protocol_axes(value: Any, source: str) -> tuple[str, list[list[tuple[str, Any]]]]:
    """(preset, the axes of settings): a list value is a grid axis, an empty one an error."""
    if value is not None and not isinstance(value, dict):
        raise SweepError(
            f"{source}: protocol must be a mapping of settings, e.g. {{preset: paper, epochs: 10}}, got {value!r}"
        )
    value = dict(value or {})
    preset = value.pop("preset", "paper")
    if not isinstance(preset, str) or preset not in PRESETS:
        raise SweepError(f"{source}: unknown protocol preset {preset!r}; valid: {', '.join(PRESETS)}")
    empty = [str(k) for k, raw in value.items() if isinstance(raw, list) and not raw]
    if empty:
        raise SweepError(f"{source}: protocol setting {', '.join(empty)} has an empty list of values (0 runs)")
    return preset, [[(key, v) for v in (raw if isinstance(raw, list) else [raw])] for key, raw in value.items()]


def _protocol_count(value: Any, source: str) -> int:
    return math.prod(len(axis) for axis in _protocol_axes(value, source)[1])


def _protocols(value: Any, source: str) -> list[Protocol]:
    """The protocol points: the preset with the overrides; a list value is a grid axis."""
    preset, axes = _protocol_axes(value, source)
    try:
        return [protocol_from_dict(dict(combo), preset) for combo in itertools.product(*axes)]
    except ValueError as e:  # unknown settings, values of the wrong type
        raise SweepError(f"{source}: {e}") from None


def _strategies(
    value: Any, source: str, run_code: bool = True
) -> list[tuple[str, list[tuple[dict, tuple[str, ...], dict]]]]:
    """[(strategy, expand_grid's points)], validated against each strategy's Hparams (of a user file read
    without running it unless ``run_code``)."""
    return [
        (name, expand_grid(cls, spec, where)) for cls, spec, where, name in _strategy_specs(value, source, run_code)
    ]


def _strategy_specs(value: Any, source: str, run_code: bool = True) -> list[tuple[type[Strategy], Any, str, str]]:
    """[(class, grid spec, where, name)] of the ``strategies`` key, nothing expanded."""
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
        if not isinstance(name, str):
            raise SweepError(f"{source}: a strategy is named by a text, got {name!r}")
        try:
            cls = static_strategy(name) if not run_code and is_strategy_file(name) else get_strategy(name)
        except (ValueError, FileNotFoundError) as e:
            raise SweepError(f"{source}: {e}") from None
        out.append((cls, spec, f"{source}: strategy {name!r}", name))
    if not out:
        raise SweepError(f"{source}: `strategies` names no strategy (0 runs); list at least one")
    return out


def expand_grid(cls: type[Strategy], spec: Any, where: str = "") -> list[tuple[dict, tuple[str, ...], dict]]:
    """Grid points of a strategy spec: None (defaults), ``paper`` (every declared grid), or a mapping
    of hyperparameter -> value | list of values (an axis) | ``paper`` (that field's declared grid).
    Each point: (the values set, the names to show in labels, every hyperparameter resolved)."""
    axes, shown = _grid_axes(cls, spec, where)
    points = []
    for combo in itertools.product(*axes):
        hp = dict(combo)
        try:
            parsed = dataclasses.asdict(cls.parse_hparams(hp))
        except HparamError as e:
            raise SweepError(f"{where}: {e}") from None
        points.append(({k: parsed[k] for k in hp}, tuple(shown), parsed))
    return points


def _grid_count(cls: type[Strategy], spec: Any, where: str = "") -> int:
    """How many points ``expand_grid`` gives, without expanding them."""
    return math.prod(len(axis) for axis in _grid_axes(cls, spec, where)[0])


def _grid_axes(cls: type[Strategy], spec: Any, where: str) -> tuple[list[list[tuple[str, Any]]], list[str]]:
    fields = {f.name: f for f in cls.hparam_fields()}
    accepted = describe_hparams(cls) or "none"
    if spec is None:
        spec = {}
    elif spec == "paper":
        spec = {n: "paper" for n, f in fields.items() if f.metadata.get("grid")}
        if not spec:
            raise SweepError(
                f"{where}: `paper` asks for the declared grids, but no hyperparameter "
                f"declares one (accepted: {accepted})"
            )
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
    return axes, shown


def _point(hparams: dict[str, Any], protocol: Protocol, label_keys: Iterable[str], resolved: dict[str, Any]) -> Point:
    hp = " ".join(f"{k}={hparams[k]:g}" if isinstance(hparams[k], float) else f"{k}={hparams[k]}" for k in label_keys)
    changed = [
        f"{f.name}={getattr(protocol, f.name)}"
        for f in dataclasses.fields(Protocol)
        if getattr(protocol, f.name) != f.default
    ]
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
    metric = value.get("metric", "final_valid_acc")
    if metric not in METRICS:
        raise SweepError(
            f"{source}: select.metric {metric!r} unknown; valid: {', '.join(METRICS)} "
            f"(validation metrics only: test data never selects)"
        )
    seed = value.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise SweepError(f"{source}: select.seed must be an integer, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise SweepError(f"{source}: select.seed must be in [0, {MAX_SEED}], got {seed}")
    then = _seeds(value.get("then_seeds", [0, 1, 2]), f"{source}: select.then_seeds")
    return Select(seed, metric, tuple(then))
