rule prepare_dataset:
    output:
        data="results/{experiment}/data/dataset.pt",
        manifest="results/{experiment}/data/manifest.json",
    params:
        geomvol=GEOMVOL,
        spec=lambda wildcards: spec_json(get_experiment(wildcards)["dataset"]),
    log:
        "results/{experiment}/logs/prepare_dataset.log",
    benchmark:
        "results/{experiment}/benchmarks/prepare_dataset.tsv"
    resources:
        mem_mb=1000,
        runtime="10m",
    conda:
        ENV
    shell:
        "{params.geomvol} prepare --spec {params.spec:q} --output {output.data:q}"
        " --manifest {output.manifest:q} > {log:q} 2>&1"
