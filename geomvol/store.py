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

from geomvol import integrity
from geomvol.integrity import write_file_record, write_tree_record
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
    silenced here. The store's integrity record (:mod:`geomvol.integrity`) is written with it: ``integrity.json``
    inside a directory store, ``<path>.integrity.json`` beside a zip store.
    """
    ds = ds.copy()
    for variable in ds.variables.values():
        variable.encoding = {}
    zipped = is_zip_store(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part", category=UserWarning)
        if zipped:  # zarr rewrites metadata while it writes, which a zip file cannot take: zip the finished store
            with tempfile.TemporaryDirectory(prefix=f".{Path(path).name}.", dir=Path(path).parent) as directory:
                ds.to_zarr(directory, mode="w-", zarr_format=3, consolidated=True, encoding=_encoding(ds))
                with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
                    for file in sorted(Path(directory).rglob("*")):
                        if file.is_file():
                            archive.write(file, file.relative_to(directory).as_posix())
        else:
            ds.to_zarr(tmp, mode="w-", zarr_format=3, consolidated=True, encoding=_encoding(ds))
            write_tree_record(tmp)
    if zipped:
        write_file_record(path)


def open_store(path: str | Path, verify: str = "sizes") -> xr.Dataset:
    """Open a geomvol store with xarray (lazily; a zip store is read into memory and closed).

    A store that carries an integrity record (:mod:`geomvol.integrity`) is first checked against it. With
    ``verify="sizes"`` (the default): every file it lists is there, at its size (a deleted Zarr chunk would
    otherwise read back as NaN). With ``"sha256"``: every byte's sha256 too, and a damaged store is moved
    aside (:func:`geomvol.integrity.verify`, as the pipeline's stages read their inputs). Either way a
    mismatch raises :class:`geomvol.integrity.IntegrityError` naming the store. ``"none"`` checks nothing
    (``geomvol trace``, which reports what differs rather than stopping at it).
    """
    if verify == "sha256":
        integrity.verify(path, "store")
    elif verify == "sizes":
        problems = integrity.quick_check(path)
        if problems and not any(integrity.NO_RECORD in problem for problem in problems):
            raise integrity.IntegrityError(f"store {path} does not match its integrity record: {'; '.join(problems[:5])}"
                                           f"; re-make it (snakemake re-makes it on its next run)")
    elif verify != "none":
        raise ValueError(f"verify must be 'sizes', 'sha256' or 'none', not {verify!r}")
    try:
        if is_zip_store(path):
            store = zarr.storage.ZipStore(path, mode="r")
            try:
                return xr.open_zarr(store, zarr_format=3, consolidated=True).load()
            finally:
                store.close()
        return xr.open_zarr(path, zarr_format=3, consolidated=True)
    except Exception as error:  # a truncated zip, a missing zarr.json: name the store, whatever zarr raised
        raise integrity.IntegrityError(f"store {path} is unreadable (damaged or not a geomvol store): "
                                       f"{type(error).__name__}: {error}") from error
