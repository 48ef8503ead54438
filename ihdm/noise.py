"""What the Gaussian diffusion models share (DDPM, blurring diffusion; IHDM uses slerp):
seeded draws, spherical interpolation, the [-1, 1] model scale and the network's device."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def randn(shape: Sequence[int], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Standard normal noise drawn from ``generator`` (on its device, so that a seed gives
    the same draws wherever the model runs), in ``like``'s device and dtype."""
    if generator is None:
        return torch.randn(tuple(shape), device=like.device, dtype=like.dtype)
    z = torch.randn(tuple(shape), generator=generator, device=generator.device)
    return z.to(device=like.device, dtype=like.dtype)


def slerp(a: Tensor, b: Tensor, w: float) -> Tensor:
    """Spherical interpolation between noise tensors ``a`` and ``b`` at weight ``w``,
    one great circle per leading item (computed in float64, returned in a's dtype).
    Nearly parallel pairs fall back to linear interpolation."""
    a64, b64 = a.double(), b.double()
    a_flat, b_flat = a64.flatten(1), b64.flatten(1)
    cos = (a_flat * b_flat).sum(1) / (a_flat.norm(dim=1) * b_flat.norm(dim=1)).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    so = torch.sin(omega)
    small = so.abs() < 1e-6
    wa = torch.where(small, torch.full_like(so, 1 - w), torch.sin((1 - w) * omega) / so.where(~small, 1))
    wb = torch.where(small, torch.full_like(so, w), torch.sin(w * omega) / so.where(~small, 1))
    shape = (-1,) + (1,) * (a.ndim - 1)
    return (wa.view(shape) * a64 + wb.view(shape) * b64).to(a.dtype)


def to_model(u: Tensor) -> Tensor:
    """[0, 1] data -> the models' [-1, 1] scale (Ho et al.'s)."""
    return 2.0 * u - 1.0


def to_data(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def net_device(net: nn.Module) -> torch.device:
    """The device of ``net``'s first parameter (the CPU for a network without any)."""
    param = next(net.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
