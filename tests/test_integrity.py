"""Integrity checks on load. A flipped byte in the newest checkpoint makes training resume
from the one before; one in final.pt, a classifier or a statistics file, and sample files
of the wrong type, layout, count or size stop the command with exit status 2 and one line
naming the file and the problem, writing nothing and leaving the input as it was."""

import json
import re
import shutil
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from ihdm import cli
from ihdm.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from ihdm.data import DataError, load_images, prepare, save_images
from ihdm.metrics.domain import save_classifier, train_classifier
from ihdm.metrics.fid import FIDStatsError, load_reference_stats, reference_stats
from ihdm.samples import write_samples
from ihdm.train import train

from conftest import REPO, tiny_config


def flip_byte(path, member=r"/data/\d+"):
    """XOR the high byte of a float in the middle of the largest zip member whose name
    matches ``member`` (by default torch's tensor data); returns the member's name. The
    zip's CRC still records the old bytes, as after a bit flip on disk."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if re.search(member, i.filename)),
                   key=lambda i: i.file_size)
    assert info.compress_type == zipfile.ZIP_STORED
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + (info.file_size // 2) // 4 * 4 + 3] ^= 0x40
    path.write_bytes(bytes(raw))
    return info.filename


def run_cli(capsys, *args):
    """``ihdm`` in this process: (exit status, stderr)."""
    capsys.readouterr()
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr().err


def assert_refused(code, err, *named):
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    for text in named:
        assert text in errors[0], (text, errors[0])


@pytest.fixture(scope="module")
def run3(tmp_path_factory, mnist_npz):
    """An IHDM run of 3 steps with a checkpoint after each."""
    out = tmp_path_factory.mktemp("run") / "ihdm"
    cfg = tiny_config(train__steps=3, train__checkpoint_every=1, train__keep_checkpoints=3,
                      train__log_every=1)
    train(cfg, "ihdm", mnist_npz, out, progress=False)
    return cfg, out


def test_flipped_byte_in_newest_checkpoint_resumes_from_the_one_before(tmp_path, run3, mnist_npz):
    cfg, ref = run3
    out = tmp_path / "run"
    shutil.copytree(ref, out)
    (out / "final.pt").unlink()
    newest = list_checkpoints(out / "checkpoints")[-1]
    member = flip_byte(newest)
    with pytest.raises(CheckpointError, match=rf"{newest.name}.*'{member}' fails its CRC-32"):
        load_checkpoint(newest)
    final = train(cfg, "ihdm", mnist_npz, out, progress=False)
    log = (out / "train.log").read_text()
    assert "skipping unreadable checkpoint" in log and "at step 2" in log
    # the resumed run redoes step 3 and ends bitwise where the undamaged run ended
    a, b = torch.load(ref / "final.pt", weights_only=True), torch.load(final, weights_only=True)
    for part in ("net", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)


def test_nonfinite_weights_in_a_checkpoint_are_refused(tmp_path, run3):
    state = torch.load(run3[1] / "final.pt", weights_only=True)
    key = next(iter(state["ema"]))
    state["ema"][key].view(-1)[0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=rf"nan\.pt' holds NaN or infinite weights in ema \({key}"):
        load_checkpoint(tmp_path / "nan.pt")


def test_flipped_byte_in_final_pt_stops_ihdm_sample(tmp_path, run3, mnist_npz):
    final = tmp_path / "final.pt"
    shutil.copy(run3[1] / "final.pt", final)
    member = flip_byte(final)
    before = final.read_bytes()
    r = subprocess.run([sys.executable, "-m", "ihdm.cli", "sample", "--checkpoint", str(final),
                        "--data", str(mnist_npz), "--n", "2", "--out", str(tmp_path / "s.npz")],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert_refused(r.returncode, r.stderr, "final.pt", member, "CRC-32")
    assert not (tmp_path / "s.npz").exists() and final.read_bytes() == before


# ------------------------------------------------------------------ sample files


def good_samples(images):
    return {"images": torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255}


def write_bad(path, images, meta):
    np.savez(path, images=images, meta=np.array(json.dumps(meta)))


META = {"model": "ihdm", "variant": "random", "seed": 0, "n": 16}


def sample_case(kind, path, digits):
    """Write a sample file of the given kind; returns (--set overrides, expected message)."""
    u8 = digits[:16]
    if kind == "float32":
        write_bad(path, u8.astype(np.float32) / 255, META)
        return [], "images must be uint8, got float32"
    if kind == "nan":
        x = u8.astype(np.float32) / 255
        x[0, 0, 0, 0] = np.nan
        write_bad(path, x, META)
        return [], "images must be uint8, got float32"
    if kind == "nchw":
        write_bad(path, u8.transpose(0, 3, 1, 2), META)
        return [], "NHWC with 1 or 3 channels, got shape (16, 1, 28, 28)"
    if kind == "single":
        write_samples(path, good_samples(u8[:1]), {**META, "n": 1})
        return [], "holds 1 image(s), --metric emergent needs at least 2"
    if kind == "count":
        write_samples(path, good_samples(u8[:15]), META)
        return [], "holds 15 images, but its meta records 16"
    if kind == "resolution":
        write_samples(path, good_samples(u8), META)
        return ["--set", "data.resolution=32"], "data.resolution is 32"
    if kind == "flipped":
        write_samples(path, good_samples(u8), META)
        member = flip_byte(path, r"^images\.npy$")
        return [], f"Bad CRC-32 for file '{member}'"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["float32", "nan", "nchw", "single", "count", "resolution", "flipped"])
def test_bad_sample_file_stops_ihdm_evaluate(tmp_path, capsys, mnist_images, kind):
    path = tmp_path / f"{kind}.npz"
    sets, problem = sample_case(kind, path, mnist_images)
    before = path.read_bytes()
    out = tmp_path / "emergent.json"
    code, err = run_cli(capsys, "evaluate", REPO / "config/test.yaml", "--metric", "emergent",
                        "--samples", path, "--out", out, *sets)
    assert_refused(code, err, f"{kind}.npz", problem)
    assert not out.exists() and path.read_bytes() == before


def test_good_sample_file_is_evaluated(tmp_path, capsys, mnist_images):
    """The control for the table above: the same command on a sound file succeeds."""
    path = write_samples(tmp_path / "good.npz", good_samples(mnist_images[:16]), META)
    code, err = run_cli(capsys, "evaluate", REPO / "config/test.yaml", "--metric", "emergent",
                        "--samples", path, "--out", tmp_path / "emergent.json")
    assert code == 0, err
    assert json.loads((tmp_path / "emergent.json").read_text())["n_samples"] == 16


def test_emergent_reference_is_read_and_checked(tmp_path, capsys, mnist_images):
    """--reference (the model's random samples) puts their numbers beside the variant's;
    a damaged reference file is named and nothing is written."""
    path = write_samples(tmp_path / "shared.npz", good_samples(np.repeat(mnist_images[:1], 16, axis=0)), META)
    ref = write_samples(tmp_path / "random.npz", good_samples(mnist_images[16:32]), META)
    out = tmp_path / "emergent.json"
    code, err = run_cli(capsys, "evaluate", REPO / "config/test.yaml", "--metric", "emergent",
                        "--samples", path, "--reference", ref, "--out", out)
    assert code == 0, err
    record = json.loads(out.read_text())
    assert record["structure_correlation"] == pytest.approx(1.0) and record["mean_colour_std"] < 1e-6
    assert record["random_mean_colour_std"] > 0 and record["random_structure_correlation"] < 0.9
    assert record["mean_colour_std_ratio"] < 1e-4 and record["n_random"] == 16
    out.unlink()
    write_samples(ref, good_samples(mnist_images[:1]), {**META, "n": 1})
    code, err = run_cli(capsys, "evaluate", REPO / "config/test.yaml", "--metric", "emergent",
                        "--samples", path, "--reference", ref, "--out", out)
    assert_refused(code, err, "random.npz", "holds 1 image(s)")
    assert not out.exists()


# ------------------------------------------------------------------ statistics, classifier, data


class Pool(torch.nn.Module):
    """A small feature extractor for reference statistics without Inception."""

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


def test_damaged_fid_statistics_and_classifier_stop_ihdm_evaluate(tmp_path, capsys, mnist_npz,
                                                                  mnist_images):
    samples = write_samples(tmp_path / "s.npz", good_samples(mnist_images[:16]), META)
    stats = tmp_path / "stats.npz"
    reference_stats(mnist_images[:64], stats, feature_extractor=Pool(), extractor_name="pool")
    member = flip_byte(stats, r"^sigma\.npy$")
    clf = tmp_path / "classifier.pt"
    save_classifier(train_classifier(mnist_images[:64], load_images(mnist_npz)[1][:64], steps=2), clf)
    clf_member = flip_byte(clf)
    before = stats.read_bytes(), clf.read_bytes()
    for args, named in (
        (["--metric", "fid", "--ref-stats", stats], ["stats.npz", f"Bad CRC-32 for file '{member}'"]),
        (["--metric", "domain", "--classifier", clf], ["classifier.pt", clf_member, "CRC-32"]),
    ):
        out = tmp_path / "metric.json"
        code, err = run_cli(capsys, "evaluate", REPO / "config/test.yaml", "--samples", samples,
                            "--test", mnist_npz, "--out", out, *args)
        assert_refused(code, err, *named)
        assert not out.exists()
    assert (stats.read_bytes(), clf.read_bytes()) == before


def test_fid_statistics_with_nan_or_wrong_shapes_are_refused(tmp_path, mnist_images):
    stats = tmp_path / "stats.npz"
    reference_stats(mnist_images[:16], stats, feature_extractor=Pool(), extractor_name="pool")
    with np.load(stats) as z:
        good = {k: z[k] for k in z.files}
    sigma = good["sigma"].copy()
    sigma[0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", **{**good, "sigma": sigma})
    with pytest.raises(FIDStatsError, match=r"nan\.npz': 'sigma' is not all finite"):
        load_reference_stats(tmp_path / "nan.npz")
    np.savez(tmp_path / "short.npz", **{**good, "mu": good["mu"][:-1]})
    with pytest.raises(FIDStatsError, match=r"short\.npz': shapes mu \(47,\)"):
        load_reference_stats(tmp_path / "short.npz")


def test_prepared_data_that_disagrees_with_its_sidecar(tmp_path, capsys):
    path = prepare(tiny_config(data__train_size=50), "train", tmp_path / "train.npz")
    images, labels = load_images(path)
    save_images(path, images[::-1].copy(), labels[::-1].copy())  # replaced behind the sidecar's back
    with pytest.raises(DataError, match=r"train\.npz' does not hold the images its sidecar '.*train\.npz\.json'"):
        load_images(path)
