"""The sample file format.

Sample files (``ihdm sample``) are ``.npz`` with ``images`` (uint8 NHWC), optionally
``trajectory`` (uint8, N × F × H × W × C) with its ``levels``, and ``meta`` (a JSON
string: model, variant, seed, checkpoint, ...). A PNG grid of the images is written
beside the file as ``<name>.png`` and the trajectory strip as ``<name>.trajectory.png``.
``meta["n"]`` is the number of images (of rows for the ``interpolate`` variant, each of
``meta["frames"]`` images). :func:`read_samples` checks all of this, and the zip CRCs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .images import check_uint8_nhwc, image_grid, to_uint8
from .io import InputFileError, atomic_savez, read_npz, write_png


class SampleFileError(InputFileError):
    """A sample file is damaged or not in the format above; the message names the file."""


def write_samples(path: str | Path, result: dict, meta: dict) -> Path:
    """Write a sampler's result dict as the sample file plus its PNG grid (and strip)."""
    path = Path(path)
    images = to_uint8(result["images"])
    arrays = {"images": images, "meta": np.array(json.dumps(meta))}
    traj = result.get("trajectory")
    if traj is not None:
        n, F = traj.shape[:2]
        arrays["trajectory"] = to_uint8(traj.flatten(0, 1)).reshape(n, F, *images.shape[1:])
        arrays["levels"] = np.asarray(result["levels"])
    atomic_savez(path, **arrays)
    stem = path.with_suffix("")
    frames = int(meta.get("frames") or 0)
    ncol = frames if meta.get("variant") == "interpolate" and frames else None
    write_png(stem.with_suffix(".png"), image_grid(images, ncol=ncol))
    if traj is not None:
        strip = arrays["trajectory"][: min(8, len(arrays["trajectory"]))]
        rows = strip.reshape(-1, *images.shape[1:])
        write_png(Path(f"{stem}.trajectory.png"), image_grid(rows, ncol=strip.shape[1]))
    return path


def read_samples(path: str | Path, data: dict | None = None) -> dict:
    """Read and check a sample file: {"images", "meta", and "trajectory"/"levels" when
    present}. ``data`` (the config's data section), when given, also fixes the image size
    (``data.resolution``) and channels (``data.channels``)."""
    path = Path(path)
    out = read_npz(path, "sample file", SampleFileError)

    def bad(problem: str) -> SampleFileError:
        return SampleFileError(f"sample file '{path}': {problem}")

    if "images" not in out:
        raise bad(f"no 'images' array (arrays: {sorted(out)})")
    if "meta" not in out:
        raise bad("no 'meta' record")
    meta = out["meta"]
    try:
        meta = json.loads(str(meta)) if meta.ndim == 0 and meta.dtype.kind == "U" else None
    except json.JSONDecodeError as exc:
        raise bad(f"'meta' is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise bad("'meta' must be a JSON object in a string")
    out["meta"] = meta
    images = out["images"]
    check_uint8_nhwc(images, f"sample file '{path}'", SampleFileError)
    n, frames = meta.get("n"), meta.get("frames") if meta.get("variant") == "interpolate" else 1
    if not isinstance(n, int) or not isinstance(frames, int) or n < 1 or frames < 1:
        raise bad(f"meta needs a positive integer 'n' (and 'frames' for interpolate), got "
                  f"n={n!r}, frames={frames!r}")
    if len(images) != n * frames:
        expected = f"{n} x {frames} frames" if meta.get("variant") == "interpolate" else str(n)
        raise bad(f"holds {len(images)} images, but its meta records {expected}")
    if data is not None:
        R, C = data["resolution"], data["channels"]
        if images.shape[1:3] != (R, R):
            raise bad(f"images are {images.shape[1]}x{images.shape[2]}, the config's "
                      f"data.resolution is {R}")
        if images.shape[3] != C:
            raise bad(f"images have {images.shape[3]} channels, the config's data.channels is {C}")
    if ("trajectory" in out) != ("levels" in out):
        raise bad("'trajectory' and 'levels' come together")
    if "trajectory" in out:
        traj, levels = out["trajectory"], out["levels"]
        if traj.dtype != np.uint8 or traj.ndim != 5 or traj.shape[0] != len(images) \
                or traj.shape[2:] != images.shape[1:]:
            raise bad(f"trajectory must be uint8 (N, F, H, W, C) = ({len(images)}, F, "
                      f"{', '.join(map(str, images.shape[1:]))}), got {traj.dtype} {traj.shape}")
        if levels.ndim != 1 or len(levels) not in (0, traj.shape[1]):
            raise bad(f"levels must list the {traj.shape[1]} trajectory frames, got shape {levels.shape}")
    return out


def require_images(samples: dict, path: str | Path, at_least: int, what: str) -> None:
    """A statistic over samples needs ``at_least`` images: say so, naming the file."""
    if len(samples["images"]) < at_least:
        raise SampleFileError(f"sample file '{path}': holds {len(samples['images'])} image(s), "
                              f"{what} needs at least {at_least}")
