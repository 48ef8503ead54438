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

import os
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
    return np.matmul(D.T * decay[..., None, :], D)  # Dᵀ diag(decay) D, batched over t


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


ROUTES = ("auto", "dense", "split")
#: up to this many pixels per image the CPU uses the dense route for every level
DENSE_MAX_PIXELS = 64 * 64
#: above this many pixels the operator blurs u - mean(u) and adds the mean back
CENTRE_ABOVE_PIXELS = 32 * 32
#: in the split route a level keeps dense factors unless it needs fewer than this fraction
#: of the cosine modes along each axis
TRUNCATE_BELOW = 0.55
#: the split route works through the batch in chunks of about this many bytes
SPLIT_CHUNK_BYTES = int(os.environ.get("IHDM_SPLIT_CHUNK", 8 * 2**20))


def _kept_modes(lam: np.ndarray, times: np.ndarray, eps: float) -> np.ndarray:
    """Per level, how many of the modes with eigenvalues ``lam`` (ascending) decay to no less than eps."""
    decay = np.exp(-np.multiply.outer(times, lam))
    return np.maximum((decay >= eps).sum(axis=1), 1)


def _parity_dct(L: int) -> tuple[np.ndarray, np.ndarray]:
    """DCT rows split by symmetry, acting on the butterfly s = x₁ + J x₂, d = x₁ − J x₂
    (x₁, x₂ the halves of an even-length x, J the reversal): the even modes 0, 2, … of x are
    ``De @ s`` and the odd modes 1, 3, … are ``Do @ d``; each is (L/2, L/2), orthogonal/√2."""
    h = L // 2
    D = _dct_matrix_np(L)
    return D[0::2, :h], D[1::2, :h]  # even rows are symmetric, odd rows antisymmetric


class HeatOperator:
    """Per-level heat operators F(t_k) for a fixed schedule, image size, dtype and device.

    ``blur(u, k)`` applies F(t_k) with one level per image; ``blur_pair(u, k)`` returns
    F(t_k)u and F(t_{k-1})u in one pass over the batch (the first product, or the forward
    transform, is shared by both levels). Two exact routes, picked per size
    (``route="auto"``):

    * ``dense`` (up to 64×64 pixels on the CPU, every size elsewhere): gather the separable
      factors A_H[k], A_W[k] per image and apply them with two batched matrix products.
    * ``split`` (CPU, larger even-sized images): F(t) commutes with reflecting the image,
      so after a butterfly (sums and differences of mirrored rows and columns) it falls
      apart into four independent quarter-size problems, one per parity of the cosine modes
      along each axis, and every product costs half. Within them, levels that still hold
      most modes use gathered dense factors; the others are applied in a truncated cosine
      basis whose rows are shared by a bucket of images, as a few large matrix products.
      A mode is dropped only when its decay is below eps/(4·sqrt(H·W)) (eps of the dtype),
      which bounds the truncation error by eps/4 · max|u|.

    ``A_H`` and ``A_W`` (K+1, L, L) are built on first access.
    """

    def __init__(self, times, H: int, W: int, dtype=torch.float32, device=None, route: str = "auto"):
        if route not in ROUTES:
            raise ValueError(f"unknown heat operator route '{route}'; choose one of {ROUTES}")
        self.times = np.asarray(times, dtype=np.float64)
        if self.times.ndim != 1 or len(self.times) < 1 or (self.times < 0).any():
            raise ValueError("times must be a non-empty 1-D array of non-negative heat times")
        self.H, self.W = H, W
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._route_arg = route
        even = H % 2 == 0 and W % 2 == 0
        if route == "auto":
            route = "split" if self.device.type == "cpu" and H * W > DENSE_MAX_PIXELS and even else "dense"
        if route == "split" and not even:
            raise ValueError(f"the split heat route needs even image sizes, got {H}×{W}")
        self.route = route
        self._full: dict[str, Tensor] = {}
        if route == "dense":
            levels = np.arange(len(self.times))
            self._AH = heat_matrix(H, self.times, dtype, self.device)  # (K+1, H, H)
            # symmetric; a square image uses the same factor (and one gather) for both axes
            self._AW = self._AH if H == W else heat_matrix(W, self.times, dtype, self.device)
            self._row_t = torch.arange(len(levels), device=self.device)
            return
        self._init_split()

    def _init_split(self) -> None:
        H, W, times, dtype, dev = self.H, self.W, self.times, self.dtype, self.device
        h, w = H // 2, W // 2
        eps = float(torch.finfo(dtype).eps) / (4.0 * np.sqrt(H * W))
        # per axis: parity DCT rows (2, h, h) and decays (2, K+1, h); even modes decay slowest
        axes = {}
        for name, L in (("H", H), ("W", W)):
            De, Do = _parity_dct(L)
            lam = eigenvalues(L)
            decay = np.stack([np.exp(-np.multiply.outer(times, lam[0::2])),
                              np.exp(-np.multiply.outer(times, lam[1::2]))])
            modes = _kept_modes(lam[0::2], times, eps)
            q = max(2, (L // 2) // 8)  # bucket width: few buckets, little waste
            axes[name] = (np.stack([De, Do]), decay, np.minimum(-(-modes // q) * q, L // 2))
        (DH, eH, mH), (DW, eW, mW) = axes["H"], axes["W"]
        self.modes_H, self.modes_W = mH, mW
        dense = (mH >= TRUNCATE_BELOW * h) | (mW >= TRUNCATE_BELOW * w)
        self._bucket = np.where(dense, -1, mH * (w + 1) + mW)
        self.dense_levels = int(dense.sum())
        # dense parity factors Dᵀ diag(e) D (the butterfly's scale is in D) for the dense
        # levels and the level after each (blur_pair takes its route from level k-1)
        stored = dense.copy()
        stored[1:] |= dense[:-1]
        levels = np.flatnonzero(stored)
        row = np.full(len(times), -1)
        row[levels] = np.arange(len(levels))
        self._row_t = torch.as_tensor(row, device=dev)

        def factors(D, e):  # (2, n, L/2, L/2)
            return torch.as_tensor(np.matmul(np.swapaxes(D, 1, 2)[:, None] * e[:, levels, None, :],
                                                   D[:, None]), dtype=dtype, device=dev)

        self._pAH = factors(DH, eH)
        self._pAW = self._pAH if H == W else factors(DW, eW)
        self._pDH = torch.as_tensor(DH, dtype=dtype, device=dev)
        self._pDW = torch.as_tensor(DW, dtype=dtype, device=dev)
        self._peH = torch.as_tensor(eH, dtype=dtype, device=dev)
        self._peW = torch.as_tensor(eW, dtype=dtype, device=dev)

    @classmethod
    def from_schedule(cls, K, blur_sigma_min, blur_sigma_max, H, W, dtype=torch.float32, device=None,
                      route: str = "auto"):
        return cls(blur_times(blur_schedule(K, blur_sigma_min, blur_sigma_max)), H, W, dtype, device, route)

    def to(self, device=None, dtype=None) -> "HeatOperator":
        return HeatOperator(self.times, self.H, self.W, dtype or self.dtype,
                            device if device is not None else self.device, route=self._route_arg)

    @property
    def K(self) -> int:
        return len(self.times) - 1

    @property
    def A_H(self) -> Tensor:
        """Row factors A_H(t_k) for every level, (K+1, H, H)."""
        if "H" not in self._full:
            self._full["H"] = heat_matrix(self.H, self.times, self.dtype, self.device)
        return self._full["H"]

    @property
    def A_W(self) -> Tensor:
        """Column factors A_W(t_k) for every level, (K+1, W, W); symmetric."""
        if "W" not in self._full:
            self._full["W"] = heat_matrix(self.W, self.times, self.dtype, self.device)
        return self._full["W"]

    def _check(self, u: Tensor, k) -> Tensor:
        if u.ndim != 4 or u.shape[-2:] != (self.H, self.W):
            raise ValueError(
                f"operator built for (B, C, {self.H}, {self.W}) images, got shape {tuple(u.shape)}"
            )
        k = torch.as_tensor(k, device=self.device, dtype=torch.long)
        if k.ndim == 0:
            k = k.expand(u.shape[0])
        if k.shape != (u.shape[0],):
            raise ValueError(f"need one blur level per image: {u.shape[0]} images, k of shape {tuple(k.shape)}")
        if int(k.min()) < 0 or int(k.max()) > self.K:
            raise ValueError(f"blur level must lie in 0..{self.K}, got {int(k.min())}..{int(k.max())}")
        return k

    # ----------------------------------------------------------------- public
    def blur(self, u: Tensor, k) -> Tensor:
        """F(t_k) u for u of shape (B, C, H, W) and k a level per image (or one level)."""
        k = self._check(u, k)
        with torch.autocast(self.device.type, enabled=False):
            u, mean = self._centred(u)
            out = self._dense_blur(u, k) if self.route == "dense" else self._split(u, k, pair=False)[0]
            return out if mean is None else out.add_(mean)

    def blur_pair(self, u: Tensor, k) -> tuple[Tensor, Tensor]:
        """(F(t_k) u, F(t_{k-1}) u) in one pass over the batch."""
        k = self._check(u, k)
        if int(k.min()) < 1:
            raise ValueError("blur_pair needs levels k >= 1")
        with torch.autocast(self.device.type, enabled=False):
            u, mean = self._centred(u)
            outs = self._dense_pair(u, k) if self.route == "dense" else self._split(u, k, pair=True)
            return outs if mean is None else (outs[0].add_(mean), outs[1].add_(mean))

    def _centred(self, u: Tensor) -> tuple[Tensor, Tensor | None]:
        """u in the operator's dtype; above 32×32 pixels minus its per-channel mean, which
        F(t) keeps: the products then sum smaller terms, halving float32 round-off."""
        u = u.to(device=self.device, dtype=self.dtype)
        if self.H * self.W <= CENTRE_ABOVE_PIXELS:
            return u, None
        mean = u.mean(dim=(2, 3), keepdim=True)
        return u - mean, mean

    # ----------------------------------------------------------------- dense route
    def _factors(self, k: Tensor) -> tuple[Tensor, Tensor]:
        rows = self._row_t[k]
        AH = self._AH[rows]  # (B, H, H)
        return AH, (AH if self._AW is self._AH else self._AW[rows])

    def _dense_blur(self, u: Tensor, k: Tensor) -> Tensor:
        AH, AW = self._factors(k)
        B, C, H, W = u.shape
        y = torch.bmm(u.reshape(B, C * H, W), AW).view(B, C, H, W)  # u·A_W (A_W symmetric)
        return torch.matmul(AH.unsqueeze(1), y)  # A_H·(u·A_W)

    def _dense_pair(self, u: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        (AH, AW), (AH_prev, AW_prev) = self._factors(k), self._factors(k - 1)
        B, C, H, W = u.shape
        # one product u·[A_W(t_k) | A_W(t_k-1)] for both levels, then A_H per level and channel
        y = torch.bmm(u.reshape(B, C * H, W), torch.cat([AW, AW_prev], dim=2)).view(B, C, H, 2, W)
        return tuple(torch.stack([torch.bmm(A, y[:, c, :, p]) for c in range(C)], 1)
                     for p, A in enumerate((AH, AH_prev)))

    # ----------------------------------------------------------------- split route
    @staticmethod
    def _butterfly(u: Tensor) -> Tensor:
        """(B, C, H, W) -> (2, 2, B, C, H/2, W/2): [a, b] holds row parity a, column parity b."""
        B, C, H, W = u.shape
        h, w = H // 2, W // 2
        top, bottom = u[:, :, :h], u[:, :, h:].flip(2)
        rows = u.new_empty((2, B, C, h, W))
        torch.add(top, bottom, out=rows[0])
        torch.sub(top, bottom, out=rows[1])
        left, right = rows[..., :w], rows[..., w:].flip(-1)
        x = u.new_empty((2, 2, B, C, h, w))
        torch.add(left, right, out=x[:, 0])
        torch.sub(left, right, out=x[:, 1])
        return x

    @staticmethod
    def _unbutterfly(z: Tensor) -> Tensor:
        """Inverse of :meth:`_butterfly` up to its scale (which the parity factors absorb)."""
        _, _, B, C, h, w = z.shape
        rows = z.new_empty((2, B, C, h, 2 * w))
        torch.add(z[:, 0], z[:, 1], out=rows[..., :w])
        rows[..., w:] = (z[:, 0] - z[:, 1]).flip(-1)
        out = z.new_empty((B, C, 2 * h, 2 * w))
        torch.add(rows[0], rows[1], out=out[:, :, :h])
        out[:, :, h:] = (rows[0] - rows[1]).flip(2)
        return out

    def _split(self, u: Tensor, k: Tensor, pair: bool) -> tuple[Tensor, ...]:
        B, C, H, W = u.shape
        # chunks of a few MB keep the butterflies' memory passes in the cache
        n = max(1, SPLIT_CHUNK_BYTES // (C * H * W * u.element_size()))
        if B > n:
            parts = [self._split_chunk(u[i:i + n], k[i:i + n], pair) for i in range(0, B, n)]
            return tuple(torch.cat(p) for p in zip(*parts))
        return self._split_chunk(u, k, pair)

    def _split_chunk(self, u: Tensor, k: Tensor, pair: bool) -> tuple[Tensor, ...]:
        B, C, H, W = u.shape
        x = self._butterfly(u)
        k_np = k.cpu().numpy()
        key = self._bucket[k_np - 1 if pair else k_np]  # the less blurred level sets the modes
        z = None
        for b in np.unique(key):
            members = np.flatnonzero(key == b)
            whole = len(members) == B
            idx = torch.as_tensor(members, device=u.device)
            xg = x if whole else x.index_select(2, idx)
            kk = k if whole else k[idx]
            levels = [kk, kk - 1] if pair else [kk]
            if b < 0:
                r = self._parity_dense(xg, levels)
            else:
                r = self._parity_truncated(xg, levels, *divmod(int(b), W // 2 + 1))
            if whole:
                z = r
            else:
                if z is None:
                    z = u.new_empty((len(levels), 2, 2, B, C, H // 2, W // 2))
                z.index_copy_(3, idx, r)
        return tuple(self._unbutterfly(zp) for zp in z)

    def _parity_dense(self, x: Tensor, levels: list[Tensor]) -> Tensor:
        """Gathered dense parity factors: (2, 2, n, C, h, w) -> (P, 2, 2, n, C, h, w)."""
        _, _, n, C, h, w = x.shape
        P = len(levels)
        rows = [self._row_t[lv] for lv in levels]
        AW = torch.cat([self._pAW[:, r] for r in rows], dim=-1)  # (2_b, n, w, P·w)
        y = torch.matmul(x.reshape(2, 2, n, C * h, w), AW.unsqueeze(0)).view(2, 2, n, C, h, P, w)
        return torch.stack([torch.matmul(self._pAH[:, r][:, None, :, None], y[..., p, :])
                            for p, r in enumerate(rows)])

    def _parity_truncated(self, x: Tensor, levels: list[Tensor], mH: int, mW: int) -> Tensor:
        """Truncated cosine basis, rows shared by the bucket: (2, 2, n, C, h, w) -> (P, 2, 2, n, C, h, w)."""
        _, _, n, C, h, w = x.shape
        P = len(levels)
        DH, DW = self._pDH[:, :mH], self._pDW[:, :mW]  # (2, mH, h), (2, mW, w)
        y = torch.matmul(x.reshape(2, 2, n * C * h, w), DW.transpose(1, 2).unsqueeze(0))
        y = y.view(2, 2, n * C, h, mW).transpose(-1, -2).reshape(2, 2 * n * C * mW, h)
        c = torch.bmm(y, DH.transpose(1, 2)).view(2, 2, n, C, mW, mH)  # coefficients, transposed
        eH = torch.stack([self._peH[:, lv, :mH] for lv in levels])  # (P, 2_a, n, mH)
        eW = torch.stack([self._peW[:, lv, :mW] for lv in levels])  # (P, 2_b, n, mW)
        c = c * (eH[:, :, None, :, None, None, :] * eW[:, None, :, :, None, :, None])
        y = torch.matmul(c.view(P, 2, 2 * n * C * mW, mH), DH.unsqueeze(0))  # (P, 2_a, ·, h)
        y = y.view(P, 2, 2, n * C, mW, h).transpose(-1, -2).reshape(P, 2, 2, n * C * h, mW)
        return torch.matmul(y, DW[None, None]).view(P, 2, 2, n, C, h, w)
