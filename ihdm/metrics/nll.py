"""Likelihood helpers shared by the IHDM ELBO and the DDPM variational bound.

Both models report two estimators of the same quantity, the NLL of 8-bit images in
bits/dim; both are valid upper bounds, they differ in the decoder term L_0 and the data:

* ``discrete`` (ours; ``bits_per_dim``, ``bpd_discrete``): data ``x01`` on the 8-bit grid
  ``k / 255`` (not dequantised); L_0 is the log *probability mass* of the pixel's bin,
  ``[x - 1/510, x + 1/510]`` with the two edge bins reaching to -inf and +inf
  (:func:`discretized_gaussian_log_likelihood`). bits/dim = nats / (N ln 2).
* ``dequantised`` (the IHDM authors' protocol; ``bpd_dequantised``): every term is
  evaluated on uniformly dequantised data ``y = (255 x + U(0, 1)) / 256`` in [0, 1) (their
  ``UniformDequantize``, :func:`dequantise`) and L_0 is a continuous Gaussian *density*
  (:func:`gaussian_log_density`). Since P(pixel k) = ∫ over a bin of width 1/256 of the
  density, Jensen gives -log2 P ≤ E[-log2 p(y)] + 8 per dimension: bits/dim =
  nats / (N ln 2) + 8 (``bits_per_dim(nats, N, continuous_01=True)``; NOTES §2).

On MNIST the two L_0 terms alone differ by about 2 bits/dim: most pixels are 0 or 255,
whose open-ended edge bins hold much more mass than a density over a bin of width 1/256.
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


def dequantise(x01: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The IHDM authors' uniform dequantisation of 8-bit data in [0, 1]:
    ``(255 x + u) / 256`` with ``u ~ U(0, 1)`` per element, which lands in [0, 1) with each
    pixel value k spread uniformly over [k/256, (k+1)/256). ``generator`` draws ``u`` on the
    CPU (reproducible on every device)."""
    u = torch.rand(x01.shape, generator=generator, dtype=torch.float32)
    return (255.0 * x01 + u.to(device=x01.device, dtype=x01.dtype)) / 256.0


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor | float) -> torch.Tensor:
    """Elementwise log N(x; mean, exp(log_scale)^2), a density (nats)."""
    log_scale = torch.as_tensor(log_scale, dtype=x.dtype, device=x.device)
    z = (x - mean) * torch.exp(-log_scale)
    return -0.5 * z * z - log_scale - 0.5 * math.log(2 * math.pi)


def bits_per_dim(nats_per_image: torch.Tensor | float, n_dims: int, continuous_01: bool = False) -> torch.Tensor | float:
    """Convert a negative log-likelihood per image (nats) to bits per dimension.

    ``nats / (n_dims ln 2)`` when the nats are a discrete NLL (256 bins per pixel);
    ``continuous_01=True`` adds 8 = log2(256) for a continuous density on dequantised data in
    [0, 1] (NOTES §2: "nats/(N ln 2) + 8"), which turns it into a bound on the same discrete
    NLL. Both are then bits per 8-bit pixel, but different bounds (see the module docstring).
    """
    if n_dims <= 0:
        raise ValueError(f"bits_per_dim: n_dims must be positive, got {n_dims}")
    bpd = nats_per_image / (n_dims * LOG2)
    if continuous_01:
        bpd = bpd + math.log2(N_BINS)
    return bpd


class PairedBound:
    """Both estimators of a variational bound in one pass, over paired batches: each
    batch is the 8-bit images (first half, the discrete estimator) stacked on the same
    images dequantised (second half); the models share every draw between the halves.
    Totals are nats summed over images, per term and estimator."""

    def __init__(self, terms: tuple[str, ...], seed: int) -> None:
        self.totals = {"discrete": dict.fromkeys(terms, 0.0), "dequantised": dict.fromkeys(terms, 0.0)}
        # its own stream, so that the models' draws do not depend on the dequantisation
        self._gen_deq = torch.Generator().manual_seed(int(seed) + 1)

    def batches(self, u01: torch.Tensor, batch_size: int, device: torch.device):
        """(u_b, pair) per batch of ``u01`` (float NCHW on the 8-bit grid): u_b on
        ``device`` and pair = [u_b; dequantise(u_b)] in [0, 1]."""
        for start in range(0, u01.shape[0], batch_size):
            u_b = u01[start : start + batch_size].to(device)
            yield u_b, torch.cat([u_b, dequantise(u_b, self._gen_deq)])

    def add(self, term: str, values: torch.Tensor, weight: float = 1.0) -> None:
        """Add a paired batch of per-element nats (summed per image, times ``weight``)."""
        per_image = values.flatten(1).sum(1)
        for key, part in zip(self.totals, per_image.split(per_image.shape[0] // 2)):
            self.totals[key][term] += weight * float(part.sum())

    def add_decoder(self, term: str, u_b: torch.Tensor, x0: torch.Tensor, x0_hat: torch.Tensor,
                    var: float) -> None:
        """L_0 = −log p(x_0 | x_1) for a Gaussian decoder N(x0_hat, var) on the [−1, 1]
        scale: its mass in the pixel's 8-bit bin for the discrete half (``u_b`` in [0, 1]),
        its density less N ln 2 (dx/dy = 2) for the dequantised half of ``x0``."""
        B, n_dims = u_b.shape[0], int(u_b[0].numel())
        log_p = discretized_gaussian_log_likelihood(u_b.double(), (x0_hat[:B].double() + 1) / 2,
                                                    0.5 * math.log(var) - LOG2)
        self.totals["discrete"][term] += float(-log_p.sum())
        log_p = gaussian_log_density(x0[B:].double(), x0_hat[B:].double(), 0.5 * math.log(var))
        self.totals["dequantised"][term] += float(-log_p.sum()) - B * n_dims * LOG2

    def bits(self, n: int, n_dims: int) -> dict[str, dict[str, float]]:
        """Bits/dim per term and estimator for ``n`` images; the dequantised estimator adds
        the dequantisation's 8 bits/dim as its own term."""
        out = {key: {term: float(bits_per_dim(v / n, n_dims)) for term, v in terms.items()}
               for key, terms in self.totals.items()}
        out["dequantised"]["dequantisation"] = math.log2(N_BINS)
        return out
