"""Every command fed a damaged or wrong input of each kind it reads (config, override,
data, checkpoint, samples, metric file, spectral summary) and the settings a new user gets
wrong: exit status 2, one message naming the file or key, no traceback, no output."""

import json

import numpy as np
import pytest
import torch

from ihdm.cli import main
from ihdm.data import load_images, save_images

from conftest import REPO

CONFIG = str(REPO / "config" / "test.yaml")


@pytest.fixture(scope="module")
def files(tmp_path_factory, mnist_npz):
    """A trained model, its samples, and damaged copies of each kind of input file."""
    d = tmp_path_factory.mktemp("inputs")
    images, labels = load_images(mnist_npz)
    assert main(["train", CONFIG, "--model", "ihdm", "--data", str(mnist_npz), "--quiet",
                 "--out", str(d / "run"), "--steps", "2", "--set", "train.threads=1"]) == 0
    torch.set_num_threads(1)
    assert main(["sample", CONFIG, "--checkpoint", str(d / "run" / "final.pt"), "--n", "4",
                 "--data", str(mnist_npz), "--out", str(d / "samples.npz")]) == 0
    save_images(d / "rgb.npz", np.repeat(images[:64], 3, axis=-1), labels[:64])
    save_images(d / "few.npz", images[:10], labels[:10])
    (d / "truncated.npz").write_bytes(mnist_npz.read_bytes()[:5000])
    (d / "text.npz").write_text("not an archive")
    state = torch.load(d / "run" / "final.pt", weights_only=True)
    state["config"]["unet"]["channels"] = 16  # weights of an 8-channel network
    torch.save(state, d / "other_size.pt")
    (d / "bad.json").write_text("{not json")
    (d / "summary.json").write_text(json.dumps({"data": {}}))
    (d / "K_float.yaml").write_text((REPO / "config" / "test.yaml").read_text()
                                    .replace("K: 5", "K: 5.0"))
    (d / "a_file").write_text("")
    return d


def run(files, mnist_npz, args):
    return main([a.format(d=files, data=mnist_npz, config=CONFIG) for a in args])


CASES = {
    # config and overrides
    "K below 1": (["describe", "{config}", "--set", "heat.K=0"], "heat.K"),
    "K not an integer": (["describe", "{config}", "--set", "heat.K=5.5"], "heat.K"),
    "empty key part": (["describe", "{config}", "--set", "heat..K=3"], "heat..K"),
    "override not YAML": (["describe", "{config}", "--set", "heat.K=[1,"], "not valid YAML"),
    "unknown key": (["describe", "{config}", "--set", "heat.k=3"], "heat.k"),
    "missing config": (["describe", "{d}/nope.yaml"], "nope.yaml"),
    # data
    "truncated data": (["train", "{config}", "--model", "ihdm", "--data", "{d}/truncated.npz",
                        "--out", "{d}/o1"], "truncated.npz"),
    "not an archive": (["spectral", "{config}", "--data", "{d}/text.npz", "--out", "{d}/s.json"],
                       "text.npz"),
    "wrong channels": (["train", "{config}", "--model", "ihdm", "--data", "{d}/rgb.npz",
                        "--out", "{d}/o2"], "data.channels"),
    "train_size above the data": (["train", "{config}", "--model", "ddpm", "--data", "{d}/few.npz",
                                   "--set", "data.train_size=20", "--out", "{d}/o3"],
                                  "data.train_size"),
    "cuda without a GPU": (["train", "{config}", "--model", "ihdm", "--data", "{data}",
                            "--set", "device=cuda", "--out", "{d}/o4"], "'device'"),
    "output under a file": (["prepare", "{config}", "--split", "train", "--out",
                             "{d}/a_file/x.npz"], "a_file"),
    # checkpoints
    "checkpoint of another size": (["sample", "{config}", "--checkpoint", "{d}/other_size.pt",
                                    "--n", "2", "--out", "{d}/s1.npz"], "other_size.pt"),
    "checkpoint not a checkpoint": (["sample", "--checkpoint", "{d}/text.npz", "--out",
                                     "{d}/s2.npz"], "text.npz"),
    "config against the checkpoint": (["sample", "{config}", "--set", "heat.K=6", "--checkpoint",
                                       "{d}/run/final.pt", "--out", "{d}/s3.npz"], "heat.K"),
    "nll checkpoint damaged": (["evaluate", "{config}", "--metric", "nll", "--checkpoint",
                                "{d}/text.npz", "--test", "{data}", "--out", "{d}/m1.json"],
                               "text.npz"),
    # samples and results files
    "samples not an archive": (["evaluate", "{config}", "--metric", "emergent", "--samples",
                                "{d}/text.npz", "--out", "{d}/m2.json"], "text.npz"),
    "data given as samples": (["plot", "samples", "{data}", "--out", "{d}/f1"], "train.npz"),
    "metric file not JSON": (["collect", "{config}", "--out", "{d}/t.csv", "{d}/bad.json"],
                             "bad.json"),
    "summary without the source": (["plot", "psd", "{d}/summary.json", "--source", "photographs",
                                    "--out", "{d}/f2"], "photographs"),
    "missing classifier": (["evaluate", "{config}", "--metric", "domain", "--samples",
                            "{d}/samples.npz", "--classifier", "{d}/nope.pt", "--test", "{data}",
                            "--out", "{d}/m3.json"], "nope.pt"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_error(case, files, mnist_npz, capsys):
    args, named = CASES[case]
    before = sorted(p.name for p in files.rglob("*"))
    try:
        status = run(files, mnist_npz, args)
    finally:
        torch.set_num_threads(1)
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err and err.startswith(f"ihdm {args[0]}: error: "), err
    assert named in err, err
    # nothing new but what the DDPM case trains, and no output file
    after = sorted(p.name for p in files.rglob("*"))
    assert set(after) - set(before) <= {"ddpm", "checkpoints", "final.pt", "log.csv", "train.log",
                                        ".lock", "step_00000001.pt"}


def test_integral_float_is_an_integer(files, capsys):
    assert main(["describe", str(files / "K_float.yaml")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["models"]["ihdm"]["K"] == 5 and isinstance(out["models"]["ihdm"]["K"], int)
