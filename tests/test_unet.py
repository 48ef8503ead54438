"""Tests of the U-Net f_theta: paper sizes, shapes, zero start, conditioning, errors."""

from __future__ import annotations

import pytest
import torch

from ihdm.config import ConfigError, load_config
from ihdm.unet import UNet, build_unet, count_parameters, num_groups

PAPER = {
    # data set: (overrides, parameters reported for the authors' network). The authors' code
    # counts levels from 0, so their "level 2" is our level 3 (7x7 on MNIST); the widths of
    # levels 2..4 are equal here, so the count does not depend on that choice.
    "mnist": (
        [
            "data.channels=1",
            "data.resolution=28",
            "unet.channels=128",
            "unet.channel_mult=[1,2,2]",
            "unet.num_res_blocks=4",
            "unet.attention_levels=[2]",
        ],
        42.08e6,
    ),
    "cifar10": (
        [
            "data.channels=3",
            "data.resolution=32",
            "unet.channels=128",
            "unet.channel_mult=[1,2,2,2]",
            "unet.num_res_blocks=4",
            "unet.attention_levels=[2,3]",
        ],
        61.06e6,
    ),
}


def tiny(in_channels: int = 1, dropout: float = 0.0, resolution: int = 16) -> UNet:
    """A small net with attention at both levels and two heads."""
    return UNet(
        in_channels=in_channels,
        channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_levels=(1, 2),
        dropout=dropout,
        num_heads=2,
        skip_rescale=True,
        resolution=resolution,
    )


def train_steps(net: UNet, x: torch.Tensor, n: int, lr: float = 1e-3) -> None:
    """n Adam steps regressing f_theta(x, t) onto a fixed random target."""
    gen = torch.Generator().manual_seed(1)
    target = torch.randn(x.shape, generator=gen)
    t = torch.arange(x.shape[0]) % 7 + 1
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(n):
        opt.zero_grad()
        loss = ((net(x, t) - target) ** 2).mean()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_parameter_counts(name: str) -> None:
    overrides, reported = PAPER[name]
    net = build_unet(load_config(None, overrides=overrides))
    n = count_parameters(net)
    assert abs(n - reported) / reported < 0.02, f"{name}: {n} parameters, paper {reported:.0f}"
    assert count_parameters(net, trainable_only=True) == n


def test_group_norm_groups() -> None:
    """32 groups as the authors wherever 2 or more channels per group remain (the small
    MNIST net's 64 channels included); never one channel per group."""
    for width in (64, 128, 256, 384, 512, 640):  # every width of the paper nets
        assert num_groups(width) == 32
    for width in (4, 8, 12, 32, 48, 96):
        g = num_groups(width)
        assert width % g == 0 and width // g >= 2
        assert g == max(d for d in range(1, 33) if width % d == 0 and width // d >= 2)
    assert num_groups(32) == 16 and num_groups(96) == 32


def test_skip_rescale_defaults_to_the_schema() -> None:
    """UNet(...) and build_unet default skip_rescale to the schema's value (false: the
    authors' code never applies it)."""
    import inspect

    from ihdm.config import schema

    default = schema()["properties"]["unet"]["properties"]["skip_rescale"]["default"]
    assert inspect.signature(UNet).parameters["skip_rescale"].default is default
    cfg = load_config(None)
    del cfg["unet"]["skip_rescale"]
    net = build_unet(cfg)
    assert net.mid[0].scale == (1 / 2**0.5 if default else 1.0)


def test_attention_and_depth_change_the_count() -> None:
    base = dict(in_channels=1, channels=16, channel_mult=(1, 2), num_res_blocks=1, resolution=8)
    plain = count_parameters(UNet(**base))
    with_attn = count_parameters(UNet(**base, attention_levels=(2,)))
    # the middle block always attends; level 2 (32 channels) adds one attention block after
    # its down block and one after each of its num_res_blocks + 1 up blocks: GN + q, k, v, out
    per_block = 2 * 32 + 4 * (32 * 32 + 32)
    assert with_attn - plain == 3 * per_block
    assert count_parameters(UNet(**{**base, "num_res_blocks": 2})) > plain


@pytest.mark.parametrize(
    ("channels", "height", "width"), [(1, 28, 28), (3, 28, 32), (3, 32, 32), (1, 16, 24)]
)
def test_output_shape_matches_input(channels: int, height: int, width: int) -> None:
    torch.manual_seed(0)
    net = UNet(
        in_channels=channels,
        channels=8,
        channel_mult=(1, 2, 2),
        num_res_blocks=1,
        attention_levels=(2,),
        resolution=None,
    )
    x = torch.rand(2, channels, height, width)
    y = net(x, torch.tensor([1, 5]))
    assert y.shape == x.shape
    assert y.dtype == torch.float32


def test_zero_at_init_then_nonzero_after_one_step() -> None:
    torch.manual_seed(0)
    net = tiny(dropout=0.1).train()
    x = torch.rand(4, 1, 16, 16)
    t = torch.tensor([1, 2, 3, 4])
    assert torch.count_nonzero(net(x, t)) == 0
    train_steps(net, x, 1)
    assert net(x, t).abs().max() > 0


def test_timestep_conditions_the_output() -> None:
    torch.manual_seed(0)
    net = tiny()
    x = torch.rand(4, 1, 16, 16)
    train_steps(net, x, 3)
    net.eval()
    with torch.no_grad():
        y1 = net(x, torch.full((4,), 1))
        y2 = net(x, torch.full((4,), 40))
        y_int = net(x, torch.full((4,), 7))
        y_float = net(x, torch.full((4,), 7.0))
        y_frac = net(x, torch.full((4,), 7.5))
    # GroupNorm must not erase the per-channel shift that carries the embedding
    assert (y1 - y2).norm() > 1e-4 * y1.norm(), "the output ignores the timestep"
    torch.testing.assert_close(y_int, y_float)
    assert not torch.allclose(y_int, y_frac)


def test_gradient_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    net = tiny()
    x = torch.rand(4, 1, 16, 16)
    train_steps(net, x, 3)  # move the zero-initialised output layers off zero
    net.zero_grad()
    net(x, torch.tensor([1, 2, 3, 4])).square().sum().backward()
    dead = [
        name
        for name, p in net.named_parameters()
        if p.grad is None or torch.count_nonzero(p.grad) == 0
    ]
    assert not dead, f"no gradient reaches {dead}"


def test_channels_last_and_bf16_autocast() -> None:
    torch.manual_seed(0)
    net = tiny(in_channels=3)
    x = torch.rand(2, 3, 16, 16)
    train_steps(net, x, 3)
    net.eval()
    t = torch.tensor([3, 9])
    with torch.no_grad():
        ref = net(x, t)
        cl = net(x.to(memory_format=torch.channels_last), t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = net(x, t)
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-5)
    assert half.dtype == torch.float32 and half.shape == x.shape
    assert torch.isfinite(half).all()
    err = (half - ref).norm() / ref.norm()
    assert err < 0.1, f"bf16 output differs from float32 by {err:.3f} (relative)"


def test_bad_config_raises_clear_error() -> None:
    cfg = load_config(None)
    cfg["data"]["resolution"] = 30  # 30 -> 15 -> cannot halve again for 3 levels
    with pytest.raises(ConfigError, match="resolution"):
        build_unet(cfg)
    cfg = load_config(None)
    cfg["unet"]["attention_levels"] = [4]
    with pytest.raises(ConfigError, match="attention_levels"):
        build_unet(cfg)
    with pytest.raises(ValueError, match="num_heads"):
        UNet(1, 8, (1,), 1, attention_levels=(1,), num_heads=3)


def test_bad_input_raises() -> None:
    net = tiny()
    with pytest.raises(ValueError, match="halved"):
        net(torch.rand(1, 1, 15, 16), torch.tensor([1]))
    with pytest.raises(ValueError, match="shape"):
        net(torch.rand(1, 3, 16, 16), torch.tensor([1]))
    with pytest.raises(ValueError, match="t must have shape"):
        net(torch.rand(2, 1, 16, 16), torch.tensor([1, 2, 3]))


def test_cuda_graphed_calls_the_net_directly_off_cuda() -> None:
    from ihdm.unet import CUDAGraphed

    torch.manual_seed(0)
    net = tiny()
    train_steps(net, torch.rand(2, 1, 16, 16), 2)
    graphed = CUDAGraphed(net)  # puts the net in eval mode, and train() keeps it there
    assert not net.training and not graphed.train().training and not net.training
    x, t = torch.rand(3, 1, 16, 16), torch.tensor([1, 5, 9])
    with torch.inference_mode():
        assert torch.equal(graphed(x, t), net(x, t))
    assert not graphed._graphs  # nothing captured on the CPU
    assert list(graphed.parameters()) == list(net.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("bf16", [False, True])
def test_cuda_graphs_replay_the_eager_network(bf16: bool) -> None:
    """Replays match eager calls for new inputs, per batch shape, and IHDM sampling with
    graphs draws the same images as without."""
    from ihdm.config import load_config as load
    from ihdm.inverse_heat import IHDM
    from ihdm.unet import CUDAGraphed

    torch.manual_seed(0)
    net = tiny()
    train_steps(net, torch.rand(2, 1, 16, 16), 2)
    net = net.cuda().eval()
    graphed = CUDAGraphed(net)
    # autocast as ihdm sample enters it, cast cache on: CUDAGraphed turns it off for capture
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16)
    tol = 2e-2 if bf16 else 1e-5  # a replay may pick other cuBLAS kernels: ulps of bf16
    with torch.inference_mode(), amp:
        for b in (4, 4, 3, 4):  # shape 4 captured once and replayed, shape 3 gets its own
            x = torch.rand(b, 1, 16, 16, device="cuda")
            t = torch.randint(0, 10, (b,), device="cuda")
            torch.testing.assert_close(graphed(x, t), net(x, t), rtol=tol, atol=tol)
    assert len(graphed._graphs) == 2
    with pytest.raises(RuntimeError, match="inference_mode"):
        graphed(x, t)  # outside inference mode the static buffers cannot take the inputs
    with torch.inference_mode():  # a scalar level is expanded to one per image
        torch.testing.assert_close(graphed(x, 7), net(x, torch.full((b,), 7, device="cuda")),
                                   rtol=1e-5, atol=1e-5)
    cfg = load(None, ["data.resolution=16", "heat.K=10"])
    ihdm = IHDM.from_config(cfg)
    ihdm.prior_images = torch.rand(8, 1, 16, 16)
    with amp:
        eager = ihdm.sample(net, 6, (1, 16, 16), seed=3, batch_size=4, device="cuda")
        replay = ihdm.sample(graphed, 6, (1, 16, 16), seed=3, batch_size=4, device="cuda")
    torch.testing.assert_close(replay["images"], eager["images"], rtol=10 * tol, atol=10 * tol)


def test_ho_et_al_cifar10_network() -> None:
    """The paper config's DDPM baseline (ddpm.unet) is Ho et al.'s CIFAR-10 network, 35.7 M
    parameters (Ho et al. 2020, appendix B), while IHDM keeps the 61.06 M net of `unet`."""
    from conftest import REPO

    cfg = load_config(REPO / "config" / "paper" / "cifar10.yaml")
    n_ddpm = count_parameters(build_unet(cfg, "ddpm"))
    assert abs(n_ddpm - 35.7e6) / 35.7e6 < 0.02, n_ddpm
    assert abs(count_parameters(build_unet(cfg, "ihdm")) - 61.06e6) / 61.06e6 < 0.02
    assert count_parameters(build_unet(cfg)) == count_parameters(build_unet(cfg, "ihdm"))
