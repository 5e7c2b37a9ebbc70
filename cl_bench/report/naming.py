"""Which strategy a stored run is, whatever path string named it, and what its defaults are (if it can be
imported here).

A run of a user file stores the ``path/to/file.py:Class`` string it was launched with, relative to the
folder it was launched from. The report keys such runs by the file's resolved path (looked up from the
current folder, then from the store's folder and its parents), so one file named by two path strings is
one strategy, and a report run from another folder finds it; a file found nowhere is keyed by its
normalised path string. A strategy that cannot be imported here (a missing file, an adapter not
installed, an import error) is still reported, under its stored name, without its defaults.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from pathlib import Path

from cl_bench.registry import get_strategy, is_strategy_file
from cl_bench.store import RunRecord

PARENTS_SEARCHED = 4  # store folder and its parents: stores live in <project>/reports/<setup>/runs.db


def search_folders(store: str | os.PathLike | None) -> list[Path]:
    """Where a relative strategy path may be relative to: here, then the store's folder and its parents."""
    folders = [Path.cwd()]
    if store:
        folder = Path(store).resolve().parent
        folders += [folder, *list(folder.parents)[:PARENTS_SEARCHED]]
    return list(dict.fromkeys(folders))


def strategy_key(name: str, folders: Sequence[Path] = ()) -> str:
    """The name a strategy is grouped under: registered names unchanged; a file as its resolved path."""
    if not is_strategy_file(name):
        return name
    path, sep, cls = name.rpartition(":") if ".py:" in name else (name, "", "")
    p = Path(path)
    for base in [Path("/")] if p.is_absolute() else list(folders) or [Path.cwd()]:
        candidate = base / p
        if candidate.is_file():
            return f"{candidate.resolve()}{sep}{cls}"
    return f"{os.path.normpath(path)}{sep}{cls}"


def normalise_records(records: Sequence[RunRecord], store: str | os.PathLike | None = None) -> list[RunRecord]:
    """Copies of ``records`` whose ``strategy`` is its ``strategy_key`` (the stored records are left as they are)."""
    folders = search_folders(store)
    out = []
    for r in records:
        key = strategy_key(r.strategy, folders)
        out.append(r if key == r.strategy else dataclasses.replace(r, strategy=key))
    return out


@functools.cache
def _defaults(name: str) -> tuple[dict | None, str]:
    try:
        cls = get_strategy(name)
    except Exception as e:  # noqa: BLE001 - a user file or plugin may raise anything on import: report it
        return None, f"not importable here: {type(e).__name__}: {e}".splitlines()[0][:200]
    try:
        return dataclasses.asdict(cls.Hparams()), ""
    except Exception:  # noqa: BLE001 - e.g. an adapter's Hparams with required fields
        return None, "its hyperparameters have no registered defaults"


def default_hparams(name: str) -> dict | None:
    """The strategy's registered default hyperparameters; None when it cannot be imported here (or its
    Hparams has a field without a default)."""
    return _defaults(name)[0]


def import_problem(name: str) -> str:
    """Why ``default_hparams(name)`` is None, in words ('' when it is not)."""
    return _defaults(name)[1]
