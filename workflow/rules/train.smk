# Resume state lives in train-state/, outside the declared outputs, so that a
# killed job restarts from its last saved epoch (Snakemake deletes the declared
# outputs of a failed job). Training moves the finished checkpoints into
# training/ (with a manifest of their sha256), and publish_checkpoint makes each
# one its own declared output, checkpoints/epoch_<E>.pt (a hard link): a
# checkpoint changed after it was probed is newer than its probe, so the next
# run redoes that probe and everything after it.
rule train:
    input:
        data=rules.prepare_dataset.output.data,
    output:
        run=directory("results/{experiment}/s{seed}/training"),
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
        " --output-dir {output.run:q} --state-dir {params.state_dir:q}"
        " --metrics {output.metrics:q} --gpus {resources.gpu}"
        " > {log:q} 2>&1"


rule publish_checkpoint:
    input:
        run=rules.train.output.run,
    output:
        checkpoint="results/{experiment}/s{seed}/checkpoints/epoch_{epoch}.pt",
    log:
        "results/{experiment}/logs/publish_s{seed}_epoch_{epoch}.log",
    benchmark:
        "results/{experiment}/benchmarks/publish_s{seed}_epoch_{epoch}.tsv"
    localrule: True
    conda:
        ENV
    params:
        source=lambda wildcards, input: f"{input.run}/epoch_{wildcards.epoch}.pt",
    shell:
        "(ln -f {params.source:q} {output.checkpoint:q} || cp -p {params.source:q} {output.checkpoint:q}) > {log:q} 2>&1"
