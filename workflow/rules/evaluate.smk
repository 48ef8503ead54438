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
        settings=settings("seed", "evaluate.classifier_steps"),
        code=code("classifier"),
    shell:
        "ihdm classifier {params.config:q} --data {input.data:q} --test {input.test:q}"
        " --out {output:q} > {log:q} 2>&1"


rule evaluate_domain:
    input:
        samples=f"results/{{exp}}/samples/{{model}}/evaluation_seed{SEED}.npz",
        classifier="results/{exp}/classifier/classifier.pt",
        test=TEST_DATA,
    output:
        "results/{exp}/metrics/{model}/domain.json",
    log:
        "results/{exp}/logs/evaluate/{model}_domain.log",
    benchmark:
        "results/{exp}/benchmarks/evaluate/{model}_domain.tsv"
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        gpu=GPU,
        mem_mb=4000,
        runtime=60,
    params:
        config=CONFIG_FILE,
        overrides="",
        settings=settings("seed"),
        code=model_code("evaluate"),
    shell:
        "ihdm evaluate {params.config:q} --metric domain --samples {input.samples:q}"
        " --classifier {input.classifier:q} --test {input.test:q} --out {output:q}"
        " {params.overrides} > {log:q} 2>&1"


rule evaluate_fid:
    input:
        samples=f"results/{{exp}}/samples/{{model}}/evaluation_seed{SEED}.npz",
        test=TEST_DATA,
    output:
        "results/{exp}/metrics/{model}/fid.json",
    log:
        "results/{exp}/logs/evaluate/{model}_fid.log",
    benchmark:
        "results/{exp}/benchmarks/evaluate/{model}_fid.tsv"
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=240,
    params:
        config=CONFIG_FILE,
        overrides="",
        settings=settings("seed", "evaluate.inception_weights"),
        code=model_code("evaluate"),
    shell:
        "ihdm evaluate {params.config:q} --metric fid --samples {input.samples:q}"
        " --test {input.test:q} --out {output:q} {params.overrides} > {log:q} 2>&1"


rule evaluate_nll:
    input:
        checkpoint="results/{exp}/models/{model}/final.pt",
        data=TRAIN_DATA,
        test=TEST_DATA,
    output:
        "results/{exp}/metrics/{model}/nll.json",
    log:
        "results/{exp}/logs/evaluate/{model}_nll.log",
    benchmark:
        "results/{exp}/benchmarks/evaluate/{model}_nll.tsv"
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=240,
    params:
        config=CONFIG_FILE,
        settings=lambda wildcards: nll_settings(wildcards.model),
        code=model_code("evaluate"),
    shell:
        "ihdm evaluate {params.config:q} --metric nll --checkpoint {input.checkpoint:q}"
        " --data {input.data:q} --test {input.test:q} --out {output:q} > {log:q} 2>&1"


rule evaluate_memorization:
    input:
        samples=f"results/{{exp}}/samples/{{model}}/evaluation_seed{SEED}.npz",
        data=TRAIN_DATA,
        test=TEST_DATA,
    output:
        "results/{exp}/metrics/{model}/memorization.json",
    log:
        "results/{exp}/logs/evaluate/{model}_memorization.log",
    benchmark:
        "results/{exp}/benchmarks/evaluate/{model}_memorization.tsv"
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        config=CONFIG_FILE,
        overrides="",
        settings=settings("data.train_size"),
        code=model_code("evaluate"),
    shell:
        "ihdm evaluate {params.config:q} --metric memorization --samples {input.samples:q}"
        " --data {input.data:q} --test {input.test:q} --out {output:q}"
        " {params.overrides} > {log:q} 2>&1"


rule evaluate_smoothness:
    input:
        samples=f"results/{{exp}}/samples/{{model}}/interpolate_seed{SEED}.npz",
    output:
        "results/{exp}/metrics/{model}/smoothness.json",
    log:
        "results/{exp}/logs/evaluate/{model}_smoothness.log",
    benchmark:
        "results/{exp}/benchmarks/evaluate/{model}_smoothness.tsv"
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        config=CONFIG_FILE,
        code=model_code("evaluate"),
    shell:
        "ihdm evaluate {params.config:q} --metric smoothness --samples {input.samples:q}"
        " --out {output:q} > {log:q} 2>&1"


rule evaluate_emergent:
    input:
        samples=f"results/{{exp}}/samples/{{model}}/{{variant}}_seed{SEED}.npz",
    output:
        "results/{exp}/metrics/{model}/emergent_{variant}.json",
    log:
        "results/{exp}/logs/evaluate/{model}_emergent_{variant}.log",
    benchmark:
        "results/{exp}/benchmarks/evaluate/{model}_emergent_{variant}.tsv"
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        config=CONFIG_FILE,
        code=model_code("evaluate"),
    shell:
        "ihdm evaluate {params.config:q} --metric emergent --samples {input.samples:q}"
        " --out {output:q} > {log:q} 2>&1"


rule metrics_table:
    input:
        metric_files(),
    output:
        report(
            "results/{exp}/tables/metrics.csv",
            caption="../report/metrics.rst",
            category="Tables",
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
        code=code("collect"),
    shell:
        "ihdm collect {params.config:q} --out {output:q} {input:q} > {log:q} 2>&1"
