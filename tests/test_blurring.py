"""Blurring diffusion (ihdm/blurring.py): the physics against independent computations
(scipy's DCT and the schedules written out here), the samplers, the bound, training and
the command line."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import torch
from torch import nn

from ihdm.blurring import ROW_SEED_STRIDE, BlurringDiffusion
from ihdm.config import ConfigError
from ihdm.unet import build_unet

from conftest import REPO, tiny_config


def _dct(x: torch.Tensor) -> np.ndarray:
    return scipy.fft.dctn(x.double().numpy(), type=2, norm="ortho", axes=(-2, -1))


def _expected_alpha(i: int, T: int, H: int, W: int, sigma_max: float, d_min: float,
                    logsnr=(-10.0, 10.0)) -> np.ndarray:
    """α_i per DCT coefficient from the paper's definitions, written out independently."""
    if i == 0:
        return np.ones((H, W))
    t = i / T
    lo, hi = math.atan(math.exp(-logsnr[1] / 2)), math.atan(math.exp(-logsnr[0] / 2))
    a = math.cos(lo + (hi - lo) * t)
    tau = (sigma_max * math.sin(math.pi * t / 2) ** 2) ** 2 / 2
    n, m = np.arange(H)[:, None], np.arange(W)[None, :]
    lam = math.pi**2 * (n**2 / H**2 + m**2 / W**2)
    return a * ((1 - d_min) * np.exp(-lam * tau) + d_min)


def _sigma(i: int, T: int, logsnr=(-10.0, 10.0)) -> float:
    if i == 0:
        return 0.0
    lo, hi = math.atan(math.exp(-logsnr[1] / 2)), math.atan(math.exp(-logsnr[0] / 2))
    return math.sin(lo + (hi - lo) * i / T)


def test_schedules_follow_the_paper():
    p = BlurringDiffusion(8, 8, T=100, blur_sigma_max=20.0)
    a, s = p.a[1:], p.sigma[1:]
    assert np.allclose(a**2 + s**2, 1.0)  # variance preserving
    logsnr = np.log(a**2 / s**2)
    assert logsnr[-1] == pytest.approx(-10.0) and np.log(p.a[0] ** 2 / 1e-300) > 100  # level 0: data
    assert np.all(np.diff(logsnr) < 0)
    assert p.tau[-1] == pytest.approx(20.0**2 / 2)  # σ_B,max reached at t = 1
    assert p.tau[50] == pytest.approx((20.0 * 0.5) ** 2 / 2)  # sin²(π/4) = 1/2
    alpha = p.alpha(100)
    assert alpha[0, 0] == pytest.approx(a[-1])  # the mean is never blurred
    assert alpha[-1, -1] == pytest.approx(a[-1] * 0.001, rel=1e-3)  # the floor d_min
    for i in (1, 37, 100):
        assert np.allclose(p.alpha(i), _expected_alpha(i, 100, 8, 8, 20.0, 0.001), rtol=1e-12)
    # the blur factor only shrinks with t at every frequency, so every transition is valid
    d = np.stack([p.alpha(i) / p.a[i] for i in range(1, 101)])
    assert np.all(np.diff(d, axis=0) <= 1e-15)


def test_forward_marginal_per_frequency_matches_monte_carlo():
    """Pixel-space draws of q(x_i | x_0): in scipy's orthonormal DCT basis their mean is
    α_i ⊙ u_0 and their variance σ_i², frequency by frequency."""
    H = W = 8
    T, i, n = 10, 4, 40000
    p = BlurringDiffusion(H, W, T=T, blur_sigma_max=3.0, min_scale=0.01)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((1, 1, H, W), generator=g) * 2 - 1
    noise = torch.randn((n, 1, H, W), generator=g, dtype=torch.float64)
    u = _dct(p.q_sample(x0.double().expand(n, -1, -1, -1), i, noise))[:, 0]
    alpha, sigma = _expected_alpha(i, T, H, W, 3.0, 0.01), _sigma(i, T)
    assert alpha.min() < 0.1 * alpha.max()  # the level blurs the high frequencies away
    mean_err = np.abs(u.mean(0) - alpha * _dct(x0.double())[0, 0])
    assert mean_err.max() < 5 * sigma / math.sqrt(n)
    var_rel = np.abs(u.var(0) / sigma**2 - 1)
    assert var_rel.max() < 5 * math.sqrt(2 / n)
    # and independent across frequencies (white noise stays white in the DCT basis)
    flat = (u - u.mean(0)).reshape(n, -1)
    corr = np.corrcoef(flat[:, :6].T)
    assert np.abs(corr - np.eye(6)).max() < 5 / math.sqrt(n)


def test_without_blur_the_process_is_ddpm_with_the_same_noise_schedule():
    """blur_sigma_max = 0: α_i is the same a_i at every frequency, the marginal is DDPM's
    N(sqrt(ᾱ) x_0, (1 − ᾱ) I) with ᾱ = a_i², and the posterior is Ho et al.'s."""
    H, T = 8, 20
    p = BlurringDiffusion(H, H, T=T, blur_sigma_max=0.0)
    abar = p.a**2  # ᾱ_0 = 1 at the data level
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand((3, 2, H, H), generator=g) * 2 - 1
    eps = torch.randn(x0.shape, generator=g)
    for i in (1, 7, T):
        assert np.allclose(p.alpha(i), p.a[i])
        ddpm = math.sqrt(abar[i]) * x0 + math.sqrt(1 - abar[i]) * eps
        assert torch.allclose(p.q_sample(x0, i, eps), ddpm, atol=1e-5)
    for t in range(2, T + 1):
        beta = 1 - abar[t] / abar[t - 1]
        post = p.posterior(t, t - 1)
        assert np.allclose(post["c_0"], math.sqrt(abar[t - 1]) * beta / (1 - abar[t]))
        assert np.allclose(post["c_t"], math.sqrt(1 - beta) * (1 - abar[t - 1]) / (1 - abar[t]))
        assert np.allclose(post["var"], beta * (1 - abar[t - 1]) / (1 - abar[t]))


@pytest.mark.parametrize("t,s", [(5, 4), (9, 3), (2, 0), (10, 1)])
def test_posterior_matches_gaussian_conditioning(t, s):
    """q(u_s | u_t, u_0) per frequency from conditioning the joint Gaussian of (u_s, u_t)
    given u_0, built from the marginal at s and the transition s -> t."""
    H, T = 6, 10
    p = BlurringDiffusion(H, H, T=T, blur_sigma_max=4.0, min_scale=0.001)
    a_s, a_t = _expected_alpha(s, T, H, H, 4.0, 0.001), _expected_alpha(t, T, H, H, 4.0, 0.001)
    v_s, v_t = _sigma(s, T) ** 2, _sigma(t, T) ** 2
    cov = (a_t / a_s) * v_s  # Cov(u_s, u_t | u_0)
    want_var = v_s - cov**2 / v_t
    # mean = α_s u_0 + cov/v_t (u_t − α_t u_0) = (cov/v_t) u_t + (α_s − cov α_t / v_t) u_0
    post = p.posterior(t, s)
    assert np.allclose(post["var"], want_var, atol=1e-14)
    assert np.allclose(post["c_t"], cov / v_t)
    assert np.allclose(post["c_0"], a_s - cov * a_t / v_t)
    # the ε-form of the mean equals the u_0-form when ε is the true noise
    rng = np.random.default_rng(0)
    u0, eps = rng.normal(size=(H, H)), rng.normal(size=(H, H))
    u_t = a_t * u0 + math.sqrt(v_t) * eps
    eps_form = u_t / post["alpha_ts"] - post["c_eps"] * eps
    assert np.allclose(eps_form, post["c_t"] * u_t + post["c_0"] * u0)


def test_the_forward_process_ends_at_the_prior(mnist_images):
    """At t = 1 the marginal of real digits is the prior N(0, I) at every frequency (its
    per-frequency KL is tiny), and the sampler's start states are drawn from it."""
    p = BlurringDiffusion(28, 28, T=1000)
    x0 = torch.from_numpy(mnist_images[:64]).permute(0, 3, 1, 2).double() / 255 * 2 - 1
    u0 = _dct(x0)
    alpha, var = _expected_alpha(1000, 1000, 28, 28, 20.0, 0.001), _sigma(1000, 1000) ** 2
    kl = 0.5 * (var + (alpha * u0) ** 2 - 1 - math.log(var))
    assert kl.sum(axis=(1, 2, 3)).max() < 0.05  # nats per image, over 784 frequencies
    # the spectrum of x_T: flat at 1 (mean squared coefficient per frequency)
    g = torch.Generator().manual_seed(0)
    x_T = p.q_sample(x0.expand(8, -1, -1, -1, -1).reshape(-1, 1, 28, 28), 1000,
                     torch.randn((8 * 64, 1, 28, 28), generator=g, dtype=torch.float64))
    power = (_dct(x_T) ** 2).mean(axis=(0, 1))
    assert abs(power.mean() - 1) < 0.01 and power.min() > 0.75 and power.max() < 1.3


def test_an_untrained_network_samples_the_spectrum_its_chain_predicts():
    """The U-Net starts at exactly zero (ε̂ = 0), so the ancestral chain is linear per
    frequency: u_s = u_t / α_{t|s} + σ_{t→s} z. Its per-frequency variance follows
    v_s = v_t / α²_{t|s} + σ²_{t→s} from v_T = 1 (the prior): the samples' DCT power must
    match it at every frequency."""
    cfg = tiny_config(data__resolution=8)
    p = BlurringDiffusion(8, 8, T=12, blur_sigma_max=2.0, min_scale=0.05, sample_steps=4)
    torch.manual_seed(0)
    net = build_unet(cfg, "blurring")
    n = 6000
    g = torch.Generator().manual_seed(3)
    x = torch.randn((n, 1, 8, 8), generator=g)
    levels = p.levels(4)
    want = np.ones((8, 8))
    with torch.inference_mode():
        for t, s in zip(levels[:-1], levels[1:]):
            x = p.step(net, x, t, s, "ancestral", g, clip=False)
            post = p.posterior(t, s)
            want = want / post["alpha_ts"] ** 2 + post["var"]
    power = (_dct(x) ** 2).mean(axis=(0, 1))
    assert want.max() / want.min() > 5  # a spectrum with structure, not a flat one
    assert np.abs(power / want - 1).max() < 6 * math.sqrt(2 / n)


def _digits(mnist_images, n, size=16):
    u = torch.from_numpy(mnist_images[:n]).permute(0, 3, 1, 2).float() / 255
    return torch.round(torch.nn.functional.interpolate(u, size=size, mode="area") * 255) / 255


def test_the_loss_trains_and_lowers_the_bound(mnist_images):
    cfg = tiny_config(data__resolution=16, blurring__T=50)
    p = BlurringDiffusion.from_config(cfg)
    u = _digits(mnist_images, 256)
    torch.manual_seed(0)
    net = build_unet(cfg, "blurring")

    def held_loss():
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return float(np.mean([float(p.loss(net, u[:64], g)) for _ in range(4)]))

    as_uint8 = (u[:16] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    before, nll_before = held_loss(), p.nll(net, as_uint8, t_stride=5)
    assert before == pytest.approx(1.0, abs=0.05)  # ε̂ = 0 at initialisation: E ε² = 1
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        loss = p.loss(net, u[torch.randint(0, len(u), (16,), generator=g)], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after, nll_after = held_loss(), p.nll(net, as_uint8, t_stride=5)
    assert after < 0.7 * before
    assert nll_after["bits_per_dim"] < nll_before["bits_per_dim"] - 1.0
    assert nll_after["terms_bits_per_dim"]["L_intermediate"] < nll_before["terms_bits_per_dim"]["L_intermediate"]


class OracleEps(nn.Module):
    """An ε-network that knows x_0 = ``m`` (on [-1, 1]): ε = (x_t − V α_i Vᵀ m) / σ_i."""

    def __init__(self, process: BlurringDiffusion, m: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.p, self.m = process, m

    def forward(self, x, t):
        i = int(t[0])
        mean = self.p.q_sample(self.m.to(x.dtype).repeat(x.shape[0] // self.m.shape[0], 1, 1, 1), i,
                               torch.zeros_like(x))
        return (x - mean) / float(self.p.sigma[i])


def _bin_mass(x: float, mean: float, std: float) -> float:
    """P(the 8-bit bin of x in [0, 1]) under N(mean, std²): width 1/255, open at 0 and 1."""
    cdf = lambda z: 0.5 * (1 + math.erf((z - mean) / (std * math.sqrt(2))))  # noqa: E731
    lo = 0.0 if x < 0.5 / 255 else cdf(x - 0.5 / 255)
    hi = 1.0 if x > 1 - 0.5 / 255 else cdf(x + 0.5 / 255)
    return hi - lo


def test_the_bound_with_an_oracle_network_is_prior_plus_decoder():
    """With the true ε every KL term L_{i−1} vanishes and x̂_0 = x_0, so the discrete bound
    is the prior KL (per frequency, by hand) plus the decoder's bin masses around the data
    with the DC posterior variance of q(u_1 | u_2, u_0) (by hand)."""
    H, T = 4, 6
    p = BlurringDiffusion(H, H, T=T, blur_sigma_max=2.0)
    pixels = np.array([[0, 255, 128, 3], [250, 0, 0, 77], [255, 255, 1, 200], [9, 90, 180, 254]], np.uint8)
    images = pixels[None, :, :, None]
    x0 = torch.from_numpy(pixels).double()[None, None] / 255 * 2 - 1
    out = p.nll(OracleEps(p, x0.float()), images)
    assert out["terms_bits_per_dim"]["L_intermediate"] == pytest.approx(0.0, abs=1e-6)
    u0 = _dct(x0)[0, 0]
    aT, vT = _expected_alpha(T, T, H, H, 2.0, 0.001), _sigma(T, T) ** 2
    prior = 0.5 * (vT + (aT * u0) ** 2 - 1 - math.log(vT)).sum()
    a1, a2, v1, v2 = _expected_alpha(1, T, H, H, 2.0, 0.001)[0, 0], _expected_alpha(2, T, H, H, 2.0, 0.001)[0, 0], \
        _sigma(1, T) ** 2, _sigma(2, T) ** 2
    dec_var = (v2 - (a2 / a1) ** 2 * v1) * v1 / v2
    assert p.decoder_variance() == pytest.approx(dec_var)
    decoder = -sum(math.log(_bin_mass(v / 255, v / 255, math.sqrt(dec_var) / 2)) for v in pixels.ravel())
    to_bits = 16 * math.log(2)
    assert out["terms_bits_per_dim"]["L_T"] == pytest.approx(prior / to_bits, rel=1e-6)
    assert out["terms_bits_per_dim"]["L_0"] == pytest.approx(decoder / to_bits, rel=1e-4)
    assert out["bits_per_dim"] == pytest.approx((prior + decoder) / to_bits, rel=1e-4)
    # the dequantised estimator: a density bound on the same NLL, 8 bits/dim as its own term
    assert out["terms_bits_per_dim_dequantised"]["dequantisation"] == 8.0
    assert np.isfinite(out["bpd_dequantised"])
    # strided estimates over every offset average to the full sum (here: all zero)
    assert p.nll(OracleEps(p, x0.float()), images, t_stride=2, t_offset=1)["terms_bits_per_dim"][
        "L_intermediate"] == pytest.approx(0.0, abs=1e-6)


def test_sampling_is_seeded_and_its_variants(mnist_images):
    cfg = tiny_config(data__resolution=16, blurring__T=20, blurring__sample_steps=5)
    p = BlurringDiffusion.from_config(cfg)
    torch.manual_seed(0)
    net = build_unet(cfg, "blurring")
    # a few steps of training so that the network is not the zero function
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    u = _digits(mnist_images, 64)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        loss = p.loss(net, u[:16], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    a = p.sample(net, 5, (1, 16, 16), seed=4, trajectory_frames=3)
    b = p.sample(net, 5, (1, 16, 16), seed=4, trajectory_frames=3)
    c = p.sample(net, 5, (1, 16, 16), seed=5)
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["trajectory"], b["trajectory"])
    assert not torch.equal(a["images"], c["images"])
    assert a["images"].shape == (5, 1, 16, 16) and a["trajectory"].shape == (5, 3, 1, 16, 16)
    assert torch.equal(a["trajectory"][:, -1], a["images"])
    assert 0 <= float(a["images"].min()) and float(a["images"].max()) <= 1
    d = p.sample(net, 5, (1, 16, 16), seed=4, sampler="ddim")
    assert torch.equal(d["images"], p.sample(net, 5, (1, 16, 16), seed=4, sampler="ddim")["images"])
    rows = p.sample(net, 2, (1, 16, 16), seed=0, variant="interpolate")
    frames = cfg["sample"]["interpolation_frames"]
    assert rows["images"].shape == (2 * frames, 1, 16, 16) and rows["trajectory"] is None
    # row 1's ends are deterministic DDIM samples from its two start noises
    ends = torch.randn((2, 1, 16, 16), generator=torch.Generator().manual_seed(0 * ROW_SEED_STRIDE + 1))
    direct = p.sample(net, 2, (1, 16, 16), sampler="ddim", x_T=ends)["images"]
    assert torch.allclose(rows["images"][frames], direct[0], atol=1e-6)
    assert torch.allclose(rows["images"][2 * frames - 1], direct[1], atol=1e-6)
    with pytest.raises(ConfigError, match="blurring diffusion supports"):
        p.sample(net, 2, (1, 16, 16), variant="nonsense")
    # shared-prior: one start state (ancestral even when DDIM is asked for: its samples would
    # all be one image); shared-noise: one ancestral noise sequence, different start states
    sp = p.sample(net, 3, (1, 16, 16), seed=2, variant="shared-prior", sampler="ddim", trajectory_frames=2)
    assert torch.equal(sp["trajectory"][:, 0], sp["trajectory"][:1, 0].expand(3, -1, -1, -1))
    assert float((sp["images"] - sp["images"][:1]).abs().max()) > 0.01
    assert sp["sampler"].startswith("blurring diffusion ancestral")
    sn = p.sample(net, 3, (1, 16, 16), seed=2, variant="shared-noise", trajectory_frames=2)
    assert float((sn["trajectory"][:, 0] - sn["trajectory"][:1, 0]).abs().max()) > 0.1


def test_bad_config_values_name_their_key():
    for key, value in (("blurring.sampler", '"euler"'), ("blurring.min_scale", "0"),
                       ("blurring.T", "0"), ("blurring.nonsense", "1")):
        with pytest.raises(ConfigError, match=key.split(".")[1]):
            tiny_config(**{key.replace(".", "__"): json.loads(value)})


def test_cli_train_sample_and_nll(tmp_path, mnist_npz):
    """ihdm train / sample / evaluate --metric nll with --model blurring on the test config."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    sets = ["--set", "blurring.T=20", "--set", "blurring.sample_steps=5"]

    def ihdm(*args):
        r = subprocess.run([sys.executable, "-m", "ihdm.cli", *args, *sets], capture_output=True,
                           text=True, cwd=REPO, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        return r

    run = tmp_path / "run"
    ihdm("train", "config/test.yaml", "--model", "blurring", "--data", str(mnist_npz), "--out", str(run),
         "--quiet", "--set", "train.steps=4")
    final = run / "final.pt"
    assert torch.load(final, weights_only=True)["model"] == "blurring"
    ihdm("sample", "config/test.yaml", "--checkpoint", str(final), "--n", "4", "--seed", "0",
         "--variant", "random", "--out", str(tmp_path / "s.npz"))
    with np.load(tmp_path / "s.npz") as f:
        assert f["images"].shape == (4, 28, 28, 1) and f["images"].dtype == np.uint8
    assert Path(tmp_path / "s.png").is_file()
    ihdm("evaluate", "config/test.yaml", "--metric", "nll", "--checkpoint", str(final), "--test", str(mnist_npz),
         "--out", str(tmp_path / "nll.json"))
    nll = json.loads((tmp_path / "nll.json").read_text())
    # (4 steps at T = 20: the bound is loose, the network near zero; see BlurringDiffusion.nll)
    assert nll["model"] == "blurring" and 0 < nll["bits_per_dim"] < math.inf
    assert set(nll["terms_bits_per_dim"]) == {"L_T", "L_intermediate", "L_0"}


def test_erased_frequency_curve_of_blurring_diffusion():
    """Without blur the curve is the noise-only one (floor σ²/(a²·4) against the data PSD);
    with blur every level erases at or below it, and strictly below somewhere."""
    from ihdm import spectral

    freqs = np.linspace(1 / 56, 0.5, 28)
    psd = 1e-3 * freqs**-2.0
    level, sharp = spectral.erased_frequency_blurring(freqs, psd, {"T": 200, "blur_sigma_max": 0.0})
    a, s = BlurringDiffusion(4, 4, T=200).a[1:], BlurringDiffusion(4, 4, T=200).sigma[1:]
    assert np.allclose(level, np.arange(1, 201) / 200)
    assert np.allclose(sharp, spectral.erased_frequency(freqs, psd, s**2 / (4 * a**2)))
    _, blurred = spectral.erased_frequency_blurring(freqs, psd, {"T": 200, "blur_sigma_max": 20.0})
    assert np.all(blurred <= sharp + 1e-12) and np.any(blurred < 0.5 * sharp)
    assert np.all(np.diff(blurred) <= 1e-12)  # never increases with the level
    summary = spectral.spectral_summary(np.random.default_rng(0).random((4, 16, 16, 1)), blurring={"T": 50})
    assert len(summary["blurring"]["level"]) == 50 and "blurring" not in spectral.spectral_summary(
        np.random.default_rng(0).random((4, 16, 16, 1)))


def test_short_chains_space_their_levels_by_the_change_of_log_alpha():
    p = BlurringDiffusion(28, 28, T=1000)
    assert p.levels(1000) == list(range(1000, -1, -1))
    for steps in (20, 100):
        lv = p.levels(steps)
        assert lv[0] == 1000 and lv[-1] == 0 and len(lv) == steps + 1 and lv == sorted(lv, reverse=True)
        log_alpha = np.log(np.stack([p.alpha(i) for i in lv]))
        worst = np.abs(np.diff(log_alpha, axis=0)).max()
        even = np.round(np.linspace(1000, 0, steps + 1)).astype(int)
        log_even = np.log(np.stack([p.alpha(i) for i in even]))
        assert worst < np.abs(np.diff(log_even, axis=0)).max()


def test_clipping_keeps_the_step_in_range_and_is_ddpms_at_the_last_step():
    """With ε̂ = 0 (untrained U-Net) the unclipped prediction û_0 = u_t/α_t is huge; the
    clipped step uses V(d_s ⊙ û_0) clamped to [-1, 1]. At s = 0 (d = 1, σ_0 = 0) the step
    returns clamp(x̂_0), DDPM's clipped x̂_0."""
    cfg = tiny_config(data__resolution=8)
    p = BlurringDiffusion(8, 8, T=10, blur_sigma_max=2.0)
    torch.manual_seed(0)
    net = build_unet(cfg, "blurring")
    x = torch.randn((4, 1, 8, 8), generator=torch.Generator().manual_seed(0)) * 3
    with torch.inference_mode():
        last = p.step(net, x, 1, 0, "ancestral", None, clip=True)
        x0_hat = p.idct(p.dct(x.double()) / torch.as_tensor(p.alpha(1)))
        assert torch.allclose(last.double(), x0_hat.clamp(-1, 1), atol=1e-6)
        assert float(last.abs().max()) <= 1 + 1e-6
        unclipped = p.step(net, x, 1, 0, "ancestral", None, clip=False)
        assert torch.allclose(unclipped.double(), x0_hat, atol=1e-5) and float(unclipped.abs().max()) > 1.5
        # mid-chain: the clipped and unclipped means agree when the prediction is in range
        small = torch.zeros((2, 1, 8, 8))
        g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        assert torch.allclose(p.step(net, small, 6, 3, "ancestral", g1, clip=True),
                              p.step(net, small, 6, 3, "ancestral", g2, clip=False), atol=1e-6)
        # and DDIM's ε, recomputed from the clipped prediction, is then the network's own
        assert torch.allclose(p.step(net, small, 6, 3, "ddim", None, clip=True),
                              p.step(net, small, 6, 3, "ddim", None, clip=False), atol=1e-6)
        assert float(p.step(net, x, 6, 3, "ddim", None, clip=True).abs().max()) < float(
            p.step(net, x, 6, 3, "ddim", None, clip=False).abs().max())
