"""Where strategies and scenarios are found by name: the one lookup the CLI, sweeps, runs and reports use.

- Strategies: the built-ins (every module of ``cl_bench.strategies`` registers its class with
  ``@register_strategy`` on import), third-party packages through the entry-point group
  ``cl_bench.strategies``, a user file ``path/to/file.py:ClassName``, and prefixed names such as
  ``avalanche:EWC`` resolved by a prefix hook (``register_prefix``, or the entry-point group
  ``cl_bench.strategy_prefixes``: the core never imports an adapter itself).
- Scenarios: every module of ``cl_bench.benchmarks`` registers its builders with
  ``@register_scenario`` (and declares its options' ranges with ``@option_ranges``);
  ``build_scenario`` builds one by name with the options every scenario takes (``max_train_per_task``,
  ``tasks``), and ``parse_scenario_options`` types options given as text or YAML.

A broken third-party entry point is skipped with a warning: one bad plugin must not disable every
command.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from cl_bench.ranges import Range
from cl_bench.scenario import Scenario, TrainCap
from cl_bench.strategy import Strategy
from cl_bench.values import parse_like, parse_value

STRATEGY_ENTRY_POINTS = "cl_bench.strategies"
PREFIX_ENTRY_POINTS = "cl_bench.strategy_prefixes"  # name = the prefix without ":", value = a resolver

# ---- strategies ------------------------------------------------------------------------------------
STRATEGIES: dict[str, type[Strategy]] = {}
PREFIXES: dict[str, Callable[[str], type[Strategy]]] = {}  # "avalanche" -> resolver("avalanche:EWC")
_DISCOVERED = False


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a strategy available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a class attribute `name`")
    STRATEGIES[cls.name] = cls
    return cls


def register_prefix(prefix: str, resolver: Callable[[str], type[Strategy]]) -> None:
    """Resolve every strategy name ``prefix:REST`` with ``resolver(name)`` (an adapter's classes)."""
    PREFIXES[prefix.rstrip(":")] = resolver


def _discover() -> None:
    """Import the built-ins and the entry points once per process (entry-point scans cost ~35 ms)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    importlib.import_module("cl_bench.strategies")  # built-ins register on import
    for ep in entry_points(group=STRATEGY_ENTRY_POINTS):
        if ep.name in STRATEGIES:
            continue
        try:
            cls = ep.load()
        except Exception as e:  # a third party's bug: say so, keep every other strategy usable
            warnings.warn(
                f"strategy entry point {ep.name!r} ({ep.value}) failed to load and is skipped: {type(e).__name__}: {e}",
                stacklevel=2,
            )
            continue
        STRATEGIES.setdefault(getattr(cls, "name", "") or ep.name, cls)
    _DISCOVERED = True


def _prefix_resolver(prefix: str) -> Callable[[str], type[Strategy]] | None:
    if prefix not in PREFIXES:
        for ep in entry_points(group=PREFIX_ENTRY_POINTS, name=prefix):
            PREFIXES[prefix] = ep.load()
    return PREFIXES.get(prefix)


def is_strategy_file(name: str) -> bool:
    """``path/to/file.py:ClassName`` (or a bare ``.py`` path) rather than a registered name."""
    return name.endswith(".py") or ".py:" in name


class StrategyFileError(ValueError):
    """A user strategy file that cannot be imported (syntax error, failing import): where and why."""


def strategy_file(spec: str) -> tuple[Path, str]:
    """``path/to/file.py:ClassName`` -> (the existing file, the class name), or FileNotFoundError."""
    path, _, cls_name = spec.rpartition(":")
    file = Path(path)
    if file.is_dir():
        raise FileNotFoundError(f"strategy file {file} is a folder (expected path/to/file.py:ClassName)")
    if not file.is_file():
        raise FileNotFoundError(f"strategy file {file} does not exist (expected path/to/file.py:ClassName)")
    return file, cls_name


# (resolved path, sha256 of its bytes) -> the module: a file runs once per process however often it is named
_FILE_MODULES: dict[tuple[str, str], Any] = {}


def load_from_file(spec: str) -> type[Strategy]:
    """``path/to/file.py:ClassName`` -> the class (a third-party strategy not installed as a package). The
    file runs once per process (again only if its bytes changed): every lookup returns the same class."""
    file, cls_name = strategy_file(spec)
    key = (str(file.resolve()), hashlib.sha256(file.read_bytes()).hexdigest())
    module = _FILE_MODULES.get(key)
    if module is None:
        module = _FILE_MODULES[key] = _import_file(file)
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ValueError(f"{file} has no Strategy subclass named {cls_name!r}")
    return cls


def _import_file(file: Path) -> Any:
    mod_name = f"cl_bench_user_{file.stem}"
    module_spec = importlib.util.spec_from_file_location(mod_name, file)
    if module_spec is None:
        raise StrategyFileError(f"{file} is not a Python file (expected path/to/file.py:ClassName)")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as e:  # the user's file, not cl-bench: one line naming where
        sys.modules.pop(mod_name, None)
        raise StrategyFileError(f"{file}, line {e.lineno}: {type(e).__name__}: {e.msg}") from None
    except Exception as e:  # noqa: BLE001 an import or a name that fails while the file runs
        sys.modules.pop(mod_name, None)
        line = next(
            (
                f.lineno
                for f in reversed(traceback.extract_tb(e.__traceback__))
                if Path(f.filename).resolve() == file.resolve()
            ),
            None,
        )
        raise StrategyFileError(
            f"{file}{f', line {line}' if line else ''}: {type(e).__name__} while importing it: {e}"
        ) from None
    return module


def get_strategy(name: str) -> type[Strategy]:
    """A strategy class by registered name, entry point, ``file.py:ClassName`` or ``PREFIX:NAME``."""
    if is_strategy_file(name):
        return load_from_file(name)
    prefix, sep, _ = name.partition(":")
    if sep:
        resolver = _prefix_resolver(prefix)
        if resolver is None:
            raise ValueError(
                f"unknown strategy prefix {prefix + ':'!r} in {name!r}; known prefixes: "
                f"{', '.join(p + ':' for p in known_prefixes()) or 'none'}"
            )
        return resolver(name)
    _discover()
    if name not in STRATEGIES:
        extra = "".join(f" (and {p}:NAME)" for p in known_prefixes())
        raise ValueError(f"unknown strategy {name!r}; valid: {', '.join(sorted(STRATEGIES))}{extra}")
    return STRATEGIES[name]


def known_prefixes() -> list[str]:
    """The prefixes registered in this process or declared by installed packages."""
    return sorted(set(PREFIXES) | {ep.name for ep in entry_points(group=PREFIX_ENTRY_POINTS)})


def all_strategies() -> dict[str, type[Strategy]]:
    """The registered strategies (built-ins and entry points). Prefixed names (``avalanche:NAME``) are
    not listed: ``get_strategy`` resolves them on demand."""
    _discover()
    return dict(sorted(STRATEGIES.items()))


# ---- scenarios -------------------------------------------------------------------------------------
ScenarioBuilder = Callable[..., Scenario]
# What build_scenario passes to builders (train_cap only to those that take it: scenario.TrainCap); not options.
BUILDER_ARGUMENTS = ("seed", "data_root_path", "download", "train_cap")


@dataclass
class ScenarioSpec:
    name: str
    build: ScenarioBuilder
    description: str
    datasets: tuple[str, ...]


SCENARIOS: dict[str, ScenarioSpec] = {}


def register_scenario(name: str, description: str, datasets: Sequence[str] = ()):
    """Decorator: ``build(seed, data_root_path, download, **options) -> Scenario``."""

    def wrap(fn: ScenarioBuilder) -> ScenarioBuilder:
        SCENARIOS[name] = ScenarioSpec(name, fn, description, tuple(datasets))
        return fn

    return wrap


def all_scenarios() -> dict[str, ScenarioSpec]:
    importlib.import_module("cl_bench.benchmarks")  # built-ins register on import
    return dict(sorted(SCENARIOS.items()))


def get_scenario(name: str) -> ScenarioSpec:
    specs = all_scenarios()
    if name not in specs:
        raise ValueError(f"unknown scenario {name!r}; valid: {', '.join(specs)}")
    return specs[name]


def scenario_options(name: str) -> dict[str, Any]:
    """The builder's own options (beyond seed/data root/download) with their defaults."""
    params = inspect.signature(get_scenario(name).build).parameters
    return {k: p.default for k, p in params.items() if k not in BUILDER_ARGUMENTS}


# ---- building a scenario by name -----------------------------------------------------------------------
COMMON_OPTIONS = ("max_train_per_task", "tasks")  # build_scenario takes these for every scenario


def option_ranges(**ranges: Range):
    """Decorator of a scenario builder: the valid range of its own options, e.g.
    ``@option_ranges(valid_fraction=Range(at_least=0, below=1))``. ``parse_scenario_options`` checks them
    when a CLI or sweep value is parsed; every call of the builder checks them too (Python callers)."""

    def wrap(build: Callable[..., Scenario]) -> Callable[..., Scenario]:
        signature = inspect.signature(build)
        unknown = sorted(set(ranges) - set(signature.parameters))
        if unknown:
            raise ValueError(f"{build.__name__} has no option {', '.join(unknown)} to declare a range for")

        @functools.wraps(build)
        def checked(*args, **kwargs) -> Scenario:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            check_options(checked, bound.arguments, f"scenario {build.__name__!r}")
            return build(*args, **kwargs)

        checked.option_ranges = dict(ranges)
        return checked

    return wrap


def check_options(build: Callable[..., Scenario], options: dict[str, Any], where: str) -> None:
    """ValueError naming the first option outside the range the builder declares (``option_ranges``);
    an int default asks for an int."""
    parameters = inspect.signature(build).parameters
    for key, valid in getattr(build, "option_ranges", {}).items():
        if options.get(key) is not None:
            valid.check(options[key], f"{where} option {key!r}", type(parameters[key].default))


def check_common_options(max_train_per_task: int | None, tasks: Sequence[int] | None, where: str) -> None:
    """max_train_per_task >= 1; tasks a non-empty list of distinct positions >= 0 (the upper bound is
    checked once the scenario is built and its length known)."""
    if max_train_per_task is not None:
        Range(at_least=1).check(max_train_per_task, f"{where} option 'max_train_per_task'", int)
    if tasks is not None:
        tasks = list(tasks)
        if not tasks:
            raise ValueError(f"{where} option 'tasks' must name at least one task position, got []")
        for i in tasks:
            Range(at_least=0).check(i, f"{where} option 'tasks' position", int)
        repeated = sorted({i for i in tasks if tasks.count(i) > 1})
        if repeated:
            raise ValueError(
                f"{where} option 'tasks' names position(s) {', '.join(map(str, repeated))} more than once, got {tasks}"
            )


def parse_scenario_options(name: str, values: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Scenario options given as text (CLI) or YAML, typed by the builder's defaults (cl_bench.values);
    unknown or reserved names are errors listing the accepted ones."""
    where = where or f"scenario {name!r}"
    accepted = scenario_options(name)
    unknown = sorted(set(values) - set(accepted) - set(COMMON_OPTIONS))
    if unknown:
        raise ValueError(
            f"{where} has no option {', '.join(unknown)}; it accepts: "
            + ", ".join([f"{k}={v!r}" for k, v in accepted.items()] + list(COMMON_OPTIONS))
        )
    out = {}
    for key, raw in values.items():
        name_ = f"{where} option {key!r}"
        if raw is None:
            out[key] = None
        elif key == "max_train_per_task":
            out[key] = parse_value(raw, int, name_)
        elif key == "tasks":
            items = raw.split(",") if isinstance(raw, str) else raw
            out[key] = [parse_value(i, int, name_) for i in parse_value(items, list, name_)]
        elif accepted[key] is None:
            out[key] = raw  # no default to take a type from: the builder checks it
        else:
            out[key] = parse_like(raw, accepted[key], name_)
    check_common_options(out.get("max_train_per_task"), out.get("tasks"), where)
    check_options(get_scenario(name).build, out, where)
    return out


def build_scenario(
    name: str,
    seed: int = 0,
    data_root=None,
    download: bool = False,
    max_train_per_task: int | None = None,
    tasks: Sequence[int] | None = None,
    **options,
) -> Scenario:
    """Build a registered scenario; ``tasks`` keeps a subset (by position) and ``max_train_per_task``
    caps each task's training split (stratified, seeded; a held-out validation split shrinks in the
    same proportion): the reduced-scale knobs every scenario takes."""
    spec = get_scenario(name)
    accepted = scenario_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"scenario {name!r} has no option {', '.join(unknown)}; it accepts: "
            f"{', '.join(f'{k}={v!r}' for k, v in accepted.items()) or 'none'}"
        )
    check_common_options(max_train_per_task, tasks, f"scenario {name!r}")  # before any data is loaded
    cap = None if max_train_per_task is None else TrainCap.seeded(max_train_per_task, seed)
    cap_while_building = cap is not None and tasks is None and "train_cap" in inspect.signature(spec.build).parameters
    # cut before the builder copies any split (the same samples, less memory)
    extra = {"train_cap": cap} if cap_while_building else {}
    scenario = spec.build(seed=seed, data_root_path=data_root, download=download, **options, **extra)
    if tasks is not None:
        bad = [i for i in tasks if not 0 <= i < len(scenario.tasks)]
        if bad:
            raise ValueError(f"task positions {bad} out of range 0..{len(scenario.tasks) - 1}")
        scenario.tasks = [scenario.tasks[i] for i in tasks]
    if cap is not None and not cap_while_building:
        for task in scenario.tasks:
            cap.apply(task)
    scenario.info["options"] = {
        "max_train_per_task": max_train_per_task,
        "tasks": list(tasks) if tasks is not None else None,
        **options,
    }
    scenario.info["tasks"] = [
        {"name": t.name, "classes": t.n_classes, "train": len(t.train), "valid": len(t.valid), "test": len(t.test)}
        for t in scenario.tasks
    ]
    return scenario
