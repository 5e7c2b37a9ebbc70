"""Trustworthy data: caches keyed on every file they derive from, SHA256SUMS for symlinked files too,
readers that check what they read (and name the file), verified downloads, one-line user errors."""

import dataclasses
import gzip
import hashlib
import os
import pickle
import re
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import SHARED_DATA
from test_datasets import write_cifar10

from cl_bench.benchmarks import cache, downloads
from cl_bench.benchmarks.cache import file_sha256s
from cl_bench.benchmarks.datasets import (
    SPECS,
    CorruptDatasetError,
    SubsetWarning,
    availability,
    format_availability,
    load_idx_dataset,
    load_prepared,
)
from cl_bench.cli.listing import list_
from cl_bench.data import DataAccessError


@pytest.fixture(autouse=True)
def quiet_subsets():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubsetWarning)
        yield


@pytest.fixture
def tmp_root(tmp_path, monkeypatch):
    """An empty data root with its own cache folder."""
    monkeypatch.setenv("CL_BENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    root.mkdir()
    return root


def in_file(path: Path) -> str:
    """A regex matching ``path`` in an error message."""
    return re.escape(str(path))


# ---- small files in the official formats --------------------------------------------------------


def idx_bytes(a: np.ndarray) -> bytes:
    return bytes([0, 0, 8, a.ndim]) + b"".join(d.to_bytes(4, "big") for d in a.shape) + a.astype(np.uint8).tobytes()


def write_idx(path: Path, a: np.ndarray | bytes) -> None:
    data = a if isinstance(a, bytes) else idx_bytes(a)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_mnist(
    root: Path, n_train: int = 30, n_test: int = 10, gz: bool = True, size: int = 28
) -> dict[str, np.ndarray]:
    """Four idx files of a tiny MNIST in ``root/MNIST/raw``."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rs = np.random.RandomState(0)
    a = {
        "x_train": rs.randint(0, 256, (n_train, size, size)),
        "y_train": np.arange(n_train) % 10,
        "x_test": rs.randint(0, 256, (n_test, size, size)),
        "y_test": (np.arange(n_test) * 3) % 10,
    }
    names = {
        "x_train": "train-images-idx3-ubyte",
        "y_train": "train-labels-idx1-ubyte",
        "x_test": "t10k-images-idx3-ubyte",
        "y_test": "t10k-labels-idx1-ubyte",
    }
    for k, v in a.items():
        write_idx(raw / (names[k] + (".gz" if gz else "")), v)
    return a


def mnist_file(root: Path, stem: str) -> Path:
    return root / "MNIST" / "raw" / f"{stem}-ubyte.gz"


def write_npz(folder: Path, n: int = 12, shape=(32, 32, 3), n_classes: int = 10, y=None, x=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rs = np.random.RandomState(n)
    for split in ("train", "test"):
        xx = rs.randint(0, 256, (n, *shape)).astype(np.uint8) if x is None else x
        yy = np.arange(n) % n_classes if y is None else y
        np.savez(folder / f"{split}.npz", x=xx, y=yy)


def hat_zip(folder: Path, zip_name: str, members: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / zip_name, "w") as z:
        for name, (x, y) in members.items():
            z.writestr(name, pickle.dumps({"features": x, "labels": y}, protocol=2))
    return folder / zip_name


# ---- 1. caches keyed on every source file -----------------------------------------------------------


def test_changed_labels_invalidate_the_idx_cache(tmp_root):
    want = write_mnist(tmp_root)
    first = load_idx_dataset("MNIST", tmp_root, download=False)
    assert first.y_train.tolist() == want["y_train"].tolist()
    for split, stem in (("train", "train-labels-idx1"), ("test", "t10k-labels-idx1")):  # same images
        write_idx(mnist_file(tmp_root, stem), (want[f"y_{split}"] + 1) % 10)
    again = load_idx_dataset("MNIST", tmp_root, download=False)
    assert torch.equal(again.x_train, first.x_train)
    assert again.y_train.tolist() == ((want["y_train"] + 1) % 10).tolist()
    assert again.y_test.tolist() == ((want["y_test"] + 1) % 10).tolist()
    prepared = load_prepared("mnist", tmp_root)  # the 32x32x3 cache follows the labels too
    assert prepared.y_test.tolist() == ((want["y_test"] + 1) % 10).tolist()


def test_an_edit_that_keeps_size_and_mtime_is_rehashed(tmp_root):
    f = tmp_root / "data.bin"
    f.write_bytes(b"a" * 100)
    st = f.stat()
    assert file_sha256s([f], tmp_root)[f] == hashlib.sha256(b"a" * 100).hexdigest()
    f.write_bytes(b"b" * 100)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # as `touch -d` would
    assert file_sha256s([f], tmp_root)[f] == hashlib.sha256(b"b" * 100).hexdigest()


def test_the_prepared_cache_follows_the_data_set_spec(tmp_root, monkeypatch):
    write_cifar10(tmp_root)  # 100 + 20 images: a subset, so no md5 check
    load_prepared("cifar10", tmp_root)
    monkeypatch.setitem(SPECS, "cifar10", dataclasses.replace(SPECS["cifar10"], official=(100, 20)))  # full set
    with pytest.raises(CorruptDatasetError, match="official md5"):
        load_prepared("cifar10", tmp_root)


def test_a_malformed_cache_file_is_rebuilt_not_trusted(tmp_root):
    write_npz(tmp_root / "cifar10")
    good = load_prepared("cifar10", tmp_root)
    [cached] = (tmp_root.parent / "cache").glob("*/prepared-cifar10-*.pt")
    blob = torch.load(cached, weights_only=True)
    blob["arrays"]["y_train"] = blob["arrays"]["y_train"][:3]  # 3 labels for 12 images
    torch.save(blob, cached)
    with pytest.warns(UserWarning, match="rebuilding unreadable cache file"):
        again = load_prepared("cifar10", tmp_root)
    assert torch.equal(again.y_train, good.y_train)


# ---- 2. SHA256SUMS, symlinks included ---------------------------------------------------------------


def sums_for(root: Path, rel: str, digest: str, binary: bool = False) -> None:
    (root / "SHA256SUMS").write_text(f"{digest} {'*' if binary else ' '}{rel}\n")


def test_sha256sums_cover_a_symlinked_file(tmp_root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    write_npz(elsewhere)
    (tmp_root / "cifar10").mkdir()
    for split in ("train", "test"):
        (tmp_root / "cifar10" / f"{split}.npz").symlink_to(elsewhere / f"{split}.npz")
    sums_for(tmp_root, "cifar10/train.npz", "0" * 64)
    with pytest.raises(CorruptDatasetError, match="cifar10/train.npz.*does not match"):
        load_prepared("cifar10", tmp_root)


def test_sha256sums_cover_a_symlinked_folder_and_binary_mode_lines(tmp_root, tmp_path):
    write_npz(tmp_path / "elsewhere")
    (tmp_root / "cifar10").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    sums_for(tmp_root, "cifar10/test.npz", "f" * 64, binary=True)  # `sha256sum -b` output
    with pytest.raises(CorruptDatasetError, match="does not match"):
        load_prepared("cifar10", tmp_root)
    good = hashlib.sha256((tmp_path / "elsewhere" / "test.npz").read_bytes()).hexdigest()
    sums_for(tmp_root, "cifar10/test.npz", good, binary=True)
    assert len(load_prepared("cifar10", tmp_root).y_test) == 12


def test_a_sha256sums_line_that_cannot_be_parsed_is_an_error(tmp_root):
    write_npz(tmp_root / "cifar10")
    (tmp_root / "SHA256SUMS").write_text("d284cb6c  cifar10/train.npz\n")  # a truncated digest
    with pytest.raises(CorruptDatasetError, match="SHA256SUMS: line 1 is not a sha256sum line"):
        load_prepared("cifar10", tmp_root)


# ---- 3. readers check what they read and name the file ------------------------------------------


@pytest.mark.parametrize("load", ["idx", "prepared"])
def test_idx_label_count_must_match_the_images(tmp_root, load):
    write_mnist(tmp_root)
    labels = mnist_file(tmp_root, "t10k-labels-idx1")
    write_idx(labels, np.arange(9) % 10)  # 9 labels for 10 images
    with pytest.raises(CorruptDatasetError, match=in_file(labels) + ": 9 labels for the 10 images"):
        load_idx_dataset("MNIST", tmp_root, False) if load == "idx" else load_prepared("mnist", tmp_root)


@pytest.mark.parametrize("load", ["idx", "prepared"])
def test_idx_labels_must_be_in_range(tmp_root, load):
    write_mnist(tmp_root)
    labels = mnist_file(tmp_root, "train-labels-idx1")
    write_idx(labels, np.r_[np.arange(29) % 10, 10])
    with pytest.raises(CorruptDatasetError, match=in_file(labels) + r": labels span 0\.\.10, outside 0\.\.9"):
        load_idx_dataset("MNIST", tmp_root, False) if load == "idx" else load_prepared("mnist", tmp_root)


@pytest.mark.parametrize(
    "content,message",
    [
        (idx_bytes(np.zeros((10, 784))), "idx file with 2 dims, expected 3"),  # a flat (N, 784) file
        (bytes([0, 0, 8, 3, 0, 0]), "truncated idx file: 6 bytes, header needs 16"),
        (bytes([0, 0, 8]), "truncated idx file: 3 bytes, no header"),
    ],
)
def test_bad_idx_images_name_the_file(tmp_root, content, message):
    write_mnist(tmp_root)
    images = mnist_file(tmp_root, "t10k-images-idx3")
    write_idx(images, content)
    with pytest.raises(CorruptDatasetError, match=in_file(images) + ": " + re.escape(message)):
        load_idx_dataset("MNIST", tmp_root, False)


def test_idx_images_of_another_size_are_refused_for_split_mnist(tmp_root):
    write_mnist(tmp_root, size=32, gz=False)
    with pytest.raises(CorruptDatasetError, match="train-images-idx3-ubyte: images are 32x32, expected 28x28"):
        load_idx_dataset("MNIST", tmp_root, False)


def test_npz_labels_out_of_range_name_the_file(tmp_root):
    write_npz(tmp_root / "cifar10", y=np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, -1]))
    with pytest.raises(CorruptDatasetError, match=in_file(tmp_root / "cifar10" / "train.npz") + ".*outside 0..9"):
        load_prepared("cifar10", tmp_root)


def test_npz_stored_nchw_is_refused(tmp_root):
    write_npz(tmp_root / "cifar10", shape=(3, 32, 32))
    with pytest.raises(CorruptDatasetError, match="train.npz: x must be NHWC with 1 or 3 channels"):
        load_prepared("cifar10", tmp_root)


def test_cifar_batch_labels_out_of_range_name_the_batch(tmp_root):
    write_cifar10(tmp_root)
    batch = tmp_root / "cifar-10-batches-py" / "data_batch_3"
    with open(batch, "rb") as f:
        d = pickle.load(f)
    d["labels"][4] = 12
    with open(batch, "wb") as f:
        pickle.dump(d, f, protocol=2)
    with pytest.raises(CorruptDatasetError, match=in_file(batch) + ": labels span 0..12, outside 0..9"):
        load_prepared("cifar10", tmp_root)


def test_hat_zip_members_are_named(tmp_root):
    x = np.zeros((10, 1, 32, 32), np.uint8)
    z = hat_zip(
        tmp_root / "notmnist",
        "notmnist.zip",
        {"notmnist_train.pkl": (x, np.arange(10)), "notmnist_test.pkl": (x[:3], np.array([0, 1, 10]))},
    )
    with pytest.raises(CorruptDatasetError, match=in_file(z) + ":notmnist_test.pkl: labels span"):
        load_prepared("notmnist", tmp_root)


# ---- 4. downloads are verified ------------------------------------------------------------------------


def test_download_md5s_are_torchvisions():
    import inspect

    import torchvision.datasets as tvd  # here only: importing torchvision costs seconds

    md5 = downloads.DOWNLOAD_MD5
    for cls, name in ((tvd.CIFAR10, "cifar10"), (tvd.CIFAR100, "cifar100")):
        assert md5[name][cls.filename] == cls.tgz_md5
        assert all(md5[name][f"{cls.base_folder}/{f}"] == m for f, m in cls.train_list + cls.test_list)
    for cls, name in ((tvd.MNIST, "mnist"), (tvd.FashionMNIST, "fashion_mnist")):
        assert {f: m for f, m in cls.resources} == {Path(k).name: m for k, m in md5[name].items()}
    assert {fn: m for _, fn, m in (tvd.SVHN.split_list[s] for s in ("train", "test"))} == md5["svhn"]
    source = inspect.getsource(tvd.GTSRB.download)  # GTSRB's md5s are literals in its download()
    assert all(f'{Path(f).name}",' in source and f'md5="{m}"' in source for f, m in md5["gtsrb"].items())


def test_a_downloaded_file_with_the_wrong_md5_is_refused(tmp_root, monkeypatch):
    write_cifar10(tmp_root)
    batch = tmp_root / "cifar-10-batches-py" / "data_batch_1"
    with pytest.raises(CorruptDatasetError, match=in_file(batch) + ": md5 .* is not torchvision's c99cafc1"):
        downloads.verify_download("cifar10", tmp_root)
    local = {
        f"cifar-10-batches-py/{p.name}": hashlib.md5(p.read_bytes()).hexdigest()
        for p in (tmp_root / "cifar-10-batches-py").iterdir()
    }
    monkeypatch.setitem(downloads.DOWNLOAD_MD5, "cifar10", local)
    downloads.verify_download("cifar10", tmp_root)  # every file as expected: no error
    with pytest.raises(CorruptDatasetError, match="left none of"):
        downloads.verify_download("svhn", tmp_root)


def test_a_downloaded_hat_zip_is_checked_member_by_member(tmp_root):
    x = np.zeros((20, 1, 32, 32), np.uint8)
    hat_zip(
        tmp_root / "notmnist",
        "notmnist.zip",
        {"notmnist_train.pkl": (x, np.arange(20) % 10), "notmnist_test.pkl": (x[:5], np.arange(5))},
    )
    downloads.verify_download("notmnist", tmp_root)
    hat_zip(
        tmp_root / "notmnist",
        "notmnist.zip",
        {"notmnist_train.pkl": (x, np.arange(20) % 7), "notmnist_test.pkl": (x[:5], np.arange(5))},
    )
    with pytest.raises(CorruptDatasetError, match="notmnist.zip: the train split has 7 of the 10 classes"):
        downloads.verify_download("notmnist", tmp_root)
    hat_zip(
        tmp_root / "notmnist",
        "notmnist.zip",
        {"notmnist_train.pkl": (x[:, :, :28, :28], np.arange(20) % 10), "notmnist_test.pkl": (x[:5], np.arange(5))},
    )
    with pytest.raises(CorruptDatasetError, match=r"expected \(N, C, 32, 32\)"):
        downloads.verify_download("notmnist", tmp_root)


# ---- 5. user errors are one clear line --------------------------------------------------------------


def test_a_data_root_that_is_a_file(tmp_path):
    root = tmp_path / "data"
    root.write_text("not a folder")
    for call in (
        lambda: load_prepared("cifar10", root),
        lambda: load_idx_dataset("MNIST", root, False),
        lambda: availability(root),
    ):
        with pytest.raises(
            DataAccessError,
            match=f"data root {in_file(root)} is a file, not a folder: pass --data-root or set \\$CL_BENCH_DATA",
        ):
            call()


def test_an_unreadable_data_root(tmp_root, monkeypatch):
    write_npz(tmp_root / "cifar10")
    if os.geteuid() != 0:  # root reads everything: simulate the permission check there
        tmp_root.chmod(0)
    else:
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_root else real(p, mode))
    try:
        with pytest.raises(DataAccessError, match=f"cannot read data root {in_file(tmp_root)} .*permission"):
            load_prepared("cifar10", tmp_root)
    finally:
        tmp_root.chmod(0o755)


def test_an_unreadable_data_file(tmp_root, monkeypatch):
    write_npz(tmp_root / "cifar10")
    bad = tmp_root / "cifar10" / "test.npz"
    if os.geteuid() != 0:
        bad.chmod(0)
    else:
        real = cache.sha256

        def sha256(path, *a):
            if path == bad:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, *a)

        monkeypatch.setattr(cache, "sha256", sha256)
    with pytest.raises(DataAccessError, match=f"cannot read {in_file(bad)} \\(Permission denied\\): give this"):
        load_prepared("cifar10", tmp_root)


def test_a_folder_of_the_root_that_cannot_be_searched(tmp_root, monkeypatch):
    write_npz(tmp_root / "cifar10")
    locked = tmp_root / "cifar10"
    if os.geteuid() != 0:
        locked.chmod(0)
    else:
        real = Path.is_file

        def is_file(self):
            if self.parent == locked:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(Path, "is_file", is_file)
    try:
        with pytest.raises(DataAccessError, match=f"cannot look for cifar10 in {in_file(locked)}.*Permission denied"):
            load_prepared("cifar10", tmp_root)
    finally:
        locked.chmod(0o755)


def test_an_unusable_cache_folder(tmp_root, tmp_path, monkeypatch):
    write_npz(tmp_root / "cifar10")
    (tmp_path / "cachefile").write_text("")
    monkeypatch.setenv("CL_BENCH_CACHE", str(tmp_path / "cachefile"))
    with pytest.raises(DataAccessError, match="cannot create the cache folder .*: set \\$CL_BENCH_CACHE"):
        load_prepared("cifar10", tmp_root)
    monkeypatch.setenv("CL_BENCH_CACHE", str(tmp_path / "ro-cache"))
    (tmp_path / "ro-cache").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if "ro-cache" in str(p) else real(p, mode))
    with pytest.raises(DataAccessError, match="cannot write to the cache folder"):
        availability(tmp_root)


def test_list_details_on_corrupt_data_is_one_line_per_data_set(tmp_root, monkeypatch):
    write_npz(tmp_root / "cifar10")
    write_npz(tmp_root / "notmnist", shape=(28, 28, 1))
    data = (tmp_root / "cifar10" / "test.npz").read_bytes()
    (tmp_root / "cifar10" / "test.npz").write_bytes(data[: len(data) // 2])
    monkeypatch.setenv("CL_BENCH_DATA", str(tmp_root))
    result = CliRunner().invoke(list_, ["scenarios", "--details"])
    assert result.exception is None, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("cifar10 "))
    assert "UNUSABLE" in line and str(tmp_root / "cifar10" / "test.npz") in line
    assert re.search(r"^notmnist\s+npz\s+12\s+12\s+10\s+SUBSET", result.output, re.M)  # the others still listed
    assert "Traceback" not in result.output
    rows = {r["name"]: r for r in availability(tmp_root)}
    assert "truncated" in rows["cifar10"]["error"] and "UNUSABLE" in format_availability(list(rows.values()))


@pytest.mark.skipif(not (SHARED_DATA / "MNIST").is_dir(), reason="MNIST not in the shared data")
def test_real_mnist_labels_changed_in_a_copy(tmp_root):
    """The hostile tester's case on the real files: every label changed, same images."""
    raw = tmp_root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (SHARED_DATA / "MNIST" / "raw").iterdir():
        shutil.copy(f, raw / f.name)
    before = load_idx_dataset("MNIST", tmp_root, False)
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", (y + 1) % 10)
    after = load_idx_dataset("MNIST", tmp_root, False)
    assert torch.equal(after.y_test, (before.y_test + 1) % 10) and torch.equal(after.x_test, before.x_test)
