"""One run, from configuration to stored record: ``execution`` (a configuration resolved once, claimed,
served from the store or trained through ``Trainer.learn`` with its listeners, stored as one attempt),
``checkpoint`` (per-task checkpoints, so a killed run resumes) and ``identity`` (what a stored run must
match, beyond its configuration, to be served). The names below are the room's face."""

from cl_bench.runner.execution import (
    MAX_SEED,
    CheckpointAfterTask,
    LoggerListener,
    ResolvedRun,
    RunConfig,
    RunFailed,
    RunOptions,
    code_version,
    execute,
    seed_everything,
)

__all__ = [
    "MAX_SEED",
    "CheckpointAfterTask",
    "LoggerListener",
    "ResolvedRun",
    "RunConfig",
    "RunFailed",
    "RunOptions",
    "code_version",
    "execute",
    "seed_everything",
]
