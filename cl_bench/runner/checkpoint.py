"""Per-task checkpoints of a run, so a killed run resumes from its last finished task.

After each task but the last, ``runner.execute`` writes one file, atomically (a temporary file in the
same folder, then ``os.replace``), holding plain tensors and plain Python values only:

- the model's ``state_dict`` and the strategy's state between tasks (``Strategy.save_state()``, below);
- the accuracy rows finished so far and the per-epoch history;
- every random state the rest of the run reads: the trainer's batch-shuffling generator, torch's
  global generator (dropout, strategies' draws), numpy's and Python's global generators (and CUDA's).

Never a pickled strategy object: files load with ``torch.load(weights_only=True)`` and stay
readable across library versions. Restoring all of the above makes a resumed run's accuracy matrix
equal to an uninterrupted run's on CPU.

A checkpoint also records the run's identity (cl_bench.runner.identity): one made with another version of the
strategy file or other data is ignored, never resumed.

Checkpoints live beside the results store, ``<store>.checkpoints/<run_id>.pt``, and are deleted when
the run is written to the store (finished or failed).

Strategy state: a strategy that keeps state outside ``self.model`` between tasks (HAT's cumulative
masks, EWC's Fisher and old weights, a random generator) names it in ``keeps`` or returns it as plain
values from ``save_state()`` (cl_bench.strategy; ``keeps = ()`` when the model is everything). Only
strategies that say so are checkpointed; the others restart from task 1 (safe by default: a strategy
that says nothing is never resumed from its model alone). Tensors are saved from and loaded onto the
CPU; ``load_state`` puts them back on the run's device. tests/test_checkpoint.py checks that every
checkpointed strategy resumes to the same accuracy matrix as an uninterrupted run.
"""

from __future__ import annotations

import os
import random
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cl_bench.strategy import Strategy
from cl_bench.trainer import EpochLog

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    pass


def checkpoint_dir(store_path: str | os.PathLike) -> Path:
    """``<store>.checkpoints``: beside the store, so a store and its unfinished runs travel together."""
    path = Path(store_path)
    return path.with_name(path.name + ".checkpoints")


def checkpoint_path(store_path: str | os.PathLike, run_id: str) -> Path:
    return checkpoint_dir(store_path) / f"{run_id}.pt"


def resume_refusal(strategy_cls: type[Strategy]) -> str | None:
    """None if runs of this strategy can be checkpointed and resumed exactly, else why not."""
    if strategy_cls.resumable():
        return None
    return (
        f"strategy {getattr(strategy_cls, 'name', strategy_cls.__name__)!r} declares neither `keeps` nor "
        f"save_state()/load_state() for the state it keeps outside its model, so its "
        f"runs are not checkpointed: a killed run restarts from task 1"
    )


# ---- random states as plain values ---------------------------------------------------------------
def _rng_state(device: torch.device) -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "state": list(py_state), "gauss": py_gauss},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- save / load ---------------------------------------------------------------------------------
def save(
    path: Path,
    *,
    run_id: str,
    code_version: str,
    next_task: int,
    strategy,
    trainer,
    accuracy: np.ndarray,
    identity: dict[str, Any] | None = None,
    valid_accuracy: np.ndarray | None = None,
    wall_s: float | None = None,
) -> bool:
    """Write the state after task ``next_task - 1`` atomically: a reader sees the old file or the new
    one, never half of one, whatever kills the process. A folder that cannot be written (a full disk,
    a read-only node of a cluster) costs the checkpoint, not the run: warn and return False."""
    import dataclasses

    strategy_state = strategy.save_state()
    payload = {
        "format": FORMAT_VERSION,
        "run_id": run_id,
        "identity": dict(identity or {}),  # cl_bench.runner.identity: the strategy file's and the data's fingerprints
        "code_version": code_version,
        "next_task": next_task,
        "model": {k: v.detach().cpu() for k, v in strategy.model.state_dict().items()},
        "strategy": strategy_state,
        "accuracy": torch.from_numpy(np.asarray(accuracy[:next_task], dtype=np.float64)),
        "valid_accuracy": None
        if valid_accuracy is None
        else torch.from_numpy(np.asarray(valid_accuracy[:next_task], dtype=np.float64)),
        "history": [dataclasses.asdict(h) for h in trainer.history],
        "trainer_rng": trainer.generator.get_state(),
        "wall_s": wall_s,  # the run's wall time so far, over every sitting: a resumed run adds its own
        "rng": _rng_state(strategy.device),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        warnings.warn(f"cannot write checkpoint {path} ({e}); run {run_id} goes on without", stacklevel=2)
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        warnings.warn(f"cannot write checkpoint {path} ({e}); run {run_id} goes on without", stacklevel=2)
        return False
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def load(path: Path, run_id: str, identity: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it is a readable checkpoint of ``run_id`` made with the same strategy
    file and data (``identity``; a checkpoint that recorded none is not compared), else None (with a
    warning saying why it is ignored: the run then starts from task 1)."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated by a full disk, from another torch, not a checkpoint, ...
        warnings.warn(
            f"ignoring unreadable checkpoint {path} ({type(e).__name__}: {e}); run {run_id} starts from task 1",
            stacklevel=2,
        )
        return None
    if payload.get("format") != FORMAT_VERSION or payload.get("run_id") != run_id:
        warnings.warn(
            f"ignoring checkpoint {path}: format {payload.get('format')} of run "
            f"{payload.get('run_id')}, expected format {FORMAT_VERSION} of run {run_id}",
            stacklevel=2,
        )
        return None
    stored, current = payload.get("identity") or {}, identity or {}
    changed = [
        k
        for k in ("strategy_source", "data")
        if stored.get(k) is not None and current.get(k) is not None and stored[k] != current[k]
    ]
    if changed:
        warnings.warn(
            f"ignoring checkpoint {path}: made with another {' and '.join(changed)} "
            f"(strategy file / data changed since); run {run_id} starts from task 1",
            stacklevel=2,
        )
        return None
    return payload


def restore(
    payload: dict[str, Any], strategy, trainer, accuracy: np.ndarray, valid_accuracy: np.ndarray | None = None
) -> int:
    """Put a loaded checkpoint back into a freshly built strategy and trainer; returns the next task.
    A checkpoint written before validation rows were kept leaves ``valid_accuracy``'s rows NaN."""
    k = int(payload["next_task"])
    strategy.model.load_state_dict(payload["model"])
    strategy.load_state(payload["strategy"])
    accuracy[:k] = payload["accuracy"].numpy()
    if valid_accuracy is not None and payload.get("valid_accuracy") is not None:
        valid_accuracy[:k] = payload["valid_accuracy"].numpy()
    trainer.history = [EpochLog(**h) for h in payload["history"]]
    trainer.generator.set_state(payload["trainer_rng"])
    _set_rng_state(payload["rng"], strategy.device)
    return k


def remove(path: Path | None) -> None:
    """Delete a run's checkpoint (and the folder once empty) when the run is in the store."""
    if path is None:
        return
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass  # not empty (other runs in flight) or already gone
