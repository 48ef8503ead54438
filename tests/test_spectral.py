"""Tests for ihdm.spectral: PSD normalisation, power-law fits, noise floors, heat attenuation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.ndimage
import torch

from ihdm import spectral
from ihdm.ddpm import DDPM
from ihdm.heat import blur_schedule, blur_times, dissipate


def power_law_images(n: int, H: int, W: int, alpha: float, seed: int, crop_from: int | None = None) -> np.ndarray:
    """Random-phase images with amplitude ∝ f^(−α/2) (PSD ∝ f^−α), NHWC float.

    Synthesised periodically on a ``crop_from``-sized square (default: H×W itself) and
    cropped to H×W, which makes them non-periodic like photographs.
    """
    rng = np.random.default_rng(seed)
    S0, S1 = (crop_from, crop_from) if crop_from else (H, W)
    f = np.hypot(np.fft.fftfreq(S0)[:, None], np.fft.fftfreq(S1)[None, :])
    f[0, 0] = 1.0
    amplitude = f ** (-alpha / 2)
    amplitude[0, 0] = 0.0
    z = np.fft.fft2(rng.standard_normal((n, S0, S1)))
    x = np.fft.ifft2(z / np.abs(z) * amplitude).real[:, :H, :W]
    return x[..., None]


@pytest.mark.parametrize("alpha", [1.5, 2.0, 2.5])
@pytest.mark.parametrize("basis", ["dct", "fft"])
def test_power_law_exponent_recovered(alpha: float, basis: str) -> None:
    x = power_law_images(24, 64, 64, alpha, seed=int(alpha * 10))
    freqs, psd = spectral.radial_psd(x, basis=basis)
    fit = spectral.fit_power_law(freqs, psd, *spectral.default_fit_range(64, 64))
    assert abs(fit["alpha"] - alpha) < 0.1
    assert 0 < fit["alpha_stderr"] < 0.1
    assert fit["r_squared"] > 0.98


@pytest.mark.parametrize("alpha", [1.5, 2.5])
def test_power_law_on_nonperiodic_nonsquare_crops(alpha: float) -> None:
    x = power_law_images(32, 48, 64, alpha, seed=7, crop_from=256)
    freqs, psd = spectral.radial_psd(x)
    assert freqs[0] == pytest.approx(1 / 96, rel=0.2)  # first DCT bin of the shorter axis
    assert freqs[-1] <= 0.5 + 1e-9
    fit = spectral.fit_power_law(freqs, psd, *spectral.default_fit_range(48, 64))
    assert abs(fit["alpha"] - alpha) < 0.1


@pytest.mark.parametrize("basis", ["dct", "fft"])
@pytest.mark.parametrize("shape", [(32, 32), (24, 40)])
def test_white_noise_is_flat_at_its_variance(basis: str, shape: tuple[int, int]) -> None:
    s = 0.1
    x = s * np.random.default_rng(0).standard_normal((64, *shape, 3))
    freqs, psd = spectral.radial_psd(x, basis=basis)
    fit = spectral.fit_power_law(freqs, psd)
    assert abs(fit["alpha"]) < 3 * fit["alpha_stderr"] + 0.02
    assert psd.mean() == pytest.approx(s**2 * spectral.WHITE_NOISE_PSD, rel=0.02)
    assert np.all(np.abs(psd / s**2 - 1) < 0.15)


def test_uint8_is_scaled_and_layouts_agree() -> None:
    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 256, size=(5, 16, 20, 3), dtype=np.uint8)
    f1, p1 = spectral.radial_psd(u8)
    f2, p2 = spectral.radial_psd(u8.astype(np.float32) / 255.0)
    f3, p3 = spectral.radial_psd(u8.transpose(0, 3, 1, 2).astype(np.float64) / 255.0, layout="NCHW")
    np.testing.assert_allclose(f1, f2)
    np.testing.assert_allclose(p1, p2, rtol=1e-5)
    np.testing.assert_allclose(p1, p3, rtol=1e-5)
    # uniform 0..255 noise: variance (256² − 1)/12 / 255²
    assert p1.mean() == pytest.approx((256**2 - 1) / 12 / 255**2, rel=0.05)


def test_bad_input_is_refused() -> None:
    with pytest.raises(spectral.SpectralError, match="dimensions"):
        spectral.radial_psd(np.zeros((2, 2, 8, 8, 1, 1)))
    with pytest.raises(spectral.SpectralError, match="NaN"):
        spectral.radial_psd(np.full((1, 8, 8, 1), np.nan))
    with pytest.raises(spectral.SpectralError, match="basis"):
        spectral.radial_psd(np.zeros((1, 8, 8, 1)), basis="wavelet")
    with pytest.raises(spectral.SpectralError, match="at least 3"):
        spectral.fit_power_law([0.1, 0.2, 0.3], [1.0, 0.5, 0.2], fmin=0.15)
    with pytest.raises(spectral.SpectralError, match="schedule"):
        spectral.ddpm_alpha_bar({"schedule": "quadratic"})


def test_eigenvalue_mapping_matches_dct_eigenvalues() -> None:
    H, W = 12, 20
    f = spectral.radial_frequencies(H, W, "dct")
    n, m = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    lam = np.pi**2 * (n**2 / H**2 + m**2 / W**2)
    np.testing.assert_allclose(spectral.laplacian_eigenvalue(f), lam, rtol=1e-12)


def _photo_crops(size: int = 96) -> np.ndarray:
    import skimage.data

    cam = skimage.data.camera()
    return np.stack([cam[i : i + size, j : j + size] for i in (40, 200, 380) for j in (40, 200, 380)])[..., None]


@pytest.mark.parametrize("blur_sigma", [1.0, 2.0])
def test_heat_attenuation_of_blurred_image(blur_sigma: float) -> None:
    """A Gaussian blur (reflecting border) of a photograph attenuates its PSD by exp(−2λt), t = σ²/2."""
    x = _photo_crops().astype(np.float64) / 255.0
    freqs, psd = spectral.radial_psd(x)
    blurred = np.stack([scipy.ndimage.gaussian_filter(im, (blur_sigma, blur_sigma, 0), mode="reflect", truncate=8)
                        for im in x])
    _, psd_blur = spectral.radial_psd(blurred)
    t = blur_sigma**2 / 2
    expected = spectral.heat_attenuation(freqs, t)
    resolved = expected > 1e-3
    assert resolved.sum() >= 10
    np.testing.assert_allclose(np.log(psd_blur / psd)[resolved], np.log(expected[resolved]), atol=0.08)
    # the exact heat operator of ihdm.heat gives the same attenuation
    u = torch.from_numpy(x[..., 0])
    _, psd_heat = spectral.radial_psd(dissipate(u, t).numpy()[..., None])
    np.testing.assert_allclose(psd_heat[resolved], spectral.attenuated_psd(freqs, psd, t)[resolved], rtol=0.08)


def test_ihdm_noise_floor_matches_noisy_blurred_data() -> None:
    """PSD of u_k = F(t_k)u_0 + σε equals exp(−2λt_k)·PSD + σ²."""
    x = power_law_images(128, 32, 32, 2.0, seed=3) * 0.05 + 0.5
    sigma, t = 0.01, 2.0
    freqs, psd = spectral.radial_psd(x)
    u = torch.from_numpy(x[..., 0])
    gen = torch.Generator().manual_seed(0)
    u_k = dissipate(u, t) + sigma * torch.randn(u.shape, generator=gen, dtype=u.dtype)
    _, psd_k = spectral.radial_psd(u_k.numpy()[..., None])
    predicted = spectral.attenuated_psd(freqs, psd, t) + sigma**2
    np.testing.assert_allclose(psd_k, predicted, rtol=0.2)
    erased = spectral.attenuated_psd(freqs, psd, t) < 0.01 * sigma**2
    assert erased.sum() > 10
    assert psd_k[erased].mean() == pytest.approx(sigma**2, rel=0.05)


def test_ddpm_noise_floor_matches_q_sample() -> None:
    """With x = 2u − 1 and x_t = sqrt(ᾱ)x + sqrt(1−ᾱ)ε, the [0, 1]-scale floor is (1−ᾱ)/(4ᾱ)."""
    process = DDPM(T=1000, schedule="linear", ddim_steps=1)
    abar = spectral.ddpm_alpha_bar({"T": 1000, "schedule": "linear"})
    np.testing.assert_allclose(abar, process.alpha_bar.numpy())
    u = power_law_images(128, 32, 32, 2.0, seed=4)[..., 0] * 0.05 + 0.5
    t = 10  # floor comparable to the data's mid-band power
    x0 = torch.from_numpy(DDPM.to_model(torch.from_numpy(u)).numpy()[:, None])
    gen = torch.Generator().manual_seed(0)
    x_t = process.q_sample(x0, torch.tensor(t), generator=gen)
    relative = (x_t[:, 0].numpy() / np.sqrt(abar[t]) + 1) / 2  # back on the [0, 1] scale of u
    freqs, psd = spectral.radial_psd(u[..., None])
    _, psd_t = spectral.radial_psd(relative[..., None])
    assert spectral.ddpm_data_scale() == 2.0
    floor = spectral.ddpm_noise_floor(abar[t], data_scale=spectral.ddpm_data_scale())
    assert floor == pytest.approx((1 - abar[t]) / (4 * abar[t]))
    assert psd.min() < floor < psd.max()
    np.testing.assert_allclose(psd_t, psd + floor, rtol=0.2)
    assert np.mean(psd_t - psd) == pytest.approx(floor, rel=0.05)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_erased_frequency_decreases_with_level(schedule: str) -> None:
    x = power_law_images(16, 32, 32, 2.0, seed=5) * 0.05 + 0.5
    freqs, psd = spectral.radial_psd(x)
    abar = spectral.ddpm_alpha_bar({"T": 1000, "schedule": schedule})
    level, f_dd = spectral.erased_frequency_ddpm(freqs, psd, abar)
    assert level.shape == f_dd.shape == (1000,)
    assert level[0] == pytest.approx(1e-3) and level[-1] == 1.0
    assert np.all(np.diff(f_dd) <= 1e-12)
    assert f_dd[0] > 4 * f_dd[-1]
    t_k = blur_times(blur_schedule(50, 0.5, 20.0))
    level_k, f_ih = spectral.erased_frequency_ihdm(freqs, psd, t_k, sigma=0.01)
    assert level_k.shape == f_ih.shape == (51,)
    assert level_k[0] == 0.0 and level_k[-1] == 1.0
    assert np.all(np.diff(f_ih) <= 1e-12)
    assert f_ih[0] > 4 * f_ih[-1]
    assert np.all((f_ih >= freqs[0]) & (f_ih <= freqs[-1]))


def test_erased_frequency_finds_the_crossing() -> None:
    freqs = np.geomspace(0.01, 0.5, 40)
    psd = 1e-3 * freqs**-2.0  # crosses a floor c at f = sqrt(1e-3 / c)
    for c in (1.0, 0.1, 0.02):
        (fe,) = spectral.erased_frequency(freqs, psd, [c])
        assert fe == pytest.approx(np.sqrt(1e-3 / c), rel=1e-6)
    lo, hi = spectral.erased_frequency(freqs, psd, [1e3, 1e-9])
    assert lo == freqs[0] and hi == freqs[-1]  # everything / nothing below the floor


def test_natural_photographs_have_natural_exponent() -> None:
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = [skimage.data.camera(), skimage.data.coffee(), skimage.data.chelsea(), *load_sample_images().images]
    for photo in photos:
        im = photo if photo.ndim == 3 else photo[..., None]
        crops = np.stack([im[i : i + 64, j : j + 64] for i in range(0, im.shape[0] - 64, 64)
                          for j in range(0, im.shape[1] - 64, 64)])
        freqs, psd = spectral.radial_psd(crops)
        alpha = spectral.fit_power_law(freqs, psd, *spectral.default_fit_range(64, 64))["alpha"]
        assert 1.5 <= alpha <= 3.0


def test_spectral_summary_is_plain_json() -> None:
    x = (np.clip(power_law_images(8, 32, 32, 2.0, seed=6) * 0.05 + 0.5, 0, 1) * 255).round().astype(np.uint8)
    heat = {"K": 20, "blur_sigma_min": 0.5, "blur_sigma_max": 16.0, "sigma": 0.01}
    ddpm = {"T": 200, "schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
    summary = spectral.spectral_summary(x, heat, ddpm)
    again = json.loads(json.dumps(summary))
    assert again == summary
    assert abs(summary["alpha"] - 2.0) < 0.3
    assert len(summary["ddpm"]["level"]) == 200 and len(summary["ihdm"]["level"]) == 21
    assert summary["ihdm"]["noise_floor"] == pytest.approx(1e-4)
    at = summary["ihdm"]["erased_frequency_at_level"]
    assert at["0.1"] >= at["0.5"] >= at["1"]
    assert [s["k"] for s in summary["ihdm"]["selected"]] == sorted({round(q * 20) for q in spectral.FIGURE_LEVELS})


@pytest.mark.parametrize("alpha", [1.5, 2.0, 2.5, 3.0])
def test_power_law_recovered_at_32_px_over_the_cifar_fit_range(alpha: float) -> None:
    """The fit config/cifar10_jpeg.yaml states (range below JPEG's band, basis) recovers α
    of 1/f^α fields at 32 × 32 cut from larger non-periodic ones, as its images are, and
    spectral_summary records that range and basis."""
    from pathlib import Path

    import yaml

    cfg = yaml.safe_load((Path(__file__).parents[1] / "config" / "cifar10_jpeg.yaml").read_text())
    (fmin, fmax), basis = cfg["evaluate"]["spectral_fit"], cfg["evaluate"]["spectral_fit_basis"]
    assert fmax < 0.25  # below the band the data's README warns of
    x = power_law_images(128, 32, 32, alpha, seed=int(alpha * 10), crop_from=128)
    summary = spectral.spectral_summary(x, {"K": 5}, {"T": 50}, fmin=fmin, fmax=fmax, fit_basis=basis)
    fit = summary["fit"]
    assert abs(fit["alpha"] - alpha) < 0.1
    assert fit["basis"] == basis and fmin <= fit["fmin"] < fit["fmax"] <= fmax and fit["n_points"] >= 4
    assert summary["basis"] == "dct"  # the curves stay in the heat equation's basis
