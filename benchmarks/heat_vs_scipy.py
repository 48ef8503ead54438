"""The heat operator against scipy's DCT route, two methods only, in two regimes.

    python benchmarks/heat_vs_scipy.py [--sizes 28 32 128] [--rounds 8] [--block 0.5]
                                       [--in-training 40]

`ihdm bench` interleaves four to six methods in 20 ms blocks, so each block starts right
after another library's work (torch's OpenMP threads may still be spinning when scipy's
workers start). This is the stricter comparison: ours (HeatOperator.blur, auto route) and
scipy (dctn, per-image decay, idctn; float32, workers=-1) take turns, each round a pause
(50 ms: spinning threads go to sleep), one untimed call, then back-to-back calls for
`--block` seconds. Prints images/s (median over rounds) and the ratio per size. Batch:
128 x 3 images, one random level of K = 200 each, the paper's sigma_max per size.

The steady state is not how the operator runs: training calls it once per step, between
the network's forward and backward passes. With `--in-training N` each of N timed calls
per method follows one forward and backward pass of the default config's U-Net (batch 8,
untimed), as in a training step, and the two methods alternate call by call.
"""

import argparse
import time

import numpy as np
import torch

from ihdm.bench import heat_batch, scipy_at_levels
from ihdm.config import load_config
from ihdm.heat import HeatOperator, mode_decay
from ihdm.unet import build_unet


def steady_rate(fn, block_s: float) -> float:
    fn()
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < block_s:
        fn()
        count += 1
    return (time.perf_counter() - t0) / count


def training_work() -> callable:
    """One forward and backward pass of the default U-Net on 8 images: the torch work that
    runs between two heat calls in training."""
    cfg = load_config()
    net = build_unet(cfg)
    res, ch = cfg["data"]["resolution"], cfg["data"]["channels"]
    x = torch.randn(8, ch, res, res)
    t = torch.randint(0, cfg["heat"]["K"], (8,))

    def work():
        net.zero_grad(set_to_none=True)
        net(x, t).square().mean().backward()
    return work


def compare(size: int, rounds: int, block_s: float, in_training: int = 0, work=None,
            batch: int = 128, channels: int = 3) -> dict:
    times, u_np, k_np = heat_batch(size, batch, channels)
    u, k = torch.from_numpy(u_np), torch.from_numpy(k_np)
    op = HeatOperator(times, size, size)
    decay = mode_decay(times, size).astype(np.float32)
    fns = {"ours": lambda: op.blur(u, k), "scipy": lambda: scipy_at_levels(u_np, decay, k_np)}
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(0.05)
            seconds[name].append(steady_rate(fn, block_s))
    rates = {name: batch / float(np.median(s)) for name, s in seconds.items()}
    out = {"size": size, "route": op.route, **rates, "ratio": rates["ours"] / rates["scipy"]}
    if in_training:
        calls: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(in_training):
            for name, fn in fns.items():
                work()
                t0 = time.perf_counter()
                fn()
                calls[name].append(time.perf_counter() - t0)
        train_rates = {name: batch / float(np.median(s)) for name, s in calls.items()}
        out["in_training"] = {**train_rates, "ratio": train_rates["ours"] / train_rates["scipy"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 32, 128])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--block", type=float, default=0.5, help="seconds per timed block")
    parser.add_argument("--in-training", type=int, default=0, metavar="N",
                        help="also time N calls per method, each after a U-Net training pass")
    args = parser.parse_args()
    work = training_work() if args.in_training else None
    print(f"torch threads {torch.get_num_threads()}; images/s, median of {args.rounds} rounds"
          + (f" (steady) and of {args.in_training} calls (in training)" if work else ""))
    print(f"{'size':>4} {'route':6} {'regime':12} {'ours':>10} {'scipy':>10} {'ours/scipy':>10}")
    for size in args.sizes:
        r = compare(size, args.rounds, args.block, args.in_training, work)
        rows = [("steady", r)] + ([("in training", r["in_training"])] if work else [])
        for regime, x in rows:
            print(f"{size:>4} {r['route']:6} {regime:12} {x['ours']:>10.0f} {x['scipy']:>10.0f}"
                  f" {x['ratio']:>9.2f}x", flush=True)


if __name__ == "__main__":
    main()
