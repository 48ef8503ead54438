"""Numbers for the paper's emergent properties and for memorisation.

* ``memorization``: distance from each sample to its nearest training image, set against
  the same distance for held-out test images (a model that copies its training set has
  samples much closer to the training images than test images are).
* ``interpolation_smoothness``: for each interpolation strip, the largest step between
  consecutive frames over the mean step (1 = perfectly even; large = a jump).
* ``shared_state_statistics``: how much of the variation between samples is in the mean
  colour, the coarse layout and the detail, and how alike their luminance-normalised
  structure is (``structure_correlation``), beside random samples — the numbers behind
  "shared prior state keeps the colours, shared noise keeps the structure".
* ``mass_redistribution`` / ``function_simplicity``: property (c), "the forward process
  makes the learned function simple": per level, how much of the network's output changes
  the total mass (its spatial mean) and how large it is against its input, for IHDM's f_θ
  and DDPM's ε-network at matched levels.

The sample statistics take uint8 NHWC arrays (the on-disk convention); all return plain dicts.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import to_tensor


def _flat(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(images)).reshape(len(images), -1).float() / 255.0


def nearest_distances(queries: np.ndarray, reference: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Euclidean distance (pixels in [0, 1]) from each query image to its nearest reference."""
    q, r = _flat(queries), _flat(reference)
    out = []
    for i in range(0, len(q), chunk):
        out.append(torch.cdist(q[i : i + chunk], r).min(dim=1).values)
    return torch.cat(out).numpy()


def memorization(samples: np.ndarray, train: np.ndarray, test: np.ndarray) -> dict:
    """Nearest-training-image distances of samples against those of test images."""
    d_samples = nearest_distances(samples, train)
    d_test = nearest_distances(test, train)
    threshold = float(np.quantile(d_test, 0.01))
    return {
        "sample_to_train_median": float(np.median(d_samples)),
        "sample_to_train_mean": float(d_samples.mean()),
        "test_to_train_median": float(np.median(d_test)),
        "test_to_train_mean": float(d_test.mean()),
        "ratio_of_medians": float(np.median(d_samples) / max(np.median(d_test), 1e-12)),
        # share of samples closer to a training image than 99% of test images are
        "share_below_test_1st_percentile": float((d_samples < threshold).mean()),
        "n_samples": int(len(samples)),
        "n_test": int(len(test)),
        "n_train": int(len(train)),
    }


def interpolation_smoothness(frames: np.ndarray, n_frames: int) -> dict:
    """``frames``: (rows × n_frames) images, row by row. Per row: max step / mean step."""
    x = _flat(frames)
    if len(x) % n_frames:
        raise ValueError(f"{len(x)} frames do not split into rows of {n_frames}")
    rows = x.view(-1, n_frames, x.shape[1])
    steps = (rows[:, 1:] - rows[:, :-1]).norm(dim=2)  # (rows, n_frames-1)
    ratio = (steps.max(1).values / steps.mean(1).clamp_min(1e-12)).numpy()
    return {
        "max_over_mean_step": float(ratio.mean()),
        "max_over_mean_step_per_row": [float(r) for r in ratio],
        "mean_step": float(steps.mean()),
        "endpoint_distance": float((rows[:, -1] - rows[:, 0]).norm(dim=1).mean()),
        "rows": int(rows.shape[0]),
        "frames": int(n_frames),
    }


def _lowpass(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Block-average then upsample: the image's coarse layout."""
    coarse = torch.nn.functional.avg_pool2d(x, factor, ceil_mode=True)
    return torch.nn.functional.interpolate(coarse, size=x.shape[-2:], mode="nearest")


def structure_correlation(images: np.ndarray) -> float:
    """Mean Pearson correlation, over all pairs of images, of their luminance-normalised
    images: the luma (ITU-R 601 weights; the grey channel itself for one channel) minus its
    mean, over its standard deviation. Independent of each image's mean colour, brightness
    and contrast: 1 for one pattern in different colours, about 0 for unrelated patterns.
    A flat image (no structure) counts as uncorrelated with every other."""
    x = to_tensor(np.asarray(images)).double()
    if x.shape[0] < 2:
        raise ValueError(f"structure_correlation needs at least 2 images, got {x.shape[0]}")
    if x.shape[1] == 3:
        luma = torch.einsum("nchw,c->nhw", x, torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype))
    else:
        luma = x.mean(dim=1)
    y = luma.flatten(1)
    y = y - y.mean(dim=1, keepdim=True)
    norm = y.norm(dim=1, keepdim=True)
    z = torch.where(norm > 1e-9, y / norm.clamp_min(1e-12), torch.zeros_like(y))
    corr = z @ z.T
    n = corr.shape[0]
    return float((corr.sum() - corr.diagonal().sum()) / (n * (n - 1)))


def shared_state_statistics(samples: np.ndarray, factor: int = 7, reference: np.ndarray | None = None) -> dict:
    """What a set of samples shares: the between-sample spread of the per-image mean colour
    (``mean_colour_std``: the std over samples, averaged over channels, in [0, 1] units),
    of the coarse layout and of the fine detail, and the ``structure_correlation`` of their
    luminance-normalised images. IHDM's shared prior state keeps the mean colour (small
    spread) and varies the shape (correlation near random sampling's); shared noise keeps
    the structure (high correlation) and varies the colour. ``reference``: samples drawn
    at random from the same model, whose two numbers are given beside, with the ratios."""
    x = to_tensor(np.asarray(samples))
    mean_colour = x.mean(dim=(2, 3))  # (N, C)
    coarse = _lowpass(x, factor)
    fine = x - coarse
    out = {
        "mean_colour_std": float(mean_colour.std(0).mean()),
        "structure_correlation": structure_correlation(samples),
        "coarse_layout_std": float(coarse.std(0).mean()),
        "fine_detail_std": float(fine.std(0).mean()),
        "n_samples": int(len(x)),
    }
    if reference is not None:
        ref_colour = float(to_tensor(np.asarray(reference)).mean(dim=(2, 3)).std(0).mean())
        ref_structure = structure_correlation(reference)
        out.update({
            "random_mean_colour_std": ref_colour,
            "random_structure_correlation": ref_structure,
            # below 1: the samples share their mean colour more than random samples do
            "mean_colour_std_ratio": out["mean_colour_std"] / max(ref_colour, 1e-12),
            # above 0: the samples share their structure more than random samples do
            "structure_correlation_gain": out["structure_correlation"] - ref_structure,
            "n_random": int(len(reference)),
        })
    return out


def mass_redistribution(inputs: torch.Tensor, outputs: torch.Tensor) -> dict:
    """How much of a network's ``outputs`` (B, C, H, W) only moves mass around, per image
    and averaged over the batch:

    * ``dc_fraction``: energy of the per-channel spatial mean of the output over the
      output's energy (0: a pure redistribution, the total of every channel kept, as the
      heat equation and its inverse do; 1: a uniform shift of the whole channel);
    * ``energy_ratio``: ‖output‖ / ‖input‖ (how big a change the network makes).
    """
    out = outputs.double().flatten(2)  # (B, C, HW)
    inp = inputs.double().flatten(2)
    energy = out.pow(2).sum(dim=(1, 2))
    dc = out.mean(dim=2).pow(2).sum(dim=1) * out.shape[2]
    dc_fraction = dc / energy.clamp_min(1e-300)
    ratio = energy.sqrt() / inp.pow(2).sum(dim=(1, 2)).sqrt().clamp_min(1e-300)
    return {"dc_fraction": float(dc_fraction.mean()), "energy_ratio": float(ratio.mean()),
            "n_images": int(out.shape[0])}


@torch.inference_mode()
def function_simplicity(process, net: torch.nn.Module, images: np.ndarray, *, levels: int = 10,
                        seed: int = 0, batch_size: int = 64) -> dict:
    """:func:`mass_redistribution` of the model's network at ``levels`` matched levels, the
    fractions (1..levels)/levels of its chain (IHDM: level k = fraction × K; DDPM: step
    fraction × (T-1)), each on the uint8 NHWC ``images`` pushed to that level by the forward
    process (the model's ``network_io``). Returns {"levels": [{"fraction", "level",
    "dc_fraction", "energy_ratio"}], "mean_dc_fraction", "mean_energy_ratio", ...}."""
    device = next(net.parameters()).device
    u0 = to_tensor(images)
    g = torch.Generator(device="cpu").manual_seed(seed)
    rows = []
    for fraction in np.arange(1, levels + 1) / levels:
        stats = {"dc": 0.0, "ratio": 0.0}
        for start in range(0, len(u0), batch_size):
            batch = u0[start : start + batch_size].to(device)
            level, inputs, outputs = process.network_io(net, batch, float(fraction), generator=g)
            r = mass_redistribution(inputs, outputs)
            stats["dc"] += r["dc_fraction"] * len(batch)
            stats["ratio"] += r["energy_ratio"] * len(batch)
        rows.append({"fraction": float(fraction), "level": int(level),
                     "dc_fraction": stats["dc"] / len(u0), "energy_ratio": stats["ratio"] / len(u0)})
    return {"levels": rows,
            "mean_dc_fraction": float(np.mean([r["dc_fraction"] for r in rows])),
            "mean_energy_ratio": float(np.mean([r["energy_ratio"] for r in rows])),
            "n_images": int(len(u0)), "model": getattr(process, "name", None)}
