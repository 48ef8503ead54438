"""IHDM: the inverse heat dissipation model (Rissanen, Heinonen & Solin, ICLR 2023).

Notation follows the paper. Images u are float NCHW in [0, 1]; level k = 0..K with
u_k = F(t_k) u_0 the heat-blurred image.

* inference distribution  q(u_k | u_0) = N(F(t_k) u_0, σ² I)
* generative step         p(u_{k-1} | u_k) = N(μ_θ(u_k, k), δ² I),  μ_θ = u_k + f_θ(u_k, k)
* prior                   p(u_K) = (1/M) Σ_j N(F(t_K) x_j, δ² I)  over the training images x_j
* loss                    k ~ U{1..K}, ũ_k = F(t_k)u_0 + σε,  ‖μ_θ(ũ_k, k) − F(t_{k-1}) u_0‖²
                          (summed over pixels, averaged over the batch)

Samplers draw everything from one seeded :class:`torch.Generator` so that the same seed
gives the same samples. A sampling run is driven by a prior state u_K and K noise tensors:
``noise[0]`` is the KDE prior's δ-noise and ``noise[j]`` (j = 1..K-1) the δ-noise added after
the step from level K-j+1 to K-j. The variants differ only in how these are shared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .config import ConfigError
from .data import to_tensor
from .errors import UserError
from .heat import HeatOperator, blur_schedule, blur_times
from .metrics.nll import N_BINS, dequantise, discretized_gaussian_log_likelihood, gaussian_log_density
from .noise import slerp

# What the package, the workflow and the tests know of this model (read from the source,
# without importing it, by ihdm.provenance.models)
MODEL = "ihdm"
VARIANTS = ("random", "shared-prior", "shared-noise", "interpolate")
#: the config keys that shape the trained weights (heat.delta is read by sampling only)
TRAINING_KEYS = ("heat.K", "heat.blur_sigma_min", "heat.blur_sigma_max", "heat.sigma")
#: the config keys read by sampling and scoring but not by training
SAMPLING_KEYS = ("heat.delta",)
#: the model's own config keys behind its NLL (the variance of the generative steps)
NLL_KEYS = ("heat.delta",)


@dataclass
class IHDM:
    """The IHDM process for images of shape (C, H, W). ``prior_images`` (float NCHW in
    [0, 1]) are the training images behind the KDE prior: sampling and the NLL need them."""

    K: int
    blur_sigma_min: float
    blur_sigma_max: float
    sigma: float
    delta: float
    H: int
    W: int
    prior_images: Tensor | None = None
    interpolation_frames: int = 9

    name = MODEL
    variants = VARIANTS
    uses_training_images = True  # the KDE prior

    def __post_init__(self):
        self.blur_sigmas = blur_schedule(self.K, self.blur_sigma_min, self.blur_sigma_max)
        self.t = blur_times(self.blur_sigmas)
        self._ops: dict = {}

    @classmethod
    def from_config(cls, cfg: dict, *, prior_images: np.ndarray | None = None) -> "IHDM":
        """From the config; ``prior_images`` uint8 NHWC training images (for sampling)."""
        h, res = cfg["heat"], cfg["data"]["resolution"]
        prior = to_tensor(prior_images) if prior_images is not None else None
        return cls(h["K"], h["blur_sigma_min"], h["blur_sigma_max"], h["sigma"], h["delta"], res, res,
                   prior, cfg["sample"]["interpolation_frames"])

    def sampler_description(self) -> str:
        """What draws the samples, for sample files, figures and tables."""
        return f"IHDM, K={self.K} levels, δ={self.delta:g}"

    def _prior(self) -> Tensor:
        if self.prior_images is None:
            raise UserError("IHDM's prior needs the training images: build the model with "
                            "prior_images (ihdm sample/evaluate: --data)")
        return self.prior_images

    def operator(self, like: Tensor) -> HeatOperator:
        key = (like.device, like.dtype if like.dtype == torch.float64 else torch.float32)
        if key not in self._ops:
            self._ops[key] = HeatOperator(self.t, self.H, self.W, dtype=key[1], device=key[0])
        return self._ops[key]

    # ----------------------------------------------------------------- forward process
    def blur(self, u0: Tensor, k) -> Tensor:
        """u_k = F(t_k) u_0 with one level per image (or one for all)."""
        return self.operator(u0).blur(u0, k)

    def loss(self, net: nn.Module, u0: Tensor, generator: torch.Generator | None = None,
             shard: slice | None = None) -> Tensor:
        """The training loss on the batch ``u0``. With ``shard`` (data-parallel training),
        the levels and noise are drawn for the whole batch and only the shard's images go
        through the network, so that the shards of all ranks together are one batch."""
        B = u0.shape[0]
        k = torch.randint(1, self.K + 1, (B,), device=u0.device, generator=generator)
        u_k, u_km1 = self.operator(u0).blur_pair(u0, k)
        noise = torch.randn(u_k.shape, device=u0.device, dtype=u_k.dtype, generator=generator)
        u_k_noisy = u_k + self.sigma * noise
        if shard is not None:
            u_k_noisy, u_km1, k = u_k_noisy[shard], u_km1[shard], k[shard]
        mu = u_k_noisy + net(u_k_noisy, k)
        return (mu.float() - u_km1.float()).pow(2).sum(dim=(1, 2, 3)).mean()

    @torch.inference_mode()
    def network_io(self, net: nn.Module, u0: Tensor, fraction: float,
                   generator: torch.Generator | None = None) -> tuple[int, Tensor, Tensor]:
        """(k, ũ_k, f_θ(ũ_k, k)) at the level k = round(fraction · K) (at least 1), with
        ũ_k ~ q(u_k | u_0): what the network sees and returns there (ihdm.metrics.emergent)."""
        k = min(self.K, max(1, round(fraction * self.K)))
        u_k = self.blur(u0, k)
        noise = torch.randn(u_k.shape, generator=generator).to(u_k.device)
        inputs = u_k + self.sigma * noise
        kk = torch.full((u0.shape[0],), k, device=u0.device, dtype=torch.long)
        return k, inputs, net(inputs, kk).float()

    # ----------------------------------------------------------------- prior
    def prior_mean(self, images: Tensor) -> Tensor:
        """F(t_K) x_j for a batch of training images (the KDE's centres)."""
        return self.blur(images, self.K)

    # ----------------------------------------------------------------- sampling
    @torch.inference_mode()
    def denoise(self, net, u: Tensor, noise: list[Tensor] | None, generator=None,
                frame_levels: set[int] = frozenset()):
        """Run the reverse chain from u_K. ``noise`` (optional) gives the K-1 step noises
        (each (B,C,H,W)); otherwise they are drawn from ``generator``. Returns the final
        mean and the states at ``frame_levels``."""
        frames = {self.K: u.clone()} if self.K in frame_levels else {}
        B = u.shape[0]
        for k in range(self.K, 0, -1):
            kk = torch.full((B,), k, device=u.device, dtype=torch.long)
            u = u + net(u, kk).to(u.dtype)
            if k > 1:
                if noise is not None:
                    eps = noise[self.K - k + 1]
                else:
                    eps = torch.randn(u.shape, generator=generator, device=generator.device, dtype=u.dtype)
                u = u + self.delta * eps.to(u.device)
            if k - 1 in frame_levels:
                frames[k - 1] = u.clone()
        return u, frames

    def frame_levels(self, n_frames: int) -> list[int]:
        """Levels K..0 at which trajectory frames are taken (n_frames of them)."""
        return sorted({int(round(x)) for x in np.linspace(self.K, 0, n_frames)}, reverse=True)

    @torch.inference_mode()
    def sample(
        self,
        net: nn.Module,
        n: int,
        shape: tuple[int, int, int],
        *,
        seed: int = 0,
        variant: str = "random",
        trajectory_frames: int = 0,
        batch_size: int = 256,
        device=None,
    ) -> dict:
        """Draw samples. Returns {"images": (N, C, H, W) in [0, 1] (clamped), "trajectory":
        (N, F, C, H, W) or None, "levels": the trajectory's levels}. For ``interpolate``,
        N = n × interpolation_frames: n rows, each an interpolation between two draws."""
        if variant not in VARIANTS:
            raise ConfigError(f"unknown sampling variant '{variant}'; IHDM supports {list(VARIANTS)}")
        prior_images = self._prior()
        interpolation_frames = self.interpolation_frames
        device = torch.device(device or next(net.parameters()).device)
        g = torch.Generator(device="cpu").manual_seed(seed)
        C, H, W = shape
        M = prior_images.shape[0]
        prior_images = prior_images.to(device)
        levels = self.frame_levels(trajectory_frames) if trajectory_frames else []

        def prior(count: int) -> Tensor:
            idx = torch.randint(0, M, (count,), generator=g)
            mean = self.prior_mean(prior_images[idx].float())
            return mean + self.delta * torch.randn(mean.shape, generator=g).to(device)

        def draw(count):
            return torch.randn((count, C, H, W), generator=g)

        images, trajs = [], []
        if variant == "interpolate":
            weights = np.linspace(0.0, 1.0, interpolation_frames)
            for _ in range(n):
                ends = []
                for _ in range(2):
                    idx = torch.randint(0, M, (1,), generator=g)
                    noise = [draw(1) for _ in range(self.K)]
                    ends.append((self.prior_mean(prior_images[idx].float()), noise))
                (ma, na), (mb, nb) = ends
                u_K, noise = [], [[] for _ in range(self.K)]
                for w in weights:
                    u_K.append((1 - w) * ma + w * mb + self.delta
                               * slerp(na[0], nb[0], float(w)).to(device))
                    for j in range(1, self.K):
                        noise[j].append(slerp(na[j], nb[j], float(w)))
                noise = [torch.cat(z) for z in noise[1:]]
                out, frames = self.denoise(net, torch.cat(u_K), [None] + noise, frame_levels=set(levels))
                images.append(out)
                if levels:
                    trajs.append(torch.stack([frames[lv] for lv in levels], 1))
        else:
            shared_u = prior(1) if variant == "shared-prior" else None
            shared = [draw(1) for _ in range(self.K)] if variant == "shared-noise" else None
            done = 0
            while done < n:
                b = min(batch_size, n - done)
                u = shared_u.expand(b, -1, -1, -1).clone() if shared_u is not None else prior(b)
                # shared-noise: one sequence for all; otherwise drawn step by step from g
                noise = [None] + [z.expand(b, -1, -1, -1) for z in shared[1:]] if shared else None
                out, frames = self.denoise(net, u, noise, g, frame_levels=set(levels))
                images.append(out)
                if levels:
                    trajs.append(torch.stack([frames[lv] for lv in levels], 1))
                done += b
        return {
            "images": torch.cat(images).clamp(0, 1).float().cpu(),
            "trajectory": torch.cat(trajs).clamp(0, 1).float().cpu() if trajs else None,
            "levels": levels,
        }

    # ----------------------------------------------------------------- likelihood
    @torch.inference_mode()
    def nll(self, net: nn.Module, images: np.ndarray, *, seed: int = 0, batch_size: int = 64) -> dict:
        """Negative ELBO of uint8 NHWC test images in bits/dim, by two estimators in one pass
        (see :mod:`ihdm.metrics.nll`), each with its terms:

        * ``bpd_discrete`` (ours; also ``bits_per_dim`` and ``terms_bits_per_dim``, the keys
          every model's ``nll`` has): the images as they are, L_0 = −log P(x | ũ_1) under a
          Gaussian of std δ around μ_θ(ũ_1, 1) discretised to 256 bins.
        * ``bpd_dequantised`` (the authors' protocol; ``terms_bits_per_dim_dequantised``):
          every term on y = (255 u_0 + U(0,1))/256, L_0 = −log N(y; μ_θ(ũ_1, 1), δ² I) a
          density, plus the 8 bits/dim of the dequantisation (its own term).

        Terms (nats per image, averaged over the test images):
        * ``L_K``: KL(q(u_K|u_0) ‖ p(u_K)) bounded above for the KDE mixture prior by
          -log Σ_j (1/M) exp(-KL(q ‖ N(F(t_K)x_j, δ²I))) (a valid variational bound; the
          authors' bound with its optimal weights).
        * ``L_intermediate``: Σ_{k=2..K} L_{k-1}, every level evaluated (no sub-sampling),
          each with one draw ũ_k ~ q(u_k|u_0).
        Every level 1..K is counted exactly once (the authors' loop counts level 1 twice
        and level K never). The two estimators share the levels and the noise ε of each
        draw (and one network call on the stacked batch), so their difference is the
        protocol's, not sampling noise.
        """
        u_all = to_tensor(images)  # float NCHW in [0, 1]
        train_images = self._prior()
        device = next(net.parameters()).device
        g = torch.Generator(device="cpu").manual_seed(seed)
        g_deq = torch.Generator(device="cpu").manual_seed(seed + 1)  # keeps g's draws as before
        N_dims = int(np.prod(u_all.shape[1:]))
        s2, d2 = self.sigma**2, self.delta**2
        const = 0.5 * (s2 * N_dims / d2 - N_dims + 2 * N_dims * math.log(self.delta / self.sigma))
        centres = self.prior_mean(train_images.to(device).float()).flatten(1).double()  # (M, N)
        M = centres.shape[0]
        names = ("L_K", "L_intermediate", "L_0")
        totals = {"discrete": dict.fromkeys(names, 0.0), "dequantised": dict.fromkeys(names, 0.0)}
        for start in range(0, u_all.shape[0], batch_size):
            u0 = u_all[start : start + batch_size].to(device)
            y = dequantise(u0, g_deq)
            B = u0.shape[0]
            both = torch.cat([u0, y])  # (2B, ...): the discrete half, then the dequantised
            # L_K: Gaussian-to-mixture KL bound
            mK = self.blur(both, self.K).flatten(1).double()
            kl = const + torch.cdist(mK, centres).pow(2) / (2 * d2)  # (2B, M)
            L_K = -(torch.logsumexp(-kl, dim=1) - math.log(M))
            for key, part in zip(totals, L_K.split(B)):
                totals[key]["L_K"] += float(part.sum())
            # intermediate terms and L_0
            for k in range(1, self.K + 1):
                kk = torch.full((2 * B,), k, device=device, dtype=torch.long)
                u_k, u_km1 = self.operator(both).blur_pair(both, kk)
                eps = torch.randn((B, *u_k.shape[1:]), generator=g).to(device)
                noisy = u_k + self.sigma * torch.cat([eps, eps])
                mu = noisy + net(noisy, kk).float()
                if k >= 2:
                    sq = (mu - u_km1).pow(2).flatten(1).sum(1).double()
                    for key, part in zip(totals, (const + sq / (2 * d2)).split(B)):
                        totals[key]["L_intermediate"] += float(part.sum())
                else:
                    log_scale = math.log(self.delta)
                    ll = discretized_gaussian_log_likelihood(u0, mean=mu[:B], log_scale=log_scale)
                    totals["discrete"]["L_0"] += float(-ll.double().sum())
                    ll = gaussian_log_density(y.double(), mu[B:].double(), log_scale)
                    totals["dequantised"]["L_0"] += float(-ll.sum())
        n_img = u_all.shape[0]
        to_bits = N_dims * math.log(2)
        nats = {key: {t: v / n_img for t, v in terms.items()} for key, terms in totals.items()}
        bits = {key: {t: v / to_bits for t, v in terms.items()} for key, terms in nats.items()}
        bits["dequantised"]["dequantisation"] = math.log2(N_BINS)
        bpd = {key: sum(terms.values()) for key, terms in bits.items()}
        return {
            "bits_per_dim": bpd["discrete"],  # = bpd_discrete (the key every model reports)
            "bpd_discrete": bpd["discrete"],
            "bpd_dequantised": bpd["dequantised"],
            "nats_per_image": sum(nats["discrete"].values()),
            "terms_nats_per_image": nats["discrete"],
            "terms_bits_per_dim": bits["discrete"],
            "terms_nats_per_image_dequantised": nats["dequantised"],
            "terms_bits_per_dim_dequantised": bits["dequantised"],
            "n_images": n_img,
            "n_dims": N_dims,
            "n_prior_images": M,
        }
