"""The prepared data splits (uint8 arrays), shared by the experiments with the same data
keys (DATA_DIR holds their digest): the rule reads no experiment's config (its data keys
come with --set) and keeps its log and benchmark beside the data."""


rule prepare:
    output:
        f"{DATA_DIR}/{{split}}.npz",
    log:
        f"{DATA_DIR}/logs/prepare_{{split}}.log",
    benchmark:
        f"{DATA_DIR}/benchmarks/prepare_{{split}}.tsv"
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        config=PREPARE_CONFIG,
        data=lambda wildcards: prepare_options(wildcards.split),
        code=code("prepare"),
    shell:
        "ihdm prepare {params.config:q} {params.data} --split {wildcards.split}"
        " --out {output:q} > {log:q} 2>&1"
