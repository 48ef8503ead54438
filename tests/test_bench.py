"""``ihdm bench`` and the fast routes of the heat operator it measures."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import torch

from ihdm.bench import BenchError, PeakMemory, main_bench
from ihdm.config import load_config
from ihdm.heat import HeatOperator, blur_schedule, blur_times

REPO = Path(__file__).resolve().parents[1]


def scipy_heat(u: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Float64 reference: F(t_i) u_i through scipy's orthonormal DCT, one time per image."""
    H, W = u.shape[-2:]
    lam = (np.pi * np.arange(H)[:, None] / H) ** 2 + (np.pi * np.arange(W)[None, :] / W) ** 2
    coeffs = scipy.fft.dctn(u, norm="ortho", axes=(-2, -1))
    return scipy.fft.idctn(coeffs * np.exp(-t[:, None, None, None] * lam), norm="ortho", axes=(-2, -1))


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory):
    # one torch thread: on a shared 2-core machine, OpenMP barriers of 2 threads can stall
    # every small operation for a scheduler slice; main_bench restores the thread count
    cfg = load_config(REPO / "config" / "test.yaml", ["train.threads=1"])
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    threads = torch.get_num_threads()
    result = main_bench(cfg, out=out, quick=True, echo=False)
    assert torch.get_num_threads() == threads
    return cfg, out, result


def test_quick_bench_writes_every_section(quick_result):
    cfg, out, result = quick_result
    on_disk = json.loads(out.read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert {"machine", "heat", "train", "sample"} <= set(on_disk)
    m = on_disk["machine"]
    assert m["torch"] == torch.__version__ and m["torch_threads"] >= 1 and m["cpu_model"]

    heat = [r for r in on_disk["heat"] if r["device"] == "cpu"]
    assert [r["size"] for r in heat] == [28, 32, 64]
    for row in heat:
        assert {"ours_blur", "ours_pair", "scipy_dct", "dissipate"} <= set(row["methods"])
        for name, meth in row["methods"].items():
            assert meth["images_per_s"] > 0 and meth["median_s"] > 0, (row["size"], name)
            assert meth["max_abs_err"] < 1e-6, (row["size"], name, meth["max_abs_err"])
            assert meth["runs"] == 3
            assert meth["single_call_images_per_s"] > 0, (row["size"], name)

    nets = {r["network"]: r for r in on_disk["train"] if r["device"] == "cpu"}
    assert set(nets) == {"config", "paper_mnist", "paper_cifar10"}
    for r in nets.values():
        assert r["images_per_s"] > 0 and r["step_s"] > 0
        assert r["peak_memory_mb"] > 0 and r["memory_method"]
    assert nets["paper_cifar10"]["parameters"] > nets["paper_mnist"]["parameters"] > 1e7
    assert nets["config"]["parameters"] < 1e6

    samples = {r["model"]: r for r in on_disk["sample"] if r["device"] == "cpu"}
    assert set(samples) == {"ihdm", "ddpm_ddim"}
    assert samples["ihdm"]["network_evaluations"] == cfg["heat"]["K"]
    assert samples["ddpm_ddim"]["network_evaluations"] == cfg["ddpm"]["ddim_steps"]
    assert all(r["samples_per_s"] > 0 for r in samples.values())


def test_bench_prints_table(tmp_path, capsys):
    cfg = load_config(REPO / "config" / "test.yaml", ["train.threads=1"])
    main_bench(cfg, out=tmp_path / "b.json", quick=True, sections=["heat"], sizes=[16])
    text = capsys.readouterr().out
    assert "heat operator" in text and "scipy_dct" in text and "   16 " in text
    row = json.loads((tmp_path / "b.json").read_text())["heat"][0]["methods"]
    ratio = row["ours_blur"]["images_per_s"] / row["scipy_dct"]["images_per_s"]
    assert f"{ratio:.2f}x" in text  # the ours/scipy column
    assert set(json.loads((tmp_path / "b.json").read_text())) >= {"machine", "heat"}


def test_timing_blocks_give_the_time_per_call():
    """A steady run is a block of back-to-back calls lasting about block_s, reported per
    call; the single call before it is timed on its own."""
    import time

    from ihdm.bench import time_interleaved

    calls = {"a": 0, "b": 0}
    order = []

    def sleeper(name, s):
        def fn():
            calls[name] += 1
            if not order or order[-1] != name:
                order.append(name)
            time.sleep(s)
        return fn

    t = time_interleaved({"a": sleeper("a", 0.002), "b": sleeper("b", 0.01)}, rounds=3, warmup=1,
                         device=torch.device("cpu"), block_s=0.04)
    for name, s in (("a", 0.002), ("b", 0.01)):
        assert len(t[name]["wall"]) == len(t[name]["single"]) == 3
        assert all(s <= w < 3 * s for w in t[name]["wall"]), (name, t[name]["wall"])
    # per round: one single call and a block of about 0.04 s: 20 calls of a, 4 of b
    assert 3 * 11 <= calls["a"] <= 1 + 3 * 31 and 1 + 3 * 3 <= calls["b"] <= 1 + 3 * 6
    # warm-up a, b; then the rounds in rotated order: a b | b a | a b
    assert order == ["a", "b", "a", "b", "a", "b"], order
    plain = time_interleaved({"a": sleeper("a", 0.002)}, rounds=2, warmup=0, device=torch.device("cpu"))
    assert plain["a"]["wall"] == plain["a"]["single"]


def test_bad_section_is_refused():
    cfg = load_config(REPO / "config" / "test.yaml")
    with pytest.raises(BenchError, match="section"):
        main_bench(cfg, quick=True, sections=["heat", "speed"], echo=False)


def test_peak_memory_sees_torch_allocations():
    with PeakMemory(torch.device("cpu")) as mem:
        block = torch.ones(24 * 2**20)  # 96 MiB
        block += 1
    del block
    assert 80 < mem.delta_mb < 400, mem.delta_mb


# ----------------------------------------------------------------- heat operator routes
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_large_image_route_is_exact(dtype, tol):
    """The CPU route for large images (dct: scipy's fast DCT) against float64 scipy, for
    blur and blur_pair, on a non-square image."""
    times = blur_times(blur_schedule(200, 0.5, 64.0))
    op = HeatOperator(times, 96, 80, dtype=dtype, route="dct")
    assert op.route == "dct"
    rng = np.random.default_rng(0)
    u = rng.uniform(size=(12, 2, 96, 80))
    k = np.array([0, 1, 2, 40, 60, 80, 100, 120, 150, 180, 199, 200])
    blurred = op.blur(torch.tensor(u, dtype=dtype), torch.tensor(k)).double().numpy()
    assert np.abs(blurred - scipy_heat(u, times[k])).max() < tol
    kp = k[1:]
    a, b = op.blur_pair(torch.tensor(u[1:], dtype=dtype), torch.tensor(kp))
    assert np.abs(a.double().numpy() - scipy_heat(u[1:], times[kp])).max() < tol
    assert np.abs(b.double().numpy() - scipy_heat(u[1:], times[kp - 1])).max() < tol
    # one level for the whole batch (no grouping) and the dense route agree
    whole = op.blur(torch.tensor(u, dtype=dtype), 150).double().numpy()
    assert np.abs(whole - scipy_heat(u, np.full(12, times[150]))).max() < tol
    dense = HeatOperator(times, 96, 80, dtype=dtype, route="dense")
    assert np.abs(dense.blur(torch.tensor(u, dtype=dtype), torch.tensor(k)).double().numpy()
                  - blurred).max() < tol


def test_heat_operator_ignores_autocast():
    """The loss runs under bf16 autocast on CUDA: the operator must stay float32-exact."""
    times = blur_times(blur_schedule(50, 0.5, 20.0))
    op = HeatOperator(times, 32, 32)
    u = torch.rand(4, 3, 32, 32)
    k = torch.tensor([1, 10, 30, 50])
    plain = op.blur(u, k)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = op.blur(u, k)
        pair = op.blur_pair(u, k)
    assert auto.dtype == torch.float32 and torch.allclose(auto, plain, atol=1e-6)
    assert torch.allclose(pair[0], plain, atol=1e-6)


def test_route_choice_and_bad_route():
    times = blur_times(blur_schedule(10, 0.5, 20.0))
    assert HeatOperator(times, 32, 32).route == "dense"
    assert HeatOperator(times, 64, 64).route == "dense"
    assert HeatOperator(times, 128, 128).route == "dct"
    assert HeatOperator(times, 128, 128, device="meta").route == "dense"  # not a CPU
    with pytest.raises(ValueError, match="route"):
        HeatOperator(times, 32, 32, route="fft")
    with pytest.raises(ValueError, match="CPU only"):
        HeatOperator(times, 32, 32, device="meta", route="dct")


def test_devices_option(tmp_path):
    """--devices picks the devices; asking for CUDA without one is one clear error."""
    import subprocess
    import sys

    cfg = load_config(REPO / "config" / "test.yaml", ["train.threads=1"])
    result = main_bench(cfg, quick=True, sections=["heat"], sizes=[8], devices=["cpu"], echo=False)
    assert {r["device"] for r in result["heat"]} == {"cpu"}
    if torch.cuda.is_available():
        return
    with pytest.raises(BenchError, match="no CUDA device"):
        main_bench(cfg, quick=True, sections=["heat"], sizes=[8], devices=["cuda"], echo=False)
    r = subprocess.run([sys.executable, "-m", "ihdm.cli", "bench", "config/test.yaml", "--quick",
                        "--sections", "heat", "--devices", "cuda"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "ihdm bench: error: --devices cuda: torch sees no CUDA device on this machine"], r.stderr
