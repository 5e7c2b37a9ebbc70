"""The ``slurm:`` options of a sweep (sweep file key, and ``cl-bench sweep --backend slurm`` flags): what
each array task asks SLURM for, validated before anything is submitted (cl_bench.sweep.slurm_backend
uses them)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from cl_bench.sweep.plan import SweepError

SLURM_KEYS = ("partition", "time", "cpus", "gpus", "mem", "max_parallel", "sbatch", "setup")


# ---- options --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlurmOptions:
    """What each array task asks SLURM for; from the sweep file's ``slurm:`` key, then the flags."""

    partition: str | None = None
    time: int = 60  # minutes per job; a run longer than that is requeued and resumes
    cpus: int = 1
    gpus: int = 0
    mem: str | None = None  # e.g. 16G
    max_parallel: int | None = None  # array tasks running at once (None: SLURM's limit)
    sbatch: tuple[tuple[str, str], ...] = ()  # extra directives, e.g. (("qos", "high"),)
    setup: tuple[str, ...] = ()  # shell lines run before the job (module load ..., source venv)

    def merged(self, **flags: Any) -> SlurmOptions:
        """These options with the flags given (not None) in place, each checked as its flag."""
        given = {k: v for k, v in flags.items() if v is not None and v != ()}
        checked = parse_slurm_options(given, flag_names=True)
        return replace(self, **{k: getattr(checked, k) for k in given})


def parse_time(value: Any, where: str) -> int:
    """Minutes from ``90``, ``"90"``, ``"MM:SS"``, ``"HH:MM:SS"``, ``"D-HH"``, ``"D-HH:MM[:SS]"`` (sbatch's
    forms); at least one minute."""
    text = str(value).strip() if not isinstance(value, bool) else ""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        raise SweepError(f"{where}: a time limit is minutes or D-HH:MM:SS, e.g. 90 or 12:00:00, got {value!r}")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # MM:SS
        seconds = a * 60 + b
    else:
        seconds = a * 60
    if seconds < 60:
        raise SweepError(f"{where}: the time limit must be at least one minute, got {value!r}")
    return -(-seconds // 60)


def _count(value: Any, where: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise SweepError(f"{where}: expected an integer >= {least}, got {value!r}")
    if int(value) < least:
        raise SweepError(f"{where}: expected an integer >= {least}, got {value!r}")
    return int(value)


def _directives(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    """``{qos: high, account: lab}`` or ``["qos=high", "--exclusive"]`` -> (("qos", "high"), ...)."""
    items = value.items() if isinstance(value, Mapping) else None
    if items is None:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise SweepError(f"{where}: expected sbatch directives as KEY=VALUE texts or a mapping, got {value!r}")
        items = [(v.lstrip("-").partition("=")[0], v.partition("=")[2] or True) for v in value]
    out = []
    for key, val in items:
        key = str(key).strip().lstrip("-")
        if not re.fullmatch(r"[a-z][a-z0-9-]*", key):
            raise SweepError(f"{where}: {key!r} is not an sbatch option name (e.g. qos, account, constraint)")
        if key in ("array", "output", "error", "signal", "requeue", "open-mode", "job-name"):
            raise SweepError(f"{where}: --{key} is set by cl-bench (arrays, logs, requeue); leave it out")
        out.append((key, "" if val is True else str(val)))
    return tuple(out)


def parse_slurm_options(value: Any, where: str = "slurm", flag_names: bool = False) -> SlurmOptions:
    """SlurmOptions from the sweep file's ``slurm:`` mapping (``where``: its place, for errors) or from
    the command line's flags (``flag_names``: errors name ``--time``, ``--max-parallel``, ...)."""
    if value is None:
        return SlurmOptions()
    if not isinstance(value, Mapping):
        raise SweepError(f"{where}: expected a mapping with keys among {', '.join(SLURM_KEYS)}, got {value!r}")
    unknown = sorted(str(k) for k in set(value) - set(SLURM_KEYS))
    if unknown:
        raise SweepError(f"{where}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(SLURM_KEYS)}")

    def name(key: str) -> str:
        return f"--{key.replace('_', '-')}" if flag_names else f"{where}.{key}"

    out: dict[str, Any] = {}
    for key, raw in value.items():
        if key == "time":
            out[key] = parse_time(raw, name(key))
        elif key in ("cpus", "max_parallel"):
            out[key] = _count(raw, name(key), 1)
        elif key == "gpus":
            out[key] = _count(raw, name(key), 0)
        elif key in ("partition", "mem"):
            if not isinstance(raw, (str, int)) or isinstance(raw, bool) or not str(raw).strip():
                raise SweepError(f"{name(key)}: expected a text, got {raw!r}")
            if key == "mem" and not re.fullmatch(r"\d+[KMGT]?B?", str(raw).strip(), re.IGNORECASE):
                raise SweepError(f"{name(key)}: expected a memory size like 16G or 4000M, got {raw!r}")
            out[key] = str(raw).strip()
        elif key == "sbatch":
            out[key] = _directives(raw, "--sbatch" if flag_names else name(key))
        elif key == "setup":
            lines = [raw] if isinstance(raw, str) else raw
            if not isinstance(lines, (list, tuple)) or not all(isinstance(line, str) for line in lines):
                raise SweepError(f"{name(key)}: expected shell lines (a text or a list of texts), got {raw!r}")
            out[key] = tuple(lines)
    return SlurmOptions(**out)
