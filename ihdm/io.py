"""Atomic file writes, zip archive checks, and the metric table.

Every output is written under a temporary name in its folder and renamed into place, so
a failed or killed job never leaves a half-written file behind for the workflow to trust.
"""

from __future__ import annotations

import csv
import io as _io
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


class InputFileError(UserError, ValueError):
    """An input file (samples, statistics, a classifier) is damaged or does not hold what
    the command needs; the message names the file. ``ihdm`` exits with status 2."""


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


def zip_damage(path: str | Path) -> str | None:
    """What is wrong with the zip archive at ``path`` (unreadable, or a member whose CRC-32
    does not match its bytes), or None when every member checks out. torch's checkpoint
    reader skips these checks; numpy's .npz reader makes them as it reads each array."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error) as exc:
        return f"not a readable zip archive, or not one at all ({type(exc).__name__}: {exc})"
    return f"zip member '{bad}' fails its CRC-32 or header check (its bytes changed after writing)" if bad else None


def read_npz(path: str | Path, what: str, error: type[Exception] = InputFileError) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read in full, so numpy's zip reader checks each
    member's CRC-32. A missing, damaged or non-.npz file is an ``error`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} '{path}' does not exist")
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise error(f"{what} '{path}' holds a single .npy array, not an .npz archive")
        with npz:
            return {key: npz[key] for key in npz.files}
    except error:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, NotImplementedError, zlib.error) as exc:
        raise error(f"{what} '{path}' is damaged or not an .npz archive ({type(exc).__name__}: {exc})") from None


def write_png(path: str | Path, image_uint8: np.ndarray) -> Path:
    from PIL import Image

    img = image_uint8[..., 0] if image_uint8.shape[-1] == 1 else image_uint8
    with atomic_open(path) as fh:
        Image.fromarray(img).save(fh, format="PNG")
    return Path(path)


def _scalars(prefix: str, obj, out: dict) -> None:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if key not in ("config", "sample_meta"):
                _scalars(name + ".", value, out)
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out[name] = value


def read_metric_file(path: str | Path) -> dict:
    """A metric JSON of ``ihdm evaluate``; a file that is not JSON is named in the error."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFileError(f"metric file '{path}' cannot be read as JSON ({exc})") from None


def collect_metrics(paths: list[str | Path], out_csv: str | Path, keys: tuple[str, ...] = ()) -> list[dict]:
    """Flatten metric JSON files into one CSV (one row per file, scalar values only,
    plus the sweep's coordinates read from each file's config record, and a column per
    dotted config key of ``keys``, e.g. heat.delta for the δ sweep)."""
    rows = []
    for path in paths:
        record = read_metric_file(path)
        row: dict = {"source": str(path)}
        cfg = record.get("config", {})
        row["train_size"] = cfg.get("data", {}).get("train_size")
        row["config_seed"] = cfg.get("seed")
        for key in keys:
            node = cfg
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            row[key] = node
        _scalars("", record, row)
        rows.append(row)
    return write_csv(out_csv, rows)


def write_csv(path: str | Path, rows: list[dict], columns: Sequence[str] | None = None) -> list[dict]:
    """Write dict rows as one CSV, atomically; ``columns`` default to every key in order of
    first appearance (a row without a key leaves its cell empty)."""
    if columns is None:
        columns = []
        for row in rows:
            columns += [c for c in row if c not in columns]
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return rows
