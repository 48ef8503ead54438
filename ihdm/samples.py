"""The sample file format.

Sample files (``ihdm sample``) are ``.npz`` with ``images`` (uint8 NHWC), optionally
``trajectory`` (uint8, N × F × H × W × C) with its ``levels``, and ``meta`` (a JSON
string: model, variant, seed, checkpoint, ...). A PNG grid of the images is written
beside the file as ``<name>.png`` and the trajectory strip as ``<name>.trajectory.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .images import image_grid, to_uint8
from .io import atomic_savez, write_png


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


def read_samples(path: str | Path) -> dict:
    """Read a sample file: {"images", "meta", and "trajectory"/"levels" when present}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sample file '{path}' does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"sample file '{path}' is damaged or not an .npz ({exc})") from None
    out["meta"] = json.loads(str(out["meta"])) if "meta" in out else {}
    return out
