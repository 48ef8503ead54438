"""Evaluation metrics.

* :mod:`ihdm.metrics.nll` — discretised Gaussian likelihood, Gaussian KL and bits/dim
  (shared by the IHDM ELBO and the DDPM variational bound).
* :mod:`ihdm.metrics.fid` — FID/KID through clean-fid ("clean" mode), reference statistics
  files, local Inception weights, custom feature extractors.
* :mod:`ihdm.metrics.domain` — an offline domain metric: a small classifier trained on the
  training split gives a Fréchet distance of its features, class histograms and confidence.

The fid and domain modules import clean-fid; import them explicitly.
"""

from ihdm.metrics.nll import bits_per_dim, discretized_gaussian_log_likelihood, gaussian_kl

__all__ = ["bits_per_dim", "discretized_gaussian_log_likelihood", "gaussian_kl"]
