"""Tables and figures from the store: the paper's Table 1 and Figs. 3-7, one command (`cl-bench report`).

Data flow: the store's records -> ``select_records`` (CLI filters) -> ``analyse`` (rho per run against
the Joint/Random references of the same scenario, options and seed, reference §7.1; runs grouped into
sections = scenario + scenario options, and variants = strategy + hyperparameters + protocol) ->
tables (``rho_table``, ``format_markdown``/``format_latex``, CSV) and figures (``build_figures``, drawn
by cl_bench.plots) -> files (``--figures DIR``) and one self-contained HTML page (``--html``).

A strategy run under several hyperparameter settings in one section (a HAT sweep) has several variants;
Table 1, Fig. 3 and the matrices show its main variant (most seeds, then its registered defaults) and
say how many others they hide (``--all-variants`` shows them); Fig. 4 is drawn from the HAT variants.
Missing references are never faked: rho cells are n/a, the accuracy-based views are still shown, and
the exact ``cl-bench run`` commands that would complete them are printed.
"""
from __future__ import annotations

import dataclasses
import json
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import pandas as pd

from cl_bench import plots
from cl_bench.metrics import UndefinedRatioError, summarize
from cl_bench.results import REFERENCES, MissingReferences, RunMetrics, with_rho
from cl_bench.store import DEFAULT_STORE, RunRecord, Store, StoreError
from cl_bench.registry import get_strategy

HAT = "hat"
GRID_KEYS = ("s_max", "c")  # Fig. 4 axes: HAT's stability and compressibility hyperparameters


# ---- selection and grouping -----------------------------------------------------------------------

def select_records(records: Sequence[RunRecord], scenarios: Sequence[str] = (), strategies: Sequence[str] = (),
                   seeds: set[int] | None = None, tags: Sequence[str] = ()) -> list[RunRecord]:
    """The CLI filters. Joint and Random are kept whatever the strategy/tag filter: rho needs them."""
    return [r for r in records
            if (not scenarios or r.scenario in scenarios)
            and (not strategies or r.strategy in strategies or r.strategy in REFERENCES)
            and (seeds is None or r.seed in seeds)
            and (not tags or set(tags) & set(r.tags) or r.strategy in REFERENCES)]


def _json(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def section_key(r: RunRecord) -> tuple[str, str]:
    """Runs comparable in one table: same scenario and scenario options (as results.with_rho matches)."""
    return r.scenario, _json(r.scenario_options)


def section_title(key: tuple[str, str]) -> str:
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
        return plots.strategy_label(self.strategy) + (self.settings if all_variants else "")


def _config(r: RunRecord) -> str:
    return _json({"hparams": r.hparams, "protocol": r.protocol})


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
        differing = [k for k in keys if len({_json(f.get(k)) for f in flat.values()}) > 1]
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


# ---- Table 1 ---------------------------------------------------------------------------------------

def rho_table(metrics: list[RunMetrics], include_references: bool = False,
              all_variants: bool = False) -> pd.DataFrame:
    """One row per (scenario + options, strategy variant): mean over seeds of rho^{<=2}, rho^{<=T} and
    A^{<=T}, with numpy's std (ddof 0) and the 95% t-interval half-width (reference §7.1), sorted by
    rho^{<=T} (best last, as Table 1). ``seeds`` counts the runs, ``rho seeds`` those with references."""
    var = variants([m.record for m in metrics])
    groups: dict[tuple, list[RunMetrics]] = {}
    for m in metrics:
        v = var[m.record.run_id]
        if (include_references or m.record.strategy not in REFERENCES) and (all_variants or v.main):
            groups.setdefault((v.section, m.record.strategy, v.label), []).append(m)
    rows = []
    for ((scenario, options), strategy, label), ms in groups.items():
        T = ms[0].record.n_tasks
        with_refs = [m for m in ms if m.rho_upto is not None]
        row = {"scenario": scenario, "options": options, "strategy": strategy, "variant": label,
               "name": label if all_variants else strategy,
               "seeds": len(ms), "rho seeds": len(with_refs), "T": T}
        for label_, values in [
            ("rho<=2", [m.rho_upto[min(1, T - 1)] for m in with_refs]),  # after the second task
            ("rho<=T", [m.rho_upto[-1] for m in with_refs]),  # after the last task
            ("A<=T", [m.acc_upto[-1] for m in ms]),
        ]:
            s = summarize(values)
            row |= {label_: s.mean, f"{label_} std": s.std, f"{label_} ci95": s.ci95}
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    return df.sort_values(["scenario", "options", "rho<=T", "A<=T", "variant"],
                          na_position="first").reset_index(drop=True)


def table_columns(T: int) -> list[str]:
    """Table 1's metric columns: rho<=2 and rho<=T, one column when T <= 2 (they coincide), and A<=T."""
    return (["rho<=2", "rho<=T"] if T > 2 else ["rho<=T"]) + ["A<=T"]


def format_markdown(df: pd.DataFrame) -> str:
    """Table 1 style: 'mean (std) [+-ci95]' per cell, a block per scenario + options."""
    if df.empty:
        return "(no finished runs match)"
    lines = []
    for (scenario, options), part in df.groupby(["scenario", "options"], sort=False):
        T = int(part["T"].iloc[0])
        cols = table_columns(T)
        head = [c.replace("<=T", f"<={T}") + (" (%)" if c.startswith("A") else "") for c in cols]
        lines += [f"### {section_title((scenario, options))} (T = {T})", "",
                  "| strategy | seeds | " + " | ".join(head) + " |", "|---|---:|" + "---:|" * len(cols)]
        for _, r in part.iterrows():
            cells = [_cell(r, c, 100 if c.startswith("A") else 1) for c in cols]
            lines.append(f"| {r['name']} | {_seeds(r)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("mean (std) [+-95% t-interval half-width] over seeds; std is numpy's (ddof 0), as the "
                 "reference's plot script. rho needs Joint and Random runs of the same seed.")
    return "\n".join(lines)


def _seeds(r) -> str:
    return str(r["seeds"]) if r["rho seeds"] == r["seeds"] else f"{r['seeds']} (rho: {r['rho seeds']})"


def _n(r, key: str) -> int:
    """Seeds behind a cell: rho cells count the runs with references."""
    return int(r["rho seeds"] if key.startswith("rho") else r["seeds"])


def _cell(r, key: str, scale: float = 1.0) -> str:
    if np.isnan(r[key]):
        return "n/a"
    if _n(r, key) < 2:  # one seed: no spread to show
        return f"{r[key] * scale:.2f}"
    ci = "" if np.isnan(r[f"{key} ci95"]) else f" [+-{r[f'{key} ci95'] * scale:.2f}]"
    return f"{r[key] * scale:.2f} ({r[f'{key} std'] * scale:.2f}){ci}"


def _tex(s: str) -> str:
    return re.sub(r"([_%&#$])", r"\\\1", s)


def _tex_cell(r, key: str, scale: float = 1.0) -> str:
    if np.isnan(r[key]):
        return "--"
    if _n(r, key) < 2:
        return f"${r[key] * scale:.2f}$"
    std = f" ({r[f'{key} std'] * scale:.2f})"
    ci = "" if np.isnan(r[f"{key} ci95"]) else f" $\\pm${r[f'{key} ci95'] * scale:.2f}"
    return f"${r[key] * scale:.2f}${std}{ci}"


def _tex_head(column: str, T: int) -> str:
    return {"rho<=2": r"$\rho^{\leq 2}$", "rho<=T": rf"$\rho^{{\leq {T}}}$",
            "A<=T": rf"$A^{{\leq {T}}}$ (\%)"}[column]


def format_latex(df: pd.DataFrame) -> str:
    """Table 1 as the paper sets it (booktabs): one table per scenario + options, rows sorted with the
    best rho^{<=T} last; cells 'mean (std) +-ci95'; n = runs (seeds) per row, 'k/n' when only k of
    them have their references."""
    if df.empty:
        return "% (no finished runs match)"
    out = ["% needs \\usepackage{booktabs}"]
    for (scenario, options), part in df.groupby(["scenario", "options"], sort=False):
        T = int(part["T"].iloc[0])
        cols = table_columns(T)
        title = _tex(section_title((scenario, options)))
        what = ("after the second ($\\rho^{\\leq 2}$) and the last " if T > 2 else "after the last ") + \
            f"($\\rho^{{\\leq {T}}}$) task"
        out += [
            "\\begin{table}[t]", "\\centering",
            (f"\\caption{{Average forgetting ratio {what}, and mean accuracy $A^{{\\leq {T}}}$, on {title}: "
             f"mean over $n$ runs, standard deviation in parentheses, half-width of the 95\\% Student-$t$ "
             f"interval after $\\pm$.}}"),
            f"\\label{{tab:rho-{section_slug((scenario, options)).replace('_', '-')}}}",
            "\\begin{tabular}{lr" + "l" * len(cols) + "}", "\\toprule",
            "Approach & $n$ & " + " & ".join(_tex_head(c, T) for c in cols) + " \\\\",
            "\\midrule"]
        for _, r in part.iterrows():
            name = _tex(plots.strategy_label(r["strategy"]) + r["name"][len(r["strategy"]):])
            n_cell = str(r["seeds"]) if r["rho seeds"] == r["seeds"] else f"{r['rho seeds']}/{r['seeds']}"
            cells = [_tex_cell(r, c, 100 if c.startswith("A") else 1) for c in cols]
            out.append(f"{name} & {n_cell} & " + " & ".join(cells) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)


def format_accuracy_matrix(acc: np.ndarray, names: list[str] | None = None) -> str:
    """A markdown accuracy matrix (%, rows: after task t, columns: task tau)."""
    T = acc.shape[0]
    names = names or [str(i + 1) for i in range(T)]
    lines = ["| after \\ on | " + " | ".join(names) + " |", "|---|" + "---:|" * T]
    for t in range(T):
        cells = ["" if np.isnan(acc[t, tau]) else f"{100 * acc[t, tau]:.1f}" for tau in range(T)]
        lines.append(f"| {names[t]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- per-t curves, matrices, HAT grid and monitoring ------------------------------------------------

def _by_variant(ms: Sequence[RunMetrics], var: dict[str, Variant]) -> dict[Variant, list[RunMetrics]]:
    out: dict[Variant, list[RunMetrics]] = {}
    for m in ms:
        out.setdefault(var[m.record.run_id], []).append(m)
    return out


def curves(section: Section, kind: str = "rho", all_variants: bool = False) -> list[plots.Curve]:
    """Fig. 3 data: per variant, mean and std (ddof 0) over seeds of rho^{<=t} (kind 'rho', runs with
    references only, Joint/Random left out) or A^{<=t} (kind 'acc', Joint/Random included as bounds).
    Ordered by the last value, best first (the legend's order)."""
    ms = section.runs(main_only=not all_variants, references=kind == "acc")
    out = []
    for v, group in _by_variant(ms, section.variants).items():
        values = [m.rho_upto if kind == "rho" else m.acc_upto for m in group]
        values = [x for x in values if x is not None]
        if not values:
            continue
        stack = np.stack(values)
        out.append(plots.Curve(v.display(all_variants), v.strategy, stack.mean(axis=0), stack.std(axis=0),
                               len(values)))
    return sorted(out, key=lambda c: (-c.mean[-1], c.label))


def mean_matrices(section: Section, all_variants: bool = False) -> list[tuple[str, str, np.ndarray, int]]:
    """(label, strategy, mean accuracy matrix over seeds, seeds) per variant, sorted by A^{<=T},
    Joint and Random last."""
    out = []
    for v, group in _by_variant(section.runs(main_only=not all_variants), section.variants).items():
        with warnings.catch_warnings():  # NaN above the diagonal
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(np.stack([m.record.accuracy for m in group]), axis=0)
        out.append((v.display(all_variants), v.strategy, mean, len(group)))
    return sorted(out, key=lambda x: (x[1] in REFERENCES, -np.nanmean(x[2][-1]), x[0]))  # references last


@dataclass
class HatGrid:
    """Fig. 4 data: ``values[i, j]`` (mean over seeds) at s_max[i], c[j]; NaN where not run."""

    label: str  # the settings shared by the grid's runs, when the section has several grids
    s_max: list[float]
    c: list[float]
    values: np.ndarray
    counts: np.ndarray
    metric: str  # 'rho<=T' or 'A<=T' (when some cell lacks its references)
    seeds: list[int]


def hat_grids(section: Section) -> list[HatGrid]:
    """HAT runs grouped by every setting except s_max and c; a group with >= 2 (s_max, c) cells is a grid."""
    groups: dict[str, list[RunMetrics]] = {}
    for m in section.runs(HAT, main_only=False):
        hp = m.record.hparams
        if all(k in hp for k in GRID_KEYS):
            rest = {k: v for k, v in hp.items() if k not in GRID_KEYS}
            groups.setdefault(_json({"hparams": rest, "protocol": m.record.protocol}), []).append(m)
    grids = []
    for ms in groups.values():
        cells = {(float(m.record.hparams["s_max"]), float(m.record.hparams["c"])) for m in ms}
        if len(cells) < 2:
            continue
        # Compare cells on the same seeds (the paper's grid is seed 0): the seeds every cell has, if any.
        seed_sets = [{m.record.seed for m in ms if (float(m.record.hparams["s_max"]),
                                                    float(m.record.hparams["c"])) == cell} for cell in cells]
        common = set.intersection(*seed_sets)
        if common:
            ms = [m for m in ms if m.record.seed in common]
        s_vals, c_vals = sorted({s for s, _ in cells}), sorted({c for _, c in cells})
        use_rho = all(m.rho_upto is not None for m in ms)
        values = np.full((len(s_vals), len(c_vals)), np.nan)
        counts = np.zeros_like(values)
        for i, s in enumerate(s_vals):
            for j, c in enumerate(c_vals):
                cell = [m for m in ms
                        if float(m.record.hparams["s_max"]) == s and float(m.record.hparams["c"]) == c]
                if cell:
                    values[i, j] = np.mean([m.rho_upto[-1] if use_rho else m.acc_upto[-1] for m in cell])
                    counts[i, j] = len(cell)
        label = "" if len(groups) == 1 else f" [{len(grids) + 1}]"
        grids.append(HatGrid(label, s_vals, c_vals, values, counts, "rho<=T" if use_rho else "A<=T",
                             sorted({m.record.seed for m in ms})))
    return grids


def hat_monitored(section: Section) -> list[RunMetrics]:
    """Main-variant HAT runs that stored HAT's monitoring, lowest seed first (the paper shows seed 0)."""
    return sorted((m for m in section.runs(HAT) if "hat" in (m.record.monitoring or {})),
                  key=lambda m: m.record.seed)


def hat_compression_run(section: Section) -> RunMetrics | None:
    """Fig. 7's run: a HAT run with a compression log, preferring the paper's compression setting
    (c = 1.5, U(0,2) embeddings, Sec. 4.4), then the main variant; lowest seed first."""
    runs = [m for m in section.runs(HAT, main_only=False)
            if (m.record.monitoring or {}).get("hat", {}).get("compression")]
    if not runs:
        return None
    return min(runs, key=lambda m: (not (m.record.hparams.get("c") == 1.5
                                         and m.record.hparams.get("embedding_init") == "uniform"),
                                    not section.variants[m.record.run_id].main, m.record.seed))


def sgd_single_task_accuracy(section: Section, seed: int) -> dict[int, float]:
    """Fig. 7's triangles: per task, SGD's validation accuracy at its best (lowest) validation loss while
    learning that task (the weights the trainer restores), from the SGD run of the same seed."""
    runs = [m for m in section.runs("sgd") if m.record.seed == seed]
    if not runs:
        return {}
    best: dict[int, dict] = {}
    for h in runs[0].record.history:
        t = int(h["task"])
        if t not in best or h["valid_loss"] < best[t]["valid_loss"]:
            best[t] = h
    return {t: float(h["valid_acc"]) for t, h in best.items()}


# ---- figures ----------------------------------------------------------------------------------------

@dataclass
class FigureItem:
    """A figure the selected runs support (``figure`` set) or a one-line note saying why not."""

    name: str  # file stem
    caption: str
    section: tuple[str, str]  # Section.key
    figure: object | None = None  # matplotlib Figure
    note: str = ""
    png: bytes | None = None  # the rendered figure, for the HTML report


def _fmt_seeds(seeds) -> str:
    seeds = sorted(set(seeds))
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {','.join(map(str, seeds))}"


def build_figures(sections: Sequence[Section], all_variants: bool = False) -> Iterator[FigureItem]:
    """Every figure of the report, one at a time (the caller saves and closes each)."""
    colors = plots.strategy_colors(m.record.strategy for s in sections for m in s.metrics)
    for sec in sections:
        slug, title = sec.slug, sec.title
        # Fig. 3: rho^{<=t}
        rho = curves(sec, "rho", all_variants)
        name = f"fig3_rho_{slug}"
        cap = f"Fig. 3: average forgetting ratio ρ≤t after learning task t, {title}"
        if rho:
            yield FigureItem(name, cap + " (mean and +-1 std over seeds; n = seeds with references).", sec.key,
                             plots.curves_figure(rho, "forgetting ratio $\\rho^{\\leq t}$",
                                                 f"Forgetting ratio, {title}", colors))
        else:
            yield FigureItem(name, cap, sec.key, note=(
                f"no run has its Joint and Random references ({len(sec.missing)} launch command(s) above)"
                if sec.missing else "no strategy run besides the references"))
        # A^{<=t}: what the paper reports for the MNIST setups, and all that can be shown without refs
        acc = curves(sec, "acc", all_variants)
        yield FigureItem(f"fig3_acc_{slug}", f"Mean accuracy A≤t over tasks 1..t after learning task t, "
                         f"{title} (mean and +-1 std over seeds; Joint and Random dashed/dotted).", sec.key,
                         plots.curves_figure(acc, "mean accuracy $A^{\\leq t}$ (%)",
                                             f"Mean accuracy, {title}", colors, percent=True))
        # raw accuracy matrices
        names = sec.task_names()
        yield FigureItem(f"accuracy_matrices_{slug}", f"Test accuracy (%) after task t (rows) on task τ "
                         f"(columns), mean over seeds, {title}. Tasks: "
                         + ", ".join(f"{i + 1} = {n}" for i, n in enumerate(names)) + ".", sec.key,
                         plots.accuracy_matrices_figure(mean_matrices(sec, all_variants), names,
                                                        f"Accuracy matrices, {title}"))
        # Fig. 4: HAT's s_max x c grid
        grids = hat_grids(sec)
        if not grids:
            yield FigureItem(f"fig4_hat_grid_{slug}", "Fig. 4: HAT over s_max × c", sec.key,
                             note="no HAT sweep (needs finished hat runs at >= 2 (s_max, c) settings)")
        for k, g in enumerate(grids):
            what = ("forgetting ratio $\\rho^{\\leq T}$" if g.metric == "rho<=T"
                    else "mean accuracy $A^{\\leq T}$")
            note = "" if g.metric == "rho<=T" else (" ρ needs the Joint/Random references of every "
                                                     "cell's seed; showing A≤T instead.")
            yield FigureItem(f"fig4_hat_grid_{slug}" + (f"_{k + 1}" if len(grids) > 1 else ""),
                             f"Fig. 4: HAT's {g.metric.replace('<=', '≤')} over s_max × c{g.label}, {title}, "
                             f"{_fmt_seeds(g.seeds)} (mean over seeds per cell).{note}", sec.key,
                             plots.hat_grid_figure(g.values, g.s_max, g.c, what,
                                                   f"HAT{g.label}, {title}, {_fmt_seeds(g.seeds)}", g.counts))
        # Figs. 5-6: HAT's monitoring (main variant, lowest seed); Fig. 7 prefers the compression setting
        monitored = hat_monitored(sec)
        if not monitored:
            why = ("no HAT run" if not sec.runs(HAT, main_only=False) else "the HAT runs stored no monitoring")
            for fig, what in [("fig5_capacity", "Fig. 5: capacity usage"),
                              ("fig6_reuse", "Fig. 6: weight reuse"),
                              ("fig7_compression", "Fig. 7: accuracy vs compression")]:
                yield FigureItem(f"{fig}_{slug}", what, sec.key, note=why)
            continue
        m = monitored[0]
        mon, seed, label = m.record.monitoring["hat"], m.record.seed, _hat_label(m.record)
        thr = mon.get("threshold", 0.5)
        cap = mon.get("capacity") or []
        if cap:
            yield FigureItem(f"fig5_capacity_{slug}", f"Fig. 5: network capacity usage of {label} (share of "
                             f"weights whose cumulative mask a≤t is above {thr:g}) over training steps, "
                             f"{title}, seed {seed}. Dashed lines: task switches; task numbers on top.", sec.key,
                             plots.capacity_figure([p["step"] for p in cap], [p["task"] for p in cap],
                                                   [p["usage"] for p in cap],
                                                   f"Capacity usage, {label}, {title}, seed {seed}"))
        else:
            yield FigureItem(f"fig5_capacity_{slug}", "Fig. 5", sec.key,
                             note="HAT monitoring has no capacity log")
        reuse = mon.get("reuse")
        if reuse and len(reuse) > 1:
            yield FigureItem(f"fig6_reuse_{slug}", f"Fig. 6: percentage of task t_i's weights (mask above "
                             f"{thr:g}) also active for the later task t_j, {label}, {title}, seed {seed}.",
                             sec.key, plots.reuse_figure(reuse, _run_task_names(m.record),
                                                       f"Weight reuse, {label}, {title}, seed {seed}"))
        else:
            yield FigureItem(f"fig6_reuse_{slug}", "Fig. 6", sec.key,
                             note="weight reuse needs >= 2 tasks of HAT monitoring")
        mc = hat_compression_run(sec)
        if mc is None:
            yield FigureItem(f"fig7_compression_{slug}", "Fig. 7", sec.key,
                             note="HAT monitoring has no per-epoch compression log")
            continue
        seed, label, hp = mc.record.seed, _hat_label(mc.record), mc.record.hparams
        sgd = sgd_single_task_accuracy(sec, seed)
        paper = hp.get("c") == 1.5 and hp.get("embedding_init") == "uniform"
        yield FigureItem(
            f"fig7_compression_{slug}", f"Fig. 7: validation accuracy against compression (share of weights "
            f"in the task's own mask above {thr:g}), a dot per epoch, {label}, {title}, seed {seed}; "
            + ("triangles: SGD's best-epoch validation accuracy (no compression). " if sgd else
               "no SGD run of this seed for the uncompressed reference. ")
            + ("" if paper else "The paper's Fig. 7 uses c = 1.5 and U(0,2) embeddings "
               "(--hp c=1.5 --hp embedding_init=uniform); this run has c = "
               f"{hp.get('c', '?')}, embedding_init = {hp.get('embedding_init', '?')}."),
            sec.key, plots.compression_figure(mc.record.monitoring["hat"]["compression"],
                                            _run_task_names(mc.record),
                                            f"Accuracy vs compression, {label}, {title}, seed {seed}", sgd))


def _hat_label(r: RunRecord) -> str:
    hp = r.hparams
    return "HAT" + (" (" + ", ".join(f"{k}={hp[k]:g}" for k in GRID_KEYS) + ")"
                    if all(isinstance(hp.get(k), (int, float)) for k in GRID_KEYS) else "")


def _run_task_names(r: RunRecord) -> list[str]:
    """This run's task names in its training order (the mixture's order depends on the seed)."""
    names = [t.get("name", f"task {i + 1}") for i, t in enumerate((r.data or {}).get("tasks", []))]
    return names if len(names) == r.n_tasks else [f"task {i + 1}" for i in range(r.n_tasks)]


# ---- the command ------------------------------------------------------------------------------------

@dataclass
class Report:
    records: list[RunRecord]  # selected, failed ones included
    sections: list[Section]
    table: pd.DataFrame
    filters: dict[str, object] = field(default_factory=dict)

    @property
    def missing(self) -> list[str]:
        return sorted({c for s in self.sections for c in s.missing})


def build_report(records: Sequence[RunRecord], all_variants: bool = False,
                 filters: dict[str, object] | None = None, store: str | None = None) -> Report:
    sections = analyse(records, store)
    metrics = [m for s in sections for m in s.metrics]
    return Report(list(records), sections, rho_table(metrics, all_variants=all_variants),
                  dict(filters or {}, all_variants=all_variants))


def write_tables(rep: Report, directory: str | Path, all_variants: bool = False) -> None:
    """Table 1 as table1.md, table1.csv and table1.tex, and the mean accuracy matrices as markdown."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "table1.md").write_text(format_markdown(rep.table) + "\n")
    (directory / "table1.csv").write_text(rep.table.to_csv(index=False))
    (directory / "table1.tex").write_text(format_latex(rep.table) + "\n")
    blocks = [f"## {label} on {sec.title}, mean accuracy (%) over {n} seed(s)\n\n"
              f"{format_accuracy_matrix(mean)}\n"
              for sec in rep.sections for label, _s, mean, n in mean_matrices(sec, all_variants)]
    (directory / "accuracy_matrices.md").write_text("\n".join(blocks))


@click.command()
@click.option("--store", default=DEFAULT_STORE, show_default=True)
@click.option("--scenario", "scenarios", multiple=True, help="Only these scenarios.")
@click.option("--strategy", "strategies", multiple=True, help="Only these strategies (Joint/Random are kept).")
@click.option("--seeds", help="Only these seeds, e.g. 0,1,2.")
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag (Joint/Random are kept).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of markdown.")
@click.option("--latex", "as_latex", is_flag=True, help="LaTeX (booktabs) instead of markdown.")
@click.option("--matrices", is_flag=True, help="Also print the mean accuracy matrix per strategy.")
@click.option("--all-variants", is_flag=True,
              help="Show every hyperparameter setting of a strategy (default: its main one).")
@click.option("--figures", "figures_dir", type=click.Path(file_okay=False),
              help="Write every supported figure here as PNG and PDF.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Write one self-contained HTML report (tables, figures, run metadata).")
@click.option("--paper", is_flag=True, help="Also print the paper's numbers beside ours (cl_bench.paper).")
def report_command(store, scenarios, strategies, seeds, tags, as_csv, as_latex, matrices, all_variants,
                   figures_dir, html_path, paper):
    """Table 1 (rho<=2, rho<=T per strategy, mean (std) [95% CI] over seeds); with --figures/--html
    also Figs. 3-7 and the accuracy matrices."""
    try:
        records = Store(store).query()
    except StoreError as e:
        raise click.ClickException(str(e))
    try:
        seed_set = {int(s) for s in seeds.split(",")} if seeds else None
    except ValueError:
        raise click.BadParameter(f"--seeds takes integers separated by commas, got {seeds!r}")
    keep = select_records(records, scenarios, strategies, seed_set, tags)
    filters = {"store": str(store), "scenario": list(scenarios), "strategy": list(strategies),
               "seeds": sorted(seed_set) if seed_set else [], "tag": list(tags)}
    rep = build_report(keep, all_variants, filters, store)
    if rep.missing:
        click.echo(str(MissingReferences(rep.missing)), err=True)
    for sec in rep.sections:
        for note in sec.notes:
            click.echo(f"{sec.title}: {note}", err=True)
        if sec.hidden() and not all_variants:
            click.echo(f"{sec.title}: strategies run under several settings: {'; '.join(sec.hidden())} "
                       f"(--all-variants shows them all)", err=True)
    if as_csv:
        click.echo(rep.table.to_csv(index=False), nl=False)
    elif as_latex:
        click.echo(format_latex(rep.table))
    else:
        click.echo(format_markdown(rep.table))
    if paper and not rep.table.empty:
        from cl_bench.paper import format_comparison
        click.echo("\n" + format_comparison(rep.table))
    if matrices:
        for sec in rep.sections:
            for label, _strategy, mean, n in mean_matrices(sec, all_variants):
                click.echo(f"\n{label} on {sec.title}, mean accuracy (%) over {n} seed(s):")
                click.echo(format_accuracy_matrix(mean))
    if figures_dir or html_path:
        items = []
        for item in build_figures(rep.sections, all_variants):
            if item.figure is None:
                click.echo(f"skipped {item.name}: {item.note}", err=True)
            else:
                png = plots.png_bytes(item.figure, close=False) if html_path else None
                if figures_dir:
                    paths = plots.save_figure(item.figure, figures_dir, item.name)
                    click.echo(f"wrote {paths[0]} (+ .pdf)", err=True)
                else:
                    plots.plt.close(item.figure)
                item.figure, item.png = None, png
            items.append(item)
        if figures_dir:
            write_tables(rep, figures_dir, all_variants)
            click.echo(f"wrote {figures_dir}/table1.{{md,csv,tex}} and accuracy_matrices.md", err=True)
        if html_path:
            from cl_bench.html_report import write_html
            write_html(rep, items, html_path)
            click.echo(f"wrote {html_path}", err=True)
