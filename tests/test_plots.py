"""Tests for ihdm.plots: every figure writes a PNG and a PDF; grids have the right size."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ihdm import plots, spectral
from ihdm.heat import blur_schedule


def _check_written(paths: tuple[Path, Path]) -> None:
    png, pdf = paths
    assert png.suffix == ".png" and pdf.suffix == ".pdf"
    assert png.stat().st_size > 1000 and pdf.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    with Image.open(png) as im:
        assert min(im.size) > 50
    leftovers = [p for p in png.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temporary files left behind


def _images(n: int, H: int = 12, W: int = 10, C: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, H, W, C), dtype=np.uint8)


@pytest.mark.parametrize(("n", "ncol", "rows", "cols"), [(7, 3, 3, 3), (16, None, 4, 4), (5, None, 2, 3), (2, 8, 1, 2)])
def test_image_grid_dimensions(n: int, ncol: int | None, rows: int, cols: int) -> None:
    x = _images(n, 12, 10, 3)
    grid = plots.image_grid(x, ncol=ncol, padding=2, pad_value=255)
    assert grid.dtype == np.uint8
    assert grid.shape == (rows * 12 + (rows + 1) * 2, cols * 10 + (cols + 1) * 2, 3)
    # image i sits at row i // cols, column i % cols
    i = n - 1
    r, c = divmod(i, cols)
    np.testing.assert_array_equal(grid[2 + r * 14 : 2 + r * 14 + 12, 2 + c * 12 : 2 + c * 12 + 10], x[i])
    assert (grid[:2] == 255).all() and (grid[:, :2] == 255).all()


def test_image_grid_greyscale_and_float() -> None:
    x = np.linspace(0, 1, 4 * 5 * 6).reshape(4, 5, 6).astype(np.float32)
    grid = plots.image_grid(x, ncol=2, padding=0)
    assert grid.shape == (10, 12, 1)
    assert grid[0, 0, 0] == 0 and grid[-1, -1, 0] == 255
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plots.image_grid(x * 3)
    with pytest.raises(ValueError, match="shape"):
        plots.image_grid(np.zeros((2, 5, 5, 4), np.uint8))


def test_save_grid_png(tmp_path: Path) -> None:
    out = plots.save_grid_png(_images(6, C=1), tmp_path / "grid.png", ncol=3)
    with Image.open(out) as im:
        assert im.size == (3 * 10 + 4 * 2, 2 * 12 + 3 * 2)
        assert im.mode == "L"


def test_save_figure_suffixes(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    for name in ("a", "b.png", "c.pdf"):
        png, pdf = plots.save_figure(fig, tmp_path / name)
        stem = name.split(".")[0]
        assert png == tmp_path / f"{stem}.png" and pdf == tmp_path / f"{stem}.pdf"
        _check_written((png, pdf))


def test_sample_grid(tmp_path: Path) -> None:
    _check_written(plots.sample_grid(_images(9), tmp_path / "samples", title="samples"))
    _check_written(plots.sample_grid(_images(4, C=1), tmp_path / "grey.png"))


def test_trajectory_and_interpolation_strips(tmp_path: Path) -> None:
    traj = np.stack([_images(5, seed=s) for s in range(3)])  # (n=3, F=5, H, W, C)
    _check_written(plots.trajectory_strip(traj, tmp_path / "traj", levels=[50, 40, 20, 10, 0]))
    with pytest.raises(plots.PlotError, match="labels"):
        plots.trajectory_strip(traj, tmp_path / "bad", levels=[1, 2])
    _check_written(plots.interpolation_strip(_images(7), tmp_path / "interp"))  # one row (F, H, W, C)
    _check_written(plots.interpolation_strip(traj, tmp_path / "interp2"))


def test_forward_blur_sequence(tmp_path: Path) -> None:
    _check_written(plots.forward_blur_sequence(_images(2, 16, 16), blur_schedule(10, 0.5, 8.0), tmp_path / "blur",
                                               n_frames=5))
    with pytest.raises(plots.PlotError, match="levels"):
        plots.forward_blur_sequence(_images(1, 16, 16), blur_schedule(10, 0.5, 8.0), tmp_path / "x", levels=[0, 11])


def test_spectral_figures(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((6, 16, 16, 1)) * 255).astype(np.uint8)
    summary = spectral.spectral_summary(x, {"K": 10, "blur_sigma_max": 8.0}, {"T": 100})
    _check_written(plots.psd_figure_from_summary(summary, tmp_path / "psd"))
    _check_written(plots.erased_frequency_figure_from_summary(summary, tmp_path / "erased"))
    f, p = np.asarray(summary["psd"]["freqs"]), np.asarray(summary["psd"]["psd"])
    _check_written(plots.psd_figure(f, p, tmp_path / "psd_plain", noise_floors=[("t=10", 1e-3)],
                                    attenuated=[("k=3", 1.0)], sigma=0.01))
    with pytest.raises(plots.PlotError, match="positive"):
        plots.psd_figure(f, -p, tmp_path / "bad")
    with pytest.raises(plots.PlotError, match="lacks key"):
        plots.psd_figure_from_summary({"psd": {}}, tmp_path / "bad")


def test_data_efficiency_figure(tmp_path: Path) -> None:
    rows = [{"model": m, "train_size": str(n), "seed": str(s), "fid": str(100 / np.log(n) + s + (m == "ddpm"))}
            for m in ("ihdm", "ddpm") for n in (100, 1000, 5000) for s in (0, 1)]
    _check_written(plots.data_efficiency_figure(rows, tmp_path / "eff"))  # metric found by itself
    _check_written(plots.data_efficiency_figure(rows[::2], tmp_path / "eff1", metric="fid"))  # one seed
    with pytest.raises(plots.PlotError, match="metric"):
        plots.data_efficiency_figure([{**r, "nll": 1.0} for r in rows], tmp_path / "bad")
    with pytest.raises(plots.PlotError, match="no rows"):
        plots.data_efficiency_figure([], tmp_path / "bad")


def test_loss_curve(tmp_path: Path) -> None:
    logs = {}
    for name in ("ihdm", "ddpm"):
        path = tmp_path / f"{name}.csv"
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["step", "loss", "lr", "images_per_s", "elapsed_s"])
            for step in range(50, 2050, 50):
                w.writerow([step, 1.0 / np.sqrt(step) + 0.01, 2e-4, 100.0, step / 10])
        logs[name] = path
    _check_written(plots.loss_curve(logs["ihdm"], tmp_path / "loss"))
    _check_written(plots.loss_curve(logs, tmp_path / "loss_both"))
    bad = tmp_path / "bad.csv"
    bad.write_text("step,value\n1,2\n")
    with pytest.raises(plots.PlotError, match="loss"):
        plots.loss_curve(bad, tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        plots.loss_curve(tmp_path / "missing.csv", tmp_path / "bad")
