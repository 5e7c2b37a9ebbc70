"""The local backend of ``cl-bench sweep``: worker processes on this machine, one per worker slot.

The slots come from cl_bench.sweep.placement: ``--workers`` x ``--threads`` on one device (the default),
or ``--devices`` x ``--workers-per-device``. Each slot is one spawned process, pinned to its slot's
device (``torch.cuda.set_device`` for a GPU) and thread count, that runs every run handed to it there;
the driver hands each run to a free slot, in slot order, so runs spread over the devices. On CPU the
default is one single-threaded worker per core: on the 2-core reference machine, ``--measure-split``
(``measure_split``) on examples/sweeps/measure_split.yaml gave 2 x 1 threads 959 runs/hour against 536
for 1 x 2 (runs of small nets gain little from a second intra-op thread); ``--workers 0`` runs
everything in the calling process (debuggers, tests). Each worker writes its run's record to the store
itself, and makes the sweep's file and dashboard loggers (cl_bench.loggers) in its own process. A
worker killed by the OS is replaced (the other workers go on) and its run retried once; a second death
stores the run as failed. A worker whose driver was killed (``kill -9``) exits by itself (watchdog),
even when the driver died while the worker was starting. The driver claims each run before handing it
to a worker (cl_bench.store.claims).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import multiprocessing as mp
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import torch

from cl_bench.loggers import Logger, MultiLogger, log_dir, make_loggers
from cl_bench.registry import build_scenario
from cl_bench.runner import RunConfig, RunFailed, execute
from cl_bench.store import Store
from cl_bench.sweep.killed import record_killed, store_killed
from cl_bench.sweep.placement import Slot, place_workers
from cl_bench.sweep.plan import PlanItem, Sweep
from cl_bench.sweep.progress import Outcome, Progress, Scheduler, run_label
from cl_bench.sweep.slurm_backend import job_imports

_EVENTS = None  # in a worker: the queue of progress events to the driver
_IN_WORKER = False  # True in the processes of the local pool
_SLOT: Slot | None = None  # the slot this process works for (also set while an inline sweep runs)
STARTS = 3  # a slot whose worker dies this many times before starting a run stops the sweep


class WorkerStartError(RuntimeError):
    """A worker process keeps dying before it runs anything (e.g. its device cannot be used)."""


# ---- in a worker ---------------------------------------------------------------------------------------
def worker_slot() -> Slot | None:
    """The slot of the sweep worker running in this process: its device, threads and label; None
    outside a local sweep. Code run by a sweep (a strategy) can read where it was placed."""
    return _SLOT


def _pin(slot: Slot) -> None:
    """This process works for ``slot``: its torch threads, and its GPU as the current CUDA device."""
    torch.set_num_threads(slot.threads)
    if slot.cuda_index is not None:  # kernels and allocations without an explicit device go there too
        torch.cuda.set_device(slot.cuda_index)


def _worker_init(slot: Slot, events, driver: int, modules: Sequence[str] = (), paths: Sequence[str] = ()) -> None:
    global _EVENTS, _IN_WORKER, _SLOT
    sys.path[:0] = [p for p in paths if p not in sys.path]
    for module in modules:  # scenarios and strategies the driver registered outside cl-bench (scripts, tests)
        importlib.import_module(module)
    _pin(slot)
    _EVENTS, _IN_WORKER, _SLOT = events, True, slot

    def orphaned() -> bool:
        # ``driver`` is the driver's pid, read by the driver before it spawned us: reading os.getppid()
        # here would be too late if the driver died while we were starting (we would watch pid 1)
        return os.getppid() != driver

    if orphaned():
        os._exit(1)

    def watchdog():  # the driver was killed (kill -9): do not live on as an orphan
        while True:
            time.sleep(0.5)
            if orphaned():
                os._exit(1)

    threading.Thread(target=watchdog, daemon=True).start()


def _emit(*event) -> None:
    with contextlib.suppress(Exception):  # progress is best effort
        _EVENTS.put_nowait((_SLOT.index if _SLOT is not None else 0, os.getpid(), *event))


def _worker_run(
    config: RunConfig, store_path: str, device: str, data_root, checkpoints: bool, loggers: Sequence[str] = ()
) -> Outcome:
    """Run one configuration in a worker; the worker writes the record to the store itself, and the
    run's logs beside it (``loggers``: names of cl_bench.loggers, made here, in the worker). The driver
    holds the configuration's claim."""
    label = run_label(config)
    _emit("start", config.run_id(), label)
    start, since = time.perf_counter(), time.time()
    logger: Logger | None = None
    try:
        logger = MultiLogger([_WorkerEvents(config, label), *(make_loggers(loggers, log_dir(store_path)).loggers)])
        record = execute(
            config,
            Store(store_path),
            data_root=data_root,
            device=device,
            checkpoints=checkpoints,
            claimed=True,
            logger=logger,
        )
        if record.finished is not None and record.finished < since:  # found in the store: not run here
            return Outcome(record.run_id, label, "skipped", "finished in the store", time.perf_counter() - start)
        return Outcome(record.run_id, label, "finished", wall_s=time.perf_counter() - start)
    except RunFailed as e:
        kept = " (an earlier finished result of this run is kept)" if e.kept is not None else ""
        return Outcome(
            e.record.run_id, label, "failed", (e.record.error or "").splitlines()[0] + kept, time.perf_counter() - start
        )
    except Exception as e:  # noqa: BLE001 raised before the run existed (missing data, bad option): not stored,
        # so the next sweep tries again once the cause is fixed
        return Outcome(
            config.run_id(), label, "error", f"{type(e).__name__}: {e}".splitlines()[0], time.perf_counter() - start
        )
    except KeyboardInterrupt:
        if _IN_WORKER:  # stop now: else the worker would go on with a call already queued to it
            os._exit(130)  # the run is not stored; its checkpoint stays for the next sweep
        raise
    finally:
        if logger is not None:
            with contextlib.suppress(Exception):  # the run's outcome counts, not a log file's closing
                logger.close()
        _emit("end")


class _WorkerEvents(Logger):
    """The run's progress as events to the driver: each epoch (task and epoch of their caps) for the
    worker's status line, and a resume from a checkpoint for the sweep's log."""

    def __init__(self, config: RunConfig, label: str):
        self.label, self.n_tasks = label, len(config.scenario_options.get("tasks") or []) or None
        self.max_epochs = config.protocol.epochs

    def log_epoch(self, log):
        tasks = f"/{self.n_tasks}" if self.n_tasks else ""
        _emit(
            "epoch",
            f"{self.label} | task {log.task + 1}{tasks} epoch {log.epoch}/<={self.max_epochs} "
            f"val_acc {100 * log.valid_acc:.1f}",
        )

    def resumed(self, next_task: int, n_tasks: int) -> None:
        self.n_tasks = n_tasks
        _emit("resumed", self.label, next_task, n_tasks)


# ---- the driver ----------------------------------------------------------------------------------------
def run_local(
    scheduler: Scheduler,
    slots: Sequence[Slot],
    data_root,
    checkpoints: bool,
    progress: bool,
    loggers: Sequence[str] = (),
) -> list[Outcome]:
    """The scheduler's runs on one spawned process per slot (cl_bench.sweep.placement), each run on its
    slot's device. At most one run per slot is claimed at a time, so concurrent sweeps on one store
    share the work."""
    ctx = mp.get_context("spawn")  # fork after torch threads exist can deadlock; spawn is portable
    events = ctx.Queue()
    queue_ = scheduler.next_runs()
    ui = Progress(progress, [s.name for s in slots], scheduler.expected_total())
    store_path = str(scheduler.store.path)
    loggers = tuple(loggers)
    outcomes: list[Outcome] = []
    kills: dict[str, int] = {}  # run_id -> times a worker died while running it
    dead_starts = [0] * len(slots)  # per slot: worker deaths before it started the run handed to it
    running: dict[int, str] = {}  # slot -> run_id, from the workers' events
    worker_pids: set[int] = set()
    driver = os.getpid()  # read before any worker exists (its watchdog compares its parent with it)
    modules, paths = job_imports(scheduler.sweep, main_ok=True), [os.path.abspath(p or ".") for p in sys.path]

    def new_pool(slot: Slot) -> ProcessPoolExecutor:
        init = (slot, events, driver, modules, paths)
        return ProcessPoolExecutor(1, mp_context=ctx, initializer=_worker_init, initargs=init)

    def drain():
        _drain(events, worker_pids, running, ui)

    def finish(item: PlanItem, outcome: Outcome) -> None:
        scheduler.release(item)
        claimed.pop(item.run_id, None)
        outcomes.append(outcome)
        ui.done(outcome, scheduler.expected_total())

    pools = [new_pool(slot) for slot in slots]  # a process starts with its first run
    busy: dict[int, PlanItem] = {}  # slot -> its run
    futures: dict[Future, int] = {}  # -> slot
    claimed: dict[str, PlanItem] = {}  # by this sweep and not finished: running, or waiting for a retry
    try:
        while True:
            free = [s.index for s in slots if s.index not in busy]
            while queue_ and free:
                item = queue_.pop(0)
                if not _claimed(scheduler, item, outcomes, ui):
                    continue
                k = free.pop(0)
                busy[k] = claimed[item.run_id] = item
                futures[
                    pools[k].submit(
                        _worker_run, item.config, store_path, slots[k].device, data_root, checkpoints, loggers
                    )
                ] = k
            if not futures:
                queue_ = scheduler.next_runs()  # selections another process's runs may have decided
                if not queue_:
                    break
                continue
            done, _ = wait(list(futures), timeout=0.25, return_when=FIRST_COMPLETED)
            drain()
            died = False
            for fut in done:
                k = futures.pop(fut)
                item = busy.pop(k)
                outcome = _result(fut, item, slots[k])
                if outcome is None:  # this slot's worker was killed (out of memory, ...): replace it
                    died = True
                    retry = _worker_died(
                        scheduler, slots[k], item, pools, k, new_pool, drain, running, kills, dead_starts, ui
                    )
                    if retry:
                        queue_.insert(0, item)  # still claimed by this sweep
                    else:
                        finish(item, store_killed(scheduler, item))
                    continue
                finish(item, outcome)
            if done and not died:
                queue_ += scheduler.next_runs()  # selections decided by these runs release their seeds
    except BaseException as e:  # Ctrl-C, SIGTERM (cl_bench.sweep.Terminated) or an error: stop the workers
        _stop(pools, claimed.values(), scheduler, ui, worker_pids if isinstance(e, KeyboardInterrupt) else None)
        raise
    for pool in pools:
        pool.shutdown(wait=True)
    ui.close()
    return outcomes


def _claimed(scheduler: Scheduler, item: PlanItem, outcomes: list[Outcome], ui: Progress) -> bool:
    """Claim ``item`` for this sweep; False (and its Outcome reported) when another process has it."""
    refused = scheduler.claim(item)
    if refused is not None:
        outcomes.append(refused)
        ui.done(refused, scheduler.expected_total())
    return refused is None


def _drain(events, worker_pids: set[int], running: dict[int, str], ui: Progress) -> None:
    """The workers' progress events so far: to the display, and which slot runs what."""
    while True:
        try:
            slot, pid, kind, *args = events.get_nowait()
        except queue.Empty:
            return
        worker_pids.add(pid)
        if kind == "start":
            running[slot] = args[0]
        elif kind == "end":
            running.pop(slot, None)
        ui.event(slot, kind, *args)


def _result(fut: Future, item: PlanItem, slot: Slot) -> Outcome | None:
    """A finished call's Outcome; None when the slot's worker process died."""
    try:
        return dataclasses.replace(fut.result(), worker=slot.name)
    except BrokenProcessPool:
        return None
    except Exception as e:  # noqa: BLE001 not a run failure: e.g. the store could not be written
        return Outcome(item.run_id, run_label(item.config), "error", f"{type(e).__name__}: {e}", worker=slot.name)


def _interrupt_workers(worker_pids: set[int], ui: Progress) -> None:
    """Stop the runs in flight: a Ctrl-C in a terminal reached the workers already; `kill -INT <driver>`
    or SIGTERM did not."""
    ui.write(
        "interrupted: runs in flight stop; finished runs are in the store and each run in flight "
        "resumes from its last checkpointed task next time",
        always=True,
    )
    for pid in {p.pid for p in mp.active_children()} | worker_pids:
        try:
            os.kill(pid, signal.SIGINT)
        except OSError:
            pass


def _worker_died(
    scheduler: Scheduler,
    slot: Slot,
    item: PlanItem,
    pools: list[ProcessPoolExecutor],
    k: int,
    new_pool: Callable[[Slot], ProcessPoolExecutor],
    drain: Callable[[], None],
    running: dict[int, str],
    kills: dict[str, int],
    dead_starts: list[int],
    ui: Progress,
) -> bool:
    """Replace slot ``k``'s dead worker; True when ``item`` is to run again, False when it killed its
    worker twice (store it as failed). Raises when the slot's worker keeps dying before any run starts."""
    time.sleep(0.2)  # the dead worker's last events
    drain()
    started = running.pop(k, None) == item.run_id
    pools[k].shutdown(wait=True, cancel_futures=True)
    pools[k] = new_pool(slot)
    ui.reset_worker(k)
    if not started:
        dead_starts[k] += 1
        if dead_starts[k] >= STARTS:
            raise WorkerStartError(
                f"the sweep worker {slot.name} died {STARTS} times while starting, before "
                f"running anything (device {slot.device}: is it usable?)"
            )
        return True
    dead_starts[k] = 0
    kills[item.run_id] = kills.get(item.run_id, 0) + 1
    record_killed(scheduler, item)
    if kills[item.run_id] >= 2:  # retried once already
        return False
    ui.write(f"worker {slot.name} died while running {run_label(item.config)}; retrying once", always=True)
    return True


def _stop(
    pools: list[ProcessPoolExecutor],
    claimed: Iterable[PlanItem],
    scheduler: Scheduler,
    ui: Progress,
    interrupt: set[int] | None = None,
) -> None:
    """The sweep stops early: workers shut down (``interrupt``: the worker pids to interrupt first, on
    Ctrl-C or SIGTERM), the claims of its unfinished runs released."""
    if interrupt is not None:
        _interrupt_workers(interrupt, ui)
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)
    for item in claimed:
        with contextlib.suppress(Exception):
            scheduler.release(item)
    ui.close()


def run_inline(
    scheduler: Scheduler, slot: Slot, data_root, checkpoints: bool, progress: bool, loggers: Sequence[str] = ()
) -> list[Outcome]:
    """``--workers 0``: every run in this process, one after another (debuggers, tests), on ``slot``."""
    global _EVENTS, _SLOT
    previous = torch.get_num_threads()
    torch.set_num_threads(slot.threads)
    ui = Progress(progress, [slot.name], 0)
    events: queue.Queue = queue.Queue()
    saved = _EVENTS, _SLOT
    _EVENTS, _SLOT = events, slot
    outcomes: list[Outcome] = []
    try:
        while todo := scheduler.next_runs():
            for item in todo:
                ui.set_total(scheduler.expected_total())
                outcome = scheduler.claim(item)
                if outcome is None:
                    try:
                        outcome = _worker_run(
                            item.config, str(scheduler.store.path), slot.device, data_root, checkpoints, loggers
                        )
                        outcome = dataclasses.replace(outcome, worker=slot.name)
                    finally:
                        scheduler.release(item)
                while not events.empty():
                    index, _pid, kind, *args = events.get_nowait()
                    ui.event(index, kind, *args)
                outcomes.append(outcome)
                ui.done(outcome, scheduler.expected_total())
    finally:
        _EVENTS, _SLOT = saved
        torch.set_num_threads(previous)
        ui.close()
    return outcomes


# ---- choosing the split --------------------------------------------------------------------------------
def measure_split(
    sweep: Sweep, cores: int, device: str, data_root, echo: Callable[[str], Any] = print
) -> list[tuple[int, int, float]]:
    """Run the sweep once per split workers x threads = cores, each into a fresh store; runs/hour.
    ``echo`` reports each split's rate and the best one."""
    splits = [(w, cores // w) for w in range(1, cores + 1) if cores % w == 0]
    for cell in {(c.scenario, json.dumps(c.options, sort_keys=True)): c for c in sweep.cells}.values():
        build_scenario(cell.scenario, data_root=data_root, **cell.options)  # warm the dataset caches
    results = []
    for workers, threads in splits:
        slots = place_workers(workers=workers, threads=threads, device=device, cores=cores)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            scheduler = Scheduler(sweep, Store(Path(tmp) / "measure.db"), data_root=data_root)
            outcomes = run_local(scheduler, slots, data_root, checkpoints=True, progress=False)
            seconds = time.perf_counter() - start
        ok = sum(o.status == "finished" for o in outcomes)
        rate = 3600 * ok / seconds
        results.append((workers, threads, rate))
        echo(f"{workers} worker(s) x {threads} thread(s): {ok} runs in {seconds:.1f} s = {rate:.1f} runs/hour")
    best = max(results, key=lambda r: r[2])
    echo(f"best: --workers {best[0]} --threads {best[1]}")
    return results
