"""One run: a strategy x scenario x seed under a protocol, from configuration to stored record.

``execute`` claims the configuration (cl_bench.claims), builds the scenario, serves a finished run of
the same identity (cl_bench.identity) or trains, checkpointing after each task (cl_bench.checkpoint).
After each task it measures every task so far on its test split (the accuracy matrix) and on its
validation split (``monitoring["validation"]``, what hyperparameter selection reads), and stores the
run as one attempt (cl_bench.store: a failure never replaces a finished result). A ``Logger``
(cl_bench.loggers) given to ``execute`` hears of the run per epoch and per task."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cl_bench import checkpoint as ckpt
from cl_bench import claims
from cl_bench.claims import Heartbeat, Owner, RunBusy
from cl_bench.identity import current_identity, resolve
from cl_bench.loggers import Logger
from cl_bench.metrics import step_metrics
from cl_bench.ranges import Range
from cl_bench.records import VALIDATION, validation_monitoring
from cl_bench.registry import build_scenario, get_strategy
from cl_bench.store import RunRecord, Saved, Store, config_hash
from cl_bench.strategy import Strategy
from cl_bench.trainer import LATER_SETTINGS, DivergedError, EpochLog, Protocol, Trainer, resolve_device
from cl_bench.version import __version__

MAX_SEED = 2**32 - 1


@dataclass
class RunConfig:
    strategy: str
    scenario: str
    seed: int = 0
    hparams: dict[str, Any] = field(default_factory=dict)
    protocol: Protocol = field(default_factory=Protocol)
    scenario_options: dict[str, Any] = field(default_factory=dict)  # incl. max_train_per_task, tasks
    tags: list[str] = field(default_factory=list)

    def __post_init__(self):
        # The seed also seeds numpy's RandomState (task orders, splits), which takes 0 <= seed < 2**32.
        Range(at_least=0, at_most=MAX_SEED).check(self.seed, "seed", int)

    def resolved_hparams(self) -> dict[str, Any]:
        """Every hyperparameter with its value (defaults filled in), validated."""
        return dataclasses.asdict(get_strategy(self.strategy).parse_hparams(self.hparams))

    def run_id(self, resolved_hparams: dict[str, Any] | None = None) -> str:
        """Hash of what determines the result (tags and device excluded). Sweeps pass the
        hyperparameters resolved once per grid point (looking the strategy up per run is slow)."""
        protocol = {
            k: v
            for k, v in dataclasses.asdict(self.protocol).items()
            if not (k in LATER_SETTINGS and v == LATER_SETTINGS[k])
        }  # earlier runs keep their ids
        return config_hash(
            {
                "strategy": self.strategy,
                "scenario": self.scenario,
                "seed": self.seed,
                "hparams": self.resolved_hparams() if resolved_hparams is None else resolved_hparams,
                "protocol": protocol,
                "scenario_options": self.scenario_options,
            }
        )


class RunFailed(RuntimeError):
    """The run diverged or raised. ``record`` is the failed run; ``kept`` the earlier finished result of
    the same run that stays in the store (a failed attempt never replaces one), else None."""

    def __init__(self, record: RunRecord, kept: RunRecord | None = None, attempt: int | None = None):
        self.record, self.kept, self.attempt = record, kept, attempt
        super().__init__(record.error)


def code_version() -> str:
    version = __version__
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.strip()
        return f"{version}+g{commit}" if commit else version
    except (OSError, subprocess.SubprocessError):
        return version


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def execute(
    config: RunConfig,
    store: Store | None = None,
    data_root=None,
    download: bool = False,
    device: str = "cpu",
    force: bool = False,
    on_epoch: Callable[[EpochLog], None] | None = None,
    on_task: Callable[[int, np.ndarray], None] | None = None,
    checkpoints: bool = True,
    claimed: bool = False,
    run_id: str | None = None,
    logger: Logger | None = None,
) -> RunRecord:
    """Run one configuration and store it. A finished run of this configuration made with the same
    strategy file and data (cl_bench.identity) is returned from the store unless ``force``; one made
    with others stays, and this run is stored beside it. Divergence or any error is stored as a failed
    attempt, then raised as RunFailed (a finished result of the same run is kept: ``RunFailed.kept``).

    With a store, the configuration is claimed first (cl_bench.claims; ``claimed``: the caller, a sweep
    driver, holds the claim) and RunBusy raised if another live process runs it; ``run_id`` (sweeps on
    Ray) is where to store it, as resolved by the caller. With ``checkpoints``, the state after each task
    is checkpointed beside the store (cl_bench.checkpoint) and a run killed before it was stored resumes
    from its last finished task (``force`` starts afresh); strategies that cannot be resumed exactly are
    not checkpointed.

    ``logger`` is told of a run it trains (not of one served from the store): ``start_run``, then
    ``log_epoch`` per epoch (beside ``on_epoch``) and ``log_task`` per task with ``step_metrics``, then
    ``end_run`` with the final metrics, or the error, and ``wall_s``. The caller closes it."""
    strategy_cls = get_strategy(config.strategy)
    hparams = strategy_cls.parse_hparams(config.hparams)  # bad names/types fail before any work
    device = resolve_device(device)
    train = functools.partial(
        _execute,
        config,
        strategy_cls,
        hparams,
        store,
        data_root,
        download,
        device,
        force,
        on_epoch,
        on_task,
        checkpoints,
        run_id,
        logger,
    )
    if store is None or claimed:
        return train()
    config_id, owner = config.run_id(), Owner.here()
    holder = claims.claim(store, config_id, owner)
    if holder is not None:
        raise RunBusy(config_id, holder)
    try:
        with Heartbeat(store, owner):
            return train()
    finally:
        claims.release(store, config_id, owner)


def _execute(
    config: RunConfig,
    strategy_cls: type[Strategy],
    hparams,
    store,
    data_root,
    download: bool,
    device: str,
    force: bool,
    on_epoch,
    on_task,
    checkpoints: bool,
    run_id: str | None,
    logger: Logger | None,
) -> RunRecord:
    config_id = config.run_id()
    # Bad scenario options or missing data are configuration errors, raised before the run exists.
    seed_everything(config.seed)
    scenario = build_scenario(
        config.scenario, seed=config.seed, data_root=data_root, download=download, **config.scenario_options
    ).to(device)
    identity = current_identity(config.strategy, scenario.info)
    if run_id is None and store is not None:
        resolution = resolve(store, config_id, identity)
        run_id = resolution.run_id
        if resolution.status == "finished" and not force:
            if config.tags:  # a new tag on a finished configuration is added to the stored run
                store.add_tags([run_id], config.tags)
            return store.get(run_id)
    run_id = run_id or config_id
    if run_id != config_id:  # stored beside the configuration's run made with another strategy file or data
        identity["base_run_id"] = config_id
    ckpt_path = None
    if store is not None and checkpoints and ckpt.resume_refusal(strategy_cls) is None:
        ckpt_path = ckpt.checkpoint_path(store.path, run_id)

    started = time.time()
    version = code_version()
    record = RunRecord(
        run_id,
        config.strategy,
        config.scenario,
        config.seed,
        dataclasses.asdict(hparams),
        dataclasses.asdict(config.protocol),
        config.scenario_options,
        "running",
        tags=list(config.tags),
        code_version=version,
        started=started,
        identity=identity,
    )
    record.data = scenario.info
    if logger is not None:
        logger.start_run(
            {
                "run_id": run_id,
                "strategy": config.strategy,
                "scenario": config.scenario,
                "seed": config.seed,
                "hparams": record.hparams,
                "protocol": record.protocol,
                "scenario_options": config.scenario_options,
                "tags": list(config.tags),
            }
        )
        on_epoch = _both(logger.log_epoch, on_epoch)
    trainer = None
    saved = None
    valid_acc = None
    try:
        seed_everything(config.seed)  # weights init independent of how much RNG the loaders used
        strategy: Strategy = strategy_cls(scenario, hparams, device=device)
        trainer = Trainer(scenario, config.protocol, seed=config.seed, on_epoch=on_epoch)
        trainer.prepare(strategy)
        T = len(scenario.tasks)
        acc = record.accuracy = np.full((T, T), np.nan)  # a failed run keeps the rows it finished
        valid_acc = np.full((T, T), np.nan)  # the same on validation splits: what selection reads
        first = 0
        saved_state = ckpt.load(ckpt_path, run_id, identity) if ckpt_path is not None and not force else None
        if saved_state is not None:  # resume after the last checkpointed task, every RNG as it was then
            first = ckpt.restore(saved_state, strategy, trainer, acc, valid_acc)
            if saved_state["code_version"] != version:
                record.code_version = f"{version} (tasks 1-{first} by {saved_state['code_version']})"
        for t in range(first, T):
            strategy.before_task(t)
            strategy.train_task(t, trainer)
            strategy.after_task(t)
            for tau in range(t + 1):
                acc[t, tau] = trainer.test_accuracy(strategy, tau)
                valid_acc[t, tau] = trainer.valid_accuracy(strategy, tau)
            if ckpt_path is not None and t < T - 1:
                ckpt.save(
                    ckpt_path,
                    run_id=run_id,
                    code_version=version,
                    next_task=t + 1,
                    strategy=strategy,
                    trainer=trainer,
                    accuracy=acc,
                    identity=identity,
                    valid_accuracy=valid_acc,
                )
            if logger is not None:
                logger.log_task(t, acc[t, : t + 1], step_metrics(acc, t))
            if on_task:
                on_task(t, acc)
        record.monitoring = strategy.monitoring()
        if VALIDATION in record.monitoring:
            raise ValueError(
                f"{type(strategy).__name__}.monitoring() uses the key {VALIDATION!r}, which the runner keeps "
                f"for the validation accuracy matrix: rename it"
            )
        record.status = "finished"
    except DivergedError as e:
        record.status, record.error = "failed", f"diverged: {e}"
    except Exception as e:  # stored with its traceback, then re-raised below
        record.status = "failed"
        record.error = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
        if store is None:
            raise
    finally:
        if valid_acc is not None:  # a failed run keeps the validation rows it finished, as the test rows
            record.monitoring = {**(record.monitoring or {}), VALIDATION: validation_monitoring(valid_acc)}
        record.finished = time.time()
        record.wall_s = record.finished - started
        if trainer is not None:
            record.history = [dataclasses.asdict(h) for h in trainer.history]
        if store is not None and record.status in ("finished", "failed"):
            saved = store.save(record)
            ckpt.remove(ckpt_path)
        if logger is not None:
            _end_run(logger, record)
    if record.status == "failed":
        kept = store.get(run_id) if isinstance(saved, Saved) and saved.kept else None
        raise RunFailed(record, kept, saved.attempt if isinstance(saved, Saved) else None)
    return record


def _both(first: Callable[[EpochLog], None], second: Callable[[EpochLog], None] | None) -> Callable[[EpochLog], None]:
    if second is None:
        return first

    def both(log: EpochLog) -> None:
        first(log)
        second(log)

    return both


def _end_run(logger: Logger, record: RunRecord) -> None:
    """The end of the run for its logger, after the record is stored (a logger error never loses it)."""
    if record.status == "finished":
        T = record.accuracy.shape[0]
        logger.end_run("finished", {**step_metrics(record.accuracy, T - 1), "wall_s": record.wall_s})
        return
    status = record.status if record.status == "failed" else "interrupted"  # still "running": Ctrl-C
    with contextlib.suppress(Exception):  # the run's own failure is what the caller must see
        logger.end_run(status, {"error": record.error or status, "wall_s": record.wall_s})
