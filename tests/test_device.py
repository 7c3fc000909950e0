import fcntl
import itertools
import os
import re
import subprocess
import sys
import threading
import time
from datetime import datetime

import pytest
import torch
import yaml

from geomvol.device import GPU_LOCKS_ENV, device_label, job_gpus, resolve_device
from geomvol.errors import GeomvolError
from helpers import ROOT


def test_auto_and_named_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert device_label(resolve_device("cpu")) == "cpu"
    if torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cuda", torch.cuda.current_device())
        assert device_label(resolve_device("cuda")).startswith("cuda:")
    else:
        assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_a_clear_error(name):
    with pytest.raises(GeomvolError, match=f"device '{name}' was requested but torch sees no CUDA device"):
        resolve_device(name)


def _hold(lock_dir, entry):
    """Claim GPU ``entry`` the way another job's job_gpus would: an exclusive lock on its file."""
    handle = open(lock_dir / f"{entry}.lock", "a")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def test_a_job_without_gpus_sees_none(monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with job_gpus(0) as gpus:
        assert gpus == [] and os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert "GPU: none for this job" in capsys.readouterr().out


def test_a_job_that_sees_only_its_own_gpu_keeps_it(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-7f3a")  # as SLURM sets it for a --gpus=1 job
    with job_gpus(1, lock_dir=tmp_path) as gpus:
        assert gpus == ["GPU-7f3a"] and os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-7f3a"
    assert list(tmp_path.iterdir()) == []  # nothing to share, no lock taken


def test_a_job_claims_a_free_gpu_and_waits_while_all_are_claimed(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    first, second = _hold(tmp_path, "0"), _hold(tmp_path, "2")
    with job_gpus(1, lock_dir=tmp_path, poll_seconds=0.01) as gpus:
        assert gpus == ["1"] and os.environ["CUDA_VISIBLE_DEVICES"] == "1"
        with pytest.raises(BlockingIOError):  # held for the whole job
            _hold(tmp_path, "1")
    _hold(tmp_path, "1").close()  # and released after it

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    started = time.monotonic()  # before the timer starts: its 0.2 s cannot have begun earlier
    threading.Timer(0.2, second.close).start()  # the job holding card 2 ends
    with job_gpus(1, lock_dir=tmp_path, poll_seconds=0.01) as gpus:
        assert gpus == ["2"] and os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    assert time.monotonic() - started >= 0.2
    first.close()
    assert "all of 0,2 are claimed by other jobs" in capsys.readouterr().err


GPU_LINE = re.compile(r"^(\S+) GPU: (claimed|released) (\S+)", re.MULTILINE)


@pytest.mark.slow
@pytest.mark.workflow
def test_snakemake_jobs_side_by_side_each_get_their_own_gpu(tmp_path, mnist_root):
    """4 GPU trainings under --resources gpu=2 on a machine listing 2 GPUs (CUDA_VISIBLE_DEVICES=0,1):
    each job's log names the card it claimed; jobs whose runs overlap never share one, and no more than
    2 hold one at a time. Runs without GPUs: torch then finds no CUDA and trains on the CPU."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"experiments": {"gpus": {
        "seeds": [0, 1, 2, 3],
        "seed_group_size": 1,  # four training jobs
        "dataset": {"name": "mnist", "root": str(mnist_root), "n_train": 40, "n_test": 20},
        "model": {"name": "shallow", "width": 8, "weight_std": 0.05},
        "training": {"epochs": 2, "batch_size": 10, "device": "auto"},
        "probe": {"device": "cpu", "lines": [{"classes": [7, 6], "seed": 0}]},
    }}}))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1", GPU_LOCKS_ENV: str(tmp_path / "locks")}
    targets = [f"results/gpus/s{seed}/train_metrics.tsv" for seed in range(4)]
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(config), "--cores", "4", "--resources", "gpu=2", "--workflow-profile", "none",
         *targets], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr

    spans = []
    for seed in range(4):
        log = (tmp_path / f"results/gpus/logs/train_s{seed}.log").read_text()
        (start, what, gpu), (end, what_then, gpu_then) = GPU_LINE.findall(log)
        assert (what, what_then, gpu_then) == ("claimed", "released", gpu) and gpu in ("0", "1"), log
        spans.append((datetime.fromisoformat(start), datetime.fromisoformat(end), gpu))
    overlapping = [(a, b) for a, b in itertools.combinations(spans, 2) if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, f"no two jobs ran side by side: {spans}"
    assert all(a[2] != b[2] for a, b in overlapping), spans
    at_once = max(sum(s[0] <= start < s[1] for s in spans) for start, _, _ in spans)
    assert at_once <= 2, spans
    prepare_log = (tmp_path / "results/gpus/logs/prepare_dataset.log").read_text()
    assert "GPU" not in prepare_log  # CPU-only rules are left alone
