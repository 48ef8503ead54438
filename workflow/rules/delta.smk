"""The δ sweep (workflow.delta_sweep): each trained model whose sampler has the sampling
noise δ draws evaluate.n_samples images again at every δ, scored with FID (evaluate.fid)
or the domain FD, gathered into results/<exp>/delta/delta_sweep.csv and drawn with the
best δ marked. Training is untouched: δ is a sampling setting."""


use rule sample_for_evaluation as delta_sample with:
    output:
        npz=f"{DELTA_POINT}/samples_seed{{seed}}.npz",
        grid=f"{DELTA_POINT}/samples_seed{{seed}}.png",
    log:
        "results/{exp}/logs/delta/{model}/delta~{delta}/sample_seed{seed}.log",
    benchmark:
        "results/{exp}/benchmarks/delta/{model}/delta~{delta}/sample_seed{seed}.tsv"
    params:
        n=config["evaluate"]["n_samples"],
        variant="random",
        overrides=lambda wildcards: f"{delta_overrides(wildcards)} {NO_TRAJECTORY}",
        settings=lambda wildcards: delta_sample_settings(wildcards.model),


use rule evaluate as delta_evaluate with:
    input:
        unpack(delta_metric_inputs),
    output:
        f"{DELTA_POINT}/{{metric}}.json",
    log:
        "results/{exp}/logs/delta/{model}/delta~{delta}/{metric}.log",
    benchmark:
        "results/{exp}/benchmarks/delta/{model}/delta~{delta}/{metric}.tsv"
    wildcard_constraints:
        metric="fid|domain",
    params:
        overrides=delta_overrides,
        settings=metric_settings,


use rule metrics_table as delta_table with:
    input:
        delta_metric_files(),
    output:
        report(
            "results/{exp}/delta/delta_sweep.csv",
            caption="../report/delta_sweep.rst",
            category="Tables",
            labels={"table": "δ sweep (CSV)", "experiment": "{exp}"},
        ),
    log:
        "results/{exp}/logs/delta/delta_sweep.log",
    benchmark:
        "results/{exp}/benchmarks/delta/delta_sweep.tsv"
    localrule: True
    params:
        options="--key heat.delta",
