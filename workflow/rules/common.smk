"""Config validation, paths and the helpers of all rules."""

import functools
import importlib.util
import itertools
import json
import os
import re
import shlex
from pathlib import Path

import pandas as pd
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import Paramspace, validate

# A config without `experiment:` would take the schema's default and write into
# results/default, the embedded default's folder: refuse it before validate() fills it in.
if "experiment" not in config:
    _files = workflow.overwrite_configfiles or workflow.configfiles
    raise WorkflowError(
        f"{', '.join(map(str, _files)) or 'the config'}: no 'experiment' key. Name"
        " the experiment (experiment: <name>): its results go to results/<name>/."
        " Without it they would go to results/default/ and replace the embedded"
        " default's results."
    )

# The package's schema (a copy of ihdm/config.schema.yaml, kept equal by a test, so that a
# workflow used as a remote module can read it): it refuses unknown keys and fills in the
# defaults before any job starts.
validate(config, "../schemas/config.schema.yaml")

EXP = config["experiment"]
RESULTS = f"results/{EXP}"
# The validated config with its defaults, written when the Snakefile is read (see
# write_config_file there): every `ihdm` command reads it, and it records what made the
# results.
CONFIG_FILE = f"{RESULTS}/config.yaml"
# `ihdm prepare` reads this empty config and gets the data keys with --set; relative to
# the working directory, so that a copy of a finished run elsewhere is still up to date.
# (current_basedir: workflow/rules/ of this workflow, also when it is used as a module.)
PREPARE_CONFIG = os.path.relpath(
    Path(str(workflow.current_basedir)).parent / "prepare.yaml"
)

SEED = config["seed"]
MODELS = config["workflow"]["models"]
# Torch jobs ask for a GPU only when the config demands CUDA (SLURM: --gpus=1; locally
# the default profile caps the number of concurrent GPU jobs).
GPU = int(config["device"] == "cuda")
# Data-parallel training (train.processes > 1): `ihdm train` starts that many processes
# through torchrun inside the job, one per GPU with device cuda (gloo workers on the CPU);
# the job asks for that many GPUs and threads, on one node.
TRAIN_PROCESSES = config["train"]["processes"]
# The domain metric needs a classifier trained on labels: on for the labelled data sets
# unless evaluate.domain says otherwise (true for a folder or zip with class folders).
LABELLED_DATASETS = ("mnist5k", "mnist", "cifar10", "afhq")
DOMAIN = config["evaluate"]["domain"]
if DOMAIN is None:
    DOMAIN = config["data"]["dataset"] in LABELLED_DATASETS
FID = config["evaluate"]["fid"]


# ---------------------------------------------------------------- the package's models
def _load_provenance():
    """ihdm/provenance.py beside the workflow (the package the rules run), loaded by its
    path: Snakemake's Python needs neither ihdm nor torch. Without it, the installed one.
    """
    # workflow/rules/ of this workflow (workflow.basedir is the importing project's
    # folder when the workflow is used as a module)
    rules_dir = Path(str(workflow.current_basedir))
    path = rules_dir.parent.parent / "ihdm" / "provenance.py"
    if not path.is_file():
        from ihdm import provenance as installed

        return installed
    spec = importlib.util.spec_from_file_location("_ihdm_provenance", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


provenance = _load_provenance()


# {name: {"module", "variants", "training_keys", "sampling_keys", "nll_keys"}}, from the
# model modules' top-level facts: a new model is a new module, not a change here.
PACKAGE_MODELS = provenance.models()
ALL_VARIANTS = list(
    dict.fromkeys(v for m in PACKAGE_MODELS.values() for v in m["variants"])
)
# Variants whose samples share a state: each model that has them gets their figure and
# metric (the emergent properties).
EMERGENT_VARIANTS = ("shared-prior", "shared-noise")


def alternatives(names):
    return "|".join(map(re.escape, names))


wildcard_constraints:
    exp=re.escape(EXP),
    model=alternatives(PACKAGE_MODELS),
    variant=alternatives(ALL_VARIANTS),
    seed=r"\d+",
    split="train|test",
    source="data|photographs",
    column=r"\w+",
    delta=r"[0-9.eE+-]+",


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


def settings(*keys, **values):
    """The config values at dotted `keys` (and any other `values`) as one JSON string,
    for a rule's `params`.

    A rule lists the keys it depends on; Snakemake's `params` rerun trigger then reruns
    exactly the rules whose keys changed (e.g. sample.n reruns sampling, not training).
    """
    return json.dumps(
        {**{key: lookup_key(key) for key in keys}, **values}, sort_keys=True
    )


# ---------------------------------------------------------------- code fingerprints
@functools.cache
def code(command, model=None):
    """The fingerprint of the code `ihdm <command>` runs (for one `model`: without the
    other model's module), for a rule's params: an edit of that code reruns the rule;
    comments, docstrings and formatting do not count."""
    return provenance.code_fingerprint(command, model)


def model_code(command):
    """`code` of a rule with a {model} wildcard."""
    return lambda wildcards: code(command, wildcards.model)


# ---------------------------------------------------------------- data
def prepare_options(split):
    """`--set` options with the data keys of a split: `ihdm prepare` gets them on the
    command line and no experiment's config file, so that the data shared by experiments
    depends on these keys only."""
    return " ".join(
        f"--set {shlex.quote(f'{key}={json.dumps(lookup_key(key))}')}"
        for key in provenance.data_keys(config, split)
    )


# Prepared data, shared by the experiments with the same data keys (not only the same data
# set and resolution: two zips of 32 px images must not take turns in one file).
DATA_DIR = provenance.prepared_data_dir(config)
TRAIN_DATA = f"{DATA_DIR}/train.npz"
TEST_DATA = f"{DATA_DIR}/test.npz"
# One file of FID reference statistics per experiment (the split evaluate.fid_reference
# names; the whole split, whatever data.train_size), shared by every FID job.
FID_REFERENCE = "results/{exp}/metrics/fid_reference.npz"
FID_REFERENCE_DATA = {"train": TRAIN_DATA, "test": TEST_DATA}[
    config["evaluate"]["fid_reference"]
]


# ---------------------------------------------------------------- training
# Threads of a training job: train.threads per process (1 when unset: on a few cores,
# trainings side by side beat one on all cores), unless a profile's set-threads says.
TRAIN_THREADS = (config["train"]["threads"] or 1) * TRAIN_PROCESSES


def torch_threads(rule_name):
    """The torch threads per process of a job of `rule_name` (a training rule): its
    threads (its set-threads, else TRAIN_THREADS; capped by --max-threads) split over
    train.processes. Not capped by --cores: the count changes the weights on the
    CPU, so it must not depend on the cores a run was given (a dry run without --cores
    has one)."""
    threads = workflow.resource_settings.overwrite_threads.get(rule_name, TRAIN_THREADS)
    threads = int(getattr(threads, "value", threads))
    if workflow.resource_settings.max_threads is not None:
        threads = min(threads, workflow.resource_settings.max_threads)
    return max(1, threads // TRAIN_PROCESSES)


def train_settings(model, rule_name="train"):
    """The keys behind a trained model: those that shape its weights
    (provenance.training_keys), how long it trains and, on the CPU, the torch threads
    per process. A sweep point has its seed and data.train_size in its path and trains
    workflow.sweep_steps steps."""
    keys = [*provenance.training_keys(model), *provenance.LENGTH_KEYS]
    if rule_name == "sweep_train":
        own = {"seed", "data.train_size", "train.steps"}
        keys = [key for key in keys if key not in own] + ["workflow.sweep_steps"]
    if config["device"] == "cuda":  # CPU threads do not touch the weights on a GPU
        return settings(*keys)
    return settings(*keys, torch_threads=torch_threads(rule_name))


# ---------------------------------------------------------------- sampling
def sampling_keys(model):
    """The keys of a model's process read only by sampling and evaluation, not by
    training (its module's SAMPLING_KEYS, e.g. heat.delta)."""
    return list(PACKAGE_MODELS[model]["sampling_keys"])


def sampler_keys(model):
    """The keys every sample file of `model` depends on: its sampling keys and the
    sampler's (not the number of samples or frames; cuda_graphs: the same samples)."""
    own = {"n", "interpolation_frames", "trajectory_frames", "cuda_graphs"}
    sampler = [f"sample.{key}" for key in config["sample"] if key not in own]
    return sampling_keys(model) + sampler


def sample_settings(model, variant):
    """The config keys behind one figure sample file: sample.n and the frames only
    where the variant has them."""
    keys = [*sampler_keys(model), "sample.n"]
    if variant == "random":
        keys.append("sample.trajectory_frames")
    if variant == "interpolate":
        keys.append("sample.interpolation_frames")
    return settings(*keys)


# The evaluation samples hold no trajectory (see rule sample_for_evaluation).
NO_TRAJECTORY = "--set sample.trajectory_frames=0"


def evaluation_sample_settings(model):
    """The config keys behind the evaluation samples (random, no trajectory)."""
    return settings(*sampler_keys(model), "evaluate.n_samples")


def nll_settings(model):
    """The keys behind a model's NLL: the common ones and its module's NLL_KEYS (IHDM's
    heat.delta, DDPM's timestep stride)."""
    return settings("seed", "evaluate.nll_images", *PACKAGE_MODELS[model]["nll_keys"])


def out_dir(wildcards, output):
    """The folder of a rule's first output (the training folder of final.pt)."""
    return Path(output[0]).parent


# ---------------------------------------------------------------- samples and metrics
def variants_of(model):
    """The variants of workflow.variants that `model` can sample (its module's
    VARIANTS: DDPM has no shared prior state or shared noise)."""
    own = PACKAGE_MODELS[model]["variants"]
    return [v for v in config["workflow"]["variants"] if v in own]


def emergent_variants_of(model):
    return [v for v in variants_of(model) if v in EMERGENT_VARIANTS]


def samples_of(variant, models=MODELS):
    return [
        f"{RESULTS}/samples/{model}/{variant}_seed{SEED}.npz"
        for model in models
        if variant in variants_of(model)
    ]


def sample_files():
    return [path for v in config["workflow"]["variants"] for path in samples_of(v)]


# Each metric of `ihdm evaluate --metric <name>` (the evaluate rule): its input files,
# named as the command's options; the samples it scores (a variant's file; "evaluation":
# the random evaluation samples without trajectory); the config keys its value depends
# on (nll adds its model's NLL_KEYS); whether it runs torch (a GPU with device cuda);
# its memory (MB) and time (minutes).
METRICS = {
    "domain": dict(
        inputs=("samples", "classifier", "test"),
        samples="evaluation",
        keys=("seed",),
        torch=True,
        mem_mb=4000,
        runtime=60,
    ),
    "fid": dict(
        inputs=("samples", "ref_stats"),
        samples="evaluation",
        keys=("seed", "evaluate.inception_weights"),
        torch=True,
        mem_mb=16000,
        runtime=240,
    ),
    "nll": dict(
        inputs=("checkpoint", "data", "test"),
        keys=("seed", "evaluate.nll_images"),
        torch=True,
        mem_mb=8000,
        runtime=240,
    ),
    "memorization": dict(
        inputs=("samples", "data", "test"),
        samples="evaluation",
        keys=("data.train_size",),
        torch=False,
        mem_mb=8000,
        runtime=60,
    ),
    "smoothness": dict(
        inputs=("samples",),
        samples="interpolate",
        keys=(),
        torch=False,
        mem_mb=2000,
        runtime=30,
    ),
    # emergent property (c): how simple the learned function is, per level
    "simplicity": dict(
        inputs=("checkpoint", "test"),
        keys=("seed", "evaluate.nll_images"),
        torch=True,
        mem_mb=4000,
        runtime=60,
    ),
    # emergent_<variant>: the statistics of a shared-state variant's samples, beside
    # those of the model's random samples (reference)
    "emergent": dict(
        inputs=("samples", "reference"), keys=(), torch=False, mem_mb=2000, runtime=30
    ),
}
# the {metric} wildcard: a metric's name, emergent_<variant> for the emergent one
METRIC_WILDCARDS = [m for m in METRICS if m != "emergent"] + [
    f"emergent_{v}" for v in EMERGENT_VARIANTS
]
# The metrics that score a model's samples against real images.
SAMPLE_METRICS = (["domain"] if DOMAIN else []) + (["fid"] if FID else [])
# Sweep points score these; their seed and data.train_size come from the point's path.
SWEEP_METRICS = SAMPLE_METRICS + ["memorization"]
SWEEP_OWN_KEYS = {"seed", "data.train_size"}


def metric_name(metric):
    """The --metric of ihdm evaluate for a {metric} wildcard (emergent_<variant>)."""
    return metric.split("_")[0]


def metric_inputs(wildcards, samples=None):
    """{option of ihdm evaluate: file} for one metric of a model (rule evaluate); a sweep
    point gives its own `samples`."""
    info = METRICS[metric_name(wildcards.metric)]
    # the variant's samples; emergent_<variant>: that variant's
    variant = info.get("samples") or wildcards.metric.partition("_")[2]
    files = {
        "samples": samples
        or f"results/{wildcards.exp}/samples/{wildcards.model}/{variant}_seed{SEED}.npz",
        "reference": f"results/{wildcards.exp}/samples/{wildcards.model}/random_seed{SEED}.npz",
        "classifier": f"results/{wildcards.exp}/classifier/classifier.pt",
        "checkpoint": f"results/{wildcards.exp}/models/{wildcards.model}/final.pt",
        "data": TRAIN_DATA,
        "test": TEST_DATA,
        "ref_stats": FID_REFERENCE.format(exp=wildcards.exp),
    }
    return {name: files[name] for name in info["inputs"]}


def sweep_metric_inputs(wildcards):
    point = SWEEP_POINT.format(**dict(wildcards.items()))
    return metric_inputs(wildcards, samples=f"{point}/samples.npz")


def metric_options(wildcards, input):
    """The inputs as ihdm evaluate's options (--samples FILE --ref-stats FILE ...)."""
    return " ".join(
        f"--{name.replace('_', '-')} {shlex.quote(path)}"
        for name, path in input.items()
    )


def metric_settings(wildcards, sweep=False):
    """The config keys behind one metric of a model (a sweep point's own seed and
    data.train_size are in its path)."""
    name = metric_name(wildcards.metric)
    keys = list(METRICS[name]["keys"])
    if name == "nll":
        keys += PACKAGE_MODELS[wildcards.model]["nll_keys"]
    return settings(*(k for k in keys if not (sweep and k in SWEEP_OWN_KEYS)))


def metric_resource(resource):
    """A resource of the evaluate rule per metric (a GPU for torch metrics with device
    cuda)."""
    if resource == "gpu":
        return lambda wildcards: GPU * METRICS[metric_name(wildcards.metric)]["torch"]
    return lambda wildcards: METRICS[metric_name(wildcards.metric)][resource]


def metric_files():
    files = []
    for model in MODELS:
        metrics = list(SAMPLE_METRICS)
        metrics += ["nll", "simplicity", "memorization"]
        if "interpolate" in variants_of(model):
            metrics.append("smoothness")
        metrics += [f"emergent_{v}" for v in emergent_variants_of(model)]
        files += [f"{RESULTS}/metrics/{model}/{metric}.json" for metric in metrics]
    return files


def emergent_files():
    """The shared-state statistics of every model that samples the emergent variants."""
    return [
        f"{RESULTS}/metrics/{model}/emergent_{v}.json"
        for model in MODELS
        for v in emergent_variants_of(model)
    ]


def emergent_table_files():
    return [f"{RESULTS}/tables/emergent.csv"] if emergent_files() else []


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
    return [
        f"{RESULTS}/sweep/{point}/{metric}.json"
        for point in SWEEP_POINTS
        for metric in SWEEP_METRICS
    ]


# ---------------------------------------------------------------- δ sweep
# The trained models whose sampler has δ (heat.delta among their sampling keys) are
# sampled again at each δ of workflow.delta_sweep and scored with the experiment's sample
# metric: FID when evaluate.fid, else the domain FD (digits); none otherwise.
DELTA_SWEEP = config["workflow"]["delta_sweep"]
DELTA_MODELS = [m for m in MODELS if "heat.delta" in sampling_keys(m)]
DELTA_METRIC = "fid" if FID else ("domain" if DOMAIN else None)
DELTA_COLUMN = {"fid": "fid", "domain": "fd", None: None}[DELTA_METRIC]
DELTA_ON = bool(DELTA_SWEEP and DELTA_MODELS and DELTA_METRIC)
DELTA_POINT = "results/{exp}/delta/{model}/delta~{delta}"


def delta_overrides(wildcards):
    return f"--set heat.delta={wildcards.delta}"


def delta_sample_settings(model):
    """The evaluation samples' keys, but δ: it is in the point's path."""
    keys = [key for key in sampler_keys(model) if key != "heat.delta"]
    return settings(*keys, "evaluate.n_samples")


def delta_metric_inputs(wildcards):
    point = DELTA_POINT.format(**dict(wildcards.items()))
    return metric_inputs(wildcards, samples=f"{point}/samples_seed{SEED}.npz")


def delta_metric_files():
    if not DELTA_ON:
        return []
    return [
        f"{DELTA_POINT.format(exp=EXP, model=model, delta=delta)}/{DELTA_METRIC}.json"
        for model in DELTA_MODELS
        for delta in DELTA_SWEEP
    ]


def delta_table_files():
    return [f"{RESULTS}/delta/delta_sweep.csv"] if DELTA_ON else []


# ---------------------------------------------------------------- paper comparison
def paper_comparison_inputs():
    """The metric files behind the paper-vs-ours table: the sample metric and the NLL of
    each model."""
    metrics = SAMPLE_METRICS + ["nll"]
    return [
        f"{RESULTS}/metrics/{m}/{metric}.json" for m in MODELS for metric in metrics
    ]


# ---------------------------------------------------------------- figures
SPECTRA = ["data"] + (["photographs"] if config["workflow"]["photographs"] else [])
# Data-efficiency figures: one per column of the sweep table (the metric JSONs' keys).
SWEEP_COLUMNS = (
    (["fd"] if DOMAIN else []) + (["fid"] if FID else []) + ["ratio_of_medians"]
)


def figure_names():
    """The figures the config produces (results/<exp>/figures/<name>.png and .pdf)."""
    variants = config["workflow"]["variants"]
    names = [f"samples_{m}" for m in MODELS if "random" in variants]
    # the random samples hold trajectories unless sample.trajectory_frames is 0
    if config["sample"]["trajectory_frames"] > 0:
        names += [f"trajectory_{m}" for m in MODELS if "random" in variants]
    names += ["interpolation"] if "interpolate" in variants else []
    names += [f"emergent_{v}_{m}" for m in MODELS for v in emergent_variants_of(m)]
    names += ["forward-blur", "loss", "simplicity"]
    names += ["delta-sweep"] if DELTA_ON else []
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
