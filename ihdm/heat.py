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


ROUTES = ("auto", "dense", "dct")
#: up to this many pixels per image the CPU uses the dense route, above it the dct route:
#: the largest benchmarked size at which dense matrix products still beat scipy's DCT
#: (ihdm bench; benchmarks/README.md, "Heat operator routes")
DENSE_MAX_PIXELS = 64 * 64
#: above this many pixels the dense route blurs u - mean(u) and adds the mean back
CENTRE_ABOVE_PIXELS = 32 * 32


class HeatOperator:
    """Per-level heat operators F(t_k) for a fixed schedule, image size, dtype and device.

    ``blur(u, k)`` applies F(t_k) with one level per image; ``blur_pair(u, k)`` returns
    F(t_k)u and F(t_{k-1})u in one call (the dct route shares the forward transform between
    the two levels; the dense route runs two blurs, see ``_dense_pair``). Two exact routes;
    ``route="auto"`` picks ``dense`` up to 64×64 pixels on the CPU and on every other
    device, ``dct`` above it:

    * ``dense``: gather the separable factors A_H[k], A_W[k] per image and apply them with
      two batched matrix products (O(L³) per channel, but near the machine's peak).
    * ``dct`` (CPU): scipy's fast DCT-II (pocketfft, O(L² log L)), a per-image decay and the
      inverse DCT, with torch's thread count as workers; faster than matrix products from
      128×128 pixels up on the CPU.

    Above 32×32 pixels the dense route blurs u − mean(u) and adds the mean back (F(t) keeps
    constants), which halves float32 round-off. ``A_H`` and ``A_W`` (K+1, L, L) are the
    dense route's factors; the dct route builds them on first access.
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
        self._AH: Tensor | None = None
        self._AW: Tensor | None = None
        if route == "dct":
            # per-level decay along each axis, (K+1, L) in the operator's dtype (NumPy)
            np_dtype = torch.empty((), dtype=dtype).numpy().dtype
            self._decay_H = mode_decay(self.times, H).astype(np_dtype)
            self._decay_W = mode_decay(self.times, W).astype(np_dtype)
        else:
            self._AH = heat_matrix(H, self.times, dtype, self.device)
            # symmetric; a square image uses the same factor (and one gather) for both axes
            self._AW = self._AH if H == W else heat_matrix(W, self.times, dtype, self.device)

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
        if self._AH is None:
            self._AH = heat_matrix(self.H, self.times, self.dtype, self.device)
        return self._AH

    @property
    def A_W(self) -> Tensor:
        """Column factors A_W(t_k) for every level, (K+1, W, W); symmetric."""
        if self._AW is None:
            self._AW = heat_matrix(self.W, self.times, self.dtype, self.device)
        return self._AW

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
            u, mean = self._centred(u)
            out = self._dense_blur(u, k)
            return out if mean is None else out.add_(mean)

    def blur_pair(self, u: Tensor, k) -> tuple[Tensor, Tensor]:
        """(F(t_k) u, F(t_{k-1}) u) in one call."""
        k = self._check(u, k, lowest=1)
        with torch.autocast(self.device.type, enabled=False):
            if self.route == "dct":
                return self._dct(u, k, pair=True)
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
        AH = self._AH.index_select(0, k.repeat_interleave(C))
        AW = AH[::C] if self._AW is self._AH else self._AW.index_select(0, k)
        return AH, AW

    def _dense_blur(self, u: Tensor, k: Tensor) -> Tensor:
        """A_H[k]·u·A_W[k]."""
        B, C, H, W = u.shape
        AH, AW = self._factors(k, C)
        y = torch.bmm(u.reshape(B, C * H, W), AW)  # u·A_W (A_W symmetric): B products
        return torch.bmm(AH, y.view(B * C, H, W)).view(B, C, H, W)  # A_H·(u·A_W): B·C products

    def _dense_pair(self, u: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        # Two blurs. Sharing the first product, u·[A_W(t_k) | A_W(t_k-1)], or one stacked
        # batch of both levels measured slower on the CPU (benchmarks/README.md): the wider
        # product and the strided halves cost more than the second product they save.
        return self._dense_blur(u, k), self._dense_blur(u, k - 1)

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
