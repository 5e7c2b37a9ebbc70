"""The data-set catalogue: the eight data sets of HAT's mixture (``SPECS``: classes, the reference's
normalisation constants, official sizes, where to get them), where each may be found in a data root
(``LAYOUTS``, ``locate``, ``looked_at``, ``missing_hint``). Nothing is read here: a found ``Source``
reads its files with ``formats``' readers.

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

The plain arrays are ``<folder>/{train,test}.npz`` (``PLAIN_FORMAT``).

FaceScrub and notMNIST are not in torchvision. Real users get the HAT authors' own pickles:
github.com/nkundiushuti/facescrub_subset ``data/facescrub_100.zip`` (holds
``facescrub_{train,test}_100.pkl``) and github.com/nkundiushuti/notmnist_convert ``notmnist.zip``
(holds ``notmnist_{train,test}.pkl``); put the zip (or the extracted pickles) in
``<root>/facescrub/`` and ``<root>/notmnist/``. ``download=True`` fetches them from those URLs.

How each data set is downloaded, and how a download is verified, is ``downloads``' job.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cl_bench.benchmarks.formats import (
    IDX_FILES,
    Arrays,
    CorruptDatasetError,
    check_label_range,
    corrupt,
    idx_files,
    read_cifar_batches,
    read_feature_pickle,
    read_idx_pair,
    read_npz,
    read_ppms,
    read_svhn_mat,
)
from cl_bench.data import DataAccessError, reason

PLAIN_FORMAT = (
    "Every data set can also be given in the plain format (docs/scenarios-and-data.md, linked from the README): "
    "<root>/<name>/{train,test}.npz with `x` uint8 NHWC images at the source's own resolution "
    "and `y` int64 labels 0..C-1."
)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    ref_index: int  # the reference's data-set index in mixture.py (its task-order permutes these)
    n_classes: int
    mean: tuple[float, ...]  # the authors' constants, per channel, in units of x / 255
    std: tuple[float, ...]
    official: tuple[int, int] | None  # (train, test) sizes of the full set the reference used
    npz_dirs: tuple[str, ...]
    get_it: str  # where a user gets it, for the missing-data error


_CIFAR_MEAN = tuple(v / 255 for v in (125.3, 123.0, 113.9))
_CIFAR_STD = tuple(v / 255 for v in (63.0, 62.1, 66.7))
FACESCRUB_URL = "https://github.com/nkundiushuti/facescrub_subset/blob/master/data/facescrub_100.zip?raw=true"
NOTMNIST_URL = "https://github.com/nkundiushuti/notmnist_convert/blob/master/notmnist.zip?raw=true"

SPECS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec(
            "cifar10", 0, 10, _CIFAR_MEAN, _CIFAR_STD, (50000, 10000), ("cifar10",), "--download (torchvision CIFAR10)"
        ),
        DatasetSpec(
            "cifar100",
            1,
            100,
            _CIFAR_MEAN,
            _CIFAR_STD,
            (50000, 10000),
            ("cifar100",),
            "--download (torchvision CIFAR100)",
        ),
        DatasetSpec(
            "mnist",
            2,
            10,
            (0.1,) * 3,
            (0.2752,) * 3,
            (60000, 10000),
            ("MNIST", "mnist"),
            "--download (torchvision MNIST)",
        ),  # constants "including the padding"
        DatasetSpec(
            "svhn",
            3,
            10,
            (0.4377, 0.4438, 0.4728),
            (0.198, 0.201, 0.197),
            (73257, 26032),
            ("svhn",),
            "--download (torchvision SVHN, train and test, no extra)",
        ),
        DatasetSpec(
            "fashion_mnist",
            4,
            10,
            (0.2190,) * 3,
            (0.3318,) * 3,
            (60000, 10000),
            ("FashionMNIST", "fashion_mnist"),
            "--download (torchvision FashionMNIST)",
        ),
        DatasetSpec(
            "gtsrb",
            5,
            43,
            (0.3398, 0.3117, 0.3210),
            (0.2755, 0.2647, 0.2712),
            (39209, 12630),
            ("gtsrb",),
            "--download (torchvision GTSRB), or HAT's Udacity train.p/test.p",
        ),
        # FaceScrub-100 sizes are not known exactly (~20.6k / 2.3k): complete = all 100 people present.
        DatasetSpec(
            "facescrub",
            6,
            100,
            (0.5163, 0.5569, 0.4695),
            (0.2307, 0.2272, 0.2479),
            None,
            ("facescrub",),
            f"--download, or facescrub_100.zip from {FACESCRUB_URL}",
        ),
        # 16,853 / 1,873 are inferred from the paper's range and notMNIST_small's size.
        DatasetSpec(
            "notmnist",
            7,
            10,
            (0.4254,) * 3,
            (0.4501,) * 3,
            (16853, 1873),
            ("notmnist",),
            f"--download, or notmnist.zip from {NOTMNIST_URL}",
        ),
    ]
}
GRAY = ("mnist", "fashion_mnist", "notmnist")


@dataclass
class Source:
    """Files found for one data set, and how to read them into NCHW uint8 arrays: ``read(n_classes)``
    checks that every label is in ``0..n_classes-1``. ``images``: the files the train and the test
    images come from, for error messages (default: the first and the last file)."""

    kind: str
    where: Path
    files: list[Path]
    read: Callable[[int], Arrays]
    images: tuple[Path, Path] | None = None

    def image_file(self, split: str) -> Path:
        train, test = self.images or (self.files[0], self.files[-1])
        return train if split == "train" else test


@dataclass
class Layout:
    """One place a data set may be in a root: ``find`` returns a Source or None."""

    describe: Callable[[Path], list[str]]  # the paths it looks at, for the missing-data error
    find: Callable[[Path], Source | None]


def _pair(kind: str, where: Path, train: Path, test: Path, read_one: Callable[..., Any]) -> Source:
    """A data set in two files, a train file and a test file, each read by ``read_one(path, n_classes=)``."""
    return Source(kind, where, [train, test], lambda n: (*read_one(train, n_classes=n), *read_one(test, n_classes=n)))


def _npz_layout(dirs: tuple[str, ...], scramble: bool = False) -> Layout:
    def find(root: Path) -> Source | None:
        for d in dirs:
            tr, te = root / d / "train.npz", root / d / "test.npz"
            if tr.is_file() and te.is_file():
                return _pair("npz", root / d, tr, te, functools.partial(read_npz, scramble=scramble))
        return None

    return Layout(lambda root: [str(root / d / "{train,test}.npz") for d in dirs], find)


def _cifar_layout(folder: str, train: list[str], test: list[str], label_key: str) -> Layout:
    def find(root: Path) -> Source | None:
        tr, te = [root / folder / f for f in train], [root / folder / f for f in test]
        if not all(p.is_file() for p in tr + te):
            return None
        return Source(
            "torchvision",
            root / folder,
            tr + te,
            lambda n: (*read_cifar_batches(tr, label_key, n), *read_cifar_batches(te, label_key, n)),
        )

    return Layout(lambda root: [str(root / folder / f) for f in train + test], find)


def _svhn_layout() -> Layout:
    def find(root: Path) -> Source | None:
        for d in (root, root / "svhn"):
            tr, te = d / "train_32x32.mat", d / "test_32x32.mat"
            if tr.is_file() and te.is_file():
                return _pair("torchvision", d, tr, te, read_svhn_mat)
        return None

    return Layout(lambda root: [str(d / "{train,test}_32x32.mat") for d in (root, root / "svhn")], find)


def _gtsrb_official_layout() -> Layout:
    """torchvision's GTSRB: class folders of training PPMs, test PPMs labelled by a csv."""

    def find(root: Path) -> Source | None:
        base = root / "gtsrb"
        train_dir, test_dir, gt = (
            base / "GTSRB" / "Training",
            base / "GTSRB" / "Final_Test" / "Images",
            base / "GT-final_test.csv",
        )
        if not (train_dir.is_dir() and test_dir.is_dir() and gt.is_file()):
            return None
        try:  # the labels: class folder names (train), the csv's ClassId (test)
            train = sorted((p, int(p.parent.name)) for p in train_dir.glob("*/*.ppm"))
        except ValueError as e:
            raise CorruptDatasetError(f"{train_dir}: a class folder is not named by its class number ({e})") from e
        try:
            with open(gt) as f:
                rows = list(csv.DictReader(f, delimiter=";", skipinitialspace=True))
            test = [(test_dir / r["Filename"], int(r["ClassId"])) for r in rows]
        except (KeyError, TypeError, ValueError, csv.Error) as e:
            raise corrupt(gt, e) from e

        def read(n_classes: int) -> Arrays:
            y_train = np.array([c for _, c in train], dtype=np.int64)
            y_test = np.array([c for _, c in test], dtype=np.int64)
            check_label_range(train_dir, y_train, n_classes)
            check_label_range(gt, y_test, n_classes)
            return read_ppms([p for p, _ in train]), y_train, read_ppms([p for p, _ in test]), y_test

        return Source("torchvision", base, [gt] + [p for p, _ in train + test], read)

    return Layout(
        lambda root: [
            str(root / "gtsrb/GTSRB/Training/*/*.ppm"),
            str(root / "gtsrb/GTSRB/Final_Test/Images/*.ppm"),
            str(root / "gtsrb/GT-final_test.csv"),
        ],
        find,
    )


def _pickle_pair_layout(
    kind: str, folder: str, train: str, test: str, zip_name: str | None = None, hwc: bool = False
) -> Layout:
    """Two pickles in ``<root>/<folder>``, or inside ``<root>/<folder>/<zip_name>`` (by basename)."""

    def find(root: Path) -> Source | None:
        d = root / folder
        if (d / train).is_file() and (d / test).is_file():
            return _pair(kind, d, d / train, d / test, functools.partial(read_feature_pickle, hwc=hwc))
        if zip_name and (d / zip_name).is_file():
            z = d / zip_name
            try:
                with zipfile.ZipFile(z) as zf:
                    names = {Path(n).name: n for n in zf.namelist()}
            except (OSError, zipfile.BadZipFile) as e:
                raise corrupt(z, e) from e
            if train not in names or test not in names:
                raise CorruptDatasetError(f"{z}: does not contain {train} and {test}")
            return Source(
                kind,
                d,
                [z],
                lambda n: (*read_feature_pickle(z, names[train], hwc, n), *read_feature_pickle(z, names[test], hwc, n)),
            )
        return None

    looked = [folder + "/" + f for f in (train, test)] + ([f"{folder}/{zip_name}"] if zip_name else [])
    return Layout(lambda root: [str(root / p) for p in looked], find)


def _idx_layout(name: str) -> Layout:
    def find(root: Path) -> Source | None:
        files = idx_files(root / name / "raw")
        if files is None:
            return None

        def read(n_classes: int) -> Arrays:
            x_train, y_train = read_idx_pair(files["x_train"], files["y_train"], n_classes)
            x_test, y_test = read_idx_pair(files["x_test"], files["y_test"], n_classes)
            return x_train[:, None], y_train, x_test[:, None], y_test

        return Source("idx", root / name / "raw", list(files.values()), read, (files["x_train"], files["x_test"]))

    return Layout(lambda root: [str(root / name / "raw" / f"{v}[.gz]") for v in IDX_FILES.values()], find)


_CIFAR10_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
LAYOUTS: dict[str, list[Layout]] = {
    "cifar10": [_cifar_layout("cifar-10-batches-py", _CIFAR10_BATCHES, ["test_batch"], "labels")],
    "cifar100": [_cifar_layout("cifar-100-python", ["train"], ["test"], "fine_labels")],
    "mnist": [_idx_layout("MNIST")],
    "svhn": [_svhn_layout()],
    "fashion_mnist": [_idx_layout("FashionMNIST")],
    "gtsrb": [
        _gtsrb_official_layout(),
        _pickle_pair_layout("udacity-pickle", "gtsrb", "train.p", "test.p", hwc=True),
        _pickle_pair_layout("udacity-pickle", "traffic_signs/lab 2 data", "train.p", "test.p", hwc=True),
    ],
    "facescrub": [
        _pickle_pair_layout(
            "hat-pickle", "facescrub", "facescrub_train_100.pkl", "facescrub_test_100.pkl", "facescrub_100.zip"
        )
    ],
    "notmnist": [
        _pickle_pair_layout("hat-pickle", "notmnist", "notmnist_train.pkl", "notmnist_test.pkl", "notmnist.zip")
    ],
}
for _name, _spec in SPECS.items():  # every data set is also read from the plain npz format
    # FaceScrub npz files hold true-RGB HWC images: stored in HAT's scrambled layout like its pickles
    LAYOUTS[_name].append(_npz_layout(_spec.npz_dirs, scramble=_name == "facescrub"))


def check_name(name: str) -> DatasetSpec:
    """The spec of data set ``name``; ValueError naming the valid ones if there is none."""
    if name not in SPECS:
        raise ValueError(f"unknown data set {name!r}; valid: {', '.join(SPECS)}")
    return SPECS[name]


@contextlib.contextmanager
def searching(name: str, root: Path) -> Iterator[None]:
    """Looking for ``name`` in ``root``: a folder this user cannot search is a ``DataAccessError``."""
    try:
        yield
    except PermissionError as e:
        raise DataAccessError(
            f"cannot look for {name} in {e.filename or root} ({reason(e)}): give this user "
            f"read and execute permission on the folders of the data root {root}"
        ) from e


def locate(name: str, root: Path) -> Source | None:
    """The first layout of ``name`` present in ``root`` (no download, nothing read yet)."""
    check_name(name)
    with searching(name, root):
        for layout in LAYOUTS[name]:
            if (src := layout.find(root)) is not None:
                return src
    return None


def looked_at(name: str, root: Path) -> list[str]:
    return [p for layout in LAYOUTS[name] for p in layout.describe(root)]


def missing_hint(name: str, root: Path, download: bool) -> str:
    spec = check_name(name)
    return f"download={download}. Get it with {spec.get_it}, into {root}. {PLAIN_FORMAT}"
