"""The exact heat operator F(t): checked against scipy's DCT, an independent finite-
difference solver, and the heat equation's own properties."""

import numpy as np
import pytest
import scipy.fft
import torch

from ihdm.heat import HeatOperator, blur_schedule, blur_times, dissipate


def scipy_heat(u: np.ndarray, t: float) -> np.ndarray:
    """F(t)u through scipy's orthonormal DCT-II over the last two axes."""
    H, W = u.shape[-2:]
    lam = (np.pi * np.arange(H)[:, None] / H) ** 2 + (np.pi * np.arange(W)[None, :] / W) ** 2
    coeffs = scipy.fft.dctn(u, type=2, norm="ortho", axes=(-2, -1))
    return scipy.fft.idctn(coeffs * np.exp(-lam * t), type=2, norm="ortho", axes=(-2, -1))


def finite_difference_heat(u: np.ndarray, t: float, dt: float = 0.02) -> np.ndarray:
    """Explicit Euler on du/dt = Δu, 5-point Laplacian, Neumann via reflected ghost cells."""
    steps = int(round(t / dt))
    u = u.copy()
    for _ in range(steps):
        p = np.pad(u, 1, mode="edge")
        lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * u
        u = u + dt * lap
    return u


def smooth_image(H: int, W: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    img = np.zeros((H, W))
    for _ in range(4):
        cy, cx, s = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(4, 7)
        img += rng.uniform(0.2, 1) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s**2))
    return img


@pytest.mark.parametrize("shape", [(28, 28), (32, 32), (24, 40)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_scipy_dct_route(shape, dtype):
    rng = np.random.default_rng(1)
    u = rng.uniform(size=(3, 2, *shape))
    for t in [0.0, 0.125, 3.7, 200.0]:
        ours = dissipate(torch.tensor(u, dtype=dtype), t).double().numpy()
        assert np.abs(ours - scipy_heat(u, t)).max() < 1e-6


def test_per_image_times_and_operator_agree_with_scipy():
    rng = np.random.default_rng(2)
    u = rng.uniform(size=(6, 3, 20, 36))
    times = blur_times(blur_schedule(5, 0.5, 12.0))  # 6 levels, 0..5
    ours = dissipate(torch.tensor(u), torch.tensor(times)).numpy()
    ref = np.stack([scipy_heat(u[i], times[i]) for i in range(6)])
    assert np.abs(ours - ref).max() < 1e-6
    op = HeatOperator(times, 20, 36, dtype=torch.float64)
    k = torch.tensor([5, 0, 3, 1, 4, 2])
    blurred = op.blur(torch.tensor(u), k).numpy()
    for i, ki in enumerate(k.tolist()):
        assert np.abs(blurred[i] - scipy_heat(u[i], times[ki])).max() < 1e-6
    a, b = op.blur_pair(torch.tensor(u), torch.tensor([1, 2, 3, 4, 5, 5]))
    assert torch.allclose(a, op.blur(torch.tensor(u), torch.tensor([1, 2, 3, 4, 5, 5])), atol=1e-12)
    assert torch.allclose(b, op.blur(torch.tensor(u), torch.tensor([0, 1, 2, 3, 4, 4])), atol=1e-12)


def test_float32_operator_exact_to_1e6():
    rng = np.random.default_rng(3)
    u = rng.uniform(size=(16, 3, 32, 32))
    times = blur_times(blur_schedule(200, 0.5, 24.0))
    op = HeatOperator(times, 32, 32, dtype=torch.float32)
    k = torch.tensor(rng.integers(0, 201, size=16))
    ours = op.blur(torch.tensor(u, dtype=torch.float32), k).double().numpy()
    ref = np.stack([scipy_heat(u[i], times[ki]) for i, ki in enumerate(k.tolist())])
    assert np.abs(ours - ref).max() < 1e-6


def test_agrees_with_finite_difference_solution():
    u0 = smooth_image(30, 22)
    t = 3.0
    fd = finite_difference_heat(u0, t, dt=0.02)
    exact = dissipate(torch.tensor(u0), t).numpy()
    err = np.abs(fd - exact).max()
    # the explicit scheme's error shrinks with the grid's discretisation error; for this
    # smooth image it is a small fraction of the image's range, and far below the change
    # the heat flow itself makes
    change = np.abs(exact - u0).max()
    assert err < 0.02 * change, (err, change)
    # a wrong boundary condition (periodic) is caught by the same comparison
    periodic = np.real(np.fft.ifft2(np.fft.fft2(u0) * np.exp(
        -t * (2 - 2 * np.cos(2 * np.pi * np.fft.fftfreq(30)))[:, None]
        - t * (2 - 2 * np.cos(2 * np.pi * np.fft.fftfreq(22)))[None, :])))
    assert np.abs(fd - periodic).max() > 5 * err


def test_semigroup_mean_and_limit():
    rng = np.random.default_rng(4)
    u = torch.tensor(rng.uniform(size=(2, 3, 28, 28)))
    s, t = 1.3, 4.1
    assert torch.allclose(dissipate(dissipate(u, s), t), dissipate(u, s + t), atol=1e-10)
    means = u.mean(dim=(-2, -1))
    assert torch.allclose(dissipate(u, 7.0).mean(dim=(-2, -1)), means, atol=1e-10)
    flat = dissipate(u, 1e6)
    assert torch.allclose(flat, means[..., None, None].expand_as(flat), atol=1e-10)
    # a blur is not the identity (guards against a decay sign error)
    assert (dissipate(u, 1.0) - u).abs().max() > 0.1


def test_schedule():
    sig = blur_schedule(100, 0.5, 20.0)
    assert sig.shape == (101,) and sig[0] == 0
    assert np.isclose(sig[1], 0.5) and np.isclose(sig[-1], 20.0)
    ratios = sig[2:] / sig[1:-1]
    assert np.allclose(ratios, ratios[0])  # log-spaced
    assert np.allclose(blur_times(sig), sig**2 / 2)
    with pytest.raises(ValueError, match="blur_sigma_max"):
        blur_schedule(10, 2.0, 1.0)
    with pytest.raises(ValueError, match="K"):
        blur_schedule(0, 0.5, 1.0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="leading"):
        dissipate(torch.zeros(3, 8, 8), torch.zeros(2))
    with pytest.raises(ValueError, match="non-negative"):
        dissipate(torch.zeros(3, 8, 8), -1.0)
    op = HeatOperator([0.0, 1.0], 8, 8)
    with pytest.raises(ValueError, match=r"level must lie in 0\.\.1, got 2\.\.2"):
        op.blur(torch.zeros(1, 1, 8, 8), 2)
    with pytest.raises(ValueError, match=r"blur_pair needs levels in 1\.\.1, got 0\.\.1"):
        op.blur_pair(torch.zeros(2, 1, 8, 8), torch.tensor([1, 0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    u = torch.rand(4, 3, 32, 32)
    assert torch.allclose(dissipate(u.cuda(), 2.0).cpu(), dissipate(u, 2.0), atol=1e-6)
    # one time per image, given on either device (ihdm bench passes them on CUDA)
    t = torch.rand(u.shape[0], dtype=torch.float64) * 5
    for tt in (t, t.cuda(), t.numpy()):
        assert torch.allclose(dissipate(u.cuda(), tt).cpu(), dissipate(u, t), atol=1e-6)
