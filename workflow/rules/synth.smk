# Labelled degradation synthesis (paper, section 4.1): the training set and the evaluation set
# (eval_set), both made with the synth section of the stage's config (rule synth_config); and
# the Real-ESRGAN blind test LQ sets.


rule synth_config:
    output:
        PLAN.synth_config,
    params:
        code=CODE["synthesize"],
        # synth.workers is left out: the job's threads, which do not change the output
        cfg={**zephir.config.subset(config),
             "synth": {k: v for k, v in config["synth"].items() if k != "workers"}},
    log:
        LOGS / "synth" / "config.log",
    run:
        zephir.config.dump(params.cfg, output[0])


rule synth:
    input:
        config=rules.synth_config.output[0],
        index=PLAN.dataset_index(config["train_set"]),
    output:
        manifest=PLAN.synth_manifest,
    params:
        code=CODE["synthesize"],
        out=lambda wildcards, output: Path(output.manifest).parent,
    threads: config["synth"]["workers"]
    resources:
        mem_mb=4000,
        runtime=120,
    log:
        LOGS / "synth.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir synth --config {input.config} --images {input.index} --out {params.out} --quiet"
        " --workers {threads} > {log} 2>&1"


# The evaluation set (eval_set): the same synth settings, every image in split val (mixtures:
# synth.val_mixtures_per_image), in a folder of its own.
rule synth_eval:
    input:
        config=rules.synth_config.output[0],
        index=lambda wildcards: PLAN.dataset_index(wildcards.dataset),
    output:
        manifest=PLAN.eval_synth_manifest("{dataset}"),
    params:
        code=CODE["synthesize"],
        out=lambda wildcards, output: Path(output.manifest).parent,
    threads: config["synth"]["workers"]
    resources:
        mem_mb=4000,
        runtime=120,
    log:
        LOGS / "synth_eval" / "{dataset}.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir synth --config {input.config} --images {input.index} --out {params.out} --quiet"
        " --split val --workers {threads} > {log} 2>&1"


rule blind:
    input:
        index=lambda wildcards: PLAN.dataset_index(wildcards.dataset),
    output:
        manifest=PLAN.blind_manifest("{dataset}"),
    params:
        code=CODE["synthesize"],
        out=lambda wildcards, output: Path(output.manifest).parent,
        b=config["blind"],
        crop=optional_flag("--crop", config["blind"]["crop"]),
    threads: config["blind"]["workers"]
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        LOGS / "blind" / "{dataset}.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir blind --images {input.index} --out {params.out} --quiet"
        " --scale {params.b[scale]} --seed {params.b[seed]} {params.crop} --workers {threads}"
        " > {log} 2>&1"


# A config dump: cheap, run where Snakemake runs, never submitted to a cluster.
localrules:
    synth_config,
