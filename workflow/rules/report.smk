"""The report's pages of tables (results/<exp>/report/*.html): the run config and the loss
of each model, the metrics and the data-efficiency sweep. The Snakemake report shows HTML
pages but offers CSV and YAML files only as downloads."""

# the pages of the report, all made by rule report_tables
REPORT_PAGES = [
    f"{RESULTS}/report/{page}.html"
    for page in ("config", "loss", "metrics", "data_efficiency")
]
# rows of each loss log in the loss table: evenly spaced logged steps, the last included
LOSS_ROWS = 21


rule report_tables:
    input:
        # the run config is written when the workflow is read (no rule makes it)
        config=CONFIG_FILE,
        models=expand("results/{{exp}}/models/{model}/final.pt", model=MODELS),
        metrics="results/{exp}/tables/metrics.csv",
        sweep=sweep_table_files(),
    output:
        config=report(
            "results/{exp}/report/config.html",
            caption="../report/run_config.rst",
            category="Run",
            labels={"table": "config", "experiment": "{exp}"},
        ),
        loss=report(
            "results/{exp}/report/loss.html",
            caption="../report/loss_table.rst",
            category="Run",
            labels={"table": "training loss", "experiment": "{exp}"},
        ),
        metrics=report(
            "results/{exp}/report/metrics.html",
            caption="../report/metrics.rst",
            category="Tables",
            labels={"table": "metrics", "experiment": "{exp}"},
        ),
        sweep=report(
            "results/{exp}/report/data_efficiency.html",
            caption="../report/data_efficiency.rst",
            category="Tables",
            labels={"table": "data efficiency", "experiment": "{exp}"},
        ),
    log:
        "results/{exp}/logs/report_tables.log",
    benchmark:
        "results/{exp}/benchmarks/report_tables.tsv"
    localrule: True
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        # the loss log beside each final.pt (see rule plot_loss)
        losses=lambda wildcards, input: [
            Path(f).with_name("log.csv") for f in input.models
        ],
        models=MODELS,
        rows=LOSS_ROWS,
        code=code("table"),
    shell:
        "(ihdm table {input.config:q} --title 'Run config' --out {output.config:q}"
        " && ihdm table {params.losses:q} --names {params.models} --rows {params.rows}"
        " --title 'Training loss' --out {output.loss:q}"
        " && ihdm table {input.metrics:q} --title Metrics --out {output.metrics:q}"
        " && ihdm table {input.sweep:q} --title 'Data efficiency'"
        " --out {output.sweep:q}) > {log:q} 2>&1"
