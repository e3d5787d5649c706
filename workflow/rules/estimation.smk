# Degradation-estimation evaluation (paper, section 4.3 and 5; supplement 8.1-8.2): the
# baselines and every ablation are training jobs of their own (wildcards), so that a cluster
# runs them in parallel. Each job trains from HD-CLIP's stage config plus its own flags, then
# evaluates its model on the evaluation samples (eval_manifest: the eval_set's, or the val
# split of the training set's) into eval/ (metrics.json, predictions.csv, arrays.npz), which
# the tables and figures read.


wildcard_constraints:
    method="|".join(zephir.plan.BASELINES),
    losses="[ABCD]",
    topk=r"all|\d+",
    gap=r"\d+(\.\d+)?",


rule ablation_train:
    input:
        config=rules.hdclip_config.output[0],
        manifest=PLAN.synth_manifest,
        evaluation=PLAN.eval_manifest,
        sources=PLAN.dataset_index(config["train_set"]),
        captions=PLAN.present_captions or [],
    output:
        checkpoint=PLAN.ablation_dir("{losses}", "{topk}", "{gap}") / "model.safetensors",
        eval=zephir.plan.eval_files(PLAN.ablation_dir("{losses}", "{topk}", "{gap}")),
    params:
        code=CODE["estimate"],
        out=lambda wildcards, output: Path(output.checkpoint).parent,
        launch=zephir_launcher(EST["resources"]["gpu"]),
        steps=optional_flag("--steps", EST["ablation_steps"]),
        captions=optional_flag("--captions", PLAN.captions),
    threads: EST["resources"]["threads"]
    resources:
        gpu=EST["resources"]["gpu"],
        cpus_per_gpu=EST["resources"]["cpus_per_gpu"],
        mem_mb=EST["resources"]["mem_mb"],
        runtime=EST["resources"]["runtime"],
    log:
        LOGS / "ablation" / "{losses}-k{topk}-g{gap}.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.launch} train --config {input.config}"
        " --manifest {input.manifest} --val-manifest {input.evaluation}"
        " --sources {input.sources} {params.captions} --out {params.out}"
        " --losses {wildcards.losses} --topk {wildcards.topk} --gap {wildcards.gap}"
        " {params.steps} --resume --evaluate --quiet > {log} 2>&1"


rule baseline_train:
    input:
        config=rules.hdclip_config.output[0],
        manifest=PLAN.synth_manifest,
        evaluation=PLAN.eval_manifest,
    output:
        checkpoint=PLAN.baseline_checkpoint("{method}"),
        eval=zephir.plan.eval_files(PLAN.baseline_checkpoint("{method}").parent),
    params:
        code=CODE["estimate"],
        out=lambda wildcards, output: Path(output.checkpoint).parent,
        launch=zephir_launcher(EST["resources"]["gpu"]),
        steps=optional_flag("--steps", EST["baseline_steps"]),
        clip=lambda wildcards: daclip_clip_flags() if wildcards.method == "daclip_style" else "",
    priority: 10  # longer than an ablation job: start them early, not as a lone tail
    threads: EST["resources"]["threads"]
    resources:
        gpu=EST["resources"]["gpu"],
        cpus_per_gpu=EST["resources"]["cpus_per_gpu"],
        mem_mb=EST["resources"]["mem_mb"],
        runtime=EST["resources"]["runtime"],
    log:
        LOGS / "baselines" / "{method}.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.launch} train --method {wildcards.method}"
        " --config {input.config} --manifest {input.manifest}"
        " --val-manifest {input.evaluation} {params.clip} --out {params.out}"
        " {params.steps} --resume --evaluate --quiet > {log} 2>&1"


rule daclip_released:
    input:
        weights=EST["daclip_weights"] or [],
        config=rules.hdclip_config.output[0],
        evaluation=PLAN.eval_manifest,
    output:
        checkpoint=PLAN.baseline_checkpoint("daclip_released"),
        eval=zephir.plan.eval_files(PLAN.baseline_checkpoint("daclip_released").parent),
    params:
        code=CODE["estimate"],
        out=lambda wildcards, output: Path(output.checkpoint).parent,
        device="cuda" if EST["resources"]["gpu"] else "cpu",
        clip=daclip_clip_flags(checkpoint=False),
    resources:
        gpu=min(1, EST["resources"]["gpu"]),
        cpus_per_gpu=EST["resources"]["cpus_per_gpu"],
        mem_mb=EST["resources"]["mem_mb"],
        runtime=60,
    log:
        LOGS / "baselines" / "daclip_released.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir import-daclip --weights {input.weights} --config {input.config} {params.clip}"
        " --out {params.out} --manifest {input.evaluation} --device {params.device} > {log} 2>&1"


# The transfer evaluation (beyond the paper, beside table 2): the photos of
# estimation.transfer.set degraded by a second implementation of the four operators
# (zephir.degrade.transfer), then every model of table 2 reads them whole, as `zephir predict`.
rule transfer_set:
    input:
        index=lambda wildcards: PLAN.dataset_index(wildcards.dataset),
    output:
        manifest=PLAN.transfer_set("{dataset}"),
    params:
        code=CODE["estimate"],
        out=lambda wildcards, output: Path(output.manifest).parent,
        t=EST["transfer"],
        types=" ".join(config["synth"]["types"]),
        crop=config["synth"]["crop_size"],
        max_blur=optional_flag("--max-blur", EST["transfer"]["max_blur"]),
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        LOGS / "transfer" / "set-{dataset}.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir transfer-set --images {input.index} --out {params.out}"
        " --per-type {params.t[per_type]} --seed {params.t[seed]} --types {params.types}"
        " --train-crop-size {params.crop} {params.max_blur} > {log} 2>&1"


rule transfer_eval:
    input:
        checkpoint=lambda wildcards: PLAN.model_checkpoint(wildcards.model),
        manifest=PLAN.transfer_manifest or [],
    output:
        zephir.plan.eval_files(PLAN.transfer_dir("{model}")),
    wildcard_constraints:
        model="|".join(["hdclip", "daclip_released", *zephir.plan.BASELINES]),
    params:
        code=CODE["estimate"],
        out=lambda wildcards: PLAN.transfer_dir(wildcards.model) / "eval",
        device="cuda" if EST["resources"]["gpu"] else "cpu",
    threads: EST["resources"]["threads"]
    resources:
        gpu=min(1, EST["resources"]["gpu"]),
        cpus_per_gpu=EST["resources"]["cpus_per_gpu"],
        mem_mb=EST["resources"]["mem_mb"],
        runtime=EST["resources"]["runtime"],
    log:
        LOGS / "transfer" / "{model}.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "OMP_NUM_THREADS={threads} zephir evaluate --transfer --checkpoint {input.checkpoint}"
        " --manifest {input.manifest} --out {params.out} --device {params.device} > {log} 2>&1"
