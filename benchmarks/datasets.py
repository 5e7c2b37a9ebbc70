"""Preparation and availability of the data sets, and the package's public face for data.

Two entry points:

- ``load_idx_dataset(name, root)``: MNIST / FashionMNIST at 28x28, for split and permuted MNIST.
- ``load_prepared(name, root)``: the eight data sets of HAT's mixture as ``(N, 3, 32, 32)`` uint8,
  adapted exactly as the authors' code adapts them, with the authors'
  normalisation constants in ``SPECS``. ``availability(root)`` says what a root holds.

Where each data set is looked for is ``catalogue``'s job, reading its files ``formats``', checksums
and the derived-file cache ``cache``'s. The names users and scenarios need from all of them are
importable from here.

Adaptations (the authors' ``mixture.py``), applied once and cached:

- MNIST, FashionMNIST: 28x28 padded by 2 px of 0 to 32x32, replicated to 3 channels.
- notMNIST: HAT's pickle is already 32x32 (``notmnist_convert`` resized the 28x28 notMNIST_small
  PNGs with PIL ``Image.ANTIALIAS``, i.e. Lanczos). A 28x28 source is resized the same way, not
  padded: padding would change the pixel statistics the reference's constants (mean 0.4254)
  describe, resizing keeps them (tests/benchmarks/test_datasets.py checks this).
- FaceScrub: HAT's pickle holds ``reshape((3, 32, 32))`` of HWC images, i.e. scrambled channels, and
  HAT trains on that. By default a true-RGB HWC source (the npz) is turned into the same scrambled
  layout by a plain reshape; ``facescrub_true_rgb=True`` gives real CHW colour planes instead.
- SVHN: labels 0..9 with digit 0 as class 0 (as torchvision >= 0.2 returns them; the reference's
  ``label - 1`` was only right for torchvision 0.1.9).
- GTSRB: HWC -> CHW. From the official variable-size PPMs (torchvision's layout) each full frame is
  resized to 32x32 bilinearly without antialiasing (as ``cv2.resize``; the resize behind HAT's
  Udacity pickle is not documented).

Checks: every file read is checksummed (sha256, memoised by size, mtime, ctime and inode); a
``SHA256SUMS`` file in the root is enforced (symlinked files too); official CIFAR / SVHN files with
the official sample count must have torchvision's md5, and so must every download; shapes, dtypes,
image/label counts and label ranges are checked. Any failure names the file. Both caches (the parsed
idx files, the prepared 32x32 tensors) are keyed by the checksums of every file they derive from and
by their preparation version. A data root that is a file or cannot be read, a cache folder that cannot
be written: ``DataAccessError`` (a ValueError) saying how to fix it.
A subset (fewer samples than the official set) is used with a ``SubsetWarning`` and recorded as
``complete: False``.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cl_bench.benchmarks.cache import checked_sha256s, file_sha256s, prepared_path, read_prepared, write_prepared
from cl_bench.benchmarks.catalogue import (
    GRAY,
    LAYOUTS,
    PLAIN_FORMAT,
    SPECS,
    DatasetSpec,
    Layout,
    Source,
    check_name,
    locate,
    looked_at,
    missing_hint,
    searching,
)
from cl_bench.benchmarks.downloads import check_official_md5, download_files
from cl_bench.benchmarks.formats import (
    IDX_FILES,
    CorruptDatasetError,
    check_label_range,
    idx_files,
    lanczos_32,
    read_idx,
    read_idx_pair,
)
from cl_bench.data import DataAccessError, DatasetMissingError, cache_dir, check_data_root, data_root

__all__ = [
    "GRAY",
    "IDX_FILES",
    "IDX_VERSION",
    "LAYOUTS",
    "PLAIN_FORMAT",
    "PREP_VERSION",
    "SPECS",
    "CorruptDatasetError",
    "DataAccessError",
    "DatasetSpec",
    "DatasetsMissingError",
    "Layout",
    "RawDataset",
    "Source",
    "SubsetWarning",
    "availability",
    "file_sha256s",
    "format_availability",
    "load_idx_dataset",
    "load_prepared",
    "locate",
    "looked_at",
    "missing_hint",
    "normalisation",
    "read_idx",
    "require",
]


class SubsetWarning(UserWarning):
    """A data set has fewer samples than the official one: results are not comparable to the paper."""


class DatasetsMissingError(DatasetMissingError):
    """Several data sets of a scenario are missing: one error that lists them all."""

    def __init__(self, missing: dict[str, tuple[list[Path | str], str]], hint: str = ""):
        self.dataset = ", ".join(missing)
        self.missing = list(missing)
        parts = [f"{len(missing)} data set(s) not found: {', '.join(missing)}."]
        for name, (looked, how) in missing.items():
            paths = "\n".join(f"  - {p}" for p in looked)
            parts.append(f"{name}: looked at\n{paths}\n  {how}")
        FileNotFoundError.__init__(self, "\n".join(parts + ([hint] if hint else [])))


@dataclass
class RawDataset:
    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int
    source: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# MNIST-family idx files at 28x28 (split / permuted MNIST).

IDX_VERSION = 1  # bump when the parse of the idx files changes: old cache files are then ignored
IDX_DATASETS = {"MNIST": "mnist", "FashionMNIST": "fashion_mnist"}  # folder (torchvision's name) -> SPECS name


def load_idx_dataset(name: str, root: Path, download: bool, n_classes: int = 10) -> RawDataset:
    """MNIST or FashionMNIST from ``root/<name>/raw``: uncompressed idx (torchvision's layout) or the
    .gz files, parsed into a cache outside the root keyed by the checksums of all four files; or a
    verified torchvision download into the root when ``download`` is on."""
    if name not in IDX_DATASETS:
        raise ValueError(f"unknown idx data set {name!r}; valid: {', '.join(IDX_DATASETS)}")
    raw = check_data_root(root) / name / "raw"
    with searching(name, root):
        files = idx_files(raw)
    if files is None and download:
        download_files(IDX_DATASETS[name], root)
        files = idx_files(raw)
    if files is None:
        raise DatasetMissingError(
            name,
            [*(raw / v for v in IDX_FILES.values()), *(raw / (v + ".gz") for v in IDX_FILES.values())],
            f"Download is off: pass --download (torchvision fetches {name} into the data root), or put "
            f"the four idx files (plain or .gz) in {raw}. {PLAIN_FORMAT}",
        )
    by_path = checked_sha256s(list(files.values()), root)
    cached = prepared_path(root, f"idx-{name}", "idx", by_path, IDX_VERSION, extra=n_classes)
    if (hit := read_prepared(cached)) is not None:
        arrays, source = hit
    else:
        arrays = {}
        for split in ("train", "test"):
            x, y = read_idx_pair(files[f"x_{split}"], files[f"y_{split}"], n_classes)
            if x.shape[1:] != (28, 28):  # split / permuted MNIST flatten 28x28 images
                raise CorruptDatasetError(
                    f"{files[f'x_{split}']}: images are {x.shape[1]}x{x.shape[2]}, expected 28x28 for {name}"
                )
            arrays[f"x_{split}"], arrays[f"y_{split}"] = torch.from_numpy(x.copy()), torch.from_numpy(y)
        source = {"files": {str(p): by_path[p] for p in files.values()}, "complete": len(arrays["y_train"]) == 60000}
        write_prepared(cached, f"idx-{name}", arrays, source)
    return RawDataset(
        name,
        arrays["x_train"].clone(),
        arrays["y_train"].clone(),
        arrays["x_test"].clone(),
        arrays["y_test"].clone(),
        n_classes,
        source,
    )


# ----------------------------------------------------------------------------------------------
# The eight data sets of the mixture (as the authors' ``mixture.py``).


def _adapt(name: str, x: np.ndarray, path: Path) -> np.ndarray:
    """Source-resolution NCHW -> the reference's 32x32 (grey sets keep 1 channel until loaded)."""
    _, c, h, w = x.shape
    if name in ("mnist", "fashion_mnist") and (h, w) == (28, 28):
        x = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))  # the authors' transforms.Pad(2, fill=0)
    elif name == "notmnist" and (h, w) != (32, 32):
        x = lanczos_32(x[:, :1])
    if name in GRAY:
        x = x[:, :1]  # 3 identical channels are made at load time (expand)
    expected = (1 if name in GRAY else 3, 32, 32)
    if x.shape[1:] != expected:
        raise CorruptDatasetError(
            f"{path}: {name} images are {c}x{h}x{w} (CHW); expected {expected} after the reference's adaptation"
        )
    return np.ascontiguousarray(x)


PREP_VERSION = 3  # bump when an adaptation or a check changes: old cache files are then ignored


def _prepared(name: str, root: Path, download: bool = False) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The adapted arrays of one data set (from the cache when its source files are unchanged) and
    the record of where they came from."""
    spec = check_name(name)
    src = locate(name, check_data_root(root))
    if src is None and download:
        download_files(name, root)
        src = locate(name, root)
    if src is None:
        raise DatasetMissingError(name, looked_at(name, root), missing_hint(name, root, download))
    sums = checked_sha256s(src.files, root)
    # the class count and official sizes decide the label check and the record's "complete"
    cached = prepared_path(root, name, src.kind, sums, PREP_VERSION, extra=[spec.n_classes, spec.official])
    if (hit := read_prepared(cached)) is not None:
        return hit
    x_tr, y_tr, x_te, y_te = src.read(spec.n_classes)
    x_tr, x_te = _adapt(name, x_tr, src.image_file("train")), _adapt(name, x_te, src.image_file("test"))
    for y, split in ((y_tr, "train"), (y_te, "test")):  # the readers check each file; this, any new one
        check_label_range(f"{src.where} ({split})", y, spec.n_classes)
    counts = (len(y_tr), len(y_te))
    present = len(np.unique(y_tr))
    complete = counts == spec.official if spec.official else present == spec.n_classes
    if complete and src.kind == "torchvision":
        check_official_md5(src)
    source = _source_record(name, src, sums, spec, counts, present, bool(complete))
    arrays = {
        "x_train": torch.from_numpy(x_tr),
        "y_train": torch.from_numpy(y_tr),
        "x_test": torch.from_numpy(x_te),
        "y_test": torch.from_numpy(y_te),
    }
    write_prepared(cached, name, arrays, source)
    return arrays, source


def _source_record(
    name: str,
    src: Source,
    sums: dict[Path, str],
    spec: DatasetSpec,
    counts: tuple[int, int],
    present: int,
    complete: bool,
) -> dict[str, Any]:
    """What a run records about the data it used: where, which files (checksums), counts."""
    files = sorted(src.files)
    return {
        "name": name,
        "found": src.kind,
        "where": str(src.where),
        "files": (
            {str(p): sums[p] for p in files}
            if len(files) <= 8
            # GTSRB PPMs: 51k files
            else {
                f"{len(files)} files under {src.where}": hashlib.sha256(
                    "".join(sums[p] for p in files).encode()
                ).hexdigest()
            }
        ),
        "train": counts[0],
        "test": counts[1],
        "classes_present": present,
        "official": list(spec.official) if spec.official else None,
        "complete": complete,
    }


def load_prepared(
    name: str,
    root: Path | str | None = None,
    download: bool = False,
    facescrub_true_rgb: bool = False,
    views: bool = False,
) -> RawDataset:
    """One mixture data set as (N, 3, 32, 32) uint8 tensors adapted as the reference adapts it.

    ``views``: the images as views of the memory-mapped cache, grey ones expanded with stride 0 (no
    copy), for a builder that copies only what it keeps (``take``/``own``); else tensors of their own.
    Warns (``SubsetWarning``) when it is a subset of the official set; ``source["complete"]`` says so.
    """
    root = data_root(root)
    arrays, source = _prepared(name, root, download)
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    if views:
        if name in GRAY:
            x_train, x_test = (x.expand(-1, 3, -1, -1) for x in (x_train, x_test))
        elif name == "facescrub" and facescrub_true_rgb:
            x_train, x_test = (x.reshape(len(x), 32, 32, 3).permute(0, 3, 1, 2) for x in (x_train, x_test))
    elif name in GRAY:  # reference: image.expand(1, 3, H, W), 3 equal channels
        x_train, x_test = (x.expand(-1, 3, -1, -1).contiguous() for x in (x_train, x_test))
    elif name == "facescrub" and facescrub_true_rgb:
        # the stored layout is HAT's reshape((3,32,32)) of HWC bytes: undo it, then a real transpose
        x_train, x_test = (x.reshape(len(x), 32, 32, 3).permute(0, 3, 1, 2).contiguous() for x in (x_train, x_test))
    else:
        x_train, x_test = x_train.clone(), x_test.clone()  # detach from the memory-mapped cache
    if not source["complete"]:
        official = (
            f"the official {source['official'][0]}/{source['official'][1]}"
            if source["official"]
            else f"all {SPECS[name].n_classes} classes"
        )
        warnings.warn(
            SubsetWarning(
                f"{name}: using a subset ({source['train']} train / {source['test']} test, "
                f"{source['classes_present']} classes, from {source['where']}) instead of {official}: "
                f"results are not comparable to the paper's"
            ),
            stacklevel=2,
        )
    source = dict(source, facescrub_true_rgb=facescrub_true_rgb) if name == "facescrub" else source
    return RawDataset(
        name, x_train, arrays["y_train"].clone(), x_test, arrays["y_test"].clone(), SPECS[name].n_classes, source
    )


def normalisation(name: str, raw: RawDataset | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel: the authors' constants. FaceScrub in true RGB has no
    reference constants (HAT's describe its scrambled layout): they are measured on the train set."""
    spec = check_name(name)
    if name == "facescrub" and raw is not None and raw.source.get("facescrub_true_rgb"):
        x = raw.x_train.double() / 255
        return (tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist()))
    return spec.mean, spec.std


def require(
    names: list[str] | tuple[str, ...], root: Path, download: bool, allow_missing: bool, scenario: str
) -> list[str]:
    """The data sets of ``names`` that are missing (and will not be downloaded). Raises one
    ``DatasetsMissingError`` listing all of them unless ``allow_missing``."""
    missing = {}
    check_data_root(root)
    for name in names:
        if locate(name, root) is None and not download:
            missing[name] = (looked_at(name, root), missing_hint(name, root, download))
    if missing and not allow_missing:
        raise DatasetsMissingError(
            missing,
            f"To run {scenario!r} on the tasks whose data are present, "
            "pass --option allow_missing=true (the run record says so).",
        )
    return list(missing)


def availability(root: Path | str | None = None, load: bool = True) -> list[dict[str, Any]]:
    """Per data set: found where (and in which format), train/test counts, complete or subset, the
    checksums of its source files. ``load=False`` only locates files (no reading, no hashing). A data
    set whose files are corrupt or unreadable is a row with ``error`` (the others are still listed);
    an unusable data root or cache folder raises ``DataAccessError``."""
    root = check_data_root(data_root(root))
    if load:
        cache_dir(root)  # an unusable cache folder fails every data set: say so once
    rows = []
    for name, spec in SPECS.items():
        src = locate(name, root)
        if src is None:
            rows.append({"name": name, "found": None, "looked": looked_at(name, root), "get_it": spec.get_it})
        elif not load:
            rows.append(
                {"name": name, "found": src.kind, "where": str(src.where), "files": [str(p) for p in src.files[:8]]}
            )
        else:
            try:
                rows.append(_prepared(name, root)[1])
            except (CorruptDatasetError, DataAccessError) as e:
                rows.append({"name": name, "found": src.kind, "where": str(src.where), "error": str(e)})
    return rows


def format_availability(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``availability()``."""
    lines = [f"{'data set':<14} {'found':<15} {'train':>7} {'test':>7} {'classes':>7}  status"]
    for r in rows:
        if r["found"] is None:
            lines.append(f"{r['name']:<14} {'-':<15} {'-':>7} {'-':>7} {'-':>7}  missing ({r['get_it']})")
        elif "error" in r:
            lines.append(f"{r['name']:<14} {r['found']:<15} {'?':>7} {'?':>7} {'?':>7}  UNUSABLE: {r['error']}")
        elif "train" not in r:
            lines.append(f"{r['name']:<14} {r['found']:<15} {'?':>7} {'?':>7} {'?':>7}  {r['where']}")
        else:
            status = "complete" if r["complete"] else "SUBSET"
            lines.append(
                f"{r['name']:<14} {r['found']:<15} {r['train']:>7} {r['test']:>7} "
                f"{r['classes_present']:>7}  {status}  {r['where']}"
            )
    if any("error" in r for r in rows):
        lines.append(
            "UNUSABLE: replace the files named (or delete them and pass --download); the README's "
            '"Data" section describes every accepted layout'
        )
    return "\n".join(lines)


def take(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` of its own; a grey set expanded with stride 0 stays so (1 channel copied, not 3):
    the same values, a third of the memory, until a cap copies the samples it keeps."""
    if x.dim() == 4 and x.shape[1] == 3 and x.stride(1) == 0:
        return x[:, :1][index].expand(-1, 3, -1, -1)
    return x[index]


def own(x: Tensor) -> Tensor:
    """A copy of ``x`` detached from the memory-mapped cache (see ``take``)."""
    if x.dim() == 4 and x.shape[1] == 3 and x.stride(1) == 0:
        return x[:, :1].clone().expand(-1, 3, -1, -1)
    return x.clone()
