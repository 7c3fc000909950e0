import pytest
import torch

from geomvol.device import device_label, resolve_device
from geomvol.errors import GeomvolError


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
