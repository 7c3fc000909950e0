rule figure:
    input:
        store=rules.combine_probes.output.store,
    output:
        png=report(
            "results/{experiment}/figures/{figure}.png",
            caption="../report/figure.rst",
            category="{experiment}",
            subcategory="{figure}",
        ),
        pdf="results/{experiment}/figures/{figure}.pdf",
    log:
        "results/{experiment}/logs/figure_{figure}.log",
    benchmark:
        "results/{experiment}/benchmarks/figure_{figure}.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime="10m",
    params:
        config_sha256=get_config_sha256,
        epochs=lambda wildcards: get_experiment(wildcards)["probe"]["epochs"],
        feature_maps=lambda wildcards: get_experiment(wildcards)["probe"][
            "feature_maps"
        ],
        metric=lambda wildcards: get_experiment(wildcards)["probe"]["metric"],
        style=get_figure_style,
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "figure {wildcards.figure} --store {input.store:q} --style {params.style:q}"
        " --png {output.png:q} --pdf {output.pdf:q} > {log:q} 2>&1"


rule figure_compare:
    input:
        store=rules.combine_probes.output.store,
        other=get_compared_store,
    output:
        png=report(
            "results/{experiment}/figures/compare.png",
            caption="../report/compare.rst",
            category="{experiment}",
            subcategory="compare",
        ),
        pdf="results/{experiment}/figures/compare.pdf",
    log:
        "results/{experiment}/logs/figure_compare.log",
    benchmark:
        "results/{experiment}/benchmarks/figure_compare.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime="10m",
    params:
        config_sha256=get_config_sha256,
        style=get_figure_style,
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "figure compare --store {input.store:q} --other {input.other:q} --style {params.style:q}"
        " --png {output.png:q} --pdf {output.pdf:q} > {log:q} 2>&1"
