"""Lineage of every output: checksums, code and package versions, device."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import geomvol
from geomvol.errors import ConfigError

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(path: str | Path) -> str:
    """sha256 of a directory (a Zarr store): of each file's relative path and sha256, in sorted order.

    Snakemake's ``.snakemake_timestamp`` marker is not part of the content and is skipped.
    """
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".snakemake_timestamp"):
        digest.update(f"{file.relative_to(root).as_posix()}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def sha256_of(path: str | Path) -> str | None:
    """sha256 of a file, or of a directory store (:func:`sha256_tree`); None if ``path`` does not exist."""
    path = Path(path)
    if path.is_dir():
        return sha256_tree(path)
    if path.is_file():
        return sha256_file(path)
    return None


def factory_parts(factory: str) -> tuple[str, str]:
    """A model factory ``"package.module:build"`` or ``"path/to/file.py:build"`` as (module or file, name)."""
    where, _, name = factory.rpartition(":")
    if not where or not name.isidentifier():
        raise ConfigError(f"model factory {factory!r}: write it as 'package.module:function' or "
                          f"'path/to/file.py:function'")
    return where, name


def factory_source(factory: str) -> Path:
    """The source file of a model factory, found without running anything: the file named (a path is relative to
    the working directory, as every path of the config), or the file of the module named (``package.module``:
    ``package/module.py`` or ``package/module/__init__.py``, found on ``sys.path`` without importing the package).
    :class:`ConfigError` if there is none."""
    from importlib.machinery import PathFinder

    where, _ = factory_parts(factory)
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ConfigError(f"model factory {factory!r}: no file {where} (relative to {Path.cwd()})")
        return path
    spec, locations = None, None
    for part in where.split("."):
        spec = PathFinder.find_spec(part, locations) if part.isidentifier() else None
        if spec is None:
            raise ConfigError(f"model factory {factory!r}: no module {where} on the Python path (install it, or "
                              f"give a file: 'path/to/file.py:function')")
        locations = spec.submodule_search_locations
    if not spec.origin or not Path(spec.origin).is_file():
        raise ConfigError(f"model factory {factory!r}: module {where} has no source file")
    return Path(spec.origin)


def git_commit() -> str:
    """The commit of the geomvol source tree ('+dirty' if it has changes), or 'unknown'."""
    source = Path(geomvol.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


@functools.cache
def code_sha256() -> str:
    """sha256 of the geomvol package's own code as it runs: each source file's path (relative to the package) and
    bytes, the Python modules and the config schema. Unlike the commit it names uncommitted code exactly."""
    package = Path(geomvol.__file__).resolve().parent
    digest = hashlib.sha256()
    for file in sorted([*package.rglob("*.py"), package / "config.schema.yaml"]):
        digest.update(f"{file.relative_to(package).as_posix()}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the numbers and the files."""
    versions = {"python": platform.python_version(), "geomvol": geomvol.__version__}
    for name in ("torch", "torchvision", "timm", "numpy", "xarray", "zarr", "snakemake", "matplotlib"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def host() -> str:
    return os.uname().nodename


def record() -> dict:
    """What made an output, as every stage records it (manifests, store attrs, figure metadata): geomvol's
    version, the commit of its source tree and the sha256 of its code, the versions of the packages that shape the
    numbers, the host."""
    return {"geomvol_version": geomvol.__version__, "git_commit": git_commit(), "code_sha256": code_sha256(),
            "package_versions": package_versions(), "host": host()}
