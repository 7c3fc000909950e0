rule measure:
    input:
        store=rules.combine_probes.output.store,
        compared=get_compared_stores,
    output:
        store=directory("results/{experiment}/measures.zarr"),
    log:
        "results/{experiment}/logs/measure.log",
    benchmark:
        "results/{experiment}/benchmarks/measure.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime="30m",
    params:
        sections=get_measure_sections,
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "measure --store {input.store:q} --sections {params.sections:q}"
        " --compared {input.compared:q} --output {output.store:q} > {log:q} 2>&1"


rule figure_measures:
    input:
        store=rules.measure.output.store,
    output:
        png=report(
            "results/{experiment}/figures/measures.png",
            caption="../report/measures.rst",
            category="{experiment}",
            subcategory="measures",
        ),
        pdf="results/{experiment}/figures/measures.pdf",
        profiles_png=report(
            "results/{experiment}/figures/profiles.png",
            caption="../report/profiles.rst",
            category="{experiment}",
            subcategory="profiles",
        ),
        profiles_pdf="results/{experiment}/figures/profiles.pdf",
    log:
        "results/{experiment}/logs/figure_measures.log",
    benchmark:
        "results/{experiment}/benchmarks/figure_measures.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime="10m",
    params:
        config_sha256=get_config_sha256,
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "figure measures profiles --store {input.store:q}"
        " --png {output.png:q} {output.profiles_png:q}"
        " --pdf {output.pdf:q} {output.profiles_pdf:q} > {log:q} 2>&1"


rule summary:
    input:
        stores=get_measures_stores,
    output:
        table=report(
            "results/summary.tsv",
            caption="../report/summary.rst",
            category="summary",
        ),
    log:
        "results/logs/summary.log",
    benchmark:
        "results/benchmarks/summary.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime="10m",
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "summary {input.stores:q} --output {output.table:q} > {log:q} 2>&1"
