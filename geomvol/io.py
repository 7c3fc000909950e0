"""Atomic writes (an output appears complete or not at all), and a lock one process holds at a time."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary sibling path; on success rename it to ``path``.

    Works for files and directories (a Zarr store). On failure the temporary
    path is removed, so a crashed or killed writer never leaves ``path``
    looking complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def save_torch(obj, path: str | Path) -> None:
    """``torch.save`` atomically, through a file handle.

    Saving through a handle names the archive's records 'archive/...' rather
    than after the (temporary) file name, so equal objects give equal bytes.
    """
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)


@contextlib.contextmanager
def exclusive_lock(path: str | Path):
    """Hold an exclusive lock on the file ``path`` (created if missing), waiting while another process holds
    it; the kernel drops it if the process dies."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
