"""``ihdm <command>``: the command line the Snakemake rules call.

Every command takes the experiment config as its first argument and accepts
``--set section.key=value`` (repeatable) to override config keys. Errors in the user's
input (config, data, checkpoints) end the program with a one-paragraph message and exit
status 2, never with a traceback from deep inside.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from .config import ConfigError, load_config

log = logging.getLogger("ihdm")


def _config(args) -> dict:
    return load_config(args.config, args.set)


def _write_json(obj, path: str | Path | None) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, default=float)
    if path is None:
        print(text)
        return
    from .io import atomic_write_text

    atomic_write_text(path, text + "\n")


# --------------------------------------------------------------------------- commands
def cmd_describe(args) -> None:
    from .heat import blur_schedule
    from .unet import build_unet, count_parameters

    cfg = _config(args)
    n_params = count_parameters(build_unet(cfg))
    d, h, dd = cfg["data"], cfg["heat"], cfg["ddpm"]
    sigmas = blur_schedule(h["K"], h["blur_sigma_min"], h["blur_sigma_max"])
    out = {
        "experiment": cfg["experiment"],
        "dataset": d["dataset"],
        "resolution": d["resolution"],
        "channels": d["channels"],
        "models": {
            "ihdm": {
                "parameters": n_params,
                "K": h["K"],
                "schedule": {
                    "blur_sigma_min": h["blur_sigma_min"],
                    "blur_sigma_max": h["blur_sigma_max"],
                    "blur_sigmas": [round(float(s), 6) for s in sigmas],
                    "sigma": h["sigma"],
                    "delta": h["delta"],
                },
            },
            "ddpm": {
                "parameters": n_params,
                "T": dd["T"],
                "schedule": {"type": dd["schedule"], "beta_start": dd["beta_start"],
                             "beta_end": dd["beta_end"]},
            },
        },
        "unet": cfg["unet"],
        "train": {k: cfg["train"][k] for k in ("steps", "batch_size", "lr", "ema_decay")},
    }
    _write_json(out, args.out)


def cmd_prepare(args) -> None:
    from .data import prepare

    cfg = _config(args)
    path = prepare(cfg, args.split, args.out)
    log.info("wrote %s", path)


def cmd_train(args) -> None:
    from .train import train

    cfg = _config(args)
    if args.steps is not None:
        cfg["train"]["steps"] = args.steps
    final = train(cfg, args.model, args.data, args.out, progress=not args.quiet)
    print(final)


def cmd_sample(args) -> None:
    import torch

    from .data import to_uint8
    from .train import build_process, load_model, resolve_device, training_images

    overrides = load_config(args.config, args.set) if args.config else None
    device = resolve_device(overrides or {"device": "auto"})
    net, cfg, model, state = load_model(args.checkpoint, device=device,
                                        use_ema=not args.no_ema)
    if overrides is not None:  # sampling settings come from the given config
        cfg = {**cfg, "sample": overrides["sample"]}
    sc = cfg["sample"]
    process = build_process(cfg, model)
    C, R = cfg["data"]["channels"], cfg["data"]["resolution"]
    kwargs = dict(seed=args.seed, variant=args.variant, trajectory_frames=sc["trajectory_frames"],
                  batch_size=sc["batch_size"], device=device)
    if model == "ihdm":
        data_path = args.data or state.get("data_path")
        if not data_path:
            raise ConfigError("IHDM sampling needs the training images for its prior: pass --data")
        prior = torch.from_numpy(training_images(cfg, data_path)).permute(0, 3, 1, 2)
        kwargs.update(prior_images=prior.float() / 255.0,
                      interpolation_frames=sc["interpolation_frames"])
    else:
        kwargs.update(sampler=args.sampler, interpolation_frames=sc["interpolation_frames"])
    n = args.n if args.n is not None else sc["n"]
    result = process.sample(net, n, (C, R, R), **kwargs)
    from .io import write_samples

    write_samples(args.out, result, meta={"model": model, "variant": args.variant,
                                          "seed": args.seed, "checkpoint": str(args.checkpoint),
                                          "n": n, "step": int(state.get("step", 0)),
                                          "frames": sc["interpolation_frames"]
                                          if args.variant == "interpolate" else None})
    log.info("wrote %d samples to %s", len(result["images"]), args.out)


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ihdm", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, fn, help_, config_required=True):
        sp = sub.add_parser(name, help=help_, description=help_)
        if config_required:
            sp.add_argument("config", help="experiment config (YAML)")
        else:
            sp.add_argument("config", nargs="?", help="experiment config (YAML)")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.steps=100")
        sp.set_defaults(func=fn)
        return sp

    sp = add("describe", cmd_describe, "print the models and schedules of a config as JSON")
    sp.add_argument("--out", help="write the JSON here instead of stdout")

    sp = add("prepare", cmd_prepare, "write a data split as a uint8 .npz")
    sp.add_argument("--split", choices=["train", "test"], required=True)
    sp.add_argument("--out", required=True)

    sp = add("train", cmd_train, "train IHDM or the DDPM baseline (resumes when DIR has checkpoints)")
    sp.add_argument("--model", choices=["ihdm", "ddpm"], required=True)
    sp.add_argument("--data", required=True, help="training images (.npz from `ihdm prepare`)")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--steps", type=int, help="override train.steps")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")

    sp = add("sample", cmd_sample, "draw samples from a trained model", config_required=False)
    sp.add_argument("--checkpoint", required=True)
    sp.add_argument("--n", type=int, help="number of samples (rows for interpolate)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--variant", default="random",
                    choices=["random", "shared-prior", "shared-noise", "interpolate"])
    sp.add_argument("--sampler", default="ddim", choices=["ancestral", "ddim"],
                    help="DDPM only")
    sp.add_argument("--data", help="training images for IHDM's prior (default: the training data)")
    sp.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA")
    sp.add_argument("--out", required=True, help="output .npz (a .png grid is written beside it)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .checkpoint import CheckpointError

    user_errors = (ConfigError, CheckpointError, FileNotFoundError)
    try:
        from .data import DataError

        user_errors += (DataError,)
    except ImportError:
        pass
    try:
        args.func(args)
    except user_errors as exc:
        print(f"ihdm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
