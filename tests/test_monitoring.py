"""Watching a training run: progress lines in log files, a bar on a terminal, TensorBoard
scalars and sample grids, HTML tables for the report."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
IHDM = str(Path(sys.executable).parent / "ihdm")
PROGRESS = re.compile(r"step (\d+)/(\d+) \(([\d.]+)%\) loss ([\d.e+-]+) images/s (\d+) ETA (\d+:\d\d:\d\d)")


def _train_cmd(data: Path, out: Path, *sets: str) -> list[str]:
    return [IHDM, "train", str(REPO / "config" / "test.yaml"), "--model", "ihdm", "--data", str(data),
            "--out", str(out), "--set", "train.threads=1", *(a for s in sets for a in ("--set", s))]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}


def test_log_file_gets_progress_lines_without_carriage_returns(mnist_npz: Path, tmp_path: Path) -> None:
    log = tmp_path / "train.out"
    with open(log, "w") as fh:
        subprocess.run(_train_cmd(mnist_npz, tmp_path / "run", "train.progress_every_s=0"),
                       stdout=fh, stderr=subprocess.STDOUT, env=_env(), timeout=300, check=True)
    text = log.read_text()
    assert "\r" not in text and "it/s" not in text  # no tqdm bar in a file
    found = [m.groups() for m in PROGRESS.finditer(text)]
    # one line per logged step (log_every 5 of 20 steps), the last one at 100% with ETA 0
    assert [int(g[0]) for g in found] == [5, 10, 15, 20], text
    assert found[-1][2] == "100.0" and found[-1][5] == "0:00:00"
    assert all(int(g[1]) == 20 and float(g[3]) > 0 for g in found)
    # the same lines in the training folder's own log
    assert len(PROGRESS.findall((tmp_path / "run" / "train.log").read_text())) == 4
    # the default every 60 s: only the last step in a run of seconds
    log2 = tmp_path / "train2.out"
    with open(log2, "w") as fh:
        subprocess.run(_train_cmd(mnist_npz, tmp_path / "run2"), stdout=fh, stderr=subprocess.STDOUT,
                       env=_env(), timeout=300, check=True)
    assert [int(m.group(1)) for m in PROGRESS.finditer(log2.read_text())] == [20]


def test_terminal_gets_a_progress_bar(mnist_npz: Path, tmp_path: Path) -> None:
    """On a terminal (a pseudo-terminal here) tqdm draws its bar and no progress lines."""
    master, slave = pty.openpty()
    # an 80-column terminal (a new pseudo-terminal has 0 columns, where tqdm draws nothing)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(_train_cmd(mnist_npz, tmp_path / "run", "train.progress_every_s=0"),
                            stdout=slave, stderr=slave, env=_env())
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the terminal closed: the process ended
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=300) == 0
    os.close(master)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "train ihdm" in screen and "20/20" in screen and "\r" in screen
    assert not PROGRESS.search(screen)


def test_tensorboard_scalars_and_samples_leave_the_weights_alone(mnist_npz: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for name, on in (("plain", "false"), ("board", "true")):
        subprocess.run(_train_cmd(mnist_npz, tmp_path / name, f"train.tensorboard={on}"),
                       capture_output=True, env=_env(), timeout=300, check=True)
    assert not (tmp_path / "plain" / "tensorboard").exists()
    events = EventAccumulator(str(tmp_path / "board" / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    assert set(tags["scalars"]) == {"train/loss", "train/lr", "train/images_per_s"}
    assert [e.step for e in events.Scalars("train/loss")] == [5, 10, 15, 20]
    # a sample grid at each checkpoint (checkpoint_every 10 of 20 steps)
    assert [e.step for e in events.Images("samples")] == [10, 20]
    grid = events.Images("samples")[0]
    assert grid.width == grid.height == 4 * (28 + 2) + 2  # 4 x 4 samples, 2 px apart
    plain = torch.load(tmp_path / "plain" / "final.pt", weights_only=True)
    board = torch.load(tmp_path / "board" / "final.pt", weights_only=True)
    for key in plain["net"]:
        assert torch.equal(plain["net"][key], board["net"][key]), key


def test_table_pages(tmp_path: Path) -> None:
    from ihdm.tables import TableError, write_page

    log = tmp_path / "log.csv"
    log.write_text("step,loss\n" + "".join(f"{s},{1 / s:.4f}\n" for s in range(1, 101)))
    cfg = tmp_path / "config.yaml"
    cfg.write_text("experiment: x\ntrain: {steps: 5, lr: 0.001}\nunet: {channel_mult: [1, 2]}\n")
    page = write_page(tmp_path / "out" / "page.html", "Run <1>", [log, cfg], rows=5,
                      names=["loss", "config"]).read_text()
    assert "<title>Run &lt;1&gt;</title>" in page
    steps = re.findall(r"<tr><td>(\d+)</td><td>[\d.]+</td></tr>", page)
    assert steps == ["1", "26", "51", "75", "100"]  # evenly spaced, first and last kept
    assert "<td>train.steps</td><td>5</td>" in page and "<td>unet.channel_mult</td><td>[1, 2]</td>" in page
    (tmp_path / "list.yaml").write_text("- 1\n")
    for bad, message in ((tmp_path / "list.yaml", "not a YAML mapping"), (tmp_path / "x.txt", "needs a .csv")):
        bad.touch()
        with pytest.raises(TableError, match=message):
            write_page(tmp_path / "p.html", "t", [bad])
