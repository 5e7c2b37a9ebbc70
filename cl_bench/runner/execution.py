"""One run: a strategy x scenario x seed under a protocol, from configuration to stored record.

``execute`` claims the configuration (cl_bench.store.claims), builds the scenario, serves a finished run of
the same identity (cl_bench.runner.identity) or trains, checkpointing after each task (cl_bench.runner.checkpoint).
After each task it measures every task so far on its test split (the accuracy matrix) and on its
validation split (``monitoring["validation"]``, what hyperparameter selection reads), and stores the
run as one attempt (cl_bench.store: a failure never replaces a finished result). A ``Logger``
(cl_bench.loggers) given to ``execute`` hears of the run per epoch and per task."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cl_bench.loggers import Logger
from cl_bench.metrics import step_metrics
from cl_bench.ranges import Range
from cl_bench.registry import all_strategies, build_scenario, get_strategy, is_strategy_file
from cl_bench.runner import checkpoint as ckpt
from cl_bench.runner.identity import check_name_claim, current_identity, resolve
from cl_bench.store import RunRecord, Saved, Store, claims, config_hash, save_or_spill
from cl_bench.store.claims import Heartbeat, Owner, RunBusy
from cl_bench.store.records import VALIDATION, check_tags, validation_monitoring
from cl_bench.strategy import Strategy
from cl_bench.strategy_files import class_label, static_name
from cl_bench.trainer import LATER_SETTINGS, DivergedError, EpochLog, Listener, Protocol, Trainer, resolve_device
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
        self.tags = check_tags(self.tags, "tag")  # every way in: cl-bench run --tag, the API, sweep files

    @property
    def strategy_name(self) -> str:
        """What the run is stored and reported as: a file's class by its ``name``, read from the file
        without running it (so the same class is one strategy wherever it is run from)."""
        return static_name(self.strategy) if is_strategy_file(self.strategy) else self.strategy

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
                "strategy": self.strategy_name,
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


@dataclass(frozen=True)
class ResolvedRun:
    """A configuration resolved once per run: its strategy class (a user file imported once), the parsed
    hyperparameters and the configuration's id. Everything downstream takes this, never the names."""

    config: RunConfig  # a file strategy's config names it by its class's ``name``
    strategy_cls: type[Strategy]
    hparams: Any
    config_id: str
    source: str | None = None  # a user file's ``path/file.py:Class`` (hashed into the identity)

    @classmethod
    def of(cls, config: RunConfig) -> ResolvedRun:
        """Bad strategy names and hyperparameters fail here, before any work."""
        strategy_cls = get_strategy(config.strategy)  # a user file runs here, once per process
        source = config.strategy if is_strategy_file(config.strategy) else None
        if source is not None:
            config = dataclasses.replace(config, strategy=_file_strategy_name(source, strategy_cls))
        hparams = strategy_cls.parse_hparams(config.hparams)
        return cls(config, strategy_cls, hparams, config.run_id(dataclasses.asdict(hparams)), source)

    @property
    def strategy_class(self) -> str | None:
        """``file.py:Class`` of a user file (no folder: the same file anywhere is the same class)."""
        return None if self.source is None else class_label(self.source)


def _file_strategy_name(source: str, strategy_cls: type[Strategy]) -> str:
    """The name a file's class is stored under; it must be readable without running the file (reading
    commands plan and report by it) and must not be a registered strategy's."""
    name = strategy_cls.name or strategy_cls.__name__
    if name != static_name(source):
        raise ValueError(
            f'{source}: the class\'s name {name!r} is not written as `name = "..."` in the class or a base '
            f"of the same file (read without running it: {static_name(source)!r}); write it there"
        )
    if name in all_strategies():
        raise ValueError(f"{source}: name {name!r} is a registered strategy's; give the class another `name`")
    return name


@dataclass
class RunOptions:
    """How to execute a run (nothing here changes its result).

    ``store``: where it is served from and written to (None: nowhere: no claims, no checkpoints);
    ``force``: train even if a finished run of the same identity is stored; ``checkpoints``: after each
    task, beside the store; ``claimed``: the caller (a sweep driver) holds the claim; ``run_id``: where to
    store it, as the caller resolved it (Ray); ``logger`` and ``listeners``: told of the run's progress."""

    store: Store | None = None
    data_root: Any = None
    download: bool = False
    device: str | torch.device = "cpu"
    force: bool = False
    checkpoints: bool = True
    claimed: bool = False
    run_id: str | None = None
    logger: Logger | None = None
    listeners: Sequence[Listener] = ()


def execute(run: RunConfig | ResolvedRun, store: Store | None = None, **options: Any) -> RunRecord:
    """Run one configuration and store it; ``options`` are RunOptions' fields. A finished run of this
    configuration made with the same strategy file and data (cl_bench.runner.identity) is returned from the
    store unless ``force``; one made with others stays, and this run is stored beside it. Divergence or
    any error is stored as a failed attempt, then raised as RunFailed (a finished result of the same run
    is kept: ``RunFailed.kept``).

    With a store, the configuration is claimed first (cl_bench.store.claims) and RunBusy raised if another
    live process runs it. With checkpoints, a run killed before it was stored resumes from its last
    finished task (``force`` starts afresh); strategies that cannot be resumed exactly are not
    checkpointed. The logger hears of a run it trains (not of one served from the store): ``start_run``,
    ``log_epoch`` per epoch, ``log_task`` per task, then ``end_run``. The caller closes it."""
    resolved = run if isinstance(run, ResolvedRun) else ResolvedRun.of(run)  # bad input fails before any work
    opts = RunOptions(store=store, **options)
    opts.device = resolve_device(opts.device)
    if store is None or opts.claimed:
        return _execute(resolved, opts)
    owner = Owner.here()
    holder = claims.claim(store, resolved.config_id, owner)
    if holder is not None:
        raise RunBusy(resolved.config_id, holder)
    try:
        with Heartbeat(store, owner):
            return _execute(resolved, opts)
    finally:
        claims.release(store, resolved.config_id, owner)


def _execute(run: ResolvedRun, opts: RunOptions) -> RunRecord:
    config, store = run.config, opts.store
    # Bad scenario options or missing data are configuration errors, raised before the run exists.
    seed_everything(config.seed)
    scenario = build_scenario(
        config.scenario, seed=config.seed, data_root=opts.data_root, download=opts.download, **config.scenario_options
    ).to(opts.device)
    identity = _identity(run, scenario.info, store, claimed_by_driver=opts.run_id is not None)
    run_id, served = _where(run, opts, identity)
    if served is not None:
        return served
    record = _new_record(run, run_id, identity, scenario.info)
    if opts.logger is not None:
        opts.logger.start_run(_run_info(record))
    ckpt_path = None
    if store is not None and opts.checkpoints and ckpt.resume_refusal(run.strategy_cls) is None:
        ckpt_path = ckpt.checkpoint_path(store.path, run_id)
    training = _Training()
    try:
        training.run(run, opts, scenario, record, ckpt_path)
        record.status = "finished"
    except DivergedError as e:
        record.status, record.error = "failed", f"diverged: {e}"
    except Exception as e:  # stored with its traceback, then re-raised below
        record.status = "failed"
        record.error = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
        if store is None:
            raise
    finally:
        saved = _close_record(record, training.trainer, training.valid_acc, store, ckpt_path, opts.logger)
    if record.status == "failed":
        kept = store.get(run_id) if isinstance(saved, Saved) and saved.kept and store is not None else None
        raise RunFailed(record, kept, saved.attempt if isinstance(saved, Saved) else None)
    return record


def _identity(
    run: ResolvedRun, data_info: dict[str, Any], store: Store | None, claimed_by_driver: bool = False
) -> dict[str, Any]:
    """What decides the result beyond the configuration (cl_bench.runner.identity); a user file's class also
    records where its name came from and its defaults (what reading commands show without running it)."""
    identity = current_identity(run.source or run.config.strategy, data_info)
    if run.source is not None:
        identity["strategy_class"] = run.strategy_class
        identity["hparam_defaults"] = dataclasses.asdict(run.strategy_cls.Hparams())
        if store is not None and not claimed_by_driver:  # a sweep's driver checked it (cl_bench.sweep.progress)
            check_name_claim(store, run.config.strategy, identity["strategy_class"])
    return identity


def _where(run: ResolvedRun, opts: RunOptions, identity: dict[str, Any]) -> tuple[str, RunRecord | None]:
    """(the id to store the run under, the finished run to serve instead of training, if any)."""
    config, store, run_id = run.config, opts.store, opts.run_id
    if run_id is None and store is not None:
        resolution = resolve(store, run.config_id, identity)
        run_id = resolution.run_id
        if resolution.status == "finished" and not opts.force:
            if config.tags:  # a new tag on a finished configuration is added to the stored run
                store.add_tags([run_id], config.tags)
            return run_id, store.get(run_id)
    run_id = run_id or run.config_id
    if run_id != run.config_id:  # stored beside the configuration's run made with another strategy file or data
        identity["base_run_id"] = run.config_id
    return run_id, None


class _Training:
    """The training part of a run; what it made so far stays readable when it fails part-way."""

    trainer: Trainer | None = None
    valid_acc: np.ndarray | None = None

    def run(self, run: ResolvedRun, opts: RunOptions, scenario, record: RunRecord, ckpt_path: Path | None) -> None:
        config = run.config
        version = record.code_version or ""  # this code's; a resumed run's record also names the earlier one
        seed_everything(config.seed)  # weights init independent of how much RNG the loaders used
        strategy = run.strategy_cls(scenario, run.hparams, device=opts.device)
        trainer = self.trainer = Trainer(scenario, config.protocol, seed=config.seed)
        trainer.prepare(strategy)
        T = len(scenario.tasks)
        acc = record.accuracy = np.full((T, T), np.nan)  # a failed run keeps the rows it finished
        valid_acc = self.valid_acc = np.full((T, T), np.nan)  # the same on validation splits: what selection reads
        first = _resume(record, ckpt_path if not opts.force else None, strategy, trainer, acc, valid_acc)
        if first and opts.logger is not None:
            opts.logger.resumed(first, T)
        listeners: list[Listener] = []
        if ckpt_path is not None:
            listeners.append(CheckpointAfterTask(ckpt_path, record, version, strategy, trainer))
        if opts.logger is not None:
            listeners.append(LoggerListener(opts.logger))
        trainer.listeners = [*listeners, *opts.listeners]
        trainer.learn(strategy, first, acc, valid_acc)
        record.monitoring = strategy.monitoring()
        if VALIDATION in record.monitoring:
            raise ValueError(
                f"{type(strategy).__name__}.monitoring() uses the key {VALIDATION!r}, which the runner keeps "
                f"for the validation accuracy matrix: rename it"
            )


def _new_record(run: ResolvedRun, run_id: str, identity: dict[str, Any], data_info: dict[str, Any]) -> RunRecord:
    config = run.config
    record = RunRecord(
        run_id,
        config.strategy,
        config.scenario,
        config.seed,
        dataclasses.asdict(run.hparams),
        dataclasses.asdict(config.protocol),
        config.scenario_options,
        "running",
        tags=list(config.tags),
        code_version=code_version(),
        started=time.time(),
        identity=identity,
    )
    record.data = data_info
    return record


def _run_info(record: RunRecord) -> dict[str, Any]:
    keys = ("run_id", "strategy", "scenario", "seed", "hparams", "protocol", "scenario_options", "tags")
    return {k: getattr(record, k) for k in keys}


def _resume(record: RunRecord, path: Path | None, strategy: Strategy, trainer: Trainer, acc, valid_acc) -> int:
    """Restore the last checkpoint of this run if there is one; the first task still to learn."""
    saved_state = ckpt.load(path, record.run_id, record.identity) if path is not None else None
    if saved_state is None:
        return 0
    first = ckpt.restore(saved_state, strategy, trainer, acc, valid_acc)  # every RNG as it was then
    # Until the run closes, wall_s holds the earlier sittings' wall time: a resumed run's wall is the whole
    # run's, not its last sitting's (checkpoints before 0.2.0 kept none: their epochs' seconds, a lower bound).
    earlier = saved_state.get("wall_s")
    record.wall_s = earlier if earlier is not None else sum(h["seconds"] for h in saved_state["history"])
    if saved_state["code_version"] != record.code_version:
        record.code_version = f"{record.code_version} (tasks 1-{first} by {saved_state['code_version']})"
    return first


def _wall_so_far(record: RunRecord, now: float) -> float:
    """The run's wall time at ``now``: this sitting's, plus the earlier sittings' (``_resume``)."""
    return (record.wall_s or 0.0) + now - (record.started or now)


def _close_record(record: RunRecord, trainer, valid_acc, store, ckpt_path, logger) -> Saved | None:
    """Complete and store a run that ended (finished, failed, or interrupted: then not stored)."""
    if valid_acc is not None:  # a failed run keeps the validation rows it finished, as the test rows
        record.monitoring = {**(record.monitoring or {}), VALIDATION: validation_monitoring(valid_acc)}
    record.finished = time.time()
    record.wall_s = _wall_so_far(record, record.finished)
    if trainer is not None:
        record.history = [dataclasses.asdict(h) for h in trainer.history]
    saved = None
    if store is not None and record.status in ("finished", "failed"):
        saved = save_or_spill(store, record)  # a save that fails writes the run to a file, never loses it
        ckpt.remove(ckpt_path)
    if logger is not None:
        _end_run(logger, record)
    return saved


class CheckpointAfterTask(Listener):
    """Checkpoints the run after each task but the last (cl_bench.runner.checkpoint)."""

    def __init__(self, path: Path, record: RunRecord, version: str, strategy: Strategy, trainer: Trainer):
        self.path, self.record, self.version, self.strategy, self.trainer = path, record, version, strategy, trainer

    def task_end(self, t: int, accuracy: np.ndarray, valid_accuracy: np.ndarray) -> None:
        if t < len(accuracy) - 1:
            ckpt.save(
                self.path,
                run_id=self.record.run_id,
                code_version=self.version,
                next_task=t + 1,
                strategy=self.strategy,
                trainer=self.trainer,
                accuracy=accuracy,
                identity=self.record.identity,
                valid_accuracy=valid_accuracy,
                wall_s=_wall_so_far(self.record, time.time()),
            )


class LoggerListener(Listener):
    """A Logger (cl_bench.loggers) hearing the loop: each epoch, and each task with its metrics."""

    def __init__(self, logger: Logger):
        self.logger = logger

    def epoch_end(self, log: EpochLog) -> None:
        self.logger.log_epoch(log)

    def task_end(self, t: int, accuracy: np.ndarray, valid_accuracy: np.ndarray) -> None:
        self.logger.log_task(t, accuracy[t, : t + 1].tolist(), step_metrics(accuracy, t))


def _end_run(logger: Logger, record: RunRecord) -> None:
    """The end of the run for its logger, after the record is stored (a logger error never loses it)."""
    if record.status == "finished" and record.accuracy is not None:
        T = record.accuracy.shape[0]
        logger.end_run("finished", {**step_metrics(record.accuracy, T - 1), "wall_s": record.wall_s})
        return
    status = record.status if record.status == "failed" else "interrupted"  # still "running": Ctrl-C
    with contextlib.suppress(Exception):  # the run's own failure is what the caller must see
        logger.end_run(status, {"error": record.error or status, "wall_s": record.wall_s})
