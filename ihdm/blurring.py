"""Blurring diffusion (Hoogeboom & Salimans, "Blurring Diffusion Models", ICLR 2023,
arXiv 2209.05557) on the same U-Net and training loop as IHDM and DDPM.

The process is a Gaussian diffusion that is diagonal in the eigenbasis of the heat
equation: with u = Vᵀx the orthonormal 2-D DCT-II of each channel (:func:`ihdm.heat.dct_matrix`,
the basis of :mod:`ihdm.heat`) and λ the Neumann Laplacian eigenvalues
π²(n²/H² + m²/W²), every frequency has its own signal scale and a shared noise level.
What is implemented, as the paper states it (its section on blurring diffusion models and
the pseudo-code of its appendix; only excerpts of the text were at hand here, so the
equations are named by their content, not by their numbers):

* forward marginal: q(u_t | u_0) = N(α_t ⊙ u_0, σ_t² I),  α_t = a_t · d_t,
  d_t = (1 − d_min) · exp(−λ τ_t) + d_min, where the minimum scale d_min keeps every
  frequency's signal from vanishing (``blurring.min_scale``, 0.001 in the paper);
* blur schedule: σ_B(t) = σ_B,max · sin²(π t / 2), a Gaussian blur of that length scale,
  i.e. heat time τ_t = σ_B(t)² / 2 (as t_k = σ_B,k²/2 in IHDM), reaching σ_B,max at t = 1
  (``blurring.blur_sigma_max``, 20 at CIFAR-10). Note: τ_t ∝ sin⁴, not sin²;
* noise schedule: the cosine schedule a_t = cos θ_t, σ_t = sin θ_t, θ_t linear in t
  between the angles of the clipped log-SNR range [logsnr_min, logsnr_max] = [−10, 10]
  (log SNR = −2 log tan θ); unclipped it is a_t = cos(π t / 2);
* transitions and posterior, per frequency, for s < t:
  α_{t|s} = α_t / α_s,  σ²_{t|s} = σ_t² − α²_{t|s} σ_s²,
  q(u_s | u_t, u_0) = N(μ_{t→s}, σ²_{t→s}),  σ²_{t→s} = σ²_{t|s} σ_s² / σ_t²,
  μ_{t→s} = (α_{t|s} σ_s² / σ_t²) u_t + (α_s σ²_{t|s} / σ_t²) u_0
  (σ²_{t|s} ≥ 0 because d_t ≤ d_s: the blur only grows);
* ε-parametrisation: the network predicts ε in pixel space (the DCT of
  white noise is white noise), û_0 = (u_t − σ_t ε̂) / α_t, so that
  μ_{t→s} = u_t / α_{t|s} − σ²_{t|s} / (α_{t|s} σ_t) · ε̂  (no division by the tiny α_t);
  the loss is ‖ε − ε̂(x_t, t)‖² (mean over pixels and batch), as DDPM's.

Time is discretised as t_i = i / T, i = 1..T (latent levels; the network sees the
integer i), and level 0 is the data itself (α_0 = 1, σ_0 = 0), so that the posterior of
the last step is the point û_0 and the variational bound has DDPM's form:
L_T + Σ_{i=2..T} L_{i−1} + L_0 (see :meth:`BlurringDiffusion.nll`).

Samplers: ``ancestral`` (the paper's: the posterior above with û_0 from ε̂, on a
sub-sequence of ``blurring.sample_steps`` levels; all T by default) and ``ddim`` (not in
the paper: DDIM's deterministic update u_s = α_s û_0 + σ_s ε̂ applied per frequency, used
for the interpolation variant). Ours, for few steps (see :meth:`BlurringDiffusion.step`,
:meth:`BlurringDiffusion.levels`): the predicted clean image blurred to the next level
is clamped to the data range (``blurring.clip_denoised``, DDPM's clipping generalised),
and the levels of a short chain are spaced by the change of log α, not evenly. Images are on DDPM's scale x = 2u − 1 inside; the public
API takes and returns [0, 1].

Variants: ``random``, ``interpolate`` and the analogues of IHDM's emergent-property
variants, as for DDPM: ``shared-prior`` (one start state u_T for all samples) and
``shared-noise`` (one sequence of the ancestral sampler's noises for all). The start state
carries almost no image content (a_T ≈ 0.0067 at log SNR −10), unlike IHDM's blurred u_K.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .config import ConfigError
from .data import to_tensor
from .heat import dct_matrix, eigenvalues
from .metrics.nll import PairedBound
from .noise import net_device, randn as _randn, slerp, to_data, to_model

# What the package, the workflow and the tests know of this model (read from the source,
# without importing it, by ihdm.provenance.models)
MODEL = "blurring"
VARIANTS = ("random", "shared-prior", "shared-noise", "interpolate")
#: the config keys that shape the trained weights
TRAINING_KEYS = ("blurring.T", "blurring.blur_sigma_max", "blurring.min_scale",
                 "blurring.logsnr_min", "blurring.logsnr_max")
#: the config keys read by sampling and scoring but not by training
SAMPLING_KEYS = ("blurring.sampler", "blurring.sample_steps", "blurring.clip_denoised")
#: the model's own config keys behind its NLL (the bound's level stride)
NLL_KEYS = ("evaluate.blurring_nll_t_stride",)
SAMPLERS = ("ancestral", "ddim")
#: seeds of the noise pairs behind interpolation row r: seed * ROW_SEED_STRIDE + r
ROW_SEED_STRIDE = 100019


# --------------------------------------------------------------------------- schedules
def cosine_angles(t, logsnr_min: float = -10.0, logsnr_max: float = 10.0) -> np.ndarray:
    """θ_t of the clipped cosine schedule (a_t = cos θ_t, σ_t = sin θ_t): linear in t from
    the angle of log SNR = logsnr_max at t = 0 to that of logsnr_min at t = 1."""
    if not logsnr_min < logsnr_max:
        raise ValueError(f"need blurring.logsnr_min < blurring.logsnr_max, got {logsnr_min}, {logsnr_max}")
    lo = math.atan(math.exp(-0.5 * logsnr_max))
    hi = math.atan(math.exp(-0.5 * logsnr_min))
    return lo + (hi - lo) * np.asarray(t, dtype=np.float64)


def noise_schedule(t, logsnr_min: float = -10.0, logsnr_max: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """(a_t, σ_t) of the cosine schedule at times t ∈ [0, 1] (float64, a² + σ² = 1)."""
    theta = cosine_angles(t, logsnr_min, logsnr_max)
    return np.cos(theta), np.sin(theta)


def blur_times(t, blur_sigma_max: float) -> np.ndarray:
    """Heat time τ_t = σ_B(t)²/2 with σ_B(t) = σ_B,max sin²(π t / 2)."""
    sigma_b = blur_sigma_max * np.sin(np.pi * np.asarray(t, dtype=np.float64) / 2) ** 2
    return sigma_b**2 / 2


def frequency_scaling(lam, tau, min_scale: float) -> np.ndarray:
    """d = (1 − d_min) exp(−λ τ) + d_min for every τ (leading axes) and eigenvalue λ."""
    return (1 - min_scale) * np.exp(-np.multiply.outer(np.asarray(tau, dtype=np.float64),
                                                       np.asarray(lam, dtype=np.float64))) + min_scale


class BlurringDiffusion:
    """Schedules, ε-prediction loss, ancestral and DDIM samplers and the variational bound
    of blurring diffusion for H×W images."""

    name = MODEL
    variants = VARIANTS
    uses_training_images = False

    def __init__(self, H: int, W: int, T: int = 1000, blur_sigma_max: float = 20.0,
                 min_scale: float = 0.001, logsnr_min: float = -10.0, logsnr_max: float = 10.0,
                 sampler: str = "ancestral", sample_steps: int = 1000, clip_denoised: bool = True,
                 interpolation_frames: int = 9, nll_t_stride: int = 1) -> None:
        if T < 1:
            raise ValueError(f"blurring.T must be at least 1, got {T}")
        if blur_sigma_max < 0:
            raise ValueError(f"blurring.blur_sigma_max must be >= 0, got {blur_sigma_max}")
        if not 0 < min_scale <= 1:
            raise ValueError(f"blurring.min_scale must lie in (0, 1], got {min_scale}")
        if sampler not in SAMPLERS:
            raise ValueError(f"blurring.sampler must be one of {list(SAMPLERS)}, got {sampler!r}")
        if sample_steps < 1:
            raise ValueError(f"blurring.sample_steps must be at least 1, got {sample_steps}")
        if nll_t_stride < 1:
            raise ValueError(f"evaluate.blurring_nll_t_stride must be at least 1, got {nll_t_stride}")
        self.H, self.W, self.T = int(H), int(W), int(T)
        self.blur_sigma_max, self.min_scale = float(blur_sigma_max), float(min_scale)
        self.sampler, self.sample_steps = sampler, min(int(sample_steps), self.T)
        self.clip_denoised = bool(clip_denoised)
        self.interpolation_frames, self.nll_t_stride = int(interpolation_frames), int(nll_t_stride)
        times = np.arange(T + 1) / T
        a, sigma = noise_schedule(times, logsnr_min, logsnr_max)
        a[0], sigma[0] = 1.0, 0.0  # level 0 is the data
        #: per level i = 0..T: a_i, σ_i and the heat time τ_i (float64)
        self.a, self.sigma, self.tau = a, sigma, blur_times(times, blur_sigma_max)
        #: Neumann Laplacian eigenvalue of each DCT coefficient, (H, W)
        self.lam = eigenvalues(self.H)[:, None] + eigenvalues(self.W)[None, :]
        self._dct: dict = {}
        self._distance: np.ndarray | None = None  # of :meth:`levels`

    @classmethod
    def from_config(cls, cfg: dict[str, Any], *, prior_images: np.ndarray | None = None) -> "BlurringDiffusion":
        """From the full config: its ``blurring`` section, data.resolution,
        sample.interpolation_frames and evaluate.blurring_nll_t_stride. Blurring diffusion
        has no use for ``prior_images``."""
        section = dict(cfg["blurring"])
        known = {"T", "blur_sigma_max", "min_scale", "logsnr_min", "logsnr_max", "sampler", "sample_steps",
                 "clip_denoised"}
        unknown = set(section) - known
        if unknown:
            raise ConfigError(f"unknown key(s) in section 'blurring': {sorted(unknown)}")
        res = cfg["data"]["resolution"]
        return cls(res, res, **section,
                   interpolation_frames=cfg["sample"]["interpolation_frames"],
                   nll_t_stride=cfg["evaluate"]["blurring_nll_t_stride"])

    # ----------------------------------------------------------------- scales and bases
    to_model = staticmethod(to_model)
    to_data = staticmethod(to_data)

    def alpha(self, i) -> np.ndarray:
        """α_i = a_i d_i per frequency for levels ``i`` (scalar or array): (..., H, W) float64."""
        i = np.asarray(i)
        d = frequency_scaling(self.lam, self.tau[i], self.min_scale)
        return self.a[i][..., None, None] * d

    def _bases(self, like: Tensor) -> tuple[Tensor, Tensor]:
        key = (like.device, like.dtype)
        if key not in self._dct:
            self._dct[key] = (dct_matrix(self.H, like.dtype, like.device),
                              dct_matrix(self.W, like.dtype, like.device))
        return self._dct[key]

    def dct(self, x: Tensor) -> Tensor:
        """u = Vᵀx: the orthonormal 2-D DCT-II of each channel, in x's dtype (never under
        bf16 autocast: the ε-parametrised steps divide by small α_{t|s})."""
        DH, DW = self._bases(x)
        with torch.autocast(x.device.type, enabled=False):
            return DH @ x @ DW.T

    def idct(self, u: Tensor) -> Tensor:
        """x = V u, the inverse of :meth:`dct`."""
        DH, DW = self._bases(u)
        with torch.autocast(u.device.type, enabled=False):
            return DH.T @ u @ DW

    def _table(self, values: np.ndarray, like: Tensor) -> Tensor:
        """float64 per-frequency values (H, W) or per-image (B, H, W) shaped to broadcast
        against ``like`` (B, C, H, W), in its dtype and device."""
        t = torch.as_tensor(values, dtype=like.dtype, device=like.device)
        return t.unsqueeze(-3) if t.dim() == 3 else t

    def _check_levels(self, i) -> np.ndarray:
        i = np.asarray(torch.as_tensor(i).cpu().numpy() if isinstance(i, Tensor) else i, dtype=np.int64)
        if i.size and (i.min() < 0 or i.max() > self.T):
            raise ValueError(f"blurring levels must lie in 0..{self.T}, got [{i.min()}, {i.max()}]")
        return i

    # ----------------------------------------------------------------- forward process and loss
    def q_sample(self, x0: Tensor, i, noise: Tensor) -> Tensor:
        """x_i ~ q(x_i | x_0) in pixel space: V(α_i ⊙ Vᵀx_0) + σ_i ε, with ``x0`` on the
        [-1, 1] scale and ``i`` one level or one per image."""
        i = self._check_levels(i)
        alpha = self._table(self.alpha(i), x0)
        sigma = torch.as_tensor(self.sigma[i], dtype=x0.dtype, device=x0.device)
        if sigma.dim() == 1:
            sigma = sigma.view(-1, 1, 1, 1)
        return self.idct(alpha * self.dct(x0)) + sigma * noise

    def loss(self, net: nn.Module, u0: Tensor, generator: torch.Generator | None = None,
             shard: slice | None = None) -> Tensor:
        """‖ε − ε̂(x_i, i)‖², mean over pixels and batch, i ~ U{1..T}. With ``shard``
        (data-parallel training) levels and noise are drawn for the whole batch and only
        the shard goes through the network."""
        if u0.dim() != 4:
            raise ValueError(f"BlurringDiffusion.loss expects u0 of shape (B, C, H, W), got {tuple(u0.shape)}")
        x0 = self.to_model(u0)
        gen_device = generator.device if generator is not None else x0.device
        i = torch.randint(1, self.T + 1, (x0.shape[0],), generator=generator, device=gen_device)
        eps = _randn(x0.shape, generator, x0)
        x_t = self.q_sample(x0, i, eps)
        i = i.to(x0.device)
        if shard is not None:
            x_t, i, eps = x_t[shard], i[shard], eps[shard]
        return torch.mean((net(x_t, i).float() - eps.float()) ** 2)

    def sampler_description(self, sampler: str | None = None, steps: int | None = None) -> str:
        """What draws the samples (blurring.sampler and its steps unless given), for sample
        files and tables."""
        sampler = self.sampler if sampler is None else sampler
        steps = self.sample_steps if steps is None else steps
        return f"blurring diffusion {sampler}, {steps} of T={self.T} steps"

    @torch.inference_mode()
    def network_io(self, net: nn.Module, u0: Tensor, fraction: float,
                   generator: torch.Generator | None = None) -> tuple[int, Tensor, Tensor]:
        """(i, x_i, ε̂(x_i, i)) at the level i = round(fraction · T) (at least 1), x_i ~
        q(x_i | x_0) on the [-1, 1] scale (ihdm.metrics.emergent)."""
        i = min(self.T, max(1, round(fraction * self.T)))
        x0 = self.to_model(u0)
        x_t = self.q_sample(x0, i, _randn(x0.shape, generator, x0))
        ii = torch.full((u0.shape[0],), i, device=u0.device, dtype=torch.long)
        return i, x_t, net(x_t, ii).float()

    # ----------------------------------------------------------------- posterior
    def posterior(self, t: int, s: int) -> dict[str, np.ndarray]:
        """Per-frequency coefficients (H, W) of the step from level t to level s < t:
        α_{t|s}, σ²_{t|s}, the posterior variance σ²_{t→s}, the coefficients of
        μ_{t→s} = c_t u_t + c_0 u_0, and of its ε-form μ = u_t/α_{t|s} − c_eps ε̂."""
        if not 0 <= s < t <= self.T:
            raise ValueError(f"need 0 <= s < t <= T={self.T}, got t={t}, s={s}")
        alpha_t, alpha_s = self.alpha(t), self.alpha(s)
        sig_t, sig_s = self.sigma[t], self.sigma[s]
        alpha_ts = alpha_t / alpha_s
        var_ts = np.maximum(sig_t**2 - alpha_ts**2 * sig_s**2, 0.0)
        return {
            "alpha_ts": alpha_ts,
            "var_ts": var_ts,
            "var": var_ts * sig_s**2 / sig_t**2,
            "c_t": alpha_ts * sig_s**2 / sig_t**2,
            "c_0": alpha_s * var_ts / sig_t**2,
            "c_eps": var_ts / (alpha_ts * sig_t),
        }

    def predict_eps(self, net: nn.Module, x_t: Tensor, i: int) -> Tensor:
        ii = torch.full((x_t.shape[0],), i, dtype=torch.long, device=x_t.device)
        return net(x_t, ii).to(x_t.dtype)

    def step(self, net: nn.Module, x_t: Tensor, t: int, s: int, sampler: str,
             generator: torch.Generator | None, clip: bool | None = None,
             z: Tensor | None = None) -> Tensor:
        """One reverse step from level t to s < t in pixel space ([-1, 1] scale), computed in
        float64. Without clipping, the ancestral mean is the ε-form of the posterior mean
        and DDIM's update u_s = α_s û_0 + σ_s ε̂. With clipping (``clip``, default
        blurring.clip_denoised), the prediction enters the step only as the predicted clean
        image blurred to level s, V(d_s ⊙ û_0), clamped to [-1, 1]: the heat equation (and
        its mix with the identity through d_min) keeps an image in its range, so this is
        DDPM's clipping of x̂_0 (d_0 = 1) carried to every level. It bounds what ε̂'s errors
        in frequencies erased at t but present at s (amplified by α_s/α_t) can inject.
        ``z``: the ancestral step's pixel-space noise (drawn from ``generator`` if None)."""
        clip = self.clip_denoised if clip is None else clip
        eps = self.predict_eps(net, x_t, t).double()
        x64 = x_t.double()
        u_t, eps_u = self.dct(x64), self.dct(eps)
        sig_t, sig_s = float(self.sigma[t]), float(self.sigma[s])
        if clip:
            d_s = self._table(self.alpha(s) / self.a[s], u_t)
            blurred = d_s * (u_t - sig_t * eps_u) / self._table(self.alpha(t), u_t)
            blurred = self.dct(self.idct(blurred).clamp(-1.0, 1.0))  # the clean image at level s
        if sampler == "ancestral":
            post = self.posterior(t, s)
            if clip:  # c_0 u_0 = (σ²_{t|s}/σ_t²) a_s (d_s ⊙ u_0)
                mean = self._table(post["c_t"], u_t) * u_t \
                    + self._table(post["var_ts"] / sig_t**2 * self.a[s], u_t) * blurred
            else:
                mean = u_t / self._table(post["alpha_ts"], u_t) - self._table(post["c_eps"], u_t) * eps_u
            if s > 0:
                z = _randn(x_t.shape, generator, x64) if z is None else z.to(x64).expand_as(x64)
                mean = mean + self._table(np.sqrt(post["var"]), u_t) * self.dct(z)
            return self.idct(mean).to(x_t.dtype)
        # DDIM, eta = 0: u_s = α_s û_0 + σ_s ε̂ with û_0 = (u_t − σ_t ε̂)/α_t
        if clip:  # ε recomputed from the clipped prediction, as DDPM's DDIM does from its clipped x̂_0
            d_ratio = self._table((self.alpha(t) / self.a[t]) / (self.alpha(s) / self.a[s]), u_t)  # d_t/d_s <= 1
            eps_u = (u_t - float(self.a[t]) * d_ratio * blurred) / sig_t
            u_s = float(self.a[s]) * blurred + sig_s * eps_u
        else:
            u_s = self._table(self.alpha(s) / self.alpha(t), u_t) * (u_t - sig_t * eps_u) + sig_s * eps_u
        return self.idct(u_s).to(x_t.dtype)

    def levels(self, steps: int) -> list[int]:
        """Descending levels T = l_0 > ... > l_steps = 0 visited by a sampler with ``steps``
        steps (all levels when steps = T). Fewer steps are spaced evenly in the cumulative
        largest per-frequency change of log α (ours): where the blur erases a band quickly the levels are dense, so that no step
        multiplies a frequency's scale by much more than the others do. Evenly spaced levels
        made steps of ×150 in α at 20 steps on 28 px digits, this spacing ×7.6."""
        if not 1 <= steps <= self.T:
            raise ValueError(f"blurring sample steps must be in 1..T={self.T}, got {steps}")
        if steps == self.T:
            return list(range(self.T, -1, -1))
        if self._distance is None:
            log_alpha = np.log(self.alpha(np.arange(self.T + 1)))
            speed = np.abs(np.diff(log_alpha, axis=0)).max(axis=(1, 2))
            self._distance = np.concatenate([[0.0], np.cumsum(speed)])
        dist = self._distance
        lv = np.round(np.interp(np.linspace(0, dist[-1], steps + 1), dist, np.arange(self.T + 1))).astype(int)
        return [int(v) for v in np.unique(lv)[::-1]]

    # ----------------------------------------------------------------- sampling
    @torch.inference_mode()
    def sample(self, net: nn.Module, n: int, shape: Sequence[int], *, seed: int = 0,
               variant: str = "random", trajectory_frames: int = 0, batch_size: int | None = None,
               device=None, sampler: str | None = None, steps: int | None = None,
               x_T: Tensor | None = None) -> dict[str, Any]:
        """Draw ``n`` images of ``shape`` (C, H, W) in [0, 1] from x_T ~ N(0, I).

        ``variant``: "random"; "shared-prior" / "shared-noise" (one start state, or one
        sequence of sampler noises, for all samples; always the ancestral sampler); or
        "interpolate" (``n`` rows of ``interpolation_frames``
        images by the deterministic sampler from spherically interpolated start noise
        between two draws; row r's with seed ``seed * ROW_SEED_STRIDE + r``; no
        trajectory). ``sampler``/``steps`` default to blurring.sampler/sample_steps.
        ``trajectory_frames`` F > 0 also returns (n, F, C, H, W) states in [0, 1], evenly
        spaced over the chain from the start noise to the image. ``x_T`` (n, C, H, W), if
        given, is the start noise. Returns {"images", "trajectory", "levels"}."""
        if variant not in VARIANTS:
            raise ConfigError(f"unknown sampling variant '{variant}'; blurring diffusion supports {list(VARIANTS)}")
        sampler = self.sampler if sampler is None else sampler
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {list(SAMPLERS)}")
        if variant == "interpolate" and x_T is None:
            frames = self.interpolation_frames
            starts = []
            for r in range(n):
                gen = torch.Generator().manual_seed(int(seed) * ROW_SEED_STRIDE + r)
                ends = torch.randn((2, *shape), generator=gen)
                starts += [slerp(ends[:1], ends[1:], float(w)) for w in torch.linspace(0, 1, frames)]
            out = self.sample(net, n * frames, shape, seed=seed, batch_size=batch_size, device=device,
                              sampler="ddim", steps=steps, x_T=torch.cat(starts))
            return {**out, "trajectory": None, "levels": []}
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        shape = tuple(int(v) for v in shape)
        if len(shape) != 3 or shape[1:] != (self.H, self.W):
            raise ValueError(f"shape must be (C, {self.H}, {self.W}), got {shape}")
        if trajectory_frames < 0:
            raise ValueError(f"trajectory_frames must be >= 0, got {trajectory_frames}")
        levels = self.levels(self.sample_steps if steps is None else int(steps))
        saved_at = set()
        if trajectory_frames:
            picks = np.round(np.linspace(0, len(levels) - 1, trajectory_frames)).astype(int)
            saved_at = {int(p) for p in picks}
        device = torch.device(device) if device is not None else net_device(net)
        batch_size = n if batch_size is None else int(batch_size)
        gen = torch.Generator().manual_seed(int(seed))
        shared_noise = None
        if variant in ("shared-prior", "shared-noise"):
            sampler = "ancestral"  # the deterministic sampler has no noise to share or vary
            if variant == "shared-prior" and x_T is None:
                x_T = torch.randn((1, *shape), generator=gen).expand(n, *shape)
            if variant == "shared-noise":
                shared_noise = [torch.randn((1, *shape), generator=gen) for _ in levels[1:]]
        was_training = net.training
        net.eval()
        images, trajectories = [], []
        try:
            for start in range(0, n, batch_size):
                b = min(batch_size, n - start)
                if x_T is not None:
                    x = x_T[start : start + b].float().to(device)
                else:
                    x = torch.randn((b, *shape), generator=gen).to(device)
                frames = [self.to_data(x).float().cpu()] if 0 in saved_at else []
                for j, (t, s) in enumerate(zip(levels[:-1], levels[1:]), start=1):
                    x = self.step(net, x, t, s, sampler, gen,
                                  z=shared_noise[j - 1] if shared_noise else None)
                    if j in saved_at:
                        frames.append(self.to_data(x).float().cpu())
                images.append(self.to_data(x).float().cpu())
                if saved_at:
                    trajectories.append(torch.stack(frames, dim=1))
        finally:
            net.train(was_training)
        trajectory = torch.cat(trajectories) if trajectories else None
        if trajectory is not None and trajectory.shape[1] != trajectory_frames:
            # fewer distinct states than frames: repeat the nearest ones
            idx = torch.round(torch.linspace(0, trajectory.shape[1] - 1, trajectory_frames)).long()
            trajectory = trajectory[:, idx]
        return {"images": torch.cat(images), "trajectory": trajectory, "levels": [],
                "sampler": self.sampler_description(sampler, len(levels) - 1)}

    # ----------------------------------------------------------------- likelihood
    def decoder_variance(self) -> float:
        """Variance of the decoder p(x_0 | x_1) (pixel space, isotropic): the posterior
        variance of q(u_1 | u_2, u_0) at the unblurred DC frequency, DDPM's fixed-small
        choice for the same noise schedule (σ_1² when T = 1)."""
        if self.T == 1:
            return float(self.sigma[1] ** 2)
        return float(self.posterior(2, 1)["var"][0, 0])

    @torch.inference_mode()
    def nll(self, net: nn.Module, images: np.ndarray, *, seed: int = 0, batch_size: int = 64,
            t_stride: int | None = None, t_offset: int | None = None) -> dict:
        """The variational bound of uint8 NHWC test images in bits/dim, by both estimators
        of :mod:`ihdm.metrics.nll` in one pass, as DDPM's:

        * L_T = KL(q(u_T | u_0) ‖ N(0, I)), summed over frequencies;
        * L_{i−1} = KL(q(u_{i−1} | u_i, u_0) ‖ p(u_{i−1} | u_i)), i = 2..T, with p the
          posterior at û_0 from ε̂ (same variance), which is
          Σ_f σ²_{i|i−1} / (2 α²_{i|i−1} σ²_{i−1}) · (DCT(ε̂ − ε))_f²; one draw of u_i per
          image and level; every ``t_stride``-th level (evaluate.blurring_nll_t_stride),
          weighted by the stride, at an offset drawn per batch (unbiased);
        * L_0 = −log p(x_0 | x_1), a Gaussian around x̂_0 = V û_0 with
          :meth:`decoder_variance`: its mass in the pixel's 8-bit bin (``bpd_discrete``,
          also ``bits_per_dim``), or its density on dequantised data y = (255u + U)/256
          less N ln 2 for dx/dy (``bpd_dequantised``, which adds the 8 bits/dim of the
          dequantisation as its own term; the KL terms are evaluated on y too).

        The weight of L_{i−1} at a frequency is (SNR_{i−1}/SNR_i − 1)/2, and the blur makes
        that ratio large where a frequency is being erased (exp(−λ Δτ) per level): the bound
        is valid at any T but loose for small T, far looser than DDPM's at the same T.
        """
        t_stride = self.nll_t_stride if t_stride is None else int(t_stride)
        if t_stride < 1:
            raise ValueError(f"t_stride must be at least 1, got {t_stride}")
        if t_offset is not None and not 0 <= t_offset < t_stride:
            raise ValueError(f"t_offset must be in 0..{t_stride - 1}, got {t_offset}")
        u_all = to_tensor(images)
        device = net_device(net)
        gen = torch.Generator().manual_seed(int(seed))
        n, n_dims = u_all.shape[0], int(np.prod(u_all.shape[1:]))
        T, dec_var = self.T, self.decoder_variance()
        alpha_T = torch.as_tensor(self.alpha(T), dtype=torch.float64, device=device)
        alpha_1 = torch.as_tensor(self.alpha(1), dtype=torch.float64, device=device)
        var_T = float(self.sigma[T] ** 2)
        bound = PairedBound(("L_T", "L_intermediate", "L_0"), seed)
        was_training = net.training
        net.eval()
        try:
            for u_b, pair in bound.batches(u_all, batch_size, device):
                B = u_b.shape[0]
                x0 = self.to_model(pair)  # discrete, dequantised
                u0 = self.dct(x0.double())
                bound.add("L_T", 0.5 * (var_T + (alpha_T * u0) ** 2 - 1.0 - math.log(var_T)))
                if t_offset is not None:
                    offset = t_offset
                else:
                    offset = int(torch.randint(0, t_stride, (1,), generator=gen)) if t_stride > 1 else 0
                for i in range(2 + offset, T + 1, t_stride):
                    post = self.posterior(i, i - 1)
                    weight = torch.as_tensor(post["var_ts"] / (2 * post["alpha_ts"] ** 2 * self.sigma[i - 1] ** 2),
                                             device=device)
                    eps = _randn((B, *x0.shape[1:]), gen, x0).repeat(2, 1, 1, 1)
                    x_t = self.q_sample(x0, i, eps)
                    diff = self.dct((self.predict_eps(net, x_t, i) - eps).double())
                    bound.add("L_intermediate", weight * diff**2, t_stride)
                eps = _randn((B, *x0.shape[1:]), gen, x0).repeat(2, 1, 1, 1)
                x_1 = self.q_sample(x0, 1, eps)
                u_hat = (self.dct(x_1.double()) - float(self.sigma[1]) * self.dct(self.predict_eps(net, x_1, 1).double())) / alpha_1
                bound.add_decoder("L_0", u_b, x0, self.idct(u_hat), dec_var)
        finally:
            net.train(was_training)
        bits = bound.bits(n, n_dims)
        bpd = {key: sum(terms.values()) for key, terms in bits.items()}
        return {
            "bits_per_dim": bpd["discrete"],
            "bpd_discrete": bpd["discrete"],
            "bpd_dequantised": bpd["dequantised"],
            "terms_bits_per_dim": bits["discrete"],
            "terms_bits_per_dim_dequantised": bits["dequantised"],
            "n_images": n,
            "n_dims": n_dims,
            "t_stride": t_stride,
            "T": T,
        }
