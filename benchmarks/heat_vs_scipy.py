"""The heat operator against scipy's DCT route, two methods only, in long steady blocks.

    python benchmarks/heat_vs_scipy.py [--sizes 28 32 128] [--rounds 8] [--block 0.5]

`ihdm bench` interleaves four to six methods in 20 ms blocks, so each block starts right
after another library's work (torch's OpenMP threads may still be spinning when scipy's
workers start). This is the stricter comparison: ours (HeatOperator.blur, auto route) and
scipy (dctn, per-image decay, idctn; float32, workers=-1) take turns, each round a pause
(50 ms: spinning threads go to sleep), one untimed call, then back-to-back calls for
`--block` seconds. Prints images/s (median over rounds) and the ratio per size. Batch:
128 x 3 images, one random level of K = 200 each, the paper's sigma_max per size.
"""

import argparse
import time

import numpy as np
import torch

from ihdm.bench import HEAT_K, PAPER_SIGMA_MAX, _decay_factors, scipy_heat
from ihdm.heat import HeatOperator, blur_schedule, blur_times


def steady_rate(fn, block_s: float) -> float:
    fn()
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < block_s:
        fn()
        count += 1
    return (time.perf_counter() - t0) / count


def compare(size: int, rounds: int, block_s: float, batch: int = 128, channels: int = 3) -> dict:
    times = blur_times(blur_schedule(HEAT_K, 0.5, PAPER_SIGMA_MAX.get(size, 24.0 * size / 32)))
    rng = np.random.default_rng(0)
    u_np = rng.uniform(size=(batch, channels, size, size)).astype(np.float32)
    k_np = rng.integers(1, HEAT_K + 1, size=batch)
    u, k = torch.from_numpy(u_np), torch.from_numpy(k_np)
    op = HeatOperator(times, size, size)
    decay = _decay_factors(size, times).astype(np.float32)

    def scipy_route():
        return scipy_heat(u_np, decay[k_np][:, None, :, None] * decay[k_np][:, None, None, :])

    fns = {"ours": lambda: op.blur(u, k), "scipy": scipy_route}
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(0.05)
            seconds[name].append(steady_rate(fn, block_s))
    rates = {name: batch / float(np.median(s)) for name, s in seconds.items()}
    return {"size": size, "route": op.route, **rates, "ratio": rates["ours"] / rates["scipy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 32, 128])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--block", type=float, default=0.5, help="seconds per timed block")
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}; images/s, median of {args.rounds} rounds")
    print(f"{'size':>4} {'route':6} {'ours':>10} {'scipy':>10} {'ours/scipy':>10}")
    for size in args.sizes:
        r = compare(size, args.rounds, args.block)
        print(f"{size:>4} {r['route']:6} {r['ours']:>10.0f} {r['scipy']:>10.0f} {r['ratio']:>9.2f}x",
              flush=True)


if __name__ == "__main__":
    main()
