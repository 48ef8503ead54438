"""Fault injection: a run killed with SIGKILL resumes and ends exactly where an unkilled run
ends; damaged inputs give clear errors; no output is ever left half-written."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import REPO

SETS = ["--set", "train.steps=40", "--set", "train.checkpoint_every=5", "--set", "train.log_every=5",
        "--set", "train.threads=1", "--set", "unet.dropout=0.1"]


def ihdm_cmd(*args):
    return [sys.executable, "-m", "ihdm.cli", *args]


def run(*args, timeout=300):
    return subprocess.run(ihdm_cmd(*args), capture_output=True, text=True, cwd=REPO, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def state(path):
    return torch.load(path, weights_only=True)


def test_sigkill_during_training_then_resume_is_bitwise_identical(tmp_path, mnist_npz):
    train = ["train", "config/test.yaml", "--model", "ihdm", "--data", str(mnist_npz), "--quiet", *SETS]
    ref = run(*train, "--out", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr[-2000:]

    out = tmp_path / "killed"
    kills = 0
    for wait_for in ("step_00000010.pt", "step_00000025.pt"):  # kill twice, at different moments
        proc = subprocess.Popen(ihdm_cmd(*train, "--out", str(out)), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.time() + 240
        while not (out / "checkpoints" / wait_for).exists() and proc.poll() is None:
            assert time.time() < deadline, "training made no progress"
            time.sleep(0.05)
        time.sleep(0.3)  # somewhere between two checkpoints, possibly mid-write
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += proc.returncode == -signal.SIGKILL
        assert not (out / "final.pt").exists() or proc.returncode == 0
    assert kills >= 1
    resumed = run(*train, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from checkpoint" in (out / "train.log").read_text()
    a, b = state(tmp_path / "ref" / "final.pt"), state(out / "final.pt")
    for part in ("net", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    # temporary files of writes cut short by the kills are cleaned up on resume
    assert not [p.name for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_sigterm_checkpoints_the_step_in_progress_and_resumes_bitwise(tmp_path, mnist_npz):
    """SIGTERM (SLURM's time limit, preemption, scancel) stops training after the step in
    progress with a checkpoint of that step, exit status 143 and a one-line message; a
    rerun resumes there and ends bitwise where an uninterrupted run ends."""
    base = ["train", "config/test.yaml", "--model", "ddpm", "--data", str(mnist_npz), "--quiet",
            "--set", "train.threads=1", "--set", "unet.dropout=0.1", "--set", "train.log_every=1"]
    out = tmp_path / "stopped"
    # no periodic checkpoint: whatever is saved comes from the signal
    proc = subprocess.Popen(ihdm_cmd(*base, "--set", "train.steps=1000000",
                                     "--set", "train.checkpoint_every=1000000", "--out", str(out)),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    log_csv = out / "log.csv"
    deadline = time.time() + 240
    while not (log_csv.exists() and len(log_csv.read_text().splitlines()) > 8):
        assert proc.poll() is None and time.time() < deadline, "training made no progress"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    done = int(err.split("stopped by SIGTERM after step ")[1].split()[0])
    assert done >= 8
    assert [p.name for p in (out / "checkpoints").glob("*.pt")] == [f"step_{done:08d}.pt"]
    assert not (out / "final.pt").exists()
    assert "stopped by SIGTERM" in (out / "train.log").read_text()

    steps = ["--set", f"train.steps={done + 5}"]
    # the resumed run and an uninterrupted reference, side by side
    procs = [subprocess.Popen(ihdm_cmd(*base, *steps, "--out", str(d)), cwd=REPO, text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
             for d in (out, tmp_path / "ref")]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    assert f"at step {done}" in (out / "train.log").read_text()
    a, b = state(tmp_path / "ref" / "final.pt"), state(out / "final.pt")
    assert a["step"] == b["step"] == done + 5
    for part in ("net", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)


def test_kill_during_sampling_leaves_no_partial_file(tmp_path, mnist_npz):
    r = run("train", "config/test.yaml", "--model", "ihdm", "--data", str(mnist_npz), "--quiet",
            "--out", str(tmp_path / "m"), "--set", "train.steps=2")
    assert r.returncode == 0, r.stderr[-2000:]
    target = tmp_path / "s" / "samples.npz"
    proc = subprocess.Popen(ihdm_cmd("sample", "config/test.yaml", "--checkpoint", str(tmp_path / "m" / "final.pt"),
                                     "--n", "4000", "--out", str(target)), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(6)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # either nothing was written, or the file is complete and readable
    if target.exists():
        with np.load(target) as z:
            assert z["images"].shape[0] == 4000


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_dtype"])
def test_damaged_training_data_is_a_clear_error(tmp_path, mnist_npz, damage):
    bad = tmp_path / "bad.npz"
    data = mnist_npz.read_bytes()
    if damage == "truncate":
        bad.write_bytes(data[: len(data) // 3])
    elif damage == "garbage":
        bad.write_bytes(os.urandom(4096))
    else:
        np.savez(bad, images=np.zeros((4, 28, 28, 1), dtype=np.float32))
    r = run("train", "config/test.yaml", "--model", "ihdm", "--data", str(bad), "--out", str(tmp_path / "run"))
    assert r.returncode == 2, r.stderr[-2000:]
    assert "bad.npz" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "final.pt").exists()


def test_same_config_and_seed_give_identical_samples(tmp_path, mnist_npz):
    r = run("train", "config/test.yaml", "--model", "ihdm", "--data", str(mnist_npz), "--quiet",
            "--out", str(tmp_path / "m"), "--set", "train.steps=3")
    assert r.returncode == 0
    procs = [subprocess.Popen(ihdm_cmd("sample", "config/test.yaml", "--checkpoint",
                                       str(tmp_path / "m" / "final.pt"), "--n", "6", "--seed", str(seed),
                                       "--out", str(tmp_path / f"s{i}.npz")),
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
             for i, seed in enumerate([7, 7, 8])]  # side by side: independent processes
    outs = []
    for i, proc in enumerate(procs):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        with np.load(tmp_path / f"s{i}.npz") as z:
            outs.append(z["images"])
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])
