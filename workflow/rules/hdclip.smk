# HD-CLIP training (paper, section 3.1): one job, data-parallel over the job's GPUs.


rule hdclip_config:
    output:
        PLAN.hdclip_config,
    params:
        code=CODE["train"],
        cfg=zephir.config.subset(config, "synth", "hdclip"),
    log:
        LOGS / "hdclip" / "config.log",
    run:
        zephir.config.dump(params.cfg, output[0])


rule hdclip_train:
    input:
        config=rules.hdclip_config.output[0],
        manifest=PLAN.synth_manifest,
        evaluation=PLAN.eval_manifest,
        sources=PLAN.dataset_index(config["train_set"]),
        captions=PLAN.present_captions or [],
    output:
        checkpoint=PLAN.hdclip_checkpoint,
        log=RESULTS / "hdclip" / "train_log.csv",
        val=RESULTS / "hdclip" / "val_metrics.csv",
        eval=zephir.plan.eval_files(RESULTS / "hdclip"),
    params:
        code=CODE["train"],
        out=lambda wildcards, output: Path(output.checkpoint).parent,
        launch=zephir_launcher(config["hdclip"]["resources"]["gpu"]),
        captions=optional_flag("--captions", PLAN.captions),
    # first: it takes every local core, and the short 1-core jobs fill the cores after it
    priority: 20
    threads: config["hdclip"]["resources"]["threads"]
    resources:
        gpu=config["hdclip"]["resources"]["gpu"],
        cpus_per_gpu=config["hdclip"]["resources"]["cpus_per_gpu"],
        mem_mb=config["hdclip"]["resources"]["mem_mb"],
        runtime=config["hdclip"]["resources"]["runtime"],
    log:
        LOGS / "hdclip" / "train.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "{params.launch} train --config {input.config} --manifest {input.manifest}"
        " --val-manifest {input.evaluation} --sources {input.sources} {params.captions}"
        " --out {params.out} --resume --evaluate --quiet > {log} 2>&1"


# A config dump: cheap, run where Snakemake runs, never submitted to a cluster.
localrules:
    hdclip_config,
