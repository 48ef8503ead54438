"""The paper's reported numbers beside this run's, each row with the protocol that made it.

``PAPER_VALUES`` holds only numbers with a stated source; a data set or quantity without
one gets an empty paper column. Quantities: ``fid`` (clean-fid Inception FID), ``fd``
(Fréchet distance in the offline domain classifier's features: no published counterpart),
``bpd_dequantised`` (uniformly dequantised data, continuous Gaussian L_0 with std δ:
the IHDM authors' NLL protocol) and ``bpd_discrete`` (256-bin discretised L_0 on the
data as it is: Ho et al.'s protocol for DDPM, this project's default).
"""

from __future__ import annotations

from pathlib import Path

from .io import InputFileError, read_metric_file, write_csv

# (data.dataset, data.resolution, model, quantity) -> (value, source)
PAPER_VALUES: dict[tuple[str, int, str, str], tuple[float, str]] = {
    ("cifar10", 32, "ihdm", "fid"): (18.96, "Rissanen et al. 2023, as recalled in NOTES §3 (verify)"),
    ("lsun_church", 128, "ihdm", "fid"): (45.0, "Rissanen et al. 2023, 'about 45', NOTES §3 (verify)"),
    ("cifar10", 32, "ddpm", "fid"): (3.17, "Ho et al. 2020, Table 1 (L_simple)"),
    ("cifar10", 32, "ddpm", "bpd_discrete"): (3.75, "Ho et al. 2020, Table 1 (L_simple, ≤)"),
}

QUANTITIES = {  # quantity: (metric file, key in it, how it was measured)
    "fid": ("fid", "fid", "clean-fid FID (Inception, 'clean' resize)"),
    "fd": ("domain", "fd", "domain FD (offline classifier features; no published counterpart)"),
    "bpd_dequantised": ("nll", "bpd_dequantised",
                        "bits/dim, dequantised data + Gaussian L_0 (the IHDM authors' protocol)"),
    "bpd_discrete": ("nll", "bpd_discrete",
                     "bits/dim, 256-bin discretised L_0 (Ho et al.'s protocol for DDPM; ours)"),
}

COLUMNS = ("experiment", "dataset", "resolution", "model", "quantity", "measured_as", "this_run",
           "paper", "paper_source", "reference", "n_samples", "sampler", "train_precision",
           "sample_precision", "step", "config")


def comparison_rows(metric_files: list[str | Path], config_path: str | Path) -> list[dict]:
    """One row per (model, quantity) found in ``metric_files`` (the metric JSONs of
    ``ihdm evaluate``: fid, domain, nll), with the paper's value where one is known."""
    rows = []
    for path in map(Path, metric_files):
        record = read_metric_file(path)
        metric, cfg = record.get("metric"), record.get("config") or {}
        if not cfg:
            raise InputFileError(f"metric file '{path}' has no config record")
        data, meta = cfg["data"], record.get("sample_meta") or {}
        model = record.get("model") or meta.get("model")
        for quantity, (source_metric, key, measured_as) in QUANTITIES.items():
            if source_metric != metric or record.get(key) is None:
                continue
            paper = PAPER_VALUES.get((data["dataset"], data["resolution"], model, quantity))
            row = {
                "experiment": cfg.get("experiment"), "dataset": data["dataset"],
                "resolution": data["resolution"], "model": model, "quantity": quantity,
                "measured_as": measured_as, "this_run": record[key],
                "paper": paper[0] if paper else None, "paper_source": paper[1] if paper else None,
                "train_precision": meta.get("train_precision"), "step": meta.get("step"),
                "config": str(config_path),
            }
            if metric == "nll":
                row.update(n_samples=record.get("n_images"), reference="test split",
                           sampler=None, sample_precision="fp32")
            else:
                split = record.get("reference_split", "test")
                row.update(reference=f"{split} split, {record.get('n_reference')} images",
                           n_samples=record.get("n_samples", record.get("n")),
                           sampler=meta.get("sampler"), sample_precision=meta.get("precision"))
            rows.append(row)
    if not rows:
        raise InputFileError("none of the metric files holds FID, domain FD or bits/dim: "
                             + ", ".join(map(str, metric_files)))
    return rows


def write_comparison(metric_files: list[str | Path], config_path: str | Path, out_csv: str | Path) -> list[dict]:
    return write_csv(out_csv, comparison_rows(metric_files, config_path), COLUMNS)
