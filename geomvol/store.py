"""Zarr (format 3) stores: writing (atomically, chunked one (seed, epoch, block, plane or line) slice at a
time) and opening them with xarray. Probe stores are zip files, one per checkpoint; the combined and
measures stores directories (see :mod:`geomvol.stages` for what each holds).
"""

from __future__ import annotations

import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from geomvol.io import atomic_path

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
