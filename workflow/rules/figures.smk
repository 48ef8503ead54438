"""Figures (results/<exp>/figures/<name>.png and .pdf) drawn by `ihdm plot` from
finished results files only: no figure rule trains, samples or evaluates. An edit of the
plotting code (ihdm/plots.py) redraws them all, and nothing else: their params hold its
fingerprint. Plots are local rules (never submitted to a cluster); every
`use rule ... with:` repeats `localrule: True`, which Snakemake 9.27 does not
inherit (snakemake/snakemake#2892).
"""


rule figures:
    input:
        figure_files(),


rule plot_samples:
    input:
        f"results/{{exp}}/samples/{{model}}/random_seed{SEED}.npz",
    output:
        png=report(
            "results/{exp}/figures/samples_{model}.png",
            caption="../report/samples.rst",
            category="Figures",
            subcategory="Samples",
            labels={"figure": "samples", "model": "{model}"},
        ),
        pdf="results/{exp}/figures/samples_{model}.pdf",
    log:
        "results/{exp}/logs/figures/samples_{model}.log",
    benchmark:
        "results/{exp}/benchmarks/figures/samples_{model}.tsv"
    localrule: True
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="samples",
        prefix=plot_prefix,
        options="",
        inputs=lambda wildcards, input: input,
        code=code("plot"),
    shell:
        "ihdm plot {params.figure} --out {params.prefix:q} {params.options}"
        " {params.inputs:q} > {log:q} 2>&1"


use rule plot_samples as plot_trajectory with:
    output:
        png=report(
            "results/{exp}/figures/trajectory_{model}.png",
            caption="../report/trajectory.rst",
            category="Figures",
            subcategory="Samples",
            labels={"figure": "trajectory", "model": "{model}"},
        ),
        pdf="results/{exp}/figures/trajectory_{model}.pdf",
    log:
        "results/{exp}/logs/figures/trajectory_{model}.log",
    benchmark:
        "results/{exp}/benchmarks/figures/trajectory_{model}.tsv"
    localrule: True
    params:
        figure="trajectory",


use rule plot_samples as plot_interpolation with:
    input:
        samples_of("interpolate"),
    output:
        png=report(
            "results/{exp}/figures/interpolation.png",
            caption="../report/interpolation.rst",
            category="Figures",
            subcategory="Samples",
            labels={"figure": "interpolation", "model": "all"},
        ),
        pdf="results/{exp}/figures/interpolation.pdf",
    log:
        "results/{exp}/logs/figures/interpolation.log",
    benchmark:
        "results/{exp}/benchmarks/figures/interpolation.tsv"
    localrule: True
    params:
        figure="interpolation",


use rule plot_samples as plot_emergent with:
    input:
        f"results/{{exp}}/samples/{{model}}/{{variant}}_seed{SEED}.npz",
    output:
        png=report(
            "results/{exp}/figures/emergent_{variant}_{model}.png",
            caption="../report/emergent.rst",
            category="Figures",
            subcategory="Emergent properties",
            labels={"figure": "{variant}", "model": "{model}"},
        ),
        pdf="results/{exp}/figures/emergent_{variant}_{model}.pdf",
    log:
        "results/{exp}/logs/figures/emergent_{variant}_{model}.log",
    benchmark:
        "results/{exp}/benchmarks/figures/emergent_{variant}_{model}.tsv"
    localrule: True
    params:
        figure="emergent",


use rule plot_samples as plot_forward_blur with:
    input:
        TRAIN_DATA,
    output:
        png=report(
            "results/{exp}/figures/forward-blur.png",
            caption="../report/forward_blur.rst",
            category="Figures",
            subcategory="Forward process",
            labels={"figure": "forward blur", "model": "ihdm"},
        ),
        pdf="results/{exp}/figures/forward-blur.pdf",
    log:
        "results/{exp}/logs/figures/forward-blur.log",
    benchmark:
        "results/{exp}/benchmarks/figures/forward-blur.tsv"
    localrule: True
    params:
        figure="forward-blur",
        options=f"--config {CONFIG_FILE}",
        settings=settings("heat.K", "heat.blur_sigma_min", "heat.blur_sigma_max"),


use rule plot_samples as plot_psd with:
    input:
        "results/{exp}/spectral/spectral.json",
    output:
        png=report(
            "results/{exp}/figures/psd_{source}.png",
            caption="../report/psd.rst",
            category="Figures",
            subcategory="Spectral analysis",
            labels={"figure": "power spectrum", "images": "{source}"},
        ),
        pdf="results/{exp}/figures/psd_{source}.pdf",
    log:
        "results/{exp}/logs/figures/psd_{source}.log",
    benchmark:
        "results/{exp}/benchmarks/figures/psd_{source}.tsv"
    localrule: True
    params:
        figure="psd",
        options="--source {source}",


use rule plot_samples as plot_erased_frequency with:
    input:
        "results/{exp}/spectral/spectral.json",
    output:
        png=report(
            "results/{exp}/figures/erased-frequency_{source}.png",
            caption="../report/erased_frequency.rst",
            category="Figures",
            subcategory="Spectral analysis",
            labels={"figure": "erased frequency", "images": "{source}"},
        ),
        pdf="results/{exp}/figures/erased-frequency_{source}.pdf",
    log:
        "results/{exp}/logs/figures/erased-frequency_{source}.log",
    benchmark:
        "results/{exp}/benchmarks/figures/erased-frequency_{source}.tsv"
    localrule: True
    params:
        figure="erased-frequency",
        options="--source {source}",


use rule plot_samples as plot_data_efficiency with:
    input:
        "results/{exp}/sweep/data_efficiency.csv",
    output:
        png=report(
            "results/{exp}/figures/data-efficiency_{column}.png",
            caption="../report/data_efficiency_figure.rst",
            category="Figures",
            subcategory="Data efficiency",
            labels={"figure": "data efficiency", "metric": "{column}"},
        ),
        pdf="results/{exp}/figures/data-efficiency_{column}.pdf",
    log:
        "results/{exp}/logs/figures/data-efficiency_{column}.log",
    benchmark:
        "results/{exp}/benchmarks/figures/data-efficiency_{column}.tsv"
    localrule: True
    params:
        figure="data-efficiency",
        options="--metric {column}",


# The loss log DIR/log.csv is not an output of `train` (Snakemake would delete it with a
# failed job, and a resumed run appends to it); final.pt beside it marks it complete.
use rule plot_samples as plot_loss with:
    input:
        expand("results/{{exp}}/models/{model}/final.pt", model=MODELS),
    output:
        png=report(
            "results/{exp}/figures/loss.png",
            caption="../report/loss.rst",
            category="Figures",
            subcategory="Training",
            labels={"figure": "training loss", "model": "all"},
        ),
        pdf="results/{exp}/figures/loss.pdf",
    log:
        "results/{exp}/logs/figures/loss.log",
    benchmark:
        "results/{exp}/benchmarks/figures/loss.tsv"
    localrule: True
    params:
        figure="loss",
        inputs=loss_logs,


use rule plot_samples as plot_delta_sweep with:
    input:
        "results/{exp}/delta/delta_sweep.csv",
    output:
        png=report(
            "results/{exp}/figures/delta-sweep.png",
            caption="../report/delta_sweep_figure.rst",
            category="Figures",
            subcategory="Sampling noise",
            labels={"figure": "δ sweep", "model": "ihdm"},
        ),
        pdf="results/{exp}/figures/delta-sweep.pdf",
    log:
        "results/{exp}/logs/figures/delta-sweep.log",
    benchmark:
        "results/{exp}/benchmarks/figures/delta-sweep.tsv"
    localrule: True
    params:
        figure="delta-sweep",
        options=f"--metric {DELTA_COLUMN}",


use rule plot_samples as plot_simplicity with:
    input:
        expand("results/{{exp}}/metrics/{model}/simplicity.json", model=MODELS),
    output:
        png=report(
            "results/{exp}/figures/simplicity.png",
            caption="../report/simplicity.rst",
            category="Figures",
            subcategory="Emergent properties",
            labels={"figure": "simplicity (c)", "model": "all"},
        ),
        pdf="results/{exp}/figures/simplicity.pdf",
    log:
        "results/{exp}/logs/figures/simplicity.log",
    benchmark:
        "results/{exp}/benchmarks/figures/simplicity.tsv"
    localrule: True
    params:
        figure="simplicity",
