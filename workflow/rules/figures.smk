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
