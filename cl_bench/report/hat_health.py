"""HAT's health, from its stored monitoring: did its attention masks learn, and how much capacity did it use.

HAT (0.2.0 on) records after each task the share of units per layer whose binarised mask differs from
their random initial state (``monitoring["hat"]["mask_learning"]["moved"]``, computed with
cl_bench.strategies.hat_mask_learning) and the capacity used (``...["capacity"]``). Where the masks barely moved
(< ``NOT_LEARNED_BELOW`` of the units on average), HAT's row measures close-to-random fixed masks rather
than learned ones, and the report says so beside the row, in plain words. Runs made before 0.2.0 have
no such record: the report says "not measured" and gives what the older monitoring shows (the share of
units each task's mask keeps, and the capacity trace).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cl_bench.report.grouping import Section
from cl_bench.store import RunRecord
from cl_bench.strategies.hat_mask_learning import NOT_LEARNED_BELOW, units_weighted

HAT = "hat"


@dataclass
class HatHealth:
    """One HAT run's mask learning and capacity, per task (None where not recorded)."""

    run_id: str
    seed: int
    moved: list[float] | None  # per task: share of units (all layers) whose mask left its initial state
    capacity: list[float] | None  # per task: share of weights held by a^{<=t} after the task
    kept: tuple[float, float] | None  # (min, max) share of a layer's units a task's mask keeps
    embedding_init: str

    @property
    def measured(self) -> bool:
        return self.moved is not None

    @property
    def learned(self) -> bool | None:
        return None if self.moved is None else sum(self.moved) / len(self.moved) >= NOT_LEARNED_BELOW


def run_health(r: RunRecord) -> HatHealth | None:
    """The health of a HAT run from its monitoring; None when it stored no HAT monitoring."""
    mon = (r.monitoring or {}).get("hat")
    if not mon:
        return None
    units = list(mon.get("units") or [])
    learning = mon.get("mask_learning") or {}
    moved = learning.get("moved")
    if moved is not None:
        moved = [
            units_weighted(per_layer, units) if isinstance(per_layer, list) else float(per_layer) for per_layer in moved
        ]
    capacity = learning.get("capacity")
    if capacity is None and mon.get("capacity"):  # older runs: the trace's last point of each task
        last: dict[int, float] = {}
        for p in mon["capacity"]:
            last[int(p["task"])] = float(p["usage"])
        capacity = [last[t] for t in sorted(last)]
    sizes = mon.get("mask_sizes") or []
    shares = [n / u for task in sizes for n, u in zip(task, units) if u]
    kept = (min(shares), max(shares)) if shares else None
    return HatHealth(r.run_id, r.seed, moved or None, capacity, kept, str(r.hparams.get("embedding_init", "normal")))


def section_health(section: Section, all_variants: bool = False) -> list[HatHealth]:
    """The health of the HAT runs a section shows (its main variant, or all with ``all_variants``)."""
    out = [run_health(m.record) for m in section.runs(HAT, main_only=not all_variants)]
    return sorted((h for h in out if h is not None), key=lambda h: (h.seed, h.run_id))


def not_learned(section: Section, all_variants: bool = False) -> set[str]:
    """The labels (Variant.label) of the HAT variants shown whose measured masks did not learn: their
    rows are flagged in the tables."""
    by_label: dict[str, list[HatHealth]] = {}
    for m in section.runs(HAT, main_only=not all_variants):
        h = run_health(m.record)
        if h is not None and h.measured:
            by_label.setdefault(section.variants[m.record.run_id].label, []).append(h)
    return {
        label
        for label, hs in by_label.items()
        if sum(x for h in hs for x in h.moved) / sum(len(h.moved) for h in hs) < NOT_LEARNED_BELOW
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if 0 < 100 * x < 0.5 else f"{100 * x:.0f}%"  # never "0%" for a few units


def _range(values: Sequence[float]) -> str:
    lo, hi = min(values), max(values)
    return _pct(lo) if _pct(lo) == _pct(hi) else f"{_pct(lo)[:-1]}-{_pct(hi)}"


def health_note(health: Sequence[HatHealth]) -> str | None:
    """One plain-words line about HAT's masks for the runs given (None when there is no HAT monitoring)."""
    if not health:
        return None
    who = f"seed {health[0].seed}" if len(health) == 1 else f"{len(health)} runs"
    caps = [h.capacity[-1] for h in health if h.capacity]
    capacity = f" Capacity used after the last task: {_range(caps)} of the masked layers' weights." if caps else ""
    measured = [h for h in health if h.measured]
    if not measured:
        kept = [v for h in health if h.kept for v in h.kept]
        start = " (N(0,1) embeddings start at 50%)" if all(h.embedding_init == "normal" for h in health) else ""
        keeps = f" Each task's masks keep {_range(kept)} of a layer's units{start}." if kept else ""
        return f"HAT ({who}): mask learning not measured (run made before 0.2.0).{keeps}{capacity}"
    moved = [x for h in measured for x in h.moved]
    mean = sum(moved) / len(moved)
    part = "" if len(measured) == len(health) else f" ({len(measured)} of {len(health)} runs measured)"
    if mean < NOT_LEARNED_BELOW:
        return (
            f"HAT ({who}){part}: its masks have not learned: on average only {_pct(mean)} of the units "
            f"({_range(moved)} per task) left their random initial on/off state (below "
            f"{_pct(NOT_LEARNED_BELOW)}). Its row shows close-to-random fixed masks, not HAT's learned "
            f"ones (typically: too few training steps per task for the embeddings to move).{capacity}"
        )
    return (
        f"HAT ({who}){part}: masks learned: on average {_pct(mean)} of the units ({_range(moved)} per "
        f"task) left their random initial on/off state.{capacity}"
    )
