"""Choosing the torch device from a config value, naming it in outputs, and giving a job its own GPU
(before torch starts: this module imports torch only to choose and name a device)."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from geomvol.errors import GeomvolError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when available, else CPU; asking for CUDA without one is an error.

    A CUDA device comes back with its index (``cuda:0``), so that outputs name the very card.
    """
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GeomvolError(f"device {name!r} was requested but torch sees no CUDA device")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def device_label(device: torch.device) -> str:
    """'cpu', or 'cuda:0 (NVIDIA H100 80GB HBM3)': what the store records as the probe's device."""
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


GPU_LOCKS_ENV = "GEOMVOL_GPU_LOCKS"
"""Environment variable naming the directory of GPU lock files (default: a per-user one under the
machine's temporary directory, so that the jobs of one machine, and only they, share it)."""


def listed_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries: the variable's own entries when it
    is set (SLURM sets it to the job's GPUs), else the UUID of every GPU nvidia-smi lists; [] for none."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        return [entry.strip() for entry in value.split(",") if entry.strip()]
    try:
        listing = subprocess.run(["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return listing.stdout.split() if listing.returncode == 0 else []


def _now() -> str:
    return datetime.now().isoformat(timespec="milliseconds")


def _try_lock(path: Path):
    """An open file holding an exclusive lock on ``path``, or None while another process holds it."""
    handle = open(path, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


@contextmanager
def job_gpus(count: int, lock_dir: Path | None = None, poll_seconds: float = 2.0):
    """Give this job ``count`` GPUs by setting CUDA_VISIBLE_DEVICES before torch initialises CUDA.

    Snakemake counts a ``gpu`` resource (``--resources gpu=N`` caps how many GPU jobs run at once) but
    does not say which card a job gets. So: ``count`` 0 hides every GPU, and the job runs on the CPU as
    its resources declare. With more GPUs listed than asked for, the job claims free ones under
    exclusive file locks, held until the job ends (the kernel drops them when the process dies), and
    waits while all are claimed; two jobs of one machine never get the same card. With no more listed
    than asked for (a SLURM job sees just its own), the listing stays as it is. Each step is printed
    with its time, into the job's log.
    """
    if count == 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        print(f"{_now()} GPU: none for this job (CUDA_VISIBLE_DEVICES set empty)", flush=True)
        yield []
        return
    listed = listed_gpus()
    if len(listed) <= count:
        print(f"{_now()} GPU: this job uses all that are listed: {','.join(listed) or 'none'}", flush=True)
        yield listed
        return
    lock_dir = Path(lock_dir or os.environ.get(GPU_LOCKS_ENV)
                    or Path(tempfile.gettempdir()) / f"geomvol-gpu-locks-{os.getuid()}")
    lock_dir.mkdir(parents=True, exist_ok=True)
    waiting_said = False
    with ExitStack() as held:
        while True:
            claimed = []
            for entry in listed:
                handle = _try_lock(lock_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", entry) + ".lock"))
                if handle is not None:
                    held.callback(handle.close)
                    claimed.append(entry)
                    if len(claimed) == count:
                        break
            if len(claimed) == count:
                break
            held.close()
            if not waiting_said:
                print(f"{_now()} GPU: all of {','.join(listed)} are claimed by other jobs (locks in {lock_dir}); "
                      f"waiting", file=sys.stderr, flush=True)
                waiting_said = True
            time.sleep(poll_seconds)
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(claimed)
        print(f"{_now()} GPU: claimed {','.join(claimed)} of {','.join(listed)}; "
              f"this job uses CUDA_VISIBLE_DEVICES={','.join(claimed)}", flush=True)
        try:
            yield claimed
        finally:
            print(f"{_now()} GPU: released {','.join(claimed)}", flush=True)
