"""One training loop for both models (IHDM and the DDPM baseline).

Adam with linear warm-up, gradient clipping, an EMA of the weights, bf16 autocast on
CUDA, a CSV log of the loss, atomic checkpoints every ``train.checkpoint_every`` steps and
at the end, and resume: started again on the same output folder, a run continues from its
latest readable checkpoint (falling back to the one before when the latest is damaged) and
ends with the same weights as an uninterrupted run. All randomness of a step (batch
indices, levels, noise, dropout) comes from RNG states saved in the checkpoint.

Output folder layout::

    DIR/checkpoints/step_00000500.pt   # full training state, the newest few kept
    DIR/final.pt                        # the finished model (net + EMA + config)
    DIR/log.csv                         # step, loss, lr, images/s, elapsed seconds
    DIR/train.log                       # human-readable messages (resume, progress, finish)
    DIR/tensorboard/                    # with train.tensorboard: scalars and sample grids
    DIR/.lock                           # held while a trainer runs in DIR
    DIR/superseded/<time>/              # runs set aside by ``on_change="restart"``

Every checkpoint and final.pt hold a training record (:mod:`ihdm.provenance`): the config
keys that shape the weights, the sha256 of the training images, a fingerprint of the
training code, the device type and the CPU thread count. A resume whose record differs
is refused with the differences (``on_change="refuse"``), or the old run is moved into
``DIR/superseded/`` and training starts from scratch (``"restart"``, what the workflow
does), or it resumes anyway and final.pt lists the differences (``"resume"``).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import fcntl
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from . import checkpoint as ckpt_io
from . import provenance
from .config import ConfigError
from .data import array_sha256
from .errors import UserError
from .io import atomic_write_text
from .runtime import autocast, build_model, resolve_device, training_images
from .unet import build_unet

log = logging.getLogger("ihdm.train")

#: what ``train`` does when the checkpoints in its folder were made by other settings,
#: data or code: refuse, set them aside and start from scratch, or resume anyway
ON_CHANGE = ("refuse", "restart", "resume")


class TrainingDiverged(UserError, RuntimeError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM, SIGUSR1 or SIGINT arrived (a SLURM time limit, preemption, scancel,
    Ctrl-C); the step in progress was finished and checkpointed. ``signum`` is the
    signal's number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class ProvenanceError(UserError, ValueError):
    """A checkpoint was made by other settings, data or code than the run that reads it."""


class OutputLocked(UserError, RuntimeError):
    """Another trainer is running in the same output folder."""


#: signals that stop training cleanly: SLURM sends SIGTERM at a job's time limit or on
#: preemption, KillWait seconds (30 by default) before SIGKILL; `sbatch --signal=USR1@120`
#: asks for SIGUSR1 two minutes ahead; SIGINT is Ctrl-C
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


@contextlib.contextmanager
def _stop_on_signals():
    """Yields a list that receives the number of any STOP_SIGNALS that arrives; the
    previous handlers come back afterwards. A second Ctrl-C interrupts at once (no
    checkpoint). Handlers can only be set from the main thread; elsewhere the signals
    keep their default action (resume from the last periodic checkpoint)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        if signum == signal.SIGINT and signal.SIGINT in received:
            raise KeyboardInterrupt
        received.append(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def lr_at(step: int, cfg_train: dict) -> float:
    warm = cfg_train["warmup_steps"]
    return cfg_train["lr"] * (min(1.0, (step + 1) / warm) if warm else 1.0)


def ema_decay_at(step: int, cfg_train: dict) -> float:
    """The EMA decay of the update after training step ``step`` (0-based). With
    ``train.ema_warmup`` it is the authors' EMA (score_sde's, which counts its updates
    n = 1, 2, ...): min(decay, (1 + n) / (10 + n)) with n = step + 1. A fixed 0.999 leaves
    0.999^600 = 55 % of the random initial weights in the average after 600 steps
    (benchmarks/README.md, "EMA warm-up"); the ramp averages over about the last tenth of
    the steps until the configured decay takes over (from update 8 990 for 0.999)."""
    decay = cfg_train["ema_decay"]
    n = step + 1
    return min(decay, (1 + n) / (10 + n)) if cfg_train["ema_warmup"] else decay


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    for pe, p in zip(ema.parameters(), net.parameters()):
        pe.lerp_(p.detach(), 1 - decay)
    for be, b in zip(ema.buffers(), net.buffers()):
        be.copy_(b)


def train_step(process, net: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer,
               u0: torch.Tensor, step: int, cfg_train: dict, *, generator: torch.Generator,
               amp=None, step_fn: nn.Module | None = None, shard: slice | None = None) -> torch.Tensor:
    """One optimisation step on the batch ``u0`` (float NCHW in [0, 1]): the learning rate
    of ``step``, the model's loss under ``amp``, backward, gradient clipping, Adam, the EMA.
    ``step_fn`` is the network as the loss calls it (a DDP or compiled wrapper of ``net``);
    ``shard`` this process's part of the batch. Returns the loss, detached, on its device.
    The training loop and ``ihdm bench`` both run this."""
    for group in opt.param_groups:
        group["lr"] = lr_at(step, cfg_train)
    with amp if amp is not None else contextlib.nullcontext():
        loss = process.loss(step_fn if step_fn is not None else net, u0, generator=generator,
                            shard=shard)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg_train["grad_clip"]:
        nn.utils.clip_grad_norm_(net.parameters(), cfg_train["grad_clip"])
    opt.step()
    ema_update(ema, net, ema_decay_at(step, cfg_train))
    return loss.detach()


def _setup_file_log(out: Path) -> logging.Handler:
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


@contextlib.contextmanager
def _folder_lock(out: Path):
    """Hold an exclusive lock on ``out/.lock`` (flock: the kernel releases it when the
    holder dies, so a lock left by a killed trainer is free again); its text names the
    holder. Yields the holder named by a lock that a killed trainer left (or None).
    Raises :class:`OutputLocked` while another trainer holds it."""
    path = out / ".lock"
    fh = open(path, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise OutputLocked(
                f"'{out}' is in use by another `ihdm train` ({holder}); wait for it to finish "
                "or use another --out") from None
        fh.seek(0)
        previous = fh.read().strip() or None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        try:
            yield previous
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
    finally:
        fh.close()


def train(cfg: dict, model: str, data_path: str | Path, out_dir: str | Path,
          *, progress: bool = True, on_change: str = "refuse") -> Path:
    """Train ``model`` on the images in ``data_path``; returns the path of final.pt.
    ``on_change`` says what to do when ``out_dir`` holds checkpoints made by other
    settings, data or code (see :data:`ON_CHANGE` and the module docstring)."""
    if on_change not in ON_CHANGE:
        raise ValueError(f"on_change must be one of {ON_CHANGE}, got {on_change!r}")
    out = Path(out_dir)
    # inputs checked before anything is written: a bad one leaves no run folder behind
    resolve_device(cfg)
    images = training_images(cfg, data_path)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("RANK", "0")) != 0:  # data-parallel: rank 0 writes the logs
        return _train(cfg, model, data_path, images, out, progress, on_change)
    with _folder_lock(out) as stale:
        handler = _setup_file_log(out)
        if stale:
            log.info("took over the lock of %s left by %s (no longer running)", out, stale)
        try:
            return _train(cfg, model, data_path, images, out, progress, on_change)
        except TrainingInterrupted as exc:
            log.warning("%s", exc)
            raise
        finally:
            log.removeHandler(handler)
            handler.close()


def _distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world size, device) under torchrun (WORLD_SIZE > 1), else (0, 1, device).
    NCCL on CUDA (one GPU per local rank), gloo on the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":  # the GPU first, then the process group (as torch documents)
        local, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local >= gpus:
            raise ConfigError(
                f"train.processes: process {local} on this node has no GPU of its own ({gpus} "
                "visible); run at most one process per GPU"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


@dataclass
class _Run:
    """What the training steps of one run work with (one process of a data-parallel run)."""

    cfg: dict
    model: str
    out: Path
    progress: bool
    process: object  # IHDM or DDPM: .loss(step_fn, u0, generator=, shard=)
    images: torch.Tensor  # uint8 (N, C, H, W) on the device
    net: nn.Module
    ema: nn.Module
    opt: torch.optim.Optimizer
    gen: torch.Generator
    step_fn: nn.Module  # net, or its DDP / compiled wrapper
    rank: int
    world: int
    shard: slice | None
    device: torch.device
    memory_format: torch.memory_format
    record: dict  # provenance.training_record of this run
    history: list  # resumes across differences (on_change="resume"): step and what differed

    @property
    def main_rank(self) -> bool:
        return self.rank == 0


def _set_aside(out: Path) -> Path:
    """Move the checkpoints, loss log and final model of ``out`` into a new folder
    ``out/superseded/<UTC time>/`` (nothing is deleted); returns that folder."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = out / "superseded" / stamp
    n = 1
    while dest.exists():
        n += 1
        dest = out / "superseded" / f"{stamp}-{n}"
    dest.mkdir(parents=True)
    for name in ("checkpoints", "log.csv", "final.pt"):
        if (out / name).exists():
            os.replace(out / name, dest / name)
    (out / "checkpoints").mkdir()
    return dest


def _resume_state(out: Path, model: str, record: dict, tc: dict, on_change: str,
                  main_rank: bool) -> tuple[dict | None, list]:
    """The checkpoint to resume from (or None) and the run's provenance history, after
    comparing the newest checkpoint's training record with this run's (``on_change``)."""
    state = ckpt_io.load_latest(out / "checkpoints", log=log if main_rank else None)
    if state is None:
        return None, []
    if state["model"] != model:  # another model's folder: a mistake, whatever on_change says
        raise ProvenanceError(
            f"{out}: holds checkpoints of model '{state['model']}', not '{model}'; "
            "use another output folder")
    changes = provenance.differences(state.get("provenance"), record)
    if state["step"] > tc["steps"]:
        changes.append(f"config train.steps: {tc['steps']} is below the checkpoint's step "
                       f"{state['step']}")
    history = list(state.get("history", []))
    if not changes:
        return state, history
    listing = "\n  ".join(changes)
    if on_change == "refuse":
        raise ProvenanceError(
            f"'{state['path']}' was made by other settings, data or code than this run:\n  "
            f"{listing}\nNothing was changed. Use another --out, or pass --on-change restart "
            f"(sets the old run aside in {out / 'superseded'} and trains from scratch) or "
            "--on-change resume (continues anyway; final.pt records the differences)")
    if on_change == "resume":
        if main_rank:
            log.warning("resuming %s although it differs from this run (--on-change resume):\n  %s",
                        state["path"], listing)
        return state, history + [{"step": int(state["step"]), "differences": changes}]
    if main_rank:  # restart
        dest = _set_aside(out)
        log.warning("the checkpoints in %s were made by other settings, data or code:\n  %s\n"
                    "moved them to %s; training from scratch", out, listing, dest)
    return None, []


def _train(cfg, model, data_path, images_np, out, progress, on_change) -> Path:
    tc = cfg["train"]
    if tc["threads"]:
        torch.set_num_threads(tc["threads"])
    rank, world, device = _distributed(resolve_device(cfg))
    if tc["batch_size"] % world:
        raise ConfigError(f"train.batch_size ({tc['batch_size']}) must be divisible by the "
                          f"number of processes ({world}, train.processes)")
    local = tc["batch_size"] // world
    shard = slice(rank * local, (rank + 1) * local) if world > 1 else None
    process = build_model(cfg, model)
    record = provenance.training_record(cfg, model, array_sha256(images_np), device=device.type,
                                        threads=torch.get_num_threads(), processes=world)
    # uint8 NCHW in memory (on the GPU when there), converted per batch: no per-sample Python
    images = torch.from_numpy(images_np).permute(0, 3, 1, 2).contiguous().to(device)
    N = images.shape[0]

    torch.manual_seed(cfg["seed"])
    net = build_unet(cfg, model).to(device)
    memory_format = torch.channels_last if tc["channels_last"] else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(
        net.parameters(), lr=tc["lr"], betas=(tc["adam_beta1"], tc["adam_beta2"]),
        eps=tc["adam_eps"], fused=device.type == "cuda",
    )
    gen = torch.Generator(device=device).manual_seed(cfg["seed"])
    start, trained_s = 0, 0.0
    if world > 1 and rank != 0:
        dist.barrier()  # rank 0 checks the checkpoints first (and may set them aside)
    state, history = _resume_state(out, model, record, tc, on_change, rank == 0)
    if world > 1 and rank == 0:
        dist.barrier()
    if state is not None:
        if state["rng"]["generator"].numel() != gen.get_state().numel():
            raise ProvenanceError(
                f"{state['path']}: written by a run whose random generator lived on another kind "
                f"of device than this run's ({device.type}); resume with the same train.device, "
                "or use another output folder"
            )
        net.load_state_dict(state["net"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["rng"]["generator"])
        torch.set_rng_state(state["rng"]["torch_cpu"])
        if device.type == "cuda" and "torch_cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["torch_cuda"])
        start = state["step"]
        trained_s = float(state.get("train_seconds", 0.0))  # absent in older checkpoints
        log.info("resuming from checkpoint %s at step %d", state["path"], start)
    else:
        log.info("starting %s training from scratch: %d images, %d parameters, device %s, "
                 "%d torch threads", model, N, sum(p.numel() for p in net.parameters()), device,
                 torch.get_num_threads())
    if world > 1:
        log.info("data-parallel over %d processes: %d of the %d images of each batch per process",
                 world, local, tc["batch_size"])

    step_fn = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        step_fn = DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)
    if tc["compile"]:
        step_fn = torch.compile(step_fn)
    run = _Run(cfg, model, out, progress, process, images, net, ema, opt, gen, step_fn, rank,
               world, shard, device, memory_format, record, history)
    with _stop_on_signals() as stop:
        done, trained_s = _loop(run, start, trained_s, stop)
    return _write_final(run, data_path, done, trained_s)


def _loop(run: _Run, start: int, trained_s: float, stop: list) -> tuple[int, float]:
    """The training steps from ``start``, after ``trained_s`` seconds of training in earlier
    runs; returns (steps done, training seconds in all runs). A signal in ``stop`` ends the
    loop after the step in progress, with a checkpoint. train.time_budget_min counts the
    training time of all runs, so a preempted and resumed run gets the same compute."""
    cfg, model, out, net, ema, opt, gen = run.cfg, run.model, run.out, run.net, run.ema, run.opt, run.gen
    main_rank, world, device = run.main_rank, run.world, run.device
    tc = cfg["train"]
    N = run.images.shape[0]

    def save_state(step: int) -> None:
        if not main_rank:
            return
        rng = {"generator": gen.get_state(), "torch_cpu": torch.get_rng_state()}
        if device.type == "cuda":
            rng["torch_cuda"] = torch.cuda.get_rng_state()
        ckpt_io.save_checkpoint(
            out / "checkpoints", step,
            {"model": model, "config": cfg, "step": step, "net": net.state_dict(),
             "ema": ema.state_dict(), "opt": opt.state_dict(), "rng": rng,
             "train_seconds": clock(), "provenance": run.record, "history": run.history},
            keep=tc["keep_checkpoints"],
        )

    log_path = out / "log.csv" if main_rank else Path(os.devnull)
    new_log = not log_path.exists() or start == 0 or not main_rank
    if not new_log:
        _truncate_log(log_path, start)
    with open(log_path, "w" if new_log else "a", newline="") as fh:
        writer = csv.writer(fh)
        if new_log:
            writer.writerow(["step", "loss", "lr", "images_per_s", "elapsed_s"])
        t0 = time.perf_counter()

        def clock() -> float:  # training seconds over this run and the earlier ones
            return trained_s + time.perf_counter() - t0

        last_t, acc, acc_n = t0, None, 0
        # a bar on a terminal; in a file (the workflow's logs) plain progress lines instead
        on_tty = sys.stderr.isatty()
        bar = tqdm(range(start, tc["steps"]), initial=start, total=tc["steps"],
                   disable=not (run.progress and main_rank and on_tty), desc=f"train {model}",
                   mininterval=2.0)
        progress = _Progress(start, tc["steps"], tc["progress_every_s"],
                             enabled=run.progress and main_rank and not on_tty)
        board = _TensorBoard(run) if tc["tensorboard"] and main_rank else None
        net.train()
        budget = tc["time_budget_min"] * 60 if tc["time_budget_min"] else None
        done = start
        for step in bar:
            idx = torch.randint(0, N, (tc["batch_size"],), device=device, generator=gen)
            u0 = run.images[idx].float().div_(255.0).contiguous(memory_format=run.memory_format)
            reported = train_step(run.process, net, ema, opt, u0, step, tc, generator=gen,
                                  amp=autocast(cfg, device), step_fn=run.step_fn, shard=run.shard)
            if world > 1:  # every rank sees the mean over the whole batch (and stops together)
                dist.all_reduce(reported, op=dist.ReduceOp.AVG)
            # summed where the loss is: read back (a host sync on a GPU) only to log,
            # to checkpoint or to stop, and checked for divergence then
            acc = reported if acc is None else acc + reported
            acc_n += 1
            done = step + 1
            out_of_time = budget is not None and clock() > budget
            stopped = bool(stop)
            if world > 1:  # one collective: rank 0's clock decides the budget, a signal to
                # any rank stops all
                flags = torch.tensor([float(out_of_time and main_rank), float(stopped)], device=device)
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                out_of_time, stopped = bool(flags[0].item()), bool(flags[1].item())
            log_due = done % tc["log_every"] == 0 or done == tc["steps"]
            save_due = done % tc["checkpoint_every"] == 0 or done == tc["steps"] or out_of_time or stopped
            if log_due or save_due:
                mean = acc.item() / acc_n
                if not math.isfinite(mean):
                    raise TrainingDiverged(
                        f"loss is {mean} in steps {done - acc_n + 1}..{done}; stopped. The last good "
                        f"checkpoint in {out / 'checkpoints'} is kept; lower train.lr or check the data"
                    )
            if log_due:
                now = time.perf_counter()
                ips = acc_n * tc["batch_size"] / max(now - last_t, 1e-9)
                writer.writerow([done, f"{mean:.6g}", f"{lr_at(step, tc):.3g}",
                                 f"{ips:.1f}", f"{clock():.1f}"])
                fh.flush()
                bar.set_postfix(loss=f"{mean:.4g}", ips=f"{ips:.0f}")
                progress.update(done, mean, ips)
                if board:
                    board.scalars(done, mean, lr_at(step, tc), ips)
                acc, acc_n, last_t = None, 0, now
            if save_due:
                save_state(done)
                if board:
                    board.samples(done)
            if stopped:
                signum = stop[0] if stop else signal.SIGTERM
                if world > 1:
                    dist.destroy_process_group()
                raise TrainingInterrupted(
                    f"stopped by {signal.Signals(signum).name} after step {done} of {tc['steps']}; "
                    f"checkpoint written to {out / 'checkpoints'}; run again to resume", signum)
            if out_of_time:
                log.info("time budget of %.1f min used up after %d steps", budget / 60, done)
                break
        if board:
            board.close()
    return done, clock()


class _Progress:
    """Plain progress lines for log files (no carriage returns): step, loss, images/s and
    the estimated time to train.steps, at most every ``every_s`` seconds (0: at every
    logged step) and at the last step."""

    def __init__(self, start: int, steps: int, every_s: float, enabled: bool):
        self.start, self.steps, self.every_s, self.enabled = start, steps, every_s, enabled
        self.t0 = self.last = time.perf_counter()

    def update(self, done: int, loss: float, images_per_s: float) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self.last < self.every_s and done < self.steps):
            return
        self.last = now
        rate = (done - self.start) / max(now - self.t0, 1e-9)  # steps/s of this run
        eta = (self.steps - done) / rate if rate > 0 else float("inf")
        log.info("step %d/%d (%.1f%%) loss %.4g images/s %.0f ETA %s", done, self.steps,
                 100 * done / self.steps, loss, images_per_s, _duration(eta))


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


class _TensorBoard:
    """train.tensorboard: loss, learning rate and images/s at every logged step, and a
    grid of samples of the EMA network at every checkpoint, in DIR/tensorboard/. The
    samples are drawn with a fixed seed and the training's random states are put back
    afterwards, so the weights are the same with and without it."""

    SAMPLES = 16

    def __init__(self, run: _Run):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.tensorboard: true needs the tensorboard package "
                              "(pip install 'ihdm[tensorboard]')") from None
        self.run = run
        self.writer = SummaryWriter(log_dir=str(run.out / "tensorboard"))
        # a sampling process of the model, with the training images for a prior that needs them
        prior = run.images.permute(0, 2, 3, 1).cpu().numpy()
        self.process = build_model(run.cfg, run.model, prior_images=prior)

    def scalars(self, step: int, loss: float, lr: float, images_per_s: float) -> None:
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)
        self.writer.add_scalar("train/images_per_s", images_per_s, step)
        self.writer.flush()

    def samples(self, step: int) -> None:
        from torchvision.utils import make_grid

        run = self.run
        cpu = torch.get_rng_state()
        gpu = torch.cuda.get_rng_state() if run.device.type == "cuda" else None
        try:
            shape = tuple(run.images.shape[1:])
            out = self.process.sample(run.ema, self.SAMPLES, shape, seed=0, device=run.device,
                                      batch_size=self.SAMPLES)
        finally:
            torch.set_rng_state(cpu)
            if gpu is not None:
                torch.cuda.set_rng_state(gpu)
        grid = make_grid(torch.as_tensor(out["images"]).float().cpu(), nrow=4)
        self.writer.add_image("samples", grid, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _truncate_log(path: Path, step: int) -> None:
    """Keep the rows of the loss log up to ``step`` (a killed run may have logged steps
    after its last checkpoint, which the resumed run logs again)."""
    lines = path.read_text().splitlines(keepends=True)
    keep = lines[:1] + [ln for ln in lines[1:] if ln.split(",", 1)[0].isdigit()
                        and int(ln.split(",", 1)[0]) <= step]
    if len(keep) != len(lines):
        atomic_write_text(path, "".join(keep))


def _write_final(run: _Run, data_path, done: int, trained_s: float) -> Path:
    final = run.out / "final.pt"
    if run.world > 1:
        dist.barrier()
        dist.destroy_process_group()
        if not run.main_rank:
            return final
    ckpt_io.atomic_save(
        {"model": run.model, "config": run.cfg, "step": done, "net": run.net.state_dict(),
         "ema": run.ema.state_dict(), "data_path": str(Path(data_path).resolve()),
         "train_seconds": trained_s, "provenance": run.record, "history": run.history},
        final,
    )
    log.info("finished %d steps; final model written to %s", done, final)
    return final
