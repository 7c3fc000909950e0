"""Verify on read: what a stage writes carries the sha256 its producer computed, and what a stage reads is
checked against it first.

Two kinds of record, both JSON:

- a **file record**, ``<file>.integrity.json`` beside the file (a checkpoint, a probe store):
  ``{"file": name, "bytes": size, "sha256": hex}``;
- a **tree record**, ``integrity.json`` inside a directory (a Zarr store, a training run's directory):
  ``{"files": {relative path: {"bytes": size, "sha256": hex}}}``, every file of the tree but the record
  itself and Snakemake's ``.snakemake_timestamp``.

:func:`verify` recomputes a record's sha256 (a missing or added file of a tree, such as a deleted Zarr chunk,
fails it too); :func:`quick_check` compares sizes and file lists only, cheaply enough for the Snakefile to
check every output before it plans (see ``stale_outputs`` in ``workflow/rules/common.smk``). A reader that
meets a damaged input moves it aside (:func:`set_aside`, never deleting it) and fails naming it, so that the
next run re-makes it. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from geomvol.errors import DataError, GeomvolError
from geomvol.io import atomic_path
from geomvol.provenance import sha256_file

FILE_RECORD_SUFFIX = ".integrity.json"
TREE_RECORD = "integrity.json"
_NOT_CONTENT = {TREE_RECORD, ".snakemake_timestamp"}


class IntegrityError(GeomvolError):
    """A file or directory whose bytes differ from the sha256 its producer recorded (or that lacks its record)."""


def file_record_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + FILE_RECORD_SUFFIX)


def _entry(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def write_file_record(path: str | Path, **details) -> str:
    """Record ``path``'s size and sha256 (and ``details``, such as the file it was copied from) in
    ``<path>.integrity.json``, written atomically; returns the sha256."""
    path = Path(path)
    entry = _entry(path)
    with atomic_path(file_record_path(path)) as tmp:
        tmp.write_text(json.dumps({"file": path.name, **entry, **details}, indent=2) + "\n")
    return entry["sha256"]


def _tree_files(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*")
                  if path.is_file() and path.name not in _NOT_CONTENT and not path.name.startswith(".nfs"))


def write_tree_record(directory: str | Path) -> dict:
    """Record every file of ``directory`` (its path inside, size and sha256) in ``directory/integrity.json``, and
    return the record's files. Call it on the finished tree before it is renamed into place, so that the record
    comes with the tree."""
    directory = Path(directory)
    files = {path.relative_to(directory).as_posix(): _entry(path) for path in _tree_files(directory)}
    (directory / TREE_RECORD).write_text(json.dumps({"files": files}, indent=1, sort_keys=True) + "\n")
    return files


def _read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def recorded_sha256(path: str | Path) -> str | None:
    """The sha256 a file's record holds (None without a readable record)."""
    record = _read_record(file_record_path(path))
    return None if record is None else record.get("sha256")


NO_RECORD = "has no readable"


def _problems(path: Path, full: bool) -> list[str]:
    """What is wrong with ``path`` against its record: sizes and file lists, and (``full``) the sha256."""
    if not path.exists():
        return [f"{path} is missing"]
    if path.is_dir():
        record = _read_record(path / TREE_RECORD)
        if record is None or not isinstance(record.get("files"), dict):
            return [f"{path} {NO_RECORD} {TREE_RECORD} (made by an older geomvol, or damaged)"]
        expected = record["files"]
        present = {file.relative_to(path).as_posix(): file for file in _tree_files(path)}
        problems = [f"{path / name} is missing" for name in sorted(set(expected) - set(present))]
        problems += [f"{present[name]} is not in the record" for name in sorted(set(present) - set(expected))]
        for name in sorted(set(expected) & set(present)):
            problems += _entry_problems(present[name], expected[name], full)
        return problems
    record = _read_record(file_record_path(path))
    if record is None or "sha256" not in record:
        return [f"{path} {NO_RECORD} record {file_record_path(path).name} (made by an older geomvol, or damaged)"]
    return _entry_problems(path, record, full)


def _entry_problems(path: Path, entry: dict, full: bool) -> list[str]:
    size = path.stat().st_size
    if size != entry.get("bytes"):
        return [f"{path} has {size} bytes, its producer wrote {entry.get('bytes')}"]
    if full and sha256_file(path) != entry.get("sha256"):
        return [f"{path} does not match the sha256 its producer recorded"]
    return []


def quick_check(path: str | Path) -> list[str]:
    """Sizes and file lists of ``path`` against its record, without reading the bytes: what is wrong (empty if
    nothing is seen)."""
    return _problems(Path(path), full=False)


def source_problems(path: str | Path) -> list[str]:
    """Whether the file ``path`` was made from (the ``source`` its record names, with the size and mtime it had
    then: ``source_bytes``, ``source_mtime_ns``) has changed since, even to an older mtime that Snakemake's own
    check would take for unchanged: what is wrong (empty if nothing is seen, or the record names no source)."""
    record = _read_record(file_record_path(path))
    if record is None or "source_mtime_ns" not in record:
        return []
    try:
        now = Path(record["source"]).stat()
    except OSError:
        return [f"its source {record['source']} is missing"]
    if (now.st_size, now.st_mtime_ns) != (record["source_bytes"], record["source_mtime_ns"]):
        return [f"its source {record['source']} has changed since it was made from it"]
    return []


def is_intact(path: str | Path) -> bool:
    """Whether ``path`` matches its record in full (sha256 of every byte)."""
    return not _problems(Path(path), full=True)


def set_aside(path: str | Path) -> Path:
    """Move a damaged ``path`` (and its file record, if any) to ``<name>.damaged-<UTC time>`` beside it, so that
    it is kept for inspection but no longer taken for the output; returns where it went."""
    path = Path(path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    os.replace(path, target)
    record = file_record_path(path)
    if record.exists():
        os.replace(record, file_record_path(target))
    return target


REMAKE = "run snakemake again to re-make it"


def verify(path: str | Path, what: str = "input") -> Path:
    """Check ``path`` against its record in full; on a mismatch move it aside (:func:`set_aside`) and raise
    :class:`IntegrityError` naming it, what is wrong and what to do. Returns ``path``."""
    path = Path(path)
    problems = _problems(path, full=True)
    if not problems:
        return path
    if not path.exists():
        raise IntegrityError(f"{what} {path} is missing; {REMAKE}")
    if NO_RECORD in problems[0]:  # nothing to compare with: not known to be damaged, so left in place
        raise IntegrityError(f"{what} {problems[0]}; {REMAKE}")
    moved = set_aside(path)
    shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
    raise IntegrityError(f"{what} {path} is damaged ({shown}); moved aside to {moved}; {REMAKE}")


def dataset_problems(data: str | Path, manifest: str | Path) -> list[str]:
    """A prepared data set's size against the one its manifest recorded (empty if they agree, or if the
    manifest predates the record of sizes)."""
    record = _read_record(Path(manifest))
    if record is None:
        return [f"its manifest {manifest} is missing or unreadable"]
    if "bytes" in record and Path(data).stat().st_size != record["bytes"]:
        return [f"{data} has {Path(data).stat().st_size} bytes, its manifest {manifest} recorded {record['bytes']}"]
    return []


def verify_dataset(data: str | Path, manifest: str | Path) -> str:
    """The sha256 of the prepared data set ``data``, after checking it against the one its ``manifest``
    recorded; a mismatch moves it aside (:func:`set_aside`) and raises, so that the next run prepares it again."""
    data, record = Path(data), _read_record(Path(manifest))
    if record is None or "sha256" not in record:
        raise DataError(f"data set manifest {manifest} is missing or unreadable; run snakemake again to prepare the "
                        f"data set anew (delete {manifest} first)")
    if not data.is_file():
        raise DataError(f"data set {data} is missing; run snakemake again to prepare it")
    sha256 = sha256_file(data)
    if sha256 != record["sha256"]:
        raise IntegrityError(f"data set {data} does not match the sha256 its manifest {manifest} recorded; moved "
                             f"aside to {set_aside(data)}; run snakemake again to prepare it anew")
    return sha256


def stale_outputs(edges) -> dict[str, str]:
    """Which existing outputs must be made again, and why. ``edges``: (output, its inputs, ``check``) for every
    output of the pipeline, producers before consumers, ``check`` a function of the output returning what is
    wrong with it (:func:`quick_check` for an output with an integrity record) or None. An output is stale
    when its check finds a problem, or when one of its inputs is missing (a failed job's reader moved it
    aside, or Snakemake deleted a failed job's outputs): Snakemake would not re-make a missing intermediate
    file while what it feeds exists, and would report nothing to do. What follows a stale output is
    re-made after it by Snakemake itself, and not listed."""
    stale = {}
    for output, inputs, check in edges:
        if output in stale or not Path(output).exists():
            continue
        problems = check(output) if check is not None else []
        if problems:
            stale[output] = problems[0]
            continue
        missing = next((str(path) for path in inputs if path not in stale and not Path(path).exists()), None)
        if missing is not None:
            stale[output] = f"its input {missing} is missing"
    return stale
