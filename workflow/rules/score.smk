# Image-quality metrics of every restoration run (tables 1, 5, 7): one score file per set x
# backbone x run, a row per image and the means (docs/metrics.md states the conventions).


rule score:
    input:
        unpack(lambda w: PLAN.score_inputs(w.dataset, w.backbone, w.run)),
    output:
        csv=PLAN.score_file("{dataset}", "{backbone}", "{run}", "csv"),
        json=PLAN.score_file("{dataset}", "{backbone}", "{run}", "json"),
    params:
        code=CODE["score"],
        restored=lambda w: PLAN.restore_dir(w.dataset, w.backbone, w.run),
        args=score_args,
        device="cuda" if config["metrics"]["resources"]["gpu"] else "cpu",
    resources:
        gpu=config["metrics"]["resources"]["gpu"],
        cpus_per_gpu=config["metrics"]["resources"]["cpus_per_gpu"],
        mem_mb=config["metrics"]["resources"]["mem_mb"],
        runtime=config["metrics"]["resources"]["runtime"],
    log:
        LOGS / "scores" / "{dataset}" / "{backbone}" / "{run}.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir score --config {input.config} --restored {params.restored} {params.args}"
        " --device {params.device} --out {output.csv} > {log} 2>&1"
