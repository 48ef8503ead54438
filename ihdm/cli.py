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
import os
import sys
from pathlib import Path

import numpy as np

from . import __version__
from .config import ConfigError, load_config
from .provenance import models

log = logging.getLogger("ihdm")
MODELS = models()
VARIANTS = list(dict.fromkeys(v for info in MODELS.values() for v in info["variants"]))


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
    from .plan import training_plan
    from .unet import build_unet, count_parameters, network_config

    cfg = _config(args)
    n_params = count_parameters(build_unet(cfg, "ihdm"))
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
                "parameters": count_parameters(build_unet(cfg, "ddpm")),
                "unet": network_config(cfg, "ddpm"),  # its own when ddpm.unet is set
                "T": dd["T"],
                "schedule": {"type": dd["schedule"], "beta_start": dd["beta_start"],
                             "beta_end": dd["beta_end"]},
            },
            "blurring": {
                "parameters": count_parameters(build_unet(cfg, "blurring")),
                **cfg["blurring"],
            },
        },
        "unet": cfg["unet"],
        "train": {k: cfg["train"][k] for k in ("steps", "batch_size", "lr", "ema_decay")},
        "training_plan": training_plan(cfg, _profile(args)),
    }
    _write_json(out, args.out)


def _profile(args):
    """The SLURM profile of --profile, else the workflow's beside the package (if there)."""
    from .plan import DEFAULT_PROFILE

    if args.profile:
        return args.profile
    return DEFAULT_PROFILE if DEFAULT_PROFILE.is_file() else None


def cmd_plan(args) -> None:
    from .plan import format_plan, training_plan

    profile = _profile(args)
    rows = {}
    for path in [args.config, *args.more]:
        cfg = load_config(path, args.set)
        rows[Path(path).stem if Path(path).parent.name != "paper" else f"paper/{Path(path).stem}"] = (
            training_plan(cfg, profile))
    print(format_plan(rows))
    if profile:
        print(f"SLURM attempts: the train rule's runtime and retries in {profile}")


def cmd_table(args) -> None:
    from .tables import write_page

    write_page(args.out, args.title, args.files, rows=args.rows, names=args.names)


def cmd_prepare(args) -> None:
    from .data import prepare

    cfg = _config(args)
    path = prepare(cfg, args.split, args.out)
    log.info("wrote %s", path)


def cmd_train(args) -> None:
    from .train import train

    if args.steps is not None:  # checked by the schema like any other key
        args.set = [*args.set, f"train.steps={args.steps}"]
    cfg = _config(args)
    procs = cfg["train"]["processes"]
    if procs > 1 and "WORLD_SIZE" not in os.environ:
        # data-parallel: become torchrun, which starts `procs` copies of this command (each
        # sees WORLD_SIZE); signals (SLURM's SIGTERM) reach torchrun, which passes them on
        # to the workers, and its exit status is the workers'
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(procs), "-m", "ihdm.cli", *args.argv]
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, cmd)
    final = train(cfg, args.model, args.data, args.out, progress=not args.quiet,
                  on_change=args.on_change)
    print(final)


def cmd_sample(args) -> None:
    from .runtime import autocast, load_trained, precision, resolve_device, trained_precision

    given = load_config(args.config, args.set) if args.config else None
    device = resolve_device(given or {"device": "auto"})
    net, cfg, model, process, state = load_trained(args.checkpoint, given, device=device,
                                                   data=args.data, use_ema=not args.no_ema)
    if args.variant not in process.variants:
        raise ConfigError(f"'{args.checkpoint}' is a {model} model, which cannot sample variant "
                          f"'{args.variant}'; it supports {list(process.variants)}")
    sc = cfg["sample"]
    if sc["cuda_graphs"] and device.type == "cuda":
        from .unet import CUDAGraphed

        net = CUDAGraphed(net)
    C, R = cfg["data"]["channels"], cfg["data"]["resolution"]
    n = args.n if args.n is not None else sc["n"]
    with autocast(cfg, device, stage="sample"):
        result = process.sample(net, n, (C, R, R), seed=args.seed, variant=args.variant,
                                trajectory_frames=sc["trajectory_frames"],
                                batch_size=sc["batch_size"], device=device)
    from .samples import write_samples

    write_samples(args.out, result, meta={"model": model, "variant": args.variant,
                                          "seed": args.seed, "checkpoint": str(args.checkpoint),
                                          "n": n, "step": int(state.get("step", 0)),
                                          "frames": sc["interpolation_frames"]
                                          if args.variant == "interpolate" else None,
                                          "sampler": result.get("sampler") or process.sampler_description(),
                                          "precision": precision(cfg, device, "sample"),
                                          "train_precision": trained_precision(cfg, state)})
    log.info("wrote %d samples to %s", len(result["images"]), args.out)


def cmd_classifier(args) -> None:
    from .data import load_images
    from .metrics.domain import accuracy, save_classifier, train_classifier

    cfg = _config(args)
    images, labels = load_images(args.data)
    if labels is None:
        raise ConfigError(f"'{args.data}' has no labels: the domain classifier needs a labelled "
                          "data set (mnist5k, mnist, cifar10, afhq, or a folder/zip with class folders)")
    ev = cfg["evaluate"]
    clf = train_classifier(images, labels, steps=ev["classifier_steps"], seed=cfg["seed"],
                           width=ev["classifier_width"], blocks=ev["classifier_blocks"],
                           pool=4 if ev["classifier_blocks"] > 2 else 7, flip=ev["classifier_flip"])
    save_classifier(clf, args.out)
    if args.test:
        test_images, test_labels = load_images(args.test)
        acc = accuracy(clf, test_images, test_labels)
        log.info("classifier test accuracy %.4f on %d images", acc, len(test_images))
        _write_json({"metric": "classifier", "test_accuracy": acc, "n_test": len(test_images),
                     "steps": ev["classifier_steps"], "hparams": clf.hparams,
                     "flip": ev["classifier_flip"], "experiment": cfg["experiment"]},
                    Path(args.out).with_suffix(".json"))


def _metric_record(cfg: dict, metric: str, meta: dict, values: dict) -> dict:
    return {"metric": metric, "model": meta.get("model"), "variant": meta.get("variant"),
            "seed": cfg["seed"], "sample_seed": meta.get("seed"), "experiment": cfg["experiment"],
            "train_size": cfg["data"]["train_size"], **values, "sample_meta": meta, "config": cfg}


def cmd_evaluate(args) -> None:
    from .data import load_images
    from .samples import SampleFileError, read_samples, require_images

    cfg = _config(args)
    need = {"domain": ["samples", "classifier", "test"], "fid": ["samples", "ref_stats"],
            "nll": ["checkpoint", "test"], "memorization": ["samples", "data", "test"],
            "smoothness": ["samples"], "emergent": ["samples"],
            "simplicity": ["checkpoint", "test"]}[args.metric]
    missing = [f"--{k.replace('_', '-')}" for k in need if getattr(args, k) is None]
    if missing:
        raise ConfigError(f"ihdm evaluate --metric {args.metric} needs {', '.join(missing)}")
    samples = read_samples(args.samples, cfg["data"]) if args.samples else None
    meta = samples["meta"] if samples else {}
    if samples is not None:  # statistics over samples (covariances, spreads) need two
        require_images(samples, args.samples, 1 if args.metric == "memorization" else 2,
                       f"--metric {args.metric}")
    if args.metric == "domain":
        from .metrics.domain import domain_metrics, load_classifier

        clf = load_classifier(args.classifier)
        test_images, test_labels = load_images(args.test)
        values = domain_metrics(clf, samples["images"], test_images, kid=True, seed=cfg["seed"],
                                reference_labels=test_labels)
    elif args.metric == "fid":
        from .metrics.fid import fid_kid

        values = fid_kid(samples["images"], args.ref_stats, weights=cfg["evaluate"]["inception_weights"],
                         seed=cfg["seed"])
        values["reference_stats"] = str(args.ref_stats)
    elif args.metric == "nll":
        from .runtime import load_trained, resolve_device, trained_precision

        net, _, model, process, state = load_trained(args.checkpoint, cfg, data=args.data,
                                                     device=resolve_device(cfg))
        meta = {"model": model, "checkpoint": str(args.checkpoint), "step": int(state["step"]),
                "train_precision": trained_precision(cfg, state)}
        test = load_images(args.test)[0][: cfg["evaluate"]["nll_images"]]
        values = process.nll(net, test, seed=cfg["seed"])
    elif args.metric == "simplicity":  # emergent property (c), from the network itself
        from .metrics.emergent import function_simplicity
        from .runtime import load_trained, resolve_device

        net, _, model, process, state = load_trained(args.checkpoint, cfg, device=resolve_device(cfg),
                                                     training_images_too=False)
        meta = {"model": model, "checkpoint": str(args.checkpoint), "step": int(state["step"])}
        test = load_images(args.test)[0][: cfg["evaluate"]["nll_images"]]
        values = function_simplicity(process, net, test, seed=cfg["seed"])
    elif args.metric == "memorization":
        from .metrics.emergent import memorization
        from .runtime import training_images

        values = memorization(samples["images"], training_images(cfg, args.data),
                              load_images(args.test)[0])
    elif args.metric == "smoothness":
        from .metrics.emergent import interpolation_smoothness

        frames = int(meta.get("frames") or cfg["sample"]["interpolation_frames"])
        if frames < 2 or len(samples["images"]) % frames:
            raise SampleFileError(f"sample file '{args.samples}': its {len(samples['images'])} "
                                  f"images do not form rows of {frames} >= 2 interpolation frames")
        values = interpolation_smoothness(samples["images"], frames)
    else:
        from .metrics.emergent import shared_state_statistics

        reference = None
        if args.reference:  # random samples of the same model, to compare with
            reference = read_samples(args.reference, cfg["data"])
            require_images(reference, args.reference, 2, "--metric emergent --reference")
        values = shared_state_statistics(samples["images"],
                                         reference=None if reference is None else reference["images"])
    _write_json(_metric_record(cfg, args.metric, meta, values), args.out)


def cmd_fid_reference(args) -> None:
    """FID reference statistics of one data split (config key evaluate.fid_reference says
    which one the experiment uses: the authors' is the training split), shared by every FID."""
    from .data import load_images
    from .metrics.fid import reference_stats

    cfg = _config(args)
    split = cfg["evaluate"]["fid_reference"]
    images = load_images(args.data)[0]
    info = reference_stats(images, args.out, weights=cfg["evaluate"]["inception_weights"], split=split)
    log.info("FID reference statistics of %d %s images (%s) -> %s", info["n"], split, args.data, args.out)


def cmd_collect(args) -> None:
    from .io import collect_metrics

    rows = collect_metrics(args.inputs, args.out, keys=tuple(args.keys))
    log.info("collected %d metric files into %s", len(rows), args.out)


def cmd_compare(args) -> None:
    """The paper's numbers beside this run's, with each row's protocol (ihdm/paper.py)."""
    from .paper import write_comparison

    rows = write_comparison(args.inputs, args.config, args.out)
    log.info("compared %d quantities with the paper into %s", len(rows), args.out)


def cmd_spectral(args) -> None:
    from .data import load_images, natural_photographs
    from .spectral import spectral_summary

    cfg = _config(args)
    fit = cfg["evaluate"]["spectral_fit"]
    if fit is not None and not fit[0] < fit[1]:
        raise ConfigError(f"evaluate.spectral_fit: fmin {fit[0]} must be below fmax {fit[1]} (cycles/pixel)")
    fmin, fmax = fit or (None, None)
    images = load_images(args.data)[0]
    out = {"metric": "spectral", "experiment": cfg["experiment"],
           "data": spectral_summary(images, cfg["heat"], cfg["ddpm"], cfg["blurring"], fmin=fmin, fmax=fmax,
                                    fit_basis=cfg["evaluate"]["spectral_fit_basis"])}
    if cfg["workflow"]["photographs"]:
        size = max(64, cfg["data"]["resolution"])
        photos = natural_photographs(size, 3)
        out["photographs"] = spectral_summary(photos, cfg["heat"], cfg["ddpm"], cfg["blurring"])
        out["photographs"]["size"] = size
        out["photographs"]["count"] = len(photos)
        if fit is not None:  # the photographs' α over the data's band and basis too
            from .spectral import fit_power_law, radial_psd

            basis = cfg["evaluate"]["spectral_fit_basis"]
            out["photographs"]["fit_data_range"] = {**fit_power_law(*radial_psd(photos, basis=basis), fmin, fmax),
                                                    "basis": basis}
    out["config"] = cfg
    _write_json(out, args.out)


FIGURES = ("samples", "trajectory", "interpolation", "psd", "erased-frequency",
           "data-efficiency", "loss", "forward-blur", "emergent", "simplicity", "delta-sweep")


def cmd_plot(args) -> None:
    """Draw one figure from finished results files (never trains or samples)."""
    import csv

    from . import plots
    from .samples import read_samples

    fig, inputs, out = args.figure, args.inputs, args.out
    labels = args.labels or [Path(p).parent.name for p in inputs]
    title = args.title

    def one():
        if len(inputs) != 1:
            raise ConfigError(f"ihdm plot {fig} takes exactly one input file, got {len(inputs)}")
        return inputs[0]

    if fig in ("samples", "emergent"):  # titled with the sampler that drew them
        s = read_samples(one())
        plots.sample_grid(s["images"], out, title=title or s["meta"].get("sampler"))
    elif fig == "trajectory":
        s = read_samples(one())
        if "trajectory" not in s:
            raise ConfigError(f"'{inputs[0]}' holds no trajectory (sample.trajectory_frames is 0)")
        levels = list(s["levels"]) if len(s.get("levels", [])) else None
        plots.trajectory_strip(s["trajectory"], out, levels=levels, title=title or s["meta"].get("sampler"))
    elif fig == "interpolation":
        rows, frame_count = [], None
        for path in inputs:  # one strip per file (e.g. IHDM and DDPM), first row of each
            s = read_samples(path)
            F = int(s["meta"].get("frames") or len(s["images"]))
            frame_count = frame_count or F
            if F != frame_count:
                raise ConfigError("interpolation files have different numbers of frames")
            rows.append(s["images"][:F])
        plots.interpolation_strip(np.stack(rows), out, title=title or " / ".join(labels))
    elif fig in ("psd", "erased-frequency"):
        summary = json.loads(Path(one()).read_text())
        key = args.source
        if key not in summary:
            raise ConfigError(f"'{inputs[0]}' has no '{key}' spectral summary")
        draw = plots.psd_figure_from_summary if fig == "psd" else plots.erased_frequency_figure_from_summary
        draw(summary[key], out, title=title)
    elif fig == "data-efficiency":
        with open(one()) as fh:  # the table mixes metrics: keep the rows that have this one
            rows = [r for r in csv.DictReader(fh) if r.get(args.metric) not in ("", None)]
        plots.data_efficiency_figure(rows, out, metric=args.metric, title=title)
    elif fig == "delta-sweep":  # the δ sweep's table (ihdm collect --key heat.delta)
        with open(one()) as fh:
            rows = [r for r in csv.DictReader(fh) if r.get(args.metric) not in ("", None)]
        best = plots.delta_sweep_figure(rows, out, metric=args.metric, title=title)
        for model, (delta, value) in best.items():
            log.info("best δ for %s: %g (%s %.4g)", model, delta, args.metric, value)
    elif fig == "loss":
        plots.loss_curve(dict(zip(labels, inputs)), out, title=title)
    elif fig == "simplicity":  # one `ihdm evaluate --metric simplicity` file per model
        records = [json.loads(Path(p).read_text()) for p in inputs]
        names = args.labels or [r.get("model") or Path(p).stem for r, p in zip(records, inputs)]
        plots.simplicity_figure(dict(zip(names, records)), out, title=title)
    elif fig == "forward-blur":
        from .data import load_images
        from .heat import blur_schedule

        if not args.config:
            raise ConfigError("ihdm plot forward-blur needs --config (the blur schedule)")
        cfg = load_config(args.config, args.set)
        h = cfg["heat"]
        plots.forward_blur_sequence(load_images(one())[0][:6],
                                    blur_schedule(h["K"], h["blur_sigma_min"], h["blur_sigma_max"]),
                                    out, title=title)
    log.info("wrote %s.png and .pdf", out)


def cmd_bench(args) -> None:
    from . import bench

    try:
        bench.run(_config(args), args)
    except bench.BenchError as exc:  # a bad option: one line, like the config errors
        raise ConfigError(str(exc)) from None


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ihdm", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"ihdm {__version__}")
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

    sp = add("describe", cmd_describe, "print the models, schedules and training plan of a config as JSON")
    sp.add_argument("--out", help="write the JSON here instead of stdout")
    sp.add_argument("--profile", help="SLURM profile for the attempts (default: workflow/profiles/slurm)")

    sp = add("plan", cmd_plan, "print the GPU-hours and SLURM attempts of the trainings of configs")
    sp.add_argument("more", nargs="*", metavar="CONFIG", help="more configs")
    sp.add_argument("--profile", help="SLURM profile for the attempts (default: workflow/profiles/slurm)")

    sp = sub.add_parser("table", help="write CSV and YAML files as HTML tables (for the report)")
    sp.add_argument("files", nargs="*", help=".csv or .yaml files, one table each")
    sp.add_argument("--out", required=True, help="the HTML page to write")
    sp.add_argument("--title", required=True)
    sp.add_argument("--rows", type=int, help="at most this many evenly spaced rows per CSV")
    sp.add_argument("--names", nargs="*", help="a heading per file (default: its path)")
    sp.set_defaults(func=cmd_table)

    sp = add("prepare", cmd_prepare, "write a data split as a uint8 .npz")
    sp.add_argument("--split", choices=["train", "test"], required=True)
    sp.add_argument("--out", required=True)

    sp = add("train", cmd_train, "train IHDM or the DDPM baseline (resumes when DIR has checkpoints)")
    sp.add_argument("--model", choices=list(MODELS), required=True)
    sp.add_argument("--data", required=True, help="training images (.npz from `ihdm prepare`)")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--steps", type=int, help="override train.steps")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.add_argument("--on-change", choices=["refuse", "restart", "resume"], default="refuse",
                    help="when DIR holds checkpoints made by other settings, data or code: "
                         "refuse (default), restart (move them to DIR/superseded/ and train "
                         "from scratch) or resume anyway (final.pt records the differences)")

    sp = add("sample", cmd_sample, "draw samples from a trained model", config_required=False)
    sp.add_argument("--checkpoint", required=True)
    sp.add_argument("--n", type=int, help="number of samples (rows for interpolate)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--variant", default="random", choices=VARIANTS,
                    help="what the samples share (the variants each model supports: "
                         + "; ".join(f"{m}: {', '.join(i['variants'])}" for m, i in MODELS.items())
                         + "); DDPM's sampler is the config key ddpm.sampler")
    sp.add_argument("--data", help="training images, for the models that use them (IHDM's "
                                   "prior; default: the checkpoint's training data)")
    sp.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA")
    sp.add_argument("--out", required=True, help="output .npz (a .png grid is written beside it)")

    sp = add("classifier", cmd_classifier, "train the digit classifier behind the domain metric")
    sp.add_argument("--data", required=True, help="labelled training images (.npz)")
    sp.add_argument("--test", help="labelled test images: report the accuracy beside the model")
    sp.add_argument("--out", required=True, help="classifier file (.pt)")

    sp = add("evaluate", cmd_evaluate, "score samples or a model; writes one JSON")
    sp.add_argument("--metric", required=True,
                    choices=["domain", "fid", "nll", "memorization", "smoothness", "emergent",
                             "simplicity"],
                    help="simplicity: how much of the network's output only redistributes mass, "
                         "per level (--checkpoint, --test)")
    sp.add_argument("--samples", help="sample file (.npz from `ihdm sample`)")
    sp.add_argument("--checkpoint", help="model file (nll)")
    sp.add_argument("--classifier", help="classifier file (domain)")
    sp.add_argument("--data", help="training images (nll prior, memorization)")
    sp.add_argument("--test", help="held-out test images")
    sp.add_argument("--reference", help="random samples of the same model (emergent: numbers beside)")
    sp.add_argument("--ref-stats", help="FID reference statistics (.npz from `ihdm fid-reference`)")
    sp.add_argument("--out", required=True, help="output JSON")

    sp = add("fid-reference", cmd_fid_reference,
             "FID reference statistics of the split evaluate.fid_reference names (.npz)")
    sp.add_argument("--data", required=True, help="the images of that split (.npz from `ihdm prepare`)")
    sp.add_argument("--out", required=True, help="output statistics (.npz)")

    sp = add("collect", cmd_collect, "gather metric JSON files into one CSV table")
    sp.add_argument("--out", required=True, help="output CSV")
    sp.add_argument("inputs", nargs="+", help="metric JSON files")
    sp.add_argument("--key", action="append", default=[], dest="keys", metavar="KEY",
                    help="also a column for this dotted config key of the files' records (e.g. "
                         "heat.delta); repeat for more")

    sp = add("compare", cmd_compare, "the paper's reported values beside this run's (CSV), "
             "with the protocol of each row")
    sp.add_argument("--out", required=True, help="output CSV")
    sp.add_argument("inputs", nargs="+", help="metric JSON files (fid, domain, nll)")

    sp = add("spectral", cmd_spectral, "power spectra of the data (and photographs) against both processes")
    sp.add_argument("--data", required=True, help="images (.npz)")
    sp.add_argument("--out", required=True, help="output JSON")

    sp = add("bench", cmd_bench, "measure heat operator, training and sampling speed (JSON and a table)")
    sp.add_argument("--out", help="also write the JSON here")
    sp.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    sp.add_argument("--sizes", type=int, nargs="+", help="heat operator image sizes (default 28 32 64 128 256)")
    sp.add_argument("--sections", nargs="+", choices=["heat", "train", "sample"],
                    help="which parts to run (default: all)")
    sp.add_argument("--rounds", type=int, help="timed runs per heat method")
    sp.add_argument("--devices", nargs="+", choices=["cpu", "cuda"],
                    help="devices to measure (default: the CPU, and CUDA when present)")

    sp = sub.add_parser("plot", help="draw a figure from results files (PNG and PDF)")
    sp.add_argument("figure", choices=FIGURES)
    sp.add_argument("inputs", nargs="+", help="results files the figure is drawn from")
    sp.add_argument("--out", required=True, help="output path without suffix")
    sp.add_argument("--config", help="experiment config (forward-blur)")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    sp.add_argument("--labels", nargs="+", help="one label per input (loss, interpolation)")
    sp.add_argument("--title")
    sp.add_argument("--metric", default="fd", help="table column (data-efficiency, delta-sweep)")
    sp.add_argument("--source", default="data", choices=["data", "photographs"],
                    help="which spectral summary (psd, erased-frequency)")
    sp.set_defaults(func=cmd_plot)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .errors import UserError
    from .train import TrainingInterrupted

    try:
        args.func(args)
    except UserError as exc:
        print(f"ihdm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing file, an unwritable folder, a full disk
        where = f": '{exc.filename}'" if exc.filename else ""
        print(f"ihdm {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except TrainingInterrupted as exc:  # checkpointed; the shell convention 128 + signal
        print(f"ihdm {args.command}: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:  # Ctrl-C outside a training loop (or a second one inside)
        print(f"ihdm {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
