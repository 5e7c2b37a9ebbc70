"""Which runs the report shows and how it groups them: the CLI filters, sections and variants, and rho.

A section is one scenario with its scenario options (the runs one table compares); a variant is one
strategy under one configuration (hyperparameters + protocol) in a section. ``analyse`` turns the store's
records into sections, each with rho per run against the Joint/Random references of the same scenario,
options and seed, and the exact ``cl-bench run`` commands for the references that are missing.

A strategy run under several hyperparameter settings in one section (a HAT sweep) has several variants;
the tables and figures show its main variant (most seeds, then its registered defaults) and say how many
others they hide.
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cl_bench.metrics import UndefinedRatioError
from cl_bench.registry import get_strategy
from cl_bench.report.style import strategy_label
from cl_bench.results import REFERENCES, MissingReferences, RunMetrics, with_rho
from cl_bench.store import DEFAULT_STORE, RunRecord


def select_records(records: Sequence[RunRecord], scenarios: Sequence[str] = (), strategies: Sequence[str] = (),
                   seeds: set[int] | None = None, tags: Sequence[str] = ()) -> list[RunRecord]:
    """The CLI filters. Joint and Random are kept whatever the strategy/tag filter: rho needs them."""
    return [r for r in records
            if (not scenarios or r.scenario in scenarios)
            and (not strategies or r.strategy in strategies or r.strategy in REFERENCES)
            and (seeds is None or r.seed in seeds)
            and (not tags or set(tags) & set(r.tags) or r.strategy in REFERENCES)]


def json_key(obj) -> str:
    """A canonical JSON text of ``obj`` (sorted keys), to group runs by equal settings."""
    return json.dumps(obj, sort_keys=True, default=str)


def section_key(r: RunRecord) -> tuple[str, str]:
    """Runs comparable in one table: same scenario and scenario options (as results.with_rho matches)."""
    return r.scenario, json_key(r.scenario_options)


def section_title(key: tuple[str, str]) -> str:
    """``split_mnist (max_train_per_task=5000)``: the scenario and its options that are set."""
    opts = {k: v for k, v in json.loads(key[1]).items() if v is not None}
    return key[0] + (" (" + ", ".join(f"{k}={v}" for k, v in opts.items()) + ")" if opts else "")


def section_slug(key: tuple[str, str]) -> str:
    """A file-name-safe section name, e.g. ``split_mnist__max_train_per_task-5000``."""
    opts = {k: v for k, v in json.loads(key[1]).items() if v is not None}
    parts = [key[0]] + [f"{k}-{'-'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in opts.items()]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "__".join(parts))


@dataclass(frozen=True)
class Variant:
    """A strategy under one configuration (hyperparameters + protocol) in one section."""

    section: tuple[str, str]
    strategy: str
    config: str  # JSON of {"hparams", "protocol"}
    settings: str  # ' (k=v, ...)': the settings that differ from its other variants in the section, or ''
    main: bool  # the one Table 1 / Fig. 3 show by default

    @property
    def label(self) -> str:
        return self.strategy + self.settings

    def display(self, all_variants: bool) -> str:
        """The paper's name (HAT, SGD-F, ...), with the settings when several variants are shown."""
        return strategy_label(self.strategy) + (self.settings if all_variants else "")


def _config(r: RunRecord) -> str:
    return json_key({"hparams": r.hparams, "protocol": r.protocol})


def _default_hparams(strategy: str) -> dict | None:
    try:
        return dataclasses.asdict(get_strategy(strategy).Hparams())
    except (ValueError, TypeError):  # unregistered (e.g. file-loaded), or Hparams without defaults
        return None


def variants(records: Sequence[RunRecord]) -> dict[str, Variant]:
    """run_id -> Variant. The main variant of a strategy in a section has the most seeds; ties go to
    the registered default hyperparameters, then to the first label."""
    groups: dict[tuple, dict[str, list[RunRecord]]] = {}
    for r in records:
        groups.setdefault((section_key(r), r.strategy), {}).setdefault(_config(r), []).append(r)
    out: dict[str, Variant] = {}
    for (sec, strategy), configs in groups.items():
        parsed = {c: json.loads(c) for c in configs}
        flat = {c: {**p["hparams"], **p["protocol"]} for c, p in parsed.items()}
        keys = sorted(set().union(*flat.values()))
        differing = [k for k in keys if len({json_key(f.get(k)) for f in flat.values()}) > 1]
        settings = {c: (" (" + ", ".join(f"{k}={f.get(k)}" for k in differing) + ")" if differing else "")
                    for c, f in flat.items()}
        defaults = _default_hparams(strategy)
        main = min(configs, key=lambda c: (-len({r.seed for r in configs[c]}),
                                           parsed[c]["hparams"] != defaults, settings[c]))
        for c, rs in configs.items():
            for r in rs:
                out[r.run_id] = Variant(sec, strategy, c, settings[c], c == main)
    return out


@dataclass
class Section:
    """The finished runs of one scenario + options, with rho where the references exist."""

    key: tuple[str, str]
    metrics: list[RunMetrics]
    variants: dict[str, Variant]
    missing: list[str]  # `cl-bench run ...` commands for the absent references
    notes: list[str] = field(default_factory=list)  # runs whose rho is undefined, and why

    @property
    def title(self) -> str:
        return section_title(self.key)

    @property
    def slug(self) -> str:
        return section_slug(self.key)

    def runs(self, strategy: str | None = None, main_only: bool = True,
             references: bool = True) -> list[RunMetrics]:
        return [m for m in self.metrics
                if (strategy is None or m.record.strategy == strategy)
                and (references or m.record.strategy not in REFERENCES)
                and (not main_only or self.variants[m.record.run_id].main)]

    def hidden(self) -> list[str]:
        """'hat: shown (c=0.75, s_max=400.0), 11 other setting(s) hidden' for each strategy run under
        several settings in this section."""
        others: dict[str, set[str]] = {}
        main: dict[str, str] = {}
        for v in self.variants.values():
            if v.main:
                main[v.strategy] = v.settings
            else:
                others.setdefault(v.strategy, set()).add(v.config)
        return [f"{s}: shown{main.get(s, '')}, {len(c)} other setting(s) hidden"
                for s, c in sorted(others.items())]

    def task_names(self) -> list[str]:
        """Task names by position if every run agrees (the mixture's order depends on the seed)."""
        T = max(m.record.n_tasks for m in self.metrics)
        names = {tuple(t.get("name", "") for t in m.record.data.get("tasks", [])) for m in self.metrics}
        if len(names) == 1:
            only = next(iter(names))
            if len(only) == T:
                return list(only)
        return [f"task {i + 1}" for i in range(T)]


def runnable(command: str, store: str | None = None) -> str:
    """A launch command from results.with_rho with ``--store`` added, so the run lands where the report
    reads."""
    return command + (f" --store {store}" if store and store != DEFAULT_STORE else "")


def analyse(records: Sequence[RunRecord], store: str | None = None) -> list[Section]:
    """Sections of finished runs, each with rho where its references exist (results.with_rho)."""
    finished = [r for r in records if r.status == "finished" and r.accuracy is not None]
    by_section: dict[tuple[str, str], list[RunRecord]] = {}
    for r in finished:
        by_section.setdefault(section_key(r), []).append(r)
    sections = []
    for key in sorted(by_section):
        recs = by_section[key]
        try:
            metrics, missing = with_rho(recs), []
        except MissingReferences as e:
            metrics, missing = _with_rho_each(recs), [runnable(c, store) for c in e.commands]
        except UndefinedRatioError:
            metrics, missing = _with_rho_each(recs), []
        notes = [f"{m.record.strategy} seed {m.record.seed} ({m.record.run_id}): rho undefined: {m.error}"
                 for m in metrics if getattr(m, "error", None) and m.record.strategy not in REFERENCES]
        sections.append(Section(key, metrics, variants(recs), missing, notes))
    return sections


def _with_rho_each(recs: Sequence[RunRecord]) -> list[RunMetrics]:
    """rho run by run, so one run whose Eq. 6 is undefined (Joint no better than Random on a task)
    loses only its own rho; its error is kept on the RunMetrics as ``error``."""
    refs = [r for r in recs if r.strategy in REFERENCES]
    out = []
    for r in recs:
        try:
            own = [x for x in refs if x.seed == r.seed and x is not r]  # same section, so same scenario
            (m,) = [m for m in with_rho([r] + own, require_references=False) if m.record is r]
        except UndefinedRatioError as e:
            (m,) = [m for m in with_rho([r], require_references=False) if m.record is r]
            m.error = str(e)
        out.append(m)
    return out
