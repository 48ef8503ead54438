"""Quality per CPU minute of IHDM training: which default to ship (mnist5k, or the
CIFAR-10 JPEGs with --config config/cifar10_jpeg.yaml --sweep colour).

Trains each candidate setting for the same wall time (train.time_budget_min) with one
CPU thread per run (two runs side by side on a 2-core machine), samples from each and
scores the samples with the domain metric (Fréchet distance of digit-classifier features
against the real MNIST test set; lower is better) and the classifier's confident share.

    python benchmarks/quality_per_minute.py --minutes 7 [--sweep first|second|colour] [--config C]

Prints one row per candidate. Numbers are for the machine it runs on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CANDIDATES = {
    # name: overrides of config/config.yaml
    "c32-122_k50": ["unet.channels=32", "unet.channel_mult=[1,2,2]", "heat.K=50", "train.lr=0.0005"],
    "c16-124_k50": ["unet.channels=16", "unet.channel_mult=[1,2,4]", "heat.K=50", "train.lr=0.001"],
    "c16-124_k50_bf16": ["unet.channels=16", "unet.channel_mult=[1,2,4]", "heat.K=50", "train.lr=0.001",
                         "train.cpu_bf16=true"],
    "c24-124_k50_bf16": ["unet.channels=24", "unet.channel_mult=[1,2,4]", "heat.K=50", "train.lr=0.001",
                         "train.cpu_bf16=true"],
    "c16-124_k20_bf16": ["unet.channels=16", "unet.channel_mult=[1,2,4]", "heat.K=20", "train.lr=0.001",
                         "train.cpu_bf16=true"],
    "c16-124_k100_bf16": ["unet.channels=16", "unet.channel_mult=[1,2,4]", "heat.K=100", "train.lr=0.001",
                          "train.cpu_bf16=true"],
    # second sweep, around the default (16 x (1,2,4), K = 20, bf16, batch 64, lr 1e-3) and with
    # the EMA warm-up: batch size, learning rate, width, K
    "default": [],
    "bs32": ["train.batch_size=32"],
    "bs128": ["train.batch_size=128"],
    "lr2e-3": ["train.lr=0.002"],
    "lr5e-4": ["train.lr=0.0005"],
    "c24": ["unet.channels=24"],
    "k10": ["heat.K=10"],
    "k40": ["heat.K=40"],
}
SWEEPS = {"first": list(CANDIDATES)[:6], "second": list(CANDIDATES)[6:],
          # overrides of config/cifar10_jpeg.yaml: K and width at 32 px RGB
          "colour": ["default", "k10", "k40", "c24"]}


def run(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--minutes", type=float, default=6.0)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--work", default="results/bench/quality")
    p.add_argument("--only", nargs="*", help="candidates to run (default: the --sweep)")
    p.add_argument("--sweep", choices=list(SWEEPS), default="second")
    p.add_argument("--test-root", default=None)
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ihdm = [sys.executable, "-m", "ihdm.cli"]
    extra = ["--set", f"data.test_root={args.test_root}"] if args.test_root else []
    train_npz, test_npz, clf = work / "train.npz", work / "test.npz", work / "classifier.pt"
    if not clf.exists():
        subprocess.run(ihdm + ["prepare", args.config, "--split", "train", "--out", str(train_npz)], check=True)
        subprocess.run(ihdm + ["prepare", args.config, "--split", "test", "--out", str(test_npz)] + extra,
                       check=True)
        subprocess.run(ihdm + ["classifier", args.config, "--data", str(train_npz), "--test", str(test_npz),
                               "--out", str(clf)], check=True)
    names = args.only or SWEEPS[args.sweep]
    common = ["--set", "train.threads=1", "--set", f"train.time_budget_min={args.minutes}",
              "--set", "train.steps=1000000", "--set", "train.checkpoint_every=100000"]
    queue = [n for n in names if not (work / n / "final.pt").exists()]  # finished runs are kept
    running: dict[str, subprocess.Popen] = {}
    while queue or running:
        while queue and len(running) < args.parallel:
            name = queue.pop(0)
            sets = [x for s in CANDIDATES[name] for x in ("--set", s)]
            cmd = ihdm + ["train", args.config, "--model", "ihdm", "--data", str(train_npz),
                          "--out", str(work / name), "--quiet"] + sets + common
            running[name] = run(cmd, work / f"{name}.train.log")
        time.sleep(5)
        for name, proc in list(running.items()):
            if proc.poll() is not None:
                del running[name]
                if proc.returncode:
                    print(f"{name}: training failed, see {work / name}.train.log")
    rows = []
    for name in names:
        final = work / name / "final.pt"
        if not final.exists():
            continue
        samples = work / name / "samples.npz"
        t0 = time.perf_counter()
        # the candidate's overrides too: sampling refuses a config whose training keys differ
        sets = [x for s in CANDIDATES[name] for x in ("--set", s)]
        subprocess.run(ihdm + ["sample", args.config, "--checkpoint", str(final), "--n", str(args.n),
                               "--data", str(train_npz), "--out", str(samples), "--set", "sample.trajectory_frames=0"]
                       + sets, check=True, capture_output=True)
        sample_s = time.perf_counter() - t0
        metric = work / name / "domain.json"
        subprocess.run(ihdm + ["evaluate", args.config, "--metric", "domain", "--samples", str(samples),
                               "--classifier", str(clf), "--test", str(test_npz), "--out", str(metric)],
                       check=True, capture_output=True)
        m = json.loads(metric.read_text())
        steps = [line.split(",") for line in (work / name / "log.csv").read_text().splitlines()[1:]]
        last = steps[-1]
        row = {"candidate": name, "settings": CANDIDATES[name], "steps": int(last[0]),
               "images_per_s_1thread": float(last[3]), "fd": m["fd"],
               "confident_share": m["confident_share"], "class_histogram": m["class_histogram"],
               "sampling_s": round(sample_s, 1), "n": args.n}
        rows.append(row)
        print(f"{name:24s} steps {row['steps']:6d}  img/s {row['images_per_s_1thread']:6.1f}  "
              f"FD {row['fd']:8.2f}  confident {row['confident_share']:.3f}  sample {sample_s:.0f}s")
    (work / "quality.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
