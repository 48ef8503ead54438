"""Metrics per model, one JSON each (with the config that made it), gathered into
results/<exp>/tables/metrics.csv."""


rule classifier:
    input:
        data=TRAIN_DATA,
        test=TEST_DATA,
    output:
        "results/{exp}/classifier/classifier.pt",
    log:
        "results/{exp}/logs/classifier.log",
    benchmark:
        "results/{exp}/benchmarks/classifier.tsv"
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        gpu=GPU,
        mem_mb=4000,
        runtime=60,
    params:
        config=CONFIG_FILE,
        settings=settings(
            "seed",
            "evaluate.classifier_steps",
            "evaluate.classifier_width",
            "evaluate.classifier_blocks",
            "evaluate.classifier_flip",
        ),
        code=code("classifier"),
    shell:
        "ihdm classifier {params.config:q} --data {input.data:q} --test {input.test:q}"
        " --out {output:q} > {log:q} 2>&1"


rule fid_reference:
    input:
        FID_REFERENCE_DATA,
    output:
        FID_REFERENCE,
    log:
        "results/{exp}/logs/fid_reference.log",
    benchmark:
        "results/{exp}/benchmarks/fid_reference.tsv"
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=240,
    params:
        config=CONFIG_FILE,
        settings=settings("evaluate.fid_reference", "evaluate.inception_weights"),
        code=code("fid-reference"),
    shell:
        "ihdm fid-reference {params.config:q} --data {input:q} --out {output:q}"
        " > {log:q} 2>&1"


# One rule for every metric of a model: {metric} is a name of METRICS (common.smk),
# emergent_<variant> for the emergent one; inputs, settings and resources per metric.
rule evaluate:
    input:
        unpack(metric_inputs),
    output:
        "results/{exp}/metrics/{model}/{metric}.json",
    log:
        "results/{exp}/logs/evaluate/{model}_{metric}.log",
    benchmark:
        "results/{exp}/benchmarks/evaluate/{model}_{metric}.tsv"
    wildcard_constraints:
        metric=alternatives(METRIC_WILDCARDS),
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        gpu=metric_resource("gpu"),
        mem_mb=metric_resource("mem_mb"),
        runtime=metric_resource("runtime"),
    params:
        config=CONFIG_FILE,
        metric=lambda wildcards: metric_name(wildcards.metric),
        # a function of the inputs: not recorded in the params (the paths are the inputs)
        inputs=metric_options,
        overrides="",
        settings=metric_settings,
        code=model_code("evaluate"),
    shell:
        "ihdm evaluate {params.config:q} --metric {params.metric} {params.inputs}"
        " --out {output:q} {params.overrides} > {log:q} 2>&1"


rule metrics_table:
    input:
        metric_files(),
    output:
        report(
            "results/{exp}/tables/metrics.csv",
            caption="../report/metrics.rst",
            category="Tables",
            labels={"table": "metrics (CSV)", "experiment": "{exp}"},
        ),
    log:
        "results/{exp}/logs/metrics_table.log",
    benchmark:
        "results/{exp}/benchmarks/metrics_table.tsv"
    localrule: True
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        config=CONFIG_FILE,
        options="",
        code=code("collect"),
    shell:
        "ihdm collect {params.config:q} --out {output:q} {params.options} {input:q}"
        " > {log:q} 2>&1"


# The emergent-property numbers of every model and variant, one row each (a subset of
# metrics.csv, with the sampler that drew each set).
use rule metrics_table as emergent_table with:
    input:
        emergent_files(),
    output:
        report(
            "results/{exp}/tables/emergent.csv",
            caption="../report/emergent_table.rst",
            category="Tables",
            labels={"table": "emergent properties (CSV)", "experiment": "{exp}"},
        ),
    log:
        "results/{exp}/logs/emergent_table.log",
    benchmark:
        "results/{exp}/benchmarks/emergent_table.tsv"
    localrule: True


# The paper's values beside this run's, each row naming its protocol (ihdm/paper.py).
rule paper_table:
    input:
        paper_comparison_inputs(),
    output:
        report(
            "results/{exp}/tables/paper_comparison.csv",
            caption="../report/paper_comparison.rst",
            category="Tables",
            labels={"table": "paper vs this run (CSV)", "experiment": "{exp}"},
        ),
    log:
        "results/{exp}/logs/paper_table.log",
    benchmark:
        "results/{exp}/benchmarks/paper_table.tsv"
    localrule: True
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        config=CONFIG_FILE,
        code=code("compare"),
    shell:
        "ihdm compare {params.config:q} --out {output:q} {input:q} > {log:q} 2>&1"
