# Labelled degradation synthesis (paper, section 4.1): the training set and the evaluation set
# (eval_set); and the Real-ESRGAN blind test LQ sets.


rule synth:
    input:
        index=dataset_index(config["train_set"]),
    output:
        manifest=synth_manifest(),
    params:
        code=CODE["synthesize"],
        out=lambda wildcards, output: Path(output.manifest).parent,
        flags=synth_flags(),
    threads: config["synth"]["workers"]
    resources:
        mem_mb=4000,
        runtime=120,
    log:
        LOGS / "synth.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir synth --images {input.index} --out {params.out} --quiet {params.flags}"
        " --workers {threads} > {log} 2>&1"


# The evaluation set (eval_set): the same synth settings, every image in split val (mixtures:
# synth.val_mixtures_per_image), in a folder of its own.
rule synth_eval:
    input:
        index=lambda wildcards: dataset_index(wildcards.dataset),
    output:
        manifest=zephir.config.eval_synth_manifest(config, "{dataset}"),
    params:
        code=CODE["synthesize"],
        out=lambda wildcards, output: Path(output.manifest).parent,
        flags=synth_flags(),
    threads: config["synth"]["workers"]
    resources:
        mem_mb=4000,
        runtime=120,
    log:
        LOGS / "synth_eval" / "{dataset}.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir synth --images {input.index} --out {params.out} --quiet {params.flags}"
        " --split val --workers {threads} > {log} 2>&1"


rule blind:
    input:
        index=lambda wildcards: dataset_index(wildcards.dataset),
    output:
        manifest=RESULTS / "blind" / "{dataset}" / "manifest.csv",
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
