# CFG / CFPG restoration (paper, section 3.2). HD-CLIP runs once per set (rule hdclip_embed, in
# the main environment); then every set x backbone x run x shard is a job of its own, in the
# backbone's environment (SeeSR, PASD and FaithDiff pin their torch and diffusers:
# workflow/envs/). A run is a mode (baseline, cfg, cfpg) or, for table 5's sweep, CFPG at given
# weights (cfpg-wo<w_orth>-wp<w_par>). A job keeps the images it finished under the same settings, so a
# killed or preempted job resumes; its output is the shard's record, written last.


wildcard_constraints:
    backbone="|".join(PLAN.backbones()),
    run=r"baseline|cfg|cfpg|cfpg-wo[-0-9.e]+-wp[-0-9.e]+",
    shard=r"\d+",
    shards=r"\d+",


rule restore_config:
    output:
        PLAN.restore_config,
    params:
        code=CODE["restore"],
        cfg=zephir.config.subset(config, "datasets", "blind_sets", "restoration", "weights"),
    log:
        LOGS / "restore" / "config.log",
    run:
        zephir.config.dump(params.cfg, output[0])


# HD-CLIP's conditioning of every LQ image of a set, read by all its restore jobs.
rule hdclip_embed:
    input:
        lq=lambda wildcards: PLAN.lq_input(wildcards.dataset),
        hdclip=PLAN.hdclip_checkpoint,
    output:
        PLAN.hdclip_embeddings("{dataset}"),
    params:
        code=CODE["restore"],
        device="cuda" if RES["resources"]["gpu"] else "cpu",
    threads: RES["resources"]["threads"]
    resources:
        gpu=RES["resources"]["gpu"],
        cpus_per_gpu=RES["resources"]["cpus_per_gpu"],
        mem_mb=RES["resources"]["mem_mb"],
        runtime=RES["resources"]["runtime"],
    log:
        LOGS / "restore" / "{dataset}" / "hdclip-embed.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "OMP_NUM_THREADS={threads} zephir embed --hdclip {input.hdclip} --lq {input.lq}"
        " --out {output} --device {params.device} --quiet > {log} 2>&1"


rule restore:
    input:
        unpack(lambda wildcards: PLAN.restore_inputs(wildcards.dataset, wildcards.run)),
    output:
        PLAN.restore_dir("{dataset}", "{backbone}", "{run}") / "shard-{shard}-of-{shards}.done.json",
    params:
        code=CODE["restore"],
        out=lambda wildcards, output: Path(output[0]).parent,
        run=run_flags,
        embeddings=lambda wildcards, input: (f"--embeddings {input.embeddings}"
                                             if "embeddings" in input.keys() else ""),
        device="cuda" if RES["resources"]["gpu"] else "cpu",
        source=ZEPHIR_SOURCE,
    threads: RES["resources"]["threads"]
    resources:
        gpu=RES["resources"]["gpu"],
        cpus_per_gpu=RES["resources"]["cpus_per_gpu"],
        mem_mb=RES["resources"]["mem_mb"],
        runtime=RES["resources"]["runtime"],
    log:
        LOGS / "restore" / "{dataset}" / "{backbone}" / "{run}-{shard}-of-{shards}.log",
    conda:
        backbone_env
    shell:
        # zephir is not installed in the SeeSR, PASD and FaithDiff environments: the job runs it from
        # this checkout (params.source); where it is installed, the same source is imported
        "OMP_NUM_THREADS={threads} PYTHONPATH={params.source}${{PYTHONPATH:+:$PYTHONPATH}}"
        " python -m zephir restore --config {input.config} --lq {input.lq}"
        " {params.embeddings} --backbone {wildcards.backbone} --dataset {wildcards.dataset}"
        " {params.run}"
        " --shard {wildcards.shard} --shards {wildcards.shards} --out {params.out}"
        " --device {params.device} --quiet > {log} 2>&1"


# A config dump: cheap, run where Snakemake runs, never submitted to a cluster.
localrules:
    restore_config,
