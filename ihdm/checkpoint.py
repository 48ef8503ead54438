"""Checkpoint files: written atomically, read safely.

Writes go to a temporary file in the target folder, are flushed to disk and then renamed
over the target, so a reader never sees a half-written file. Reads first check the CRC-32
of every zip member (torch's own reader does not, so a flipped bit would load as a wrong
weight), then use ``torch.load(weights_only=True)``: tensors, containers and plain values
only; a pickle that would run code is refused. Weights (net, ema) must be finite.
"""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path

import torch

from .errors import UserError
from .io import atomic_open, zip_damage

CHECKPOINT_RE = re.compile(r"^step_(\d{8})\.pt$")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file is missing, damaged, or not a safe ihdm checkpoint."""


def atomic_save(obj, path: str | Path) -> Path:
    with atomic_open(path) as fh:
        torch.save(obj, fh)
    return Path(path)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    state = load_torch_file(path, "checkpoint", CheckpointError, map_location)
    if not isinstance(state, dict) or "net" not in state or "model" not in state:
        raise CheckpointError(f"'{path}' is not an ihdm checkpoint (no 'net'/'model' entries)")
    for part in ("net", "ema"):
        bad = nonfinite_entries(state.get(part))
        if bad:
            raise CheckpointError(
                f"checkpoint '{path}' holds NaN or infinite weights in {part} "
                f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): damaged, or written by a "
                "diverged run"
            )
    return state


def load_torch_file(path: Path, what: str, error: type[Exception], map_location="cpu"):
    """``torch.load(weights_only=True)`` of a file whose zip CRCs check out; every problem
    is an ``error`` naming the file."""
    damage = zip_damage(path)
    if damage is not None:
        raise error(f"{what} '{path}' is damaged or truncated: {damage}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise error(
            f"{what} '{path}' was refused by the safe loader (weights_only=True): it holds "
            f"objects other than tensors and plain values. Not loading it. ({str(exc).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise error(
            f"{what} '{path}' is damaged or truncated and cannot be read "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


def nonfinite_entries(tensors) -> list[str]:
    """Names of the floating tensors in a state dict that hold NaN or inf. One float64 sum
    per tensor: NaN or inf exactly when an entry is (it cannot overflow for float32 and
    narrower types), and cheaper than an elementwise ``isfinite``."""
    if not isinstance(tensors, dict):
        return []
    return [name for name, t in tensors.items()
            if torch.is_tensor(t) and t.is_floating_point()
            and not torch.isfinite(t.sum(dtype=torch.float64))]


def list_checkpoints(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if CHECKPOINT_RE.match(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_RE.match(p.name).group(1)))


def save_checkpoint(folder: str | Path, step: int, state: dict, keep: int = 2) -> Path:
    """Write ``step_XXXXXXXX.pt`` atomically and delete all but the newest ``keep``."""
    path = atomic_save(state, Path(folder) / f"step_{step:08d}.pt")
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_latest(folder: str | Path, log: logging.Logger | None = None) -> dict | None:
    """The newest readable checkpoint in ``folder`` (with its path under "path"), or None.
    A damaged newest file is skipped, with a warning, in favour of the one before.
    Temporary files of writes that a killed run never finished are removed."""
    folder = Path(folder)
    for stale in folder.glob(".step_*.tmp") if folder.is_dir() else []:
        stale.unlink(missing_ok=True)
        if log:
            log.warning("removed %s, left by a run killed while writing a checkpoint", stale.name)
    for path in reversed(list_checkpoints(folder)):
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            if log:
                log.warning("skipping unreadable checkpoint: %s", exc)
            continue
        state["path"] = str(path)
        return state
    return None
