# Tables and figures: each a cheap rule that reads results files (restyling never retrains).
# Which tables and figures exist is declared once, in zephir.report.registry; which results
# each reads, in zephir.plan (Plan.table_inputs, Plan.figure_inputs). One rule makes every
# table; each figure has a rule figure<N>, made in the loop below from its registry entry.


rule table:
    input:
        lambda wildcards: PLAN.table_inputs(wildcards.table),
    output:
        csv=report(PLAN.table_file("{table}", "csv"), caption="../report/table.rst",
                   category="Tables", labels={"table": "{table}"}),
        md=PLAN.table_file("{table}", "md"),
        tex=PLAN.table_file("{table}", "tex"),
        json=PLAN.table_file("{table}", "json"),
        paper=report(PLAN.table_file("{table}", "paper.csv"), caption="../report/paper.rst",
                     category="Tables beside the paper", labels={"table": "{table}"}),
        paper_md=PLAN.table_file("{table}", "paper.md"),
    wildcard_constraints:
        table="|".join(zephir.report.registry.TABLES),
    params:
        code=CODE["report"],
        flag=lambda wildcards: zephir.report.registry.TABLES[wildcards.table].source.flag,
        stem=lambda wildcards: PLAN.table_stem(wildcards.table),
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
        PLAN.table_file("table6", "config.yaml"),
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
        csv=report(PLAN.table_file("table6", "csv"), caption="../report/table.rst",
                   category="Tables", labels={"table": "table6"}),
        md=PLAN.table_file("table6", "md"),
        tex=PLAN.table_file("table6", "tex"),
        json=PLAN.table_file("table6", "json"),
        paper=report(PLAN.table_file("table6", "paper.csv"), caption="../report/paper.rst",
                     category="Tables beside the paper", labels={"table": "table6"}),
        paper_md=PLAN.table_file("table6", "paper.md"),
    params:
        code=CODE["report"],
        stem=PLAN.table_stem("table6"),
    log:
        LOGS / "tables" / "table6.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir table table6 --config {input} --out {params.stem} > {log} 2>&1"


# `dvc metrics show`: a few numbers of tables 2 and 1 (zephir.report.headline).
rule headline:
    input:
        unpack(lambda wildcards: PLAN.headline_inputs()),
    output:
        directory(PLAN.headline_dir),
    params:
        code=CODE["report"],
        flags=lambda wildcards, input: " ".join(f"--{t} {path}" for t, path in input.items()),
        metrics=" ".join(config["report"]["headline"]["metrics"]),
    log:
        LOGS / "tables" / "headline.log",
    conda:
        "../envs/zephir.yaml"
    shell:
        "zephir headline {params.flags} --metrics {params.metrics} --out {output} > {log} 2>&1"


# `snakemake -c2 numbers`: the run's numbers on one page that README and docs point at
# (zephir.report.numbers), from HD-CLIP's metrics and every table's Markdown.
rule numbers:
    input:
        tables=[PLAN.table_file(t) for t in PLAN.planned_tables()
                + list(zephir.report.registry.CONFIG_TABLES)],
        hdclip=zephir.plan.evaluation(PLAN.hdclip_checkpoint),
        transfer=PLAN.transfer_results(),
    output:
        PLAN.table_file("numbers"),
    params:
        code=CODE["report"],
    log:
        LOGS / "tables" / "numbers.log",
    run:
        import zephir.report.numbers

        zephir.report.numbers.write(RESULTS, output[0])


# The figures: one rule each, figure<N> (figure_transfer, figure_comparison for a name), passing
# the inputs and options its registry entry declares, from the files Plan.figure_inputs names
# (and waiting for "shards": every shard of the runs it draws) and the config's options. What
# differs between figures is in params, evaluated here; a job evaluates its shell command
# again when it runs, after this loop, so that command names no variable of the loop.
for fig in zephir.report.registry.FIGURES.values():
    n = fig.number
    stem = "comparison" if n == "comparison" else PLAN.figure_file(n).stem

    rule:
        name:
            fig.rule
        input:
            unpack(lambda w, n=n: PLAN.figure_inputs(n, w.get("dataset"), w.get("backbone"))),
        output:
            report(PLAN.figure_file(n, "{dataset}", "{backbone}"), caption=f"../report/{stem}.rst",
                   category="Comparisons (section 9.1)" if n == "comparison" else "Figures",
                   labels=({"set": "{dataset}", "backbone": "{backbone}"} if n == "comparison"
                           else {"figure": str(n)})),
        params:
            code=CODE["report"],
            number=n,
            files=figure_files(fig),
            options=" ".join(f"--{k} {v}" for k, v in PLAN.figure_options(n).items()),
        log:
            LOGS / "figures" / (f"{stem}.log" if n != "comparison"
                                else "comparison-{dataset}-{backbone}.log"),
        localrule: True
        conda:
            "../envs/zephir.yaml"
        shell:
            "zephir figure {params.number} {params.files} {params.options} --out {output}"
            " > {log} 2>&1"


# Tables read results files in seconds: run where Snakemake runs, never queued.
localrules:
    table,
    table6_config,
    table6,
    headline,
    numbers,
