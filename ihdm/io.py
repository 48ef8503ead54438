"""Atomic file writes and the sample file format.

Every output is written under a temporary name in its folder and renamed into place, so
a failed or killed job never leaves a half-written file behind for the workflow to trust.

Sample files (``ihdm sample``) are ``.npz`` with ``images`` (uint8 NHWC), optionally
``trajectory`` (uint8, N × F × H × W × C) with its ``levels``, and ``meta`` (a JSON
string: model, variant, seed, checkpoint, ...). A PNG grid of the images is written
beside the file as ``<name>.png`` and the trajectory strip as ``<name>.trajectory.png``.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb"):
    """Open a temporary file beside ``path`` for writing; on success it is flushed to disk
    and renamed over ``path``, on failure removed. Readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def atomic_savez(path: str | Path, **arrays) -> Path:
    with atomic_open(path) as fh:
        np.savez(fh, **arrays)
    return Path(path)


def write_png(path: str | Path, image_uint8: np.ndarray) -> Path:
    from PIL import Image

    img = image_uint8[..., 0] if image_uint8.shape[-1] == 1 else image_uint8
    with atomic_open(path) as fh:
        Image.fromarray(img).save(fh, format="PNG")
    return Path(path)


def write_samples(path: str | Path, result: dict, meta: dict) -> Path:
    """Write a sampler's result dict as the sample file plus its PNG grid (and strip)."""
    from .data import to_uint8
    from .plots import image_grid

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


def _scalars(prefix: str, obj, out: dict) -> None:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if key not in ("config", "sample_meta"):
                _scalars(name + ".", value, out)
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out[name] = value


def collect_metrics(paths: list[str | Path], out_csv: str | Path) -> list[dict]:
    """Flatten metric JSON files into one CSV (one row per file, scalar values only,
    plus the sweep's coordinates read from each file's config record)."""
    import csv
    import io as _io

    rows = []
    for path in paths:
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"metric file '{path}' cannot be read as JSON ({exc})") from None
        row: dict = {"source": str(path)}
        cfg = record.get("config", {})
        row["train_size"] = cfg.get("data", {}).get("train_size")
        row["config_seed"] = cfg.get("seed")
        _scalars("", record, row)
        rows.append(row)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_csv, buf.getvalue())
    return rows
