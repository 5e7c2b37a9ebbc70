"""Checksums of the source files and the derived-file cache.

- ``file_sha256s``: sha256 of each source file, memoised per data root by (size, mtime), so a second
  run does not re-hash a gigabyte.
- ``verify_sha256sums``: a ``SHA256SUMS`` file in the data root (``sha256sum -c`` format) is enforced
  for the files it lists.
- The prepared-tensor cache: one file per data set in ``cl_bench.data.cache_dir(root)``, keyed by the
  checksums of its source files, written atomically; a damaged cache file is rebuilt, never trusted.

The data root itself is never written to (it may be read-only).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cl_bench.benchmarks.formats import CorruptDatasetError
from cl_bench.data import cache_dir, sha256


def file_sha256s(paths: list[Path], root: Path) -> dict[Path, str]:
    """sha256 of each file; unchanged files (same size and mtime) are not re-hashed."""
    memo_path = cache_dir(root) / "sha256-memo.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    out, changed = {}, False
    for path in paths:
        st = path.stat()
        key, stamp = str(path.resolve()), [st.st_size, st.st_mtime_ns]
        if key in memo and memo[key][:2] == stamp:
            out[path] = memo[key][2]
        else:
            out[path] = sha256(path)
            memo[key], changed = [*stamp, out[path]], True
    if changed:
        fd, tmp = tempfile.mkstemp(dir=memo_path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(memo, f)
        os.replace(tmp, memo_path)
    return out


def verify_sha256sums(root: Path, sums: dict[Path, str]) -> None:
    """Enforce ``<root>/SHA256SUMS`` (``sha256sum -c`` format) for the files it lists."""
    listing = root / "SHA256SUMS"
    if not listing.is_file():
        return
    expected = {}
    for line in listing.read_text().splitlines():
        digest, _, rel = line.strip().partition("  ")
        if rel:
            expected[rel.lstrip("*")] = digest
    for path, digest in sums.items():
        try:
            rel = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
        if rel in expected and expected[rel] != digest:
            raise CorruptDatasetError(f"{path}: sha256 {digest} does not match {listing} "
                                      f"({expected[rel]}): the file is corrupt or was modified")


def checked_sha256s(paths: list[Path], root: Path) -> dict[Path, str]:
    """``file_sha256s`` of the files, checked against the root's ``SHA256SUMS`` if it has one."""
    sums = file_sha256s(paths, root)
    verify_sha256sums(root, sums)
    return sums


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then a rename: readers never see a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# -- the prepared-tensor cache --------------------------------------------------------------------

def prepared_path(root: Path, name: str, kind: str, sums: dict[Path, str], version: int) -> Path:
    """The cache file of data set ``name`` read from files with checksums ``sums`` (found as
    ``kind``); ``version`` is the adaptation's version, so a changed adaptation misses the cache."""
    key = hashlib.sha256(json.dumps([version, name, kind, sorted(
        (str(p), s) for p, s in sums.items())]).encode()).hexdigest()[:16]
    return cache_dir(root) / f"prepared-{name}-{key}.pt"


def read_prepared(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """The cached (arrays, source record), memory-mapped; None when there is no usable file."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, mmap=True, weights_only=True)
        return blob["arrays"], blob["source"]
    except Exception as e:  # noqa: BLE001 - a damaged cache file is rebuilt, never trusted
        warnings.warn(f"rebuilding unreadable cache file {path}: {e}")
        return None


def write_prepared(path: Path, name: str, arrays: dict[str, Tensor], source: dict[str, Any]) -> None:
    """Store one data set's prepared tensors and drop the older cache files of the same data set."""
    atomic_torch_save({"arrays": arrays, "source": source}, path)
    for stale in path.parent.glob(f"prepared-{name}-*.pt"):
        if stale != path:
            stale.unlink(missing_ok=True)
