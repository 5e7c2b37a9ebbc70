"""Dataset loaders: uint8 train/test tensors from a data root, in the formats users have.

Two entry points:

- ``load_idx_dataset(name, root)``: MNIST / FashionMNIST at 28x28, for split and permuted MNIST.
- ``load_prepared(name, root)``: the eight data sets of HAT's mixture as ``(N, 3, 32, 32)`` uint8,
  adapted exactly as the reference adapts them (hat_reference.md §6.1), with the reference's
  normalisation constants in ``SPECS``. ``availability(root)`` says what a root holds.

Where a data set is looked for, in order (``<root>`` = ``--data-root`` / ``$CL_BENCH_DATA``):

  name           1. official files (torchvision's or HAT's layout)      2. plain arrays    3. download
  cifar10        cifar-10-batches-py/{data_batch_1..5,test_batch}       cifar10/           torchvision
  cifar100       cifar-100-python/{train,test}                          cifar100/          torchvision
  mnist          MNIST/raw/{train,t10k}-*-ubyte[.gz]                    MNIST/ or mnist/   torchvision
  svhn           {train,test}_32x32.mat in <root> or <root>/svhn        svhn/              torchvision
  fashion_mnist  FashionMNIST/raw/{train,t10k}-*-ubyte[.gz]             FashionMNIST/      torchvision
  gtsrb          gtsrb/GTSRB/{Training,Final_Test} (torchvision), or    gtsrb/             torchvision
                 HAT's Udacity {train,test}.p in gtsrb/ or traffic_signs/lab 2 data/
  facescrub      facescrub/facescrub_{train,test}_100.pkl, or their zip facescrub/         HAT's URL
  notmnist       notmnist/notmnist_{train,test}.pkl, or their zip       notmnist/          HAT's URL

The plain arrays are ``<folder>/{train,test}.npz``, the format of ../shared/data: ``x`` uint8 NHWC
at the source's own resolution, ``y`` int64 labels 0..C-1.

FaceScrub and notMNIST are not in torchvision. Real users get the HAT authors' own pickles:
github.com/nkundiushuti/facescrub_subset ``data/facescrub_100.zip`` (holds
``facescrub_{train,test}_100.pkl``) and github.com/nkundiushuti/notmnist_convert ``notmnist.zip``
(holds ``notmnist_{train,test}.pkl``); put the zip (or the extracted pickles) in
``<root>/facescrub/`` and ``<root>/notmnist/``. ``download=True`` fetches them from those URLs (no
published checksum; not testable offline here). They are Python-2 pickles of dicts with
``features`` (N, C, 32, 32) and ``labels``, read with ``encoding='latin1'``.

Adaptations (reference §6.1), applied once and cached:

- MNIST, FashionMNIST: 28x28 padded by 2 px of 0 to 32x32, replicated to 3 channels.
- notMNIST: HAT's pickle is already 32x32 (``notmnist_convert`` resized the 28x28 notMNIST_small
  PNGs with PIL ``Image.ANTIALIAS``, i.e. Lanczos). A 28x28 source (the shared subset) is resized the
  same way, not padded: padding would change the pixel statistics the reference's constants
  (mean 0.4254) describe, resizing keeps them (tests/test_datasets.py checks this).
- FaceScrub: HAT's pickle holds ``reshape((3, 32, 32))`` of HWC images, i.e. scrambled channels, and
  HAT trains on that. By default a true-RGB HWC source (the npz) is turned into the same scrambled
  layout by a plain reshape; ``facescrub_true_rgb=True`` gives real CHW colour planes instead.
- SVHN: labels 0..9 with digit 0 as class 0 (as torchvision >= 0.2 returns them; the reference's
  ``label - 1`` was only right for torchvision 0.1.9, reference §9 #14).
- GTSRB: HWC -> CHW. From the official variable-size PPMs (torchvision's layout) each full frame is
  resized to 32x32 bilinearly without antialiasing (as ``cv2.resize``, which made the shared copy;
  the resize behind HAT's Udacity pickle is not documented).

Checks: every file read is checksummed (sha256, memoised by size and mtime); a ``SHA256SUMS`` file
in the root is enforced; official CIFAR / SVHN files with the official sample count must have
torchvision's md5; shapes, dtypes and label ranges are checked. Any failure names the file.
A subset (fewer samples than the official set) is used with a ``SubsetWarning`` and recorded as
``complete: False``.

Cache: prepared tensors go to ``cl_bench.data.cache_dir(root)``, one file per data set keyed by the
checksums of its source files (atomic write), so a second run loads in seconds.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import pickle
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cl_bench.data import DatasetMissingError, cache_dir, data_root, sha256

SHARED_README = ("../shared/data/README.md describes the plain format every loader also reads: "
                 "<root>/<name>/{train,test}.npz with `x` uint8 NHWC and `y` int64.")


class CorruptDatasetError(ValueError):
    """A dataset file exists but is truncated, corrupt or not in the expected format."""


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
# Checksums: memoised per data root by (size, mtime), so a second run does not re-hash 1 GB.

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


def _verify_sha256sums(root: Path, sums: dict[Path, str]) -> None:
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


def _atomic_torch_save(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ----------------------------------------------------------------------------------------------
# MNIST-family idx files (split / permuted MNIST use them at 28x28).

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (plain or .gz): header of big-endian int32 dims, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip raises these on truncated/corrupt input
        raise CorruptDatasetError(f"{path}: cannot read ({e}): truncated or corrupt") from e
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte data
        raise CorruptDatasetError(f"{path}: not a uint8 idx file (magic {magic:#x})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise CorruptDatasetError(f"{path}: truncated or corrupt idx file: header says {dims} "
                                  f"({int(np.prod(dims))} values) but holds {data.size}")
    return data.reshape(dims)


def _idx_files(name: str, root: Path) -> dict[str, Path] | None:
    raw = root / name / "raw"
    for suffix in ("", ".gz"):
        files = {k: raw / (v + suffix) for k, v in IDX_FILES.items()}
        if all(p.is_file() for p in files.values()):
            return files
    return None


def load_idx_dataset(name: str, root: Path, download: bool, n_classes: int = 10) -> RawDataset:
    """MNIST or FashionMNIST from ``root/<name>/raw``: uncompressed idx (torchvision's layout), the
    .gz files (as ../shared/data ships them; parsed into a cache outside the root), or a torchvision
    download into the root when ``download`` is on."""
    raw = root / name / "raw"
    files = _idx_files(name, root)
    if files is None and download:
        import torchvision
        getattr(torchvision.datasets, name)(str(root), train=True, download=True)
        files = _idx_files(name, root)
    if files is None:
        raise DatasetMissingError(
            name, [*(raw / v for v in IDX_FILES.values()), *(raw / (v + ".gz") for v in IDX_FILES.values())],
            f"Download is off: pass --download (torchvision fetches {name} into the data root), or put "
            f"the four idx files (plain or .gz) in {raw}. {SHARED_README}")
    by_path = file_sha256s(list(files.values()), root)
    _verify_sha256sums(root, by_path)
    sums = {k: by_path[p] for k, p in files.items()}
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


# ----------------------------------------------------------------------------------------------
# The eight data sets of the mixture (reference §6.1).

@dataclass(frozen=True)
class DatasetSpec:
    name: str
    ref_index: int  # the reference's data-set index in mixture.py (its task-order permutes these)
    n_classes: int
    mean: tuple[float, ...]  # reference §6.1 constants, per channel, in units of x / 255
    std: tuple[float, ...]
    official: tuple[int, int] | None  # (train, test) sizes of the full set the reference used
    npz_dirs: tuple[str, ...]
    get_it: str  # where a user gets it, for the missing-data error


_CIFAR_MEAN = tuple(v / 255 for v in (125.3, 123.0, 113.9))
_CIFAR_STD = tuple(v / 255 for v in (63.0, 62.1, 66.7))
FACESCRUB_URL = "https://github.com/nkundiushuti/facescrub_subset/blob/master/data/facescrub_100.zip?raw=true"
NOTMNIST_URL = "https://github.com/nkundiushuti/notmnist_convert/blob/master/notmnist.zip?raw=true"

SPECS: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec("cifar10", 0, 10, _CIFAR_MEAN, _CIFAR_STD, (50000, 10000), ("cifar10",),
                "--download (torchvision CIFAR10)"),
    DatasetSpec("cifar100", 1, 100, _CIFAR_MEAN, _CIFAR_STD, (50000, 10000), ("cifar100",),
                "--download (torchvision CIFAR100)"),
    DatasetSpec("mnist", 2, 10, (0.1,) * 3, (0.2752,) * 3, (60000, 10000), ("MNIST", "mnist"),
                "--download (torchvision MNIST)"),  # constants "including the padding"
    DatasetSpec("svhn", 3, 10, (0.4377, 0.4438, 0.4728), (0.198, 0.201, 0.197), (73257, 26032),
                ("svhn",), "--download (torchvision SVHN, train and test, no extra)"),
    DatasetSpec("fashion_mnist", 4, 10, (0.2190,) * 3, (0.3318,) * 3, (60000, 10000),
                ("FashionMNIST", "fashion_mnist"), "--download (torchvision FashionMNIST)"),
    DatasetSpec("gtsrb", 5, 43, (0.3398, 0.3117, 0.3210), (0.2755, 0.2647, 0.2712), (39209, 12630),
                ("gtsrb",), "--download (torchvision GTSRB), or HAT's Udacity train.p/test.p"),
    # FaceScrub-100 sizes are not known exactly (~20.6k / 2.3k): complete = all 100 people present.
    DatasetSpec("facescrub", 6, 100, (0.5163, 0.5569, 0.4695), (0.2307, 0.2272, 0.2479), None,
                ("facescrub",), f"--download, or facescrub_100.zip from {FACESCRUB_URL}"),
    # 16,853 / 1,873 are inferred (reference §6.1) from the paper's range and notMNIST_small's size.
    DatasetSpec("notmnist", 7, 10, (0.4254,) * 3, (0.4501,) * 3, (16853, 1873), ("notmnist",),
                f"--download, or notmnist.zip from {NOTMNIST_URL}"),
]}
GRAY = ("mnist", "fashion_mnist", "notmnist")

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x_train, y_train, x_test, y_test


@dataclass
class Source:
    """Files found for one data set, and how to read them into NCHW uint8 arrays."""

    kind: str
    where: Path
    files: list[Path]
    read: Callable[[], Arrays]


@dataclass
class Layout:
    """One place a data set may be in a root: ``find`` returns a Source or None."""

    describe: Callable[[Path], list[str]]  # the paths it looks at, for the missing-data error
    find: Callable[[Path], Source | None]


def _corrupt(path: Path, e: Exception) -> CorruptDatasetError:
    return CorruptDatasetError(f"{path}: cannot read ({type(e).__name__}: {e}): truncated, corrupt "
                               "or not in the expected format")


_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, zlib.error,
                zipfile.BadZipFile, pickle.UnpicklingError, AttributeError)


def _labels(path: Path, y: Any, n: int) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if not np.issubdtype(y.dtype, np.integer) or len(y) != n:
        raise CorruptDatasetError(f"{path}: {len(y)} labels of type {y.dtype} for {n} images")
    return y.astype(np.int64)


def _read_npz(path: Path, scramble: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``x`` uint8 NHWC, ``y`` integer labels -> x NCHW, y int64.

    ``scramble``: a plain ``reshape(N, 3, H, W)`` of the HWC bytes instead of a transpose, the
    channel layout of HAT's FaceScrub pickles (../shared/data/README.md, "What a loader must know" 4).
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            x, y = z["x"], z["y"]
    except _READ_ERRORS as e:
        raise _corrupt(path, e) from e
    if x.dtype != np.uint8 or x.ndim != 4:
        raise CorruptDatasetError(f"{path}: x must be uint8 NHWC, got {x.dtype} {x.shape}")
    n, h, w, c = x.shape
    x = x.reshape(n, c, h, w) if scramble else x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), _labels(path, y, n)


def _npz_layout(dirs: tuple[str, ...], scramble: bool = False) -> Layout:
    def find(root: Path) -> Source | None:
        for d in dirs:
            tr, te = root / d / "train.npz", root / d / "test.npz"
            if tr.is_file() and te.is_file():
                return Source("npz", root / d, [tr, te],
                              lambda: (*_read_npz(tr, scramble), *_read_npz(te, scramble)))
        return None
    return Layout(lambda root: [str(root / d / "{train,test}.npz") for d in dirs], find)


def _unpickle(path: Path, member: str | None = None) -> Any:
    """A (possibly Python-2) pickle, from a file or from a member of a zip file."""
    try:
        if member is None:
            with open(path, "rb") as f:
                return pickle.load(f, encoding="latin1")
        with zipfile.ZipFile(path) as z:
            return pickle.load(io.BytesIO(z.read(member)), encoding="latin1")
    except _READ_ERRORS as e:
        raise _corrupt(path if member is None else Path(f"{path}:{member}"), e) from e


# -- CIFAR: torchvision's python pickles (rows are CHW-flattened images) ------------------------

def _read_cifar_batches(paths: list[Path], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for p in paths:
        d = _unpickle(p)
        try:
            x = np.asarray(d["data"], dtype=np.uint8)
            xs.append(x.reshape(len(x), 3, 32, 32))
            y = d[label_key]
        except (KeyError, ValueError, TypeError) as e:
            raise _corrupt(p, e) from e
        ys.append(_labels(p, y, len(x)))
    return np.concatenate(xs), np.concatenate(ys)


def _cifar_layout(folder: str, train: list[str], test: list[str], label_key: str) -> Layout:
    def find(root: Path) -> Source | None:
        tr, te = [root / folder / f for f in train], [root / folder / f for f in test]
        if not all(p.is_file() for p in tr + te):
            return None
        return Source("torchvision", root / folder, tr + te,
                      lambda: (*_read_cifar_batches(tr, label_key), *_read_cifar_batches(te, label_key)))
    return Layout(lambda root: [str(root / folder / f) for f in train + test], find)


# -- SVHN: torchvision's .mat files (X is H, W, C, N; digit 0 is label 10) ------------------------

def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io
    try:
        m = scipy.io.loadmat(str(path))
        x = np.ascontiguousarray(np.transpose(m["X"], (3, 2, 0, 1)))  # as torchvision: N, C, H, W
        y = m["y"]
    except _READ_ERRORS as e:
        raise _corrupt(path, e) from e
    y = _labels(path, y, len(x))
    if x.dtype != np.uint8 or x.shape[1:] != (3, 32, 32):
        raise CorruptDatasetError(f"{path}: X must be uint8 32x32x3xN, got {x.dtype} {m['X'].shape}")
    y[y == 10] = 0  # as torchvision >= 0.2; do not subtract 1 (reference §9 #14)
    return x, y


def _svhn_layout() -> Layout:
    def find(root: Path) -> Source | None:
        for d in (root, root / "svhn"):
            tr, te = d / "train_32x32.mat", d / "test_32x32.mat"
            if tr.is_file() and te.is_file():
                return Source("torchvision", d, [tr, te], lambda: (*_read_svhn_mat(tr), *_read_svhn_mat(te)))
        return None
    return Layout(lambda root: [str(d / "{train,test}_32x32.mat") for d in (root, root / "svhn")], find)


# -- GTSRB: torchvision's official PPM layout, or HAT's Udacity pickles ---------------------------

def _resize_bilinear_32(img: np.ndarray) -> np.ndarray:
    """HWC uint8 -> CHW uint8 32x32, bilinear without antialiasing (as cv2.resize's default)."""
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    if t.shape[-2:] != (32, 32):
        t = F.interpolate(t, size=(32, 32), mode="bilinear", align_corners=False, antialias=False)
    return t[0].round().clamp(0, 255).to(torch.uint8).numpy()


def _read_ppms(paths: list[Path]) -> np.ndarray:
    from PIL import Image
    out = np.empty((len(paths), 3, 32, 32), dtype=np.uint8)
    for i, p in enumerate(paths):  # once per data root (the result is cached)
        try:
            with Image.open(p) as im:
                out[i] = _resize_bilinear_32(np.array(im.convert("RGB")))
        except OSError as e:
            raise _corrupt(p, e) from e
    return out


def _gtsrb_official_layout() -> Layout:
    def find(root: Path) -> Source | None:
        base = root / "gtsrb"
        train_dir, test_dir, gt = base / "GTSRB" / "Training", base / "GTSRB" / "Final_Test" / "Images", \
            base / "GT-final_test.csv"
        if not (train_dir.is_dir() and test_dir.is_dir() and gt.is_file()):
            return None
        train = sorted((p, int(p.parent.name)) for p in train_dir.glob("*/*.ppm"))
        with open(gt) as f:
            rows = list(csv.DictReader(f, delimiter=";", skipinitialspace=True))
        test = [(test_dir / r["Filename"], int(r["ClassId"])) for r in rows]

        def read() -> Arrays:
            return (_read_ppms([p for p, _ in train]), np.array([c for _, c in train], dtype=np.int64),
                    _read_ppms([p for p, _ in test]), np.array([c for _, c in test], dtype=np.int64))
        return Source("torchvision", base, [gt] + [p for p, _ in train + test], read)
    return Layout(lambda root: [str(root / "gtsrb/GTSRB/Training/*/*.ppm"),
                                str(root / "gtsrb/GTSRB/Final_Test/Images/*.ppm"),
                                str(root / "gtsrb/GT-final_test.csv")], find)


def _read_feature_pickle(path: Path, member: str | None = None, hwc: bool = False
                         ) -> tuple[np.ndarray, np.ndarray]:
    """A HAT-style pickle: dict with ``features`` (N, C, H, W) (or NHWC if ``hwc``) and ``labels``."""
    d = _unpickle(path, member)
    try:
        x = np.asarray(d["features"])
        if x.dtype == np.int8:  # facescrub pickles store uint8 bits as int8 (HAT: astype(uint8))
            x = x.view(np.uint8)
        y = d["labels"]
    except (KeyError, TypeError) as e:
        raise _corrupt(path, e) from e
    if x.dtype != np.uint8 or x.ndim != 4:
        raise CorruptDatasetError(f"{path}: features must be uint8 4-d, got {x.dtype} {x.shape}")
    if hwc:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), _labels(path, y, len(x))


def _pickle_pair_layout(kind: str, folder: str, train: str, test: str, zip_name: str | None = None,
                        hwc: bool = False) -> Layout:
    """Two pickles in ``<root>/<folder>``, or inside ``<root>/<folder>/<zip_name>`` (by basename)."""
    def find(root: Path) -> Source | None:
        d = root / folder
        if (d / train).is_file() and (d / test).is_file():
            return Source(kind, d, [d / train, d / test],
                          lambda: (*_read_feature_pickle(d / train, hwc=hwc),
                                   *_read_feature_pickle(d / test, hwc=hwc)))
        if zip_name and (d / zip_name).is_file():
            z = d / zip_name
            try:
                with zipfile.ZipFile(z) as zf:
                    names = {Path(n).name: n for n in zf.namelist()}
            except (OSError, zipfile.BadZipFile) as e:
                raise _corrupt(z, e) from e
            if train not in names or test not in names:
                raise CorruptDatasetError(f"{z}: does not contain {train} and {test}")
            return Source(kind, d, [z], lambda: (*_read_feature_pickle(z, names[train], hwc),
                                                 *_read_feature_pickle(z, names[test], hwc)))
        return None
    looked = [folder + "/" + f for f in (train, test)] + ([f"{folder}/{zip_name}"] if zip_name else [])
    return Layout(lambda root: [str(root / p) for p in looked], find)


def _idx_layout(name: str) -> Layout:
    def find(root: Path) -> Source | None:
        files = _idx_files(name, root)
        if files is None:
            return None

        def read() -> Arrays:
            a = {k: read_idx(p) for k, p in files.items()}
            return (a["x_train"][:, None], a["y_train"].astype(np.int64),
                    a["x_test"][:, None], a["y_test"].astype(np.int64))
        return Source("idx", root / name / "raw", list(files.values()), read)
    return Layout(lambda root: [str(root / name / "raw" / f"{v}[.gz]") for v in IDX_FILES.values()], find)


_CIFAR10_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
LAYOUTS: dict[str, list[Layout]] = {
    "cifar10": [_cifar_layout("cifar-10-batches-py", _CIFAR10_BATCHES, ["test_batch"], "labels")],
    "cifar100": [_cifar_layout("cifar-100-python", ["train"], ["test"], "fine_labels")],
    "mnist": [_idx_layout("MNIST")],
    "svhn": [_svhn_layout()],
    "fashion_mnist": [_idx_layout("FashionMNIST")],
    "gtsrb": [_gtsrb_official_layout(),
              _pickle_pair_layout("udacity-pickle", "gtsrb", "train.p", "test.p", hwc=True),
              _pickle_pair_layout("udacity-pickle", "traffic_signs/lab 2 data", "train.p", "test.p", hwc=True)],
    "facescrub": [_pickle_pair_layout("hat-pickle", "facescrub", "facescrub_train_100.pkl",
                                      "facescrub_test_100.pkl", "facescrub_100.zip")],
    "notmnist": [_pickle_pair_layout("hat-pickle", "notmnist", "notmnist_train.pkl",
                                     "notmnist_test.pkl", "notmnist.zip")],
}
for _name, _spec in SPECS.items():  # every data set is also read from the plain npz format
    # FaceScrub npz files hold true-RGB HWC images: stored in HAT's scrambled layout like its pickles
    LAYOUTS[_name].append(_npz_layout(_spec.npz_dirs, scramble=_name == "facescrub"))


def _check_name(name: str) -> DatasetSpec:
    if name not in SPECS:
        raise ValueError(f"unknown data set {name!r}; valid: {', '.join(SPECS)}")
    return SPECS[name]


def locate(name: str, root: Path) -> Source | None:
    """The first layout of ``name`` present in ``root`` (no download, nothing read yet)."""
    _check_name(name)
    for layout in LAYOUTS[name]:
        if (src := layout.find(root)) is not None:
            return src
    return None


def looked_at(name: str, root: Path) -> list[str]:
    return [p for layout in LAYOUTS[name] for p in layout.describe(root)]


def missing_hint(name: str, root: Path, download: bool) -> str:
    spec = _check_name(name)
    return (f"download={download}. Get it with {spec.get_it}, into {root}. {SHARED_README}")


def _download(name: str, root: Path) -> None:
    """Fetch the official files into ``root`` (torchvision), or HAT's zip for FaceScrub/notMNIST."""
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import download_url
    root.mkdir(parents=True, exist_ok=True)
    if name in ("cifar10", "cifar100"):
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        cls(str(root), train=True, download=True)
        cls(str(root), train=False, download=True)
    elif name in ("mnist", "fashion_mnist"):
        (tvd.MNIST if name == "mnist" else tvd.FashionMNIST)(str(root), train=True, download=True)
    elif name == "svhn":
        for split in ("train", "test"):
            tvd.SVHN(str(root), split=split, download=True)
    elif name == "gtsrb":
        for split in ("train", "test"):
            tvd.GTSRB(str(root), split=split, download=True)
    elif name == "facescrub":
        download_url(FACESCRUB_URL, str(root / "facescrub"), "facescrub_100.zip")
    elif name == "notmnist":
        download_url(NOTMNIST_URL, str(root / "notmnist"), "notmnist.zip")


def _official_md5() -> dict[str, str]:
    """torchvision's md5 of the official CIFAR / SVHN files, keyed by '<folder>/<file>' or file."""
    import torchvision.datasets as tvd
    sums = {f"cifar-10-batches-py/{f}": m for f, m in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list}
    sums |= {f"cifar-100-python/{f}": m for f, m in tvd.CIFAR100.train_list + tvd.CIFAR100.test_list}
    sums |= {fn: m for _, fn, m in tvd.SVHN.split_list.values()}
    return sums


def _check_official_md5(src: Source) -> None:
    """A torchvision file that claims to be the full official set must be bit-identical to it."""
    from torchvision.datasets.utils import check_md5
    sums = _official_md5()
    for p in src.files:
        want = sums.get(f"{p.parent.name}/{p.name}") or sums.get(p.name)
        if want and not check_md5(str(p), want):
            raise CorruptDatasetError(f"{p}: has the official sample count but not the official md5 "
                                      f"{want}: the file is corrupt or was modified")


def _lanczos_32(x: np.ndarray) -> np.ndarray:
    """(N, 1, H, W) -> (N, 1, 32, 32) with PIL's Lanczos filter (= the ``Image.ANTIALIAS`` of
    HAT's notmnist_convert)."""
    from PIL import Image
    out = np.empty((len(x), 1, 32, 32), dtype=np.uint8)
    for i in range(len(x)):  # once per data root (the result is cached)
        out[i, 0] = np.asarray(Image.fromarray(x[i, 0]).resize((32, 32), Image.LANCZOS))
    return out


def _adapt(name: str, x: np.ndarray, path: Path) -> np.ndarray:
    """Source-resolution NCHW -> the reference's 32x32 (grey sets keep 1 channel until loaded)."""
    n, c, h, w = x.shape
    if name in ("mnist", "fashion_mnist") and (h, w) == (28, 28):
        x = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))  # reference §6.1: transforms.Pad(2, fill=0)
    elif name == "notmnist" and (h, w) != (32, 32):
        x = _lanczos_32(x[:, :1])
    if name in GRAY:
        x = x[:, :1]  # 3 identical channels are made at load time (expand)
    expected = (1 if name in GRAY else 3, 32, 32)
    if x.shape[1:] != expected:
        raise CorruptDatasetError(f"{path}: {name} images are {c}x{h}x{w} (CHW); expected "
                                  f"{expected} after the reference's adaptation")
    return np.ascontiguousarray(x)


PREP_VERSION = 2  # bump when an adaptation changes: old cache files are then ignored


def _prepared(name: str, root: Path, download: bool = False) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The adapted arrays of one data set (from the cache when its source files are unchanged) and
    the record of where they came from."""
    spec = _check_name(name)
    src = locate(name, root)
    if src is None and download:
        _download(name, root)
        src = locate(name, root)
    if src is None:
        raise DatasetMissingError(name, looked_at(name, root), missing_hint(name, root, download))
    sums = file_sha256s(src.files, root)
    _verify_sha256sums(root, sums)
    key = hashlib.sha256(json.dumps([PREP_VERSION, name, src.kind, sorted(
        (str(p), s) for p, s in sums.items())]).encode()).hexdigest()[:16]
    folder = cache_dir(root)
    cached = folder / f"prepared-{name}-{key}.pt"
    if cached.is_file():
        try:
            blob = torch.load(cached, mmap=True, weights_only=True)
            return blob["arrays"], blob["source"]
        except Exception as e:  # a damaged cache file is rebuilt, never trusted
            warnings.warn(f"rebuilding unreadable cache file {cached}: {e}")
    x_tr, y_tr, x_te, y_te = src.read()
    where = src.files[0]
    x_tr, x_te = _adapt(name, x_tr, where), _adapt(name, x_te, src.files[-1])
    for y, split in ((y_tr, "train"), (y_te, "test")):
        if len(y) and (y.min() < 0 or y.max() >= spec.n_classes):
            raise CorruptDatasetError(f"{src.where}: {split} labels span {y.min()}..{y.max()}, "
                                      f"outside 0..{spec.n_classes - 1} for {name}")
    counts = (len(y_tr), len(y_te))
    present = int(len(np.unique(y_tr)))
    complete = counts == spec.official if spec.official else present == spec.n_classes
    if complete and src.kind == "torchvision":
        _check_official_md5(src)
    files = sorted(src.files)
    source = {
        "name": name, "found": src.kind, "where": str(src.where),
        "files": ({str(p): sums[p] for p in files} if len(files) <= 8 else  # GTSRB PPMs: 51k files
                  {f"{len(files)} files under {src.where}": hashlib.sha256(
                      "".join(sums[p] for p in files).encode()).hexdigest()}),
        "train": counts[0], "test": counts[1], "classes_present": present,
        "official": list(spec.official) if spec.official else None, "complete": bool(complete),
    }
    arrays = {"x_train": torch.from_numpy(x_tr), "y_train": torch.from_numpy(y_tr),
              "x_test": torch.from_numpy(x_te), "y_test": torch.from_numpy(y_te)}
    _atomic_torch_save({"arrays": arrays, "source": source}, cached)
    for stale in folder.glob(f"prepared-{name}-*.pt"):  # older versions of the same data set
        if stale != cached:
            stale.unlink(missing_ok=True)
    return arrays, source


def load_prepared(name: str, root: Path | str | None = None, download: bool = False,
                  facescrub_true_rgb: bool = False) -> RawDataset:
    """One mixture data set as (N, 3, 32, 32) uint8 tensors adapted as the reference adapts it.

    Warns (``SubsetWarning``) when it is a subset of the official set; ``source["complete"]`` says so.
    """
    root = data_root(root)
    arrays, source = _prepared(name, root, download)
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    if name in GRAY:  # reference: image.expand(1, 3, H, W), 3 equal channels
        x_train, x_test = (x.expand(-1, 3, -1, -1).contiguous() for x in (x_train, x_test))
    elif name == "facescrub" and facescrub_true_rgb:
        # the stored layout is HAT's reshape((3,32,32)) of HWC bytes: undo it, then a real transpose
        x_train, x_test = (x.reshape(len(x), 32, 32, 3).permute(0, 3, 1, 2).contiguous()
                           for x in (x_train, x_test))
    else:
        x_train, x_test = x_train.clone(), x_test.clone()  # detach from the memory-mapped cache
    if not source["complete"]:
        official = (f"the official {source['official'][0]}/{source['official'][1]}"
                    if source["official"] else f"all {SPECS[name].n_classes} classes")
        warnings.warn(SubsetWarning(
            f"{name}: using a subset ({source['train']} train / {source['test']} test, "
            f"{source['classes_present']} classes, from {source['where']}) instead of {official}: "
            f"results are not comparable to the paper's"), stacklevel=2)
    source = dict(source, facescrub_true_rgb=facescrub_true_rgb) if name == "facescrub" else source
    return RawDataset(name, x_train, arrays["y_train"].clone(), x_test, arrays["y_test"].clone(),
                      SPECS[name].n_classes, source)


def normalisation(name: str, raw: RawDataset | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel: the reference's constants (§6.1). FaceScrub in true RGB has no
    reference constants (HAT's describe its scrambled layout): they are measured on the train set."""
    spec = _check_name(name)
    if name == "facescrub" and raw is not None and raw.source.get("facescrub_true_rgb"):
        x = raw.x_train.double() / 255
        return (tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist()))
    return spec.mean, spec.std


def require(names: list[str] | tuple[str, ...], root: Path, download: bool, allow_missing: bool,
            scenario: str) -> list[str]:
    """The data sets of ``names`` that are missing (and will not be downloaded). Raises one
    ``DatasetsMissingError`` listing all of them unless ``allow_missing``."""
    missing = {}
    for name in names:
        if locate(name, root) is None and not download:
            missing[name] = (looked_at(name, root), missing_hint(name, root, download))
    if missing and not allow_missing:
        raise DatasetsMissingError(missing, f"To run {scenario!r} on the tasks whose data are present, "
                                            "pass --option allow_missing=true (the run record says so).")
    return list(missing)


def availability(root: Path | str | None = None, load: bool = True) -> list[dict[str, Any]]:
    """Per data set: found where (and in which format), train/test counts, complete or subset, the
    checksums of its source files. ``load=False`` only locates files (no reading, no hashing)."""
    root = data_root(root)
    rows = []
    for name, spec in SPECS.items():
        src = locate(name, root)
        if src is None:
            rows.append({"name": name, "found": None, "looked": looked_at(name, root),
                         "get_it": spec.get_it})
        elif not load:
            rows.append({"name": name, "found": src.kind, "where": str(src.where),
                         "files": [str(p) for p in src.files[:8]]})
        else:
            rows.append(_prepared(name, root)[1])
    return rows


def format_availability(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``availability()``."""
    lines = [f"{'data set':<14} {'found':<15} {'train':>7} {'test':>7} {'classes':>7}  status"]
    for r in rows:
        if r["found"] is None:
            lines.append(f"{r['name']:<14} {'-':<15} {'-':>7} {'-':>7} {'-':>7}  missing ({r['get_it']})")
        elif "train" not in r:
            lines.append(f"{r['name']:<14} {r['found']:<15} {'?':>7} {'?':>7} {'?':>7}  {r['where']}")
        else:
            status = "complete" if r["complete"] else "SUBSET"
            lines.append(f"{r['name']:<14} {r['found']:<15} {r['train']:>7} {r['test']:>7} "
                         f"{r['classes_present']:>7}  {status}  {r['where']}")
    return "\n".join(lines)
