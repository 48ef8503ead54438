"""Fault injection, training side: a resume after something that shapes the weights
changed (a config key, the training images, the code, the thread count, a shorter run)
is refused with the differences and leaves every file as it was; a change that does not
shape the weights resumes; --on-change restart sets the old run aside (nothing deleted),
--on-change resume records what differed. Each row of CASES is one scenario of issue 13."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ihdm.cli import main
from ihdm.data import array_sha256, load_images, save_images

from conftest import REPO

BASE = ["train", str(REPO / "config" / "test.yaml"), "--model", "ihdm", "--quiet",
        "--set", "train.threads=1", "--set", "train.checkpoint_every=5"]


def digest_tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in ("train.log", ".lock")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_npz) -> Path:
    """IHDM on config/test.yaml, 10 steps, checkpoints at 5 and 10 (one thread)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main([*BASE, "--data", str(mnist_npz), "--out", str(out), "--steps", "10"]) == 0
    torch.set_num_threads(1)
    return out


@pytest.fixture
def run_dir(trained, tmp_path) -> Path:
    import shutil

    dest = tmp_path / "run"
    shutil.copytree(trained, dest)
    return dest


def other_data(mnist_npz: Path, tmp_path: Path) -> Path:
    images, labels = load_images(mnist_npz)
    path = tmp_path / "other.npz"
    save_images(path, images[::-1].copy(), labels[::-1].copy())  # same digits, another order
    return path


def tamper_code_record(run: Path) -> None:
    """The checkpoints as an earlier version of the loss would have written them."""
    for path in (run / "checkpoints").glob("*.pt"):
        state = torch.load(path, weights_only=True)
        state["provenance"]["code"]["modules"]["ihdm.inverse_heat"] = "0" * 64
        torch.save(state, path)


# id: (extra arguments, setup, exit status, text in stderr or train.log)
CASES = {
    "heat.K changed": (["--set", "heat.K=6"], None, 2, "config heat.K: 5 -> 6"),
    "lr changed": (["--set", "train.lr=0.002"], None, 2, "config train.lr: 0.001 -> 0.002"),
    "unet changed": (["--set", "unet.channels=12"], None, 2, "config unet.channels: 8 -> 12"),
    "other training data": ([], "data", 2, "training images: sha256"),
    "loss code changed": ([], "code", 2, "code of `ihdm train`: ihdm/inverse_heat.py"),
    "thread count changed": (["--set", "train.threads=2"], None, 2, "torch threads: 1 -> 2"),
    "train.steps below the checkpoint": (["--steps", "3"], None, 2, "below the checkpoint's step 10"),
    "another model's folder": (["--model", "ddpm"], None, 2, "holds checkpoints of model 'ihdm'"),
    "negative --steps": (["--steps", "-5"], None, 2, "train.steps': -5 is less than the minimum"),
    "sampling-only key (heat.delta)": (["--set", "heat.delta=0.02"], None, 0, "resuming from checkpoint"),
    "longer train.steps extends": (["--steps", "15"], None, 0, "at step 10"),
    "--on-change restart": (["--set", "heat.K=6", "--on-change", "restart"], None, 0,
                            "training from scratch"),
    "--on-change resume": (["--set", "heat.K=6", "--on-change", "resume"], None, 0,
                           "resuming .* although it differs"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_resume_after_a_change(case, run_dir, mnist_npz, tmp_path, capsys):
    extra, setup, status, text = CASES[case]
    data = mnist_npz
    if setup == "data":
        data = other_data(mnist_npz, tmp_path)
    elif setup == "code":
        tamper_code_record(run_dir)
    before = digest_tree(run_dir)
    args = [*BASE, "--data", str(data), "--out", str(run_dir)]
    if "--model" in extra:
        args[args.index("--model") + 1] = extra[1]
        extra = []
    if "--steps" not in extra:
        extra = [*extra, "--steps", "10"]
    try:
        assert main([*args, *extra]) == status
    finally:
        torch.set_num_threads(1)
    import re

    said = capsys.readouterr().err + (run_dir / "train.log").read_text()
    assert re.search(text, said), said[-3000:]
    final = run_dir / "final.pt"
    if status == 2:  # refused: every file as it was, one message, no traceback
        assert digest_tree(run_dir) == before
        assert "Traceback" not in said
        return
    state = torch.load(final, weights_only=True)
    if case == "--on-change restart":
        aside = list((run_dir / "superseded").iterdir())
        assert len(aside) == 1
        assert digest_tree(aside[0]) == before  # the same files, byte for byte
        assert state["provenance"]["config"]["heat.K"] == 6 and state["history"] == []
        assert state["step"] == 10
    elif case == "--on-change resume":
        assert state["history"] == [{"step": 10, "differences": ["config heat.K: 5 -> 6"]}]
    elif case == "longer train.steps extends":
        assert state["step"] == 15
        steps = [int(r.split(",")[0]) for r in (run_dir / "log.csv").read_text().splitlines()[1:]]
        assert steps == sorted(set(steps)) and steps[-1] == 15


def test_every_checkpoint_records_what_made_it(trained, mnist_npz):
    from ihdm import provenance
    from ihdm.config import load_config

    cfg = load_config(REPO / "config" / "test.yaml", ["train.threads=1"])
    for path in [*sorted((trained / "checkpoints").glob("*.pt")), trained / "final.pt"]:
        record = torch.load(path, weights_only=True)["provenance"]
        assert record["config"] == provenance.training_config(cfg, "ihdm")
        assert record["data_sha256"] == array_sha256(load_images(mnist_npz)[0])
        assert record["code"] == provenance.code_record("train", "ihdm")
        assert record["device"] == "cpu" and record["threads"] == 1


# --------------------------------------------------------------------------- processes
def ihdm(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "ihdm.cli", *args], cwd=REPO, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, **kw)


def wait_for_rows(log_csv: Path, rows: int, proc) -> None:
    deadline = time.time() + 240
    while not (log_csv.exists() and len(log_csv.read_text().splitlines()) > rows):
        if proc.poll() is not None:
            pytest.fail(f"training stopped with status {proc.returncode}: {proc.stderr.read()[-2000:]}")
        assert time.time() < deadline, "training made no progress"
        time.sleep(0.05)


def test_second_trainer_is_refused_and_sigint_checkpoints(tmp_path, mnist_npz):
    """While one `ihdm train` runs in a folder a second one is refused (exit 2, naming the
    holder); Ctrl-C (SIGINT) stops the first after the step in progress with a checkpoint
    and exit status 130; a lock left by a SIGKILLed trainer is taken over."""
    out = tmp_path / "run"
    args = [*BASE[:2], "--model", "ddpm", "--quiet", "--set", "train.threads=1",
            "--data", str(mnist_npz), "--out", str(out), "--set", "train.log_every=1"]
    first = ihdm(*args, "--steps", "1000000", "--set", "train.checkpoint_every=1000000")
    wait_for_rows(out / "log.csv", 3, first)
    second = ihdm(*args, "--steps", "5")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2, err
    assert "is in use by another `ihdm train` (pid" in err and "Traceback" not in err

    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert "stopped by SIGINT after step" in err and "Traceback" not in err
    done = int(err.split("after step ")[1].split()[0])
    assert [p.name for p in (out / "checkpoints").glob("*.pt")] == [f"step_{done:08d}.pt"]

    killed = ihdm(*args, "--steps", "1000000", "--set", "train.checkpoint_every=1000000")
    wait_for_rows(out / "log.csv", done + 2, killed)
    killed.kill()
    killed.wait()
    assert "pid" in (out / ".lock").read_text()  # left behind by the killed trainer
    again = ihdm(*args, "--steps", str(done + 2), "--set", "train.checkpoint_every=1000000")
    _, err = again.communicate(timeout=240)
    assert again.returncode == 0, err
    log = (out / "train.log").read_text()
    assert "took over the lock" in log and f"at step {done}" in log
    # the rows the killed run logged past the checkpoint are not duplicated
    steps = [int(r.split(",")[0]) for r in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, done + 3))
