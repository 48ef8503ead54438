"""Training IHDM and the DDPM baseline.

Retry-safe: only final.pt is declared as output. `ihdm train` keeps its checkpoints in
DIR/checkpoints/ (and its loss log in DIR/log.csv), which Snakemake neither knows nor
deletes when a job fails; a rerun or a retry (`retries:` in the SLURM profile) resumes
from the latest checkpoint instead of starting again.

A rerun because the params changed (a key that shapes the weights, the training code, the
torch threads) starts from scratch: `--on-change restart` moves checkpoints made by other
settings, data or code to DIR/superseded/<time>/ (and logs why). A checkpoint made by the
same ones resumes, also after a longer train.steps.
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
    # train.threads per process (1 by default), times the processes;
    # train.processes > 1: that many data-parallel processes (and GPUs) in the job.
    threads: TRAIN_THREADS
    resources:
        gpu=GPU * TRAIN_PROCESSES,
        mem_mb=8000,
        runtime=720,
    params:
        config=CONFIG_FILE,
        out_dir=out_dir,
        overrides="",
        settings=lambda wildcards: train_settings(wildcards.model),
        code=model_code("train"),
        # a function of threads, so not recorded by Snakemake: `settings` holds the count
        # where it changes the weights (not with device cuda)
        torch_threads=lambda wildcards, threads: torch_threads("train"),
    shell:
        "ihdm train {params.config:q} --model {wildcards.model} --data {input.data:q}"
        " --out {params.out_dir:q} {params.overrides}"
        " --set train.threads={params.torch_threads} --on-change restart > {log:q} 2>&1"
