"""Where datasets come from: the data root, the cache folder, and the missing-dataset error."""
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


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: the given path, else $CL_BENCH_DATA, else ./data."""
    return Path(root or os.environ.get(DATA_ENV) or "data").expanduser().resolve()


def cache_dir(root: Path) -> Path:
    """Derived files (extracted idx, prepared tensors) live here, never inside the data root, which
    may be read-only (../shared/data is). One folder per data root."""
    base = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cl-bench")
    key = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    folder = base / f"{root.name}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
