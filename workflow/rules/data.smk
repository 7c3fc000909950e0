# Image experiments with `dataset.synthetic` write a tiny stand-in in its torchvision
# class's on-disk layout first (an image folder's: PNG files); prepare_dataset reads it
# through torchvision like real data.
rule synthesize_dataset:
    output:
        root=directory("results/{experiment}/data/synthetic"),
    log:
        "results/{experiment}/logs/synthesize_dataset.log",
    benchmark:
        "results/{experiment}/benchmarks/synthesize_dataset.tsv"
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime="10m",
    params:
        spec=lambda wildcards: section_json(
            synthetic_spec(get_experiment(wildcards)["dataset"])
        ),
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "synthesize --spec {params.spec:q} --root {output.root:q} > {log:q} 2>&1"


rule prepare_dataset:
    input:
        raw=get_raw_data,
    output:
        data="results/{experiment}/data/dataset.pt",
        manifest="results/{experiment}/data/manifest.json",
    log:
        "results/{experiment}/logs/prepare_dataset.log",
    benchmark:
        "results/{experiment}/benchmarks/prepare_dataset.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime="1h",
        download=get_download,
    params:
        dataset=get_dataset_section,
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "prepare --dataset {params.dataset:q} --download {resources.download} --output {output.data:q}"
        " --manifest {output.manifest:q} > {log:q} 2>&1"
