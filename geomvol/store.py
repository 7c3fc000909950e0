"""Zarr (format 3) stores of probe results, and their combination per experiment.

Each probe job writes one small store; :func:`combine_probes` joins them
along (seed, epoch), adds the training data and the provenance, and writes
``results/<experiment>/volume.zarr`` once. Every write is atomic.
"""

from __future__ import annotations

import json
import tempfile
import warnings
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from geomvol.config import canonical_json, config_sha256
from geomvol.data import load_dataset
from geomvol.errors import DataError
from geomvol.io import atomic_path
from geomvol.provenance import git_commit, host, package_versions, sha256_file, sha256_of

EPOCH_CONVENTION = ("epoch E is the network after E passes over the training set; epoch 0 is the untrained "
                    "network. The study's scripts train first and then save, so their 'epoch E' is epoch E + 1 here")
COMPRESSOR = zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle=zarr.codecs.BloscShuffle.bitshuffle)


# Dimensions chunked one slice at a time: a chunk is one (seed, epoch, block, plane or line) slice.
SLICED_DIMS = ("seed", "epoch", "block", "plane", "line")


def _encoding(ds: xr.Dataset) -> dict:
    """One chunk per (seed, epoch, block, plane/line) slice; labels keep -1 as fill value so unwritten
    cells are not class 0."""
    encoding = {}
    for name, variable in ds.data_vars.items():
        chunks = tuple(1 if dim in SLICED_DIMS else size for dim, size in variable.sizes.items())
        encoding[name] = {"chunks": chunks, "compressors": (COMPRESSOR,)}
        if np.issubdtype(variable.dtype, np.signedinteger):
            encoding[name]["fill_value"] = -1
    return encoding


def is_zip_store(path: str | Path) -> bool:
    """Whether ``path`` names a Zarr store kept in one zip file (``*.zarr.zip``) rather than a directory."""
    return str(path).endswith(".zip")


def write_store(ds: xr.Dataset, path: str | Path) -> None:
    """Write ``ds`` as a Zarr format 3 store at ``path``, atomically (encodings read from other stores are dropped).

    A path ending in ``.zip`` gets the store in one zip file (the per-checkpoint probe stores: one file
    each, whose changes Snakemake sees by modification time); any other path a directory store.
    Metadata is consolidated so that a plain ``xr.open_zarr(path)`` opens it
    quietly; zarr's warning that consolidation is not yet in the v3 spec is
    silenced here.
    """
    ds = ds.copy()
    for variable in ds.variables.values():
        variable.encoding = {}
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part", category=UserWarning)
        if not is_zip_store(path):
            ds.to_zarr(tmp, mode="w-", zarr_format=3, consolidated=True, encoding=_encoding(ds))
            return
        # zarr rewrites metadata while it writes, which a zip file cannot take: zip the finished store
        with tempfile.TemporaryDirectory(prefix=f".{Path(path).name}.", dir=Path(path).parent) as directory:
            ds.to_zarr(directory, mode="w-", zarr_format=3, consolidated=True, encoding=_encoding(ds))
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
                for file in sorted(Path(directory).rglob("*")):
                    if file.is_file():
                        archive.write(file, file.relative_to(directory).as_posix())


def open_store(path: str | Path) -> xr.Dataset:
    """Open a geomvol store with xarray (lazily; a zip store is read into memory and closed)."""
    if is_zip_store(path):
        store = zarr.storage.ZipStore(path, mode="r")
        try:
            return xr.open_zarr(store, zarr_format=3, consolidated=True).load()
        finally:
            store.close()
    return xr.open_zarr(path, zarr_format=3, consolidated=True)


def combine_probes(
    probe_paths: list[str | Path],
    experiment: str,
    experiment_config: dict,
    data_path: str | Path,
    manifest_path: str | Path,
    output: str | Path,
) -> xr.Dataset:
    """Join the probe stores of one experiment and write the combined store.

    Adds, for 2-D data, the training points (dim ``point``), and provenance
    attrs; per-checkpoint values stay coordinates along (seed, epoch).
    """
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
        at = {"seed": part["seed"].values[0], "epoch": part["epoch"].values[0]}
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
    versions = package_versions()
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
        "geomvol_version": versions["geomvol"],
        "git_commit": git_commit(),
        "package_versions": versions,
        "host": host(),
    }
    write_store(ds, output)
    return ds
