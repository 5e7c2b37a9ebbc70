"""Dataset loaders of the mixture (as the authors' code): real files in the test data root where present, and
small files in the official formats (written here) for CIFAR100, SVHN, HAT's pickles and GTSRB PPMs."""

import dataclasses
import gzip
import hashlib
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from PIL import Image

from cl_bench.benchmarks import catalogue
from cl_bench.benchmarks import datasets as ds
from cl_bench.benchmarks.datasets import (
    SPECS,
    CorruptDatasetError,
    SubsetWarning,
    availability,
    format_availability,
    load_prepared,
    normalisation,
)
from cl_bench.data import DatasetMissingError


def shared(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not (SHARED_DATA / name).is_dir(), reason=f"{name} not in {SHARED_DATA}")


@pytest.fixture(autouse=True)
def quiet_subsets():
    import warnings

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


def npz(path: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(SHARED_DATA / name / path) as z:
        return {k: z[k] for k in z.files}


def channel_stats(*xs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of x / 255, exactly, from value histograms (no float copy of x)."""
    means, stds = [], []
    v = torch.arange(256, dtype=torch.float64) / 255
    for c in range(xs[0].shape[1]):
        h = sum(torch.bincount(x[:, c].flatten(), minlength=256) for x in xs).double()
        m = (h * v).sum() / h.sum()
        means.append(m.item()), stds.append(((h * (v - m) ** 2).sum() / (h.sum() - 1)).sqrt().item())
    return np.array(means), np.array(stds)


# ---- writers of the official formats (also used by tests/test_cifar.py) -------------------------


def coded_images(labels: np.ndarray, seed: int) -> np.ndarray:
    """(N, 3072) uint8 CHW-flattened images; pixel 0 = label, pixel 1 = running index (to trace rows)."""
    x = np.random.RandomState(seed).randint(0, 256, (len(labels), 3072)).astype(np.uint8)
    x[:, 0], x[:, 1] = labels, np.arange(len(labels)) % 256
    return x


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 20) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for b in range(1, 6):
        y = np.arange(per_batch) % 10
        x = coded_images(y, b)
        with open(folder / f"data_batch_{b}", "wb") as f:
            pickle.dump({"data": x, "labels": y.tolist(), "batch_label": f"batch {b}"}, f, protocol=2)
        xs.append(x), ys.append(y)
    yt = (np.arange(n_test) * 3) % 10
    xt = coded_images(yt, 9)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": xt, "labels": yt.tolist()}, f, protocol=2)
    return {"x_train": np.concatenate(xs), "y_train": np.concatenate(ys), "x_test": xt, "y_test": yt}


def write_cifar100(root: Path, per_class: int = 2, n_test: int = 100) -> dict[str, np.ndarray]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    y = np.tile(np.arange(100), per_class)
    x = coded_images(y, 1)
    yt = np.arange(n_test) % 100
    xt = coded_images(yt, 2)
    for name, xx, yy in (("train", x, y), ("test", xt, yt)):
        with open(folder / name, "wb") as f:
            pickle.dump({"data": xx, "fine_labels": yy.tolist(), "coarse_labels": (yy // 5).tolist()}, f, protocol=2)
    return {"x_train": x, "y_train": y, "x_test": xt, "y_test": yt}


# ---- real data: adaptation as the authors' code ------------------------------------------------


@shared("MNIST")
@pytest.mark.parametrize(
    "name,folder,mean,std", [("mnist", "MNIST", 0.1, 0.2752), ("fashion_mnist", "FashionMNIST", 0.2190, 0.3318)]
)
def test_mnist_family_padded_by_2_and_replicated(name, folder, mean, std):
    if not (SHARED_DATA / folder).is_dir():
        pytest.skip(f"{folder} missing")
    raw = load_prepared(name, SHARED_DATA)
    assert raw.x_train.shape == (60000, 3, 32, 32) and raw.x_test.shape == (10000, 3, 32, 32)
    assert raw.x_train.dtype == torch.uint8 and raw.y_train.dtype == torch.int64
    assert raw.source["complete"] and raw.n_classes == 10
    with gzip.open(SHARED_DATA / folder / "raw" / "t10k-images-idx3-ubyte.gz") as f:  # independent parse
        plain = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    for c in range(3):
        assert np.array_equal(raw.x_test[:, c, 2:30, 2:30].numpy(), plain)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert raw.x_train[:, :, border].max() == 0  # pad 2 with 0
    m, s = channel_stats(raw.x_train)
    assert np.allclose(m, mean, atol=5e-4) and np.allclose(s, std, atol=5e-4)  # "including the padding"
    assert normalisation(name) == ((mean,) * 3, (std,) * 3)


@shared("notmnist")
def test_notmnist_is_resized_like_the_reference_pickle_not_padded():
    raw = load_prepared("notmnist", SHARED_DATA)
    src = npz("train.npz", "notmnist")
    assert raw.x_train.shape == (9000, 3, 32, 32) and torch.equal(raw.y_train, torch.from_numpy(src["y"]))
    assert torch.bincount(raw.y_train).tolist() == [900] * 10 and not raw.source["complete"]
    for i in (0, 4321):  # PIL Lanczos (= Image.ANTIALIAS of HAT's notmnist_convert)
        want = np.asarray(Image.fromarray(src["x"][i, :, :, 0]).resize((32, 32), Image.LANCZOS))
        assert np.array_equal(raw.x_train[i, 0].numpy(), want) and torch.equal(raw.x_train[i, 0], raw.x_train[i, 2])
    m, s = channel_stats(raw.x_train)
    assert abs(m[0] - 0.4254) < 0.003 and abs(s[0] - 0.4501) < 0.003  # reference constants
    assert abs(src["x"].mean() / 255 * 28 * 28 / 32 / 32 - 0.4254) > 0.05  # padding would not match


@pytest.fixture(scope="module")
def gtsrb():
    if not (SHARED_DATA / "gtsrb").is_dir():
        pytest.skip("gtsrb missing")
    return load_prepared("gtsrb", SHARED_DATA)  # 120 MB npz: loaded once (and cached across sessions)


def test_gtsrb_chw_counts_and_reference_statistics(gtsrb):
    assert gtsrb.x_train.shape == (39209, 3, 32, 32) and gtsrb.x_test.shape == (12630, 3, 32, 32)
    counts = torch.bincount(gtsrb.y_train, minlength=43)
    assert len(counts) == 43 and counts.min() == 210 and counts.max() == 2250
    assert len(gtsrb.y_test.unique()) == 43 and gtsrb.source["complete"]
    test = npz("test.npz", "gtsrb")
    assert np.array_equal(gtsrb.x_test[7].numpy(), test["x"][7].transpose(2, 0, 1))  # CHW
    m, s = channel_stats(gtsrb.x_train[::4])
    assert np.allclose(m, SPECS["gtsrb"].mean, atol=2e-3) and np.allclose(s, SPECS["gtsrb"].std, atol=2e-3)


@shared("facescrub")
def test_facescrub_uses_hats_scrambled_layout_by_default():
    raw = load_prepared("facescrub", SHARED_DATA)
    tr, te = npz("train.npz", "facescrub"), npz("test.npz", "facescrub")
    assert torch.equal(raw.x_train, torch.from_numpy(tr["x"].reshape(-1, 3, 32, 32)))  # plain reshape
    m, _ = channel_stats(raw.x_train, raw.x_test)
    assert np.allclose(m, [0.5154, 0.5617, 0.4801], atol=5e-4)  # README's scrambled-view means
    assert normalisation("facescrub", raw) == (SPECS["facescrub"].mean, SPECS["facescrub"].std)
    rgb = load_prepared("facescrub", SHARED_DATA, facescrub_true_rgb=True)
    assert torch.equal(rgb.x_test, torch.from_numpy(te["x"].transpose(0, 3, 1, 2).copy()))
    m, _ = channel_stats(rgb.x_train, rgb.x_test)
    assert np.allclose(m, [0.6547, 0.4894, 0.4131], atol=5e-4)  # README's true-RGB means
    mean, std = normalisation("facescrub", rgb)
    assert np.allclose(mean, channel_stats(rgb.x_train)[0]) and np.allclose(std, channel_stats(rgb.x_train)[1])
    assert raw.n_classes == 100 and raw.source["classes_present"] == 20 and not raw.source["complete"]


@shared("cifar10")
def test_cifar10_subset_warns_and_says_so():
    with pytest.warns(SubsetWarning, match="cifar10: using a subset"):
        raw = load_prepared("cifar10", SHARED_DATA)
    tr = npz("train.npz", "cifar10")
    assert raw.x_train.shape == (4000, 3, 32, 32)
    assert raw.x_train[0, :, 0, 0].tolist() == [59, 62, 63]  # CIFAR's first pixel, RGB planes
    assert torch.equal(raw.y_train, torch.from_numpy(tr["y"]))
    assert raw.source["complete"] is False and raw.source["found"] == "npz"
    assert (
        raw.source["files"][str(SHARED_DATA / "cifar10" / "train.npz")]
        == "d284cb6cb68e00e779c0aeef930b2d9b6509bb7c22cc91761722312f9f15a732"
    )


@shared("MNIST")
def test_availability_of_the_shared_root():
    rows = {r["name"]: r for r in availability(SHARED_DATA)}
    assert list(rows) == list(SPECS)
    for name in ("cifar100", "svhn"):
        if rows[name]["found"] is None:
            assert any("cifar-100-python" in p or "32x32.mat" in p for p in rows[name]["looked"])
    assert rows["mnist"]["complete"] and (rows["mnist"]["train"], rows["mnist"]["test"]) == (60000, 10000)
    table = format_availability(list(rows.values()))
    assert "mnist" in table and "SUBSET" in table
    assert {r["name"]: r["found"] for r in availability(SHARED_DATA, load=False)}["mnist"] == "idx"


# ---- official formats, written here --------------------------------------------------------------


def test_cifar100_python_pickles(tmp_root):
    want = write_cifar100(tmp_root)
    with pytest.warns(SubsetWarning):
        raw = load_prepared("cifar100", tmp_root)
    assert raw.source["found"] == "torchvision" and raw.n_classes == 100
    assert np.array_equal(raw.x_train.numpy(), want["x_train"].reshape(-1, 3, 32, 32))
    assert np.array_equal(raw.y_train.numpy(), want["y_train"])  # fine labels
    assert np.array_equal(raw.x_test[:, 0, 0, 0].numpy(), want["y_test"])  # the coded pixel follows y


def test_cifar10_batches_in_order(tmp_root):
    want = write_cifar10(tmp_root)
    raw = load_prepared("cifar10", tmp_root)
    assert np.array_equal(raw.x_train.numpy(), want["x_train"].reshape(-1, 3, 32, 32))
    assert np.array_equal(raw.y_test.numpy(), want["y_test"])


def test_svhn_mat_labels_are_not_shifted(tmp_root):
    import scipy.io

    n = 30
    X = np.random.RandomState(0).randint(0, 256, (32, 32, 3, n)).astype(np.uint8)
    y = (np.arange(n) % 10 + 1).reshape(n, 1)  # .mat convention: digit 0 is 10
    (tmp_root / "svhn").mkdir()
    for split in ("train", "test"):
        scipy.io.savemat(tmp_root / "svhn" / f"{split}_32x32.mat", {"X": X, "y": y})
    raw = load_prepared("svhn", tmp_root)
    assert raw.y_train.tolist() == [(i % 10 + 1) % 10 for i in range(n)]  # 10 -> 0, others unchanged
    assert raw.y_train.min() == 0  # no label -1 (the authors' -1 was for torchvision 0.1.9)
    assert raw.x_train[5, 2, 3, 4] == X[3, 4, 2, 5]  # x[n, c, h, w] = X[h, w, c, n]


def hat_pickle(path: Path, features: np.ndarray, labels: np.ndarray) -> None:
    with open(path, "wb") as f:
        pickle.dump({"features": features, "labels": labels}, f, protocol=2)


def test_facescrub_hat_pickles_in_their_zip(tmp_root):
    rs = np.random.RandomState(1)
    x = rs.randint(-128, 128, (12, 3, 32, 32)).astype(np.int8)  # HAT stores the uint8 bits as int8
    y = (np.arange(12) % 4).astype(np.int8)
    folder = tmp_root / "facescrub"
    folder.mkdir()
    hat_pickle(folder / "facescrub_train_100.pkl", x, y)
    hat_pickle(folder / "facescrub_test_100.pkl", x[:5], y[:5])
    with zipfile.ZipFile(folder / "facescrub_100.zip", "w") as z:
        for name in ("facescrub_train_100.pkl", "facescrub_test_100.pkl"):
            z.write(folder / name, name)
            (folder / name).unlink()
    raw = load_prepared("facescrub", tmp_root)
    assert raw.source["found"] == "hat-pickle" and raw.source["where"] == str(folder)
    assert np.array_equal(raw.x_train.numpy(), x.astype(np.uint8))  # layout kept as stored (HAT)
    assert raw.y_test.tolist() == [0, 1, 2, 3, 0]


def test_notmnist_hat_pickles(tmp_root):
    x = np.random.RandomState(2).randint(0, 256, (10, 1, 32, 32)).astype(np.uint8)
    (tmp_root / "notmnist").mkdir()
    hat_pickle(tmp_root / "notmnist" / "notmnist_train.pkl", x, np.arange(10, dtype=np.uint8))
    hat_pickle(tmp_root / "notmnist" / "notmnist_test.pkl", x[:3], np.arange(3, dtype=np.uint8))
    raw = load_prepared("notmnist", tmp_root)
    assert raw.x_train.shape == (10, 3, 32, 32)
    assert all(torch.equal(raw.x_train[:, c], torch.from_numpy(x[:, 0])) for c in range(3))  # not resized


def test_gtsrb_official_ppms_resized_to_32(tmp_root):
    base = tmp_root / "gtsrb"
    rs = np.random.RandomState(3)
    imgs = {}
    for cls, size in ((0, (40, 35)), (2, (32, 32)), (2, (50, 61))):
        d = base / "GTSRB" / "Training" / f"{cls:05d}"
        d.mkdir(parents=True, exist_ok=True)
        img = rs.randint(0, 256, (*size, 3)).astype(np.uint8)
        name = f"00000_{len(imgs):05d}.ppm"
        Image.fromarray(img).save(d / name)
        imgs[(cls, name)] = img
    test_dir = base / "GTSRB" / "Final_Test" / "Images"
    test_dir.mkdir(parents=True)
    flat = np.full((45, 47, 3), (10, 200, 30), np.uint8)  # a constant image stays constant
    Image.fromarray(flat).save(test_dir / "00000.ppm")
    (base / "GT-final_test.csv").write_text(
        "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n00000.ppm;47;45;5;5;40;40;42\n"
    )
    raw = load_prepared("gtsrb", tmp_root)
    assert raw.source["found"] == "torchvision" and raw.y_train.tolist() == [0, 2, 2] and raw.y_test.tolist() == [42]
    assert np.array_equal(raw.x_train[1].numpy(), imgs[(2, "00000_00001.ppm")].transpose(2, 0, 1))  # 32x32 kept
    assert raw.x_test[0, :, 7, 9].tolist() == [10, 200, 30]
    big = torch.from_numpy(imgs[(0, "00000_00000.ppm")]).permute(2, 0, 1)[None].float()
    want = torch.nn.functional.interpolate(big, size=(32, 32), mode="bilinear", align_corners=False)
    assert (raw.x_train[0].float() - want[0]).abs().max() <= 0.5 + 1e-4


def test_gtsrb_udacity_pickle(tmp_root):
    x = np.random.RandomState(4).randint(0, 256, (6, 32, 32, 3)).astype(np.uint8)
    (tmp_root / "gtsrb").mkdir()
    hat_pickle(tmp_root / "gtsrb" / "train.p", x, np.arange(6))
    hat_pickle(tmp_root / "gtsrb" / "test.p", x[:2], np.arange(2))
    raw = load_prepared("gtsrb", tmp_root)
    assert raw.source["found"] == "udacity-pickle"
    assert np.array_equal(raw.x_train.numpy(), x.transpose(0, 3, 1, 2))


# ---- bad input -----------------------------------------------------------------------------------


def test_missing_dataset_names_every_path_the_flag_and_the_format(tmp_root):
    with pytest.raises(DatasetMissingError) as err:
        load_prepared("svhn", tmp_root)
    text = str(err.value)
    for path in ds.looked_at("svhn", tmp_root):
        assert path in text
    assert "download=False" in text and "README" in text and "train,test}.npz" in text
    with pytest.raises(ValueError, match="unknown data set"):
        load_prepared("imagenet", tmp_root)


def copy_npz(tmp_root: Path, name: str) -> Path:
    (tmp_root / name).mkdir()
    for split in ("train", "test"):
        shutil.copy(SHARED_DATA / name / f"{split}.npz", tmp_root / name / f"{split}.npz")
    return tmp_root / name


@shared("notmnist")
def test_truncated_npz_is_an_error_naming_the_file(tmp_root):
    folder = copy_npz(tmp_root, "notmnist")
    data = (folder / "test.npz").read_bytes()
    (folder / "test.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDatasetError, match=str(folder / "test.npz")):
        load_prepared("notmnist", tmp_root)


@shared("facescrub")
def test_sha256sums_in_the_root_are_enforced(tmp_root):
    folder = copy_npz(tmp_root, "facescrub")
    good = hashlib.sha256((folder / "train.npz").read_bytes()).hexdigest()
    (tmp_root / "SHA256SUMS").write_text(f"{good}  facescrub/train.npz\n{'0' * 64}  facescrub/test.npz\n")
    with pytest.raises(CorruptDatasetError, match="facescrub/test.npz.*does not match"):
        load_prepared("facescrub", tmp_root)


def test_wrong_shape_and_label_range_are_errors(tmp_root):
    (tmp_root / "cifar10").mkdir()
    x = np.zeros((4, 28, 28, 3), np.uint8)
    np.savez(tmp_root / "cifar10" / "train.npz", x=x, y=np.arange(4))
    np.savez(tmp_root / "cifar10" / "test.npz", x=x, y=np.arange(4))
    with pytest.raises(CorruptDatasetError, match="expected"):
        load_prepared("cifar10", tmp_root)
    x = np.zeros((4, 32, 32, 3), np.uint8)
    np.savez(tmp_root / "cifar10" / "train.npz", x=x, y=np.array([0, 1, 2, 10]))
    np.savez(tmp_root / "cifar10" / "test.npz", x=x, y=np.arange(4))
    with pytest.raises(CorruptDatasetError, match="outside 0..9"):
        load_prepared("cifar10", tmp_root)


def test_full_size_official_file_must_have_torchvisions_md5(tmp_root, monkeypatch):
    write_cifar10(tmp_root)  # pretend these 100 + 20 images are the official counts
    monkeypatch.setitem(SPECS, "cifar10", dataclasses.replace(SPECS["cifar10"], official=(100, 20)))
    with pytest.raises(CorruptDatasetError, match="data_batch_1.*official md5"):
        load_prepared("cifar10", tmp_root)


def test_cache_is_used_and_follows_the_source_checksum(tmp_root, monkeypatch):
    want = write_cifar10(tmp_root)
    load_prepared("cifar10", tmp_root)
    assert len(list((tmp_root.parent / "cache").glob("*/prepared-cifar10-*.pt"))) == 1

    def no_reading(*a, **k):
        raise AssertionError("read the source although the cache is valid")

    read = catalogue.read_cifar_batches
    monkeypatch.setattr(catalogue, "read_cifar_batches", no_reading)
    assert np.array_equal(load_prepared("cifar10", tmp_root).y_test.numpy(), want["y_test"])
    monkeypatch.setattr(catalogue, "read_cifar_batches", read)
    shutil.rmtree(tmp_root / "cifar-10-batches-py")
    want = write_cifar10(tmp_root, n_test=30)  # new content -> new key -> re-read, old file removed
    assert len(load_prepared("cifar10", tmp_root).y_test) == 30
    assert len(list((tmp_root.parent / "cache").glob("*/prepared-cifar10-*.pt"))) == 1
