"""Which runs the report shows and how it groups them: the CLI filters, sections, and rho per run.

A section is one scale: a scenario with its options and one training protocol (epoch cap, lr schedule,
batch size; ``section_key``), so a table never mixes runs of different scales. Within it a strategy's
variants (configurations) follow the one rule of variants.py. ``analyse`` turns the store's records into
sections, each with rho per run against its matching references (results.rho_per_run, looked up among
every selected run, not only the section's) and, where they are missing, the exact ``cl-bench run``
commands that would produce them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cl_bench.report.naming import default_hparams
from cl_bench.report.provenance import Scale, dataset_name, protocol_summary, section_scale
from cl_bench.report.variants import Variant, assign, json_key
from cl_bench.results import EVAL_ONLY, REFERENCES, RunMetrics, protocol_of, rho_per_run, training_protocol
from cl_bench.store import DEFAULT_STORE, RunRecord
from cl_bench.trainer import LATER_SETTINGS
from cl_bench.values import BadValue, parse_like

__all__ = [
    "Section",
    "Variant",
    "analyse",
    "json_key",
    "runnable",
    "section_key",
    "section_slug",
    "section_title",
    "select_records",
    "setting_of",
    "task_names",
    "variants",
]


def setting_of(r: RunRecord, name: str):
    """(found, value) of a hyperparameter, protocol setting or scenario option of a run; a hyperparameter
    the run did not store counts at the strategy's default (if known)."""
    if name in r.hparams:
        return True, r.hparams[name]
    proto = protocol_of(r)
    if name in proto:
        return True, proto[name]
    if name in (r.scenario_options or {}):
        return True, r.scenario_options[name]
    defaults = default_hparams(r.strategy) or {}
    return (True, defaults[name]) if name in defaults else (False, None)


def check_where_names(records: Sequence[RunRecord], where: Mapping[str, str], skip: Sequence[str] = ()) -> None:
    """A ``--where`` name that none of ``records`` (strategies in ``skip`` aside) has is an error (a typo
    would otherwise silently select nothing)."""
    unknown = [k for k in where if not any(setting_of(r, k)[0] for r in records if r.strategy not in skip)]
    if unknown and records:
        raise ValueError(
            f"--where: no run has a setting named {', '.join(unknown)} (names are hyperparameters, "
            f"protocol settings such as epochs or precision, and scenario options)"
        )


def matches_where(r: RunRecord, where: Mapping[str, str]) -> bool:
    """Every ``where`` setting of ``r`` equals the given value, typed like the stored one."""
    for name, raw in where.items():
        found, value = setting_of(r, name)
        try:
            if not found or parse_like(raw, value, name) != value:
                return False
        except BadValue:
            return False
    return True


def select_records(
    records: Sequence[RunRecord],
    scenarios: Sequence[str] = (),
    strategies: Sequence[str] = (),
    seeds: set[int] | None = None,
    tags: Sequence[str] = (),
    where: Mapping[str, str] | None = None,
) -> list[RunRecord]:
    """The CLI filters. Joint and Random are kept whatever the strategy/tag/``where`` filter: rho needs
    them (and matches them to each run by scenario, options, seed, protocol and data). ``where`` maps a
    hyperparameter, protocol setting or scenario option to a value (typed like the stored one); a name
    that no run has is an error (a typo would otherwise silently select nothing)."""
    where = dict(where or {})
    check_where_names(records, where, skip=REFERENCES)
    return [
        r
        for r in records
        if (not scenarios or r.scenario in scenarios)
        and (not strategies or r.strategy in strategies or r.strategy in REFERENCES)
        and (seeds is None or r.seed in seeds)
        and (not tags or set(tags) & set(r.tags) or r.strategy in REFERENCES)
        and (not where or r.strategy in REFERENCES or matches_where(r, where))
    ]


def section_protocol(r: RunRecord) -> dict:
    """The training protocol that defines a section: precision and memory layout are a row's variant."""
    return {k: v for k, v in training_protocol(r).items() if k not in LATER_SETTINGS and k not in EVAL_ONLY}


def section_key(r: RunRecord) -> tuple[str, str, str]:
    """Runs comparable in one table: same scenario, scenario options and training protocol."""
    return r.scenario, json_key(r.scenario_options), json_key(section_protocol(r))


def _options(key: Sequence[str]) -> dict:
    return {k: v for k, v in json.loads(key[1]).items() if v is not None}


def section_title(key: Sequence[str]) -> str:
    """``split_mnist (max_train_per_task=5000), ≤ 10 epochs``: the scenario, its options that are set and
    the training protocol (its epoch cap and what differs from the paper's preset), when the key has it."""
    opts = _options(key)
    title = key[0] + (" (" + ", ".join(f"{k}={v}" for k, v in opts.items()) + ")" if opts else "")
    proto = protocol_summary(json.loads(key[2])) if len(key) > 2 else ""
    return title + (f", {proto}" if proto else "")


def section_slug(key: Sequence[str]) -> str:
    """A file-name-safe section name, e.g. ``split_mnist__max_train_per_task-5000__epochs-10``."""
    parts = [key[0]] + [f"{k}-{'-'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in _options(key).items()]
    if len(key) > 2:
        proto = json.loads(key[2])
        if proto.get("epochs") is not None:
            parts.append(f"epochs-{proto['epochs']}")
        from_paper = protocol_summary({k: v for k, v in proto.items() if k != "epochs"})
        parts += [p.replace("=", "-") for p in from_paper.split(", ") if p]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "__".join(parts))


@dataclass
class Section:
    """The finished runs of one scale (scenario + options + training protocol), with rho where the
    matching references exist."""

    key: tuple[str, str, str]
    metrics: list[RunMetrics]
    variants: dict[str, Variant]
    missing: list[str]  # `cl-bench run ...` commands for the absent references of the rows shown by default
    notes: list[str] = field(default_factory=list)  # their runs whose rho is undefined or n/a, and why
    missing_other: list[str] = field(default_factory=list)  # the same for the other variants
    notes_other: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return section_title(self.key)

    @property
    def slug(self) -> str:
        return section_slug(self.key)

    @property
    def protocol(self) -> dict:
        return json.loads(self.key[2])

    def runs(self, strategy: str | None = None, main_only: bool = True, references: bool = True) -> list[RunMetrics]:
        return [
            m
            for m in self.metrics
            if (strategy is None or m.record.strategy == strategy)
            and (references or m.record.strategy not in REFERENCES)
            and (not main_only or self.variants[m.record.run_id].main)
        ]

    def launch(self, all_variants: bool = False) -> list[str]:
        return self.missing + (self.missing_other if all_variants else [])

    def remarks(self, all_variants: bool = False) -> list[str]:
        return self.notes + (self.notes_other if all_variants else [])

    def scale(self) -> Scale:
        """The section's scale in words (provenance.Scale), over the runs it shows by default."""
        shown = self.runs() or self.metrics
        return section_scale(
            [m.record for m in self.metrics], self.protocol, self.task_names(), [m.record.seed for m in shown]
        )

    def rows(self, all_variants: bool = False) -> list[Variant]:
        """The variants shown, one per configuration (references last)."""
        seen = {}
        for m in self.metrics:
            v = self.variants[m.record.run_id]
            if all_variants or v.main:
                seen.setdefault((v.strategy in REFERENCES, v.strategy, v.config), v)
        return [seen[k] for k in sorted(seen)]

    def hidden(self) -> list[str]:
        """One line per strategy with configurations not shown by default, and per strategy with no
        default row at all."""
        by_strategy: dict[str, list[Variant]] = {}
        for v in {v.config + v.strategy: v for v in self.variants.values()}.values():
            by_strategy.setdefault(v.strategy, []).append(v)
        out = []
        for s, vs in sorted(by_strategy.items()):
            others = [v for v in vs if not v.main]
            if not others:
                continue
            if len(others) == len(vs):
                out.append(f"{s}: no run at its default configuration; {len(others)} other configuration(s) hidden")
            else:
                out.append(f"{s}: {len(others)} other configuration(s) hidden")
        return out

    def task_names(self) -> list[str]:
        return task_names([m.record for m in self.metrics])


def task_names(records: Sequence[RunRecord]) -> list[str]:
    """Task names by position if every run agrees (the mixture's order depends on the seed), data sets
    spelled as the paper does; else 'task 1', 'task 2', ..."""
    T = max(r.n_tasks or 0 for r in records)
    names = {tuple(t.get("name", "") for t in (r.data or {}).get("tasks", [])) for r in records}
    if len(names) == 1:
        only = next(iter(names))
        if len(only) == T and all(only):
            return [dataset_name(n) for n in only]
    return [f"task {i + 1}" for i in range(T)]


def variants(records: Sequence[RunRecord], selected: Mapping[str, str] | None = None) -> dict[str, Variant]:
    """run_id -> Variant: each run's configuration in its section, and whether it is the one shown by
    default (the rule of variants.py)."""
    return assign(records, section_key, selected)


def runnable(command: str, store: str | None = None) -> str:
    """A launch command from results.rho_per_run with ``--store`` added, so the run lands where the report
    reads."""
    return command + (f" --store {store}" if store and store != DEFAULT_STORE else "")


def analyse(
    records: Sequence[RunRecord], store: str | None = None, selected: Mapping[str, str] | None = None
) -> list[Section]:
    """Sections of finished runs, each with rho where its matching references exist. ``selected`` maps
    run ids to the sweep that selected their setting (variants.py), for runs made before sweeps recorded
    it."""
    finished = [r for r in records if r.status == "finished" and r.accuracy is not None]
    metrics = rho_per_run(finished)
    var = variants(finished, selected)
    by_section: dict[tuple[str, str, str], list[RunMetrics]] = {}
    for m in metrics:
        by_section.setdefault(section_key(m.record), []).append(m)
    sections = []
    for key in sorted(by_section):
        ms = by_section[key]
        lists: dict[bool, tuple[set, list]] = {True: (set(), []), False: (set(), [])}
        for m in ms:
            r = m.record
            if r.strategy in REFERENCES:  # their own references matter only through the runs they serve
                continue
            commands, notes = lists[var[r.run_id].main]
            commands.update(runnable(c, store) for c in m.commands)
            if m.error:
                notes.append(f"{r.strategy} seed {r.seed} ({r.run_id}): rho undefined: {m.error}")
            elif m.missing:
                notes.append(f"{r.strategy} seed {r.seed} ({r.run_id}): rho n/a: {'; '.join(m.missing)}")
        sections.append(
            Section(
                key,
                ms,
                {m.record.run_id: var[m.record.run_id] for m in ms},
                sorted(lists[True][0]),
                lists[True][1],
                sorted(lists[False][0] - lists[True][0]),
                lists[False][1],
            )
        )
    return sections
