rule figure_volume:
    input:
        store=rules.combine_probes.output.store,
    output:
        png="results/{experiment}/figures/volume.png",
        pdf="results/{experiment}/figures/volume.pdf",
    params:
        geomvol=GEOMVOL,
    log:
        "results/{experiment}/logs/figure_volume.log",
    benchmark:
        "results/{experiment}/benchmarks/figure_volume.tsv"
    resources:
        mem_mb=2000,
        runtime="10m",
    conda:
        ENV
    shell:
        "{params.geomvol} figure --store {input.store:q} --png {output.png:q}"
        " --pdf {output.pdf:q} > {log:q} 2>&1"
