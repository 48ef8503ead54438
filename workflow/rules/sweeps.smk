"""Data efficiency: train on the first N training images (N in workflow.sweep_sizes) for
workflow.sweep_steps steps per model and seed, sample evaluate.n_samples images, and
score each point with the domain metric (digit data sets), FID (when evaluate.fid) and
memorisation; gathered into results/<exp>/sweep/data_efficiency.csv. The prepared data
is the full training split: data.train_size cuts it at training time. Every `ihdm`
command of a point gets the point's config through `--set` (sweep_overrides), so its
metric JSONs record train_size and seed."""


use rule train as sweep_train with:
    output:
        final=f"{SWEEP_POINT}/model/final.pt",
    log:
        f"{SWEEP_LOGS}/train.log",
    benchmark:
        f"{SWEEP_BENCHMARKS}/train.tsv"
    priority: 0
    params:
        overrides=sweep_overrides,
        settings=lambda wildcards: train_settings(wildcards.model, "sweep_train"),
        torch_threads=lambda wildcards, threads: torch_threads("sweep_train"),


use rule sample as sweep_sample with:
    input:
        checkpoint=f"{SWEEP_POINT}/model/final.pt",
        data=TRAIN_DATA,
    output:
        npz=f"{SWEEP_POINT}/samples.npz",
        grid=f"{SWEEP_POINT}/samples.png",
    log:
        f"{SWEEP_LOGS}/sample.log",
    benchmark:
        f"{SWEEP_BENCHMARKS}/sample.tsv"
    params:
        n=config["evaluate"]["n_samples"],
        variant="random",
        overrides=lambda wildcards: f"{sweep_overrides(wildcards)} {NO_TRAJECTORY}",
        settings=lambda wildcards: evaluation_sample_settings(wildcards.model),


use rule evaluate as sweep_evaluate with:
    input:
        unpack(sweep_metric_inputs),
    output:
        f"{SWEEP_POINT}/{{metric}}.json",
    log:
        f"{SWEEP_LOGS}/{{metric}}.log",
    benchmark:
        f"{SWEEP_BENCHMARKS}/{{metric}}.tsv"
    wildcard_constraints:
        metric=alternatives(SWEEP_METRICS),
    params:
        overrides=sweep_overrides,
        settings=lambda wildcards: metric_settings(wildcards, sweep=True),


# localrule: True is repeated: `use rule ... with:` does not inherit it (Snakemake 9.27).
use rule metrics_table as sweep_table with:
    input:
        sweep_metric_files(),
    output:
        report(
            "results/{exp}/sweep/data_efficiency.csv",
            caption="../report/data_efficiency.rst",
            category="Tables",
            labels={"table": "data efficiency (CSV)", "experiment": "{exp}"},
        ),
    log:
        "results/{exp}/logs/sweep/data_efficiency.log",
    benchmark:
        "results/{exp}/benchmarks/sweep/data_efficiency.tsv"
    localrule: True
