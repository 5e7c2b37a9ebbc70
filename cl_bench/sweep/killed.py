"""What a sweep stores when a worker process dies under a run (killed by the OS, out of memory): an
attempt the first time, and after a retry that dies too, the run as failed, so later sweeps skip it."""

from __future__ import annotations

import contextlib
import dataclasses
import time

from cl_bench.runner import code_version
from cl_bench.store import RunRecord
from cl_bench.sweep.plan import PlanItem
from cl_bench.sweep.progress import Outcome, Scheduler, run_label


def record_killed(scheduler: Scheduler, item: PlanItem) -> None:
    """A worker died while running ``item``: kept as an attempt, so `cl-bench status` shows it."""
    with contextlib.suppress(Exception):  # the record of a death must not stop the sweep
        scheduler.store.record_attempt(
            scheduler.run_id_for(item),
            "killed",
            "its worker process died (killed by the OS: out of memory?)",
            finished=time.time(),
            code_version=code_version(),
        )


def store_killed(scheduler: Scheduler, item: PlanItem) -> Outcome:
    """A run that killed its worker twice is stored as failed, so later sweeps skip it (a finished
    result of the same run, made with other data or strategy file, stays: Store.save)."""
    c = item.config
    run_id = scheduler.run_id_for(item)
    msg = (
        "worker process died twice while running this configuration (killed by the OS: out of "
        "memory?); run it alone with `cl-bench run` to see why, or `cl-bench sweep --retry-failed`"
    )
    now = time.time()
    scheduler.store.save(
        RunRecord(
            run_id,
            c.strategy,
            c.scenario,
            c.seed,
            item.point.resolved or c.resolved_hparams(),
            dataclasses.asdict(c.protocol),
            c.scenario_options,
            "failed",
            tags=list(c.tags),
            error=msg,
            code_version=code_version(),
            started=now,
            finished=now,
            wall_s=0.0,
        )
    )
    return Outcome(run_id, run_label(c), "failed", msg)
