# CFG / CFPG restoration (paper, section 3.2): every set x backbone x run x shard is a job of its
# own. A run is a mode (baseline, cfg, cfpg) or, for table 5's sweep, CFPG at given weights
# (cfpg-wo<w_orth>-wp<w_par>). A job keeps the images it finished under the same settings, so a
# killed or preempted job resumes; its output is the shard's record, written last.


wildcard_constraints:
    backbone="|".join(dict.fromkeys(RES["backbones"] + (RES["realworld"]["backbones"] or []))),
    run=r"baseline|cfg|cfpg|cfpg-wo[-0-9.e]+-wp[-0-9.e]+",
    shard=r"\d+",
    shards=r"\d+",


rule restore_config:
    output:
        restore_config_file(),
    params:
        code=CODE["restore"],
        cfg=zephir.config.subset(config, "datasets", "blind_sets", "restoration", "weights"),
    log:
        LOGS / "restore" / "config.log",
    run:
        zephir.config.dump(params.cfg, output[0])


rule restore:
    input:
        config=rules.restore_config.output[0],
        lq=lambda wildcards: lq_input(wildcards.dataset),
        hdclip=hdclip_checkpoint(),
    output:
        restore_dir("{dataset}", "{backbone}", "{run}") / "shard-{shard}-of-{shards}.done.json",
    params:
        code=CODE["restore"],
        out=lambda wildcards, output: Path(output[0]).parent,
        run=run_flags,
        device="cuda" if RES["resources"]["gpu"] else "cpu",
    threads: RES["resources"]["threads"]
    resources:
        gpu=RES["resources"]["gpu"],
        cpus_per_gpu=RES["resources"]["cpus_per_gpu"],
        mem_mb=RES["resources"]["mem_mb"],
        runtime=RES["resources"]["runtime"],
    log:
        LOGS / "restore" / "{dataset}" / "{backbone}" / "{run}-{shard}-of-{shards}.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "OMP_NUM_THREADS={threads} zephir restore --config {input.config} --lq {input.lq}"
        " --hdclip {input.hdclip} --backbone {wildcards.backbone} --dataset {wildcards.dataset}"
        " {params.run}"
        " --shard {wildcards.shard} --shards {wildcards.shards} --out {params.out}"
        " --device {params.device} --quiet > {log} 2>&1"


# A config dump: cheap, run where Snakemake runs, never submitted to a cluster.
localrules:
    restore_config,
