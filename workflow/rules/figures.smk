rule figure:
    input:
        store=rules.combine_probes.output.store,
    output:
        png="results/{experiment}/figures/{figure}.png",
        pdf="results/{experiment}/figures/{figure}.pdf",
    params:
        geomvol=GEOMVOL,
    log:
        "results/{experiment}/logs/figure_{figure}.log",
    benchmark:
        "results/{experiment}/benchmarks/figure_{figure}.tsv"
    resources:
        mem_mb=2000,
        runtime="10m",
    conda:
        ENV
    shell:
        "{params.geomvol} figure {wildcards.figure} --store {input.store:q} --png {output.png:q}"
        " --pdf {output.pdf:q} > {log:q} 2>&1"


rule figure_compare:
    input:
        store=rules.combine_probes.output.store,
        other=get_compared_store,
    output:
        png="results/{experiment}/figures/compare.png",
        pdf="results/{experiment}/figures/compare.pdf",
    params:
        geomvol=GEOMVOL,
    log:
        "results/{experiment}/logs/figure_compare.log",
    benchmark:
        "results/{experiment}/benchmarks/figure_compare.tsv"
    resources:
        mem_mb=2000,
        runtime="10m",
    conda:
        ENV
    shell:
        "{params.geomvol} figure compare --store {input.store:q} --other {input.other:q} --png {output.png:q}"
        " --pdf {output.pdf:q} > {log:q} 2>&1"
