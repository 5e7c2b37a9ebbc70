"""Which strategy a stored run is, and what its defaults are, without running any user code.

A run of a user file is stored under its class's ``name`` (cl_bench.runner.RunConfig.strategy_name).
Runs stored before that (by 0.1) carry the ``path/to/file.py:Class`` string they were launched with,
relative to the folder they were launched from: the report keys them by the name the class declares in
that file, read without running it (cl_bench.strategy_files; looked up from the current folder, then
from the store's folder and its parents), else by the class's name. The defaults of a user file's
hyperparameters are read from its syntax tree the same way; a file that cannot be read so (a missing
file, defaults computed by code), or an adapter not installed, is still reported, under its name,
without its defaults. Reading commands never import a strategy file.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from pathlib import Path

from cl_bench.registry import get_strategy, is_strategy_file
from cl_bench.store import RunRecord
from cl_bench.strategy_files import static_name, static_strategy

PARENTS_SEARCHED = 4  # store folder and its parents: stores live in <project>/reports/<setup>/runs.db


def search_folders(store: str | os.PathLike | None) -> list[Path]:
    """Where a relative strategy path may be relative to: here, then the store's folder and its parents."""
    folders = [Path.cwd()]
    if store:
        folder = Path(store).resolve().parent
        folders += [folder, *list(folder.parents)[:PARENTS_SEARCHED]]
    return list(dict.fromkeys(folders))


def strategy_key(name: str, folders: Sequence[Path] = ()) -> str:
    """The name a strategy is grouped under: registered and class names unchanged; a 0.1 file run by the
    name its class declares (read, never run), else by the class's name."""
    found = _found_file(name, folders)
    if found is None:
        return name.rpartition(":")[2] if ".py:" in name else name
    try:
        return static_name(found)
    except (ValueError, OSError):  # the file changed beyond reading: its class's name
        return found.rpartition(":")[2]


def _found_file(name: str, folders: Sequence[Path] = ()) -> str | None:
    """``resolved/path/file.py:Class`` of a stored file strategy name, if the file is found here."""
    if not is_strategy_file(name) or ".py:" not in name:
        return None
    path, _, cls = name.rpartition(":")
    p = Path(path)
    for base in [Path("/")] if p.is_absolute() else list(folders) or [Path.cwd()]:
        candidate = base / p
        if candidate.is_file():
            return f"{candidate.resolve()}:{cls}"
    return None


def normalise_records(records: Sequence[RunRecord], store: str | os.PathLike | None = None) -> list[RunRecord]:
    """Copies of ``records`` whose ``strategy`` is its ``strategy_key`` (the stored records are left as they
    are). A user file's defaults are remembered for ``default_hparams``: those its runs recorded, or those
    its file declares (read, never run) for runs stored by 0.1."""
    folders = search_folders(store)
    out = []
    for r in records:
        key = strategy_key(r.strategy, folders)
        recorded = (r.identity or {}).get("hparam_defaults")
        if isinstance(recorded, dict):
            _FILE_DEFAULTS[key] = (recorded, "")
        elif key != r.strategy and key not in _FILE_DEFAULTS:
            found = _found_file(r.strategy, folders)
            _FILE_DEFAULTS[key] = _defaults(found) if found else (None, "its file is not found here")
        out.append(r if key == r.strategy else dataclasses.replace(r, strategy=key))
    return out


_FILE_DEFAULTS: dict[str, tuple[dict | None, str]] = {}  # a user file's name -> (its defaults, or why none)


@functools.cache
def _defaults(name: str) -> tuple[dict | None, str]:
    try:
        cls = static_strategy(name) if is_strategy_file(name) else get_strategy(name)  # never runs a file
    except Exception as e:  # noqa: BLE001 - a plugin may raise anything on import: report it
        return None, f"not readable here: {type(e).__name__}: {e}".splitlines()[0][:200]
    try:
        return dataclasses.asdict(cls.Hparams()), ""
    except Exception:  # noqa: BLE001 - e.g. an adapter's Hparams with required fields
        return None, "its hyperparameters have no registered defaults"


def default_hparams(name: str) -> dict | None:
    """The strategy's default hyperparameters; None when they cannot be known here without running code
    (or its Hparams has a field without a default)."""
    return (_FILE_DEFAULTS.get(name) or _defaults(name))[0]


def import_problem(name: str) -> str:
    """Why ``default_hparams(name)`` is None, in words ('' when it is not)."""
    return (_FILE_DEFAULTS.get(name) or _defaults(name))[1]
