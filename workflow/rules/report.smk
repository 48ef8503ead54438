"""The report's pages of tables (results/<exp>/report/*.html): the run config and the loss
of each model, the metrics and the data-efficiency sweep. The Snakemake report shows HTML
pages but offers CSV and YAML files only as downloads."""

# the pages of the report: those of rule report_tables, and one per optional table (the
# data-efficiency sweep, the δ sweep, the emergent properties) when the config makes it
REPORT_PAGES = (
    [
        f"{RESULTS}/report/{page}.html"
        for page in ("config", "loss", "metrics", "paper_comparison")
    ]
    + [f"{RESULTS}/report/data_efficiency.html" for _ in sweep_table_files()]
    + [f"{RESULTS}/report/delta_sweep.html" for _ in delta_table_files()]
    + [f"{RESULTS}/report/emergent.html" for _ in emergent_table_files()]
)
# rows of each loss log in the loss table: evenly spaced logged steps, the last included
LOSS_ROWS = 21


rule report_tables:
    input:
        # the run config is written when the workflow is read (no rule makes it)
        config=CONFIG_FILE,
        models=expand("results/{{exp}}/models/{model}/final.pt", model=MODELS),
        metrics="results/{exp}/tables/metrics.csv",
        paper="results/{exp}/tables/paper_comparison.csv",
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
        paper=report(
            "results/{exp}/report/paper_comparison.html",
            caption="../report/paper_comparison.rst",
            category="Tables",
            labels={"table": "paper vs this run", "experiment": "{exp}"},
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
        " && ihdm table {input.paper:q} --title 'The paper and this run'"
        " --out {output.paper:q}) > {log:q} 2>&1"


rule report_delta_page:
    input:
        "results/{exp}/delta/delta_sweep.csv",
    output:
        report(
            "results/{exp}/report/delta_sweep.html",
            caption="../report/delta_sweep.rst",
            category="Tables",
            labels={"table": "δ sweep", "experiment": "{exp}"},
        ),
    log:
        "results/{exp}/logs/report_delta_page.log",
    benchmark:
        "results/{exp}/benchmarks/report_delta_page.tsv"
    localrule: True
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        title="δ sweep",
        code=code("table"),
    shell:
        "ihdm table {input:q} --title {params.title:q} --out {output:q} > {log:q} 2>&1"


use rule report_delta_page as report_emergent_page with:
    input:
        "results/{exp}/tables/emergent.csv",
    output:
        report(
            "results/{exp}/report/emergent.html",
            caption="../report/emergent_table.rst",
            category="Tables",
            labels={"table": "emergent properties", "experiment": "{exp}"},
        ),
    log:
        "results/{exp}/logs/report_emergent_page.log",
    benchmark:
        "results/{exp}/benchmarks/report_emergent_page.tsv"
    localrule: True
    params:
        title="Emergent properties",
        code=code("table"),


use rule report_delta_page as report_sweep_page with:
    input:
        "results/{exp}/sweep/data_efficiency.csv",
    output:
        report(
            "results/{exp}/report/data_efficiency.html",
            caption="../report/data_efficiency.rst",
            category="Tables",
            labels={"table": "data efficiency", "experiment": "{exp}"},
        ),
    log:
        "results/{exp}/logs/report_sweep_page.log",
    benchmark:
        "results/{exp}/benchmarks/report_sweep_page.tsv"
    localrule: True
    params:
        title="Data efficiency",
        code=code("table"),
