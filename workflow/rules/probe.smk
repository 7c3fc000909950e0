# One job probes one epoch of a seed group (seed_group_size; a group of one is a seed): {seeds} is s<seed>
# for one seed, s<a>-s<b>-... for a group, whose probe store holds all of them.
rule probe:
    input:
        checkpoints=get_group_checkpoints,
        data=rules.prepare_dataset.output.data,
        manifest=rules.prepare_dataset.output.manifest,
    output:
        store="results/{experiment}/{seeds}/probes/epoch_{epoch}.zarr.zip",
        record="results/{experiment}/{seeds}/probes/epoch_{epoch}.zarr.zip.integrity.json",
    log:
        "results/{experiment}/logs/probe_{seeds}_epoch_{epoch}.log",
    benchmark:
        "results/{experiment}/benchmarks/probe_{seeds}_epoch_{epoch}.tsv"
    conda:
        ENV
    resources:
        mem_mb=gpu_or_cpu(get_probe_gpus, 32000, 4000),
        runtime=gpu_or_cpu(get_probe_gpus, "6h", "1h"),
        gpu=get_probe_gpus,
        cpus_per_gpu=gpu_or_cpu(get_probe_gpus, 8, 0),
        torch_device=get_probe_device,
        memory_budget_bytes=get_memory_budget,
    params:
        probe=get_probe_settings,
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "probe --checkpoints {input.checkpoints:q}"
        " --data {input.data:q} --manifest {input.manifest:q} --probe {params.probe:q} --output {output.store:q}"
        " --device {resources.torch_device} --memory-budget-bytes {resources.memory_budget_bytes}"
        " --gpus {resources.gpu} > {log:q} 2>&1"


rule combine_probes:
    input:
        probes=get_probe_stores,
        data=rules.prepare_dataset.output.data,
        manifest=rules.prepare_dataset.output.manifest,
    output:
        store=directory("results/{experiment}/volume.zarr"),
    log:
        "results/{experiment}/logs/combine_probes.log",
    benchmark:
        "results/{experiment}/benchmarks/combine_probes.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime="30m",
    params:
        config=get_result_config,
    shell:
        'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
        "combine {input.probes:q} --experiment {wildcards.experiment}"
        " --experiment-config {params.config:q} --data {input.data:q}"
        " --manifest {input.manifest:q} --output {output.store:q} > {log:q} 2>&1"
