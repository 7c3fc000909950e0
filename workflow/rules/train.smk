# Resume state lives in train-state/, outside the declared outputs, so that a
# killed job restarts from its last saved epoch (Snakemake deletes the declared
# outputs of a failed job). Training moves the finished checkpoints into place.
rule train:
    input:
        data=rules.prepare_dataset.output.data,
    output:
        checkpoints=directory("results/{experiment}/s{seed}/checkpoints"),
        metrics="results/{experiment}/s{seed}/train_metrics.tsv",
    log:
        "results/{experiment}/logs/train_s{seed}.log",
    benchmark:
        "results/{experiment}/benchmarks/train_s{seed}.tsv"
    conda:
        ENV
    threads: lambda wildcards: get_experiment(wildcards)["training"]["threads"]
    resources:
        mem_mb=gpu_or_cpu(get_train_gpus, 32000, 4000),
        runtime=gpu_or_cpu(get_train_gpus, "24h", "2h"),
        gpu=get_train_gpus,
        cpus_per_gpu=gpu_or_cpu(get_train_gpus, 8, 0),
    params:
        geomvol=GEOMVOL,
        spec=get_train_spec,
        state_dir="results/{experiment}/s{seed}/train-state",
    shell:
        "{params.geomvol} train --spec {params.spec:q} --data {input.data:q}"
        " --output-dir {output.checkpoints:q} --state-dir {params.state_dir:q}"
        " --metrics {output.metrics:q} --gpus {resources.gpu}"
        " > {log:q} 2>&1"
