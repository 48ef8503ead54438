"""Image layouts: uint8 NHWC arrays (on disk) and float NCHW tensors in [0, 1] (in
models), the conversion between them, and the tiling of images into one grid image."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import UserError

if TYPE_CHECKING:
    import torch


class ImageError(UserError, ValueError):
    """An image array of the wrong layout, type or range."""


def check_uint8_nhwc(images: Any, where: str, error: type[Exception] = ImageError) -> None:
    """Images on disk: a uint8 NHWC array with 1 or 3 channels and at least one image;
    otherwise ``error`` naming ``where`` (the file or data set) and what is wrong."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        kind = images.dtype if isinstance(images, np.ndarray) else type(images).__name__
        raise error(f"{where}: images must be uint8, got {kind}")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise error(f"{where}: images must be NHWC with 1 or 3 channels, got shape {images.shape}")
    if len(images) == 0:
        raise error(f"{where}: holds no images")


def to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_uint8(images: Any, name: str, ndim: int) -> np.ndarray:
    """uint8 array with a trailing channel axis; float input must lie in [0, 1]."""
    x = to_numpy(images)
    if x.ndim == ndim - 1:
        x = x[..., None]
    if x.ndim != ndim or x.shape[-1] not in (1, 3):
        raise ImageError(f"{name} must be uint8 with {ndim} dimensions ending in 1 or 3 channels, got shape {x.shape}")
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        raise ImageError(f"{name} must be uint8 or float in [0, 1], got dtype {x.dtype}")
    if not np.isfinite(x).all() or x.min() < -1e-3 or x.max() > 1 + 1e-3:
        raise ImageError(f"{name}: float images must be finite and lie in [0, 1]")
    return np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)


def image_grid(images: Any, ncol: int | None = None, padding: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile N images (N, H, W[, C]) into one uint8 (H', W', C) array, ``ncol`` per row.

    H' = rows·H + (rows+1)·padding and W' = ncol·W + (ncol+1)·padding with
    rows = ceil(N / ncol); ``ncol`` defaults to ceil(sqrt(N)).
    """
    x = as_uint8(images, "images", 4)
    N, H, W, C = x.shape
    if N == 0:
        raise ImageError("image_grid needs at least one image")
    ncol = min(N, ncol or math.ceil(math.sqrt(N)))
    if ncol < 1 or padding < 0:
        raise ImageError(f"ncol must be >= 1 and padding >= 0, got {ncol}, {padding}")
    rows = math.ceil(N / ncol)
    grid = np.full((rows * H + (rows + 1) * padding, ncol * W + (ncol + 1) * padding, C), pad_value, np.uint8)
    for i in range(N):
        r, c = divmod(i, ncol)
        y, xx = padding + r * (H + padding), padding + c * (W + padding)
        grid[y : y + H, xx : xx + W] = x[i]
    return grid


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float NCHW tensor in [0, 1] -> uint8 NHWC array (clamped to [0, 1], rounded)."""
    import torch

    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"to_uint8 expects a 4-D NCHW tensor, got {getattr(images, 'shape', type(images))}")
    x = images.detach().float()
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"to_uint8: {bad} non-finite values (NaN/inf) in the images")
    x = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()
