"""The local backend of ``cl-bench sweep``: a pool of spawned worker processes on this machine.

``--workers`` processes x ``--threads`` torch threads each. The default is one single-threaded worker
per core: on the 2-core reference machine, ``--measure-split`` (``measure_split``) on
examples/sweeps/measure_split.yaml gave 2 x 1 threads 959 runs/hour against 536 for 1 x 2 (runs of
small nets gain little from a second intra-op thread); ``--workers 0`` runs everything in the calling
process (debuggers, tests). Each worker writes its run's record to the store itself. A worker killed
by the OS is replaced and its run retried once; a second death stores the run as failed. A worker
whose driver was killed (``kill -9``) exits by itself (watchdog), even when the driver died while the
worker was starting. The driver claims each run before handing it to a worker (cl_bench.claims).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import queue
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import torch

from cl_bench.registry import build_scenario
from cl_bench.runner import RunConfig, RunFailed, code_version, execute
from cl_bench.store import RunRecord, Store
from cl_bench.sweep.plan import PlanItem, Sweep
from cl_bench.sweep.progress import Outcome, Progress, Scheduler, run_label

_EVENTS = None  # in a worker: the queue of progress events to the driver
_IN_WORKER = False  # True in the processes of the local pool


# ---- in a worker ---------------------------------------------------------------------------------------
def _worker_init(threads: int, events, driver: int) -> None:
    global _EVENTS, _IN_WORKER
    torch.set_num_threads(threads)
    _EVENTS, _IN_WORKER = events, True

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
        _EVENTS.put_nowait((os.getpid(), *event))


def _worker_run(config: RunConfig, store_path: str, device: str, data_root, checkpoints: bool) -> Outcome:
    """Run one configuration in a worker; the worker writes the record to the store itself. The driver
    holds the configuration's claim."""
    label = run_label(config)
    _emit("start", config.run_id(), label)
    n_tasks = len(config.scenario_options.get("tasks") or []) or None

    def on_epoch(log):
        _emit("epoch", f"{label} | task {log.task + 1}{'/' + str(n_tasks) if n_tasks else ''} "
                       f"epoch {log.epoch} val_acc {100 * log.valid_acc:.1f}")

    start, since = time.perf_counter(), time.time()
    try:
        record = execute(config, Store(store_path), data_root=data_root, device=device,
                         on_epoch=on_epoch, checkpoints=checkpoints, claimed=True)
        if record.finished is not None and record.finished < since:  # found in the store: not run here
            return Outcome(record.run_id, label, "skipped", "finished in the store", time.perf_counter() - start)
        return Outcome(record.run_id, label, "finished", wall_s=time.perf_counter() - start)
    except RunFailed as e:
        kept = " (an earlier finished result of this run is kept)" if e.kept is not None else ""
        return Outcome(e.record.run_id, label, "failed", (e.record.error or "").splitlines()[0] + kept,
                       time.perf_counter() - start)
    except Exception as e:  # noqa: BLE001 raised before the run existed (missing data, bad option): not stored,
        # so the next sweep tries again once the cause is fixed
        return Outcome(config.run_id(), label, "error", f"{type(e).__name__}: {e}".splitlines()[0],
                       time.perf_counter() - start)
    except KeyboardInterrupt:
        if _IN_WORKER:  # stop now: else the pool would go on with the calls already queued to it
            os._exit(130)  # the run is not stored; its checkpoint stays for the next sweep
        raise
    finally:
        _emit("end")


# ---- the driver ----------------------------------------------------------------------------------------
def run_local(scheduler: Scheduler, workers: int, threads: int, device: str, data_root,
              checkpoints: bool, progress: bool) -> list[Outcome]:
    """The scheduler's runs on ``workers`` spawned processes of ``threads`` torch threads each. At most
    ``workers`` runs are claimed at a time, so concurrent sweeps on one store share the work."""
    ctx = mp.get_context("spawn")  # fork after torch threads exist can deadlock; spawn is portable
    events = ctx.Queue()
    queue_ = scheduler.next_runs()
    ui = Progress(progress, workers, scheduler.expected_total())
    store_path = str(scheduler.store.path)
    outcomes: list[Outcome] = []
    kills: dict[str, int] = {}  # run_id -> times a worker died while running it
    running: dict[int, str] = {}  # worker pid -> run_id, from the workers' events
    worker_pids: set[int] = set()
    driver = os.getpid()  # read before any worker exists (its watchdog compares its parent with it)

    def new_pool():
        return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                   initargs=(threads, events, driver))

    def drain():
        while True:
            try:
                pid, kind, *args = events.get_nowait()
            except queue.Empty:
                return
            worker_pids.add(pid)
            if kind == "start":
                running[pid] = args[0]
            elif kind == "end":
                running.pop(pid, None)
            ui.event(pid, kind, *args)

    def finish(item: PlanItem, outcome: Outcome) -> None:
        scheduler.release(item)
        outcomes.append(outcome)
        ui.done(outcome, scheduler.expected_total())

    pool = new_pool()
    futures: dict[Any, PlanItem] = {}
    try:
        while True:
            while queue_ and len(futures) < workers:
                item = queue_.pop(0)
                refused = scheduler.claim(item)
                if refused is not None:
                    outcomes.append(refused)
                    ui.done(refused, scheduler.expected_total())
                    continue
                futures[pool.submit(_worker_run, item.config, store_path, device, data_root, checkpoints)] = item
            if not futures:
                queue_ = scheduler.next_runs()  # selections another process's runs may have decided
                if not queue_:
                    break
                continue
            done, _ = wait(list(futures), timeout=0.25, return_when=FIRST_COMPLETED)
            drain()
            broken = []
            for fut in done:
                item = futures.pop(fut)
                try:
                    outcome = fut.result()
                except BrokenProcessPool:
                    broken.append(item)
                    continue
                except Exception as e:  # noqa: BLE001 not a run failure: e.g. the store could not be written
                    outcome = Outcome(item.run_id, run_label(item.config), "error", f"{type(e).__name__}: {e}")
                finish(item, outcome)
            if broken:  # a worker was killed (out of memory, ...): every queued future fails with it
                time.sleep(0.2)
                drain()
                broken += list(futures.values())
                futures.clear()
                in_flight = set(running.values())
                running.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                pool = new_pool()
                ui.reset_workers()
                retry = []
                for item in broken:
                    if item.run_id in in_flight:
                        kills[item.run_id] = kills.get(item.run_id, 0) + 1
                        _record_killed(scheduler, item)
                    if kills.get(item.run_id, 0) >= 2:  # retried once already: store it as failed
                        finish(item, _store_killed(scheduler, item))
                    else:
                        if item.run_id in in_flight:
                            ui.write(f"worker died while running {run_label(item.config)}; retrying once")
                        retry.append(item)  # still claimed by this sweep
                queue_ = retry + queue_
            if done and not broken:
                queue_ += scheduler.next_runs()  # selections decided by these runs release their seeds
    except KeyboardInterrupt:
        ui.write("interrupted: runs in flight stop; finished runs are in the store and each run in flight "
                 "resumes from its last checkpointed task next time")
        # A Ctrl-C in a terminal reached the workers already; `kill -INT <driver>` did not.
        for pid in {p.pid for p in mp.active_children()} | worker_pids:
            try:
                os.kill(pid, signal.SIGINT)
            except OSError:
                pass
        pool.shutdown(wait=True, cancel_futures=True)
        for item in futures.values():
            with contextlib.suppress(Exception):
                scheduler.release(item)
        ui.close()
        raise
    pool.shutdown(wait=True)
    ui.close()
    return outcomes


def run_inline(scheduler: Scheduler, threads: int, device: str, data_root, checkpoints: bool,
               progress: bool) -> list[Outcome]:
    """``--workers 0``: every run in this process, one after another (debuggers, tests)."""
    global _EVENTS
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    ui = Progress(progress, 1, 0)
    events: queue.Queue = queue.Queue()
    _EVENTS, saved = events, _EVENTS
    outcomes: list[Outcome] = []
    try:
        while todo := scheduler.next_runs():
            for item in todo:
                ui.bar.total = scheduler.expected_total()
                outcome = scheduler.claim(item)
                if outcome is None:
                    try:
                        outcome = _worker_run(item.config, str(scheduler.store.path), device, data_root, checkpoints)
                    finally:
                        scheduler.release(item)
                while not events.empty():
                    pid, kind, *args = events.get_nowait()
                    ui.event(pid, kind, *args)
                outcomes.append(outcome)
                ui.done(outcome, scheduler.expected_total())
    finally:
        _EVENTS = saved
        torch.set_num_threads(previous)
        ui.close()
    return outcomes


def _record_killed(scheduler: Scheduler, item: PlanItem) -> None:
    """A worker died while running ``item``: kept as an attempt, so `cl-bench status` shows it."""
    with contextlib.suppress(Exception):  # the record of a death must not stop the sweep
        scheduler.store.record_attempt(scheduler.run_id_for(item), "killed",
                                       "its worker process died (killed by the OS: out of memory?)",
                                       finished=time.time(), code_version=code_version())


def _store_killed(scheduler: Scheduler, item: PlanItem) -> Outcome:
    """A run that killed its worker twice is stored as failed, so later sweeps skip it (a finished
    result of the same run, made with other data or strategy file, stays: Store.save)."""
    c = item.config
    run_id = scheduler.run_id_for(item)
    msg = ("worker process died twice while running this configuration (killed by the OS: out of "
           "memory?); run it alone with `cl-bench run` to see why, or `cl-bench sweep --retry-failed`")
    now = time.time()
    scheduler.store.save(RunRecord(run_id, c.strategy, c.scenario, c.seed, item.point.resolved or c.resolved_hparams(),
                                   dataclasses.asdict(c.protocol), c.scenario_options, "failed", tags=list(c.tags),
                                   error=msg, code_version=code_version(), started=now, finished=now, wall_s=0.0))
    return Outcome(run_id, run_label(c), "failed", msg)


# ---- choosing the split --------------------------------------------------------------------------------
def measure_split(sweep: Sweep, cores: int, device: str, data_root,
                  echo: Callable[[str], Any] = print) -> list[tuple[int, int, float]]:
    """Run the sweep once per split workers x threads = cores, each into a fresh store; runs/hour.
    ``echo`` reports each split's rate and the best one."""
    splits = [(w, cores // w) for w in range(1, cores + 1) if cores % w == 0]
    for cell in {(c.scenario, json.dumps(c.options, sort_keys=True)): c for c in sweep.cells}.values():
        build_scenario(cell.scenario, data_root=data_root, **cell.options)  # warm the dataset caches
    results = []
    for workers, threads in splits:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            scheduler = Scheduler(sweep, Store(Path(tmp) / "measure.db"), data_root=data_root)
            outcomes = run_local(scheduler, workers, threads, device, data_root, checkpoints=True, progress=False)
            seconds = time.perf_counter() - start
        ok = sum(o.status == "finished" for o in outcomes)
        rate = 3600 * ok / seconds
        results.append((workers, threads, rate))
        echo(f"{workers} worker(s) x {threads} thread(s): {ok} runs in {seconds:.1f} s = {rate:.1f} runs/hour")
    best = max(results, key=lambda r: r[2])
    echo(f"best: --workers {best[0]} --threads {best[1]}")
    return results
