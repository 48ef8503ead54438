"""Config validation, paths and the helpers of all rules."""

import itertools
import json
import re
from pathlib import Path

import pandas as pd
import yaml
from snakemake.utils import Paramspace, validate

# One schema for the package and the workflow (a link to ihdm/config.schema.yaml): it
# refuses unknown keys and fills in the defaults before any job starts.
validate(config, "../schemas/config.schema.yaml")

EXP = config["experiment"]
RESULTS = f"results/{EXP}"
# The validated config with its defaults, written when a run starts (see onstart in the
# Snakefile): every `ihdm` command reads it, and it records what made the results.
CONFIG_FILE = f"{RESULTS}/config.yaml"
# Prepared data is shared by experiments with the same data set and resolution.
DATA_DIR = f"resources/{config['data']['dataset']}/{config['data']['resolution']}px"
TRAIN_DATA = f"{DATA_DIR}/train.npz"
TEST_DATA = f"{DATA_DIR}/test.npz"

SEED = config["seed"]
MODELS = config["workflow"]["models"]
# Torch jobs ask for a GPU only when the config demands CUDA (SLURM: --gpus=1; locally
# the default profile caps the number of concurrent GPU jobs).
GPU = int(config["device"] == "cuda")
# Data-parallel training (train.processes > 1): `ihdm train` starts that many processes
# through torchrun inside the job, one per GPU with device cuda (gloo workers on the CPU);
# the job asks for that many GPUs and threads, on one node.
TRAIN_PROCESSES = config["train"]["processes"]
# The domain metric needs a digit classifier: MNIST data sets only.
DIGITS = config["data"]["dataset"] in ("mnist5k", "mnist")
FID = config["evaluate"]["fid"]
EMERGENT_VARIANTS = ("shared-prior", "shared-noise")


wildcard_constraints:
    exp=re.escape(EXP),
    model="ihdm|ddpm",
    variant="random|shared-prior|shared-noise|interpolate",
    seed=r"\d+",
    split="train|test",
    source="data|photographs",
    column=r"\w+",


# ---------------------------------------------------------------- the config and params
def write_config_file():
    """Write the validated config to CONFIG_FILE, unless it holds it already.

    It is no rule's output: Snakemake would rerun every rule after a change of any key.
    Rules name the keys they depend on in their `params` instead (see `settings`).
    """
    text = yaml.safe_dump(config, sort_keys=False)
    path = Path(CONFIG_FILE)
    if path.is_file() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def lookup_key(key):
    """The config value at a dotted key such as 'train.steps'."""
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def settings(*keys):
    """The config values at dotted `keys` as one JSON string, for a rule's `params`.

    A rule lists the keys it depends on; Snakemake's `params` rerun trigger then reruns
    exactly the rules whose keys changed (e.g. sample.n reruns sampling, not training).
    """
    return json.dumps({key: lookup_key(key) for key in keys}, sort_keys=True)


def data_settings(split):
    """The data keys of a prepared split (data.train_size cuts it at training time)."""
    ignored = {"train_size", "download"} | (
        {"test_root"} if split == "train" else set()
    )
    return settings(*(f"data.{key}" for key in config["data"] if key not in ignored))


# Training keys that do not change the trained model.
TRAIN_BOOKKEEPING = ("threads", "processes", "checkpoint_every", "keep_checkpoints")
TRAIN_KEYS = [f"train.{key}" for key in config["train"] if key not in TRAIN_BOOKKEEPING]


def model_settings(model, *extra):
    """The config keys a trained model depends on (its own process, not the other's)."""
    process = "heat" if model == "ihdm" else "ddpm"
    return settings("seed", "data.train_size", "unet", process, *TRAIN_KEYS, *extra)


def sample_settings(variant, n_key="sample.n"):
    """The config keys behind one sample file: the sampler's keys, the number of samples
    (`n_key`) and the frames only where the variant has them."""
    own = {"n", "interpolation_frames", "trajectory_frames"}
    speed = {"cuda_graphs"}  # the same samples either way
    keys = [f"sample.{key}" for key in config["sample"] if key not in own | speed]
    keys.append(n_key)
    if variant == "random":
        keys.append("sample.trajectory_frames")
    if variant == "interpolate":
        keys.append("sample.interpolation_frames")
    return settings(*keys)


def out_dir(wildcards, output):
    """The folder of a rule's first output (the training folder of final.pt)."""
    return Path(output[0]).parent


# ---------------------------------------------------------------- samples and metrics
def variants_of(model):
    """The variants of workflow.variants that `model` can sample (DDPM has no shared
    prior state or shared noise)."""
    if model == "ddpm":
        return [
            v for v in config["workflow"]["variants"] if v in ("random", "interpolate")
        ]
    return list(config["workflow"]["variants"])


def samples_of(variant, models=MODELS):
    return [
        f"{RESULTS}/samples/{model}/{variant}_seed{SEED}.npz"
        for model in models
        if variant in variants_of(model)
    ]


def sample_files():
    return [path for v in config["workflow"]["variants"] for path in samples_of(v)]


def metric_files():
    files = []
    for model in MODELS:
        metrics = (["domain"] if DIGITS else []) + (["fid"] if FID else [])
        metrics += ["nll", "memorization"]
        variants = variants_of(model)
        if "interpolate" in variants:
            metrics.append("smoothness")
        metrics += [f"emergent_{v}" for v in variants if v in EMERGENT_VARIANTS]
        files += [f"{RESULTS}/metrics/{model}/{metric}.json" for metric in metrics]
    return files


# ---------------------------------------------------------------- data-efficiency sweep
SWEEP = Paramspace(
    pd.DataFrame(
        itertools.product(
            config["workflow"]["sweep_sizes"], MODELS, config["workflow"]["sweep_seeds"]
        ),
        columns=["train_size", "model", "seed"],
    )
)
SWEEP_POINTS = list(SWEEP.instance_patterns)  # none when workflow.sweep_sizes is []
# results/<exp>/sweep/train_size~N/model~M/seed~S, its logs and benchmarks
SWEEP_POINT = f"results/{{exp}}/sweep/{SWEEP.wildcard_pattern}"
SWEEP_LOGS = f"results/{{exp}}/logs/sweep/{SWEEP.wildcard_pattern}"
SWEEP_BENCHMARKS = f"results/{{exp}}/benchmarks/sweep/{SWEEP.wildcard_pattern}"


def sweep_overrides(wildcards):
    """`ihdm` options that turn the experiment's config into one sweep point's config."""
    point = SWEEP.instance(wildcards)
    return (
        f"--set data.train_size={point['train_size']} --set seed={point['seed']}"
        f" --set train.steps={config['workflow']['sweep_steps']}"
    )


def sweep_table_files():
    return [f"{RESULTS}/sweep/data_efficiency.csv"] if SWEEP_POINTS else []


def sweep_metric_files():
    metrics = (
        (["domain"] if DIGITS else []) + (["fid"] if FID else []) + ["memorization"]
    )
    return [
        f"{RESULTS}/sweep/{point}/{metric}.json"
        for point in SWEEP_POINTS
        for metric in metrics
    ]


# ---------------------------------------------------------------- figures
SPECTRA = ["data"] + (["photographs"] if config["workflow"]["photographs"] else [])
# Data-efficiency figures: one per column of the sweep table (the metric JSONs' keys).
SWEEP_COLUMNS = (
    (["fd"] if DIGITS else []) + (["fid"] if FID else []) + ["ratio_of_medians"]
)


def figure_names():
    """The figures the config produces (results/<exp>/figures/<name>.png and .pdf)."""
    variants = config["workflow"]["variants"]
    names = [f"samples_{m}" for m in MODELS if "random" in variants]
    # the random samples hold trajectories unless sample.trajectory_frames is 0
    if config["sample"]["trajectory_frames"] > 0:
        names += [f"trajectory_{m}" for m in MODELS if "random" in variants]
    names += ["interpolation"] if "interpolate" in variants else []
    if "ihdm" in MODELS:
        names += [f"emergent_{v}" for v in EMERGENT_VARIANTS if v in variants]
    names += ["forward-blur", "loss"]
    names += [
        f"{kind}_{source}" for kind in ("psd", "erased-frequency") for source in SPECTRA
    ]
    names += [f"data-efficiency_{column}" for column in SWEEP_COLUMNS if SWEEP_POINTS]
    return names


def figure_files():
    return [
        f"{RESULTS}/figures/{name}.{ext}"
        for name in figure_names()
        for ext in ("png", "pdf")
    ]


def plot_prefix(wildcards, output):
    """`ihdm plot --out` takes the path without .png/.pdf."""
    return str(Path(output.png).with_suffix(""))


def loss_logs(wildcards, input):
    """The loss log beside each final.pt (see rule plot_loss)."""
    return [Path(f).with_name("log.csv") for f in input]
