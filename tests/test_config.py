"""Configs: every shipped config validates; bad input is refused naming the key."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ihdm.config import ConfigError, load_config

from conftest import REPO

CONFIGS = sorted((REPO / "config").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg["heat"]["blur_sigma_min"] == 0.5 or path.name == "test.yaml"


def write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    "cfg, key",
    [
        ({"heat": {"Kay": 3}}, "heat.Kay"),
        ({"bogus": 1}, "bogus"),
        ({"heat": {"K": 0}}, "heat.K"),
        ({"heat": {"K": "ten"}}, "heat.K"),
        ({"heat": {"sigma": 0}}, "heat.sigma"),
        ({"heat": {"delta": -0.1}}, "heat.delta"),
        ({"heat": {"blur_sigma_min": 2.0, "blur_sigma_max": 1.0}}, "heat.blur_sigma_max"),
        ({"data": {"resolution": 30}, "unet": {"channel_mult": [1, 2, 2]}}, "data.resolution"),
        ({"unet": {"attention_levels": [4]}}, "unet.attention_levels"),
        ({"train": {"lr": "fast"}}, "train.lr"),
        ({"data": {"dataset": "imagenet"}}, "data.dataset"),
    ],
)
def test_bad_values_are_refused_naming_the_key(tmp_path, cfg, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write(tmp_path, cfg))


def test_overrides_and_defaults(tmp_path):
    cfg = load_config(None, ["train.lr=1e-4", "heat.K=7", "unet.channel_mult=[1, 2]"])
    assert cfg["train"]["lr"] == 1e-4 and cfg["heat"]["K"] == 7
    assert cfg["unet"]["channel_mult"] == [1, 2]
    assert cfg["ddpm"]["T"] == 1000  # default filled in
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("heat: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def ihdm(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "ihdm.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_describe_paper_networks():
    """The paper configs build the authors' networks: 42.08 M and 61.06 M parameters; the
    CIFAR-10 baseline is Ho et al.'s 35.7 M network, the MNIST one IHDM's own."""
    for name, expected, ho in [("mnist", 42.08e6, None), ("cifar10", 61.06e6, 35.7e6)]:
        r = ihdm("describe", f"config/paper/{name}.yaml")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        n = out["models"]["ihdm"]["parameters"]
        assert abs(n - expected) / expected < 0.02, (name, n)
        n_ddpm = out["models"]["ddpm"]["parameters"]
        if ho is None:
            assert n_ddpm == n and out["models"]["ddpm"]["unet"] == out["unet"]
        else:
            assert abs(n_ddpm - ho) / ho < 0.02, (name, n_ddpm)
            assert out["models"]["ddpm"]["unet"]["num_res_blocks"] == 2
        assert out["models"]["ihdm"]["K"] == {"mnist": 100, "cifar10": 200}[name]
        assert len(out["models"]["ihdm"]["schedule"]["blur_sigmas"]) == out["models"]["ihdm"]["K"] + 1


def ihdm_all(*calls: tuple[str, ...], cwd=REPO) -> list[subprocess.CompletedProcess]:
    """Several independent `ihdm` commands side by side (each pays Python's and torch's
    start-up; together they take the time of about one)."""
    procs = [subprocess.Popen([sys.executable, "-m", "ihdm.cli", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=cwd) for args in calls]
    outputs = [p.communicate(timeout=300) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, *out) for p, out in zip(procs, outputs)]


def test_cli_errors_are_one_clear_line(tmp_path):
    bad = write(tmp_path, {"heat": {"K": 0}})
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    results = ihdm_all(
        ("describe", str(bad)),
        ("sample", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "s.npz")),
        ("sample", "--checkpoint", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "s.npz")),
        ("train", "config/test.yaml", "--model", "ihdm", "--data", str(tmp_path / "no.npz"),
         "--out", str(tmp_path / "run")),
    )
    for r, named in zip(results, ["heat.K", "nope.pt", "damaged", "no.npz"]):
        assert r.returncode == 2 and named in r.stderr and "Traceback" not in r.stderr, r.stderr


# What the authors' public configs set (configs/<data set>/*.py): optim.automatic_mp and
# model.ema_rate; their EMA (score_sde's) always ramps up with its update count.
AUTHORS = {"mnist": (False, 0.999), "mnist_small": (False, 0.999), "cifar10": (True, 0.999),
           "afhq64": (False, 0.999), "afhq256": (False, 0.9999), "ffhq128": (True, 0.9999),
           "ffhq256": (True, 0.9999), "lsun_church128": (True, 0.999)}


def test_paper_configs_precision_and_ema_are_the_authors():
    """Mixed precision where the authors trained with it, fp32 elsewhere; fp32 sampling;
    the authors' EMA ramp; DDPM's FID from the ancestral chain over all T steps."""
    paper = sorted((REPO / "config" / "paper").glob("*.yaml"))
    assert {p.stem for p in paper} == set(AUTHORS)
    for path in paper:
        cfg = load_config(path)
        mixed, ema = AUTHORS[path.stem]
        assert cfg["train"]["mixed_precision"] is mixed, path.name
        assert cfg["sample"]["mixed_precision"] is False, path.name
        assert (cfg["train"]["ema_decay"], cfg["train"]["ema_warmup"]) == (ema, True), path.name
        assert cfg["ddpm"]["sampler"] == "ancestral" and cfg["ddpm"]["T"] == 1000, path.name
        assert cfg["experiment"] == f"paper_{path.stem}"
    small = load_config(REPO / "config" / "paper" / "mnist_small.yaml")
    assert (small["heat"]["K"], small["unet"]["channels"], small["unet"]["channel_mult"]) == (50, 64, [1, 1, 1])


def test_sampling_precision_is_its_own_setting():
    """sample.mixed_precision: null follows training, true/false decide for sampling alone;
    training never reads it."""
    import torch

    from ihdm.runtime import autocast

    cpu = torch.device("cpu")
    for train_bf16 in (False, True):
        for sample in (None, False, True):
            cfg = load_config(None, [f"train.cpu_bf16={str(train_bf16).lower()}",
                                     f"sample.mixed_precision={'null' if sample is None else str(sample).lower()}"])
            with autocast(cfg, cpu, stage="train"):
                assert torch.is_autocast_enabled("cpu") is train_bf16
            with autocast(cfg, cpu, stage="sample"):
                assert torch.is_autocast_enabled("cpu") is (train_bf16 if sample is None else sample)


def test_ddpm_network_is_a_training_key_of_ddpm_only(tmp_path):
    """ddpm.unet shapes DDPM's weights, not IHDM's; a bad ddpm.unet is refused by name."""
    from ihdm.provenance import training_config

    base = load_config(None)
    own = load_config(None, ["ddpm.unet={channels: 16, num_res_blocks: 2}"])
    assert training_config(base, "ihdm") == training_config(own, "ihdm")
    diff = {k for k, v in training_config(own, "ddpm").items()
            if training_config(base, "ddpm").get(k) != v}
    assert diff == {"ddpm.unet.channels", "ddpm.unet.num_res_blocks"}
    with pytest.raises(ConfigError, match=r"ddpm\.unet\.attention_levels"):
        load_config(write(tmp_path, {"ddpm": {"unet": {"attention_levels": [5]}}}))
    with pytest.raises(ConfigError, match=r"ddpm\.unet\.width"):
        load_config(write(tmp_path, {"ddpm": {"unet": {"width": 5}}}))
