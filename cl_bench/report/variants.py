"""The one rule for which runs make a strategy's row: its variants (configurations) in a section, and which
one is shown by default.

A section is one scale (scenario, options, training protocol: grouping.section_key); in it a strategy may
have run under several configurations (hyperparameters, precision, memory layout). By default the row is:

1. the setting a sweep selected on validation for it (runs tagged ``selected:<sweep>`` by the sweep, or
   marked by the caller from a sweep file: ``selected``), in fp32 without channels_last;
2. else its registered default hyperparameters, in fp32 without channels_last;
3. else a run at the defaults of its own version (made before a hyperparameter existed);
4. else, when the strategy cannot be imported here (its defaults unknown), its only configuration.

Otherwise the strategy has no default row and the footer says so. Other configurations are shown only on
request (``--all-variants``, or a ``--where`` filter). ``Variant.why`` says, in words, which configuration
a row is; ties between equally eligible configurations go to the most seeds, then to the label.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cl_bench.report.naming import default_hparams, import_problem
from cl_bench.report.style import strategy_label
from cl_bench.results import protocol_of
from cl_bench.runner.identity import CurrentView
from cl_bench.store import RunRecord
from cl_bench.sweep.plan import SELECTED_TAG
from cl_bench.sweep.spec import load_sweep, sweep_file
from cl_bench.trainer import LATER_SETTINGS


def json_key(obj) -> str:
    """A canonical JSON text of ``obj`` (sorted keys), to group runs by equal settings."""
    return json.dumps(obj, sort_keys=True, default=str)


@dataclass(frozen=True)
class Variant:
    """A strategy under one configuration (hyperparameters + protocol) in one section."""

    section: tuple[str, ...]
    strategy: str
    config: str  # JSON of {"hparams", "protocol"}
    settings: str  # ' (k=v, ...)': the settings that differ from its other variants in the section, or ''
    main: bool  # the one Table 1 / Fig. 3 show by default
    why: str = ""  # which configuration this is, in words (the tables' footers)
    seeds: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        return self.strategy + self.settings

    def display(self, all_variants: bool) -> str:
        """The paper's name (HAT, SGD-F, ...), with the settings when several variants are shown."""
        return strategy_label(self.strategy) + (self.settings if all_variants else "")


def config_of(r: RunRecord) -> str:
    return json_key({"hparams": r.hparams, "protocol": protocol_of(r)})


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def hparams_status(strategy: str, hparams: dict) -> tuple[str, list[str]]:
    """('default' | 'predates' | 'other' | 'unknown', the keys behind it): 'predates' = every stored value
    is the default but some current hyperparameters are absent (the run was made before they existed)."""
    defaults = default_hparams(strategy)
    if defaults is None:
        return "unknown", []
    other = [k for k in sorted(hparams) if k not in defaults or hparams[k] != defaults[k]]
    if other:
        return "other", other
    absent = [k for k in sorted(defaults) if k not in hparams]
    return ("predates", absent) if absent else ("default", [])


def execution_changes(protocol: dict) -> list[str]:
    """The opt-in execution settings a configuration uses, e.g. ['precision=bf16']."""
    return [f"{k}={_fmt(protocol.get(k))}" for k, v in LATER_SETTINGS.items() if protocol.get(k, v) != v]


def describe(strategy: str, hparams: dict, protocol: dict) -> str:
    """A configuration in words, against the strategy's defaults."""
    status, keys = hparams_status(strategy, hparams)
    defaults = default_hparams(strategy) or {}
    if status == "default":
        hp = "default hyperparameters"
    elif status == "predates":
        hp = f"default hyperparameters of its version (made before {', '.join(keys)} existed)"
    elif status == "other":
        hp = "hyperparameters " + ", ".join(
            f"{k}={_fmt(hparams[k])}" + (f" (default {_fmt(defaults[k])})" if k in defaults else "") for k in keys
        )
    else:
        problem = import_problem(strategy)
        hp = (
            "hyperparameters "
            + (", ".join(f"{k}={_fmt(v)}" for k, v in sorted(hparams.items())) or "none")
            + f" (defaults unknown: {problem or 'not readable here'})"
        )
    exe = execution_changes(protocol)
    return hp + ", " + (", ".join(exe) + " (opt-in)" if exe else "fp32")


def assign(records: Sequence[RunRecord], section_of, selected: Mapping[str, str] | None = None) -> dict[str, Variant]:
    """run_id -> Variant, by the rule of this module. ``section_of(record)`` is the section key;
    ``selected`` maps run ids to the sweep that selected their setting (beside the runs' own tags)."""
    selected = selected or {}
    groups: dict[tuple, dict[str, list[RunRecord]]] = {}
    for r in records:
        groups.setdefault((section_of(r), r.strategy), {}).setdefault(config_of(r), []).append(r)
    out: dict[str, Variant] = {}
    for (sec, strategy), configs in groups.items():
        parsed = {c: json.loads(c) for c in configs}
        flat = {c: {**p["hparams"], **p["protocol"]} for c, p in parsed.items()}
        keys = sorted(set().union(*flat.values()))
        differing = [k for k in keys if len({json_key(f.get(k)) for f in flat.values()}) > 1]
        settings = {
            c: (" (" + ", ".join(f"{k}={f.get(k)}" for k in differing) + ")" if differing else "")
            for c, f in flat.items()
        }
        main, why_main = _main(strategy, configs, parsed, settings, selected)
        for c, rs in configs.items():
            seeds = tuple(sorted({r.seed for r in rs}))
            why = why_main if c == main else describe(strategy, parsed[c]["hparams"], parsed[c]["protocol"])
            for r in rs:
                out[r.run_id] = Variant(sec, strategy, c, settings[c], c == main, why, seeds)
    return out


def _main(
    strategy: str, configs: dict[str, list[RunRecord]], parsed: dict, settings: dict, selected: Mapping[str, str]
) -> tuple[str | None, str]:
    """(the config shown by default, why) or (None, '')."""

    def rank(c):  # most seeds, then the label
        return -len({r.seed for r in configs[c]}), settings[c]

    plain = [c for c in configs if not execution_changes(parsed[c]["protocol"])]
    sweeps = {
        c: sorted(
            {t[len(SELECTED_TAG) :] for r in configs[c] for t in r.tags if t.startswith(SELECTED_TAG)}
            | {selected[r.run_id] for r in configs[c] if r.run_id in selected}
        )
        for c in plain
    }
    chosen = sorted((c for c in plain if sweeps[c]), key=rank)
    if chosen:
        c = chosen[0]
        status, keys = hparams_status(strategy, parsed[c]["hparams"])
        hp = parsed[c]["hparams"]
        setting = ", ".join(f"{k}={_fmt(hp[k])}" for k in keys) if status == "other" else "its default setting"
        return c, f"the setting sweep {', '.join(sweeps[c])} selected on validation ({setting}), fp32"
    for wanted in ("default", "predates"):
        eligible = sorted((c for c in plain if hparams_status(strategy, parsed[c]["hparams"])[0] == wanted), key=rank)
        if eligible:
            c = eligible[0]
            return c, describe(strategy, parsed[c]["hparams"], parsed[c]["protocol"])
    if default_hparams(strategy) is None and len(configs) == 1:
        c = next(iter(configs))
        return c, describe(strategy, parsed[c]["hparams"], parsed[c]["protocol"]) + "; its only configuration"
    return None, ""


def sweep_selections(files: Sequence[str], store) -> dict[str, str]:
    """run_id -> sweep name for the runs of the point each sweep file selected on validation, recomputed
    from the store (cl_bench.sweep.plan: the same choice the sweep made), for runs made before sweeps
    tagged their selected runs."""
    out: dict[str, str] = {}
    for f in files:
        sweep = load_sweep(sweep_file(f), run_code=False)  # a report never imports user strategy code
        view = CurrentView(store, check_data=False)
        plan = sweep.plan(view)
        chosen = {(i.cell.key, i.point.label) for i in plan.items if i.phase == "selected" and len(i.cell.points) > 1}
        out |= {view.run_id_for(i.run_id): sweep.name for i in plan.items if (i.cell.key, i.point.label) in chosen}
    return out
