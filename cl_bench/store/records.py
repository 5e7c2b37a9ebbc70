"""What the results store holds, as Python values: a run (``RunRecord``), an attempt (``Attempt``), what
a save did (``Saved``), what decides whether a stored run may be served (``StoredIdentity``), and the
JSON the store writes them as. cl_bench.store re-exports them all."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The runner's own entry in a run's ``monitoring`` (beside each strategy's, e.g. "hat"): the validation
# accuracy matrix, stored there so that stores of any schema version hold it.
VALIDATION = "validation"


def validation_monitoring(valid_accuracy: np.ndarray) -> dict[str, Any]:
    """``monitoring[VALIDATION]`` for a (T, T) matrix: rows as lists, None where not measured."""
    return {"accuracy": [[None if np.isnan(v) else float(v) for v in row] for row in valid_accuracy]}


MAX_TAG_LENGTH = 100  # a label, not a note: `runs list` prints tags in one column


def check_tags(tags: Iterable[Any], where: str = "tag") -> list[str]:
    """The tags as texts, or ValueError naming the first that is empty, longer than MAX_TAG_LENGTH or
    holds a newline, an escape code or another control character (they would break `runs list` and
    terminals). Every way in (cl-bench run --tag, sweep files, cl-bench runs tag) checks here."""
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
        raise ValueError(f"{where}: expected a list of texts, got {tags!r}")
    out = []
    for tag in tags:
        if not isinstance(tag, (str, int, float)) or isinstance(tag, bool):
            raise ValueError(f"{where}: a tag is a text, got {tag!r}")
        text = str(tag)
        if not text.strip():
            raise ValueError(f"{where}: a tag cannot be empty")
        if len(text) > MAX_TAG_LENGTH:
            raise ValueError(
                f"{where}: a tag has at most {MAX_TAG_LENGTH} characters, got {len(text)} ({text[:30]!r}...)"
            )
        bad = next((c for c in text if unicodedata.category(c)[0] == "C"), None)
        if bad is not None:
            raise ValueError(f"{where}: {text!r} holds the control character {bad!r}; a tag is printable text")
        out.append(text)
    return out


def config_hash(config: dict[str, Any]) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class RunRecord:
    run_id: str
    strategy: str
    scenario: str
    seed: int
    hparams: dict[str, Any]
    protocol: dict[str, Any]
    scenario_options: dict[str, Any]
    status: str
    accuracy: np.ndarray | None = None  # (T, T), NaN above the diagonal
    tags: list[str] = field(default_factory=list)
    error: str | None = None
    code_version: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    started: float | None = None
    finished: float | None = None
    wall_s: float | None = None
    monitoring: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    identity: dict[str, Any] = field(default_factory=dict)  # cl_bench.runner.identity; {} for runs stored before it

    @property
    def n_tasks(self) -> int | None:
        return None if self.accuracy is None else int(self.accuracy.shape[0])

    @property
    def valid_accuracy(self) -> np.ndarray | None:
        """(T, T) accuracy on each task's validation split after each task (NaN above the diagonal and
        where not measured), what hyperparameter selection may read instead of the test matrix; None
        for runs stored before it was recorded."""
        entry = (self.monitoring or {}).get(VALIDATION)
        rows = entry.get("accuracy") if isinstance(entry, dict) else None
        return None if rows is None else np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)


@dataclass(frozen=True)
class Saved:
    """What ``Store.save`` did: the attempt's number, and whether an earlier finished result was kept
    (the run failed and a finished result of the same run_id stays in the store)."""

    attempt: int
    kept: bool = False


@dataclass(frozen=True)
class Attempt:
    run_id: str
    attempt: int
    status: str  # finished | failed | killed
    error: str | None
    started: float | None
    finished: float | None
    wall_s: float | None
    code_version: str | None
    replaced: bool = False  # a finished result a later finished run replaced (kept in attempts.result)


@dataclass(frozen=True)
class StoredIdentity:
    """What decides whether a stored run may be served for a configuration (cl_bench.runner.identity)."""

    status: str
    strategy: str
    scenario: str
    scenario_options: dict[str, Any]
    identity: dict[str, Any] | None  # None: stored before identities were recorded
    data: dict[str, Any]


def dump_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=_json_default)


def _json_default(o: Any):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if hasattr(o, "tolist"):  # torch tensors
        return o.tolist()
    return str(o)
