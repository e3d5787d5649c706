# Tables and figures: each a cheap rule that reads results files (restyling never retrains).
# Which tables and figures exist is declared once, in zephir.report.registry (TABLES and
# FIGURES of common.smk come from it). A table's inputs are the results of the runs its entry
# names; each figure has a rule figure<N> passing the inputs its entry declares.


rule table:
    input:
        table_inputs,
    output:
        csv=report(table_file("{table}", "csv"), caption="../report/table.rst",
                   category="Tables", labels={"table": "{table}"}),
        md=table_file("{table}", "md"),
        tex=table_file("{table}", "tex"),
        json=table_file("{table}", "json"),
        paper=report(table_file("{table}", "paper.csv"), caption="../report/paper.rst",
                     category="Tables beside the paper", labels={"table": "{table}"}),
        paper_md=table_file("{table}", "paper.md"),
    wildcard_constraints:
        table="|".join(TABLES),
    params:
        code=CODE["report"],
        flag=table_flag,
        stem=table_stem,
        config_hash=CONFIG_HASH,
    log:
        LOGS / "tables" / "{table}.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir table {wildcards.table} --{params.flag} {input} --config-hash {params.config_hash}"
        " --out {params.stem} > {log} 2>&1"


# Table 6 reads no results: the config's architectures, built with random init (and timed on
# report.table6.device). The config is written out for `zephir table table6 --config`.
rule table6_config:
    output:
        table_file("table6", "config.yaml"),
    params:
        code=CODE["report"],
        cfg=config,
    log:
        LOGS / "tables" / "table6-config.log",
    run:
        zephir.config.dump(params.cfg, output[0])


rule table6:
    input:
        rules.table6_config.output[0],
    output:
        csv=report(table_file("table6", "csv"), caption="../report/table.rst",
                   category="Tables", labels={"table": "table6"}),
        md=table_file("table6", "md"),
        tex=table_file("table6", "tex"),
        json=table_file("table6", "json"),
        paper=report(table_file("table6", "paper.csv"), caption="../report/paper.rst",
                     category="Tables beside the paper", labels={"table": "table6"}),
        paper_md=table_file("table6", "paper.md"),
    params:
        code=CODE["report"],
        stem=RESULTS / "tables" / "table6",
    log:
        LOGS / "tables" / "table6.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir table table6 --config {input} --out {params.stem} > {log} 2>&1"


# `dvc metrics show`: a few numbers of tables 2 and 1 (zephir.report.headline).
rule headline:
    input:
        unpack(headline_inputs),
    output:
        directory(headline_dir()),
    params:
        code=CODE["report"],
        flags=headline_flags,
        metrics=" ".join(config["report"]["headline"]["metrics"]),
    log:
        LOGS / "tables" / "headline.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir headline {params.flags} --metrics {params.metrics} --out {output} > {log} 2>&1"


rule figure1:
    input:
        checkpoint=hdclip_checkpoint(),
    output:
        report(figure_file(1), caption="../report/fig1.rst", category="Figures",
               labels={"figure": "1"}),
    params:
        code=CODE["report"],
        kind=EST["figure_type"],
    log:
        LOGS / "figures" / "fig1.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir figure 1 --checkpoint {input.checkpoint} --type {params.kind} --out {output}"
        " > {log} 2>&1"


rule figure3:
    input:
        arrays=evaluation(hdclip_checkpoint(), "arrays.npz"),
        predictions=evaluation(hdclip_checkpoint(), "predictions.csv"),
        metrics=evaluation(hdclip_checkpoint()),
    output:
        report(figure_file(3), caption="../report/fig3.rst", category="Figures",
               labels={"figure": "3"}),
    params:
        code=CODE["report"],
    log:
        LOGS / "figures" / "fig3.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir figure 3 --arrays {input.arrays} --predictions {input.predictions}"
        " --metrics {input.metrics} --out {output} > {log} 2>&1"


rule figure7:
    input:
        predictions=[evaluation(c, "predictions.csv")
                     for c in (hdclip_checkpoint(), baseline_checkpoint("mmrealsr_style"))],
        metrics=[evaluation(c) for c in (hdclip_checkpoint(), baseline_checkpoint("mmrealsr_style"))],
    output:
        report(figure_file(7), caption="../report/fig7.rst", category="Figures",
               labels={"figure": "7"}),
    params:
        code=CODE["report"],
    log:
        LOGS / "figures" / "fig7.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir figure 7 --predictions {input.predictions} --metrics {input.metrics}"
        " --out {output} > {log} 2>&1"


rule figure8:
    input:
        sources=dataset_index(config["train_set"]),
    output:
        report(figure_file(8), caption="../report/fig8.rst", category="Figures",
               labels={"figure": "8"}),
    params:
        code=CODE["report"],
        level=EST["figure_level"],
    log:
        LOGS / "figures" / "fig8.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir figure 8 --sources {input.sources} --level {params.level} --out {output}"
        " > {log} 2>&1"


rule figure9:
    input:
        predictions=evaluation(hdclip_checkpoint(), "predictions.csv"),
        metrics=evaluation(hdclip_checkpoint()),
        manifest=eval_manifest(),
        sources=eval_sources(),
    output:
        report(figure_file(9), caption="../report/fig9.rst", category="Figures",
               labels={"figure": "9"}),
    params:
        code=CODE["report"],
    log:
        LOGS / "figures" / "fig9.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir figure 9 --predictions {input.predictions} --metrics {input.metrics}"
        " --manifest {input.manifest} --sources {input.sources} --out {output} > {log} 2>&1"


rule figure10:
    input:
        arrays=[evaluation(c, "arrays.npz") for c in table3_models()],
        metrics=[evaluation(c) for c in table3_models()],
    output:
        report(figure_file(10), caption="../report/fig10.rst", category="Figures",
               labels={"figure": "10"}),
    params:
        code=CODE["report"],
        kind=EST["figure_type"],
    log:
        LOGS / "figures" / "fig10.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir figure 10 --arrays {input.arrays} --metrics {input.metrics}"
        " --type {params.kind} --out {output} > {log} 2>&1"


rule figure6:
    input:
        restored=figure_records(6),
        shards=figure_shards(6),
        blind=figure_blind(6),
    output:
        report(figure_file(6), caption="../report/fig6.rst", category="Figures",
               labels={"figure": "6"}),
    params:
        code=CODE["report"],
        crop=RES["figure_crop"],
    log:
        LOGS / "figures" / "fig6.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir figure 6 --restored {input.restored} --blind {input.blind} --crop {params.crop}"
        " --out {output} > {log} 2>&1"


rule figure11:
    input:
        restored=figure_records(11),
        shards=figure_shards(11),
        blind=figure_blind(11),
    output:
        report(figure_file(11), caption="../report/fig11.rst", category="Figures",
               labels={"figure": "11"}),
    params:
        code=CODE["report"],
        crop=RES["figure_crop"],
    log:
        LOGS / "figures" / "fig11.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir figure 11 --restored {input.restored} --blind {input.blind} --crop {params.crop}"
        " --out {output} > {log} 2>&1"


# Fig. 21 and section 9.1's comparisons: crops where the runs differ most
# (zephir.report.figures.disagreement_crop), never chosen by hand.
rule figure21:
    input:
        restored=[restore_done(*r)[0] for r in figure_runs(21)],
        shards=[f for r in figure_runs(21) for f in restore_done(*r)],
        lq=figure_lq(21),
    output:
        report(figure_file(21), caption="../report/fig21.rst", category="Figures",
               labels={"figure": "21"}),
    params:
        code=CODE["report"],
        crop=RES["figure_crop"],
    log:
        LOGS / "figures" / "fig21.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir figure 21 --restored {input.restored} --lq {input.lq} --crop {params.crop}"
        " --out {output} > {log} 2>&1"


rule figure_comparison:
    input:
        restored=lambda w: [restore_done(*r)[0]
                            for r in figure_runs("comparison", w.dataset, w.backbone)],
        shards=lambda w: [f for r in figure_runs("comparison", w.dataset, w.backbone)
                          for f in restore_done(*r)],
        lq=lambda w: lq_input(w.dataset),
    output:
        report(comparison_file("{dataset}", "{backbone}"), caption="../report/comparison.rst",
               category="Comparisons (section 9.1)",
               labels={"set": "{dataset}", "backbone": "{backbone}"}),
    params:
        code=CODE["report"],
        crop=RES["figure_crop"],
    log:
        LOGS / "figures" / "comparison-{dataset}-{backbone}.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir figure comparison --restored {input.restored} --lq {input.lq}"
        " --crop {params.crop} --out {output} > {log} 2>&1"


rule figure_transfer:
    input:
        predictions=[Path(m).with_name("predictions.csv") for m in transfer_results()],
        metrics=transfer_results(),
    output:
        report(figure_file("transfer"), caption="../report/fig-transfer.rst", category="Figures",
               labels={"figure": "transfer"}),
    params:
        code=CODE["report"],
    log:
        LOGS / "figures" / "fig-transfer.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir figure transfer --predictions {input.predictions} --metrics {input.metrics}"
        " --out {output} > {log} 2>&1"


# Tables and figures read results files in seconds: run where Snakemake runs, never queued.
localrules:
    table,
    table6_config,
    table6,
    headline,
    figure1,
    figure3,
    figure6,
    figure7,
    figure8,
    figure9,
    figure10,
    figure11,
    figure21,
    figure_comparison,
    figure_transfer,
