"""The paper's protocol in the tables and figures: the paper-vs-ours table, the δ sweep's
table column and figure."""

import csv
import json

import pytest

from ihdm import paper
from ihdm.cli import main
from ihdm.config import load_config
from ihdm.io import InputFileError, collect_metrics


def _record(tmp_path, name, metric, model, values, **cfg_overrides):
    cfg = load_config(None, [f"{k}={v}" for k, v in cfg_overrides.items()])
    meta = {"model": model, "step": 1000, "train_precision": "bf16", "precision": "fp32",
            "sampler": "DDPM ancestral, all T=1000 steps" if model == "ddpm" else "IHDM, K=200 levels, δ=0.013"}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"metric": metric, "model": model, **values, "sample_meta": meta,
                                "config": cfg}))
    return path


def test_paper_table_puts_the_papers_values_beside_ours_with_the_protocol(tmp_path) -> None:
    cifar = {"experiment": "paper_cifar10", "data.dataset": "cifar10", "data.resolution": 32,
             "data.channels": 3}
    files = [
        _record(tmp_path, "ihdm_fid", "fid", "ihdm",
                {"fid": 21.5, "n_samples": 50000, "n_reference": 50000, "reference_split": "train"}, **cifar),
        _record(tmp_path, "ddpm_fid", "fid", "ddpm",
                {"fid": 3.4, "n_samples": 50000, "n_reference": 50000, "reference_split": "train"}, **cifar),
        _record(tmp_path, "ddpm_nll", "nll", "ddpm",
                {"bpd_discrete": 3.8, "bpd_dequantised": 5.9, "n_images": 10000}, **cifar),
        _record(tmp_path, "memo", "memorization", "ihdm", {"ratio_of_medians": 1.2}, **cifar),
    ]
    out = tmp_path / "paper.csv"
    assert main(["compare", "config/test.yaml", "--out", str(out), *map(str, files)]) == 0
    rows = {(r["model"], r["quantity"]): r for r in csv.DictReader(out.open())}
    assert set(rows) == {("ihdm", "fid"), ("ddpm", "fid"), ("ddpm", "bpd_discrete"), ("ddpm", "bpd_dequantised")}
    fid = rows[("ihdm", "fid")]
    assert float(fid["paper"]) == 18.96 and float(fid["this_run"]) == 21.5
    assert fid["reference"] == "train split, 50000 images" and fid["n_samples"] == "50000"
    assert fid["sampler"].startswith("IHDM") and fid["train_precision"] == "bf16"
    assert fid["config"] == "config/test.yaml"
    assert rows[("ddpm", "fid")]["sampler"] == "DDPM ancestral, all T=1000 steps"
    # Ho et al.'s bits/dim is the discrete estimator's: no paper value for the dequantised one
    assert float(rows[("ddpm", "bpd_discrete")]["paper"]) == 3.75
    assert rows[("ddpm", "bpd_dequantised")]["paper"] == ""
    assert "authors' protocol" in rows[("ddpm", "bpd_dequantised")]["measured_as"]
    # the embedded default's data set has no published value: the column stays empty
    digits = _record(tmp_path, "digits", "domain", "ihdm", {"fd": 80.0, "n": 500, "n_reference": 10000})
    (row,) = paper.comparison_rows([digits], "config/config.yaml")
    assert row["paper"] is None and row["reference"] == "test split, 10000 images"
    with pytest.raises(InputFileError, match="none of the metric files"):
        paper.comparison_rows([files[3]], "c.yaml")


def test_delta_sweep_table_and_figure_mark_the_best_delta(tmp_path) -> None:
    files = []
    for delta, fd in [(0.01, 50.0), (0.0125, 42.0), (0.02, 47.0)]:
        files.append(_record(tmp_path, f"d{delta}", "domain", "ihdm", {"fd": fd}, **{"heat.delta": delta}))
    table = tmp_path / "delta.csv"
    rows = collect_metrics(files, table, keys=("heat.delta",))
    assert [r["heat.delta"] for r in rows] == [0.01, 0.0125, 0.02]
    # as the workflow's delta_table rule calls it: the key option, then the files
    assert main(["collect", "config/test.yaml", "--out", str(table), "--key", "heat.delta", *map(str, files)]) == 0
    assert [r["heat.delta"] for r in csv.DictReader(table.open())] == ["0.01", "0.0125", "0.02"]
    from ihdm import plots

    best = plots.delta_sweep_figure(list(csv.DictReader(table.open())), tmp_path / "fig", metric="fd")
    assert best == {"ihdm": (0.0125, 42.0)}
    assert (tmp_path / "fig.png").stat().st_size > 0 and (tmp_path / "fig.pdf").is_file()
    assert main(["plot", "delta-sweep", str(table), "--out", str(tmp_path / "cli"), "--metric", "fd"]) == 0
    assert main(["plot", "delta-sweep", str(table), "--out", str(tmp_path / "bad"), "--metric", "fid"]) == 2
