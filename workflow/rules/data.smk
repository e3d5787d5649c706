# Datasets -> results/<name>/data/<dataset>/index.csv (path, size, sha1 per image).
# Embedded photos are written next to their index; folder datasets stay under data/ (DVC) and a
# missing folder fails here with a message that names it and where to get the data.


rule dataset_index:
    output:
        index=PLAN.dataset_index("{dataset}"),
    params:
        code=CODE["synthesize"],
        args=dataset_args,
        # the dataset's config, so that a change (a photo added) reruns the rule
        spec=lambda wildcards: config["datasets"][wildcards.dataset],
    log:
        LOGS / "data" / "{dataset}.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir data {params.args} > {log} 2>&1"
