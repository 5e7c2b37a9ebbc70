"""The logger interface, the fan-out to several loggers, and the helpers the loggers share."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cl_bench.trainer import EpochLog


class UnknownLoggerError(ValueError):
    pass


class LogDirError(ValueError):
    """The loggers' folder (``<store>.logs``) cannot be written: said before any run starts."""


class MissingExtraError(ImportError, ValueError):
    """An optional logger's package is not installed (an ImportError, and a ValueError for the CLI)."""


class Logger:
    """The interface; each hook does nothing here, so a logger overrides what it uses."""

    def start_run(self, run_info: Mapping[str, Any]) -> None:
        pass

    def log_epoch(self, log: EpochLog) -> None:
        pass

    def log_task(self, t: int, accuracy_row: Sequence[float], metrics: Mapping[str, float]) -> None:
        pass

    def resumed(self, next_task: int, n_tasks: int) -> None:
        """The run resumes from its checkpoint: tasks 1..``next_task`` are done, of ``n_tasks`` (called
        after ``start_run``, before the next epoch)."""

    def end_run(self, status: str, summary: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MultiLogger(Logger):
    """Calls each logger in turn. close() closes every one, then raises the first error, if any."""

    def __init__(self, loggers: Sequence[Logger] = ()):
        self.loggers = list(loggers)

    def start_run(self, run_info):
        for logger in self.loggers:
            logger.start_run(run_info)

    def log_epoch(self, log):
        for logger in self.loggers:
            logger.log_epoch(log)

    def log_task(self, t, accuracy_row, metrics):
        for logger in self.loggers:
            logger.log_task(t, accuracy_row, metrics)

    def resumed(self, next_task, n_tasks):
        for logger in self.loggers:
            logger.resumed(next_task, n_tasks)

    def end_run(self, status, summary):
        for logger in self.loggers:
            logger.end_run(status, summary)

    def close(self):
        errors = []
        for logger in self.loggers:
            try:
                logger.close()
            except Exception as e:  # noqa: BLE001 the others must still close
                errors.append(e)
        if errors:
            raise errors[0]


def log_dir(store_path: str | os.PathLike) -> Path:
    """``<store>.logs``: beside the store, as its checkpoints are."""
    path = Path(store_path)
    return path.with_name(path.name + ".logs")


def check_log_dir(directory: str | os.PathLike) -> None:
    """Raise LogDirError when ``directory`` (made on a run's first log) could not be made or written:
    a file in its place, a read-only folder, a name too long. Checked before any run, not after the
    data are loaded."""
    directory = Path(directory)
    if len(directory.name.encode()) > 255:
        raise LogDirError(f"cannot log to {directory}: the name is too long for the file system")
    nearest = directory
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if nearest == directory and not directory.is_dir():
        raise LogDirError(f"cannot log to {directory}: it is a file, not a folder (move it, or use another --store)")
    if not nearest.is_dir():
        raise LogDirError(f"cannot log to {directory}: {nearest} is a file, not a folder")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise LogDirError(
            f"cannot log to {directory}: {nearest} is read-only (use a --store in a folder you can write)"
        )


def install_command(extra: str) -> str:
    """The pip command that installs ``extra`` for this installation of cl-bench: ``pip install -e
    '.[ray]'`` in a checkout (with the checkout's path when run from elsewhere), ``pip install
    'cl-bench[ray]'`` for an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    if (root / "setup.cfg").is_file() and (root / "cl_bench").is_dir():  # an editable checkout
        where = "." if Path.cwd().resolve() == root else str(root)
        return f"pip install -e '{where}[{extra}]'"
    return f"pip install 'cl-bench[{extra}]'"


def require_extra(extra: str, module: str | None = None, what: str | None = None, package: str | None = None) -> Any:
    """Import ``module`` (default: the package named like the extra), or raise MissingExtraError, one
    line naming the install command (``install_command``). ``what`` needs it (default: the logger named
    like the extra); ``package`` is the missing package's name (default: the extra's)."""
    package = package or extra
    if importlib.util.find_spec(package) is None:
        raise MissingExtraError(
            f"{what or f'the {extra} logger'} needs the {package} package, which is not installed: "
            f"{install_command(extra)}"
        )
    return importlib.import_module(module or package)


def run_id_of(run_info: Mapping[str, Any]) -> str:
    run_id = run_info.get("run_id")
    if not isinstance(run_id, str) or not run_id or os.sep in run_id or (os.altsep and os.altsep in run_id):
        raise ValueError(f"run_info needs a 'run_id' usable as a file name, got {run_id!r}")
    return run_id


def run_name(run_info: Mapping[str, Any], limit: int = 100) -> str:
    """A run's readable name for dashboards: ``strategy-key=value-...-s<seed>`` (``hat-s_max=400-c=0.75-s0``);
    a strategy file's class by its name; characters a folder name cannot hold replaced, cut at ``limit``."""
    strategy = str(run_info.get("strategy", "run"))
    if ".py:" in strategy:  # path/to/my_method.py:MyMethod -> MyMethod
        strategy = strategy.rpartition(":")[2]
    hparams = run_info.get("hparams") or {}
    parts = [strategy]
    for key, value in hparams.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:g}")
        elif isinstance(value, (int, str, bool)):
            parts.append(f"{key}={value}")
    seed = f"-s{run_info.get('seed', '?')}"
    name = re.sub(r"[^\w.=+-]", "_", "-".join(parts))
    return (name if len(name) + len(seed) <= limit else name[: limit - len(seed)]) + seed


def is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def plain(value: Any) -> Any:
    """JSON-ready: numpy scalars and arrays as Python values, NaN and infinities as None."""
    if hasattr(value, "tolist"):  # numpy scalar or array
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, str)) else str(value)


def epoch_values(log: EpochLog) -> dict[str, float]:
    """The finite numeric fields of an epoch other than its position (task, epoch)."""
    return {k: v for k, v in dataclasses.asdict(log).items() if k not in ("task", "epoch") and is_finite(v)}


_LABELS = {"acc": "ACC", "bwt": "BWT", "fwt": "FWT"}
_PERCENT = {"acc", "bwt", "fwt", "forgetting"}  # fractions of accuracy, shown in points


def metric_text(metrics: Mapping[str, Any]) -> str:
    return "  ".join(
        f"{_LABELS.get(k, k)} {100 * v:.1f}" if k in _PERCENT else f"{k} {v:.4g}"
        for k, v in metrics.items()
        if is_finite(v)
    )
