"""File formats of the data sets: each reader turns one kind of file into NCHW uint8 images and int64
labels, and checks what it read (dtype, shape as the format says, one label per image, labels within
``0..n_classes-1`` when the caller gives the class count). Any failure is a ``CorruptDatasetError``
that names the file and says what is wrong.

Formats: MNIST-family idx files (plain or .gz), the plain ``{train,test}.npz`` arrays, CIFAR's python
pickles, SVHN's ``.mat`` files, GTSRB's variable-size PPM images, and HAT's feature pickles (Python-2
pickles of dicts with ``features`` and ``labels``, loose or inside a zip). Where each data set keeps
which files is ``catalogue``'s job; nothing here knows a data set by name.
"""

from __future__ import annotations

import gzip
import io
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x_train, y_train, x_test, y_test


class CorruptDatasetError(ValueError):
    """A dataset file exists but is truncated, corrupt or not in the expected format."""


def corrupt(path: Path, e: Exception) -> CorruptDatasetError:
    return CorruptDatasetError(
        f"{path}: cannot read ({type(e).__name__}: {e}): truncated, corrupt or not in the expected format"
    )


# What the readers below raise on damaged input, whichever library parses it.
READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    zlib.error,
    zipfile.BadZipFile,
    pickle.UnpicklingError,
    AttributeError,
)


def labels(path: Path, y: Any, n: int, n_classes: int | None = None) -> np.ndarray:
    """``y`` as int64, checked to be ``n`` integer labels (one per image), within ``0..n_classes-1``
    when ``n_classes`` is given."""
    y = np.asarray(y).reshape(-1)
    if not np.issubdtype(y.dtype, np.integer) or len(y) != n:
        raise CorruptDatasetError(f"{path}: {len(y)} labels of type {y.dtype} for {n} images")
    y = y.astype(np.int64)
    if n_classes is not None:
        check_label_range(path, y, n_classes)
    return y


def check_label_range(path: Path | str, y: np.ndarray, n_classes: int) -> None:
    """Labels must be ``0..n_classes-1``: a label outside would index past the classifier's head."""
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        bad = int(((y < 0) | (y >= n_classes)).sum())
        raise CorruptDatasetError(
            f"{path}: labels span {y.min()}..{y.max()}, outside 0..{n_classes - 1} ({bad} of {len(y)} labels)"
        )


# -- MNIST-family idx files -----------------------------------------------------------------------

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IDX_NDIM = {"x": 3, "y": 1}  # images (N, H, W), labels (N,)


def read_idx(path: Path, ndim: int | None = None) -> np.ndarray:
    """An idx file (plain or .gz): magic ``00 00 08 <ndim>``, ``ndim`` big-endian int32 dims, then
    exactly prod(dims) uint8 values. ``ndim``: the number of dims the file must have."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip raises these on truncated/corrupt input
        raise CorruptDatasetError(f"{path}: cannot read ({e}): truncated or corrupt") from e
    if len(raw) < 4:
        raise CorruptDatasetError(f"{path}: truncated idx file: {len(raw)} bytes, no header")
    if raw[0:3] != b"\x00\x00\x08":  # 0x08 = unsigned byte data
        raise CorruptDatasetError(f"{path}: not a uint8 idx file (magic {raw[0:4].hex()}, expected 000008xx)")
    if ndim is not None and raw[3] != ndim:
        raise CorruptDatasetError(f"{path}: idx file with {raw[3]} dims, expected {ndim}")
    header = 4 + 4 * raw[3]
    if len(raw) < header:
        raise CorruptDatasetError(f"{path}: truncated idx file: {len(raw)} bytes, header needs {header}")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(raw[3])]
    size = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != size:
        raise CorruptDatasetError(
            f"{path}: truncated or corrupt idx file: header says {dims} ({size} values) but holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_pair(images: Path, label_file: Path, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An images file (N, H, W) and its labels file (N,): as many labels as images, in range."""
    x = read_idx(images, IDX_NDIM["x"])
    y = read_idx(label_file, IDX_NDIM["y"])
    if len(y) != len(x):
        raise CorruptDatasetError(f"{label_file}: {len(y)} labels for the {len(x)} images of {images}")
    return x, labels(label_file, y, len(x), n_classes)


def idx_files(folder: Path) -> dict[str, Path] | None:
    """The four idx files in ``folder``, all plain or all .gz; None unless all four are there."""
    for suffix in ("", ".gz"):
        files = {k: folder / (v + suffix) for k, v in IDX_FILES.items()}
        if all(p.is_file() for p in files.values()):
            return files
    return None


# -- the plain arrays -----------------------------------------------------------------------------


def read_npz(path: Path, scramble: bool = False, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``x`` uint8 NHWC (1 or 3 channels), ``y`` integer labels -> x NCHW, y int64.

    ``scramble``: a plain ``reshape(N, 3, H, W)`` of the HWC bytes instead of a transpose, the
    channel layout of HAT's FaceScrub pickles.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            x, y = z["x"], z["y"]
    except READ_ERRORS as e:
        raise corrupt(path, e) from e
    if x.dtype != np.uint8 or x.ndim != 4:
        raise CorruptDatasetError(f"{path}: x must be uint8 NHWC, got {x.dtype} {x.shape}")
    n, h, w, c = x.shape
    if c not in (1, 3):  # an NCHW array would be read as 32 channels of 3x32 images
        raise CorruptDatasetError(f"{path}: x must be NHWC with 1 or 3 channels, got shape {x.shape}")
    x = x.reshape(n, c, h, w) if scramble else x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), labels(path, y, n, n_classes)


# -- pickles: CIFAR's batches and HAT's feature dicts ---------------------------------------------


def unpickle(path: Path, member: str | None = None) -> Any:
    """A (possibly Python-2) pickle, from a file or from a member of a zip file."""
    try:
        if member is None:
            with open(path, "rb") as f:
                return pickle.load(f, encoding="latin1")
        with zipfile.ZipFile(path) as z:
            return pickle.load(io.BytesIO(z.read(member)), encoding="latin1")
    except READ_ERRORS as e:
        raise corrupt(path if member is None else Path(f"{path}:{member}"), e) from e


def read_cifar_batches(
    paths: list[Path], label_key: str, n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's CIFAR python pickles (rows are CHW-flattened images), concatenated in order."""
    xs, ys = [], []
    for p in paths:
        d = unpickle(p)
        try:
            x = np.asarray(d["data"], dtype=np.uint8)
            xs.append(x.reshape(len(x), 3, 32, 32))
            y = d[label_key]
        except (KeyError, ValueError, TypeError) as e:
            raise corrupt(p, e) from e
        ys.append(labels(p, y, len(x), n_classes))
    return np.concatenate(xs), np.concatenate(ys)


def read_feature_pickle(
    path: Path, member: str | None = None, hwc: bool = False, n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A HAT-style pickle: dict with ``features`` (N, C, H, W) (or NHWC if ``hwc``) and ``labels``."""
    d = unpickle(path, member)
    where = path if member is None else Path(f"{path}:{member}")
    try:
        x = np.asarray(d["features"])
        if x.dtype == np.int8:  # facescrub pickles store uint8 bits as int8 (HAT: astype(uint8))
            x = x.view(np.uint8)
        y = d["labels"]
    except (KeyError, TypeError, ValueError) as e:
        raise corrupt(where, e) from e
    if x.dtype != np.uint8 or x.ndim != 4:
        raise CorruptDatasetError(f"{where}: features must be uint8 4-d, got {x.dtype} {x.shape}")
    if hwc:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), labels(where, y, len(x), n_classes)


# -- SVHN's .mat files (X is H, W, C, N; digit 0 is label 10) --------------------------------------


def read_svhn_mat(path: Path, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io  # only when SVHN's .mat files are read: keeps importing the package cheap

    try:
        m = scipy.io.loadmat(str(path))
        x = np.ascontiguousarray(np.transpose(m["X"], (3, 2, 0, 1)))  # as torchvision: N, C, H, W
        y = m["y"]
    except READ_ERRORS as e:
        raise corrupt(path, e) from e
    y = labels(path, y, len(x))
    if x.dtype != np.uint8 or x.shape[1:] != (3, 32, 32):
        raise CorruptDatasetError(f"{path}: X must be uint8 32x32x3xN, got {x.dtype} {m['X'].shape}")
    y[y == 10] = 0  # as torchvision >= 0.2; do not subtract 1 (the authors' code did, for torchvision 0.1.9)
    if n_classes is not None:
        check_label_range(path, y, n_classes)
    return x, y


# -- images: GTSRB's PPMs, and the resizes to 32x32 -----------------------------------------------


def resize_bilinear_32(img: np.ndarray) -> np.ndarray:
    """HWC uint8 -> CHW uint8 32x32, bilinear without antialiasing (as cv2.resize's default)."""
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    if t.shape[-2:] != (32, 32):
        t = F.interpolate(t, size=(32, 32), mode="bilinear", align_corners=False, antialias=False)
    return t[0].round().clamp(0, 255).to(torch.uint8).numpy()


def read_ppms(paths: list[Path]) -> np.ndarray:
    """Image files of any size -> (N, 3, 32, 32) uint8, each resized by ``resize_bilinear_32``."""
    from PIL import Image  # only when images are decoded: keeps importing the package cheap

    out = np.empty((len(paths), 3, 32, 32), dtype=np.uint8)
    for i, p in enumerate(paths):  # once per data root (the result is cached)
        try:
            with Image.open(p) as im:
                out[i] = resize_bilinear_32(np.array(im.convert("RGB")))
        except OSError as e:
            raise corrupt(p, e) from e
    return out


def lanczos_32(x: np.ndarray) -> np.ndarray:
    """(N, 1, H, W) -> (N, 1, 32, 32) with PIL's Lanczos filter (= the ``Image.ANTIALIAS`` of
    HAT's notmnist_convert)."""
    from PIL import Image  # only when images are resized: keeps importing the package cheap

    out = np.empty((len(x), 1, 32, 32), dtype=np.uint8)
    for i in range(len(x)):  # once per data root (the result is cached)
        out[i, 0] = np.asarray(Image.fromarray(x[i, 0]).resize((32, 32), Image.LANCZOS))
    return out
