"""Training IHDM and the DDPM baseline.

Retry-safe: only final.pt is declared as output. `ihdm train` keeps its checkpoints in
DIR/checkpoints/ (and its loss log in DIR/log.csv), which Snakemake neither knows nor
deletes when a job fails; a rerun or a retry (`retries:` in the SLURM profile) resumes
from the latest checkpoint instead of starting again.
"""


rule train:
    input:
        data=TRAIN_DATA,
    output:
        final="results/{exp}/models/{model}/final.pt",
    log:
        "results/{exp}/logs/train/{model}.log",
    benchmark:
        "results/{exp}/benchmarks/train/{model}.tsv"
    # the main trainings are the longest jobs: start them first (sweep points get 0)
    priority: 10
    conda:
        "../envs/ihdm.yaml"
    # One torch thread per job by default: on a few cores, trainings side by side beat
    # one training on all cores (train.threads sets more; the SLURM profile sets 8).
    # train.processes > 1: that many data-parallel processes (and GPUs) in the job.
    threads: (config["train"]["threads"] or 1) * TRAIN_PROCESSES
    resources:
        gpu=GPU * TRAIN_PROCESSES,
        mem_mb=8000,
        runtime=720,
    params:
        config=CONFIG_FILE,
        out_dir=out_dir,
        overrides="",
        settings=lambda wildcards: model_settings(wildcards.model),
    shell:
        "ihdm train {params.config:q} --model {wildcards.model} --data {input.data:q}"
        " --out {params.out_dir:q} {params.overrides} > {log:q} 2>&1"
