"""Dataset loaders: raw uint8 train/test arrays from a data root, in the formats users have.

Each loader returns a ``RawDataset``: uint8 images NCHW (or NHW for grayscale), int64 labels, and a
record of where they came from (files, sha256, complete or subset).
"""
from __future__ import annotations

import gzip
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cl_bench.data import DatasetMissingError, cache_dir, sha256

SHARED_README = ("../shared/data/README.md describes the plain format every loader also reads: "
                 "<root>/<name>/{train,test}.npz with `x` uint8 NHWC and `y` int64.")


@dataclass
class RawDataset:
    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int
    source: dict[str, Any] = field(default_factory=dict)


IDX_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (plain or .gz): header of big-endian int32 dims, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte data
        raise ValueError(f"{path}: not a uint8 idx file (magic {magic:#x})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: truncated or corrupt idx file: header says {dims} "
                         f"({int(np.prod(dims))} values) but holds {data.size}")
    return data.reshape(dims)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_idx_dataset(name: str, root: Path, download: bool, n_classes: int = 10) -> RawDataset:
    """MNIST or FashionMNIST from ``root/<name>/raw``: uncompressed idx (torchvision's layout), the
    .gz files (as ../shared/data ships them; parsed into a cache outside the root), or a torchvision
    download into the root when ``download`` is on."""
    raw = root / name / "raw"
    plain = {k: raw / v for k, v in IDX_FILES.items()}
    gz = {k: raw / (v + ".gz") for k, v in IDX_FILES.items()}
    if all(p.is_file() for p in plain.values()):
        files = plain
    elif all(p.is_file() for p in gz.values()):
        files = gz
    elif download:
        import torchvision
        getattr(torchvision.datasets, name)(str(root), train=True, download=True)
        files = plain
    else:
        raise DatasetMissingError(
            name, [*plain.values(), *gz.values()],
            f"Download is off: pass --download (torchvision fetches {name} into the data root), or put "
            f"the four idx files (plain or .gz) in {raw}. {SHARED_README}")
    sums = {k: sha256(p) for k, p in files.items()}
    cached = cache_dir(root) / f"{name}-{sums['x_train'][:16]}-{sums['x_test'][:16]}.pt"
    if cached.is_file():
        arrays = torch.load(cached)
    else:
        arrays = {k: torch.from_numpy(read_idx(p).copy()) for k, p in files.items()}
        for k in ("y_train", "y_test"):
            arrays[k] = arrays[k].long()
        _atomic_torch_save(arrays, cached)
    return RawDataset(name, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                      n_classes, {"files": {str(p): sums[k] for k, p in files.items()},
                                  "complete": len(arrays["y_train"]) == 60000})
