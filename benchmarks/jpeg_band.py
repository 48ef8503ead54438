"""Where baseline JPEG at quality 75 attenuates 32-pixel natural images, and the power-law
exponent α of the offline CIFAR-10 JPEGs and of the photographs over several fit ranges.

The CIFAR-10 JPEGs (../shared/data/cifar10-jpeg) have no originals to compare with, so
the codec is measured on stand-ins: 32 × 32 crops of the scikit-image/scikit-learn
photographs shrunk 4× (anti-aliased, like CIFAR's thumbnails), encoded by Pillow at
quality 75 with 4:2:0 chroma subsampling (the standard tables, as the data's README says
of the CIFAR files). Per radial DCT frequency it prints the coherent gain
Σ c·ĉ / Σ c² (1: the signal kept; below 1: attenuated) and the error power
Σ (ĉ − c)² / Σ c² (block edges and quantisation noise).

    python benchmarks/jpeg_band.py [--train resources/folder/32px-<digest>/train.npz]
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import scipy.fft
from PIL import Image

from ihdm.data import _photograph_arrays, _to_mode, load_images, natural_photographs
from ihdm.spectral import fit_power_law, radial_frequencies, radial_psd

RANGES = [(0.0625, 0.1875), (0.0625, 0.25), (0.0625, 0.5)]


def photo_crops(n_per_photo: int, size: int = 32, shrink: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    crops = []
    for _, arr in _photograph_arrays():
        img = _to_mode(Image.fromarray(np.asarray(arr, dtype=np.uint8)), 3).reduce(shrink)
        a = np.asarray(img)
        for _ in range(n_per_photo):
            y, x = rng.integers(0, a.shape[0] - size), rng.integers(0, a.shape[1] - size)
            crops.append(a[y : y + size, x : x + size])
    return np.stack(crops)


def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    out = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=quality, subsampling="4:2:0")
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return np.stack(out)


def dct(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float64).transpose(0, 3, 1, 2) / 255.0
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    return scipy.fft.dctn(x, type=2, norm="ortho", axes=(-2, -1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", help="prepared CIFAR-10 JPEG training images (.npz)")
    ap.add_argument("--quality", type=int, default=75)
    args = ap.parse_args()

    crops = photo_crops(100)
    c0, c1 = dct(crops), dct(jpeg(crops, args.quality))
    size = crops.shape[1]
    band = np.rint(radial_frequencies(size, size) * 2 * size).astype(int)
    cross, power, err = ((c0 * c1).sum((0, 1)), (c0**2).sum((0, 1)), ((c1 - c0) ** 2).sum((0, 1)))
    print(f"JPEG q{args.quality} 4:2:0 on {len(crops)} crops of {size} px: f (cycles/px), gain, error/signal")
    for b in range(1, size + 1):
        m = band == b
        print(f"  {b / (2 * size):.3f}  {cross[m].sum() / power[m].sum():.2f}  {err[m].sum() / power[m].sum():.2f}")

    sets = {"photographs 64 px": natural_photographs(64, 3), "photograph crops 32 px": crops}
    if args.train:
        sets["CIFAR-10 JPEG train"] = load_images(args.train)[0]
    for name, images in sets.items():
        for basis in ("dct", "fft"):
            f, p = radial_psd(images, basis=basis)
            alphas = [f"{lo:g}-{hi:g}: {fit_power_law(f, p, lo, hi)['alpha']:.2f}" for lo, hi in RANGES]
            print(f"alpha {name} ({len(images)} images, {basis}): " + ", ".join(alphas))


if __name__ == "__main__":
    main()
