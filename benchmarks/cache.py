"""Checksums of the source files, the root's ``SHA256SUMS``, and the derived-file cache.

- ``file_sha256s``: sha256 of each source file, memoised per data root by (size, mtime, ctime, inode),
  so a second run does not re-hash a gigabyte. ctime is in the stamp because every write changes it
  and, unlike mtime, it cannot be set back: an edit that keeps size and mtime is still re-hashed.
- ``verify_sha256sums``: a ``SHA256SUMS`` file in the data root (``sha256sum`` output, text or binary
  mode, or ``--tag``) is enforced for the files it lists. A file is matched by its path as found in
  the root and by the path it resolves to, so a symlinked file (or folder) is checked like any other.
- The prepared-tensor cache: one file per derived data set in ``cl_bench.data.cache_dir(root)``, keyed
  by the checksums of every source file it is derived from (images and labels alike), the
  preparation version and whatever else the preparation depends on; written atomically; checked
  when read. A damaged or malformed cache file is rebuilt, never trusted.

The data root itself is never written to (it may be read-only).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cl_bench.benchmarks.formats import CorruptDatasetError
from cl_bench.data import CACHE_ENV, DataAccessError, cache_dir, reason, sha256


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _read_memo(path: Path) -> dict[str, Any]:
    try:
        memo = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def file_sha256s(paths: list[Path], root: Path) -> dict[Path, str]:
    """sha256 of each file; unchanged files (same size, mtime, ctime and inode) are not re-hashed."""
    memo_path = cache_dir(root) / "sha256-memo.json"
    memo = _read_memo(memo_path)
    out, changed = {}, False
    for path in paths:
        try:
            key, stamp = str(path.resolve()), _stamp(path.stat())
            entry = memo.get(key)
            if isinstance(entry, list) and len(entry) == 5 and entry[:4] == stamp and isinstance(entry[4], str):
                out[path] = entry[4]
            else:
                out[path] = sha256(path)
                memo[key], changed = [*stamp, out[path]], True
        except OSError as e:
            raise DataAccessError(
                f"cannot read {path} ({reason(e)}): give this user read permission on it "
                "(and on its folders), or replace it"
            ) from e
    if changed:
        atomic_write(memo_path, lambda tmp: Path(tmp).write_text(json.dumps(memo)))
    return out


# -- SHA256SUMS -------------------------------------------------------------------------------------

_PLAIN = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")  # sha256sum: "<hex>  <path>" or "<hex> *<path>"
_TAGGED = re.compile(r"SHA256 \((.+)\) = ([0-9a-fA-F]{64})")  # sha256sum --tag


def read_sha256sums(listing: Path) -> dict[str, str]:
    """The digests a ``SHA256SUMS`` file lists, by normalised relative path. A line in no known
    format is an error: a listing that is only half understood would check only half the files."""
    try:
        text = listing.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise CorruptDatasetError(f"{listing}: cannot read ({e}): fix or remove it") from e
    expected = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r")
        escaped = line.startswith("\\")  # sha256sum escapes names holding a backslash or a newline
        body = line[1:] if escaped else line
        if not body.strip():
            continue
        if m := _PLAIN.fullmatch(body):
            digest, rel = m.group(1), m.group(2)
        elif m := _TAGGED.fullmatch(body):
            rel, digest = m.group(1), m.group(2)
        else:
            raise CorruptDatasetError(
                f"{listing}: line {number} is not a sha256sum line ('<64 hex digits>  <path>'): {line[:80]!r}"
            )
        if escaped:
            rel = rel.replace("\\\\", "\0").replace("\\n", "\n").replace("\0", "\\")
        expected[posixpath.normpath(rel)] = digest.lower()
    return expected


def _names_in_root(path: Path, root: Path) -> set[str]:
    """How a listing may name ``path``: relative to ``root`` as found (symlinks kept) and as resolved
    (symlinks followed), or absolute (either way)."""
    names = {os.path.abspath(path), str(path.resolve())}
    for p, r in ((Path(os.path.abspath(path)), Path(os.path.abspath(root))), (path.resolve(), root.resolve())):
        try:
            names.add(p.relative_to(r).as_posix())
        except ValueError:  # a symlink that leads out of the root: its path as found still counts
            pass
    return names


def verify_sha256sums(root: Path, sums: dict[Path, str]) -> None:
    """Enforce ``<root>/SHA256SUMS`` for the files it lists (files it does not list are not checked)."""
    listing = root / "SHA256SUMS"
    if not listing.is_file():
        return
    expected = read_sha256sums(listing)
    for path, digest in sums.items():
        for rel in sorted(_names_in_root(path, root) & expected.keys()):
            if expected[rel] != digest:
                raise CorruptDatasetError(
                    f"{path}: sha256 {digest} does not match {listing} "
                    f"({expected[rel]} for {rel}): the file is corrupt or was modified; "
                    "replace it with the original"
                )


def checked_sha256s(paths: list[Path], root: Path) -> dict[Path, str]:
    """``file_sha256s`` of the files, checked against the root's ``SHA256SUMS`` if it has one."""
    sums = file_sha256s(paths, root)
    verify_sha256sums(root, sums)
    return sums


# -- writing cache files ----------------------------------------------------------------------------


def atomic_write(path: Path, write: Callable[[str], Any]) -> None:
    """``write(tmp)`` to a temporary file next to ``path``, then a rename: readers never see a
    half-written file. A failure (disk full, no permission) is a ``DataAccessError`` naming the file."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise DataAccessError(
            f"cannot write the cache file {path} ({reason(e)}): free some space, fix the "
            f"folder's permissions or set ${CACHE_ENV} to a writable folder"
        ) from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through ``atomic_write``."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


# -- the prepared-tensor cache --------------------------------------------------------------------


def prepared_path(root: Path, name: str, kind: str, sums: dict[Path, str], version: int, extra: Any = None) -> Path:
    """The cache file of data set ``name`` derived from the files with checksums ``sums`` (all of
    them: images and labels), found as ``kind``. ``version`` is the preparation's version, so a
    changed preparation misses the cache; ``extra`` (JSON-able) is anything else it depends on."""
    key = hashlib.sha256(
        json.dumps([version, name, kind, extra, sorted((str(p), s) for p, s in sums.items())]).encode()
    ).hexdigest()[:16]
    return cache_dir(root) / f"prepared-{name}-{key}.pt"


def check_arrays(arrays: Any) -> None:
    """Prepared arrays: ``x_{train,test}`` uint8 with one ``y_{train,test}`` int64 label per image."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if not (isinstance(x, Tensor) and isinstance(y, Tensor)):
            raise TypeError(f"{split}: not tensors")
        if x.dtype != torch.uint8 or y.dtype != torch.int64 or y.ndim != 1 or x.ndim < 2 or len(x) != len(y):
            raise ValueError(f"{split}: x {x.dtype} {tuple(x.shape)}, y {y.dtype} {tuple(y.shape)}")


def read_prepared(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """The cached (arrays, source record), memory-mapped; None when there is no usable file."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, mmap=True, weights_only=True)
        arrays, source = blob["arrays"], blob["source"]
        check_arrays(arrays)
        if not isinstance(source, dict):
            raise TypeError("the source record is not a dict")
        return arrays, source
    except Exception as e:  # noqa: BLE001 - a damaged cache file is rebuilt, never trusted
        warnings.warn(f"rebuilding unreadable cache file {path}: {e}", stacklevel=2)
        return None


def write_prepared(path: Path, name: str, arrays: dict[str, Tensor], source: dict[str, Any]) -> None:
    """Store one data set's prepared tensors and drop the older cache files of the same data set."""
    atomic_torch_save({"arrays": arrays, "source": source}, path)
    for stale in path.parent.glob(f"prepared-{name}-*.pt"):
        if stale != path:
            stale.unlink(missing_ok=True)
