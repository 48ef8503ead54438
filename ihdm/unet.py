"""The U-Net f_theta(u_k, k) of IHDM and the DDPM baseline.

The architecture is the DDPM-family U-Net that the IHDM authors trained (the
"improved-diffusion" layout): a sinusoidal embedding of the level k goes through a
two-layer MLP of width 4 * channels and is added inside every residual block; each
resolution level holds ``num_res_blocks`` residual blocks on the way down and
``num_res_blocks + 1`` on the way up (one per stored skip), with self-attention after
every block of the levels in ``attention_levels``; the middle block is
res -> attention -> res. Down-sampling is a stride-2 3x3 convolution, up-sampling nearest
neighbour followed by a 3x3 convolution. Levels are 1-indexed: level 1 works at the full
resolution, level i at resolution / 2**(i-1).

As in DDPM, the last convolution of every residual branch, the output projection of every
attention block and the final convolution start at zero, so f_theta is exactly 0 at
initialisation (mu_theta(u_k, k) = u_k). With ``skip_rescale`` the residual sums are
multiplied by 1/sqrt(2).

At the paper settings this gives 42.08 M parameters (MNIST: 1 channel, 128 x (1, 2, 2),
4 blocks, attention at one level) and 61.06 M (CIFAR-10: 3 channels, 128 x (1, 2, 2, 2),
4 blocks, attention at two levels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CUDAGraphed", "UNet", "build_unet", "count_parameters", "network_config", "num_groups",
           "timestep_embedding"]


def num_groups(channels: int, max_groups: int = 32, min_group_size: int = 2) -> int:
    """GroupNorm groups for ``channels``: 32 as in the authors' network (improved-diffusion's
    GroupNorm32) wherever that leaves at least 2 channels per group (every width of the paper
    nets, the small MNIST net's 64 included), else the largest divisor of ``channels`` that
    does.

    With a single channel per group GroupNorm becomes instance norm and subtracts exactly the
    per-channel shift that carries the timestep embedding, so narrower nets keep >= 2.
    """
    for g in range(max(1, min(max_groups, channels // min_group_size)), 0, -1):
        if channels % g == 0:
            return g
    return 1


class GroupNorm(nn.GroupNorm):
    """GroupNorm computed in float32 (stable under bf16/fp16 autocast), cast back."""

    def __init__(self, channels: int) -> None:
        super().__init__(num_groups(channels), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps)
        return y.to(x.dtype)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (B,) -> (B, dim) of integer or fractional levels ``t``."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GN -> SiLU -> conv3x3 (+ embedding) -> GN -> SiLU -> dropout -> conv3x3 (zero init),
    plus a 1x1 convolution on the skip path when the width changes."""

    def __init__(
        self, in_ch: int, out_ch: int, emb_dim: int, dropout: float, skip_rescale: bool
    ) -> None:
        super().__init__()
        self.norm1 = GroupNorm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_ch)
        self.norm2 = GroupNorm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)
        self.scale = 1.0 / math.sqrt(2.0) if skip_rescale else 1.0

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(F.silu(emb)).to(h.dtype)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.skip(x) + h) * self.scale


class AttnBlock(nn.Module):
    """Multi-head self-attention over all H*W positions: GN, 1x1 q/k/v and output
    projections (output zero-initialised), residual sum."""

    def __init__(self, channels: int, num_heads: int, skip_rescale: bool) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(
                f"num_heads ({num_heads}) must divide the attention width ({channels} channels)"
            )
        self.num_heads = num_heads
        self.norm = GroupNorm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))
        self.scale = 1.0 / math.sqrt(2.0) if skip_rescale else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(dim=1)  # each (B, heads, HW, d)
        a = F.scaled_dot_product_attention(q, k, v)
        a = a.transpose(-1, -2).reshape(b, c, h, w)
        return (x + self.proj(a)) * self.scale


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest neighbour, then a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """f_theta(x, t): (B, C, H, W) x (B,) -> (B, C, H, W), zero at initialisation.

    ``resolution`` is the nominal image side; ``forward`` accepts any H x W whose sides can
    be halved ``len(channel_mult) - 1`` times.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        channel_mult: Sequence[int],
        num_res_blocks: int,
        attention_levels: Sequence[int] = (),
        dropout: float = 0.0,
        num_heads: int = 1,
        skip_rescale: bool = False,
        resolution: int | None = None,
    ) -> None:
        super().__init__()
        channel_mult = tuple(int(m) for m in channel_mult)
        attention_levels = tuple(int(a) for a in attention_levels)
        n_levels = len(channel_mult)
        if in_channels < 1 or channels < 1 or num_res_blocks < 1:
            raise ValueError(
                f"in_channels ({in_channels}), channels ({channels}) and num_res_blocks "
                f"({num_res_blocks}) must be positive"
            )
        if n_levels < 1 or min(channel_mult) < 1:
            raise ValueError(
                f"channel_mult {channel_mult} must be a non-empty list of positive ints"
            )
        bad = [a for a in attention_levels if not 1 <= a <= n_levels]
        if bad:
            raise ValueError(
                f"attention_levels {list(bad)} out of range: levels are 1..{n_levels} "
                f"(one per entry of channel_mult {list(channel_mult)})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout ({dropout}) must lie in [0, 1)")
        self.factor = 2 ** (n_levels - 1)
        if resolution is not None and resolution % self.factor:
            raise ValueError(
                f"resolution {resolution} cannot be halved {n_levels - 1} times "
                f"(channel_mult has {n_levels} levels): it must be divisible by {self.factor}"
            )
        self.in_channels = in_channels
        self.channels = channels
        self.channel_mult = channel_mult
        self.num_res_blocks = num_res_blocks
        self.attention_levels = attention_levels
        self.resolution = resolution
        emb_dim = 4 * channels

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, dropout, skip_rescale)

        def attn(c: int) -> AttnBlock:
            return AttnBlock(c, num_heads, skip_rescale)

        self.emb_mlp = nn.Sequential(
            nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        ch = channels * channel_mult[0]
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)

        # Down path: every module's output is stored as a skip for the up path.
        self.down = nn.ModuleList()
        skip_widths = [ch]
        for level, mult in enumerate(channel_mult, start=1):
            for _ in range(num_res_blocks):
                blocks = [res(ch, channels * mult)]
                ch = channels * mult
                if level in attention_levels:
                    blocks.append(attn(ch))
                self.down.append(nn.ModuleList(blocks))
                skip_widths.append(ch)
            if level < n_levels:
                self.down.append(nn.ModuleList([Downsample(ch)]))
                skip_widths.append(ch)

        self.mid = nn.ModuleList([res(ch, ch), attn(ch), res(ch, ch)])

        # Up path: num_res_blocks + 1 blocks per level, each eating one skip.
        self.up = nn.ModuleList()
        for level in range(n_levels, 0, -1):
            mult = channel_mult[level - 1]
            for i in range(num_res_blocks + 1):
                blocks = [res(ch + skip_widths.pop(), channels * mult)]
                ch = channels * mult
                if level in attention_levels:
                    blocks.append(attn(ch))
                if level > 1 and i == num_res_blocks:
                    blocks.append(Upsample(ch))
                self.up.append(nn.ModuleList(blocks))
        assert not skip_widths

        self.norm_out = GroupNorm(ch)
        self.conv_out = _zero(nn.Conv2d(ch, in_channels, 3, padding=1))

    @staticmethod
    def _run(blocks: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for block in blocks:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor | float | int) -> torch.Tensor:
        """Residual f_theta(x, t) with the shape and dtype of ``x``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        b, _, height, width = x.shape
        if height % self.factor or width % self.factor:
            raise ValueError(
                f"input size {height}x{width} cannot be halved {len(self.channel_mult) - 1} "
                f"times: H and W must be divisible by {self.factor}"
            )
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(b)
        if t.shape != (b,):
            raise ValueError(f"t must have shape ({b},) to match the batch, got {tuple(t.shape)}")

        emb = self.emb_mlp(timestep_embedding(t, self.channels))
        h = self.conv_in(x)
        skips = [h]
        for blocks in self.down:
            h = self._run(blocks, h, emb)
            skips.append(h)
        h = self._run(self.mid, h, emb)
        for blocks in self.up:
            h = self._run(blocks, torch.cat([h, skips.pop()], dim=1), emb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out.to(x.dtype)


def network_config(cfg: dict, model: str | None = None) -> dict:
    """The ``unet`` keys of ``model``'s network: ``cfg["unet"]`` with the overrides in the
    model's own section (``cfg[model]["unet"]``, e.g. ddpm.unet for Ho et al.'s network),
    when it has them. IHDM and a model without overrides use ``unet`` itself."""
    own = cfg.get(model) if model else None
    overrides = own.get("unet") if isinstance(own, dict) else None
    return {**cfg["unet"], **(overrides or {})}


def build_unet(cfg: dict, model: str | None = None) -> UNet:
    """The U-Net of a full config dict (``cfg["unet"]``, ``cfg["data"]``) for ``model``
    (its own section's ``unet`` overrides apply; see :func:`network_config`)."""
    from ihdm.config import ConfigError

    where = f"unet.* / {model}.unet.*" if model and network_config(cfg, model) != cfg["unet"] else "unet.*"
    try:
        u, data = network_config(cfg, model), cfg["data"]
        kwargs = dict(
            in_channels=int(data["channels"]),
            channels=int(u["channels"]),
            channel_mult=list(u["channel_mult"]),
            num_res_blocks=int(u["num_res_blocks"]),
            attention_levels=list(u.get("attention_levels", [])),
            dropout=float(u.get("dropout", 0.0)),
            num_heads=int(u.get("num_heads", 1)),
            skip_rescale=bool(u.get("skip_rescale", False)),
            resolution=int(data["resolution"]),
        )
    except KeyError as exc:
        raise ConfigError(f"config lacks key {exc} needed to build the U-Net") from None
    try:
        return UNet(**kwargs)
    except ValueError as exc:
        raise ConfigError(
            f"cannot build the U-Net from keys {where} / data.resolution / data.channels: {exc}"
        ) from None


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``module`` (optionally only those requiring grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class CUDAGraphed(nn.Module):
    """``net(x, t)`` replayed from CUDA graphs: one graph per input shape, dtype and
    autocast state, captured on first use (after a few warm-up calls on a side stream),
    then replayed with the inputs copied into its static buffers. Removes the per-kernel
    launch cost that dominates small-batch sampling on a GPU. Warm-up and capture run
    with autocast's cache of cast weights off (capture needs that), whatever the caller's
    autocast context sets; dtype and on/off follow it. Each call returns a copy of the
    graph's output, which the next replay overwrites. Inference only: the wrapper and its
    net stay in eval mode (``train()`` keeps them there, so a graph never holds dropout),
    and on CUDA it must be called under ``torch.inference_mode()``, as the samplers do. On
    any other device it calls ``net`` directly.
    """

    def __init__(self, net: nn.Module, warmup: int = 3):
        super().__init__()
        self.net = net
        self.warmup = warmup
        self._graphs: dict[tuple, tuple] = {}
        self.train(False)

    def train(self, mode: bool = True) -> CUDAGraphed:
        """Stays in eval mode whatever ``mode`` says (the graphs are inference graphs)."""
        return super().train(False)

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        if x.device.type != "cuda":
            return self.net(x, t)
        if not torch.is_inference_mode_enabled():
            raise RuntimeError("CUDAGraphed replays inference graphs: call it under "
                               "torch.inference_mode()")
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        key = (tuple(x.shape), x.dtype, tuple(t.shape), t.dtype, torch.is_autocast_enabled("cuda"),
               torch.get_autocast_dtype("cuda"))
        with torch.cuda.device(x.device):  # capture and replay on x's GPU
            if key not in self._graphs:
                self._graphs[key] = self._capture(x, t)
            graph, sx, st, out = self._graphs[key]
            sx.copy_(x)
            st.copy_(t)
            graph.replay()
            return out.clone()

    def _capture(self, x: torch.Tensor, t: torch.Tensor) -> tuple:
        sx, st = x.clone(), t.clone()
        no_cache = torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"),
                                  enabled=torch.is_autocast_enabled("cuda"), cache_enabled=False)
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with no_cache:
            with torch.cuda.stream(side):
                for _ in range(self.warmup):
                    self.net(sx, st)
            torch.cuda.current_stream(x.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self.net(sx, st)
        return graph, sx, st, out
