"""The engine, the probe and training on a CUDA device; skipped where torch sees none.

Run on a GPU machine with ``bash benchmarks/gpu_check.sh``.
"""

import math

import numpy as np
import pytest
import torch

from helpers import conv_batchnorm_net, flops, tiny_experiment, train_with_metrics, training_run
from geomvol.stages import prepare_dataset
from geomvol.geometry import jacobian, log_volume, subspace_jacobian
from geomvol.models import build_model
from geomvol.models.registry import model_spec
from geomvol.probe import probe_checkpoint
from geomvol.train.checkpoint import load_checkpoint
from geomvol.settings import ProbeSettings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def test_mnist_sized_net_in_float32_on_cuda_matches_float64_on_cpu():
    torch.manual_seed(0)
    model = build_model(model_spec({"name": "shallow", "width": 2000, "activation": "sigmoid"}, [784], 10))
    model.eval().requires_grad_(False)
    x = torch.rand(6, 784)
    basis = torch.randn(784, 2)
    exact_full = log_volume(model.double().hidden, x.double())
    exact_plane = log_volume(model.hidden, x.double(), basis=basis.double())
    model.float().to(CUDA)
    full = log_volume(model.hidden, x.to(CUDA), memory_budget_bytes=2**30)
    plane = log_volume(model.hidden, x.to(CUDA), basis=basis.to(CUDA))
    assert full.device.type == "cuda" and full.dtype == torch.float32
    assert torch.max(torch.abs(full.cpu().double() - exact_full)) / math.log(10) < 1e-3
    assert torch.max(torch.abs(plane.cpu().double() - exact_plane)) / math.log(10) < 1e-4


def test_plane_metric_on_cuda_equals_cpu_in_float64():
    """The plane metric's eigenvalues and leading direction (the direction of the stretch) on a GPU."""
    from geomvol.geometry import plane_metric

    net = conv_batchnorm_net()
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    basis = torch.linalg.qr(torch.randn(768, 2, dtype=torch.float64)).Q
    expected = plane_metric(net, x, basis)
    measured = plane_metric(net.to(CUDA), x.to(CUDA), basis.to(CUDA))
    for field in ("log_volume", "log_eigenvalues", "angle"):
        torch.testing.assert_close(getattr(measured, field).cpu(), getattr(expected, field), rtol=1e-9, atol=1e-9)


def test_conv_batchnorm_net_on_cuda_equals_cpu_in_float64():
    net = conv_batchnorm_net()
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    basis = torch.randn(768, 3, dtype=torch.float64)
    expected_plane, expected_full = subspace_jacobian(net, x, basis), jacobian(net, x)
    net.to(CUDA)
    torch.testing.assert_close(subspace_jacobian(net, x.to(CUDA), basis.to(CUDA)).cpu(), expected_plane, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(jacobian(net, x.to(CUDA), directions_per_chunk=4).cpu(), expected_full, rtol=1e-9, atol=1e-12)


def test_constant_parameter_rules_apply_on_cuda():
    net = conv_batchnorm_net().to(CUDA)
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64, device=CUDA)
    basis = torch.randn(768, 3, dtype=torch.float64, device=CUDA)
    forward, _ = flops(lambda: net(x))
    with_rules, _ = flops(lambda: subspace_jacobian(net, x, basis))
    assert with_rules == 4 * forward


def test_training_and_probing_on_cuda(tmp_path):
    experiment = tiny_experiment()
    data, manifest = tmp_path / "dataset.pt", tmp_path / "manifest.json"
    prepare_dataset(experiment["dataset"], data, manifest)
    on_cpu = train_with_metrics(training_run(experiment), data, tmp_path / "cpu", tmp_path / "cpu-state", tmp_path / "cpu.tsv")
    cuda_spec = training_run(experiment)
    cuda_spec["training"] = {**cuda_spec["training"], "device": "cuda"}
    on_cuda = train_with_metrics(cuda_spec, data, tmp_path / "cuda", tmp_path / "cuda-state", tmp_path / "cuda.tsv")

    cpu_state, cuda_state = load_checkpoint(on_cpu[-1]), load_checkpoint(on_cuda[-1])
    for name, value in cpu_state["model"].items():
        assert cuda_state["model"][name].device.type == "cpu"  # checkpoints load anywhere
        torch.testing.assert_close(cuda_state["model"][name], value, rtol=1e-3, atol=1e-4)

    probe = {**experiment["probe"], "dtype": "float64"}
    cpu_probe = probe_checkpoint(on_cuda[-1], data, ProbeSettings.from_section(probe))
    cuda_probe = probe_checkpoint(on_cuda[-1], data, ProbeSettings.from_section({**probe, "device": "cuda"}))
    assert cuda_probe["probe_device"].item() == f"cuda:0 ({torch.cuda.get_device_name(0)})"
    assert cpu_probe["probe_device"].item() == "cpu"
    np.testing.assert_allclose(cuda_probe["log10_volume"].values, cpu_probe["log10_volume"].values, rtol=1e-10)
    np.testing.assert_array_equal(cuda_probe["predicted_class"].values, cpu_probe["predicted_class"].values)


@pytest.mark.parametrize("objective", ["cross_entropy", "barlow_twins"])
def test_resnet_trains_on_cuda_with_bf16_and_channels_last(tmp_path, objective):
    """One epoch of the CIFAR ResNet34 on synthetic CIFAR-10: data and augmentation on the GPU, bf16 autocast,
    channels-last; the checkpoint loads on the CPU and the metrics are finite."""
    from geomvol.config import resolve_config
    from geomvol.data.images import write_synthetic

    write_synthetic("CIFAR10", tmp_path / "raw", 64, 32, seed=0)
    config = {"experiments": {"c": {
        "dataset": {"name": "cifar10", "root": str(tmp_path / "raw")},
        "model": {"name": "resnet34"},
        "training": {"epochs": 1, "batch_size": 32, "device": "cuda", "save_epochs": [1],
                     "optimizer": {"name": "sgd", "lr": 0.01}, "objective": {"name": objective},
                     **({"augmentation": {"crop_padding": 4, "horizontal_flip": True}} if objective == "cross_entropy" else {})},
        "probe": {"planes": [{"indices": [0, 1, 2]}], "plane": {"resolution": 3}, "metric": "subspace",
                  "feature_maps": ["block1", "pooled"], "spectra": False},
    }}}
    experiment = resolve_config(config)["experiments"]["c"]
    data = tmp_path / "dataset.pt"
    prepare_dataset(experiment["dataset"], data, tmp_path / "manifest.json")
    checkpoints = train_with_metrics(training_run(experiment), data, tmp_path / "ck", tmp_path / "state", tmp_path / "m.tsv")
    state = load_checkpoint(checkpoints[-1])
    assert all(value.device.type == "cpu" for value in state["model"].values())
    assert all(math.isfinite(v) for v in state["history"]["loss"] + state["history"].get("test_loss", []))
    probe = {**experiment["probe"], "dtype": "float64"}
    on_cpu = probe_checkpoint(checkpoints[-1], data, ProbeSettings.from_section({**probe, "device": "cpu"}))
    on_cuda = probe_checkpoint(checkpoints[-1], data, ProbeSettings.from_section({**probe, "device": "cuda"}))
    np.testing.assert_allclose(on_cuda["plane_log10_volume"].values, on_cpu["plane_log10_volume"].values, rtol=1e-9)
    np.testing.assert_array_equal(on_cuda["plane_predicted_class"].values, on_cpu["plane_predicted_class"].values)
