"""``ihdm bench CONFIG``: throughput of the heat operator, of training and of sampling.

Three sections, each a list of rows in the JSON result:

* ``heat``: images/s of F(t_k)u for a batch of 128 × 3-channel images at mixed levels
  (K = 200, one random k per image) at 28…256 pixels, side by side in one run:
  :class:`ihdm.heat.HeatOperator` (``blur`` and ``blur_pair``), scipy's DCT route
  (``scipy.fft.dctn``/``idctn``, norm="ortho", workers=-1, per-image decay) and the
  generic :func:`ihdm.heat.dissipate`. Each number is the median over interleaved runs
  after warm-up, each run a block of back-to-back calls lasting about 20 ms (the steady
  state; the JSON also holds the median of single calls, ``single_call_images_per_s``).
  Each method's max abs error is against float64 scipy; ``ours/scipy`` is the ratio of
  ``ours_blur`` to ``scipy_dct``.
* ``train``: images/s and peak memory of full training steps (IHDM loss, backward,
  gradient clipping, Adam, EMA) for the config's network and the paper MNIST and CIFAR-10
  networks.
* ``sample``: samples/s of IHDM (the config's K steps) and DDPM DDIM (``ddim_steps``).

CPU always (fp32, and bf16 autocast when the config sets ``train.cpu_bf16``); CUDA as well
when available (fp32 and bf16 autocast for training and sampling). CPU peak memory is the
kernel's resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs before
each measurement), falling back to polling the RSS with psutil.

On a machine shared with other jobs, OpenMP threads that spin while waiting can stall
every parallel operation for a scheduler slice; ``OMP_WAIT_POLICY=PASSIVE`` (set before
Python starts) or ``--set train.threads=1`` gives steadier numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy
import scipy.fft
import torch

from .heat import HeatOperator, blur_schedule, blur_times, dissipate, mode_decay

if TYPE_CHECKING:
    from typing_extensions import Self

HEAT_SIZES = (28, 32, 64, 128, 256)
QUICK_HEAT_SIZES = (28, 32, 64)
HEAT_K = 200
#: each timed heat run is a block of back-to-back calls lasting about this long
HEAT_BLOCK_S = 0.02
#: blur_sigma_max of the paper configs at each resolution (NOTES §3); others use 24·L/32
PAPER_SIGMA_MAX = {28: 20.0, 32: 24.0, 64: 32.0, 128: 128.0, 256: 128.0}
PAPER_CONFIGS = {"paper_mnist": "mnist.yaml", "paper_cifar10": "cifar10.yaml"}
SECTIONS = ("heat", "train", "sample")
#: input size of the paper networks in quick mode (both nets down-sample by at most 8)
QUICK_PAPER_RESOLUTION = 8


class BenchError(ValueError):
    """A benchmark option is invalid."""


# --------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
    return info


# --------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: int,
                     device: torch.device, block_s: float = 0.0) -> dict[str, dict[str, list[float]]]:
    """Seconds per call of each function, with the functions taking turns in every round
    so that a change in the machine's load hits them alike. The order rotates by one each
    round, so that no function always runs right after the same other one (what ran before
    decides which caches are warm and whether freed memory is still mapped).

    Per round and function: ``single``, one call timed right after the previous function
    ran, and ``wall``/``cpu``, the wall and process-CPU seconds per call over a block of
    back-to-back calls lasting about ``block_s`` (at least one call, after the single one;
    with ``block_s=0`` the single call itself), i.e. the steady state.
    The two differ for fast calls: a single call after another library's work pays for
    waking its own thread pool and cold caches (benchmarks/README.md has an example).
    """
    per_call = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            per_call[name] = time.perf_counter() - t0
    block = {name: max(1, round(block_s / per_call[name])) if name in per_call else 1
             for name in fns}
    out: dict[str, dict[str, list[float]]] = {
        name: {"single": [], "wall": [], "cpu": []} for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = fns[name]
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            _sync(device)
            t1, c1 = time.perf_counter(), time.process_time()
            out[name]["single"].append(t1 - t0)
            if not block_s:
                out[name]["wall"].append(t1 - t0)
                out[name]["cpu"].append(c1 - c0)
                continue
            for _ in range(block[name]):
                fn()
            _sync(device)
            out[name]["wall"].append((time.perf_counter() - t1) / block[name])
            out[name]["cpu"].append((time.process_time() - c1) / block[name])
    return out


def _rate(timing: dict[str, list[float]], items: int, with_cpu: bool = True) -> dict:
    seconds = timing["wall"]
    med, best = float(np.median(seconds)), float(np.min(seconds))
    out = {"images_per_s": items / med, "median_s": med, "min_s": best,
           "best_images_per_s": items / best, "runs": len(seconds),
           "single_call_images_per_s": items / float(np.median(timing["single"]))}
    if with_cpu:  # process CPU time (all threads): steadier than wall time on a shared machine
        out["cpu_median_s"] = float(np.median(timing["cpu"]))
    return out


# --------------------------------------------------------------------------- heat
def scipy_heat(u: np.ndarray, decay: np.ndarray, workers: int = -1) -> np.ndarray:
    """F(t)u through scipy's orthonormal DCT-II; ``decay`` broadcasts against the coefficients."""
    coeffs = scipy.fft.dctn(u, type=2, norm="ortho", axes=(-2, -1), workers=workers)
    coeffs *= decay
    return scipy.fft.idctn(coeffs, type=2, norm="ortho", axes=(-2, -1), workers=workers,
                           overwrite_x=True)


def scipy_at_levels(u: np.ndarray, decay: np.ndarray, k: np.ndarray) -> np.ndarray:
    """scipy's DCT route for images u (B, C, L, L), image i at level k[i]; ``decay`` is
    the per-axis decay of every level, (K+1, L) (:func:`ihdm.heat.mode_decay`)."""
    return scipy_heat(u, decay[k][:, None, :, None] * decay[k][:, None, None, :])


def paper_sigma_max(size: int) -> float:
    """blur_sigma_max of the paper's config at this resolution; 24·L/32 for other sizes."""
    return PAPER_SIGMA_MAX.get(size, 24.0 * size / 32)


def heat_batch(size: int, batch: int = 128, channels: int = 3, K: int = HEAT_K, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(heat times of the schedule, images, one level in 1..K per image): the mixed-level
    float32 batch of every heat comparison, with the paper's blur_sigma_max for ``size``."""
    times = blur_times(blur_schedule(K, 0.5, paper_sigma_max(size)))
    rng = np.random.default_rng(seed)
    u_np = rng.uniform(size=(batch, channels, size, size)).astype(np.float32)
    return times, u_np, rng.integers(1, K + 1, size=batch)


def heat_benchmark(size: int, *, batch: int = 128, channels: int = 3, K: int = HEAT_K,
                   rounds: int = 7, warmup: int = 2, device: str = "cpu", seed: int = 0,
                   compare_dense: bool = True) -> dict:
    """One row of the heat table: every method on the same batch and levels."""
    dev = torch.device(device)
    times, u_np, k_np = heat_batch(size, batch, channels, K, seed)
    eH = mode_decay(times, size)
    ref = scipy_at_levels(u_np.astype(np.float64), eH, k_np)
    ref_prev = scipy_at_levels(u_np.astype(np.float64), eH, k_np - 1)

    u = torch.from_numpy(u_np).to(dev)
    k = torch.from_numpy(k_np).to(dev)
    t_k = torch.from_numpy(times[k_np]).to(dev)
    t0 = time.perf_counter()
    op = HeatOperator(times, size, size, dtype=torch.float32, device=dev)
    setup_s = time.perf_counter() - t0

    fns: dict[str, Callable[[], object]] = {
        "ours_blur": lambda: op.blur(u, k),
        "ours_pair": lambda: op.blur_pair(u, k),
    }
    if compare_dense and op.route != "dense":
        dense = HeatOperator(times, size, size, dtype=torch.float32, device=dev, route="dense")
        fns["ours_dense_blur"] = lambda: dense.blur(u, k)
        fns["ours_dense_pair"] = lambda: dense.blur_pair(u, k)
    if dev.type == "cpu":
        eH32 = eH.astype(np.float32)
        fns["scipy_dct"] = lambda: scipy_at_levels(u_np, eH32, k_np)
    fns["dissipate"] = lambda: dissipate(u, t_k)

    def err(a, b=ref) -> float:
        a = a.detach().double().cpu().numpy() if isinstance(a, torch.Tensor) else a
        return float(np.abs(a - b).max())

    errors = {}
    for name, fn in fns.items():
        out = fn()
        if isinstance(out, tuple):
            errors[name] = max(err(out[0]), err(out[1], ref_prev))
        else:
            errors[name] = err(out)
    timings = time_interleaved(fns, rounds, warmup, dev, block_s=HEAT_BLOCK_S)
    methods = {name: {**_rate(timings[name], batch, dev.type == "cpu"), "max_abs_err": errors[name]}
               for name in fns}
    return {"device": dev.type, "size": size, "batch": batch, "channels": channels, "K": K,
            "blur_sigma_max": paper_sigma_max(size), "route": op.route, "setup_s": setup_s,
            "methods": methods}


# --------------------------------------------------------------------------- memory
def _release_free_memory() -> None:
    """Hand freed heap memory back to the OS, so that the resident set counts live memory only."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory of a block: CUDA's allocator peak, or the CPU process's resident set."""

    def __init__(self, device: torch.device):
        self.device = device
        self.method = ""
        self.peak_mb = float("nan")
        self.delta_mb = float("nan")
        self._stop = threading.Event()
        self._poll: threading.Thread | None = None
        self._samples: list[int] = []

    @staticmethod
    def _status(key: str) -> int | None:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    @staticmethod
    def _reset_hwm() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            return True
        except OSError:
            return False

    def __enter__(self) -> Self:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated"
            return self
        _release_free_memory()
        self._base = self._status("VmRSS")
        if self._base is not None and self._reset_hwm():
            self.method = "VmHWM (reset via /proc/self/clear_refs)"
            return self
        try:
            import psutil
        except ImportError:
            import resource

            self.method = "ru_maxrss (process lifetime peak)"
            self._base = 0
            self._rusage = resource
            return self
        proc = psutil.Process()
        self._base = proc.memory_info().rss
        self.method = "psutil RSS polled every 5 ms"

        def poll():
            while not self._stop.is_set():
                self._samples.append(proc.memory_info().rss)
                self._stop.wait(0.005)

        self._poll = threading.Thread(target=poll, daemon=True)
        self._poll.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self.method.startswith("VmHWM"):
            peak = self._status("VmHWM") or 0
        elif self._poll is not None:
            self._stop.set()
            self._poll.join()
            peak = max(self._samples, default=self._base)
        else:
            peak = self._rusage.getrusage(self._rusage.RUSAGE_SELF).ru_maxrss * 1024
        self.peak_mb = peak / 2**20
        self.delta_mb = (peak - self._base) / 2**20


# --------------------------------------------------------------------------- train / sample
def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def paper_config(name: str) -> dict | None:
    """A paper config (config/paper/*.yaml of the repository), or None if not shipped."""
    from .config import load_config

    path = Path(__file__).resolve().parents[1] / "config" / "paper" / PAPER_CONFIGS[name]
    return load_config(path) if path.exists() else None


def train_benchmark(cfg: dict, name: str, *, device: str, precision: str, batch: int,
                    steps: int, warmup: int, seed: int = 0) -> dict:
    """Images/s and peak memory of full IHDM training steps with ``cfg``'s network."""
    from .inverse_heat import IHDM
    from .train import train_step
    from .unet import build_unet, count_parameters

    dev = torch.device(device)
    torch.manual_seed(seed)
    tc = cfg["train"]
    C, R = cfg["data"]["channels"], cfg["data"]["resolution"]
    net = build_unet(cfg).to(dev).train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    process = IHDM.from_config(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=tc["lr"], betas=(tc["adam_beta1"], tc["adam_beta2"]),
                           eps=tc["adam_eps"], fused=dev.type == "cuda")
    gen = torch.Generator(device=dev).manual_seed(seed)
    images = torch.rand((max(batch, 64), C, R, R), generator=gen, device=dev)
    counter = iter(range(1 << 30))

    def step():  # the training loop's own step (ihdm.train.train_step)
        idx = torch.randint(0, images.shape[0], (batch,), device=dev, generator=gen)
        return train_step(process, net, ema, opt, images[idx], next(counter), tc, generator=gen,
                          amp=_autocast(dev, precision))

    times = []
    with PeakMemory(dev) as mem:
        for i in range(warmup + steps):
            _sync(dev)
            t0 = time.perf_counter()
            loss = step()
            _sync(dev)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    if not torch.isfinite(loss):
        raise RuntimeError(f"benchmark training step of '{name}' gave a non-finite loss")
    med = float(np.median(times))
    return {"network": name, "device": dev.type, "precision": precision,
            "parameters": count_parameters(net), "resolution": R, "channels": C,
            "K": cfg["heat"]["K"], "batch": batch, "steps": steps,
            "images_per_s": batch / med, "step_s": med,
            "peak_memory_mb": mem.peak_mb, "peak_memory_delta_mb": mem.delta_mb,
            "memory_method": mem.method}


def sample_benchmark(cfg: dict, *, device: str, precision: str, n: int, seed: int = 0,
                     cuda_graphs: bool = False) -> list[dict]:
    """Samples/s of IHDM (K steps) and DDPM DDIM (ddim_steps) with ``cfg``'s network,
    optionally replayed from CUDA graphs (:class:`ihdm.unet.CUDAGraphed`)."""
    from .ddpm import DDPM
    from .inverse_heat import IHDM
    from .unet import CUDAGraphed, build_unet

    dev = torch.device(device)
    torch.manual_seed(seed)
    C, R = cfg["data"]["channels"], cfg["data"]["resolution"]
    net = build_unet(cfg).to(dev).eval()
    if cuda_graphs:
        net = CUDAGraphed(net)
    prior = torch.rand((16, C, R, R), generator=torch.Generator().manual_seed(seed))
    ihdm, ddpm = IHDM.from_config(cfg), DDPM.from_config(cfg)
    ihdm.prior_images = prior
    runs = {
        "ihdm": (ihdm.K, lambda: ihdm.sample(net, n, (C, R, R), seed=seed, batch_size=n, device=dev)),
        "ddpm_ddim": (len(ddpm.ddim_timesteps(ddpm.ddim_steps)),
                      lambda: ddpm.sample(net, n, (C, R, R), seed=seed, batch_size=n, device=dev,
                                          sampler="ddim")),
    }
    rows = []
    for model, (net_evals, fn) in runs.items():
        with _autocast(dev, precision):
            fn()  # warm-up (and, with CUDA graphs, the capture)
            times = time_interleaved({model: fn}, rounds=1, warmup=0, device=dev)[model]["wall"]
        sec = float(np.median(times))
        rows.append({"model": model, "device": dev.type, "precision": precision, "n": n,
                     "cuda_graphs": cuda_graphs, "network_evaluations": net_evals,
                     "samples_per_s": n / sec, "seconds": sec})
    return rows


# --------------------------------------------------------------------------- driver
def _precisions(cfg: dict, device: str) -> list[str]:
    """fp32 always; bf16 autocast on CUDA, and on the CPU when the config trains that way."""
    if device == "cpu":
        return ["fp32", "bf16"] if cfg["train"].get("cpu_bf16") else ["fp32"]
    return ["fp32", "bf16"]


def _devices(cfg: dict, asked: list[str] | None = None) -> list[str]:
    if asked:
        if "cuda" in asked and not torch.cuda.is_available():
            raise BenchError("--devices cuda: torch sees no CUDA device on this machine")
        return [d for d in ("cpu", "cuda") if d in asked]
    devices = ["cpu"]
    if torch.cuda.is_available() and cfg.get("device", "auto") != "cpu":
        devices.append("cuda")
    return devices


def main_bench(cfg: dict, out: str | Path | None = None, quick: bool = False, *,
               sizes: list[int] | None = None, sections: list[str] | None = None,
               rounds: int | None = None, devices: list[str] | None = None,
               echo: bool = True) -> dict:
    """Run the benchmark for config ``cfg``; write the JSON to ``out`` (or print it) and
    print a table. ``quick`` shrinks everything to a few seconds (for tests)."""
    sections = list(sections or SECTIONS)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise BenchError(f"unknown bench section(s) {unknown}; choose from {list(SECTIONS)}")
    return _main_bench(cfg, out, quick, sizes, sections, rounds, _devices(cfg, devices), echo)


@contextlib.contextmanager
def _model_threads(cfg: dict):
    """Training and sampling run with the config's ``train.threads`` (as ``ihdm train``
    does); the heat section keeps every core, as scipy's ``workers=-1`` does."""
    threads = torch.get_num_threads()
    if cfg["train"].get("threads"):
        torch.set_num_threads(cfg["train"]["threads"])
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)


def _main_bench(cfg, out, quick, sizes, sections, rounds, devices, echo) -> dict:
    sizes = list(sizes or (QUICK_HEAT_SIZES if quick else HEAT_SIZES))
    if any(s < 4 for s in sizes):
        raise BenchError(f"heat sizes must be at least 4 pixels, got {sizes}")
    result: dict = {"machine": machine_info(), "quick": quick,
                    "config": {"experiment": cfg["experiment"], "resolution": cfg["data"]["resolution"],
                               "channels": cfg["data"]["channels"], "K": cfg["heat"]["K"],
                               "ddim_steps": cfg["ddpm"]["ddim_steps"]}}

    if "heat" in sections:
        rows = []
        for dev in devices:
            for size in sizes:
                big = size >= 128
                r = rounds or (3 if quick else (5 if big else 9))
                rows.append(heat_benchmark(size, batch=16 if quick else 128, rounds=r,
                                           warmup=1 if quick or big else 2, device=dev))
                if echo:
                    print(f"  heat {dev} {size}px done", file=sys.stderr, flush=True)
        result["heat"] = rows

    result["threads"] = {"heat": torch.get_num_threads()}
    with _model_threads(cfg) as model_threads:
        result["threads"]["train"] = result["threads"]["sample"] = model_threads
        _model_sections(cfg, result, quick, sections, devices, echo)

    text = json.dumps(result, indent=2)
    if out is not None:
        from .io import atomic_write_text

        atomic_write_text(out, text + "\n")
    if echo:
        table = format_table(result)
        if out is None:
            print(text)
            print(table, file=sys.stderr)
        else:
            print(table)
    return result


def _model_sections(cfg, result, quick, sections, devices, echo) -> None:
    """The train and sample sections, added to ``result``."""
    if "train" in sections:
        nets = {"config": cfg}
        for name in PAPER_CONFIGS:
            pc = paper_config(name)
            if pc is not None:
                if quick:  # same network and parameters, run on 8×8 inputs to take seconds
                    pc["data"]["resolution"] = QUICK_PAPER_RESOLUTION
                nets[name] = pc
        rows = []
        for dev in devices:
            for precision in _precisions(cfg, dev):
                for name, ncfg in nets.items():
                    if dev == "cpu" and precision == "bf16" and name != "config":
                        continue  # CPU bf16 (train.cpu_bf16) is measured for the config's network
                    if dev == "cpu":
                        batch = (2 if quick else 8) if name == "config" else (1 if quick else 4)
                        steps, warm = (1, 0) if quick else (3, 1)
                    else:
                        batch = min(ncfg["train"]["batch_size"], 8 if quick else 128)
                        steps, warm = (2, 1) if quick else (10, 3)
                    rows.append(train_benchmark(ncfg, name, device=dev, precision=precision,
                                                batch=batch, steps=steps, warmup=warm))
                    if echo:
                        print(f"  train {name} {dev} {precision} done", file=sys.stderr, flush=True)
        result["train"] = rows

    if "sample" in sections:
        rows = []
        for dev in devices:
            for precision in _precisions(cfg, dev):
                n = 2 if quick else (8 if dev == "cpu" else 64)
                for graphs in ((False, True) if dev == "cuda" else (False,)):
                    rows += sample_benchmark(cfg, device=dev, precision=precision, n=n,
                                             cuda_graphs=graphs)
        result["sample"] = rows


def format_table(result: dict) -> str:
    """A readable summary of a benchmark result."""
    m = result["machine"]
    lines = [f"machine: {m['cpu_model']} ({m['cpu_count']} CPUs, torch {m['torch']}, "
             + ", ".join(f"{v} {k} threads" for k, v in result.get("threads", {}).items())
             + ")" + (f", {m['cuda_device']}" if m.get("cuda") else "")]
    if "heat" in result:
        names = []
        for row in result["heat"]:
            names += [n for n in row["methods"] if n not in names]
        lines += ["", "heat operator, images/s (median of steady runs; max abs error vs float64 scipy)",
                  f"{'device':6} {'size':>4} {'route':6} " + " ".join(f"{n:>22}" for n in names)
                  + f" {'ours/scipy':>10}"]
        for row in result["heat"]:
            cells = []
            for n in names:
                r = row["methods"].get(n)
                cells.append(f"{r['images_per_s']:>12.0f} ({r['max_abs_err']:.0e})" if r else " " * 22)
            ms = row["methods"]
            ratio = (f"{ms['ours_blur']['images_per_s'] / ms['scipy_dct']['images_per_s']:>9.2f}x"
                     if "ours_blur" in ms and "scipy_dct" in ms else "")
            lines.append(f"{row['device']:6} {row['size']:>4} {row['route']:6} " + " ".join(
                f"{c:>22}" for c in cells) + f" {ratio:>10}")
    if "train" in result:
        header = (f"{'network':14} {'device':6} {'prec':5} {'params':>8} {'batch':>5} "
                  f"{'images/s':>9} {'step s':>8} {'peak MB':>9}")
        lines += ["", "training (IHDM loss + backward + Adam + EMA)", header]
        for r in result["train"]:
            lines.append(f"{r['network']:14} {r['device']:6} {r['precision']:5} "
                         f"{r['parameters'] / 1e6:>7.2f}M {r['batch']:>5} {r['images_per_s']:>9.2f} "
                         f"{r['step_s']:>8.3f} {r['peak_memory_mb']:>9.0f}")
    if "sample" in result:
        header = (f"{'model':10} {'device':6} {'prec':5} {'graphs':6} {'n':>4} {'net evals':>9} "
                  f"{'samples/s':>10}")
        lines += ["", "sampling", header]
        for r in result["sample"]:
            lines.append(f"{r['model']:10} {r['device']:6} {r['precision']:5} "
                         f"{'yes' if r.get('cuda_graphs') else 'no':6} {r['n']:>4} "
                         f"{r['network_evaluations']:>9} {r['samples_per_s']:>10.3f}")
    return "\n".join(lines)


def run(cfg: dict, args: argparse.Namespace) -> dict:
    """``ihdm bench`` with --out, --quick, --sizes, --sections and --rounds (see ihdm/cli.py)."""
    return main_bench(cfg, args.out, args.quick, sizes=args.sizes, sections=args.sections,
                      rounds=args.rounds, devices=args.devices)
