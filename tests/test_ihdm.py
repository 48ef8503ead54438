"""IHDM: the loss, the prior, the samplers and their variants, the ELBO."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from ihdm.errors import UserError
from ihdm.inverse_heat import IHDM
from ihdm.noise import slerp
from ihdm.unet import build_unet

from conftest import tiny_config


class LevelRecorder(nn.Module):
    """A network that predicts no change and records the levels it was asked about."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.seen = []

    def forward(self, x, k):
        self.seen.append(k.clone())
        return x * self.w


def process(K=5):
    return IHDM(K=K, blur_sigma_min=0.5, blur_sigma_max=10.0, sigma=0.01, delta=0.0125, H=28, W=28)


def test_loss_draws_every_level_including_K(mnist_images):
    ihdm = process(K=5)
    net = LevelRecorder()
    u0 = torch.from_numpy(mnist_images[:64]).permute(0, 3, 1, 2).float() / 255
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        ihdm.loss(net, u0, generator=g)
    seen = torch.cat(net.seen)
    assert set(seen.tolist()) == {1, 2, 3, 4, 5}  # k ~ U{1..K}, level K included, 0 never


def test_loss_is_the_papers_expression(mnist_images):
    """With f_θ = 0 the loss is E‖F(t_k)u_0 + σε − F(t_{k−1})u_0‖² summed over pixels."""
    ihdm = process(K=5)
    net = LevelRecorder()
    u0 = torch.from_numpy(mnist_images[:32]).permute(0, 3, 1, 2).double() / 255
    g = torch.Generator().manual_seed(1)
    loss = ihdm.loss(net, u0, generator=g)
    g = torch.Generator().manual_seed(1)
    k = torch.randint(1, 6, (32,), generator=g)
    eps = torch.randn(u0.shape, generator=g, dtype=u0.dtype)
    expected = (ihdm.blur(u0, k) + 0.01 * eps - ihdm.blur(u0, k - 1)).pow(2).sum((1, 2, 3)).mean()
    assert torch.allclose(loss.double(), expected, rtol=1e-5)


def test_sampler_seeds_and_variants(mnist_images):
    cfg = tiny_config()
    ihdm = IHDM.from_config(cfg, prior_images=mnist_images)
    net = build_unet(cfg)  # zero-initialised output: the chain only adds noise to u_K
    kw = dict(batch_size=8)
    a = ihdm.sample(net, 6, (1, 28, 28), seed=3, **kw)["images"]
    b = ihdm.sample(net, 6, (1, 28, 28), seed=3, **kw)["images"]
    c = ihdm.sample(net, 6, (1, 28, 28), seed=4, **kw)["images"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (6, 1, 28, 28) and a.min() >= 0 and a.max() <= 1

    def spread(x):  # mean squared difference between samples, after removing clamping
        return (x - x.mean(0, keepdim=True)).pow(2).mean().item()

    def mean_spread(x):  # spread of the per-sample mean intensity ("overall colour")
        return x.mean((1, 2, 3)).var().item()

    rnd = ihdm.sample(net, 16, (1, 28, 28), seed=0, **kw)["images"]
    sp = ihdm.sample(net, 16, (1, 28, 28), seed=0, variant="shared-prior", **kw)["images"]
    sn = ihdm.sample(net, 16, (1, 28, 28), seed=0, variant="shared-noise", **kw)["images"]
    # shared prior state: same u_K, so the overall intensity is shared
    assert mean_spread(sp) < 0.05 * mean_spread(rnd)
    # shared noise: samples differ only through u_K, so their pixel-level noise is common
    hf = lambda x: (x[..., 1:, :] - x[..., :-1, :])  # noqa: E731  (high-pass)
    assert spread(hf(sn)) < 0.5 * spread(hf(rnd))
    assert mean_spread(sn) > 0.2 * mean_spread(rnd)


def test_interpolation_and_trajectory(mnist_images):
    cfg = tiny_config(sample__interpolation_frames=7)
    ihdm = IHDM.from_config(cfg, prior_images=mnist_images)
    net = build_unet(cfg)
    out = ihdm.sample(net, 2, (1, 28, 28), seed=0, variant="interpolate", trajectory_frames=3)
    frames = out["images"].view(2, 7, 1, 28, 28)
    steps = (frames[:, 1:] - frames[:, :-1]).flatten(2).norm(dim=2)
    ends = (frames[:, -1] - frames[:, 0]).flatten(1).norm(dim=1)
    assert (steps.max(1).values < ends).all()  # each step is smaller than the whole way
    assert out["trajectory"].shape == (14, 3, 1, 28, 28)
    levels = out["levels"]
    assert len(levels) == 3 and levels[0] == cfg["heat"]["K"] and levels[-1] == 0
    with pytest.raises(UserError, match="variant"):
        ihdm.sample(net, 2, (1, 28, 28), variant="bogus")
    with pytest.raises(UserError, match="training images"):
        IHDM.from_config(cfg).sample(net, 2, (1, 28, 28))


def test_slerp_keeps_norm_of_independent_noise():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, 16, 16, generator=g), torch.randn(4, 3, 16, 16, generator=g)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid.flatten(1).norm(dim=1), a.flatten(1).norm(dim=1), rtol=0.05)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    lin = 0.5 * (a + b)
    assert lin.flatten(1).norm(dim=1).mean() < 0.8 * mid.flatten(1).norm(dim=1).mean()


# ------------------------------------------------------------------ the two NLL estimators
DEQ_VAR = 1 / (12 * 256**2)  # variance of the dequantisation U(0, 1)/256


def _bin_mass(x: float, mean: float, std: float) -> float:
    """P(the 8-bit bin of x) under N(mean, std²): bins of width 1/255, open at 0 and 1."""
    cdf = lambda z: 0.5 * (1 + math.erf((z - mean) / (std * math.sqrt(2))))  # noqa: E731
    lo = -math.inf if x < 0.5 / 255 else x - 0.5 / 255
    hi = math.inf if x > 1 - 0.5 / 255 else x + 0.5 / 255
    return (1.0 if hi == math.inf else cdf(hi)) - (0.0 if lo == -math.inf else cdf(lo))


def _heat_2x2(u: np.ndarray, t: float) -> np.ndarray:
    """F(t) u for a 2×2 image by hand: the orthonormal 2-point DCT is (a ± b)/√2, and the
    Neumann eigenvalues are π²(n² + m²)/4."""
    D = np.array([[1.0, 1.0], [1.0, -1.0]]) / math.sqrt(2)
    lam = math.pi**2 * (np.arange(2)[:, None] ** 2 + np.arange(2)[None, :] ** 2) / 4
    return D.T @ (np.exp(-lam * t) * (D @ u @ D.T)) @ D


class KnownMean(nn.Module):
    """μ_θ(u_k, k) = m_k whatever u_k: f_θ(u, k) = m_k − u."""

    def __init__(self, means: dict[int, torch.Tensor]):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.means = means

    def forward(self, x, k):
        return torch.stack([self.means[int(kk)] for kk in k]) - x


def test_nll_estimators_agree_with_a_hand_computed_value():
    """K = 2 on 2×2 images with a network whose mean is known: the discrete estimator equals
    the hand-computed bound exactly; the dequantised one its expectation over y (many
    copies of the image)."""
    u0 = np.array([[0.0, 64.0], [128.0, 255.0]]) / 255
    m1 = u0 + np.array([[0.004, -0.01], [0.02, -0.003]])
    m2 = _heat_2x2(u0, 0.125) + 0.015
    delta, sigma, t1, t2 = 0.0125, 0.01, 0.125, 0.5  # σ_B = 0.5, 1.0: t = σ_B²/2
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)[None]  # noqa: E731
    proc = IHDM(K=2, blur_sigma_min=0.5, blur_sigma_max=1.0, sigma=sigma, delta=delta, H=2, W=2,
                prior_images=as_t(u0)[None])
    net = KnownMean({1: as_t(m1), 2: as_t(m2)})
    images = np.round(u0 * 255).astype(np.uint8)[None, :, :, None]
    n = 4000
    out = proc.nll(net, np.repeat(images, n, axis=0), batch_size=1000)

    N = 4
    const = 0.5 * (sigma**2 * N / delta**2 - N + 2 * N * math.log(delta / sigma))
    to_bits = N * math.log(2)
    # discrete: L_K = const (the prior image is the test image), L_1, L_0 from bin masses
    L1 = const + ((m2 - _heat_2x2(u0, t1)) ** 2).sum() / (2 * delta**2)
    L0 = -sum(math.log(_bin_mass(x, m, delta)) for x, m in zip(u0.ravel(), m1.ravel()))
    want = {"L_K": const / to_bits, "L_intermediate": L1 / to_bits, "L_0": L0 / to_bits}
    assert out["terms_bits_per_dim"] == pytest.approx(want, rel=1e-5)
    assert out["bits_per_dim"] == out["bpd_discrete"] == pytest.approx(sum(want.values()), rel=1e-5)
    # dequantised: y = (255 u + U)/256 has mean (255 u + ½)/256; E‖A(y − c)‖² adds tr(AᵀA)·var
    mean_y = (255 * u0 + 0.5) / 256
    tr = lambda t: float(np.exp(-2 * t * math.pi**2 * np.array([0, 1, 1, 2]) / 4).sum())  # noqa: E731
    LK = const + (((_heat_2x2(mean_y - u0, t2)) ** 2).sum() + DEQ_VAR * tr(t2)) / (2 * delta**2)
    L1 = const + (((m2 - _heat_2x2(mean_y, t1)) ** 2).sum() + DEQ_VAR * tr(t1)) / (2 * delta**2)
    L0 = (((mean_y - m1) ** 2).sum() + N * DEQ_VAR) / (2 * delta**2) + N * math.log(delta * math.sqrt(2 * math.pi))
    want = {"L_K": LK / to_bits, "L_intermediate": L1 / to_bits, "L_0": L0 / to_bits, "dequantisation": 8.0}
    got = out["terms_bits_per_dim_dequantised"]
    assert set(got) == set(want)
    for key in want:  # Monte Carlo over n dequantisations: a few standard errors
        assert got[key] == pytest.approx(want[key], abs=3e-3), key
    assert out["bpd_dequantised"] == pytest.approx(sum(got.values()))


def test_nll_estimators_differ_as_expected_on_digits(mnist_images):
    """On MNIST digits (mostly 0 and 255) the discrete L_0 is smaller by more than a bit/dim:
    the open edge bins hold much more mass than a density over 1/256. The other terms
    barely move."""
    proc = process(K=5)
    proc.prior_images = torch.from_numpy(mnist_images[:256]).permute(0, 3, 1, 2).float() / 255
    out = proc.nll(LevelRecorder(), mnist_images[256:288], batch_size=16)
    dis, deq = out["terms_bits_per_dim"], out["terms_bits_per_dim_dequantised"]
    assert deq["L_0"] + deq["dequantisation"] - dis["L_0"] > 1.0
    for key in ("L_K", "L_intermediate"):  # (an untrained net: the intermediate terms are large)
        assert abs(deq[key] - dis[key]) < 0.02 * abs(dis[key]), key
