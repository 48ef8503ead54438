"""The Snakemake workflow (workflow/): lint and format, dry runs of every config, the
complete DAG on config/test.yaml, reruns, a refused config, and a run through SLURM.

The integration tests run Snakemake in a temporary copy of workflow/ and config/ and are
marked `slow`; `pytest -m "not slow"` keeps the lint and dry-run tests only.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ihdm import provenance
from ihdm.config import load_config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the environment's `ihdm` and `snakefmt`
PAPER_CONFIGS = sorted((REPO / "config" / "paper").glob("*.yaml"))
# Seconds the complete DAG of config/test.yaml may take (the goal is under 3 minutes on
# an idle 2-core machine; the limit leaves room for a machine shared with other work).
PIPELINE_TIMEOUT_S = float(os.environ.get("IHDM_WORKFLOW_TIMEOUT", "900"))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def snakemake(*args: str, cwd: Path = REPO, timeout: float = 120, check: bool = True) -> str:
    """Run Snakemake in `cwd`; returns stdout and stderr together."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    done = subprocess.run(
        cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    out = done.stdout + done.stderr
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {done.returncode} in {cwd}:\n{out[-6000:]}")
    return out


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> number of jobs, from the first 'Job stats' table Snakemake printed."""
    match = re.search(r"Job stats:\njob +count\n[- ]+\n(.*?)\ntotal +\d+", output, re.DOTALL)
    if match is None:
        return {}
    return {rule: int(n) for rule, n in (line.split() for line in match.group(1).splitlines())}


def job_table(output: str) -> str:
    """The first 'Job stats' table Snakemake printed (for the test log)."""
    match = re.search(r"Job stats:\n.*?\ntotal +\d+", output, re.DOTALL)
    return match.group(0) if match else "no jobs"


def planned_models(output: str) -> set[str]:
    """The {model} wildcards of the jobs a dry run listed (sweep points included)."""
    return set(re.findall(r"^    wildcards: .*\bmodel=(\w+)", output, re.MULTILINE))


def planned_outputs(output: str) -> set[str]:
    """The first output of each job a dry run listed."""
    return set(re.findall(r"^    output: ([^,\s]+)", output, re.MULTILINE))


def _data_dir(cfg: dict) -> str:
    return provenance.prepared_data_dir(cfg)


# The complete DAG of each config (rule -> jobs), from dry runs checked by hand against the
# config. config/test.yaml: 2 models (4 variants each: 8 figure samples), MNIST
# (classifier, domain metric), no FID, sweep 2 sizes x 2 models x 1 seed = 4 points;
# metrics per model domain, nll, simplicity, memorization, smoothness and 2 emergent = 14;
# per sweep point domain and memorization = 8; the δ sweep: IHDM at 2 δ (domain FD);
# spectra of data and photographs; the paper-vs-ours and emergent tables.
TEST_JOBS = {
    "prepare": 2,
    "classifier": 1,
    "train": 2,
    "sample": 8,
    "sample_for_evaluation": 2,
    "evaluate": 14,
    "metrics_table": 1,
    "emergent_table": 1,
    "paper_table": 1,
    "sweep_train": 4,
    "sweep_sample": 4,
    "sweep_evaluate": 8,
    "sweep_table": 1,
    "delta_sample": 2,
    "delta_evaluate": 2,
    "delta_table": 1,
    "plot_delta_sweep": 1,
    "plot_simplicity": 1,
    "spectral": 1,
    "plot_samples": 2,
    "plot_trajectory": 2,
    "plot_interpolation": 1,
    "plot_emergent": 4,
    "plot_forward_blur": 1,
    "plot_loss": 1,
    "plot_psd": 2,
    "plot_erased_frequency": 2,
    "plot_data_efficiency": 2,
    "report_tables": 1,
    "report_delta_page": 1,
    "report_emergent_page": 1,
    "report_sweep_page": 1,
    "all": 1,
}
# config/config.yaml: as config/test.yaml with a third model (blurring diffusion: its
# training, 4 sample sets, evaluation samples, 7 metrics, its sweep points and figures) and
# 4 δ; sweep 2 sizes x 3 models = 6 points
CONFIG_JOBS = {
    **TEST_JOBS,
    "train": 3,
    "sample": 12,
    "sample_for_evaluation": 3,
    "evaluate": 21,
    "sweep_train": 6,
    "sweep_sample": 6,
    "sweep_evaluate": 12,
    "delta_sample": 4,
    "delta_evaluate": 4,
    "plot_samples": 3,
    "plot_trajectory": 3,
    "plot_emergent": 6,
}
# the unlabelled RGB paper configs (ffhq, lsun_church): no classifier or domain metric, FID on (metrics per model fid,
# nll, simplicity, memorization, smoothness, 2 emergent; 14) against one reference file of the
# training split; sweep 4 sizes x 2 models x 3 seeds = 24 points scored by FID and
# memorization; data-efficiency figures fid and ratio_of_medians; IHDM's FID at 4 δ
PAPER_JOBS = {
    **{rule: n for rule, n in TEST_JOBS.items() if rule != "classifier"},
    "fid_reference": 1,
    "sweep_train": 24,
    "sweep_sample": 24,
    "sweep_evaluate": 48,
    "delta_sample": 4,
    "delta_evaluate": 4,
}
# the labelled paper configs (mnist, mnist_small, cifar10, afhq64, afhq256): the domain
# metric (classifier) and FID (16 metrics, 3 per sweep point)
LABELLED_PAPER_JOBS = {
    **PAPER_JOBS,
    "classifier": 1,
    "evaluate": 16,
    "sweep_evaluate": 72,
    "plot_data_efficiency": 3,
}
LABELLED_PAPER = ("mnist", "cifar10", "afhq")
PLANNED_JOBS = {
    "config.yaml": (CONFIG_JOBS, 108),
    "test.yaml": (TEST_JOBS, 79),
    # the CIFAR-10 JPEGs: as config/test.yaml (a zip with class folders, evaluate.domain)
    # without a δ sweep
    "cifar10_jpeg.yaml": (
        {k: n for k, n in TEST_JOBS.items() if "delta" not in k},
        72,
    ),
    **{f"paper/{p.name}": (PAPER_JOBS, 163) for p in PAPER_CONFIGS if not p.name.startswith(LABELLED_PAPER)},
    **{f"paper/{p.name}": (LABELLED_PAPER_JOBS, 191) for p in PAPER_CONFIGS if p.name.startswith(LABELLED_PAPER)},
}
# the figures of config/test.yaml (results/test/figures/<name>.png and .pdf)
TEST_FIGURES = [
    "samples_ihdm",
    "samples_ddpm",
    "trajectory_ihdm",
    "trajectory_ddpm",
    "interpolation",
    "emergent_shared-prior_ihdm",
    "emergent_shared-noise_ihdm",
    "emergent_shared-prior_ddpm",
    "emergent_shared-noise_ddpm",
    "forward-blur",
    "loss",
    "simplicity",
    "delta-sweep",
    "psd_data",
    "psd_photographs",
    "erased-frequency_data",
    "erased-frequency_photographs",
    "data-efficiency_fd",
    "data-efficiency_ratio_of_medians",
]
# the figure samples of config/test.yaml, relative to results/test/
TEST_SAMPLES = [
    "samples/ihdm/random_seed0.npz",
    "samples/ihdm/shared-prior_seed0.npz",
    "samples/ihdm/shared-noise_seed0.npz",
    "samples/ihdm/interpolate_seed0.npz",
    "samples/ddpm/random_seed0.npz",
    "samples/ddpm/shared-prior_seed0.npz",
    "samples/ddpm/shared-noise_seed0.npz",
    "samples/ddpm/interpolate_seed0.npz",
]


# --------------------------------------------------------------------------- static checks
def test_lint_and_format_are_clean() -> None:
    lint = snakemake("--lint", "--cores", "1", check=False)
    assert "Congratulations, your workflow is in a good condition" in lint, lint[-4000:]
    fmt = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "workflow"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


# The rules' environment, container and schema copy: tests/test_deploy.py.


def test_every_config_has_its_job_table() -> None:
    configs = {p.relative_to(REPO / "config").as_posix() for p in (REPO / "config").rglob("*.yaml")}
    assert configs == set(PLANNED_JOBS)


@pytest.mark.parametrize("name", sorted(PLANNED_JOBS))
def test_dry_run_plans_the_complete_dag(name: str) -> None:
    """Every config plans data, training, sampling, metrics, sweep, spectra and figures
    (forced, so that finished results in the repository do not hide jobs)."""
    args = ["-n", "--forceall", "--cores", "1"]
    if name != "config.yaml":
        args += ["--configfile", str(REPO / "config" / name)]
    expected, total = PLANNED_JOBS[name]
    jobs = planned_jobs(snakemake(*args))
    assert jobs == expected
    assert sum(jobs.values()) == total


def test_paper_configs_plan_fid_against_one_training_split_reference() -> None:
    """The authors' FID: every FID job of a paper config (main models, sweep points and δ
    sweep) reads one reference file made once from the whole training split; the sample
    count is 50,000 and DDPM samples with the ancestral chain over all T steps."""
    out = snakemake("-n", "-p", "--forceall", "--cores", "1",
                    "--configfile", str(REPO / "config" / "paper" / "cifar10.yaml"))
    commands = re.findall(r"^(?:Shell command: )?(ihdm .*)$", out, re.MULTILINE)
    refs = [c for c in commands if c.startswith("ihdm fid-reference")]
    assert len(refs) == 1 and re.search(r"--data resources/cifar10/32px-[0-9a-f]{8}/train\.npz ",
                                        refs[0]), refs
    ref_file = "results/paper_cifar10/metrics/fid_reference.npz"
    assert f"--out {ref_file}" in refs[0]
    fids = [c for c in commands if c.startswith("ihdm evaluate") and "--metric fid " in c]
    assert len(fids) == 2 + 24 + 4
    assert all(f"--ref-stats {ref_file}" in c for c in fids)
    cfg = yaml.safe_load((REPO / "config" / "paper" / "cifar10.yaml").read_text())
    assert cfg["evaluate"]["fid_reference"] == "train" and cfg["evaluate"]["n_samples"] == 50000
    assert cfg["ddpm"]["sampler"] == "ancestral"
    # the δ sweep resamples IHDM only, at each δ, and scores each with FID
    deltas = [c for c in commands if c.startswith("ihdm sample") and "/delta/" in c]
    assert sorted(re.search(r"heat\.delta=([0-9.]+)", c).group(1) for c in deltas) == sorted(
        map(str, cfg["workflow"]["delta_sweep"]))
    assert all("/delta/ihdm/" in c for c in deltas)


# --------------------------------------------------------------------------- runs
def _copy_workflow(dest: Path) -> Path:
    """workflow/ (with the schema's content), config/, environment.yml and ihdm/ (whose
    code fingerprints the rules' params hold; the jobs run the installed package) in
    `dest`, with config/test.yaml's test_root made absolute."""
    shutil.copytree(REPO / "workflow", dest / "workflow")
    shutil.copytree(REPO / "ihdm", dest / "ihdm", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "config", dest / "config")
    shutil.copy(REPO / "environment.yml", dest)
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    test_root = (REPO / cfg["data"]["test_root"]).resolve()
    if not test_root.is_dir():
        pytest.skip(f"no MNIST test set at {test_root} (config/test.yaml data.test_root)")
    cfg["data"]["test_root"] = str(test_root)
    (dest / "config" / "test.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


def _edit_config(work: Path, section: str, key: str, value) -> None:
    path = work / "config" / "test.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg.setdefault(section, {})[key] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


@dataclass
class Pipeline:
    work: Path
    cfg: dict
    output: str
    seconds: float

    @property
    def results(self) -> Path:
        return self.work / "results" / self.cfg["experiment"]


def run_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """The complete DAG of config/test.yaml, run once, after an interrupted training.

    Before the run, IHDM is trained by hand up to its first checkpoint and its final.pt
    removed: what Snakemake leaves of a training job that failed after that checkpoint.
    The workflow must resume from results/test/models/ihdm/checkpoints/.
    """
    work = _copy_workflow(tmp_path_factory.mktemp("workflow"))
    cfg = load_config(work / "config" / "test.yaml")
    results = work / "results" / cfg["experiment"]
    data = f"{_data_dir(cfg)}/train.npz"
    snakemake("--cores", "2", data, "--configfile", "config/test.yaml", cwd=work)
    half = cfg["train"]["checkpoint_every"]
    assert half < cfg["train"]["steps"], "config/test.yaml: checkpoint before the end"
    subprocess.run(
        [
            str(BIN / "ihdm"),
            "train",
            str(results / "config.yaml"),
            "--model",
            "ihdm",
            "--data",
            data,
            "--out",
            str(results / "models" / "ihdm"),
            "--quiet",
            "--set",
            f"train.steps={half}",
            "--set",
            "train.threads=1",  # as the train rule passes it: a resume needs the same count
        ],
        cwd=work,
        env=_env(),
        check=True,
        capture_output=True,
        timeout=120,
    )
    (results / "models" / "ihdm" / "final.pt").unlink()

    start = time.monotonic()
    out = snakemake(
        "--cores",
        "2",
        "--configfile",
        "config/test.yaml",
        cwd=work,
        timeout=PIPELINE_TIMEOUT_S,
    )
    seconds = time.monotonic() - start
    print(f"complete DAG of config/test.yaml: {seconds:.0f} s")
    return Pipeline(work, cfg, out, seconds)


def _copy_run(pipeline: Pipeline, dest: Path) -> Path:
    """A copy of the finished run (times and Snakemake's metadata kept)."""
    shutil.copytree(pipeline.work, dest, symlinks=True)
    return dest


def _samples(path: Path) -> np.ndarray:
    with np.load(path) as z:
        return z["images"]


@pytest.mark.slow
def test_pipeline_writes_every_output(pipeline: Pipeline) -> None:
    cfg, res = pipeline.cfg, pipeline.results
    # the complete DAG, but for train.npz, prepared before the interrupted training
    assert planned_jobs(pipeline.output) == {**TEST_JOBS, "prepare": 1}
    wf, n, n_eval = cfg["workflow"], cfg["sample"]["n"], cfg["evaluate"]["n_samples"]
    shape = (cfg["data"]["resolution"], cfg["data"]["resolution"], cfg["data"]["channels"])

    written = yaml.safe_load((res / "config.yaml").read_text())
    assert written == cfg, "results/<exp>/config.yaml is the validated config"

    for model in wf["models"]:
        final = torch.load(res / "models" / model / "final.pt", weights_only=True)
        assert final["model"] == model and final["step"] == cfg["train"]["steps"]
        assert (res / "models" / model / "log.csv").is_file()
        images = _samples(res / "samples" / model / f"random_seed{cfg['seed']}.npz")
        assert images.dtype == np.uint8 and images.shape == (n, *shape)
        evaluation = _samples(res / "samples" / model / f"evaluation_seed{cfg['seed']}.npz")
        assert evaluation.shape == (n_eval, *shape)
        for path in (res / "metrics" / model).glob("*.json"):
            record = json.loads(path.read_text())
            assert record["metric"] == path.stem.split("_")[0] and record["model"] == model
            assert record["config"]["experiment"] == cfg["experiment"]
    for path in TEST_SAMPLES:
        assert (res / path).is_file() and (res / path).with_suffix(".png").is_file(), path

    table = (res / "tables" / "metrics.csv").read_text().splitlines()
    assert len(table) - 1 == TEST_JOBS["evaluate"]  # a header and one row per metric file

    # the sweep: each point trained on its own subset and steps, recorded in its JSONs
    sweep = (res / "sweep" / "data_efficiency.csv").read_text().splitlines()
    assert len(sweep) - 1 == TEST_JOBS["sweep_evaluate"]  # a header and one row per metric file
    for size, model, seed in itertools.product(wf["sweep_sizes"], wf["models"], wf["sweep_seeds"]):
        point = res / "sweep" / f"train_size~{size}" / f"model~{model}" / f"seed~{seed}"
        final = torch.load(point / "model" / "final.pt", weights_only=True)
        assert final["step"] == wf["sweep_steps"] and final["model"] == model
        assert final["config"]["data"]["train_size"] == size
        assert final["config"]["seed"] == seed
        record = json.loads((point / "memorization.json").read_text())
        assert record["config"]["data"]["train_size"] == size

    assert json.loads((res / "spectral" / "spectral.json").read_text())
    names = TEST_FIGURES
    for name in names:
        for ext in ("png", "pdf"):
            figure = res / "figures" / f"{name}.{ext}"
            assert figure.is_file() and figure.stat().st_size > 0, figure
    assert sorted(p.stem for p in (res / "figures").glob("*.png")) == sorted(names)

    # every job left a log and a benchmark; the shared data's beside it
    for stage in ("train", "sample", "evaluate", "sweep", "figures"):
        assert list((res / "benchmarks" / stage).rglob("*.tsv")), stage
        assert list((res / "logs" / stage).rglob("*.log")), stage
    data_dir = pipeline.work / _data_dir(cfg)
    for split in ("train", "test"):
        assert (data_dir / "logs" / f"prepare_{split}.log").is_file(), split
        assert (data_dir / "benchmarks" / f"prepare_{split}.tsv").is_file(), split
    assert not (res / "logs" / "prepare").exists()


@pytest.mark.slow
def test_interrupted_training_resumes_from_its_checkpoint(pipeline: Pipeline) -> None:
    model_dir = pipeline.results / "models" / "ihdm"
    log = (model_dir / "train.log").read_text()
    half = pipeline.cfg["train"]["checkpoint_every"]
    assert re.search(rf"resuming from checkpoint .* at step {half}\b", log), log
    assert list((model_dir / "checkpoints").glob("*.pt"))
    ddpm_log = (pipeline.results / "models" / "ddpm" / "train.log").read_text()
    assert "resuming" not in ddpm_log


@pytest.mark.slow
def test_second_run_does_nothing(pipeline: Pipeline) -> None:
    out = snakemake("-n", "--cores", "2", "--configfile", "config/test.yaml", cwd=pipeline.work)
    assert "Nothing to be done" in out, out[-3000:]


@pytest.mark.slow
def test_changing_sample_n_reruns_sampling_but_not_training(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    work = _copy_run(pipeline, tmp_path / "run")
    _edit_config(work, "sample", "n", pipeline.cfg["sample"]["n"] // 2)
    out = snakemake("-n", "--cores", "2", "--configfile", "config/test.yaml", cwd=work)
    jobs = planned_jobs(out)
    assert "Params have changed" in out
    # the figure samples and what is drawn or measured from them, nothing else
    assert set(jobs) == {
        "sample",
        "evaluate",
        "metrics_table",
        "plot_samples",
        "plot_trajectory",
        "plot_interpolation",
        "plot_emergent",
        "emergent_table",
        "report_tables",
        "report_emergent_page",
        "all",
    }, jobs
    assert jobs["sample"] == 8
    # the metrics of figure samples: smoothness and the 2 emergent of both models
    assert jobs["evaluate"] == 6


def _dry_run(work: Path, *args: str) -> str:
    return snakemake("-n", "--cores", "2", "--configfile", "config/test.yaml", *args, cwd=work)


@pytest.mark.slow
def test_changing_a_training_key_retrains_one_model(pipeline: Pipeline, tmp_path: Path) -> None:
    work = _copy_run(pipeline, tmp_path / "run")
    _edit_config(work, "heat", "K", pipeline.cfg["heat"]["K"] + 1)  # IHDM's levels
    out = _dry_run(work)
    print(f"after editing heat.K:\n{job_table(out)}")
    jobs = planned_jobs(out)
    assert jobs["train"] == 1  # IHDM, not DDPM
    assert jobs["sweep_train"] == 2  # IHDM's sweep points
    assert planned_models(out) == {"ihdm"}
    assert "prepare" not in jobs and "classifier" not in jobs
    assert jobs["spectral"] == 1  # the erased frequencies of each blur level


@pytest.mark.slow
def test_editing_the_loss_retrains_ihdm_only(pipeline: Pipeline, tmp_path: Path) -> None:
    """The rules' params hold the fingerprint of the code they run (ihdm/provenance.py):
    a docstring or comment is no change, the loss of IHDM retrains IHDM and not DDPM."""
    work = _copy_run(pipeline, tmp_path / "run")
    module = work / "ihdm" / "inverse_heat.py"
    text = module.read_text()
    assert text.startswith('"""IHDM:')
    module.write_text(text.replace('"""IHDM:', '"""IHDM, edited:', 1) + "\n# a comment\n")
    out = _dry_run(work)
    assert "Nothing to be done" in out, out[-3000:]

    loss = ".pow(2).sum(dim=(1, 2, 3)).mean()"
    assert text.count(loss) == 1, "update this test: the loss line of ihdm/inverse_heat.py moved"
    module.write_text(text.replace(loss, f"{loss} * 2"))
    out = _dry_run(work)
    print(f"after scaling IHDM's loss by 2:\n{job_table(out)}")
    jobs = planned_jobs(out)
    assert jobs["train"] == 1
    assert jobs["sweep_train"] == 2
    assert planned_models(out) == {"ihdm"}
    # code that does not import the IHDM module
    assert not {"prepare", "classifier", "spectral", "plot_forward_blur"} & set(jobs), jobs


@pytest.mark.slow
def test_editing_the_plotting_code_redraws_the_figures_only(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    work = _copy_run(pipeline, tmp_path / "run")
    module = work / "ihdm" / "plots.py"
    module.write_text(module.read_text() + "\nDPI_EDITED = 200\n")
    jobs = planned_jobs(_dry_run(work))
    assert jobs.pop("all") == 1
    assert all(rule.startswith("plot_") for rule in jobs), jobs
    assert sum(jobs.values()) == len(TEST_FIGURES)


@pytest.mark.slow
def test_sampling_keys_and_threads_do_not_retrain(pipeline: Pipeline, tmp_path: Path) -> None:
    """heat.delta, ddpm.ddim_steps and sample.trajectory_frames rerun what reads them,
    never training; the torch thread count of a training job (set-threads) retrains."""
    work = _copy_run(pipeline, tmp_path / "run")
    config = work / "config" / "test.yaml"
    original = config.read_text()
    cfg = pipeline.cfg

    def plan(section: str, key: str, value) -> tuple[dict[str, int], str]:
        config.write_text(original)
        _edit_config(work, section, key, value)
        out = _dry_run(work)
        jobs = planned_jobs(out)
        assert not {"train", "sweep_train", "prepare"} & set(jobs), (key, jobs)
        return jobs, out

    jobs, out = plan("heat", "delta", 2 * cfg["heat"]["delta"])
    assert planned_models(out) == {"ihdm"}
    # IHDM's 4 variants and all its 6 metrics, its NLL too
    assert jobs["sample"] == 4 and jobs["evaluate"] == 6
    assert "results/test/metrics/ihdm/nll.json" in planned_outputs(out)
    jobs, out = plan("ddpm", "ddim_steps", cfg["ddpm"]["ddim_steps"] + 1)
    assert planned_models(out) == {"ddpm"}
    # DDPM's 4 variants and 2 sweep points; its metrics but the NLL (domain,
    # memorization, smoothness, 2 emergent)
    assert jobs["sample"] == 4 and jobs["sweep_sample"] == 2 and jobs["evaluate"] == 5
    assert not {p for p in planned_outputs(out) if p.endswith("nll.json")}
    # the random figure samples only: evaluation samples have no trajectory
    jobs, _ = plan("sample", "trajectory_frames", cfg["sample"]["trajectory_frames"] + 1)
    assert jobs["sample"] == 2 and jobs["plot_trajectory"] == 2
    assert "sample_for_evaluation" not in jobs and "sweep_sample" not in jobs

    config.write_text(original)
    out = _dry_run(work, "--set-threads", "train=2")
    jobs = planned_jobs(out)
    assert jobs["train"] == 2 and "sweep_train" not in jobs
    assert "--set train.threads=2 --on-change restart" in out
    # --max-threads caps what the job gets: one thread again, as trained
    out = _dry_run(work, "--set-threads", "train=2", "--max-threads", "1")
    assert "Nothing to be done" in out, out[-3000:]


@pytest.mark.slow
def test_a_second_experiment_leaves_the_first_up_to_date(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """Two experiments on the same data, one after the other: the second one shares the
    prepared data without preparing it again, and the first one stays finished."""
    work = _copy_run(pipeline, tmp_path / "run")
    cfg = yaml.safe_load((work / "config" / "test.yaml").read_text())
    cfg["experiment"] = "second"
    cfg["train"]["steps"] = 2 * cfg["train"]["steps"]
    (work / "config" / "second.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    data = _data_dir(pipeline.cfg)
    model = "results/second/models/ddpm/final.pt"
    out = snakemake("--cores", "2", f"{data}/train.npz", f"{data}/test.npz", model,
                    "--configfile", "config/second.yaml", cwd=work, timeout=300)
    print(f"the second experiment:\n{job_table(out)}")
    assert planned_jobs(out) == {"train": 1}, out[-3000:]
    assert (work / model).is_file()
    out = _dry_run(work)
    print("then config/test.yaml:", re.findall("Nothing to be done.*", out))
    assert "Nothing to be done" in out, out[-3000:]


@pytest.mark.slow
def test_figures_are_redrawn_from_results_only(pipeline: Pipeline, tmp_path: Path) -> None:
    work = _copy_run(pipeline, tmp_path / "run")
    figures = work / "results" / pipeline.cfg["experiment"] / "figures"
    n_figures = len(list(figures.glob("*.png")))
    shutil.rmtree(figures)
    out = snakemake("-n", "figures", "--cores", "2", "--configfile", "config/test.yaml", cwd=work)
    jobs = planned_jobs(out)
    assert jobs.pop("figures") == 1
    assert all(rule.startswith("plot_") for rule in jobs), jobs
    assert sum(jobs.values()) == n_figures


@pytest.mark.slow
def test_report_holds_figures_with_captions(pipeline: Pipeline, tmp_path: Path) -> None:
    work = _copy_run(pipeline, tmp_path / "run")
    snakemake("--report", "report.zip", "--configfile", "config/test.yaml", cwd=work)
    import zipfile

    with zipfile.ZipFile(work / "report.zip") as z:
        names = z.namelist()
        text = "\n".join(
            z.read(n).decode("utf-8", "replace") for n in names if n.endswith((".html", ".js"))
        )
    assert any(n.endswith("samples_ihdm.png") for n in names)
    assert any(n.endswith("data_efficiency.csv") for n in names)
    assert "Made by experiment" in text and "mnist5k" in text


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("stepz", 5, "'stepz' was unexpected"), ("steps", "many", "'many' is not of type 'integer'")],
)
def test_bad_config_is_refused_before_any_job(
    tmp_path: Path, key: str, value: object, message: str
) -> None:
    work = _copy_workflow(tmp_path)
    _edit_config(work, "train", key, value)
    out = snakemake("--cores", "1", "--configfile", "config/test.yaml", cwd=work, check=False)
    assert message in out and "['train']" in out, out[-3000:]
    assert "Building DAG of jobs" not in out and not (work / "results").exists()


def test_config_without_experiment_is_refused_before_any_job(tmp_path: Path) -> None:
    """Without `experiment:` the schema's default would put the results into
    results/default/, over the embedded default's: refused, naming key and file."""
    work = _copy_workflow(tmp_path)
    assert yaml.safe_load((work / "config" / "config.yaml").read_text())["experiment"] == "default"
    (work / "config" / "my.yaml").write_text("heat:\n  K: 10\n")
    finished = work / "results" / "default" / "models" / "ihdm" / "final.pt"
    finished.parent.mkdir(parents=True)
    finished.write_bytes(b"a finished model")

    def state() -> dict:
        return {p: p.stat().st_mtime_ns for p in (work / "results").rglob("*")}

    before = state()
    out = snakemake("--cores", "1", "--configfile", "config/my.yaml", cwd=work, check=False)
    assert "no 'experiment' key" in out and "config/my.yaml" in out, out[-3000:]
    assert "Building DAG of jobs" not in out
    assert state() == before and finished.read_bytes() == b"a finished model"


def test_train_processes_runs_data_parallel_training(tmp_path: Path) -> None:
    """train.processes = 2: `ihdm train` in the train rule becomes torchrun with 2
    processes (gloo on the CPU) in one job with 2 threads; with device cuda the job asks
    for one GPU per process. The processes key does not invalidate a finished model."""
    work = _copy_workflow(tmp_path)
    _edit_config(work, "train", "processes", 2)
    cfg = load_config(work / "config" / "test.yaml")
    final = f"results/{cfg['experiment']}/models/ihdm/final.pt"
    snakemake("--cores", "2", final, "--configfile", "config/test.yaml", cwd=work, timeout=300)
    log = (work / f"results/{cfg['experiment']}/logs/train/ihdm.log").read_text()
    assert "data-parallel over 2 processes" in log, log[-2000:]
    assert (work / final).is_file()
    # one process again: nothing to retrain
    _edit_config(work, "train", "processes", 1)
    again = snakemake("-n", final, "--configfile", "config/test.yaml", cwd=work)
    assert "Nothing to be done" in again, again[-2000:]
    # with CUDA the job asks for one GPU per process (dry run: no GPU needed to plan)
    _edit_config(work, "train", "processes", 4)
    path = work / "config" / "test.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "device": "cuda"},
                                   sort_keys=False))
    plan = snakemake("-n", "--forcerun", "train", final, "--configfile", "config/test.yaml",
                     "--resources", "gpu=4", cwd=work)
    assert re.search(r"resources: .*gpu=4", plan), plan[-3000:]


def test_config_file_replaces_the_default_config(tmp_path: Path) -> None:
    """A --configfile is not merged over config/config.yaml: here the default config
    turns FID on, which must not leak into the test experiment."""
    work = _copy_workflow(tmp_path)
    default = work / "config" / "config.yaml"
    cfg = yaml.safe_load(default.read_text())
    cfg.setdefault("evaluate", {})["fid"] = True
    default.write_text(yaml.safe_dump(cfg, sort_keys=False))
    with_default = planned_jobs(snakemake("-n", "--cores", "1", cwd=work))
    # FID for the three models and each of the 6 sweep points
    assert with_default["evaluate"] == CONFIG_JOBS["evaluate"] + 3
    assert with_default["sweep_evaluate"] == CONFIG_JOBS["sweep_evaluate"] + 6
    out = snakemake("-n", "--cores", "1", "--configfile", "config/test.yaml", cwd=work)
    assert planned_jobs(out) == TEST_JOBS
    assert "fid.json" not in out


# --------------------------------------------------------------------------- SLURM
from conftest import in_background
from test_slurm import (  # slurm_cluster is a fixture, used by name
    SLURM_EXECUTOR_ARGS,
    BackgroundSnakemake,
    require_slurm,
    run_snakemake_slurm,
    slurm_cluster,  # noqa: F401
)


def _profile_for(cluster, dest: Path) -> dict:
    """workflow/profiles/slurm with its memory, threads and partitions cut to `cluster`
    (everything else, e.g. retries and the per-rule partitions, as shipped)."""
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    node_mb = int(
        subprocess.run(
            ["sinfo", "--noheader", "--Node", "--format=%m"],
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        ).stdout.split()[0]
    )

    def cap(value, limit):  # a number or a Python expression (e.g. per metric)
        return min(value, limit) if isinstance(value, int) else f"min({value}, {limit})"

    def fit(resources: dict) -> dict:
        out = dict(resources)
        if "mem_mb" in out:
            out["mem_mb"] = cap(out["mem_mb"], node_mb // 4)
        if out.get("slurm_partition") not in cluster.partitions:
            out["slurm_partition"] = cluster.default_partition
        return out

    profile["default-resources"] = fit(profile["default-resources"])
    profile["set-resources"] = {r: fit(v) for r, v in profile["set-resources"].items()}
    profile["set-threads"] = {r: cap(t, cluster.cpus) for r, t in profile["set-threads"].items()}
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return profile


@pytest.mark.slow
def test_slurm_profile_runs_the_pipeline(
    pipeline: Pipeline, slurm_cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config/test.yaml through workflow/profiles/slurm, cut to IHDM's random samples, no
    data-efficiency or δ sweep, from the finished run's prepared data, trained models and
    classifier (the train rule goes through SLURM in the time-limit tests below; the
    complete DAG runs in test_pipeline_writes_every_output). Each SLURM job costs a
    status-check round (about 12 s here), so the test keeps their number small: every rule
    but the local ones (tables, figures) runs as its own sbatch job."""
    work = _copy_run(pipeline, tmp_path / "run")
    cfg = load_config(work / "config" / "test.yaml")
    res = work / "results" / cfg["experiment"]
    for child in res.iterdir():  # all but what the reused jobs made
        if child.name not in ("models", "classifier", "config.yaml"):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    profile = _profile_for(slurm_cluster, tmp_path / "profile")
    monkeypatch.setenv("PATH", _env()["PATH"])  # `ihdm` inside the jobs
    for key, value in [
        ("models", ["ihdm"]),
        ("variants", ["random"]),
        ("sweep_sizes", []),
        ("photographs", False),
        ("delta_sweep", []),
    ]:
        _edit_config(work, "workflow", key, value)
    # metrics domain, nll, simplicity, memorization; spectra of the data only; no sweep
    # or emergent pages
    expected = {
        "sample": 1, "sample_for_evaluation": 1, "evaluate": 4, "metrics_table": 1,
        "paper_table": 1, "spectral": 1, "plot_samples": 1, "plot_trajectory": 1,
        "plot_forward_blur": 1, "plot_loss": 1, "plot_psd": 1, "plot_erased_frequency": 1,
        "plot_simplicity": 1, "report_tables": 1, "all": 1,
    }
    figures = ["samples_ihdm", "trajectory_ihdm", "forward-blur", "loss", "simplicity",
               "psd_data", "erased-frequency_data"]
    start = time.monotonic()
    run = run_snakemake_slurm(
        work,
        "--workflow-profile",
        str(tmp_path / "profile"),
        "--configfile",
        "config/test.yaml",
        jobs=2,
        timeout_s=PIPELINE_TIMEOUT_S,
    )
    print(f"config/test.yaml through SLURM: {time.monotonic() - start:.0f} s")
    jobs = planned_jobs(run.stdout)
    assert jobs == expected

    res = work / "results" / cfg["experiment"]
    assert not (res / "sweep").exists() and not (res / "delta").exists()
    for path in (
        "tables/metrics.csv",
        "report/metrics.html",
        "spectral/spectral.json",
        "samples/ihdm/random_seed0.npz",
        *(f"figures/{name}.pdf" for name in figures),
    ):
        assert (res / path).is_file(), path
    logs = work / ".snakemake" / "slurm_logs"
    local = {"metrics_table", "paper_table", "report_tables", "all"}
    for rule, n in jobs.items():
        found = sorted((logs / f"rule_{rule}").rglob("*.log"))
        if rule in local or rule.startswith("plot_"):
            assert not found, f"local rule {rule} went to SLURM"
            continue
        assert len(found) == n, f"rule {rule}: {n} jobs, SLURM logs {found}"
        assert all(p.stem.isdigit() for p in found)  # named by SLURM job id
        # the partition the profile gives the rule (slurmctld keeps jobs for MinJobAge)
        wanted = profile["set-resources"].get(rule, profile["default-resources"])
        wanted = wanted.get("slurm_partition", profile["default-resources"]["slurm_partition"])
        for log in found:
            job = subprocess.run(
                ["scontrol", "--oneliner", "show", "job", log.stem],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            ).stdout
            if "Partition=" in job:
                assert f" Partition={wanted} " in job, (rule, job)


# ------------------------------------------------------------- SLURM time limit and retry
# Training stops after STOP_AFTER_MIN minutes of training over both attempts
# (train.time_budget_min; checkpoints carry the time so far) and never by its step count;
# SLURM's limit for the first attempt (1 minute, enforced within about 30 s after it
# passes) comes first, so attempt 1 always ends in TIMEOUT. Attempt 2 has 10 minutes and
# trains the rest of the budget.
STOP_AFTER_MIN = 1.75
FIRST_ATTEMPT = "1 if attempt == 1 else 10"


def start_time_limit_run(tmp: Path) -> BackgroundSnakemake:
    """The real train rule of config/test.yaml through workflow/profiles/slurm, with a
    1-minute runtime for the first attempt."""
    cluster = require_slurm()
    work = _copy_workflow(tmp / "run")
    profile = _profile_for(cluster, tmp / "profile")
    profile["set-resources"]["train"]["runtime"] = FIRST_ATTEMPT
    profile["set-threads"]["train"] = 1  # leave a core to the tests running meanwhile
    (tmp / "profile" / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    for key, value in [("steps", 10**7), ("checkpoint_every", 10**7),
                       ("time_budget_min", STOP_AFTER_MIN)]:
        _edit_config(work, "train", key, value)
    cmd = [sys.executable, "-m", "snakemake", "results/test/models/ihdm/final.pt",
           "--workflow-profile", str(tmp / "profile"), *SLURM_EXECUTOR_ARGS,
           "--jobs", "2", "--latency-wait", "10", "--configfile", "config/test.yaml"]
    return BackgroundSnakemake.start(cmd, work=work, env=_env(), output=tmp / "snakemake.out")


@pytest.mark.slow
@in_background(start_time_limit_run)
def test_slurm_time_limit_is_retried_and_training_resumes(background_run) -> None:
    """A training job SLURM stops at its time limit (TIMEOUT) is submitted again by the
    profile's `retries`, and the second attempt resumes from the checkpoint the first one
    wrote when SLURM's SIGTERM arrived: no step is trained twice, none is lost."""
    code, out = background_run.wait(timeout=600)
    assert code == 0, out[-6000:]
    logs = sorted((background_run.work / ".snakemake" / "slurm_logs" / "rule_train").rglob("*.log"),
                  key=lambda p: int(p.stem))
    assert len(logs) == 2, (logs, out[-4000:])
    first, second = (p.stem for p in logs)
    assert f"SLURM-job '{first}' failed, SLURM status is: 'TIMEOUT'" in out
    state = subprocess.run(["squeue", "--noheader", "--states=all", "--jobs", first, "--format=%T|%l"],
                           capture_output=True, text=True, timeout=20, check=True).stdout.split()
    assert state == ["TIMEOUT|1:00"], state
    second_limit = subprocess.run(["squeue", "--noheader", "--states=all", "--jobs", second,
                                   "--format=%l"], capture_output=True, text=True, timeout=20,
                                  check=True).stdout.split()
    assert second_limit == ["10:00"], second_limit

    model = background_run.work / "results" / "test" / "models" / "ihdm"
    train_log = (model / "train.log").read_text()
    stopped = re.search(r"stopped by SIGTERM after step (\d+)", train_log)
    assert stopped, train_log
    n = int(stopped.group(1))
    assert n > 0
    assert re.search(rf"resuming from checkpoint \S+step_{n:08d}\.pt at step {n}\b", train_log), train_log
    final = torch.load(model / "final.pt", weights_only=True)
    assert final["step"] > n
    # the budget covered both attempts: attempt 2 trained only what attempt 1 left
    assert STOP_AFTER_MIN * 60 <= final["train_seconds"] < STOP_AFTER_MIN * 60 + 10
    # the loss log runs on from the first attempt's rows without a gap or a repeat
    steps = [int(row.split(",")[0]) for row in (model / "log.csv").read_text().splitlines()[1:]]
    every = yaml.safe_load((background_run.work / "config" / "test.yaml").read_text())["train"]["log_every"]
    assert steps == list(range(every, steps[-1] + 1, every)), steps[:5]
