"""FID and KID through clean-fid (Parmar et al.), in clean-fid's "clean" mode.

Every numerical step is clean-fid's own: its "clean" resizer (PIL bicubic to 299x299 on
float32, no quantisation after), its torchscript Inception wrapper, its batch feature
function, ``frechet_distance`` and ``kernel_distance``. What this module adds: images come
from uint8 NHWC arrays (grayscale is repeated to RGB, as clean-fid's file loader does with
``convert('RGB')``), reference statistics are written to a file of our choosing (not into
clean-fid's package folder), and the Inception weights can be read from a local file
(config key ``evaluate.inception_weights``) on machines without internet.

Any callable mapping a float batch (B, 3, H, W) in [0, 255] to (B, D) features can replace
Inception (``feature_extractor=``), as with clean-fid's ``custom_feat_extractor``.
"""

from __future__ import annotations

import platform
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cleanfid.downloads_helper import check_download_inception
from cleanfid.fid import frechet_distance, get_batch_features, kernel_distance
from cleanfid.inception_torchscript import InceptionV3W
from cleanfid.resize import build_resizer
from torch import nn

from ..errors import UserError
from ..io import InputFileError, atomic_open, read_npz

MODE = "clean"
INCEPTION_NAME = "inception-2015-12-05.pt"  # clean-fid's file name for the torchscript weights
INCEPTION_EXTRACTOR = "inception_v3-clean"
WEIGHTS_KEY = "evaluate.inception_weights"

FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]
Resize = Callable[[np.ndarray], np.ndarray]


class InceptionWeightsError(UserError, FileNotFoundError):
    """clean-fid's Inception weights are neither at the configured path nor downloadable."""


class FIDStatsError(InputFileError):
    """A reference statistics file is missing, malformed or made with another feature extractor."""


class _InceptionFromFile(InceptionV3W):
    """clean-fid's InceptionV3W (its normalisation and forward), loaded from any file path."""

    def __init__(self, path: Path) -> None:
        nn.Module.__init__(self)
        with warnings.catch_warnings():  # torch.jit is deprecated in recent torch; it is clean-fid's format
            warnings.simplefilter("ignore", FutureWarning)
            self.base = torch.jit.load(str(path), map_location="cpu").eval()
        self.layers = self.base.layers
        self.resize_inside = False


def default_weights_path() -> Path:
    """Where clean-fid itself caches the weights (its ``feature_extractor`` uses this folder)."""
    return Path("./" if platform.system() == "Windows" else "/tmp") / INCEPTION_NAME


def inception(weights: str | Path | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """clean-fid's torchscript Inception-v3 (2048-d pool features, input 299x299 in [0, 255]).

    ``weights``: a local file with clean-fid's weights (``inception-2015-12-05.pt``). With None,
    clean-fid's cache is used, downloading the file there when it is missing (needs internet).
    """
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise InceptionWeightsError(
                f"{WEIGHTS_KEY}: Inception weights file '{path}' does not exist (it should be clean-fid's "
                f"torchscript file {INCEPTION_NAME})"
            )
    else:
        path = default_weights_path()
        if not path.is_file():
            try:
                check_download_inception(fpath=str(path.parent))
            except Exception as exc:  # offline: urllib raises URLError/OSError
                if path.exists():
                    path.unlink()  # a partial download
                raise InceptionWeightsError(
                    f"clean-fid's Inception weights are not cached at '{path}' and could not be downloaded "
                    f"({type(exc).__name__}: {exc}); on an offline machine set the config key {WEIGHTS_KEY} "
                    f"to a local copy of {INCEPTION_NAME}"
                ) from None
    try:
        model = _InceptionFromFile(path)
    except Exception as exc:
        raise InceptionWeightsError(
            f"{WEIGHTS_KEY}: '{path}' is not clean-fid's torchscript Inception file ({type(exc).__name__}: {exc})"
        ) from None
    return model.to(device).eval()


def _as_rgb_uint8(images: np.ndarray, what: str = "images") -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"{what}: expected a uint8 array (N, H, W, C), got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"{what}: expected shape (N, H, W, 1|3), got {images.shape}")
    if images.shape[0] < 2:
        raise ValueError(f"{what}: need at least 2 images for feature statistics, got {images.shape[0]}")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images


class _ResizedImages(torch.utils.data.Dataset):
    """uint8 HWC images -> clean-fid's resizer -> float32 CHW in [0, 255] (as clean-fid's ResizeDataset)."""

    def __init__(self, images: np.ndarray, fn_resize: Resize | None) -> None:
        self.images, self.fn_resize = images, fn_resize

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = self.images[i]
        img = self.fn_resize(img) if self.fn_resize is not None else img.astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(np.asarray(img, dtype=np.float32).transpose(2, 0, 1)))


def extract_features(
    images_uint8: np.ndarray,
    feature_extractor: FeatureExtractor | None = None,
    weights: str | Path | None = None,
    resize: Resize | str | None = "clean",
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
) -> np.ndarray:
    """Features (N, D) of uint8 NHWC images.

    ``feature_extractor`` None means clean-fid's Inception (``weights`` as in :func:`inception`).
    ``resize``: "clean" (clean-fid's resizer to 299x299), None (keep the size; float32 [0, 255]),
    or any callable on one HWC image, like clean-fid's ``custom_fn_resize``.
    """
    images = _as_rgb_uint8(images_uint8)
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if feature_extractor is None:
        model: Any = inception(weights, device)
    else:
        model = feature_extractor
        if isinstance(model, nn.Module):
            model = model.to(device).eval()
    fn_resize = build_resizer(MODE) if resize == "clean" else resize
    if isinstance(fn_resize, str):
        raise ValueError(f"resize must be 'clean', None or a callable, got {resize!r}")
    loader = torch.utils.data.DataLoader(
        _ResizedImages(images, fn_resize), batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    feats = [get_batch_features(batch, model, device) for batch in loader]
    out = np.concatenate(feats).astype(np.float64)
    if out.ndim != 2:
        raise ValueError(f"feature extractor must return (B, D) features, got shape {out.shape[1:]} per batch")
    return out


def feature_statistics(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of features, as clean-fid computes them."""
    return np.mean(feats, axis=0), np.cov(feats, rowvar=False)


def _extractor_name(feature_extractor: FeatureExtractor | None, name: str | None) -> str:
    if name is not None:
        return name
    if feature_extractor is None:
        return INCEPTION_EXTRACTOR
    return type(feature_extractor).__name__


def reference_stats(
    images_uint8: np.ndarray,
    out_path: str | Path,
    weights: str | Path | None = None,
    feature_extractor: FeatureExtractor | None = None,
    extractor_name: str | None = None,
    resize: Resize | str | None = "clean",
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    split: str = "unknown",
) -> dict[str, Any]:
    """Write mu, sigma and the features (for KID) of reference images to ``out_path`` (.npz).

    Returns {"path", "n", "dim", "extractor", "split"}. The file also records the feature
    extractor's name, so that :func:`fid_kid` refuses to compare features of different
    extractors, and which data split the images are (the authors' FID: the training split).
    """
    feats = extract_features(images_uint8, feature_extractor, weights, resize, batch_size, device, num_workers)
    mu, sigma = feature_statistics(feats)
    name = _extractor_name(feature_extractor, extractor_name)
    out_path = Path(out_path)
    if out_path.suffix != ".npz":
        raise ValueError(f"reference statistics path '{out_path}' must end in .npz")
    with atomic_open(out_path) as fh:
        np.savez(fh, mu=mu, sigma=sigma, feats=feats.astype(np.float32), extractor=np.array(name),
                 mode=np.array(MODE), split=np.array(split))
    return {"path": str(out_path), "n": int(feats.shape[0]), "dim": int(feats.shape[1]), "extractor": name,
            "split": split}


def load_reference_stats(path: str | Path) -> dict[str, Any]:
    """Read and check a file written by :func:`reference_stats` (zip CRCs, keys, shapes,
    finite values)."""
    path = Path(path)
    if not path.is_file():
        raise FIDStatsError(f"reference statistics file '{path}' does not exist (make it with reference_stats)")
    stats = read_npz(path, "reference statistics file", FIDStatsError)
    missing = {"mu", "sigma", "feats", "extractor"} - set(stats)
    if missing:
        raise FIDStatsError(f"reference statistics file '{path}' lacks key(s) {sorted(missing)}")
    mu, sigma, feats = stats["mu"], stats["sigma"], stats["feats"]
    D = mu.shape[0] if mu.ndim == 1 else -1
    if D < 1 or sigma.shape != (D, D) or feats.ndim != 2 or feats.shape[1] != D or len(feats) < 2:
        raise FIDStatsError(f"reference statistics file '{path}': shapes mu {mu.shape}, sigma {sigma.shape}, "
                            f"feats {feats.shape} do not fit (D,), (D, D), (N >= 2, D)")
    for key in ("mu", "sigma", "feats"):
        if not np.issubdtype(stats[key].dtype, np.floating) or not np.isfinite(stats[key]).all():
            raise FIDStatsError(f"reference statistics file '{path}': '{key}' is not all finite floats")
    stats["extractor"] = str(stats["extractor"])
    stats["split"] = str(stats["split"]) if "split" in stats else "unknown"
    return stats


def kid_score(
    feats_a: np.ndarray, feats_b: np.ndarray, num_subsets: int = 100, max_subset_size: int = 1000, seed: int = 0
) -> float:
    """clean-fid's ``kernel_distance`` with a fixed seed (numpy's global state is restored after)."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return float(kernel_distance(feats_a, feats_b, num_subsets=num_subsets, max_subset_size=max_subset_size))
    finally:
        np.random.set_state(state)


def fid_kid(
    samples_uint8: np.ndarray,
    ref_stats_path: str | Path,
    weights: str | Path | None = None,
    feature_extractor: FeatureExtractor | None = None,
    extractor_name: str | None = None,
    resize: Resize | str | None = "clean",
    kid: bool = True,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
) -> dict[str, Any]:
    """FID (and KID) of uint8 NHWC samples against a reference statistics file.

    Returns {"fid", "kid" (None when kid=False), "n_samples", "n_reference", "reference_split",
    "extractor"}.
    """
    ref = load_reference_stats(ref_stats_path)
    name = _extractor_name(feature_extractor, extractor_name)
    if ref["extractor"] != name:
        raise FIDStatsError(
            f"reference statistics '{ref_stats_path}' were made with feature extractor '{ref['extractor']}', "
            f"but the samples use '{name}'"
        )
    feats = extract_features(samples_uint8, feature_extractor, weights, resize, batch_size, device, num_workers)
    if feats.shape[1] != ref["mu"].shape[0]:
        raise FIDStatsError(
            f"feature dimension {feats.shape[1]} of the samples differs from {ref['mu'].shape[0]} in '{ref_stats_path}'"
        )
    mu, sigma = feature_statistics(feats)
    fid = float(frechet_distance(mu, sigma, ref["mu"], ref["sigma"]))
    kid_value = kid_score(ref["feats"].astype(np.float64), feats, kid_subsets, kid_subset_size, seed) if kid else None
    return {
        "fid": fid,
        "kid": kid_value,
        "n_samples": int(feats.shape[0]),
        "n_reference": int(ref["feats"].shape[0]),
        "reference_split": ref["split"],
        "extractor": name,
    }
