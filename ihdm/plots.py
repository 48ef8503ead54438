"""Figures: sample grids, trajectories, spectra, data efficiency and training loss.

Every figure function takes plain arrays or the contents of a results file and writes a
PNG and a PDF beside each other through :func:`save_figure` (``path`` with or without a
``.png``/``.pdf`` suffix), returning both paths. Figures are built on
:class:`matplotlib.figure.Figure` directly (no pyplot state, Agg rendering) under one
style, :data:`STYLE`. :func:`image_grid` returns a uint8 grid image for the plain PNG
written next to sample files.
"""

from __future__ import annotations

import csv
import functools
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .images import ImageError, as_uint8 as _as_uint8, image_grid, to_numpy as _to_numpy

__all__ = [
    "STYLE",
    "COLORS",
    "PlotError",
    "save_figure",
    "image_grid",
    "save_grid_png",
    "sample_grid",
    "trajectory_strip",
    "interpolation_strip",
    "forward_blur_sequence",
    "psd_figure",
    "psd_figure_from_summary",
    "erased_frequency_figure",
    "erased_frequency_figure_from_summary",
    "data_efficiency_figure",
    "loss_curve",
]

STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.5,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,
    "image.interpolation": "nearest",
}
"""Matplotlib settings shared by every figure."""

COLORS: dict[str, str] = {"ihdm": "#1f5fa8", "ddpm": "#c0392b", "blurring": "#2e8b57", "data": "#222222",
                          "fit": "#7f7f7f"}
"""One colour per model (and for data and fits), the same in every figure."""

Paths = tuple[Path, Path]


class PlotError(ImageError):
    """Input a figure cannot be drawn from (shape, missing column, empty table)."""


def _styled(fn: Callable[..., Paths]) -> Callable[..., Paths]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Paths:
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


def _base(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix.lower() in (".png", ".pdf") else path


def save_figure(fig: Figure, path: str | Path) -> Paths:
    """Write ``fig`` as ``<path>.png`` and ``<path>.pdf`` (each to a temporary name, then renamed)."""
    from ihdm.io import atomic_open

    base = _base(path)
    out = []
    with matplotlib.rc_context(STYLE):
        for fmt, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None})):
            target = base.parent / f"{base.name}.{fmt}"
            with atomic_open(target) as fh:
                fig.savefig(fh, format=fmt, metadata=meta)
            out.append(target)
    return out[0], out[1]


# ---------------------------------------------------------------------------- image grids


def save_grid_png(images: Any, path: str | Path, ncol: int | None = None) -> Path:
    """Write the :func:`image_grid` of ``images`` as one PNG (PIL, atomic)."""
    from ihdm.io import write_png

    return write_png(path, image_grid(images, ncol=ncol))


def _grid_figure(
    grid: np.ndarray,
    title: str | None = None,
    col_labels: Sequence[str] | None = None,
    cell: tuple[int, int, int] | None = None,
    xlabel: str | None = None,
) -> Figure:
    """A figure showing a uint8 grid at roughly 60 grid pixels per inch."""
    h, w = grid.shape[:2]
    scale = 60.0
    width = min(max(w / scale, 2.5), 14.0)
    height = width * h / w + (0.4 if title else 0.0) + (0.35 if col_labels else 0.0)
    fig = Figure(figsize=(width, height))
    ax = fig.add_subplot()
    img = grid[..., 0] if grid.shape[-1] == 1 else grid
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if col_labels is not None and cell is not None:
        size, pad, ncol = cell
        ax.set_xticks([pad + c * (size + pad) + size / 2 for c in range(ncol)])
        ax.set_xticklabels(list(col_labels), fontsize=7)
        ax.tick_params(axis="x", length=0, labeltop=True, labelbottom=False)
    if xlabel:
        ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    return fig


@_styled
def sample_grid(images_uint8: Any, path: str | Path, ncol: int | None = None, title: str | None = None) -> Paths:
    """A grid of samples (N, H, W, C)."""
    return save_figure(_grid_figure(image_grid(images_uint8, ncol=ncol), title=title), path)


def _strip(rows: np.ndarray, labels: Sequence[str] | None, name: str) -> tuple[np.ndarray, tuple[int, int, int]]:
    n, F, H, W, C = rows.shape
    if labels is not None and len(labels) != F:
        raise PlotError(f"{name}: {len(labels)} column labels for {F} frames")
    padding = 2
    return image_grid(rows.reshape(n * F, H, W, C), ncol=F, padding=padding), (W, padding, F)


@_styled
def trajectory_strip(
    traj_uint8: Any,
    path: str | Path,
    levels: Sequence[float] | None = None,
    max_rows: int = 8,
    title: str | None = None,
) -> Paths:
    """Sampling trajectories (n, F, H, W, C): one row per sample, frames from prior to data.

    ``levels`` (one per frame, e.g. the blur level k or timestep t) label the columns.
    """
    x = _as_uint8(traj_uint8, "trajectory", 5)[:max_rows]
    labels = None if levels is None else [f"{v:g}" for v in levels]
    grid, cell = _strip(x, labels, "trajectory")
    return save_figure(_grid_figure(grid, title=title, col_labels=labels, cell=cell,
                                    xlabel="level" if labels else None), path)


@_styled
def interpolation_strip(
    frames: Any, path: str | Path, weights: Sequence[float] | None = None, title: str | None = None
) -> Paths:
    """Interpolations (F, H, W, C) or (n, F, H, W, C): one row per pair, columns by weight."""
    x = _to_numpy(frames)
    if x.ndim == 3 or (x.ndim == 4 and x.shape[-1] in (1, 3)):  # one row: (F, H, W[, C])
        x = x[None]
    x = _as_uint8(x, "frames", 5)
    F = x.shape[1]
    w = np.linspace(0.0, 1.0, F) if weights is None else np.asarray(weights, dtype=float)
    labels = [f"{v:.2f}" for v in w]
    grid, cell = _strip(x, labels, "interpolation")
    return save_figure(_grid_figure(grid, title=title, col_labels=labels, cell=cell,
                                    xlabel="interpolation weight"), path)


@_styled
def forward_blur_sequence(
    images_uint8: Any,
    blur_sigmas: Sequence[float],
    path: str | Path,
    n_frames: int = 8,
    levels: Sequence[int] | None = None,
    title: str | None = None,
) -> Paths:
    """The heat forward process: each image (row) at ``n_frames`` levels k evenly spaced in 0..K.

    ``blur_sigmas`` are σ_B,0..K (``ihdm.heat.blur_schedule``); F(t_k) with t_k = σ_B,k²/2
    is applied exactly (``ihdm.heat.dissipate``).
    """
    import torch

    from ihdm.heat import blur_times, dissipate

    x = _as_uint8(images_uint8, "images", 4)
    sig = np.asarray(blur_sigmas, dtype=np.float64)
    K = sig.size - 1
    if K < 1:
        raise PlotError("blur_sigmas must hold σ_B,0..K with K >= 1")
    ks = np.unique(np.rint(np.linspace(0, K, max(2, n_frames))).astype(int)) if levels is None else np.asarray(levels)
    if ks.min() < 0 or ks.max() > K:
        raise PlotError(f"levels must lie in 0..{K}, got {ks.min()}..{ks.max()}")
    u0 = torch.from_numpy(x).permute(0, 3, 1, 2).double() / 255.0
    times = blur_times(sig)
    frames = [dissipate(u0, float(times[k])) for k in ks]
    seq = torch.stack(frames, 1).clamp(0, 1).permute(0, 1, 3, 4, 2).numpy()  # (n, F, H, W, C)
    labels = [f"k={k}\nσ={sig[k]:.2g}" for k in ks]
    grid, cell = _strip(np.rint(seq * 255).astype(np.uint8), labels, "forward blur")
    return save_figure(_grid_figure(grid, title=title, col_labels=labels, cell=cell), path)


# ---------------------------------------------------------------------------- spectra


def _plain_log_ticks(axis: Any) -> None:
    """Decimal labels at 1, 2, 5 × 10^n on a log axis, no minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _shades(name: str, n: int) -> list:
    cmap = matplotlib.colormaps["Reds" if name == "ddpm" else "Blues"]
    return [cmap(v) for v in np.linspace(0.45, 0.95, max(n, 1))]


@_styled
def psd_figure(
    freqs: Any,
    psd: Any,
    path: str | Path,
    *,
    fit: Mapping[str, float] | None = None,
    noise_floors: Sequence[tuple[str, float]] = (),
    attenuated: Sequence[tuple[str, float]] = (),
    sigma: float | None = None,
    title: str | None = None,
) -> Paths:
    """Data PSD with its power-law fit, diffusion noise floors and heat-attenuated spectra.

    ``noise_floors``: (label, flat PSD level) per diffusion level; ``attenuated``: (label,
    heat time t) per IHDM level, drawn as exp(−2λ(f)t)·PSD; ``sigma`` draws the σ² floor of
    q(u_k | u_0). All on one log-log axis (frequency in cycles/pixel).
    """
    from ihdm.spectral import attenuated_psd

    f = np.asarray(freqs, dtype=float)
    p = np.asarray(psd, dtype=float)
    if f.ndim != 1 or f.shape != p.shape or f.size < 2 or (f <= 0).any() or (p <= 0).any():
        raise PlotError(f"freqs and psd must be positive 1-D arrays of equal length, got {f.shape}, {p.shape}")
    fig = Figure(figsize=(5.2, 3.8))
    ax = fig.add_subplot()
    ax.loglog(f, p, color=COLORS["data"], lw=2.0, label="data PSD", zorder=5)
    if fit is not None:
        ff = np.geomspace(fit.get("fmin", f[0]), fit.get("fmax", f[-1]), 50)
        err = fit.get("alpha_stderr")
        label = rf"fit $1/f^{{\alpha}}$, $\alpha$ = {fit['alpha']:.2f}" + (f" ± {err:.2f}" if err is not None else "")
        label += f" over {ff[0]:.3g}–{ff[-1]:.3g} c/px" + (f" ({fit['basis']})" if fit.get("basis") else "")
        ax.loglog(ff, 10 ** fit["log_amplitude"] * ff ** -fit["alpha"], "--", color=COLORS["fit"], label=label, zorder=6)
    levels = [p.min(), p.max()]
    for (label, floor), color in zip(noise_floors, _shades("ddpm", len(noise_floors))):
        ax.axhline(floor, color=color, lw=1.2, ls="-.", label=f"DDPM floor {label}")
        levels.append(floor)
    for (label, t), color in zip(attenuated, _shades("ihdm", len(attenuated))):
        ax.loglog(f, attenuated_psd(f, p, float(t)), color=color, lw=1.2, label=f"IHDM {label}")
    if sigma is not None:
        ax.axhline(sigma**2, color=COLORS["ihdm"], lw=1.0, ls=":", label=f"IHDM floor σ² = {sigma**2:.0e}")
        levels.append(sigma**2)
    ax.set_ylim(min(levels) / 30, max(levels) * 5)
    ax.set_xlim(f[0] * 0.9, f[-1] * 1.1)
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("frequency f (cycles/pixel)")
    ax.set_ylabel("power spectral density")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def psd_figure_from_summary(summary: Mapping[str, Any], path: str | Path, title: str | None = None) -> Paths:
    """:func:`psd_figure` from the dict of :func:`ihdm.spectral.spectral_summary`."""
    try:
        dd, ih = summary["ddpm"], summary["ihdm"]
        floors = [(f"t={s['t']}", s["noise_floor"]) for s in dd["selected"]]
        att = [(f"k={s['k']} (σ_B={s['blur_sigma']:.2g})", s["t"]) for s in ih["selected"]]
        return psd_figure(summary["psd"]["freqs"], summary["psd"]["psd"], path, fit=summary["fit"],
                          noise_floors=floors, attenuated=att, sigma=ih["sigma"], title=title)
    except KeyError as exc:
        raise PlotError(f"spectral summary lacks key {exc}") from None


@_styled
def erased_frequency_figure(
    curves: Mapping[str, tuple[Any, Any]], path: str | Path, title: str | None = None
) -> Paths:
    """Erased frequency vs normalised level, one curve per process: {label: (level, f_erased)}."""
    if not curves:
        raise PlotError("erased_frequency_figure needs at least one curve")
    fig = Figure(figsize=(4.6, 3.4))
    ax = fig.add_subplot()
    for label, (level, fe) in curves.items():
        level, fe = np.asarray(level, dtype=float), np.asarray(fe, dtype=float)
        if level.shape != fe.shape or level.ndim != 1:
            raise PlotError(f"curve '{label}': level and frequency must be 1-D of equal length")
        key = next((k for k in ("ddpm", "ihdm", "blurring") if k in label.lower()), None)
        ax.semilogy(level, fe, label=label, color=COLORS.get(key) if key else None)
    _plain_log_ticks(ax.yaxis)
    ax.set_xlabel("normalised level (t/T, k/K)")
    ax.set_ylabel("erased above f (cycles/pixel)")
    ax.set_xlim(0, 1)
    ax.legend()
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def erased_frequency_figure_from_summary(summary: Mapping[str, Any], path: str | Path, title: str | None = None) -> Paths:
    """:func:`erased_frequency_figure` of the DDPM, IHDM (and blurring diffusion) curves in
    a spectral summary."""
    try:
        dd, ih = summary["ddpm"], summary["ihdm"]
        curves = {
            f"DDPM ({dd['schedule']}, T={dd['T']})": (dd["level"], dd["erased_frequency"]),
            f"IHDM (K={ih['K']}, σ={ih['sigma']:g})": (ih["level"], ih["erased_frequency"]),
        }
        if "blurring" in summary:  # summaries written before the third model have no curve
            bl = summary["blurring"]
            curves[f"Blurring (σ_B,max={bl['blur_sigma_max']:g})"] = (bl["level"], bl["erased_frequency"])
    except KeyError as exc:
        raise PlotError(f"spectral summary lacks key {exc}") from None
    return erased_frequency_figure(curves, path, title=title)


# ---------------------------------------------------------------------------- tables and logs

_TABLE_KEYS = ("model", "train_size", "seed")


def _number(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PlotError(f"{what} is not a number: {value!r}") from None


@_styled
def data_efficiency_figure(
    table_rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    metric: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
) -> Paths:
    """Metric vs training-set size, one curve per model: mean over seeds with a min–max band.

    Rows are mappings with ``model``, ``train_size``, ``seed`` and the ``metric`` column
    (values may be strings, as read from CSV). ``metric`` defaults to the only other numeric
    column.
    """
    rows = list(table_rows)
    if not rows:
        raise PlotError("data_efficiency_figure: the table has no rows")
    missing = [k for k in ("model", "train_size") if k not in rows[0]]
    if missing:
        raise PlotError(f"data_efficiency_figure: table lacks column(s) {missing}")
    if metric is None:
        candidates = []
        for key in rows[0]:
            if key in _TABLE_KEYS:
                continue
            try:
                float(rows[0][key])
                candidates.append(key)
            except (TypeError, ValueError):
                pass
        if len(candidates) != 1:
            raise PlotError(f"data_efficiency_figure: name the metric column, candidates are {candidates}")
        metric = candidates[0]
    values: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for i, row in enumerate(rows):
        if metric not in row:
            raise PlotError(f"data_efficiency_figure: row {i} lacks column '{metric}'")
        size = _number(row["train_size"], f"row {i} train_size")
        values[str(row["model"])][size].append(_number(row[metric], f"row {i} {metric}"))
    fig = Figure(figsize=(4.6, 3.4))
    ax = fig.add_subplot()
    for model, by_size in sorted(values.items()):
        sizes = np.array(sorted(by_size))
        vals = [np.asarray(by_size[s]) for s in sizes]
        mean = np.array([v.mean() for v in vals])
        color = COLORS.get(model.lower())
        ax.plot(sizes, mean, "o-", color=color, label=f"{model.upper()} (n seeds = {max(len(v) for v in vals)})")
        if any(len(v) > 1 for v in vals):
            ax.fill_between(sizes, [v.min() for v in vals], [v.max() for v in vals], color=color, alpha=0.2, lw=0)
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("training-set size")
    ax.set_ylabel(ylabel or metric)
    ax.legend()
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def _read_log(csv_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"training log '{csv_path}' does not exist")
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("step", "loss") if c not in (reader.fieldnames or [])]
        if missing:
            raise PlotError(f"training log '{csv_path}' lacks column(s) {missing}")
        rows = [(_number(r["step"], f"{csv_path}: step"), _number(r["loss"], f"{csv_path}: loss")) for r in reader]
    if not rows:
        raise PlotError(f"training log '{csv_path}' has no rows")
    arr = np.asarray(rows, dtype=float)
    return arr[:, 0], arr[:, 1]


@_styled
def loss_curve(
    csv_path: str | Path | Mapping[str, str | Path], path: str | Path, smooth: int | None = None,
    title: str | None = None,
) -> Paths:
    """Training loss vs step from ``log.csv`` (columns step, loss), or {label: csv} for several runs.

    Raw values are drawn faintly with a running mean over ``smooth`` entries (default: a
    twentieth of the log) on top; the y axis is logarithmic when every loss is positive.
    """
    logs = dict(csv_path) if isinstance(csv_path, Mapping) else {"": csv_path}
    fig = Figure(figsize=(4.6, 3.2))
    ax = fig.add_subplot()
    positive = True
    for label, p in logs.items():
        step, loss = _read_log(p)
        positive &= bool((loss > 0).all())
        key = label.lower() if label.lower() in COLORS else None
        color = COLORS.get(key) if key else (COLORS["ihdm"] if label == "" else None)
        (line,) = ax.plot(step, loss, color=color, alpha=0.3, lw=0.8)
        w = max(1, smooth if smooth else len(loss) // 20)
        if w > 1 and len(loss) > w:
            run = np.convolve(loss, np.ones(w) / w, mode="valid")
            ax.plot(step[w - 1 :], run, color=line.get_color(), label=(f"{label} " if label else "") + f"running mean ({w})")
        elif label:
            line.set_label(label)
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


@_styled
def simplicity_figure(records: Mapping[str, Mapping[str, Any]], path: str | Path,
                      title: str | None = None) -> Paths:
    """Emergent property (c) from ``ihdm evaluate --metric simplicity`` records ({label:
    record}): the share of the network's output energy in its spatial mean (left) and its
    size against its input (right), per fraction of the chain."""
    if not records:
        raise PlotError("simplicity figure: no records given")
    fig = Figure(figsize=(7.6, 3.0))
    ax_dc, ax_e = fig.subplots(1, 2)
    for label, record in records.items():
        rows = record.get("levels")
        if not rows:
            raise PlotError(f"simplicity figure: record '{label}' has no 'levels' (not a simplicity metric file)")
        x = [r["fraction"] for r in rows]
        color = COLORS.get(str(record.get("model", label)).lower())
        ax_dc.plot(x, [max(r["dc_fraction"], 1e-12) for r in rows], "o-", ms=3, color=color, label=label)
        ax_e.plot(x, [r["energy_ratio"] for r in rows], "o-", ms=3, color=color, label=label)
    ax_dc.set_yscale("log")
    ax_e.set_yscale("log")
    ax_dc.set_ylabel("mean's share of output energy")
    ax_e.set_ylabel("‖output‖ / ‖input‖")
    for ax in (ax_dc, ax_e):
        ax.set_xlabel("fraction of the chain (level / K, step / T)")
    ax_dc.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def delta_sweep_figure(table_rows: Sequence[Mapping[str, Any]], path: str | Path, metric: str = "fd",
                       title: str | None = None) -> dict[str, tuple[float, float]]:
    """A sample metric (lower is better) against the sampling noise δ, one curve per model,
    the best δ of each marked. Rows: ``model``, ``heat.delta`` and ``metric`` (strings, as
    read from CSV). Returns {model: (best δ, its value)}."""
    curves: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in table_rows:
        try:
            curves[str(row["model"])].append((float(row["heat.delta"]), float(row[metric])))
        except KeyError as exc:
            raise PlotError(f"delta-sweep figure: the table lacks column {exc}") from None
        except (TypeError, ValueError):
            raise PlotError(f"delta-sweep figure: a row's heat.delta or {metric} is not a number: {dict(row)}") from None
    if not curves:
        raise PlotError(f"delta-sweep figure: no row has the metric '{metric}'")
    fig = Figure(figsize=(4.6, 3.2))
    ax = fig.subplots()
    best = {}
    for model, points in sorted(curves.items()):
        points.sort()
        x, y = zip(*points)
        color = COLORS.get(model.lower())
        ax.plot(x, y, "o-", ms=4, color=color, label=model)
        i = int(np.argmin(y))
        best[model] = (x[i], y[i])
        ax.plot([x[i]], [y[i]], "*", ms=13, color=color, label=f"best δ = {x[i]:g} ({metric} {y[i]:.3g})")
    ax.set_xlabel("sampling noise δ")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    save_figure(fig, path)
    return best
