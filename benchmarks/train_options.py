"""Training speed of the real training loop (`ihdm train`) under each speed option, one
after another on the same machine: fp32 eager (the reference), bf16 autocast
(train.cpu_bf16 on the CPU, always on CUDA), channels-last memory format and
torch.compile. Images/s is the median of log.csv's rows after the first `--skip` steps
(torch.compile's compilation and the warm-up stay out of it).

    python benchmarks/train_options.py --steps 300 --out results/bench/train_options.json
    python benchmarks/train_options.py --config config/paper/cifar10.yaml --set device=cuda

Prints a table with each option's images/s and its ratio to fp32 eager.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ihdm import provenance
from ihdm.config import load_config

OPTIONS = {
    # name: overrides on top of the config (cpu_bf16 only acts on the CPU; CUDA runs bf16
    # when train.mixed_precision is true)
    "fp32 eager": ["train.cpu_bf16=false", "train.mixed_precision=false"],
    "bf16 eager": ["train.cpu_bf16=true", "train.mixed_precision=true"],
    "bf16 channels-last": ["train.cpu_bf16=true", "train.mixed_precision=true",
                           "train.channels_last=true"],
    "bf16 compile": ["train.cpu_bf16=true", "train.mixed_precision=true", "train.compile=true"],
    "fp32 compile": ["train.cpu_bf16=false", "train.mixed_precision=false", "train.compile=true"],
}


def measure(config: str, data: str, sets: list[str], steps: int, skip: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "ihdm.cli", "train", config, "--model", "ihdm", "--data", data,
           "--out", str(out), "--quiet"]
    for s in [f"train.steps={steps}", "train.log_every=25", f"train.checkpoint_every={steps}", *sets]:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    rows = list(csv.DictReader(open(out / "log.csv")))
    ips = [float(r["images_per_s"]) for r in rows if int(r["step"]) > skip]
    return {"images_per_s": statistics.median(ips), "wall_s": wall, "rows": len(ips)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--data", help="prepared training images (default: the workflow's for --config)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--skip", type=int, default=50, help="steps left out of the median")
    ap.add_argument("--set", action="append", default=[], help="extra override for every run")
    ap.add_argument("--options", nargs="+", choices=list(OPTIONS), default=list(OPTIONS))
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    if args.data is None:
        args.data = f"{provenance.prepared_data_dir(load_config(args.config))}/train.npz"
    if not Path(args.data).exists():
        sys.exit(f"no prepared data at {args.data}: run `ihdm prepare` (or `make run`) first")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(args.options):
            results[name] = measure(args.config, args.data, OPTIONS[name] + args.set,
                                    args.steps, args.skip, Path(tmp) / str(i))
            print(f"  {name}: {results[name]}", file=sys.stderr, flush=True)
    ref = results.get("fp32 eager", {}).get("images_per_s")
    print(f"{'option':22} {'images/s':>10} {'vs fp32 eager':>14}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:22} failed: {r['error']}")
            continue
        ratio = f"{r['images_per_s'] / ref:.2f}×" if ref else "-"
        print(f"{name:22} {r['images_per_s']:10.1f} {ratio:>14}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"config": args.config, "sets": args.set,
                                              "steps": args.steps, "results": results}, indent=2))


if __name__ == "__main__":
    main()
