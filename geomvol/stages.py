"""The pipeline's stages: one function per Snakemake rule, from input paths to output paths.

Each rule runs one ``geomvol`` subcommand, and each subcommand calls one function here (the rule's
name). A stage reads its inputs, calls the library (data, training, probing, measures, figures) to do
the work, and writes its outputs atomically, with the provenance of :func:`geomvol.provenance.record`
(the code's version and commit, the packages' versions, the host) and the sha256 of what it read:

    prepare_dataset     dataset section              -> data set file + manifest
    synthesize_dataset  format, sizes, seed          -> a stand-in data root in its on-disk layout
    train               a seed group's runs, data    -> every saved epoch of each seed (+ manifest), via the stores
    extend_training     a seed group's runs, data    -> one saved epoch of each seed added after the run
    publish_checkpoint  a group's directory          -> one seed's checkpoint of one epoch (a checked copy)
    import_checkpoint   a checkpoint trained elsewhere -> the same, fitted to the model and recorded
    training_metrics    a group's directory          -> one seed's per-epoch loss and accuracy (TSV)
    probe               checkpoints of one epoch     -> probe store of a seed or a seed group
    combine_probes      probe stores, data set       -> the experiment's volume store
    measure             volume store                 -> measures store
    figure              volume (or measures) store   -> PNG and PDF

Every input is checked against the sha256 its producer recorded before it is used (the data set against its
manifest; checkpoints, probe and volume stores against their integrity records, :mod:`geomvol.integrity`); a
damaged one is moved aside and named, so that the next run re-makes it.
"""

from __future__ import annotations

# numpy, xarray, zarr and torch are imported by the stages that use them: the small jobs (publish, metrics)
# start in a fraction of a second.
import json
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from geomvol.catalogue import EPOCH_CONVENTION, FIGURES, OTHER_FIGURES
from geomvol.config import RUN_TIME_KEYS, canonical_json, config_sha256, saved_epochs
from geomvol.errors import CheckpointError, DataError, GeomvolError
from geomvol.integrity import (
    IntegrityError, recorded_sha256, set_aside, verify, verify_dataset, write_file_record, write_tree_record,
)
from geomvol.io import atomic_path
from geomvol.provenance import record, sha256_file, sha256_of


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
        "bytes": Path(output).stat().st_size,
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


def synthesize_dataset(spec: dict, root: str | Path) -> list[str]:
    """A synthetic data set (``spec``: :func:`geomvol.catalogue.synthetic_spec`) in the on-disk layout its
    torchvision class reads (MNIST, CIFAR10, ..., ImageFolder) at ``root`` (written whole, atomically); returns
    the files written under it."""
    from geomvol.data.images import write_synthetic

    with atomic_path(root) as tmp:
        return write_synthetic(spec["format"], tmp, spec["n_train"], spec["n_test"], spec["seed"],
                               spec.get("shape"), spec.get("layout", "folders"))


def train(runs: list[dict], data: str | Path, manifest: str | Path, output_dir: str | Path,
          state_dirs: list[str | Path]) -> dict[int, list[Path]]:
    """Train a seed group (``runs``: one per seed, alike but for the seed, each with its checkpoint store in
    ``state_dirs``) as one unit, computing only the saved epochs the stores lack
    (:func:`geomvol.train.checkpoint.fill_stores`), after checking the data set against its ``manifest``;
    copy every saved epoch of every seed into ``output_dir`` (:func:`publish_group`). Returns the copies by
    seed."""
    dataset_sha256 = verify_dataset(data, manifest)
    from geomvol.train.checkpoint import fill_stores

    epochs = saved_epochs(runs[0]["training"])
    stores = fill_stores(runs, data, state_dirs, epochs)
    return publish_group(runs, stores, epochs, dataset_sha256, output_dir)


def extend_training(runs: list[dict], data: str | Path, manifest: str | Path, epoch: int, output_dir: str | Path,
                    state_dirs: list[str | Path]) -> dict[int, list[Path]]:
    """Make the checkpoint of ``epoch`` (a saved epoch added after the group's training ran) of every seed of
    ``runs`` in its store, from the nearest earlier checkpoint there, and copy them into ``output_dir``, as
    :func:`train` does."""
    if epoch not in saved_epochs(runs[0]["training"]):
        raise CheckpointError(f"epoch {epoch} is not a saved epoch of this training run "
                              f"({saved_epochs(runs[0]['training'])})")
    dataset_sha256 = verify_dataset(data, manifest)
    from geomvol.train.checkpoint import fill_stores

    stores = fill_stores(runs, data, state_dirs, [epoch])
    return publish_group(runs, stores, [epoch], dataset_sha256, output_dir)


def publish_group(runs: list[dict], stores: list[dict[int, Path]], epochs: list[int], dataset_sha256: str,
                  output_dir: str | Path) -> dict[int, list[Path]]:
    """Copy each seed's checkpoints of ``epochs`` from its store into ``output_dir/s<seed>/`` (copies, so that
    damage to one file reaches no other), with ``manifest.json`` (the epochs, each seed's store and
    checkpoints with their sha256, the data set's sha256, the provenance) and the tree's integrity record."""
    from geomvol.train.checkpoint import checkpoint_name

    output_dir = Path(output_dir)
    seeds = {}
    with atomic_path(output_dir) as tmp:
        for run, store in zip(runs, stores):
            member = tmp / f"s{run['seed']}"
            member.mkdir(parents=True)
            checkpoints = []
            for epoch in epochs:
                shutil.copy2(store[epoch], member / checkpoint_name(epoch))
                checkpoints.append({"epoch": epoch, "file": f"{member.name}/{checkpoint_name(epoch)}",
                                    "sha256": recorded_sha256(store[epoch])})
            seeds[str(run["seed"])] = {"store": str(store[epochs[0]].parent), "checkpoints": checkpoints}
        manifest = {**record(), "dataset_sha256": dataset_sha256, "epochs": epochs, "seeds": seeds}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        copies = write_tree_record(tmp)
        for entry in seeds.values():  # the copies are what the stores recorded
            for checkpoint in entry["checkpoints"]:
                if copies[checkpoint["file"]]["sha256"] != checkpoint["sha256"]:
                    raise IntegrityError(f"the copy of {entry['store']}/{Path(checkpoint['file']).name} differs from "
                                         f"the sha256 recorded in the store; check the disk, and run again")
    return {int(seed): [output_dir / item["file"] for item in entry["checkpoints"]] for seed, entry in seeds.items()}


def group_checkpoint(source: str | Path, seed: int, epoch: int) -> Path:
    """The checkpoint of ``seed`` at ``epoch`` in a group's training or extension directory ``source``, checked
    against the sha256 the directory recorded. A damaged copy is replaced by its store's checkpoint when that
    one still matches the record; if neither does, the directory is moved aside (its job runs again on the
    next run, re-making what its stores lack) and :class:`IntegrityError` names both."""
    from geomvol.train.checkpoint import checkpoint_name

    source = Path(source)
    manifest = json.loads((source / "manifest.json").read_text())
    entry = manifest["seeds"].get(str(seed))
    item = next((item for item in (entry or {}).get("checkpoints", []) if item["epoch"] == epoch), None)
    if item is None:
        raise CheckpointError(f"{source} holds no checkpoint of seed {seed} at epoch {epoch}")
    copy = source / item["file"]
    if copy.is_file() and sha256_file(copy) == item["sha256"]:
        return copy
    original = Path(entry["store"]) / checkpoint_name(epoch)
    if original.is_file() and sha256_file(original) == item["sha256"]:
        print(f"{copy} does not match the sha256 recorded in {source}; restored from {original}", file=sys.stderr)
        with atomic_path(copy) as tmp:
            shutil.copy2(original, tmp)
        return copy
    raise IntegrityError(f"checkpoint {copy} and its store's {original} both differ from the sha256 recorded in "
                         f"{source}/manifest.json; moved {source} aside to {set_aside(source)}; run snakemake again "
                         f"to make the checkpoint again from the nearest intact one")


def publish_checkpoint(source: str | Path, seed: int, epoch: int, output: str | Path) -> Path:
    """Copy the (checked, :func:`group_checkpoint`) checkpoint of ``seed`` at ``epoch`` out of its group's
    training or extension directory ``source`` to ``output``, with its integrity record
    (``<output>.integrity.json``, naming the source)."""
    checkpoint = group_checkpoint(source, seed, epoch)
    with atomic_path(output) as tmp:
        shutil.copy2(checkpoint, tmp)
    write_file_record(output, source=str(checkpoint))
    return Path(output)


def import_checkpoint(source: str | Path, spec: dict, data: str | Path, manifest: str | Path,
                      output: str | Path) -> Path:
    """A checkpoint trained elsewhere (``source``: a state dict or a whole module, read by
    :func:`geomvol.train.checkpoint.read_outside_state`, which refuses one that does not fit the model) as a
    geomvol checkpoint at ``output``, as probe jobs read them: the model's state and spec (``spec``:
    :func:`geomvol.config.import_spec`, the model section built for the prepared data set), the epoch, its
    lineage (:func:`geomvol.config.imported_lineage`) and, beside it, the file it came from with its sha256;
    with its integrity record (naming the file, its size and mtime)."""
    from geomvol.config import imported_lineage
    from geomvol.data.prepare import architecture_of, load_dataset
    from geomvol.models import build_model
    from geomvol.train.checkpoint import read_outside_state, save_checkpoint

    verify_dataset(data, manifest)
    architecture = architecture_of(spec["model"], load_dataset(data))
    state = read_outside_state(source, build_model(architecture))
    with atomic_path(output) as tmp:
        save_checkpoint({
            "model": state, "model_spec": architecture, "optimizer": {}, "objective": {}, "rng": {},
            "epoch": spec["epoch"], "history": {"epoch": [], "loss": []},
            "train_spec": imported_lineage(spec, spec["seed"]), "dataset_sha256": sha256_file(data),
            "imported_from": {"file": str(source), "sha256": sha256_file(source)},
        }, tmp)
    stat = Path(source).stat()  # the next run re-imports it if it changes (geomvol.integrity.source_problems)
    write_file_record(output, source=str(source), source_bytes=stat.st_size, source_mtime_ns=stat.st_mtime_ns)
    return Path(output)


def training_metrics(source: str | Path, seed: int, epoch: int, output: str | Path) -> None:
    """The per-epoch loss and accuracy that the checkpoint of ``seed`` at ``epoch`` in a group's training or
    extension directory ``source`` holds (its history up to its epoch), as TSV."""
    from geomvol.train.checkpoint import checkpoint_record

    history = checkpoint_record(group_checkpoint(source, seed, epoch))["history"]  # read without torch
    columns = [c for c in ("epoch", "loss", "accuracy", "test_loss", "test_accuracy") if c in history]
    rows = ["\t".join(columns)] + [
        "\t".join(f"{value:.8g}" if isinstance(value, float) else str(value) for value in values)
        for values in zip(*(history[c] for c in columns))
    ]
    with atomic_path(output) as tmp:
        Path(tmp).write_text("\n".join(rows) + "\n")


def probe(checkpoints: list[str | Path], data: str | Path, manifest: str | Path, probe_section: dict,
          output: str | Path):
    """Probe checkpoints of one epoch (one seed's, or a seed group's) as a resolved ``probe`` section says (the
    input grid for 2-D data, planes and lines for images) and write their probe store, the seeds along
    ``seed``; returns the Dataset. The checkpoints and the data set are checked against their records
    first. The store records the section without its run-time settings (``probe_config``)."""
    import xarray as xr

    from geomvol.probe import probe_checkpoint
    from geomvol.settings import ProbeSettings
    from geomvol.store import write_store

    verify_dataset(data, manifest)
    for checkpoint in checkpoints:
        verify(checkpoint, "checkpoint")
    probe_config = canonical_json({key: value for key, value in probe_section.items()
                                   if key not in RUN_TIME_KEYS["probe"]})
    provenance = record()
    reusable = _earlier_probes(Path(output), checkpoints, probe_config, provenance)
    settings = ProbeSettings.from_section(probe_section)
    ds = xr.concat([reusable[str(checkpoint)] if str(checkpoint) in reusable else
                    probe_checkpoint(checkpoint, data, settings) for checkpoint in checkpoints], dim="seed",
                   data_vars="minimal", coords="minimal", compat="override", join="exact", combine_attrs="override")
    ds.attrs.update(provenance, probe_config=probe_config)
    write_store(ds, output)
    return ds


def _earlier_probes(output: Path, checkpoints: list[str | Path], probe_config: str, provenance: dict) -> dict:
    """Probes of these very checkpoint files (the same sha256) that another probe store of the same epoch of the
    experiment already holds (``results/<experiment>/<other seeds>/probes/<same name>``), made with the same
    probe settings by the same code (geomvol's code by its sha256, which names uncommitted code too, and the
    versions of the packages that shape the numbers): by checkpoint path, each its seed's slice. A seed group
    changed by removing (or regrouping) seeds so re-probes none of the seeds it kept."""
    from geomvol.integrity import is_intact
    from geomvol.store import open_store

    wanted = {recorded_sha256(checkpoint): str(checkpoint) for checkpoint in checkpoints}  # verified by the caller
    seeds = set(output.parent.parent.name.split("-"))  # this group's s<seed> labels
    found = {}
    for other in sorted(output.parent.parent.parent.glob(f"*/{output.parent.name}/{output.name}")):
        if other == output or not seeds & set(other.parent.parent.name.split("-")) or not is_intact(other):
            continue  # another group's store that holds none of these seeds is not opened
        ds = open_store(other, verify="none")
        if ds.attrs.get("probe_config") != probe_config or any(
                ds.attrs.get(key) != provenance[key] for key in ("geomvol_version", "code_sha256", "package_versions")):
            continue
        for index, sha in enumerate(ds["checkpoint_sha256"].values[:, 0].tolist()):
            if wanted.get(sha) is not None and wanted[sha] not in found:
                found[wanted[sha]] = ds.isel(seed=[index])
                print(f"seed {int(ds['seed'][index])}: the probe of {wanted[sha]} (sha256 {sha[:12]}...) is taken "
                      f"from {other}", file=sys.stderr)
    return found


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
    import numpy as np
    import xarray as xr

    from geomvol.data.prepare import load_dataset
    from geomvol.store import open_store, write_store

    verify_dataset(data_path, manifest_path)
    parts = [open_store(p, verify="sha256") for p in probe_paths]
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
        probe_files.loc[at], probe_sha256.loc[at] = str(path), recorded_sha256(path)  # verified on opening
    ds.coords["probe_store_file"] = probe_files.assign_attrs(long_name="path of the probe store of the checkpoint")
    ds.coords["probe_store_sha256"] = probe_sha256.assign_attrs(long_name="sha256 of that probe store (zip file)")
    ds = ds.assign({name: parts[0][name].load() for name in static})
    for part in parts:
        part.close()
    manifest = json.loads(Path(manifest_path).read_text())
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


def measure(store: str | Path, sections: dict, output: str | Path, compared: str | Path | None = None):
    """The magnification measures (:func:`geomvol.measures.magnification_measures`) of a volume store, with
    the ``measures`` section, the store it came from and its sha256; returns the Dataset. ``sections``: the
    resolved ``measures`` and ``dataset`` sections; ``compared``: the volume store of the experiment's
    ``probe.compare_with``, whose agreement with this one is measured on their planes."""
    from geomvol.measures import COMPARED_VARIABLES, magnification_measures
    from geomvol.settings import MeasuresSettings
    from geomvol.store import open_store, write_store

    other = None
    if compared is not None:
        with open_store(compared, verify="sha256") as other_store:  # what the agreement reads of it
            other = other_store[[name for name in COMPARED_VARIABLES if name in other_store]].load()
    with open_store(store, verify="sha256") as volume:
        ds = magnification_measures(volume.load(), MeasuresSettings.from_sections(**sections), other)
    ds.attrs.update(measures_config=canonical_json(sections["measures"]), source_store=str(store),
                    source_store_sha256=sha256_of(store), **record())
    if compared is not None:
        ds.attrs.update(compared_store=str(compared), compared_store_sha256=sha256_of(compared))
    write_store(ds, output)
    return ds


def summarise(stores: list[str | Path], output: str | Path):
    """The summary table (:func:`geomvol.measures.summary_table`) of the experiments' measures stores, written
    as TSV: ``#`` lines first (each store it was made from, with its sha256 and its config's; each column's
    definition), then the table. Returns the DataFrame."""
    from geomvol.measures import SUMMARY_COLUMNS, summary_table
    from geomvol.provenance import sha256_tree
    from geomvol.store import open_store

    for path in stores:
        verify(path, "store")
    measures, sources = {}, []
    for path in stores:
        ds = open_store(path)
        measures[ds.attrs["experiment"]] = ds
        sources.append(f"# made from {path} (sha256 {sha256_tree(path)}; experiment {ds.attrs['experiment']}, config "
                       f"sha256 {ds.attrs['config_sha256']})\n")
    table = summary_table(measures)
    header = "".join(sources) + "".join(f"# {column}: {meaning}\n" for column, meaning in SUMMARY_COLUMNS.items())
    with atomic_path(output) as tmp:
        Path(tmp).write_text(header + table.to_csv(sep="\t", index=False, float_format="%.6g", na_rep="NaN"))
    write_file_record(output)
    return table


def figure(kind: str, store: str | Path, png: str | Path, pdf: str | Path, other: str | Path | None = None,
           seed: int | None = None, style: dict | None = None) -> None:
    """Draw a figure of ``kind`` (a kind of :data:`geomvol.catalogue.FIGURES`, ``measures`` from the measures
    store, or ``compare``: ``store`` beside ``other``) as PNG and PDF carrying their lineage, in the style of a
    resolved ``figures`` section (None: its defaults)."""
    from geomvol.figures import PLOTS, plot_compare
    from geomvol.settings import FigureStyle

    style = FigureStyle(**(style or {}))
    for path in (store, other):
        if path is not None:
            verify(path, "store")
    if kind == "compare":
        if other is None:
            raise GeomvolError("figure compare needs the store of the experiment to compare with (--other)")
        plot_compare(store, other, png, pdf, seed=seed, style=style)
    elif kind in PLOTS:
        PLOTS[kind](store, png, pdf, seed=seed, style=style)
    else:
        raise GeomvolError(f"unknown figure kind {kind!r}; the kinds are {[*FIGURES, *OTHER_FIGURES]}")
