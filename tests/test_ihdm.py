"""IHDM: the loss, the prior, the samplers and their variants, the ELBO."""

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
