"""The heat forward process: blur schedule and the exact heat operator F(t).

The heat equation du/dt = Δu on an H×W image with Neumann (zero-flux) boundaries is
diagonal in the cosine basis: F(t) = V exp(-Λt) Vᵀ, where Vᵀ is the orthonormal 2-D DCT-II
and λ_{n,m} = π²(n²/H² + m²/W²) in pixel units. Because λ splits into a row part and a
column part, F(t) is separable:

    F(t) u = A_H(t) · u · A_W(t)ᵀ,   A_L(t) = D_Lᵀ diag(exp(-π² n² t / L²)) D_L,

with D_L the L×L orthonormal DCT-II matrix. Each A_L(t) is a small dense symmetric
matrix, so a blur at a fixed level is two matrix products, and a batch whose images sit at
different levels is two *batched* matrix products over gathered per-level operators
(:class:`HeatOperator`). All operators are built in float64 and cast once.

Blur level k is given by an effective Gaussian length scale σ_B,k with t_k = σ_B,k² / 2;
σ_B,k is log-spaced from σ_B,min to σ_B,max over k = 1..K and σ_B,0 = 0 (the data).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "blur_schedule",
    "blur_times",
    "dct_matrix",
    "eigenvalues",
    "dissipate",
    "heat_matrix",
    "HeatOperator",
]


def blur_schedule(K: int, blur_sigma_min: float, blur_sigma_max: float) -> np.ndarray:
    """σ_B,0..K (length K+1): σ_B,0 = 0, then K values log-spaced from min to max."""
    if K < 1:
        raise ValueError(f"heat.K must be at least 1, got {K}")
    if not 0 < blur_sigma_min < blur_sigma_max:
        raise ValueError(
            f"need 0 < heat.blur_sigma_min < heat.blur_sigma_max, got {blur_sigma_min}, {blur_sigma_max}"
        )
    sigmas = np.geomspace(blur_sigma_min, blur_sigma_max, K) if K > 1 else np.array([blur_sigma_max])
    return np.concatenate([[0.0], sigmas])


def blur_times(blur_sigmas: np.ndarray) -> np.ndarray:
    """Diffusion times t_k = σ_B,k² / 2."""
    return np.asarray(blur_sigmas, dtype=np.float64) ** 2 / 2


@lru_cache(maxsize=32)
def _dct_matrix_np(L: int) -> np.ndarray:
    n = np.arange(L)[:, None]
    i = np.arange(L)[None, :]
    D = np.sqrt(2.0 / L) * np.cos(np.pi * n * (2 * i + 1) / (2 * L))
    D[0] /= np.sqrt(2.0)
    return D


def dct_matrix(L: int, dtype=torch.float64, device=None) -> Tensor:
    """Orthonormal DCT-II matrix D (L×L): ``D @ x`` is ``scipy.fft.dct(x, norm='ortho')``."""
    return torch.as_tensor(_dct_matrix_np(L), dtype=dtype, device=device)


def eigenvalues(L: int) -> np.ndarray:
    """1-D Neumann Laplacian eigenvalues π² n² / L² for n = 0..L-1 (pixel units)."""
    return (np.pi * np.arange(L) / L) ** 2


def _heat_matrix_np(L: int, t: np.ndarray) -> np.ndarray:
    D = _dct_matrix_np(L)
    decay = np.exp(-np.multiply.outer(np.asarray(t, dtype=np.float64), eigenvalues(L)))
    return np.einsum("ni,...n,nj->...ij", D, decay, D)


def heat_matrix(L: int, t, dtype=torch.float32, device=None) -> Tensor:
    """A_L(t) = Dᵀ diag(exp(-π²n²t/L²)) D for scalar or array ``t`` (shape t.shape + (L, L))."""
    return torch.as_tensor(_heat_matrix_np(L, np.asarray(t)), dtype=dtype, device=device)


def _as_times(t, u: Tensor) -> Tensor:
    t = torch.as_tensor(t, dtype=torch.float64)
    if t.ndim == 0:
        return t
    if t.ndim != 1 or t.shape[0] != u.shape[0]:
        raise ValueError(
            f"t must be a scalar or have one value per leading item: got t of shape "
            f"{tuple(t.shape)} for u of shape {tuple(u.shape)}"
        )
    return t


def dissipate(u: Tensor, t) -> Tensor:
    """F(t) u: run the heat equation with Neumann boundaries for time ``t``.

    ``u`` has shape (..., H, W), any float dtype and device. ``t`` is a scalar or a
    tensor/array with one time per entry of u's leading dimension. Computed in the DCT
    basis: û = D_H u D_Wᵀ, û ← exp(-λt) û, u = D_Hᵀ û D_W.
    """
    if u.ndim < 2:
        raise ValueError(f"u must have shape (..., H, W), got {tuple(u.shape)}")
    if not torch.is_floating_point(u):
        raise TypeError(f"u must be a floating-point tensor, got {u.dtype}")
    H, W = u.shape[-2:]
    t = _as_times(t, u)
    if (t < 0).any():
        raise ValueError("heat time t must be non-negative")
    dtype, device = u.dtype, u.device
    DH = dct_matrix(H, dtype, device)
    DW = dct_matrix(W, dtype, device)
    lam = torch.as_tensor(eigenvalues(H)[:, None] + eigenvalues(W)[None, :], dtype=torch.float64)
    if t.ndim == 0:
        decay = torch.exp(-lam * t)
    else:
        decay = torch.exp(-t.view(-1, *([1] * (u.ndim - 1))) * lam)
    coeffs = DH @ u @ DW.T
    return DH.T @ (coeffs * decay.to(dtype=dtype, device=device)) @ DW


class HeatOperator:
    """Per-level separable heat operators for a fixed schedule, image size, dtype and device.

    ``A_H[k]`` and ``A_W[k]`` are the row and column factors of F(t_k). ``blur(u, k)``
    applies F(t_k) with one level per image, ``blur_pair(u, k)`` returns F(t_k)u and
    F(t_{k-1})u from a single batched pass.
    """

    def __init__(self, times, H: int, W: int, dtype=torch.float32, device=None):
        self.times = np.asarray(times, dtype=np.float64)
        self.H, self.W = H, W
        self.A_H = heat_matrix(H, self.times, dtype, device)  # (K+1, H, H)
        self.A_W = heat_matrix(W, self.times, dtype, device)  # (K+1, W, W), symmetric

    @classmethod
    def from_schedule(cls, K, blur_sigma_min, blur_sigma_max, H, W, dtype=torch.float32, device=None):
        return cls(blur_times(blur_schedule(K, blur_sigma_min, blur_sigma_max)), H, W, dtype, device)

    def to(self, device=None, dtype=None) -> "HeatOperator":
        new = object.__new__(HeatOperator)
        new.times, new.H, new.W = self.times, self.H, self.W
        new.A_H = self.A_H.to(device=device, dtype=dtype)
        new.A_W = self.A_W.to(device=device, dtype=dtype)
        return new

    @property
    def K(self) -> int:
        return len(self.times) - 1

    def _check(self, u: Tensor, k: Tensor) -> Tensor:
        if u.shape[-2:] != (self.H, self.W):
            raise ValueError(f"operator built for {self.H}×{self.W} images, got {tuple(u.shape[-2:])}")
        k = torch.as_tensor(k, device=self.A_H.device, dtype=torch.long)
        if k.ndim == 0:
            k = k.expand(u.shape[0])
        if int(k.min()) < 0 or int(k.max()) > self.K:
            raise ValueError(f"blur level must lie in 0..{self.K}, got {int(k.min())}..{int(k.max())}")
        return k

    def blur(self, u: Tensor, k) -> Tensor:
        """F(t_k) u for u of shape (B, C, H, W) and k a level per image (or one level)."""
        k = self._check(u, k)
        AH = self.A_H[k].unsqueeze(1)  # (B, 1, H, H)
        AW = self.A_W[k].unsqueeze(1)  # (B, 1, W, W), symmetric so AWᵀ = AW
        return AH @ u.to(AH.dtype) @ AW

    def blur_pair(self, u: Tensor, k) -> tuple[Tensor, Tensor]:
        """(F(t_k) u, F(t_{k-1}) u) from one batched product over stacked operators."""
        k = self._check(u, k)
        if int(k.min()) < 1:
            raise ValueError("blur_pair needs levels k >= 1")
        AH = torch.stack([self.A_H[k], self.A_H[k - 1]], 1).unsqueeze(2)  # (B, 2, 1, H, H)
        AW = torch.stack([self.A_W[k], self.A_W[k - 1]], 1).unsqueeze(2)
        out = AH @ u.unsqueeze(1).to(AH.dtype) @ AW  # (B, 2, C, H, W)
        return out[:, 0], out[:, 1]
