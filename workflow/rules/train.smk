# Every saved epoch is kept in the checkpoint store train-state/, outside the
# declared outputs (Snakemake deletes the declared outputs of a failed job or
# one it reruns), so that a killed job resumes from its last saved epoch. A
# training run's params hold its lineage (seed, model, data, training settings
# but the schedule): a schedule edit does not rerun it, and extend_training
# makes the saved epochs it lacks. Training hard-links the saved epochs into
# training/ (with a manifest of their sha256), and publish_checkpoint makes
# each probed one its own declared output, checkpoints/epoch_<E>.pt (a hard
# link): a checkpoint changed after it was probed is newer than its probe, so
# the next run redoes that probe and everything after it. The first seed of a
# seed group trains the group (into each seed's store); the others' jobs come
# after it and publish what their stores then hold.
rule train:
    input:
        data=rules.prepare_dataset.output.data,
        group=get_group_training,
    output:
        run=directory("results/{experiment}/s{seed}/training"),
    log:
        "results/{experiment}/logs/train_s{seed}.log",
    benchmark:
        "results/{experiment}/benchmarks/train_s{seed}.tsv"
    conda:
        ENV
    threads: get_train_threads
    resources:
        mem_mb=gpu_or_cpu(get_train_gpus, 32000, 4000),
        runtime=gpu_or_cpu(get_train_gpus, "24h", "2h"),
        gpu=get_train_gpus,
        cpus_per_gpu=gpu_or_cpu(get_train_gpus, 8, 0),
        torch_device=get_train_device,
        schedule=get_schedule,
        seed_group=get_seed_group,
    params:
        lineage=get_lineage,
        state_dir=STATE_DIR,
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "train --lineage {params.lineage:q} --schedule {resources.schedule:q} --data {input.data:q}"
        " --output-dir {output.run:q} --state-dir {params.state_dir:q} --seed-group {resources.seed_group:q}"
        " --device {resources.torch_device} --threads {threads} --gpus {resources.gpu} > {log:q} 2>&1"


# A saved epoch added after the training run (training longer, one more saved epoch): made from the
# nearest earlier checkpoint in the run's store, while every checkpoint the run made stays as it is. As
# in train, the first seed of a seed group extends the group; the others' jobs come after it.
rule extend_training:
    input:
        data=rules.prepare_dataset.output.data,
        run=rules.train.output.run,
        group=get_group_extension,
    output:
        checkpoint="results/{experiment}/s{seed}/extended/epoch_{epoch}.pt",
    log:
        "results/{experiment}/logs/extend_s{seed}_epoch_{epoch}.log",
    benchmark:
        "results/{experiment}/benchmarks/extend_s{seed}_epoch_{epoch}.tsv"
    conda:
        ENV
    threads: get_train_threads
    resources:
        mem_mb=gpu_or_cpu(get_train_gpus, 32000, 4000),
        runtime=gpu_or_cpu(get_train_gpus, "24h", "2h"),
        gpu=get_train_gpus,
        cpus_per_gpu=gpu_or_cpu(get_train_gpus, 8, 0),
        torch_device=get_train_device,
        schedule=get_schedule,
        seed_group=get_seed_group,
    params:
        lineage=get_lineage,
        state_dir=STATE_DIR,
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "extend --lineage {params.lineage:q} --schedule {resources.schedule:q} --data {input.data:q}"
        " --epoch {wildcards.epoch} --output {output.checkpoint:q} --state-dir {params.state_dir:q}"
        " --seed-group {resources.seed_group:q}"
        " --device {resources.torch_device} --threads {threads} --gpus {resources.gpu} > {log:q} 2>&1"


rule publish_checkpoint:
    input:
        source=get_checkpoint_source,
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
        source=checkpoint_file,
    shell:
        "(ln -f {params.source:q} {output.checkpoint:q} || cp -p {params.source:q} {output.checkpoint:q}) > {log:q} 2>&1"


rule training_metrics:
    input:
        source=get_last_checkpoint_source,
    output:
        metrics="results/{experiment}/s{seed}/train_metrics.tsv",
    log:
        "results/{experiment}/logs/training_metrics_s{seed}.log",
    benchmark:
        "results/{experiment}/benchmarks/training_metrics_s{seed}.tsv"
    localrule: True
    conda:
        ENV
    params:
        checkpoint=checkpoint_file,
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "metrics --checkpoint {params.checkpoint:q} --output {output.metrics:q} > {log:q} 2>&1"
