"""The heat forward process: blur schedule and the exact heat operator F(t).

The heat equation du/dt = Δu on an H×W image with Neumann (zero-flux) boundaries is
diagonal in the cosine basis: F(t) = V exp(-Λt) Vᵀ, where Vᵀ is the orthonormal 2-D DCT-II
and λ_{n,m} = π²(n²/H² + m²/W²) in pixel units. Because λ splits into a row part and a
column part, F(t) is separable:

    F(t) u = A_H(t) · u · A_W(t)ᵀ,   A_L(t) = D_Lᵀ diag(exp(-π² n² t / L²)) D_L,

with D_L the L×L orthonormal DCT-II matrix. Each A_L(t) is a small dense symmetric
matrix, so a blur at a fixed level is two matrix products, and a batch whose images sit at
different levels is two *batched* matrix products over gathered per-level operators
(:class:`HeatOperator`). On the CPU, images above 64×64 pixels go through scipy's fast
DCT instead, which beats O(L³) matrix products there. All operators are built in float64
and cast once.

Blur level k is given by an effective Gaussian length scale σ_B,k with t_k = σ_B,k² / 2;
σ_B,k is log-spaced from σ_B,min to σ_B,max over k = 1..K and σ_B,0 = 0 (the data).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "HeatOperator",
    "blur_schedule",
    "blur_times",
    "dct_matrix",
    "dissipate",
    "eigenvalues",
    "heat_matrix",
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


def mode_decay(t, L: int) -> np.ndarray:
    """exp(-λ_n t) for each time in ``t`` and mode n = 0..L-1: (len(t), L) float64."""
    return np.exp(-np.multiply.outer(np.asarray(t, dtype=np.float64), eigenvalues(L)))


def _heat_matrix_np(L: int, t: np.ndarray) -> np.ndarray:
    D = _dct_matrix_np(L)
    decay = mode_decay(t, L)
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
    dtype, device = u.dtype, u.device
    t = _as_times(t, u).to(device)  # the decay is built where u is
    if (t < 0).any():
        raise ValueError("heat time t must be non-negative")
    DH = dct_matrix(H, dtype, device)
    DW = dct_matrix(W, dtype, device)
    lam = torch.as_tensor(eigenvalues(H)[:, None] + eigenvalues(W)[None, :], dtype=torch.float64,
                          device=device)
    if t.ndim == 0:
        decay = torch.exp(-lam * t)
    else:
        decay = torch.exp(-t.view(-1, *([1] * (u.ndim - 1))) * lam)
    mean = u.mean(dim=(-2, -1), keepdim=True)  # kept by F(t); centring halves the round-off
    coeffs = DH @ (u - mean) @ DW.T
    return DH.T @ (coeffs * decay.to(dtype)) @ DW + mean


ROUTES = ("auto", "dense", "split", "dct")
#: up to this many pixels per image the CPU uses the dense route for every level; above
#: it, the dct route (ihdm bench, quiet 2-core machine, 128 × 3 images at mixed levels:
#: dense 28 k images/s against the DCT's 21 k at 64 px; at 128 px dense 4.6 k, split
#: 2.9 k, DCT 5.1 k)
DENSE_MAX_PIXELS = 64 * 64
#: above this many pixels the operator blurs u - mean(u) and adds the mean back
CENTRE_ABOVE_PIXELS = 32 * 32
#: in the split route a level keeps dense factors unless it needs fewer than this fraction
#: of the cosine modes along each axis
TRUNCATE_BELOW = 0.55
#: the split route works through the batch in chunks of about this many bytes
SPLIT_CHUNK_BYTES = 6 * 2**20


def _kept_modes(lam: np.ndarray, times: np.ndarray, eps: float) -> np.ndarray:
    """Per level, how many of the modes with eigenvalues ``lam`` (ascending) keep a decay of at least eps."""
    decay = np.exp(-np.multiply.outer(times, lam))
    return np.maximum((decay >= eps).sum(axis=1), 1)


class HeatOperator:
    """Per-level heat operators F(t_k) for a fixed schedule, image size, dtype and device.

    ``blur(u, k)`` applies F(t_k) with one level per image; ``blur_pair(u, k)`` returns
    F(t_k)u and F(t_{k-1})u in one call (the dct route and the split route's truncated
    buckets share the forward transform between the two levels; the dense route runs two
    blurs, which measured faster than sharing its first product). Three exact routes;
    ``route="auto"`` picks ``dense`` up to 64×64 pixels on the CPU and on every other
    device, ``dct`` above it:

    * ``dense``: gather the separable factors A_H[k], A_W[k] per image and apply them with
      two batched matrix products (O(L³) per channel, but near the machine's peak).
    * ``dct`` (CPU): scipy's fast DCT-II (pocketfft, O(L² log L)), a per-image decay and the
      inverse DCT, with torch's thread count as workers; faster than matrix products from
      128×128 pixels up on the CPU.
    * ``split`` (CPU, kept for comparison): levels that still hold most of their cosine modes
      take the dense route; the others are applied in a truncated cosine basis,
      F(t_k) = D_mᵀ diag(e_k) D_m with m modes per axis, where the DCT rows D_m are shared
      by all images of a bucket of m, so the transforms are a few large matrix products.
      A mode is dropped only when its decay is below eps/(4·sqrt(H·W)) (eps of the dtype),
      which bounds the truncation error by eps/4 · max|u|.

    Above 32×32 pixels the dense and split routes blur u − mean(u) and add the mean back (F(t) keeps
    constants), which halves float32 round-off. ``A_H`` and ``A_W`` (K+1, L, L) are built
    on first access.
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
        if route == "auto":
            route = "dct" if self.device.type == "cpu" and H * W > DENSE_MAX_PIXELS else "dense"
        if route == "dct" and self.device.type != "cpu":
            raise ValueError("the dct route (scipy.fft) runs on the CPU only; use route='dense'")
        self.route = route
        self._full: dict[str, Tensor] = {}
        K1 = len(self.times)
        if route == "dct":
            # per-level decay along each axis, (K+1, L) in the operator's dtype (NumPy)
            np_dtype = torch.empty((), dtype=dtype).numpy().dtype
            self._decay_H = mode_decay(self.times, H).astype(np_dtype)
            self._decay_W = mode_decay(self.times, W).astype(np_dtype)
            stored = np.zeros(K1, dtype=bool)
            self.dense_levels = 0
        elif route == "dense":
            stored = np.ones(K1, dtype=bool)
            self.dense_levels = K1
        else:
            eps = float(torch.finfo(dtype).eps) / (4.0 * np.sqrt(H * W))
            qH, qW = max(4, H // 16), max(4, W // 16)  # bucket widths: few buckets, little waste
            mH = np.minimum(-(-_kept_modes(eigenvalues(H), self.times, eps) // qH) * qH, H)
            mW = np.minimum(-(-_kept_modes(eigenvalues(W), self.times, eps) // qW) * qW, W)
            dense = (mH >= TRUNCATE_BELOW * H) | (mW >= TRUNCATE_BELOW * W)
            self._bucket = np.where(dense, -1, mH * (W + 1) + mW)
            self.dense_levels = int(dense.sum())
            # dense factors for the dense levels and the level after each of them (blur_pair
            # takes its route from level k-1 and needs level k too)
            stored = dense.copy()
            stored[1:] |= dense[:-1]
            self._DH = dct_matrix(H, dtype, self.device)
            self._DW = dct_matrix(W, dtype, self.device)
            self._eH = torch.as_tensor(mode_decay(self.times, H), dtype=dtype, device=self.device)
            self._eW = torch.as_tensor(mode_decay(self.times, W), dtype=dtype, device=self.device)
        levels = np.flatnonzero(stored)
        row = np.full(K1, -1)
        row[levels] = np.arange(len(levels))
        self._row_t = torch.as_tensor(row, device=self.device)
        self._AH = heat_matrix(H, self.times[levels], dtype, self.device) if len(levels) else None
        # symmetric; a square image uses the same factor (and one gather) for both axes
        self._AW = (self._AH if H == W or self._AH is None
                    else heat_matrix(W, self.times[levels], dtype, self.device))

    @classmethod
    def from_schedule(cls, K, blur_sigma_min, blur_sigma_max, H, W, dtype=torch.float32, device=None,
                      route: str = "auto"):
        return cls(blur_times(blur_schedule(K, blur_sigma_min, blur_sigma_max)), H, W, dtype, device, route)

    def to(self, device=None, dtype=None) -> HeatOperator:
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

    def _check(self, u: Tensor, k, lowest: int = 0) -> Tensor:
        """k as a level per image on the operator's device, each in lowest..K. The range
        check reads both ends back in one transfer (one host sync on a GPU)."""
        if u.ndim != 4 or u.shape[-2:] != (self.H, self.W):
            raise ValueError(
                f"operator built for (B, C, {self.H}, {self.W}) images, got shape {tuple(u.shape)}"
            )
        k = torch.as_tensor(k, device=self.device, dtype=torch.long)
        if k.ndim == 0:
            k = k.expand(u.shape[0])
        if k.shape != (u.shape[0],):
            raise ValueError(
                f"need one blur level per image: {u.shape[0]} images, k of shape {tuple(k.shape)}"
            )
        lo, hi = torch.stack(torch.aminmax(k)).tolist()
        if lo < lowest or hi > self.K:
            need = "blur_pair needs levels" if lowest else "blur level must lie"
            raise ValueError(f"{need} in {lowest}..{self.K}, got {lo}..{hi}")
        return k

    # ----------------------------------------------------------------- public
    def blur(self, u: Tensor, k) -> Tensor:
        """F(t_k) u for u of shape (B, C, H, W) and k a level per image (or one level)."""
        k = self._check(u, k)
        with torch.autocast(self.device.type, enabled=False):
            if self.route == "dct":
                return self._dct(u, k, pair=False)[0]
            if self.route == "split":
                return self._split(u.to(device=self.device, dtype=self.dtype), k, pair=False)[0]
            u, mean = self._centred(u)
            out = self._dense_blur(u, k)
            return out if mean is None else out.add_(mean)

    def blur_pair(self, u: Tensor, k) -> tuple[Tensor, Tensor]:
        """(F(t_k) u, F(t_{k-1}) u) in one call."""
        k = self._check(u, k, lowest=1)
        with torch.autocast(self.device.type, enabled=False):
            if self.route == "dct":
                return self._dct(u, k, pair=True)
            if self.route == "split":
                return self._split(u.to(device=self.device, dtype=self.dtype), k, pair=True)
            u, mean = self._centred(u)
            outs = self._dense_pair(u, k)
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
    def _factors(self, k: Tensor, C: int) -> tuple[Tensor, Tensor]:
        """A_H[k] once per image *and channel*, (B·C, H, H), and A_W[k] per image (B, W, W).

        The left product A_H·y contracts the middle axis, so it runs as B·C products of
        H×H matrices and needs its factor per channel; gathering it that way costs one
        copy, where a broadcast over channels costs the copy and a slower product. For a
        square image the per-image factor is every C-th of those, a strided view.
        """
        rows = self._row_t[k]
        AH = self._AH.index_select(0, rows.repeat_interleave(C))
        AW = AH[::C] if self._AW is self._AH else self._AW.index_select(0, rows)
        return AH, AW

    def _dense_blur(self, u: Tensor, k: Tensor, out: Tensor | None = None) -> Tensor:
        """A_H[k]·u·A_W[k]; ``out`` (contiguous) receives the result if given."""
        B, C, H, W = u.shape
        AH, AW = self._factors(k, C)
        y = torch.bmm(u.reshape(B, C * H, W), AW)  # u·A_W (A_W symmetric): B products
        res = torch.bmm(AH, y.view(B * C, H, W),  # A_H·(u·A_W): B·C products
                        out=None if out is None else out.view(B * C, H, W))
        return res.view(B, C, H, W)

    def _dense_pair(self, u: Tensor, k: Tensor, outs: tuple[Tensor, Tensor] | None = None
                    ) -> tuple[Tensor, Tensor]:
        # Two blurs. Sharing the first product, u·[A_W(t_k) | A_W(t_k-1)], measured slower
        # on the CPU here (128 × 3 × 32 × 32: 1.21 ms against 0.97 ms), and so did one
        # stacked batch of both levels (1.44 ms): the wider product and the strided halves
        # cost more than the second product they save.
        outs = outs or (None, None)
        return self._dense_blur(u, k, outs[0]), self._dense_blur(u, k - 1, outs[1])

    # ----------------------------------------------------------------- dct route
    def _dct(self, u: Tensor, k: Tensor, pair: bool) -> tuple[Tensor, ...]:
        """scipy's DCT-II (pocketfft, O(L² log L) per channel) on the CPU, with torch's
        thread count as its workers: one forward transform, then per level a decay and an
        inverse transform (the pair shares the forward one)."""
        import scipy.fft

        workers = torch.get_num_threads()
        x = u.detach().to(device="cpu", dtype=self.dtype).contiguous().numpy()
        coeffs = scipy.fft.dctn(x, type=2, norm="ortho", axes=(-2, -1), workers=workers)
        k_np = k.cpu().numpy()
        levels = (k_np, k_np - 1) if pair else (k_np,)
        outs = []
        for i, lv in enumerate(levels):
            decay = self._decay_H[lv][:, None, :, None] * self._decay_W[lv][:, None, None, :]
            c = coeffs * decay if i < len(levels) - 1 else np.multiply(coeffs, decay, out=coeffs)
            outs.append(torch.from_numpy(scipy.fft.idctn(c, type=2, norm="ortho", axes=(-2, -1),
                                                         workers=workers, overwrite_x=True)))
        return tuple(outs)

    # ----------------------------------------------------------------- split route
    def _split(self, u: Tensor, k: Tensor, pair: bool) -> tuple[Tensor, ...]:
        """The batch in chunks of a few MB (their temporaries stay in the cache)."""
        B, C, H, W = u.shape
        outs = tuple(torch.empty_like(u, memory_format=torch.contiguous_format)
                     for _ in range(2 if pair else 1))
        n = max(1, SPLIT_CHUNK_BYTES // (C * H * W * u.element_size()))
        for i in range(0, B, n):
            self._split_chunk(u[i:i + n], k[i:i + n], tuple(o[i:i + n] for o in outs))
        return outs

    def _split_chunk(self, u: Tensor, k: Tensor, outs: tuple[Tensor, ...]) -> None:
        """Images sorted by bucket, each bucket a contiguous slice written in place; the
        input is centred (F(t) keeps the mean) to halve float32 round-off."""
        pair = len(outs) == 2
        W = u.shape[3]
        mean = u.mean(dim=(2, 3), keepdim=True)
        k_np = k.cpu().numpy()
        key = self._bucket[k_np - 1 if pair else k_np]  # the less blurred level sets the modes
        buckets, counts = np.unique(key, return_counts=True)
        order = np.argsort(key, kind="stable")
        sort = len(buckets) > 1
        if sort:
            perm = torch.as_tensor(order, device=u.device)
            x, k, mean = u.index_select(0, perm), k[perm], mean.index_select(0, perm)
            x.sub_(mean)
            results = tuple(torch.empty_like(x) for _ in outs)
        else:
            x, results = u - mean, outs
        start = 0
        for b, n in zip(buckets.tolist(), counts.tolist()):
            sl = slice(start, start + n)
            target = tuple(r[sl] for r in results)
            if b < 0:
                if pair:
                    self._dense_pair(x[sl], k[sl], target)
                else:
                    self._dense_blur(x[sl], k[sl], target[0])
            else:
                levels = [k[sl], k[sl] - 1] if pair else [k[sl]]
                self._truncated(x[sl], levels, *divmod(b, W + 1), outs=target)
            start += n
        for r, out in zip(results, outs):
            r.add_(mean)
            if sort:
                torch.index_select(r, 0, torch.as_tensor(np.argsort(order), device=u.device), out=out)

    def _truncated(self, x: Tensor, levels: list[Tensor], mH: int, mW: int,
                   outs: tuple[Tensor, ...]) -> None:
        """D_mᵀ (e_k ⊙ D_m x D_mᵀ) D_m for each of ``levels`` into ``outs`` (n, C, H, W),
        keeping mH × mW modes."""
        n, C, H, W = x.shape
        P = len(levels)
        DH, DW = self._DH[:mH], self._DW[:mW]
        y = (x.reshape(n * C * H, W) @ DW.T).view(n * C, H, mW)
        c = (y.transpose(1, 2).reshape(n * C * mW, H) @ DH.T).view(n, C, mW, mH)  # coefficientsᵀ
        decay = torch.stack([self._eW[lv, :mW][:, :, None] * self._eH[lv, :mH][:, None, :]
                             for lv in levels])  # (P, n, mW, mH)
        c = c.unsqueeze(0) * decay.unsqueeze(2)  # (P, n, C, mW, mH)
        y = (c.view(P * n * C * mW, mH) @ DH).view(P, n * C, mW, H).transpose(2, 3)
        for p, out in enumerate(outs):
            torch.mm(y[p].reshape(n * C * H, mW), DW, out=out.view(n * C * H, W))
