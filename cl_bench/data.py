"""Where datasets come from: the data root, the cache folder, and the errors a user can fix
(missing data set, unusable data root or cache folder)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DATA_ENV = "CL_BENCH_DATA"
CACHE_ENV = "CL_BENCH_CACHE"


class DatasetMissingError(FileNotFoundError):
    """A dataset is absent from the data root and download is off (or impossible)."""

    def __init__(self, dataset: str, looked: list[Path | str], how: str):
        self.dataset = dataset
        paths = "\n".join(f"  - {p}" for p in looked)
        super().__init__(f"dataset {dataset!r} not found. Looked at:\n{paths}\n{how}")


class DataAccessError(ValueError):
    """The data root, the cache folder or a data file exists but cannot be used (not a folder, no
    permission, disk full). A ValueError so that the CLI prints its message as one line."""


def reason(e: OSError) -> str:
    """The short reason of an OS error ("Permission denied"), without the path it repeats."""
    return e.strerror or str(e)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: the given path, else $CL_BENCH_DATA, else ./data."""
    return Path(root or os.environ.get(DATA_ENV) or "data").expanduser().resolve()


def check_data_root(root: Path) -> Path:
    """``root`` if it can be searched for data sets. A root that does not exist is fine (every data
    set is then missing, and the missing-data error lists where it looked); a file, or a folder this
    user cannot read, is a ``DataAccessError`` saying how to fix it."""
    how = f"pass --data-root or set ${DATA_ENV} to the folder that holds the data sets"
    if root.exists() and not root.is_dir():
        raise DataAccessError(f"data root {root} is a file, not a folder: {how}")
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise DataAccessError(
            f"cannot read data root {root} (permission denied): give this user read and "
            f"execute permission on it, or {how}"
        )
    return root


def cache_dir(root: Path) -> Path:
    """Derived files (parsed idx, prepared tensors, checksum memo) live here, never inside the data
    root, which may be read-only. One folder per data root; it must be writable."""
    base = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cl-bench")
    key = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    folder = base / f"{root.name}-{key}"
    how = f"set ${CACHE_ENV} to a writable folder, or fix the permissions of {base}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file in the way, no permission, read-only file system
        raise DataAccessError(f"cannot create the cache folder {folder} ({reason(e)}): {how}") from e
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        raise DataAccessError(f"cannot write to the cache folder {folder} (permission denied): {how}")
    return folder


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
