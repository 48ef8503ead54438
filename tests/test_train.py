"""The training loop: resume gives the same weights, damaged and unsafe checkpoints are
handled, a diverging run stops and keeps its last good checkpoint."""

import csv
import pickle

import pytest
import torch

from ihdm.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from ihdm.runtime import load_model
from ihdm.train import TrainingDiverged, train

from conftest import REPO, tiny_config


def weights(path):
    state = torch.load(path, weights_only=True)
    return state["net"], state["ema"]


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("model", ["ihdm", "ddpm"])
def test_resume_gives_the_same_weights(tmp_path, mnist_npz, model):
    cfg = tiny_config(train__checkpoint_every=10, train__steps=20, unet__dropout=0.1)
    straight = train(cfg, model, mnist_npz, tmp_path / "straight", progress=False)

    first = tiny_config(train__checkpoint_every=10, train__steps=10, unet__dropout=0.1)
    train(first, model, mnist_npz, tmp_path / "resumed", progress=False)
    resumed = train(cfg, model, mnist_npz, tmp_path / "resumed", progress=False)
    assert "resuming from checkpoint" in (tmp_path / "resumed" / "train.log").read_text()
    for a, b in zip(weights(straight), weights(resumed)):
        assert_same(a, b)
    with open(tmp_path / "resumed" / "log.csv") as fh:
        steps = [int(r["step"]) for r in csv.DictReader(fh)]
    assert steps == [5, 10, 15, 20]
    # and training moved the weights at all
    init = tiny_config()
    from ihdm.unet import build_unet

    torch.manual_seed(0)
    fresh = build_unet(init).state_dict()
    assert any(not torch.equal(fresh[k], weights(straight)[0][k]) for k in fresh)


def test_damaged_latest_checkpoint_falls_back(tmp_path, mnist_npz):
    cfg = tiny_config(train__checkpoint_every=5, train__steps=10, train__keep_checkpoints=3)
    out = tmp_path / "run"
    train(cfg, "ihdm", mnist_npz, out, progress=False)
    ckpts = list_checkpoints(out / "checkpoints")
    assert [p.name for p in ckpts] == ["step_00000005.pt", "step_00000010.pt"]
    data = ckpts[-1].read_bytes()
    ckpts[-1].write_bytes(data[: len(data) // 2])  # truncated, as by a kill during a copy
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        load_checkpoint(ckpts[-1])
    cfg = tiny_config(train__checkpoint_every=5, train__steps=15, train__keep_checkpoints=3)
    train(cfg, "ihdm", mnist_npz, out, progress=False)
    text = (out / "train.log").read_text()
    assert "skipping unreadable checkpoint" in text and "at step 5" in text


def test_pickle_with_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this ran",))

    path = tmp_path / "evil.pt"
    torch.save({"net": {}, "model": "ihdm", "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)
    path.write_bytes(pickle.dumps({"net": Payload()}))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_diverging_loss_stops_and_keeps_last_checkpoint(tmp_path, mnist_npz):
    cfg = tiny_config(train__checkpoint_every=3, train__steps=200, train__lr=1e36,
                      train__warmup_steps=0, train__grad_clip=None)
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf) in steps \d+\.\.\d+; stopped\. The last good checkpoint"):
        train(cfg, "ihdm", mnist_npz, tmp_path / "run", progress=False)
    ckpts = list_checkpoints(tmp_path / "run" / "checkpoints")
    for path in ckpts:  # whatever was saved is readable and finite
        state = load_checkpoint(path)
        assert all(torch.isfinite(v).all() for v in state["net"].values())
    assert not (tmp_path / "run" / "final.pt").exists()


def test_model_mismatch_and_load_model(tmp_path, mnist_npz):
    cfg = tiny_config(train__steps=5, train__checkpoint_every=5)
    final = train(cfg, "ihdm", mnist_npz, tmp_path / "run", progress=False)
    net, cfg2, model, state = load_model(final)
    assert model == "ihdm" and cfg2["heat"]["K"] == cfg["heat"]["K"] and not net.training
    with pytest.raises(ValueError, match="model 'ihdm'"):
        train(tiny_config(train__steps=6), "ddpm", mnist_npz, tmp_path / "run", progress=False)


def test_resume_on_another_kind_of_device_is_refused(tmp_path, mnist_npz):
    """A checkpoint whose generator state is CUDA's (16 bytes of Philox state) cannot resume
    on the CPU: a clear error, and the checkpoint is left as it was."""
    cfg = tiny_config(train__steps=4, train__checkpoint_every=2)
    train(cfg, "ihdm", mnist_npz, tmp_path / "run", progress=False)
    ckpt = list_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    state = torch.load(ckpt, weights_only=True)
    state["rng"]["generator"] = torch.zeros(16, dtype=torch.uint8)  # as written on CUDA
    torch.save(state, ckpt)
    before = ckpt.read_bytes()
    with pytest.raises(ValueError, match=r"another kind of device than this run's \(cpu\)"):
        train(tiny_config(train__steps=6, train__checkpoint_every=2), "ihdm", mnist_npz,
              tmp_path / "run", progress=False)
    assert ckpt.read_bytes() == before


def test_data_parallel_matches_single_process(tmp_path, mnist_npz):
    """torchrun with 2 gloo processes on the CPU follows the 1-process loss trajectory for
    the same global batch (the shards together are the single process's batch)."""
    import os
    import subprocess
    import sys

    sets = ["--set", "train.steps=6", "--set", "train.log_every=1", "--set", "train.batch_size=8",
            "--set", "train.threads=1", "--set", "unet.dropout=0.0"]
    base = [mnist_npz.as_posix()]

    def run(prefix, out):
        cmd = prefix + ["train", "config/test.yaml", "--model", "ihdm", "--data", *base,
                        "--out", str(out), "--quiet", *sets]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        with open(out / "log.csv") as fh:
            return [float(row["loss"]) for row in csv.DictReader(fh)]

    single = run([sys.executable, "-m", "ihdm.cli"], tmp_path / "one")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "ihdm.cli"]
    double = run(torchrun, tmp_path / "two")
    assert "data-parallel over 2 processes: 4 of the 8 images" in (tmp_path / "two" / "train.log").read_text()
    assert len(single) == len(double) == 6
    for a, b in zip(single, double):
        assert abs(a - b) <= 1e-4 * max(abs(a), 1e-8) + 1e-6, (single, double)
    one, two = weights(tmp_path / "one" / "final.pt")[0], weights(tmp_path / "two" / "final.pt")[0]
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-4


def test_ema_warmup_leaves_no_initial_weights_in_short_runs():
    """With train.ema_warmup the EMA is the authors' (its n-th update has decay
    min(d, (1+n)/(10+n)), n counted from 1) and holds essentially none of the random initial
    weights after 600 steps; a fixed 0.999 holds 55 % of them. Long runs reach the decay."""
    import math

    from ihdm.train import ema_decay_at

    warm = {"ema_decay": 0.999, "ema_warmup": True}
    fixed = {"ema_decay": 0.999, "ema_warmup": False}
    decays = [ema_decay_at(s, warm) for s in range(20000)]
    assert decays[0] == pytest.approx(2 / 11) and decays[99] == pytest.approx(101 / 110)
    assert all(a <= b for a, b in zip(decays, decays[1:]))
    assert decays[-1] == 0.999
    share = lambda cfg: math.prod(ema_decay_at(s, cfg) for s in range(600))  # noqa: E731
    assert share(warm) < 1e-12
    assert share(fixed) == pytest.approx(0.999 ** 600) and share(fixed) > 0.5


def test_time_budget_counts_every_run_of_a_resumed_training(tmp_path, mnist_npz):
    """train.time_budget_min covers the training time of all runs: checkpoints carry the
    seconds trained so far, and a resumed run with a budget already used up stops after
    one step instead of getting the whole budget again."""
    first = tiny_config(train__steps=4, train__checkpoint_every=2)
    train(first, "ihdm", mnist_npz, tmp_path / "run", progress=False)
    so_far = torch.load(tmp_path / "run" / "checkpoints" / "step_00000004.pt",
                        weights_only=True)["train_seconds"]
    assert so_far > 0
    again = tiny_config(train__steps=10_000, train__checkpoint_every=10_000,
                        train__time_budget_min=so_far / 60)
    final = torch.load(train(again, "ihdm", mnist_npz, tmp_path / "run", progress=False),
                       weights_only=True)
    assert final["step"] == 5
    assert final["train_seconds"] > so_far
    log = (tmp_path / "run" / "train.log").read_text()
    assert "time budget of" in log and "after 5 steps" in log


def test_ddpm_trains_and_loads_its_own_network(tmp_path, mnist_npz):
    """With ddpm.unet the baseline trains (and load_model rebuilds) its own network, the
    other unet keys inherited; IHDM keeps unet."""
    cfg = tiny_config(train__steps=2, train__checkpoint_every=2, ddpm__unet={"channels": 4})
    final = train(cfg, "ddpm", mnist_npz, tmp_path / "ddpm", progress=False)
    net, stored, model, _ = load_model(final)
    assert model == "ddpm" and stored["ddpm"]["unet"] == {"channels": 4}
    assert net.channels == 4 and net.channel_mult == tuple(cfg["unet"]["channel_mult"])
    from ihdm.unet import build_unet

    assert build_unet(cfg, "ihdm").channels == cfg["unet"]["channels"] == 8
