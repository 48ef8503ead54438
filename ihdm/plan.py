"""How long a config's training takes on a cluster: GPU-hours and SLURM attempts.

The throughput is either stated in the config (``workflow.steps_per_second``, e.g. from
``ihdm bench CONFIG --sections train`` on a GPU node) or assumed from the size of a step:
ASSUMED_PIXELS_PER_S training pixels (batch x resolution^2) per second and GPU. The
assumption is no measurement (this repository has no GPU numbers); the output says which
one a number rests on. The SLURM attempts come from the profile's `retries` and the train
rule's `runtime`, which may grow with the attempt number (a Python expression in `attempt`).
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from .config import ConfigError

#: assumed sustained training throughput of one A100-class GPU for the paper's U-Nets, in
#: training-image pixels per second (CIFAR-10: 128 x 32^2 pixels per step, ~3.8 steps/s)
ASSUMED_PIXELS_PER_S = 0.5e6
#: the SLURM profile shipped with the workflow, beside the package in a source checkout
DEFAULT_PROFILE = Path(__file__).resolve().parent.parent / "workflow" / "profiles" / "slurm" / "config.yaml"


def throughput(cfg: dict) -> tuple[float, str]:
    """Training steps per second of the whole job (all train.processes) and where the
    number comes from."""
    stated = cfg["workflow"].get("steps_per_second")
    if stated:
        return float(stated), "stated (workflow.steps_per_second)"
    tc, res = cfg["train"], cfg["data"]["resolution"]
    per_gpu = ASSUMED_PIXELS_PER_S / (tc["batch_size"] * res * res)
    return per_gpu * tc["processes"], (
        f"assumed: {ASSUMED_PIXELS_PER_S / 1e6:g} M training pixels/s per GPU, not measured; "
        "set workflow.steps_per_second from `ihdm bench` on the cluster")


def slurm_attempts(profile: str | Path, rule: str = "train") -> list[float]:
    """The time limit in minutes of each attempt of `rule` under a Snakemake SLURM
    profile: 1 + retries attempts, `runtime` evaluated with `attempt` = 1, 2, ..."""
    path = Path(profile)
    if path.is_dir():
        path = path / "config.yaml"
    try:
        prof = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not a Snakemake profile ({exc})") from None
    if not isinstance(prof, dict):
        raise ConfigError(f"{path}: not a Snakemake profile (no YAML mapping)")
    runtime = (prof.get("set-resources", {}).get(rule, {}).get("runtime")
               or prof.get("default-resources", {}).get("runtime"))
    if runtime is None:
        raise ConfigError(f"{path}: no runtime for rule '{rule}' (set-resources) or default-resources")
    limits = []
    for attempt in range(1, int(prof.get("retries", 0)) + 2):
        try:  # as Snakemake evaluates a resource given as a string
            value = eval(str(runtime), {"__builtins__": {"min": min, "max": max}}, {"attempt": attempt})
        except Exception as exc:
            raise ConfigError(f"{path}: set-resources {rule} runtime '{runtime}': {exc}") from None
        limits.append(float(value))
    return limits


def training_plan(cfg: dict, profile: str | Path | None = None) -> dict:
    """Per model: wall hours and GPU-hours of train.steps at `throughput`, and with a
    SLURM profile the attempts it takes (each attempt resumes from the last checkpoint)."""
    steps = cfg["train"]["steps"]
    limits = slurm_attempts(profile) if profile is not None else None
    sps, source = throughput(cfg)
    if cfg["device"] != "cuda" and not cfg["workflow"].get("steps_per_second"):
        return {"steps": steps, "steps_per_second": None, "gpus_per_training": 0,
                "throughput": "not planned: device is not cuda (state workflow.steps_per_second)"}
    hours = steps / sps / 3600
    gpus = cfg["train"]["processes"] if cfg["device"] == "cuda" else 0
    plan = {"steps": steps, "steps_per_second": round(sps, 3), "throughput": source,
            "gpus_per_training": gpus, "wall_hours_per_model": round(hours, 1),
            "gpu_hours_per_model": round(hours * gpus, 1),
            "gpu_hours": round(hours * gpus * len(cfg["workflow"]["models"]), 1)}
    if limits is not None:
        done, needed = 0.0, None
        for i, minutes in enumerate(limits, 1):
            done += minutes / 60
            if needed is None and done >= hours:
                needed = i
        plan["slurm"] = {"profile": str(profile), "attempt_hours": [round(m / 60, 1) for m in limits],
                         "hours_over_all_attempts": round(done, 1),
                         "attempts_needed": needed, "enough": needed is not None}
        if needed is None:  # the processes (GPUs, assumed to scale linearly) that would fit
            plan["slurm"]["processes_needed"] = math.ceil(hours * gpus / done)
    return plan


def format_plan(rows: dict[str, dict]) -> str:
    """A text table of training_plan() per config name."""
    lines = [f"{'config':<28} {'steps':>9} {'steps/s':>8} {'GPUs':>4} {'h/model':>8} "
             f"{'GPU-h (all models)':>18} {'attempts (h each)':<28} basis"]
    for name, p in rows.items():
        if p["steps_per_second"] is None:
            lines.append(f"{name:<28} {p['steps']:>9} {'-':>8} {0:>4} {p['throughput']}")
            continue
        slurm = p.get("slurm")
        attempts = "-"
        if slurm and slurm["enough"]:
            used = slurm["attempt_hours"][:slurm["attempts_needed"]]
            attempts = f"{slurm['attempts_needed']} ({'+'.join(f'{h:g}' for h in used)})"
        elif slurm:
            attempts = (f"not in {len(slurm['attempt_hours'])}: "
                        f"train.processes >= {slurm['processes_needed']}")
        basis = "stated" if p["throughput"].startswith("stated") else "assumed"
        lines.append(f"{name:<28} {p['steps']:>9} {p['steps_per_second']:>8.3g} "
                     f"{p['gpus_per_training']:>4} {p['wall_hours_per_model']:>8.1f} "
                     f"{p['gpu_hours']:>18.1f} {attempts:<28} {basis}")
    return "\n".join(lines)
