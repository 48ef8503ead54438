"""The standard diffusion baseline (Ho et al. 2020, "DDPM") on the same U-Net as IHDM.

Notation (0-indexed timesteps, as the network sees them): ``t = 0..T-1``, ``beta_t`` the
noise schedule, ``alpha_t = 1 - beta_t``, ``alpha_bar_t = prod_{s<=t} alpha_s``.
Forward marginal ``q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)``; the network
predicts the noise ``eps`` from ``(x_t, t)``.

Data convention: the public API takes and returns images in [0, 1] (float32 NCHW); inside,
the model works on ``x = 2u - 1`` in [-1, 1] (Ho et al.'s scaling). :meth:`DDPM.q_sample`
works on the internal [-1, 1] scale.

Samplers: ancestral (the reverse Markov chain with the posterior variance
``beta_tilde_t``, no noise on the last step) and DDIM (Song et al. 2021) on a sub-sequence of
``ddim_steps`` timesteps with stochasticity ``eta``; DDIM with all T steps and ``eta = 1`` is
the ancestral chain. Same seed, n and batch size give the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .metrics.nll import PairedBound, gaussian_kl
from .noise import net_device, randn as _randn, slerp, to_data, to_model

# What the package, the workflow and the tests know of this model (read from the source,
# without importing it, by ihdm.provenance.models)
MODEL = "ddpm"
VARIANTS = ("random", "shared-prior", "shared-noise", "interpolate")
#: the config keys that shape the trained weights (the sampler's keys do not); ddpm.unet
#: holds DDPM's own network keys (beside the common `unet`, whose other keys it inherits)
TRAINING_KEYS = ("ddpm.T", "ddpm.schedule", "ddpm.beta_start", "ddpm.beta_end", "ddpm.unet")
#: the config keys read by sampling and scoring but not by training
SAMPLING_KEYS = ("ddpm.sampler", "ddpm.ddim_steps", "ddpm.ddim_eta")
#: the model's own config keys behind its NLL (the bound's timestep stride)
NLL_KEYS = ("evaluate.ddpm_nll_t_stride",)
#: the analogues of IHDM's emergent-property variants: one start noise x_T for all samples,
#: or one sequence of sampler noises for all (a stochastic sampler either way)
SHARED_VARIANTS = ("shared-prior", "shared-noise")
SAMPLERS = ("ancestral", "ddim")
#: seeds of the noise pairs behind interpolation row r: seed * ROW_SEED_STRIDE + r
ROW_SEED_STRIDE = 100003


def linear_betas(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Ho et al.'s schedule: beta_t evenly spaced from beta_start to beta_end (float64)."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's schedule: alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) pi/2), betas clipped at 0.999."""
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return torch.clamp(1 - alpha_bar[1:] / alpha_bar[:-1], max=max_beta)


class DDPM:
    """Noise schedule, epsilon-prediction loss, ancestral/DDIM samplers and the variational bound."""

    name = MODEL
    variants = VARIANTS
    uses_training_images = False

    def __init__(
        self,
        T: int = 1000,
        schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        ddim_steps: int = 100,
        ddim_eta: float = 0.0,
        sampler: str = "ddim",
        interpolation_frames: int = 9,
        nll_t_stride: int = 1,
    ) -> None:
        if T < 1:
            raise ValueError(f"ddpm.T must be at least 1, got {T}")
        if schedule == "linear":
            if not 0 < beta_start <= beta_end < 1:
                raise ValueError(
                    f"ddpm.beta_start/beta_end must satisfy 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}"
                )
            betas = linear_betas(T, beta_start, beta_end)
        elif schedule == "cosine":
            betas = cosine_betas(T)
        else:
            raise ValueError(f"ddpm.schedule must be 'linear' or 'cosine', got {schedule!r}")
        if ddim_steps < 1:
            raise ValueError(f"ddpm.ddim_steps must be at least 1, got {ddim_steps}")
        if ddim_eta < 0:
            raise ValueError(f"ddpm.ddim_eta must be >= 0, got {ddim_eta}")
        if sampler not in SAMPLERS:
            raise ValueError(f"ddpm.sampler must be one of {list(SAMPLERS)}, got {sampler!r}")
        self.sampler, self.interpolation_frames = sampler, int(interpolation_frames)
        self.nll_t_stride = int(nll_t_stride)
        self.T, self.schedule = T, schedule
        self.ddim_steps, self.ddim_eta = min(int(ddim_steps), T), float(ddim_eta)  # > T means all T steps
        # float64 on the CPU; gathered and cast per use.
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alpha_bar = torch.cumprod(self.alphas, 0)
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        # Posterior q(x_{t-1} | x_t, x_0) = N(c0 x_0 + ct x_t, beta_tilde_t).
        self.beta_tilde = betas * (1 - self.alpha_bar_prev) / (1 - self.alpha_bar)
        self.posterior_c0 = betas * torch.sqrt(self.alpha_bar_prev) / (1 - self.alpha_bar)
        self.posterior_ct = torch.sqrt(self.alphas) * (1 - self.alpha_bar_prev) / (1 - self.alpha_bar)
        self._tables: dict[tuple, torch.Tensor] = {}

    @classmethod
    def from_config(cls, cfg: dict[str, Any], *, prior_images: np.ndarray | None = None) -> "DDPM":
        """Build from the full config (its ``ddpm`` section, sample.interpolation_frames and
        evaluate.ddpm_nll_t_stride) or from the ``ddpm`` section itself. DDPM has no use for
        ``prior_images`` (the interface's training images); ``ddpm.unet`` is the network's
        (:func:`ihdm.unet.build_unet`), not the process's."""
        section = dict(cfg.get("ddpm", cfg))
        section.pop("unet", None)
        known = {"T", "schedule", "beta_start", "beta_end", "ddim_steps", "ddim_eta", "sampler"}
        unknown = set(section) - known
        if unknown:
            raise ValueError(f"unknown key(s) in section 'ddpm': {sorted(unknown)}")
        if "ddpm" in cfg:
            section["interpolation_frames"] = cfg.get("sample", {}).get("interpolation_frames", 9)
            section["nll_t_stride"] = cfg.get("evaluate", {}).get("ddpm_nll_t_stride", 1)
        return cls(**section)

    def sampler_description(self, sampler: str | None = None, steps: int | None = None,
                            eta: float | None = None) -> str:
        """What draws the samples (ddpm.sampler and its steps unless given), for sample
        files, figures and tables."""
        sampler = self.sampler if sampler is None else sampler
        if sampler == "ancestral":
            return f"DDPM ancestral, all T={self.T} steps"
        steps = self.ddim_steps if steps is None else min(int(steps), self.T)
        eta = self.ddim_eta if eta is None else eta
        return f"DDIM, {steps} of T={self.T} steps, η={eta:g}"

    # ----------------------------------------------------------------- helpers
    to_model = staticmethod(to_model)
    to_data = staticmethod(to_data)

    def _gather(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] shaped (B, 1, 1, ...) to broadcast against ``like`` (tables cached per device/dtype)."""
        key = (id(values), like.device, like.dtype)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = values.to(device=like.device, dtype=like.dtype)
        return table[t.to(like.device)].reshape(-1, *([1] * (like.dim() - 1)))

    def _check_t(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.long)
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.T):
            raise ValueError(f"DDPM timesteps must lie in 0..{self.T - 1}, got [{int(t.min())}, {int(t.max())}]")
        return t

    # ----------------------------------------------------------------- forward process and loss
    def q_sample(
        self,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x0, (1 - alpha_bar_t) I); x0 in [-1, 1]."""
        t = self._check_t(t)
        if t.dim() == 0:
            t = t.expand(x0.shape[0])
        if noise is None:
            noise = _randn(x0.shape, generator, x0)
        ab = self._gather(self.alpha_bar, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def loss(
        self, net: nn.Module, u0: torch.Tensor, generator: torch.Generator | None = None, shard: slice | None = None
    ) -> torch.Tensor:
        """Ho et al.'s simple loss: MSE between eps and net(x_t, t), mean over pixels and batch; t ~ U{0..T-1}.
        With ``shard`` (data-parallel training) t and eps are drawn for the whole batch and only the
        shard goes through the network."""
        if u0.dim() != 4:
            raise ValueError(f"DDPM.loss expects u0 of shape (B, C, H, W), got {tuple(u0.shape)}")
        x0 = self.to_model(u0)
        gen_device = generator.device if generator is not None else x0.device
        t = torch.randint(0, self.T, (x0.shape[0],), generator=generator, device=gen_device).to(x0.device)
        eps = _randn(x0.shape, generator, x0)
        ab = self._gather(self.alpha_bar, t, x0)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps  # q_sample without its host-side range check
        if shard is not None:
            x_t, t, eps = x_t[shard], t[shard], eps[shard]
        return torch.mean((net(x_t, t) - eps) ** 2)

    @torch.inference_mode()
    def network_io(self, net: nn.Module, u0: torch.Tensor, fraction: float,
                   generator: torch.Generator | None = None) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(t, x_t, eps_theta(x_t, t)) at the step t = round(fraction · (T-1)), x_t ~ q(x_t | x_0)
        on the [-1, 1] scale: what the network sees and returns there (ihdm.metrics.emergent)."""
        t = min(self.T - 1, max(0, round(fraction * (self.T - 1))))
        x0 = self.to_model(u0)
        x_t = self.q_sample(x0, torch.tensor(t), noise=_randn(x0.shape, generator, x0))
        tt = torch.full((u0.shape[0],), t, device=u0.device, dtype=torch.long)
        return t, x_t, net(x_t, tt).float()

    # ----------------------------------------------------------------- reverse process
    def predict_x0(
        self, net: nn.Module, x_t: torch.Tensor, t: int, clip_denoised: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0_hat, eps_hat) from the network at integer timestep ``t``; with clipping, eps is recomputed
        from the clipped x0 so that the pair stays consistent with x_t."""
        tt = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
        eps = net(x_t, tt).to(x_t.dtype)
        ab = float(self.alpha_bar[t])
        x0 = (x_t - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
            eps = (x_t - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
        return x0, eps

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, float]:
        """Mean and variance of q(x_{t-1} | x_t, x_0)."""
        mean = float(self.posterior_c0[t]) * x0 + float(self.posterior_ct[t]) * x_t
        return mean, float(self.beta_tilde[t])

    def ddim_timesteps(self, steps: int) -> list[int]:
        """Descending sub-sequence of ``steps`` timesteps from T-1 to 0 (all T when steps == T)."""
        if not 1 <= steps <= self.T:
            raise ValueError(f"DDIM steps must be in 1..T={self.T}, got {steps}")
        ts = np.unique(np.round(np.linspace(0, self.T - 1, steps)).astype(int))
        return [int(t) for t in ts[::-1]]

    def _ancestral(
        self, net: nn.Module, x: torch.Tensor, gen: torch.Generator, frames: list[int], clip: bool,
        noise: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The reverse chain over all T steps; ``noise`` (one (1, C, H, W) tensor per step), if
        given, replaces the draws from ``gen`` for every sample alike."""
        saved = [self.to_data(x).cpu()] if 0 in frames else []
        for i, t in enumerate(range(self.T - 1, -1, -1), start=1):
            x0, _ = self.predict_x0(net, x, t, clip)
            mean, var = self.q_posterior(x0, x, t)
            z = noise[i - 1].to(x).expand_as(x) if noise is not None else None
            if t > 0:
                x = mean + math.sqrt(var) * (z if z is not None else _randn(x.shape, gen, x))
            else:
                x = mean
            if i in frames:
                saved.append(self.to_data(x).cpu())
        return x, saved

    def _ddim(
        self,
        net: nn.Module,
        x: torch.Tensor,
        gen: torch.Generator,
        frames: list[int],
        clip: bool,
        steps: int,
        eta: float,
        noise: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        ts = self.ddim_timesteps(steps)
        saved = [self.to_data(x).cpu()] if 0 in frames else []
        for i, t in enumerate(ts, start=1):
            t_prev = ts[i] if i < len(ts) else -1
            ab = float(self.alpha_bar[t])
            ab_prev = float(self.alpha_bar[t_prev]) if t_prev >= 0 else 1.0
            x0, eps = self.predict_x0(net, x, t, clip)
            sigma = eta * math.sqrt(max((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev), 0.0))
            x = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps
            if sigma > 0:
                z = noise[i - 1].to(x).expand_as(x) if noise is not None else _randn(x.shape, gen, x)
                x = x + sigma * z
            if i in frames:
                saved.append(self.to_data(x).cpu())
        return x, saved

    @staticmethod
    def interpolation_noise(shape: Sequence[int], frames: int, seed: int) -> torch.Tensor:
        """(frames, C, H, W) start noises on the great circle between two noises drawn with
        ``seed`` (slerp), the input of a DDIM interpolation row."""
        gen = torch.Generator().manual_seed(int(seed))
        ends = torch.randn((2, *shape), generator=gen)
        return torch.cat([slerp(ends[:1], ends[1:], float(w)) for w in torch.linspace(0, 1, frames)])

    @torch.inference_mode()
    def sample(
        self,
        net: nn.Module,
        n: int,
        shape: Sequence[int],
        seed: int = 0,
        variant: str = "random",
        trajectory_frames: int = 0,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        eta: float | None = None,
        clip_denoised: bool = True,
        x_T: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """Draw ``n`` images of ``shape`` (C, H, W) in [0, 1].

        ``variant``: "random" (independent samples); "shared-prior" (one start noise x_T for
        all, the sampler's noise drawn per sample) or "shared-noise" (x_T per sample, one
        sequence of sampler noises for all), the analogues of IHDM's variants, run with
        eta = 1 when the DDIM sampler's eta is 0; or "interpolate" (``n`` rows of
        ``interpolation_frames`` images of deterministic DDIM, eta = 0, from spherically
        interpolated noise between two noise states; row r's are drawn with seed
        ``seed * ROW_SEED_STRIDE + r``; no trajectory). ``sampler``: "ddim" (``steps``/``eta``
        default to ddpm.ddim_steps/ddim_eta) or "ancestral" (all T steps); default the
        config's ddpm.sampler. ``trajectory_frames`` F > 0 also returns (n, F, C, H, W) states
        x_t in [0, 1], evenly spaced from the start noise to the final image.
        ``x_T`` (n, C, H, W), if given, is the start noise; ``seed`` then only drives the
        sampler's own noise (none for DDIM at eta = 0).
        Returns {"images": (N, C, H, W) CPU float32, "trajectory": tensor or None, "levels"}.
        """
        if variant == "interpolate" and sampler not in (None, "ddim"):
            raise ValueError("variant 'interpolate' runs deterministic DDIM; use sampler='ddim'")
        sampler = self.sampler if sampler is None else sampler
        if variant not in VARIANTS:
            raise ValueError(f"unknown sample variant {variant!r}; DDPM supports {list(VARIANTS)}")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {list(SAMPLERS)}")
        if variant == "interpolate" and x_T is None:
            # n rows of interpolation_frames images, all rows in one batched DDIM run
            frames = self.interpolation_frames
            x_T = torch.cat([self.interpolation_noise(shape, frames, seed * ROW_SEED_STRIDE + r)
                             for r in range(n)])
            result = self.sample(net, n * frames, shape, seed=seed, variant="interpolate",
                                 batch_size=batch_size, device=device, sampler="ddim", steps=steps,
                                 clip_denoised=clip_denoised, x_T=x_T)
            return {**result, "trajectory": None, "levels": []}
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3:
            raise ValueError(f"shape must be (C, H, W), got {shape}")
        if trajectory_frames < 0:
            raise ValueError(f"trajectory_frames must be >= 0, got {trajectory_frames}")
        steps = self.ddim_steps if steps is None else int(steps)
        eta = self.ddim_eta if eta is None else float(eta)
        if variant == "interpolate":
            eta = 0.0
        device = torch.device(device) if device is not None else net_device(net)
        batch_size = n if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")

        n_states = (self.T if sampler == "ancestral" else len(self.ddim_timesteps(steps))) + 1
        frames: list[int] = []
        if trajectory_frames:
            frames = sorted({int(round(i)) for i in np.linspace(0, n_states - 1, trajectory_frames)})
            if trajectory_frames == 1:
                frames = [n_states - 1]

        gen = torch.Generator().manual_seed(int(seed))
        shared_noise = None
        if variant in SHARED_VARIANTS:
            # DDIM at eta = 0 is deterministic given x_T: the analogue needs sampler noise
            eta = eta if sampler == "ancestral" or eta > 0 else 1.0
            if x_T is None and variant == "shared-prior":
                x_T = torch.randn((1, *shape), generator=gen).expand(n, *shape)
            if variant == "shared-noise":
                n_steps = self.T if sampler == "ancestral" else len(self.ddim_timesteps(steps))
                shared_noise = [torch.randn((1, *shape), generator=gen) for _ in range(n_steps)]
        if x_T is not None:
            if tuple(x_T.shape) != (n, *shape):
                raise ValueError(f"x_T must have shape {(n, *shape)}, got {tuple(x_T.shape)}")
            x_T_all: torch.Tensor | None = x_T.float().cpu()
        else:
            x_T_all = None

        was_training = net.training
        net.eval()
        images, trajectories = [], []
        try:
            for start in range(0, n, batch_size):
                b = min(batch_size, n - start)
                if x_T_all is not None:
                    x = x_T_all[start : start + b].to(device)
                else:
                    x = torch.randn((b, *shape), generator=gen).to(device)
                if sampler == "ancestral":
                    x, saved = self._ancestral(net, x, gen, frames, clip_denoised, shared_noise)
                else:
                    x, saved = self._ddim(net, x, gen, frames, clip_denoised, steps, eta, shared_noise)
                images.append(self.to_data(x).float().cpu())
                if frames:
                    trajectories.append(torch.stack(saved, dim=1).float())
        finally:
            net.train(was_training)
        trajectory = torch.cat(trajectories) if frames else None
        if trajectory is not None and trajectory.shape[1] != trajectory_frames:
            # fewer distinct states than requested frames: repeat the nearest ones
            idx = torch.round(torch.linspace(0, trajectory.shape[1] - 1, trajectory_frames)).long()
            trajectory = trajectory[:, idx]
        return {"images": torch.cat(images), "trajectory": trajectory, "levels": [],
                "sampler": self.sampler_description(sampler, steps, eta)}

    # ----------------------------------------------------------------- likelihood
    def nll(self, net: nn.Module, images: np.ndarray, *, seed: int = 0, batch_size: int = 64) -> dict:
        """The variational bound of uint8 NHWC test images in bits/dim by both estimators
        (:meth:`nll_bits_per_dim`), with the keys shared by every model's ``nll``
        ("bits_per_dim" = "bpd_discrete", "bpd_dequantised", "terms_bits_per_dim",
        "terms_bits_per_dim_dequantised", "n_images", "n_dims") beside DDPM's own; every
        ``evaluate.ddpm_nll_t_stride``-th term (unbiased)."""
        out = self.nll_bits_per_dim(net, images, batch_size=batch_size, t_stride=self.nll_t_stride,
                                    seed=seed)
        out["terms_bits_per_dim"] = {"L_T": out["prior_bpd"], "L_intermediate": out["diffusion_bpd"],
                                     "L_0": out["decoder_bpd"]}
        return out

    @torch.inference_mode()
    def nll_bits_per_dim(
        self,
        net: nn.Module,
        u0: torch.Tensor | np.ndarray,
        batch_size: int = 64,
        t_stride: int = 1,
        seed: int = 0,
        device: str | torch.device | None = None,
        t_offset: int | None = None,
    ) -> dict[str, Any]:
        """DDPM's variational bound L_T + sum_{t=1}^{T-1} L_{t-1} + L_0 in bits per dimension,
        by two estimators in one pass (:mod:`ihdm.metrics.nll`).

        ``u0``: uint8 images NHWC (the on-disk convention) or float NCHW in [0, 1] (snapped to the
        8-bit grid). L_T = KL(q(x_T|x_0) || N(0, I)); L_{t-1} = KL(q(x_{t-1}|x_t, x_0) ||
        p(x_{t-1}|x_t)) with p's variance the posterior variance beta_tilde_t (the sampler's) and
        one draw x_t ~ q(x_t|x_0) per image and t; the decoder p(x_0|x_1) is a Gaussian around
        the predicted x_0 with variance beta_tilde at t=1 (Ho et al.'s fixed-small convention).

        * discrete (``bits_per_dim`` = ``bpd_discrete``; ``prior_bpd``, ``diffusion_bpd``,
          ``decoder_bpd``): x_0 = 2u - 1 on the 8-bit grid, L_0 the decoder's mass of the
          pixel's bin (Ho et al.'s). bits/dim = nats/(N ln 2).
        * dequantised (``bpd_dequantised``, ``terms_bits_per_dim_dequantised``): every term on
          x_0 = 2y - 1 with y = (255u + U(0,1))/256, the IHDM authors' protocol; L_0 the
          decoder's density. The density of y in [0, 1) is the density of x_0 times 2 per
          dimension (dx/dy = 2), so L_0 on y's scale is -log p(x_0|x_1) - N ln 2; the KL
          terms do not change under the rescaling. Then, as for IHDM, bits/dim =
          nats/(N ln 2) + 8 (the dequantisation term). A valid bound on the same discrete NLL
          as the discrete one, not the same number: the decoder's std (sqrt(beta_tilde_1),
          about one 8-bit step on [0, 1]) makes its density over a bin lower than the
          discrete mass at the open edge bins 0 and 255.

        ``t_stride`` > 1 evaluates every ``t_stride``-th L_{t-1}, t = 1 + offset + j t_stride, and
        weights it by ``t_stride``; with ``t_offset`` None the offset is drawn uniformly per batch,
        which makes it an unbiased estimate with about T/t_stride network calls per image. Both
        estimators share the offsets and the noise of each draw.
        Returns {"bits_per_dim", "bpd_discrete", "bpd_dequantised", "prior_bpd", "diffusion_bpd",
        "decoder_bpd", "terms_bits_per_dim_dequantised", "n_images", "n_dims", "t_stride", "T"}.
        """
        if t_stride < 1:
            raise ValueError(f"t_stride must be at least 1, got {t_stride}")
        if t_offset is not None and not 0 <= t_offset < t_stride:
            raise ValueError(f"t_offset must be in 0..t_stride-1={t_stride - 1}, got {t_offset}")
        u = _as_unit_nchw(u0)
        device = torch.device(device) if device is not None else net_device(net)
        gen = torch.Generator().manual_seed(int(seed))
        n, n_dims = u.shape[0], int(np.prod(u.shape[1:]))
        T = self.T
        dec_var = float(self.beta_tilde[1]) if T > 1 else float(self.betas[0])
        bound = PairedBound(("L_T", "L_intermediate", "L_0"), seed)
        was_training = net.training
        net.eval()
        try:
            for u_b, pair in bound.batches(u, batch_size, device):
                x0 = self.to_model(pair)  # the discrete half, then the dequantised half
                x0_64 = x0.double()
                # L_T: prior KL
                ab_T = float(self.alpha_bar[T - 1])
                bound.add("L_T", gaussian_kl(math.sqrt(ab_T) * x0_64, math.log(1 - ab_T),
                                             torch.zeros_like(x0_64), 0.0))
                # L_{t-1}, t = 1..T-1
                if t_offset is not None:
                    offset = t_offset
                else:
                    offset = int(torch.randint(0, t_stride, (1,), generator=gen)) if t_stride > 1 else 0
                for t in range(1 + offset, T, t_stride):
                    x_t = self.q_sample(x0, torch.tensor(t), noise=_shared_randn(x0, gen))
                    x0_hat, _ = self.predict_x0(net, x_t, t, clip_denoised=False)
                    mean_q, var = self.q_posterior(x0_64, x_t.double(), t)
                    mean_p, _ = self.q_posterior(x0_hat.double(), x_t.double(), t)
                    bound.add("L_intermediate", gaussian_kl(mean_q, math.log(var), mean_p, math.log(var)), t_stride)
                # L_0 at t = 0: the discretised decoder and the decoder's density
                x_1 = self.q_sample(x0, torch.tensor(0), noise=_shared_randn(x0, gen))
                x0_hat, _ = self.predict_x0(net, x_1, 0, clip_denoised=False)
                bound.add_decoder("L_0", u_b, x0_64, x0_hat, dec_var)
        finally:
            net.train(was_training)
        bits = bound.bits(n, n_dims)
        out: dict[str, Any] = {f"{name}_bpd": bits["discrete"][term]
                               for name, term in (("prior", "L_T"), ("diffusion", "L_intermediate"),
                                                  ("decoder", "L_0"))}
        out["bits_per_dim"] = out["prior_bpd"] + out["diffusion_bpd"] + out["decoder_bpd"]
        out["bpd_discrete"] = out["bits_per_dim"]
        out["terms_bits_per_dim_dequantised"] = bits["dequantised"]
        out["bpd_dequantised"] = sum(bits["dequantised"].values())
        out.update({"n_images": n, "n_dims": n_dims, "t_stride": t_stride, "T": T})
        return out


def _shared_randn(x0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One noise draw for the first half of the batch ``x0``, used for both halves (the
    discrete and the dequantised images share it)."""
    half = _randn((x0.shape[0] // 2, *x0.shape[1:]), generator, x0)
    return torch.cat([half, half])




def _as_unit_nchw(u0: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 NHWC (array or tensor) or float NCHW in [0, 1] -> float32 NCHW on the 8-bit grid."""
    u = torch.as_tensor(np.asarray(u0)) if isinstance(u0, np.ndarray) else u0
    if u.dim() != 4:
        raise ValueError(f"images must be 4-D (uint8 NHWC or float NCHW), got shape {tuple(u.shape)}")
    if u.dtype == torch.uint8:
        return u.permute(0, 3, 1, 2).float().div(255.0)
    if not torch.is_floating_point(u):
        raise ValueError(f"images must be uint8 NHWC or float NCHW in [0, 1], got dtype {u.dtype}")
    if float(u.min()) < 0 or float(u.max()) > 1:
        raise ValueError(
            f"float images must lie in [0, 1], got range [{float(u.min()):.4g}, {float(u.max()):.4g}]"
        )
    return torch.round(u.float() * 255.0) / 255.0
