# Labelled degradation synthesis (paper, section 4.1) and the Real-ESRGAN blind test LQ sets.


rule synth:
    input:
        index=dataset_index(config["train_set"]),
    output:
        manifest=synth_manifest(),
    params:
        out=lambda wildcards, output: Path(output.manifest).parent,
        s=config["synth"],
    threads: config["synth"]["workers"]
    resources:
        mem_mb=4000,
        runtime=120,
    log:
        LOGS / "synth.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir synth --images {input.index} --out {params.out} --quiet"
        " --types {params.s[types]} --levels-per-type {params.s[levels_per_type]}"
        " --crop-size {params.s[crop_size]} --mixtures {params.s[mixtures_per_image]}"
        " --mixture-types {params.s[mixture_types]} --level-range {params.s[level_range]}"
        " --val-fraction {params.s[val_fraction]} --seed {params.s[seed]}"
        " --interpolation {params.s[interpolation]} --workers {threads} > {log} 2>&1"


rule blind:
    input:
        index=lambda wildcards: dataset_index(wildcards.dataset),
    output:
        manifest=RESULTS / "blind" / "{dataset}" / "manifest.csv",
    params:
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
