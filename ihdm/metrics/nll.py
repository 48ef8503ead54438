"""Likelihood helpers shared by the IHDM ELBO and the DDPM variational bound.

Conventions (one place for both models):

* Data ``x01`` are images in [0, 1] that came from 8-bit pixels, i.e. on the grid
  ``k / 255`` for ``k = 0..255``. A pixel's bin is ``[x - 1/510, x + 1/510]``; the two
  edge bins reach to -inf and +inf.
* :func:`discretized_gaussian_log_likelihood` returns log *probability masses* of those
  256 bins (nats). A bound built from it, with all other terms KL divergences (which do not
  change under rescaling), is a bound on the discrete NLL, and
  ``bits_per_dim(nats, N)`` = nats / (N ln 2) is directly the usual bits/dim.
* A bound whose decoder term is a continuous *density* on [0, 1] (the NOTES §2
  convention: "uniformly dequantised data in [0, 1]") must add log2(256) = 8 bits per
  dimension to land on the same scale: ``bits_per_dim(nats, N, continuous_01=True)``.
"""

from __future__ import annotations

import math

import torch

LOG2 = math.log(2.0)
N_BINS = 256


def gaussian_kl(
    mean1: torch.Tensor, logvar1: torch.Tensor | float, mean2: torch.Tensor, logvar2: torch.Tensor | float
) -> torch.Tensor:
    """Elementwise KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) in nats (broadcasts)."""
    mean1 = torch.as_tensor(mean1)
    logvar1 = torch.as_tensor(logvar1, dtype=mean1.dtype, device=mean1.device)
    mean2 = torch.as_tensor(mean2, dtype=mean1.dtype, device=mean1.device)
    logvar2 = torch.as_tensor(logvar2, dtype=mean1.dtype, device=mean1.device)
    p = torch.distributions.Normal(mean1, torch.exp(0.5 * logvar1))
    q = torch.distributions.Normal(mean2, torch.exp(0.5 * logvar2))
    return torch.distributions.kl_divergence(p, q)


def _log_normal_mass(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Phi(b) - Phi(a)) for standardised a < b, stable in both tails."""
    # Work in the left tail: if the interval lies right of 0 mirror it (Phi(b)-Phi(a) = Phi(-a)-Phi(-b)).
    mirror = a > 0
    hi = torch.where(mirror, -a, b)
    lo = torch.where(mirror, -b, a)
    log_hi = torch.special.log_ndtr(hi)
    log_lo = torch.special.log_ndtr(lo)
    # log(exp(log_hi) - exp(log_lo)) = log_hi + log(1 - exp(log_lo - log_hi)); clamp keeps it finite.
    diff = torch.clamp(log_lo - log_hi, max=-1e-12)
    return log_hi + torch.log(-torch.expm1(diff))


def discretized_gaussian_log_likelihood(
    x01: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor | float
) -> torch.Tensor:
    """Elementwise log P(pixel bin of ``x01``) under N(mean, exp(log_scale)^2), 256 bins on [0, 1].

    ``x01`` must be on (or very near) the 8-bit grid k/255; ``mean`` and ``log_scale`` (log of
    the standard deviation) are in the same [0, 1] units. Returns nats, same shape as the
    broadcast inputs.
    """
    x01 = torch.as_tensor(x01)
    if not torch.is_floating_point(x01):
        raise ValueError(f"discretized_gaussian_log_likelihood: x01 must be a float tensor in [0, 1], got {x01.dtype}")
    if x01.numel() and (x01.min() < -1e-6 or x01.max() > 1 + 1e-6):
        raise ValueError(
            "discretized_gaussian_log_likelihood: x01 must lie in [0, 1] "
            f"(got range [{float(x01.min()):.4g}, {float(x01.max()):.4g}])"
        )
    mean = torch.as_tensor(mean, dtype=x01.dtype, device=x01.device)
    log_scale = torch.as_tensor(log_scale, dtype=x01.dtype, device=x01.device)
    half_bin = 0.5 / (N_BINS - 1)
    inv_scale = torch.exp(-log_scale)
    a = (x01 - half_bin - mean) * inv_scale
    b = (x01 + half_bin - mean) * inv_scale
    bottom = x01 < half_bin  # bin 0 reaches to -inf
    top = x01 > 1.0 - half_bin  # bin 255 reaches to +inf
    a = torch.where(bottom, torch.full_like(a, -math.inf), a)
    b = torch.where(top, torch.full_like(b, math.inf), b)
    # Edge bins give log Phi(b) or log Phi(-a); _log_normal_mass handles the infinite ends.
    return _log_normal_mass(a, b)


def bits_per_dim(nats_per_image: torch.Tensor | float, n_dims: int, continuous_01: bool = False) -> torch.Tensor | float:
    """Convert a negative log-likelihood per image (nats) to bits per dimension.

    ``nats / (n_dims ln 2)`` when the nats are a discrete NLL (256 bins per pixel);
    ``continuous_01=True`` adds 8 = log2(256) for a continuous density on data rescaled to
    [0, 1] from 0..255 (NOTES §2: "nats/(N ln 2) + 8"). Both give the same scale.
    """
    if n_dims <= 0:
        raise ValueError(f"bits_per_dim: n_dims must be positive, got {n_dims}")
    bpd = nats_per_image / (n_dims * LOG2)
    if continuous_01:
        bpd = bpd + math.log2(N_BINS)
    return bpd
