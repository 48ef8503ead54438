"""Sampling: sample.n images per variant for the figures, evaluate.n_samples random
images for the metrics. `ihdm sample` writes a .png grid beside each .npz. Sampling
reruns when the model's sampling-only keys change (heat.delta; ddpm.sampler, ddim_steps
and ddim_eta), which do not retrain it."""


rule sample:
    input:
        checkpoint="results/{exp}/models/{model}/final.pt",
        data=TRAIN_DATA,
    output:
        npz="results/{exp}/samples/{model}/{variant}_seed{seed}.npz",
        grid="results/{exp}/samples/{model}/{variant}_seed{seed}.png",
    log:
        "results/{exp}/logs/sample/{model}_{variant}_seed{seed}.log",
    benchmark:
        "results/{exp}/benchmarks/sample/{model}_{variant}_seed{seed}.tsv"
    conda:
        "../envs/ihdm.yaml"
    threads: 1
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=120,
    params:
        config=CONFIG_FILE,
        n=config["sample"]["n"],
        variant=lambda wildcards: wildcards.variant,
        overrides="",
        settings=lambda wildcards: sample_settings(wildcards.model, wildcards.variant),
        code=model_code("sample"),
    shell:
        "ihdm sample {params.config:q} --checkpoint {input.checkpoint:q} --n {params.n}"
        " --seed {wildcards.seed} --variant {params.variant} --data {input.data:q}"
        " --out {output.npz:q} {params.overrides} > {log:q} 2>&1"


use rule sample as sample_for_evaluation with:
    output:
        npz="results/{exp}/samples/{model}/evaluation_seed{seed}.npz",
        grid="results/{exp}/samples/{model}/evaluation_seed{seed}.png",
    log:
        "results/{exp}/logs/sample/{model}_evaluation_seed{seed}.log",
    benchmark:
        "results/{exp}/benchmarks/sample/{model}_evaluation_seed{seed}.tsv"
    # no trajectories: no metric reads them, and sample.trajectory_frames (a figure
    # setting) then does not rerun every metric
    params:
        n=config["evaluate"]["n_samples"],
        variant="random",
        overrides=NO_TRAJECTORY,
        settings=lambda wildcards: evaluation_sample_settings(wildcards.model),
