# A seed group (seed_group_size seeds; a group of one is a seed) trains as one job: any edit of its lineage
# (params) reruns every seed of the group, and what follows. Every saved epoch is kept in each seed's
# checkpoint store, train-state/<key>/, one directory per lineage and data set (outside the declared outputs,
# which Snakemake deletes when a job fails or reruns): a killed job resumes from its last saved epoch, and no
# config edit deletes a checkpoint. The schedule is a run-time setting: a schedule edit does not rerun the
# training, and extend_training makes the saved epochs it lacks. Training copies the saved epochs into the
# group's training/ (manifest and integrity record with their sha256); publish_checkpoint makes each probed
# one its own declared output, checkpoints/epoch_<E>.pt (a copy checked against that record, with its own
# record): a checkpoint changed after it was probed is newer than its probe, so the next run redoes that
# probe and everything after it.
rule train:
    input:
        data=rules.prepare_dataset.output.data,
        manifest=rules.prepare_dataset.output.manifest,
    output:
        run=directory("results/{experiment}/{seeds}/training"),
    log:
        "results/{experiment}/logs/train_{seeds}.log",
    benchmark:
        "results/{experiment}/benchmarks/train_{seeds}.tsv"
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
    params:
        lineage=get_group_lineage,
        state_dirs=get_state_dirs,
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "train --lineage {params.lineage:q} --schedule {resources.schedule:q} --data {input.data:q}"
        " --manifest {input.manifest:q} --output-dir {output.run:q} --state-dirs {params.state_dirs:q}"
        " --device {resources.torch_device} --threads {threads} --gpus {resources.gpu} > {log:q} 2>&1"


# A saved epoch added after the group's training (training longer, one more saved epoch): made for every
# seed of the group from the nearest earlier checkpoint in its store, while every checkpoint the run made
# stays as it is.
rule extend_training:
    input:
        data=rules.prepare_dataset.output.data,
        manifest=rules.prepare_dataset.output.manifest,
        run=rules.train.output.run,
    output:
        run=directory("results/{experiment}/{seeds}/extended/epoch_{epoch}"),
    log:
        "results/{experiment}/logs/extend_{seeds}_epoch_{epoch}.log",
    benchmark:
        "results/{experiment}/benchmarks/extend_{seeds}_epoch_{epoch}.tsv"
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
    params:
        lineage=get_group_lineage,
        state_dirs=get_state_dirs,
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "extend --lineage {params.lineage:q} --schedule {resources.schedule:q} --data {input.data:q}"
        " --manifest {input.manifest:q} --epoch {wildcards.epoch} --output-dir {output.run:q}"
        " --state-dirs {params.state_dirs:q}"
        " --device {resources.torch_device} --threads {threads} --gpus {resources.gpu} > {log:q} 2>&1"


rule publish_checkpoint:
    input:
        source=get_checkpoint_source,
    output:
        checkpoint="results/{experiment}/s{seed}/checkpoints/epoch_{epoch}.pt",
        record="results/{experiment}/s{seed}/checkpoints/epoch_{epoch}.pt.integrity.json",
    log:
        "results/{experiment}/logs/publish_s{seed}_epoch_{epoch}.log",
    benchmark:
        "results/{experiment}/benchmarks/publish_s{seed}_epoch_{epoch}.tsv"
    wildcard_constraints:
        experiment=names_pattern(TRAINED),
    localrule: True
    conda:
        ENV
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "publish --source {input.source:q} --seed {wildcards.seed} --epoch {wildcards.epoch}"
        " --output {output.checkpoint:q} > {log:q} 2>&1"


# A checkpoint trained elsewhere (the experiment's `checkpoints`: epoch -> file), fitted to the model (a file
# whose keys or shapes do not fit is refused, before any job by the config check) and written as the checkpoint
# the probe reads, recording the file and its sha256: a changed file is imported and probed again.
rule import_checkpoint:
    input:
        source=get_outside_checkpoint,
        data=rules.prepare_dataset.output.data,
        manifest=rules.prepare_dataset.output.manifest,
    output:
        checkpoint="results/{experiment}/s{seed}/checkpoints/epoch_{epoch}.pt",
        record="results/{experiment}/s{seed}/checkpoints/epoch_{epoch}.pt.integrity.json",
    log:
        "results/{experiment}/logs/import_s{seed}_epoch_{epoch}.log",
    benchmark:
        "results/{experiment}/benchmarks/import_s{seed}_epoch_{epoch}.tsv"
    wildcard_constraints:
        experiment=names_pattern(IMPORTED),
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime="30m",
    params:
        spec=get_import_spec,
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "import-checkpoint --source {input.source:q} --spec {params.spec:q} --data {input.data:q}"
        " --manifest {input.manifest:q} --output {output.checkpoint:q} > {log:q} 2>&1"


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
        epoch=last_saved_epoch,
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "metrics --source {input.source:q} --seed {wildcards.seed} --epoch {params.epoch}"
        " --output {output.metrics:q} > {log:q} 2>&1"
