"""Power spectral density of image sets and its comparison with diffusion noise and heat.

Conventions (one place):

- Images are uint8 (scaled to [0, 1] by /255) or float arrays already on that scale, laid
  out NHWC (``layout="NCHW"`` for tensors converted to numpy), or a single H×W(×C) image.
- The default spectral basis is the orthonormal 2-D DCT-II, the eigenbasis of the heat
  equation with Neumann boundaries. DCT index n of an H-pixel axis is the frequency
  n / (2H) cycles/pixel, so the Laplacian eigenvalue λ_{n,m} = π²(n²/H² + m²/W²) is
  exactly λ(f) = (2πf)² at the radial frequency f = sqrt((n/2H)² + (m/2W)²). The DCT's
  even extension also avoids the edge-discontinuity leakage a periodic FFT adds to
  non-periodic photographs. ``basis="fft"`` gives the plain periodogram for periodic data.
  (At small sizes the DCT estimate of α is biased low; see :func:`default_fit_range`.)
- Normalisation: PSD(f) is the mean squared orthonormal coefficient |c|² (for the FFT,
  |F|²/(HW)) in the radial bin around f, averaged over images and channels after each
  channel's mean is removed. White noise of variance s² has PSD ≡ s², so adding
  N(0, s²I) noise adds the flat floor s² (:data:`WHITE_NOISE_PSD` per unit variance).
- Diffusion (variance preserving): x_t = sqrt(ᾱ_t) x + sqrt(1 − ᾱ_t) ε. Relative to the
  signal the noise floor is (1 − ᾱ_t)/ᾱ_t; with the model's data x = data_scale·u + shift
  (DDPM on [−1, 1]: data_scale = 2, read from :meth:`ihdm.ddpm.DDPM.to_model`) the floor on
  the [0, 1] scale of ``radial_psd`` is (1 − ᾱ_t) / (ᾱ_t · data_scale²). Steps are counted
  t = 1..T here (normalised level t/T); :mod:`ihdm.ddpm`'s network index is t − 1.
- Heat (IHDM): F(t_k) multiplies the power at λ by exp(−2λ t_k), t_k = σ_B,k²/2, and
  q(u_k | u_0) adds the flat floor σ².
- Blurring diffusion (Hoogeboom & Salimans; :mod:`ihdm.blurring`): at time t each
  frequency's signal is scaled by a_t·d_t(f), d_t(f) = (1 − d_min) exp(−λ(f) τ_t) + d_min,
  and noised with σ_t; on the [0, 1] scale (data_scale 2, as DDPM) the attenuated spectrum
  d_t(f)²·PSD(f) meets the flat floor σ_t²/(a_t² · data_scale²). Levels t = i/T, i = 1..T.
- Erased frequency at a level: the lowest frequency at which the (attenuated) data PSD
  falls below the noise floor, located by log-log interpolation between the last bin above
  and the first bin below. It is capped to the resolved band: the lowest bin when every bin
  is below the floor, the highest bin when none is. Since the floor grows (diffusion) or the
  attenuated spectrum shrinks (heat) with the level, the curve never increases with level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import scipy.fft
import scipy.stats

from .errors import UserError

__all__ = [
    "SpectralError",
    "WHITE_NOISE_PSD",
    "as_float_images",
    "radial_frequencies",
    "radial_psd",
    "fit_power_law",
    "default_fit_range",
    "laplacian_eigenvalue",
    "heat_attenuation",
    "attenuated_psd",
    "ddpm_alpha_bar",
    "ddpm_data_scale",
    "ddpm_noise_floor",
    "ihdm_blur_times",
    "erased_frequency",
    "erased_frequency_ddpm",
    "erased_frequency_ihdm",
    "erased_frequency_blurring",
    "spectral_summary",
]

Basis = Literal["dct", "fft"]

WHITE_NOISE_PSD = 1.0
"""PSD level of unit-variance white noise under :func:`radial_psd`'s normalisation."""

SUMMARY_LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
"""Normalised levels at which :func:`spectral_summary` reports the erased frequency."""

SUMMARY_FREQUENCIES = (0.25, 0.125, 0.0625)
"""Frequencies (cycles/pixel) for which :func:`spectral_summary` reports the first level erasing them."""

FIGURE_LEVELS = (0.02, 0.1, 0.25, 0.5, 0.75)
"""Normalised levels whose noise floors / attenuated spectra the summary keeps for the PSD figure."""


class SpectralError(UserError, ValueError):
    """Bad input to the spectral analysis (shape, range, schedule)."""


# ---------------------------------------------------------------------------- images


def as_float_images(images: Any, layout: Literal["NHWC", "NCHW"] = "NHWC") -> np.ndarray:
    """Images as float64 (N, C, H, W) on the [0, 1] scale (uint8 is divided by 255)."""
    x = np.asarray(images)
    if x.dtype == np.uint8:
        x = x.astype(np.float64) / 255.0
    elif np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float64)
    else:
        raise SpectralError(f"images must be uint8 or float, got dtype {x.dtype}")
    if layout not in ("NHWC", "NCHW"):
        raise SpectralError(f"layout must be 'NHWC' or 'NCHW', got {layout!r}")
    if x.ndim == 2:  # one grey image
        x = x[None, None]
    elif x.ndim == 3:  # (N, H, W) grey images, or one H×W×C image with C in {1, 3, 4}
        x = x[None].transpose(0, 3, 1, 2) if (layout == "NHWC" and x.shape[-1] in (1, 3)) else x[:, None]
    elif x.ndim == 4:
        x = x.transpose(0, 3, 1, 2) if layout == "NHWC" else x
    else:
        raise SpectralError(f"images must have 2 to 4 dimensions (N, H, W, C), got shape {x.shape}")
    if x.shape[0] == 0 or min(x.shape[-2:]) < 4:
        raise SpectralError(f"need at least one image of at least 4×4 pixels, got shape {x.shape} (N, C, H, W)")
    if not np.isfinite(x).all():
        raise SpectralError("images contain NaN or infinite values")
    return x


# ---------------------------------------------------------------------------- PSD


def radial_frequencies(H: int, W: int, basis: Basis = "dct") -> np.ndarray:
    """Radial frequency (cycles/pixel) of every coefficient of an H×W transform."""
    if basis == "dct":
        fy, fx = np.arange(H) / (2 * H), np.arange(W) / (2 * W)
    elif basis == "fft":
        fy, fx = np.fft.fftfreq(H), np.fft.fftfreq(W)
    else:
        raise SpectralError(f"basis must be 'dct' or 'fft', got {basis!r}")
    return np.hypot(fy[:, None], fx[None, :])


def _coefficient_power(x: np.ndarray, basis: Basis) -> np.ndarray:
    """Mean over images and channels of the squared coefficients, shape (H, W)."""
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    if basis == "dct":
        c = scipy.fft.dctn(x, type=2, norm="ortho", axes=(-2, -1))
        power = c**2
    else:
        c = scipy.fft.fft2(x, axes=(-2, -1), norm="ortho")  # |F|²/(HW) with norm="ortho"
        power = c.real**2 + c.imag**2
    return power.reshape(-1, *x.shape[-2:]).sum(axis=0)


def radial_psd(
    images: Any,
    basis: Basis = "dct",
    layout: Literal["NHWC", "NCHW"] = "NHWC",
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectral density of an image set.

    Returns ``(freqs, psd)``: bins of width 1/(2·min(H, W)) (DCT) or 1/min(H, W) (FFT)
    cycles/pixel from the first non-zero bin up to 0.5; ``freqs`` is the mean radial
    frequency of the coefficients in each bin and ``psd`` their mean power (see the module
    docstring for the normalisation). The DC bin is left out (means are removed).
    """
    x = as_float_images(images, layout)
    N, C, H, W = x.shape
    total = np.zeros((H, W))
    for start in range(0, N, max(1, chunk)):
        total += _coefficient_power(x[start : start + chunk], basis)
    power = total / (N * C)

    f = radial_frequencies(H, W, basis)
    df = 1.0 / (2 * min(H, W)) if basis == "dct" else 1.0 / min(H, W)
    index = np.rint(f / df).astype(np.int64).ravel()
    n_bins = int(math.floor(0.5 / df + 1e-9)) + 1
    keep = index < n_bins
    counts = np.bincount(index[keep], minlength=n_bins)
    f_sum = np.bincount(index[keep], weights=f.ravel()[keep], minlength=n_bins)
    p_sum = np.bincount(index[keep], weights=power.ravel()[keep], minlength=n_bins)
    valid = counts > 0
    valid[0] = False  # DC
    return f_sum[valid] / counts[valid], p_sum[valid] / counts[valid]


def fit_power_law(
    freqs: Any, psd: Any, fmin: float | None = None, fmax: float | None = None
) -> dict[str, float]:
    """Least-squares fit of log10 PSD = log_amplitude − α log10 f over fmin ≤ f ≤ fmax.

    Returns plain floats: ``alpha``, ``alpha_stderr`` (OLS standard error of the slope),
    ``log_amplitude`` (log10 of the PSD at f = 1), ``r_squared``, ``fmin``, ``fmax`` and
    ``n_points``.
    """
    f = np.asarray(freqs, dtype=np.float64)
    p = np.asarray(psd, dtype=np.float64)
    if f.shape != p.shape or f.ndim != 1:
        raise SpectralError(f"freqs and psd must be 1-D arrays of equal length, got {f.shape} and {p.shape}")
    lo = f.min() if fmin is None else fmin
    hi = f.max() if fmax is None else fmax
    sel = (f >= lo) & (f <= hi) & (f > 0) & (p > 0)
    if sel.sum() < 3:
        raise SpectralError(
            f"power-law fit needs at least 3 positive bins in [{lo:g}, {hi:g}] cycles/pixel, got {int(sel.sum())}"
        )
    res = scipy.stats.linregress(np.log10(f[sel]), np.log10(p[sel]))
    return {
        "alpha": float(-res.slope),
        "alpha_stderr": float(res.stderr),
        "log_amplitude": float(res.intercept),
        "r_squared": float(res.rvalue**2),
        "fmin": float(f[sel].min()),
        "fmax": float(f[sel].max()),
        "n_points": int(sel.sum()),
    }


def default_fit_range(H: int, W: int) -> tuple[float, float]:
    """(2/min(H, W), 0.5) cycles/pixel: the whole band above the two longest wavelengths.

    The lowest bins are left out because finite image size biases them: in the DCT basis the
    first few coefficients of an axis carry less power than the spectrum at their nominal
    frequency (their effective frequency is higher), which lowers the fitted α; in the FFT
    basis the border discontinuity adds power there. What bias remains (DCT, low, larger
    on smaller images) is measured in benchmarks/README.md, "Power-law fit".
    """
    return 2.0 / min(H, W), 0.5


# ---------------------------------------------------------------------------- heat


def laplacian_eigenvalue(freqs: Any) -> np.ndarray:
    """λ(f) = (2πf)²: the Neumann Laplacian eigenvalue π²(n²/H² + m²/W²) at f = |(n/2H, m/2W)|."""
    return (2 * np.pi * np.asarray(freqs, dtype=np.float64)) ** 2


def heat_attenuation(freqs: Any, t: Any) -> np.ndarray:
    """Power attenuation exp(−2λ(f)t) of the heat equation; shape t.shape + freqs.shape."""
    t = np.asarray(t, dtype=np.float64)
    if (t < 0).any():
        raise SpectralError("heat time t must be non-negative")
    return np.exp(-2.0 * np.multiply.outer(t, laplacian_eigenvalue(freqs)))


def attenuated_psd(freqs: Any, psd: Any, t: Any) -> np.ndarray:
    """exp(−2λ(f)t)·PSD(f): the data spectrum after heat dissipation for time(s) t."""
    return heat_attenuation(freqs, t) * np.asarray(psd, dtype=np.float64)


def ihdm_blur_times(K: int, blur_sigma_min: float, blur_sigma_max: float) -> np.ndarray:
    """t_0..t_K = σ_B,k²/2 from the schedule in :mod:`ihdm.heat` (length K+1, t_0 = 0)."""
    from ihdm.heat import blur_schedule, blur_times

    return blur_times(blur_schedule(K, blur_sigma_min, blur_sigma_max))


# ---------------------------------------------------------------------------- diffusion


def ddpm_alpha_bar(ddpm: Mapping[str, Any] | None = None) -> np.ndarray:
    """ᾱ for the steps t = 1..T (index t−1) of a ``ddpm`` config section, from :class:`ihdm.ddpm.DDPM`."""
    from ihdm.ddpm import DDPM

    ddpm = dict(ddpm or {})
    try:
        process = DDPM(
            T=int(ddpm.get("T", 1000)),
            schedule=str(ddpm.get("schedule", "linear")),
            beta_start=float(ddpm.get("beta_start", 1e-4)),
            beta_end=float(ddpm.get("beta_end", 0.02)),
            ddim_steps=1,
        )
    except ValueError as exc:
        raise SpectralError(str(exc)) from None
    return process.alpha_bar.numpy().astype(np.float64)


def ddpm_data_scale() -> float:
    """Slope of :meth:`ihdm.ddpm.DDPM.to_model` (the map from [0, 1] data to the model's scale)."""
    import torch

    from ihdm.ddpm import DDPM

    ends = DDPM.to_model(torch.tensor([0.0, 1.0], dtype=torch.float64))
    return float(ends[1] - ends[0])


def ddpm_noise_floor(alpha_bar_t: Any, data_scale: float = 2.0) -> np.ndarray:
    """Flat noise PSD (1 − ᾱ_t)/(ᾱ_t·data_scale²) relative to the signal, on the [0, 1] scale."""
    a = np.asarray(alpha_bar_t, dtype=np.float64)
    if ((a <= 0) | (a > 1)).any():
        raise SpectralError("alpha_bar must lie in (0, 1]")
    if data_scale <= 0:
        raise SpectralError(f"data_scale must be positive, got {data_scale}")
    return (1.0 - a) / a / data_scale**2 * WHITE_NOISE_PSD


# ---------------------------------------------------------------------------- erased frequency


def erased_frequency(freqs: Any, spectra: Any, floor: Any) -> np.ndarray:
    """Per level, the lowest frequency where ``spectra[level]`` falls below ``floor[level]``.

    ``spectra`` has shape (L, F) (or (F,), broadcast over levels) and ``floor`` shape (L,)
    (or a scalar). Crossings are interpolated in log-log between neighbouring bins; the
    result is capped to [freqs[0], freqs[-1]] (see module docstring).
    """
    f = np.asarray(freqs, dtype=np.float64)
    floor = np.atleast_1d(np.asarray(floor, dtype=np.float64))
    S = np.asarray(spectra, dtype=np.float64)
    if f.ndim != 1 or S.ndim not in (1, 2) or S.shape[-1] != f.size or floor.ndim != 1:
        raise SpectralError(
            f"need 1-D freqs, spectra of shape (levels, {f.size}) or ({f.size},) and 1-D floors; "
            f"got freqs {f.shape}, spectra {S.shape}, floor {floor.shape}"
        )
    if S.ndim == 1:
        S = np.broadcast_to(S, (floor.size, f.size))
    if floor.size == 1:
        floor = np.broadcast_to(floor, (S.shape[0],))
    if floor.size != S.shape[0]:
        raise SpectralError(f"got {S.shape[0]} spectra but {floor.size} noise floors")
    if (f <= 0).any() or (np.diff(f) <= 0).any():
        raise SpectralError("freqs must be positive and strictly increasing")
    if (floor <= 0).any():
        raise SpectralError("noise floors must be positive")
    below = S < floor[:, None]
    first = np.where(below.any(axis=1), below.argmax(axis=1), f.size)
    out = np.empty(S.shape[0])
    tiny = np.finfo(np.float64).tiny
    logf, logS, logc = np.log(f), np.log(np.maximum(S, tiny)), np.log(floor)
    for i, j in enumerate(first):
        if j == 0:
            out[i] = f[0]
        elif j == f.size:
            out[i] = f[-1]
        else:
            a, b = logS[i, j - 1], logS[i, j]
            s = (a - logc[i]) / (a - b) if a > b else 1.0
            out[i] = math.exp(logf[j - 1] + min(max(s, 0.0), 1.0) * (logf[j] - logf[j - 1]))
    return out


def erased_frequency_ddpm(
    freqs: Any, psd: Any, alpha_bar: Any, data_scale: float = 2.0, level: Any | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(level, f_erased) over diffusion steps t = 1..T, with ``alpha_bar`` = ᾱ_1..ᾱ_T.

    The normalised level is t/T unless ``level`` is given.
    """
    a = np.asarray(alpha_bar, dtype=np.float64).reshape(-1)
    lv = np.arange(1, a.size + 1) / a.size if level is None else np.asarray(level, dtype=np.float64)
    return lv, erased_frequency(freqs, psd, ddpm_noise_floor(a, data_scale))


def erased_frequency_ihdm(
    freqs: Any, psd: Any, t_k: Any, sigma: float, level: Any | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(level, f_erased) over blur levels with ``t_k`` = t_0..t_K (t_0 = 0 for the data).

    Erased where exp(−2λt_k)·PSD falls below the σ² floor of q(u_k | u_0). The normalised
    level is k/K for k = 0..K unless ``level`` is given.
    """
    t = np.asarray(t_k, dtype=np.float64).reshape(-1)
    if sigma <= 0:
        raise SpectralError(f"heat.sigma must be positive, got {sigma}")
    if level is None:
        lv = np.arange(t.size) / max(t.size - 1, 1)
    else:
        lv = np.asarray(level, dtype=np.float64)
    return lv, erased_frequency(freqs, attenuated_psd(freqs, psd, t), np.full(t.size, sigma**2))


def erased_frequency_blurring(
    freqs: Any, psd: Any, blurring: Mapping[str, Any] | None = None, data_scale: float = 2.0,
    levels: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(level, f_erased) of blurring diffusion (a ``blurring`` config section: T,
    blur_sigma_max, min_scale, logsnr_min, logsnr_max) at ``levels`` evenly spaced levels
    t = i/T (all T by default): where d_t(f)²·PSD(f) falls below σ_t²/(a_t²·data_scale²)."""
    from ihdm.blurring import blur_times, frequency_scaling, noise_schedule

    b = dict(blurring or {})
    T = int(b.get("T", 1000))
    if T < 1:
        raise SpectralError(f"blurring.T must be at least 1, got {T}")
    if data_scale <= 0:
        raise SpectralError(f"data_scale must be positive, got {data_scale}")
    i = np.unique(np.round(np.linspace(1, T, min(T, levels or T))).astype(int))
    t = i / T
    try:
        a, sigma = noise_schedule(t, float(b.get("logsnr_min", -10.0)), float(b.get("logsnr_max", 10.0)))
    except ValueError as exc:
        raise SpectralError(str(exc)) from None
    tau = blur_times(t, float(b.get("blur_sigma_max", 20.0)))
    d = frequency_scaling(laplacian_eigenvalue(freqs), tau, float(b.get("min_scale", 0.001)))
    spectra = d**2 * np.asarray(psd, dtype=np.float64)
    return t, erased_frequency(freqs, spectra, sigma**2 / (a**2 * data_scale**2) * WHITE_NOISE_PSD)


# ---------------------------------------------------------------------------- summary


def _curve_summary(level: np.ndarray, f_erased: np.ndarray) -> dict[str, Any]:
    at_level = {f"{q:g}": float(np.interp(q, level, f_erased)) for q in SUMMARY_LEVELS}
    level_at = {}
    for fq in SUMMARY_FREQUENCIES:
        hit = np.nonzero(f_erased <= fq)[0]
        level_at[f"{fq:g}"] = float(level[hit[0]]) if hit.size else None
    return {
        "erased_frequency_at_level": at_level,
        "first_level_erasing_above": level_at,
        "mean_erased_frequency": float(np.trapezoid(f_erased, level) / (level[-1] - level[0]))
        if level[-1] > level[0]
        else float(f_erased.mean()),
    }


def _nearest(levels: np.ndarray, q: float) -> int:
    return int(np.argmin(np.abs(levels - q)))


def spectral_summary(
    images: Any,
    heat: Mapping[str, Any] | None = None,
    ddpm: Mapping[str, Any] | None = None,
    blurring: Mapping[str, Any] | None = None,
    *,
    fmin: float | None = None,
    fmax: float | None = None,
    data_scale: float | None = None,
    basis: Basis = "dct",
    layout: Literal["NHWC", "NCHW"] = "NHWC",
    figure_levels: Sequence[float] = FIGURE_LEVELS,
    fit_basis: Basis | None = None,
) -> dict[str, Any]:
    """Everything the spectral figures and the results JSON need, as plain numbers and lists.

    ``heat`` and ``ddpm`` are the config sections (keys K, blur_sigma_min, blur_sigma_max,
    sigma; T, schedule, beta_start, beta_end); ``blurring``, when given, adds blurring
    diffusion's curve (:func:`erased_frequency_blurring`, at most 1000 levels). The fit range
    defaults to :func:`default_fit_range`, ``data_scale`` to :func:`ddpm_data_scale`. The power
    law is fitted to the PSD in ``fit_basis`` (default: ``basis``); the fit records its range
    and basis. On 32-pixel images the DCT estimate of α is about 0.1 low, the periodogram's is
    not (benchmarks/README.md, "Power-law fit").
    """
    heat = dict(heat or {})
    ddpm = dict(ddpm or {})
    x = as_float_images(images, layout)
    freqs, psd = radial_psd(x, basis=basis, layout="NCHW")
    lo, hi = default_fit_range(x.shape[2], x.shape[3])
    fit_basis = basis if fit_basis is None else fit_basis
    fit_freqs, fit_psd = (freqs, psd) if fit_basis == basis else radial_psd(x, basis=fit_basis, layout="NCHW")
    fit = {**fit_power_law(fit_freqs, fit_psd, lo if fmin is None else fmin, hi if fmax is None else fmax),
           "basis": fit_basis}

    K = int(heat.get("K", 50))
    sigma = float(heat.get("sigma", 0.01))
    blur_sigma_min = float(heat.get("blur_sigma_min", 0.5))
    blur_sigma_max = float(heat.get("blur_sigma_max", 20.0))
    t_k = ihdm_blur_times(K, blur_sigma_min, blur_sigma_max)
    ih_level, ih_f = erased_frequency_ihdm(freqs, psd, t_k, sigma)

    abar = ddpm_alpha_bar(ddpm)
    data_scale = ddpm_data_scale() if data_scale is None else float(data_scale)
    dd_level, dd_f = erased_frequency_ddpm(freqs, psd, abar, data_scale)
    floors = ddpm_noise_floor(abar, data_scale)

    extra = {}
    if blurring is not None:
        bl_level, bl_f = erased_frequency_blurring(freqs, psd, blurring, data_scale, levels=1000)
        extra["blurring"] = {
            "T": int(dict(blurring).get("T", 1000)),
            "blur_sigma_max": float(dict(blurring).get("blur_sigma_max", 20.0)),
            "min_scale": float(dict(blurring).get("min_scale", 0.001)),
            "level": bl_level.tolist(),
            "erased_frequency": bl_f.tolist(),
            **_curve_summary(bl_level, bl_f),
        }
    dd_sel = sorted({_nearest(dd_level, q) for q in figure_levels})
    ih_sel = sorted({_nearest(ih_level, q) for q in figure_levels})
    return {
        "n_images": int(x.shape[0]),
        "channels": int(x.shape[1]),
        "height": int(x.shape[2]),
        "width": int(x.shape[3]),
        "basis": basis,
        "white_noise_psd": WHITE_NOISE_PSD,
        "fit": fit,
        "alpha": fit["alpha"],
        "alpha_stderr": fit["alpha_stderr"],
        "psd": {"freqs": freqs.tolist(), "psd": psd.tolist()},
        "ddpm": {
            "schedule": str(ddpm.get("schedule", "linear")),
            "T": int(abar.size),
            "data_scale": float(data_scale),
            "level": dd_level.tolist(),
            "erased_frequency": dd_f.tolist(),
            **_curve_summary(dd_level, dd_f),
            "selected": [
                {"t": i + 1, "level": float(dd_level[i]), "alpha_bar": float(abar[i]), "noise_floor": float(floors[i])}
                for i in dd_sel
            ],
        },
        "ihdm": {
            "K": K,
            "sigma": sigma,
            "noise_floor": sigma**2,
            "blur_sigma_min": blur_sigma_min,
            "blur_sigma_max": blur_sigma_max,
            "level": ih_level.tolist(),
            "erased_frequency": ih_f.tolist(),
            **_curve_summary(ih_level, ih_f),
            "selected": [
                {"k": k, "level": float(ih_level[k]), "blur_sigma": float(math.sqrt(2 * t_k[k])), "t": float(t_k[k])}
                for k in ih_sel
            ],
        },
        **extra,
    }
