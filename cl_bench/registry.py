"""Where strategies and scenarios are found by name: the one lookup the CLI, sweeps, runs and reports use.

- Strategies: the built-ins (every module of ``cl_bench.strategies`` registers its class with
  ``@register_strategy`` on import), third-party packages through the entry-point group
  ``cl_bench.strategies``, a user file ``path/to/file.py:ClassName``, and prefixed names such as
  ``avalanche:EWC`` resolved by a prefix hook (``register_prefix``, or the entry-point group
  ``cl_bench.strategy_prefixes``: the core never imports an adapter itself).
- Scenarios: every module of ``cl_bench.benchmarks`` registers its builders with
  ``@register_scenario``; ``cl_bench.scenario.build_scenario`` builds one.

A broken third-party entry point is skipped with a warning: one bad plugin must not disable every
command.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cl_bench.strategy import Strategy

if TYPE_CHECKING:
    from cl_bench.scenario import Scenario

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
            warnings.warn(f"strategy entry point {ep.name!r} ({ep.value}) failed to load and is skipped: "
                          f"{type(e).__name__}: {e}", stacklevel=2)
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


def load_from_file(spec: str) -> type[Strategy]:
    """``path/to/file.py:ClassName`` -> the class (a third-party strategy not installed as a package)."""
    path, _, cls_name = spec.rpartition(":")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"strategy file {file} does not exist (expected path/to/file.py:ClassName)")
    mod_name = f"cl_bench_user_{file.stem}"
    module_spec = importlib.util.spec_from_file_location(mod_name, file)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    module_spec.loader.exec_module(module)
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ValueError(f"{file} has no Strategy subclass named {cls_name!r}")
    return cls


def get_strategy(name: str) -> type[Strategy]:
    """A strategy class by registered name, entry point, ``file.py:ClassName`` or ``PREFIX:NAME``."""
    if is_strategy_file(name):
        return load_from_file(name)
    prefix, sep, _ = name.partition(":")
    if sep:
        resolver = _prefix_resolver(prefix)
        if resolver is None:
            raise ValueError(f"unknown strategy prefix {prefix + ':'!r} in {name!r}; known prefixes: "
                             f"{', '.join(p + ':' for p in known_prefixes()) or 'none'}")
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
ScenarioBuilder = Callable[..., "Scenario"]
BUILDER_ARGUMENTS = ("seed", "data_root_path", "download")  # what build_scenario passes to every builder


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
