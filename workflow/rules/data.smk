"""The prepared data splits (uint8 arrays), shared by the experiments with the same data
set and resolution."""


rule prepare:
    output:
        f"{DATA_DIR}/{{split}}.npz",
    log:
        f"{RESULTS}/logs/prepare/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare/{{split}}.tsv"
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        config=CONFIG_FILE,
        settings=lambda wildcards: data_settings(wildcards.split),
    shell:
        "ihdm prepare {params.config:q} --split {wildcards.split} --out {output:q}"
        " > {log:q} 2>&1"
