"""The pipeline's stages: one function per Snakemake rule, from input paths to output paths.

Each rule runs one ``geomvol`` subcommand, and each subcommand calls one function here (the rule's
name). A stage reads its inputs, calls the library (data, training, probing, measures, figures) to do
the work, and writes its outputs atomically, with the provenance of :func:`geomvol.provenance.record`
(the code's version and commit, the packages' versions, the host) and the sha256 of what it read:

    prepare_dataset     dataset section              -> data set file + manifest
    synthesize_dataset  sizes, seed                  -> a stand-in data root in torchvision's layout
    train               training run, data set       -> every saved epoch (+ manifest), via the checkpoint store
    extend_training     training run, data set       -> one saved epoch added after the run
    training_metrics    checkpoint                   -> per-epoch loss and accuracy (TSV)
    probe               checkpoints of one epoch     -> probe store of a seed or a seed group
    combine_probes      probe stores, data set       -> the experiment's volume store
    measure             volume store                 -> measures store
    figure              volume (or measures) store   -> PNG and PDF

(``publish_checkpoint`` is a hard link, made by the rule itself.)
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import xarray as xr

from geomvol.catalogue import EPOCH_CONVENTION, FIGURES, OTHER_FIGURES
from geomvol.config import RUN_TIME_KEYS, canonical_json, config_sha256, saved_epochs
from geomvol.errors import CheckpointError, DataError, GeomvolError
from geomvol.io import atomic_path
from geomvol.provenance import record, sha256_file, sha256_of
from geomvol.store import open_store, write_store


def prepare_dataset(dataset: dict, output: str | Path, manifest: str | Path) -> dict:
    """Make the data set of a resolved ``dataset`` section; write it and its manifest.

    The manifest records the section, the sizes, the class counts, the sha256 of
    the written file and, for images, of every raw file read. Returns the manifest.
    """
    import torch

    from geomvol.data.prepare import make_dataset, raw_files
    from geomvol.io import save_torch

    tensors = make_dataset(dataset)
    save_torch(tensors, output)
    entry = {
        "dataset": dataset["name"],
        "spec": dataset,
        "file": Path(output).name,
        "sha256": sha256_file(output),
        **record(),
        "n_points": int(tensors["x"].shape[0]),
        "input_shape": list(tensors["x"].shape[1:]),
        "class_counts": torch.bincount(tensors["y"]).tolist(),
    }
    if "x_test" in tensors:
        entry["n_test"] = int(tensors["x_test"].shape[0])
        entry["test_class_counts"] = torch.bincount(tensors["y_test"]).tolist()
        entry["classes"] = tensors["classes"]
        entry["raw_files"] = raw_files(dataset)
    with atomic_path(manifest) as tmp:
        Path(tmp).write_text(json.dumps(entry, indent=2) + "\n")
    return entry


def synthesize_dataset(name: str, root: str | Path, n_train: int, n_test: int, seed: int) -> list[str]:
    """A synthetic MNIST or CIFAR-10 in torchvision's on-disk layout at ``root`` (written whole, atomically);
    returns the files written under it."""
    from geomvol.data.images import write_synthetic

    with atomic_path(root) as tmp:
        return write_synthetic(name, tmp, n_train, n_test, seed)


def _filled_store(run: dict, data: str | Path, state_dir: str | Path, targets: list[int],
                  seed_group: dict[int, str | Path] | None) -> dict[int, Path]:
    """The checkpoint store of ``run`` holding ``targets``: filled alone, or with the other seeds of its group
    (``seed_group``: seed -> checkpoint store, this run's among them) trained together."""
    from geomvol.train.checkpoint import fill_stores

    group = seed_group or {run["seed"]: state_dir}
    if Path(group[run["seed"]]) != Path(state_dir):
        raise GeomvolError(f"seed {run['seed']}'s store in its group is {group[run['seed']]}, not {state_dir}")
    seeds = sorted(group, key=lambda seed: seed != run["seed"])  # this run's first
    stores = fill_stores([{**run, "seed": seed} for seed in seeds], data, [group[seed] for seed in seeds], targets)
    return stores[0]


def train(run: dict, data: str | Path, output_dir: str | Path, state_dir: str | Path,
          seed_group: dict[int, str | Path] | None = None) -> list[Path]:
    """Train as ``run`` says (seed, model, training section) into the checkpoint store ``state_dir``, computing
    only the saved epochs it lacks (:func:`geomvol.train.checkpoint.fill_stores`), together with the other seeds of
    ``seed_group`` (seed -> store) when given; publish every saved epoch of ``run`` into ``output_dir`` (hard
    links) with a manifest of their sha256. Returns the checkpoint paths there."""
    from geomvol.train.checkpoint import checkpoint_name

    epochs = saved_epochs(run["training"])
    store = _filled_store(run, data, state_dir, epochs, seed_group)
    output_dir = Path(output_dir)
    with atomic_path(output_dir) as tmp:
        tmp.mkdir()
        checkpoints = []
        for epoch in epochs:
            _link(store[epoch], tmp / checkpoint_name(epoch))
            checkpoints.append({"epoch": epoch, "file": checkpoint_name(epoch), "sha256": sha256_file(store[epoch])})
        manifest = {**record(), "dataset_sha256": sha256_file(data), "checkpoints": checkpoints}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return [output_dir / checkpoint_name(epoch) for epoch in epochs]


def extend_training(run: dict, data: str | Path, state_dir: str | Path, epoch: int, output: str | Path,
                    seed_group: dict[int, str | Path] | None = None) -> Path:
    """Make the checkpoint of ``epoch`` (a saved epoch of ``run``) in the store ``state_dir``, from the nearest
    earlier checkpoint there (with the other seeds of ``seed_group``, as :func:`train`), and publish it as
    ``output``."""
    if epoch not in saved_epochs(run["training"]):
        raise CheckpointError(f"epoch {epoch} is not a saved epoch of this training run ({saved_epochs(run['training'])})")
    store = _filled_store(run, data, state_dir, [epoch], seed_group)
    with atomic_path(output) as tmp:
        _link(store[epoch], tmp)
    return Path(output)


def _link(source: Path, target: Path) -> None:
    """``target`` as the same file as ``source`` (a hard link: same bytes and modification time), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def training_metrics(checkpoint: str | Path, output: str | Path) -> None:
    """The per-epoch loss and accuracy a checkpoint holds (its history up to its epoch), as TSV."""
    from geomvol.train.checkpoint import checkpoint_record

    history = checkpoint_record(checkpoint)["history"]  # read without torch
    columns = [c for c in ("epoch", "loss", "accuracy", "test_loss", "test_accuracy") if c in history]
    rows = ["\t".join(columns)] + [
        "\t".join(f"{value:.8g}" if isinstance(value, float) else str(value) for value in values)
        for values in zip(*(history[c] for c in columns))
    ]
    with atomic_path(output) as tmp:
        Path(tmp).write_text("\n".join(rows) + "\n")


def probe(checkpoints: list[str | Path], data: str | Path, probe_section: dict, output: str | Path):
    """Probe checkpoints of one epoch (one seed's, or a seed group's) as a resolved ``probe`` section says (the
    input grid for 2-D data, planes and lines for images) and write their probe store, the seeds along
    ``seed``; returns the Dataset. The store records the section without its run-time settings
    (``probe_config``)."""
    from geomvol.probe import probe_checkpoint
    from geomvol.settings import ProbeSettings

    settings = ProbeSettings.from_section(probe_section)
    ds = xr.concat([probe_checkpoint(checkpoint, data, settings) for checkpoint in checkpoints], dim="seed",
                   data_vars="minimal", coords="minimal", compat="override", join="exact", combine_attrs="override")
    settings = {key: value for key, value in probe_section.items() if key not in RUN_TIME_KEYS["probe"]}
    ds.attrs.update(record(), probe_config=canonical_json(settings))
    write_store(ds, output)
    return ds


def combine_probes(
    probe_paths: list[str | Path],
    experiment: str,
    experiment_config: dict,
    data_path: str | Path,
    manifest_path: str | Path,
    output: str | Path,
):
    """Join the probe stores of one experiment along (seed, epoch) into its volume store, with, for 2-D data,
    the training points (dim ``point``), and in the attrs the experiment's config (``result_config``), its
    data set and the provenance; per-checkpoint values stay coordinates along (seed, epoch). Returns the
    Dataset written.
    """
    from geomvol.data.prepare import load_dataset

    parts = [open_store(p) for p in probe_paths]
    # Variables that are not per checkpoint (anchor images, normalisation) are the same in every probe.
    static = [name for name, variable in parts[0].data_vars.items() if not {"seed", "epoch"} & set(variable.dims)]
    for part in parts[1:]:
        for name in static:
            if not part[name].equals(parts[0][name]):
                raise DataError(f"probe stores disagree on {name!r}: {probe_paths[0]} and another were made from "
                                f"different anchors or data")
    ds = xr.combine_by_coords([part.drop_vars(static) for part in parts], join="exact",
                              combine_attrs="drop_conflicts").load()
    # which probe store each (seed, epoch) came from, as it was when combined (geomvol trace checks it)
    probe_files = xr.full_like(ds["checkpoint_file"], "", dtype=object)
    probe_sha256 = xr.full_like(ds["checkpoint_file"], "", dtype=object)
    for path, part in zip(probe_paths, parts):
        at = {"seed": part["seed"].values, "epoch": part["epoch"].values}  # every seed of a group's store
        probe_files.loc[at], probe_sha256.loc[at] = str(path), sha256_of(path)
    ds.coords["probe_store_file"] = probe_files.assign_attrs(long_name="path of the probe store of the checkpoint")
    ds.coords["probe_store_sha256"] = probe_sha256.assign_attrs(long_name="sha256 of that probe store (zip file)")
    ds = ds.assign({name: parts[0][name].load() for name in static})
    for part in parts:
        part.close()
    manifest = json.loads(Path(manifest_path).read_text())
    if sha256_file(data_path) != manifest["sha256"]:
        raise DataError(f"data set {data_path} does not match its manifest {manifest_path} (sha256 differs)")
    data = load_dataset(data_path)
    x, y = data["x"].numpy(), data["y"].numpy()
    if x.ndim == 2 and x.shape[1] == 2:
        ds.coords["point"] = ("point", np.arange(x.shape[0]), {"long_name": "index of the training point", "units": "1"})
        ds["data_x1"] = ("point", x[:, 0], {"long_name": "training point coordinate x1", "units": "1"})
        ds["data_x2"] = ("point", x[:, 1], {"long_name": "training point coordinate x2", "units": "1"})
        ds["data_class"] = ("point", y.astype(np.int16), {"long_name": "training point class label", "units": "1"})
    probe = experiment_config["probe"]
    volumes = [name for name in ds.data_vars if name.endswith("log10_volume")]
    devices = sorted(set(ds["probe_device"].values.ravel().tolist()))
    ds.attrs = {
        "Conventions": "CF-1.10",
        "title": f"geomvol volume elements: experiment {experiment}",
        "source": "geomvol",
        "history": f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} geomvol combine",
        "experiment": experiment,
        "experiment_config": canonical_json(experiment_config),
        "config_sha256": config_sha256(experiment_config),
        "dataset": manifest["dataset"],
        "dataset_file": str(data_path),
        "dataset_manifest_file": str(manifest_path),
        "dataset_sha256": manifest["sha256"],
        "dataset_raw_files": json.dumps(manifest.get("raw_files"), sort_keys=True),
        "input_space": (f"images: pixels / {int(data['pixel_max'])}, then minus channel_mean, divided by channel_std"
                        if x.ndim == 4 else "the data's own coordinates"),
        **({"input_normalisation": canonical_json(experiment_config["dataset"]["normalize"]),
            "channel_mean": [float(v) for v in data["mean"]], "channel_std": [float(v) for v in data["std"]]}
           if x.ndim == 4 else {}),
        "epoch_convention": EPOCH_CONVENTION,
        "seeds": [int(s) for s in ds["seed"].values],
        "classes": data.get("classes", [f"class_{c}" for c in range(int(y.max()) + 1)]),
        "metric": probe["metric"],
        "top_k": "min(n, d)" if probe["top_k"] is None else probe["top_k"],
        "metric_definition": " | ".join(f"{name}: {ds[name].attrs['description']}" for name in volumes),
        "metric_normalisation": "g = J^T J / n, n the flattened feature dimension",
        "feature_maps": list(probe["feature_maps"]),
        "block_pooling": canonical_json(probe["block_pooling"]),
        "probe_dtype": probe["dtype"],
        "device": ", ".join(devices),
        **record(),
    }
    write_store(ds, output)
    return ds


def measure(store: str | Path, sections: dict, output: str | Path):
    """The magnification measures (:func:`geomvol.measures.magnification_measures`) of a volume store, with
    the ``measures`` section, the store it came from and its sha256; returns the Dataset. ``sections``: the
    resolved ``measures`` and ``dataset`` sections."""
    from geomvol.measures import magnification_measures
    from geomvol.settings import MeasuresSettings

    with open_store(store) as volume:
        ds = magnification_measures(volume.load(), MeasuresSettings.from_sections(**sections))
    ds.attrs.update(measures_config=canonical_json(sections["measures"]), source_store=str(store),
                    source_store_sha256=sha256_of(store), **record())
    write_store(ds, output)
    return ds


def figure(kind: str, store: str | Path, png: str | Path, pdf: str | Path, other: str | Path | None = None,
           seed: int | None = None, style: dict | None = None) -> None:
    """Draw a figure of ``kind`` (a kind of :data:`geomvol.catalogue.FIGURES`, ``measures`` from the measures
    store, or ``compare``: ``store`` beside ``other``) as PNG and PDF carrying their lineage, in the style of a
    resolved ``figures`` section (None: its defaults)."""
    from geomvol.figures import PLOTS, plot_compare
    from geomvol.settings import FigureStyle

    style = FigureStyle(**(style or {}))
    if kind == "compare":
        if other is None:
            raise GeomvolError("figure compare needs the store of the experiment to compare with (--other)")
        plot_compare(store, other, png, pdf, seed=seed, style=style)
    elif kind in PLOTS:
        PLOTS[kind](store, png, pdf, seed=seed, style=style)
    else:
        raise GeomvolError(f"unknown figure kind {kind!r}; the kinds are {[*FIGURES, *OTHER_FIGURES]}")
