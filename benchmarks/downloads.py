"""Downloads and their verification: torchvision fetches the official files (HAT's URLs for FaceScrub
and notMNIST), and every download is checked before it is used.

- torchvision's files: against torchvision's own md5s (``DOWNLOAD_MD5``, copied from torchvision 0.29
  and compared with it by the tests). torchvision checks its archives too; checking here as well keeps
  the guarantee independent of its version and covers the extracted files it leaves.
- HAT's zips: no checksum of them is published (nor known here), so their members are checked
  (``check_members``); every run records the zip's sha256.
- ``check_official_md5``: a local torchvision file that claims the official sample count must be
  bit-identical to the official one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from cl_bench.benchmarks.catalogue import FACESCRUB_URL, NOTMNIST_URL, PLAIN_FORMAT, Source, check_name, locate
from cl_bench.benchmarks.formats import CorruptDatasetError
from cl_bench.data import DataAccessError

_CIFAR10 = {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"} | {
    f"cifar-10-batches-py/{f}": m
    for f, m in [
        ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
        ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
        ("data_batch_4", "634d18415352ddfa80567beed471001a"),
        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
        ("test_batch", "40351d587109b95175f43aff81a1287e"),
    ]
}
_IDX_GZ = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]
# torchvision's md5 of every file its download leaves in the root (its class attributes, and the
# literals of GTSRB.download), by path relative to the root. tests/benchmarks checks them against torchvision.
DOWNLOAD_MD5: dict[str, dict[str, str]] = {
    "cifar10": _CIFAR10,
    "cifar100": {
        "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python/train": "16019d7e3df5f24257cddd939b257f8d",
        "cifar-100-python/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    },
    "mnist": dict(
        zip(
            [f"MNIST/raw/{f}" for f in _IDX_GZ],
            [
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ],
        )
    ),
    "fashion_mnist": dict(
        zip(
            [f"FashionMNIST/raw/{f}" for f in _IDX_GZ],
            [
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ],
        )
    ),
    "svhn": {
        "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
        "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    },
    "gtsrb": {
        "gtsrb/GTSRB-Training_fixed.zip": "513f3c79a4c5141765e10e952eaa2478",
        "gtsrb/GTSRB_Final_Test_Images.zip": "c7e4e6327067d32654124b0fe9e82185",
        "gtsrb/GTSRB_Final_Test_GT.zip": "fe31e9c9270bbcd7b84b7f21a9d9d9e5",
    },
}


def md5(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_files(name: str, root: Path) -> None:
    """Fetch the official files into ``root`` (torchvision), or HAT's zip for FaceScrub/notMNIST,
    then ``verify_download``. A failed download is a ``DataAccessError`` saying what to do."""
    import torchvision.datasets as tvd  # only to download: importing torchvision costs seconds
    from torchvision.datasets.utils import download_url

    check_name(name)  # an unknown name is an error before any download
    try:
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
    except (OSError, RuntimeError) as e:  # no network, no permission, torchvision's md5 check failed
        raise DataAccessError(
            f"downloading {name} into {root} failed ({e}). Check the network and that {root} is writable. "
            f"Offline, copy the data set to a folder yourself (in the layout torchvision's downloader writes, "
            f"or the plain format below) and point cl-bench at that folder with --data-root or the "
            f"CL_BENCH_DATA environment variable. {PLAIN_FORMAT}"
        ) from e
    verify_download(name, root)


def verify_download(name: str, root: Path) -> None:
    """Check what a download left in ``root``: torchvision's files against ``DOWNLOAD_MD5`` (those
    present: torchvision skips what it already has), HAT's zips by their members (``check_members``)."""
    if name in ("facescrub", "notmnist"):
        check_members(name, root)
        return
    present = {root / rel: want for rel, want in DOWNLOAD_MD5[name].items() if (root / rel).is_file()}
    if not present:
        raise CorruptDatasetError(f"download of {name} left none of {', '.join(DOWNLOAD_MD5[name])} in {root}")
    for path, want in present.items():
        if (got := md5(path)) != want:
            raise CorruptDatasetError(
                f"{path}: md5 {got} is not torchvision's {want}: the download is corrupt "
                "or was modified; delete it and download again"
            )


def check_members(name: str, root: Path) -> None:
    """HAT's FaceScrub / notMNIST zips: no checksum of them is published (nor known here), so the
    members are checked instead: both pickles readable, (N, 1 or 3, 32, 32) uint8 images, labels in
    range, every class present in the train split. A wrong but well-formed zip would pass: the run
    records the zip's sha256, so such a file can be traced afterwards."""
    spec = check_name(name)
    src = locate(name, root)
    if src is None or src.kind != "hat-pickle":
        raise CorruptDatasetError(f"download of {name} left no HAT pickles in {root / name}")
    x_tr, y_tr, x_te, y_te = src.read(spec.n_classes)
    for x, split in ((x_tr, "train"), (x_te, "test")):
        if len(x) == 0 or x.shape[1] not in (1, 3) or x.shape[2:] != (32, 32):
            raise CorruptDatasetError(f"{src.files[0]}: {split} images are {x.shape}, expected (N, C, 32, 32)")
    if len(np.unique(y_tr)) != spec.n_classes:
        raise CorruptDatasetError(
            f"{src.files[0]}: the train split has {len(np.unique(y_tr))} of the {spec.n_classes} classes of {name}"
        )


def official_md5() -> dict[str, str]:
    """torchvision's md5 of the official CIFAR / SVHN files, keyed by '<folder>/<file>' or file."""
    return {rel: m for name in ("cifar10", "cifar100", "svhn") for rel, m in DOWNLOAD_MD5[name].items()}


def check_official_md5(src: Source) -> None:
    """A torchvision file that claims to be the full official set must be bit-identical to it."""
    sums = official_md5()
    for p in src.files:
        want = sums.get(f"{p.parent.name}/{p.name}") or sums.get(p.name)
        if want and md5(p) != want:
            raise CorruptDatasetError(
                f"{p}: has the official sample count but not the official md5 "
                f"{want}: the file is corrupt or was modified"
            )
