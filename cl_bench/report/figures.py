"""Every figure of the report, from a section's runs: the data (per-t curves, mean accuracy matrices) and
``build_figures``, which draws each figure the runs support (cl_bench.report.plots) with its caption, or
says in one line why it cannot (``FigureItem.note``).

Fig. 3 (rho^{<=t} and A^{<=t} curves) and the accuracy matrices show each strategy's main variant (all
with ``all_variants``); Figs. 4-7 are HAT's (their data in hat_figures.py), and where the section has
PackNet or WSN runs with monitoring, two companion figures draw their Figs. 5-6 quantities beside HAT's
(``fig5_capacity_peers``, ``fig6_reuse_peers``). Every title carries the
section (scenario, options, epoch cap) and a line with its scale; every caption ends with the scale in
words and whether it is the paper's protocol (provenance.Scale).
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from cl_bench.metrics import summarize
from cl_bench.report.grouping import Section, Variant
from cl_bench.report.hat_figures import (
    HAT,
    ISOLATION_PEERS,
    IsolationSeries,
    hat_compression_run,
    hat_grids,
    hat_label,
    hat_monitored,
    isolation_series,
    sgd_single_task_accuracy,
)
from cl_bench.report.peer_plots import capacity_by_task_figure, reuse_panels_figure
from cl_bench.report.plots import (
    BANDS,
    Curve,
    accuracy_matrices_figure,
    capacity_figure,
    compression_figure,
    curves_figure,
    hat_grid_figure,
    reuse_figure,
)
from cl_bench.report.provenance import run_task_names
from cl_bench.report.style import strategy_colors, strategy_label
from cl_bench.results import REFERENCES, RunMetrics


def _by_variant(ms: Sequence[RunMetrics], var: dict[str, Variant]) -> dict[Variant, list[RunMetrics]]:
    out: dict[Variant, list[RunMetrics]] = {}
    for m in ms:
        out.setdefault(var[m.record.run_id], []).append(m)
    return out


def curves(section: Section, kind: str = "rho", all_variants: bool = False) -> list[Curve]:
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
        ci = np.array([summarize(stack[:, t]).ci95 for t in range(stack.shape[1])])
        out.append(Curve(v.display(all_variants), v.strategy, stack.mean(axis=0), stack.std(axis=0), len(values), ci))
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


def _titled(what: str, sec: Section) -> str:
    """A figure's title: what it shows, the section, and a second (wrapped) line with its scale."""
    return f"{what}, {sec.title}\n" + "\n".join(textwrap.wrap(sec.scale().short(), 110))


def _scaled(caption: str, sec: Section) -> str:
    """A caption ending with the section's scale and the verdict on the paper's protocol."""
    return f"{caption.rstrip()} {sec.scale().text()}"


def build_figures(sections: Sequence[Section], all_variants: bool = False, band: str = "std") -> Iterator[FigureItem]:
    """Every figure of the report, one at a time (the caller saves and closes each); Fig. 3's bands are
    +-1 std (``band='std'``) or the 95% t-interval (``'ci95'``)."""
    if band not in BANDS:
        raise ValueError(f"band must be one of {', '.join(BANDS)}, got {band!r}")
    colors = strategy_colors(m.record.strategy for s in sections for m in s.metrics)
    for sec in sections:
        for item in [*_curve_items(sec, colors, all_variants, band), *_grid_items(sec), *_monitoring_items(sec)]:
            item.caption = _scaled(item.caption, sec)
            yield item


def _curve_items(sec: Section, colors: dict[str, str], all_variants: bool, band: str) -> Iterator[FigureItem]:
    """Fig. 3 (rho^{<=t}), the A^{<=t} curves and the raw accuracy matrices."""
    slug, title = sec.slug, sec.title
    spread = "mean and +-1 std (ddof 0) over seeds" if band == "std" else "mean and 95% Student-t interval over seeds"
    rho = curves(sec, "rho", all_variants)
    name = f"fig3_rho_{slug}"
    cap = f"Fig. 3: average forgetting ratio ρ≤t after learning task t, {title}"
    if rho:
        yield FigureItem(
            name,
            cap + f" ({spread}; n = seeds with matching references).",
            sec.key,
            curves_figure(
                rho, "forgetting ratio $\\rho^{\\leq t}$", _titled("Forgetting ratio", sec), colors, band=band
            ),
        )
    else:
        yield FigureItem(
            name,
            cap,
            sec.key,
            note=(
                f"no run has its matching Joint and Random references ({len(sec.missing)} launch command(s) above)"
                if sec.missing
                else "no strategy run besides the references"
            ),
        )
    # A^{<=t}: what the paper reports for the MNIST setups, and all that can be shown without refs
    acc = curves(sec, "acc", all_variants)
    yield FigureItem(
        f"fig3_acc_{slug}",
        f"Mean accuracy A≤t over tasks 1..t after learning task t, {title} ({spread}; Joint and Random dashed/dotted).",
        sec.key,
        curves_figure(
            acc, "mean accuracy $A^{\\leq t}$ (%)", _titled("Mean accuracy", sec), colors, percent=True, band=band
        ),
    )
    names = sec.task_names()
    yield FigureItem(
        f"accuracy_matrices_{slug}",
        f"Test accuracy (%) after task t (rows) on task τ "
        f"(columns), mean over seeds, {title}. Tasks: "
        + ", ".join(f"{i + 1} = {n}" for i, n in enumerate(names))
        + ".",
        sec.key,
        accuracy_matrices_figure(mean_matrices(sec, all_variants), names, _titled("Accuracy matrices", sec)),
    )


def _grid_items(sec: Section) -> Iterator[FigureItem]:
    """Fig. 4: HAT's s_max x c grid, one figure per grid."""
    slug, title = sec.slug, sec.title
    grids = hat_grids(sec)
    if not grids:
        yield FigureItem(
            f"fig4_hat_grid_{slug}",
            "Fig. 4: HAT over s_max × c",
            sec.key,
            note="no HAT sweep (needs finished hat runs at >= 2 (s_max, c) settings)",
        )
    for k, g in enumerate(grids):
        what = "forgetting ratio $\\rho^{\\leq T}$" if g.metric == "rho<=T" else "mean accuracy $A^{\\leq T}$"
        note = (
            ""
            if g.metric == "rho<=T"
            else (" ρ needs the Joint/Random references of every cell's seed; showing A≤T instead.")
        )
        yield FigureItem(
            f"fig4_hat_grid_{slug}" + (f"_{k + 1}" if len(grids) > 1 else ""),
            f"Fig. 4: HAT's {g.metric.replace('<=', '≤')} over s_max × c{g.label}, {title}, "
            f"{_fmt_seeds(g.seeds)} (mean over seeds per cell).{note}",
            sec.key,
            hat_grid_figure(
                g.values, g.s_max, g.c, what, _titled(f"HAT{g.label}, {_fmt_seeds(g.seeds)}", sec), g.counts
            ),
        )


def _monitoring_items(sec: Section) -> Iterator[FigureItem]:
    """Figs. 5-7 of HAT, then its peers' Figs. 5-6 beside HAT's (drawn even where HAT is not)."""
    yield from _hat_monitoring_items(sec)
    yield from _peer_items(sec)


def _hat_monitoring_items(sec: Section) -> Iterator[FigureItem]:
    """Figs. 5-6: HAT's monitoring (main variant, lowest seed); Fig. 7 prefers the compression setting."""
    slug, title = sec.slug, sec.title
    monitored = hat_monitored(sec)
    if not monitored:
        why = "no HAT run" if not sec.runs(HAT, main_only=False) else "the HAT runs stored no monitoring"
        for fig, what in [
            ("fig5_capacity", "Fig. 5: capacity usage"),
            ("fig6_reuse", "Fig. 6: weight reuse"),
            ("fig7_compression", "Fig. 7: accuracy vs compression"),
        ]:
            yield FigureItem(f"{fig}_{slug}", what, sec.key, note=why)
        return
    m = monitored[0]
    mon, seed, label = m.record.monitoring["hat"], m.record.seed, hat_label(m.record)
    thr = mon.get("threshold", 0.5)
    cap = mon.get("capacity") or []
    if cap:
        yield FigureItem(
            f"fig5_capacity_{slug}",
            f"Fig. 5: network capacity usage of {label} (share of "
            f"weights whose cumulative mask a≤t is above {thr:g}) over training steps, "
            f"{title}, seed {seed}. Dashed lines: task switches; task numbers on top.",
            sec.key,
            capacity_figure(
                [p["step"] for p in cap],
                [p["task"] for p in cap],
                [p["usage"] for p in cap],
                _titled(f"Capacity usage, {label}, seed {seed}", sec),
            ),
        )
    else:
        yield FigureItem(f"fig5_capacity_{slug}", "Fig. 5", sec.key, note="HAT monitoring has no capacity log")
    reuse = mon.get("reuse")
    if reuse and len(reuse) > 1:
        yield FigureItem(
            f"fig6_reuse_{slug}",
            f"Fig. 6: percentage of task t_i's weights (mask above "
            f"{thr:g}) also active for the later task t_j, {label}, {title}, seed {seed}.",
            sec.key,
            reuse_figure(reuse, run_task_names(m.record), _titled(f"Weight reuse, {label}, seed {seed}", sec)),
        )
    else:
        yield FigureItem(
            f"fig6_reuse_{slug}", "Fig. 6", sec.key, note="weight reuse needs >= 2 tasks of HAT monitoring"
        )
    mc = hat_compression_run(sec)
    if mc is None:
        yield FigureItem(
            f"fig7_compression_{slug}", "Fig. 7", sec.key, note="HAT monitoring has no per-epoch compression log"
        )
        return
    seed, label, hp = mc.record.seed, hat_label(mc.record), mc.record.hparams
    sgd = sgd_single_task_accuracy(sec, seed)
    paper = hp.get("c") == 1.5 and hp.get("embedding_init") == "uniform"
    yield FigureItem(
        f"fig7_compression_{slug}",
        f"Fig. 7: validation accuracy against compression (share of weights "
        f"in the task's own mask above {thr:g}), a dot per epoch, {label}, {title}, seed {seed}; "
        + (
            "triangles: SGD's best-epoch validation accuracy (no compression). "
            if sgd
            else "no SGD run of this seed for the uncompressed reference. "
        )
        + (
            ""
            if paper
            else "The paper's Fig. 7 uses c = 1.5 and U(0,2) embeddings "
            "(--hp c=1.5 --hp embedding_init=uniform); this run has c = "
            f"{hp.get('c', '?')}, embedding_init = {hp.get('embedding_init', '?')}."
        ),
        sec.key,
        compression_figure(
            mc.record.monitoring["hat"]["compression"],
            run_task_names(mc.record),
            _titled(f"Accuracy vs compression, {label}, seed {seed}", sec),
            sgd,
        ),
    )


# What each peer's capacity and reuse count, for the captions (strategies/packnet.py, strategies/wsn.py).
_PEER_CAPACITY = {
    "packnet": "the weights owned by tasks ≤ t",
    "wsn": "the union of the subnetworks of tasks ≤ t",
}
_PEER_REUSE = {
    "packnet": "task t_j uses every weight of the tasks before it, so PackNet's reuse is 100% by construction",
    "wsn": "the share of task t_i's subnetwork inside task t_j's",
}


def _series_label(s: IsolationSeries) -> str:
    """'HAT (s_max=400, c=0.75), seed 0' or 'PackNet (not in the paper), seed 0'."""
    name = hat_label(s.record) if s.strategy == HAT else f"{strategy_label(s.strategy)} (not in the paper)"
    return f"{name}, seed {s.record.seed}"


def _capacity_words(s: IsolationSeries) -> str:
    """What one series of the per-task capacity figure is, for its caption."""
    if s.strategy != HAT:
        extra = ""
        if s.strategy == "packnet" and not s.record.hparams.get("prune_last", False):
            extra = " (the last task is not pruned: it keeps every free weight)"
        return f"{_series_label(s)}: {_PEER_CAPACITY.get(s.strategy, 'the weights in use')}{extra}"
    thr = s.record.monitoring["hat"].get("threshold", 0.5)
    if s.capacity_exact:
        return f"{_series_label(s)}: weights whose cumulative mask a≤t is above {thr:g} once task t is learned"
    return (
        f"{_series_label(s)}: the last sample of task t in its Fig. 5 trace (cumulative mask above {thr:g} "
        "during training; the run predates the stored post-task value)"
    )


def _task_order_words(series: Sequence[IsolationSeries]) -> str:
    """The tasks behind t = 1..T: once when every run has the same order, else per run (the mixture's
    order depends on the seed, and the series may be of different seeds)."""
    orders = {_series_label(s): run_task_names(s.record) for s in series}

    def listed(names: list[str]) -> str:
        return ", ".join(f"{i + 1} = {n}" for i, n in enumerate(names))

    if len({tuple(o) for o in orders.values()}) == 1:
        return f"Tasks: {listed(next(iter(orders.values())))}."
    return "Tasks in each run's order: " + "; ".join(f"{who}: {listed(o)}" for who, o in orders.items()) + "."


def _peer_items(sec: Section) -> Iterator[FigureItem]:
    """Figs. 5-6 of HAT's weight-mask peers (PackNet, WSN) beside HAT's: capacity after each task and
    weight reuse, one run each (lowest seed); nothing when the section has no peer run."""
    slug, title = sec.slug, sec.title
    series = isolation_series(sec)
    if not series:
        if any(sec.runs(name) for name in ISOLATION_PEERS):
            for fig, what in [("fig5_capacity_peers", "Fig. 5"), ("fig6_reuse_peers", "Fig. 6")]:
                yield FigureItem(
                    f"{fig}_{slug}",
                    f"{what} beside HAT's peers",
                    sec.key,
                    note="the PackNet/WSN runs stored no monitoring",
                )
        return
    has_hat = series[0].strategy == HAT
    names = " and ".join(strategy_label(s.strategy) for s in series if s.strategy != HAT)
    names += " beside HAT" if has_hat else ""
    absent = "" if has_hat else " No HAT run of this section stored its monitoring."
    usage = [s for s in series if s.capacity]
    yield FigureItem(
        f"fig5_capacity_peers_{slug}",
        "Fig. 5 beside HAT's peers: capacity usage, the share (%, 0-100) of the masked layers' weights (the "
        "base net's conv and fc layers; not the heads, not the biases) in use after learning task t, "
        f"one marker per task, {title}. "
        + "; ".join(_capacity_words(s) for s in usage)
        + f". {_task_order_words(usage)}{absent}",
        sec.key,
        capacity_by_task_figure(
            [(s.strategy, _series_label(s), s.capacity) for s in usage],
            _titled(f"Capacity after each task, {names}", sec),
        ),
    )
    reused = [s for s in series if len(s.reuse) > 1]
    if not reused:
        yield FigureItem(f"fig6_reuse_peers_{slug}", "Fig. 6", sec.key, note="weight reuse needs >= 2 tasks")
        return
    words = "; ".join(
        f"{_series_label(s)}: "
        + (
            f"mask above {s.record.monitoring['hat'].get('threshold', 0.5):g}"
            if s.strategy == HAT
            else _PEER_REUSE.get(s.strategy, "weights of both tasks")
        )
        for s in reused
    )
    yield FigureItem(
        f"fig6_reuse_peers_{slug}",
        "Fig. 6 beside HAT's peers: percentage (0-100%, one colour scale for every panel) of task t_i's weights "
        f"also used by the later task t_j, a panel per strategy, {title}. {words}. {_task_order_words(reused)}"
        f"{absent}",
        sec.key,
        reuse_panels_figure(
            [(_series_label(s), s.reuse) for s in reused],
            _titled(f"Weight reuse, {names}", sec),
        ),
    )
