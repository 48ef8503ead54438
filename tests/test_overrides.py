"""Every `--set` of `ihdm sample` and `ihdm evaluate` on a trained model either takes effect
(the output changes, and the record says the value used) or is refused naming the key."""

import json

import numpy as np
import pytest

from ihdm.cli import main
from ihdm.samples import read_samples

from conftest import REPO

CONFIG = str(REPO / "config" / "test.yaml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_npz):
    d = tmp_path_factory.mktemp("overrides")
    for model in ("ihdm", "ddpm"):
        assert main(["train", CONFIG, "--model", model, "--data", str(mnist_npz), "--quiet",
                     "--out", str(d / model), "--steps", "3", "--set", "train.threads=1"]) == 0
    return d


def _sample(trained, mnist_npz, model, name, *sets):
    out = trained / f"{model}_{name.replace('.', '_')}.npz"  # the grid: the name without suffix
    args = ["sample", CONFIG, "--checkpoint", str(trained / model / "final.pt"), "--n", "4",
            "--data", str(mnist_npz), "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    return read_samples(out)


@pytest.mark.parametrize("model, key, values", [
    ("ihdm", "heat.delta", ["0.0125", "0.03"]),
    ("ddpm", "ddpm.ddim_steps", ["10", "3"]),
    ("ddpm", "ddpm.sampler", ["ddim", "ancestral"]),
])
def test_sampling_keys_change_the_samples_and_their_record(trained, mnist_npz, model, key, values) -> None:
    a, b = (_sample(trained, mnist_npz, model, f"{key}={v}", f"{key}={v}") for v in values)
    assert not np.array_equal(a["images"], b["images"]), f"--set {key} changed nothing"
    assert a["meta"]["sampler"] != b["meta"]["sampler"]
    if key == "heat.delta":
        assert "δ=0.03" in b["meta"]["sampler"]
    assert a["meta"]["precision"] in ("bf16", "fp32") and a["meta"]["train_precision"] in ("bf16", "fp32")


@pytest.mark.parametrize("setting, named", [
    ("heat.K=7", "heat.K"),                       # a training key of IHDM
    ("unet.channels=16", "unet.channels"),        # the network
    ("data.resolution=32", "data.resolution"),    # a 28 px checkpoint at 32 px
    ("data.channels=3", "data.channels"),
])
def test_training_keys_are_refused_when_sampling(trained, mnist_npz, capsys, setting, named) -> None:
    out = trained / "refused.npz"
    code = main(["sample", CONFIG, "--checkpoint", str(trained / "ihdm" / "final.pt"), "--n", "4",
                 "--data", str(mnist_npz), "--out", str(out), "--set", setting])
    assert code == 2 and named in capsys.readouterr().err
    assert not out.exists()


def test_nll_uses_and_records_the_delta_it_is_given(trained, mnist_npz) -> None:
    records = {}
    for delta in ("0.0125", "0.05"):
        out = trained / f"nll_{delta}.json"
        assert main(["evaluate", CONFIG, "--metric", "nll", "--checkpoint", str(trained / "ihdm" / "final.pt"),
                     "--data", str(mnist_npz), "--test", str(mnist_npz), "--out", str(out),
                     "--set", f"heat.delta={delta}"]) == 0
        records[delta] = json.loads(out.read_text())
        assert records[delta]["config"]["heat"]["delta"] == float(delta)
    assert records["0.0125"]["bpd_dequantised"] != records["0.05"]["bpd_dequantised"]
    assert records["0.0125"]["bpd_discrete"] != records["0.05"]["bpd_discrete"]
