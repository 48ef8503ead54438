"""Spectral analysis: radially averaged PSD of the training images (and of the natural
photographs when workflow.photographs), its power-law fit, and the frequencies each DDPM
noise level, each IHDM blur level and each level of blurring diffusion erase."""


rule spectral:
    input:
        data=TRAIN_DATA,
    output:
        "results/{exp}/spectral/spectral.json",
    log:
        "results/{exp}/logs/spectral.log",
    benchmark:
        "results/{exp}/benchmarks/spectral.tsv"
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        config=CONFIG_FILE,
        # the forward processes' keys spectral_summary reads (not the sampling-only
        # heat.delta and ddpm.sampler, ddim_steps, ddim_eta)
        settings=settings(
            "heat.K",
            "heat.sigma",
            "heat.blur_sigma_min",
            "heat.blur_sigma_max",
            "ddpm.T",
            "ddpm.schedule",
            "ddpm.beta_start",
            "ddpm.beta_end",
            "blurring.T",
            "blurring.blur_sigma_max",
            "blurring.min_scale",
            "blurring.logsnr_min",
            "blurring.logsnr_max",
            "workflow.photographs",
            "evaluate.spectral_fit",
            "evaluate.spectral_fit_basis",
        ),
        code=code("spectral"),
    shell:
        "ihdm spectral {params.config:q} --data {input.data:q} --out {output:q}"
        " > {log:q} 2>&1"
