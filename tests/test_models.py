import torch
from torch import nn

from geomvol.geometry import log_volume
from geomvol.models import build_model, feature_map
from geomvol.models.registry import model_spec
from geomvol.models.resnet import CifarResNet34


def test_shallow_net_reads_like_the_paper():
    torch.manual_seed(0)
    model = build_model(model_spec({"name": "shallow", "width": 250, "activation": "sigmoid"}, [2], 2))
    x = torch.randn(5, 2)
    hidden = torch.sigmoid(x @ model.hidden_layer.weight.T + model.hidden_layer.bias)
    torch.testing.assert_close(feature_map(model, "hidden")(x), hidden)
    torch.testing.assert_close(model(x), model.readout(hidden / 250**0.5))
    # N(0, 1) initialisation of every weight and bias
    weights = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert abs(weights.mean()) < 0.1 and abs(weights.std() - 1) < 0.1


def test_cifar_resnet34_gelu_feature_maps():
    torch.manual_seed(0)
    model = CifarResNet34().eval()
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert isinstance(model.net.maxpool, nn.Identity)
    assert model.net.conv1.kernel_size == (3, 3) and model.net.conv1.stride == (1, 1)
    x = torch.randn(2, 3, 32, 32)
    maps = model.feature_maps()
    assert sorted(maps) == ["block1", "block2", "block3", "block4", "pooled"]
    widths = {name: fm(x).shape for name, fm in maps.items()}
    assert widths == {"pooled": (2, 512), "block1": (2, 64), "block2": (2, 128), "block3": (2, 256), "block4": (2, 512)}
    assert model(x).shape == (2, 10)
    torch.testing.assert_close(maps["pooled"](x), maps["block4"](x))


def test_plane_volume_of_the_resnet_is_finite():
    torch.manual_seed(0)
    model = CifarResNet34().eval().requires_grad_(False)
    x = torch.randn(2, 3, 32, 32)
    basis = torch.linalg.qr(torch.randn(3 * 32 * 32, 2)).Q
    volume = log_volume(model.pooled, x, basis=basis, memory_budget_bytes=2**28)
    assert volume.shape == (2,) and torch.all(torch.isfinite(volume))


def test_resnet_relu_is_honoured_in_every_block_and_pooled_is_block4():
    torch.manual_seed(0)
    relu = build_model(model_spec({"name": "resnet34", "activation": "relu"}, [3, 32, 32], 10)).eval()
    assert not any(isinstance(m, nn.GELU) for m in relu.modules())
    assert all(isinstance(block.relu, nn.ReLU) for stage in (relu.net.layer1, relu.net.layer4) for block in stage)
    gelu = build_model(model_spec({"name": "resnet34", "activation": "gelu"}, [3, 32, 32], 10)).eval()
    assert all(isinstance(block.relu, nn.GELU) for stage in (gelu.net.layer1, gelu.net.layer4) for block in stage)
    x = torch.randn(2, 3, 32, 32)
    for alias, name in gelu.feature_map_aliases.items():
        torch.testing.assert_close(feature_map(gelu, alias)(x), feature_map(gelu, name)(x), rtol=0, atol=0)


def test_shallow_net_flattens_images():
    torch.manual_seed(0)
    model = build_model(model_spec({"name": "shallow", "width": 5, "activation": "sigmoid", "weight_std": 0.1},
                                   [1, 28, 28], 10))
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(model.hidden(x), torch.sigmoid(x.reshape(3, 784) @ model.hidden_layer.weight.T
                                                            + model.hidden_layer.bias))
    assert model(x).shape == (3, 10)
    assert abs(model.hidden_layer.weight.std().item() - 0.1) < 0.01 and abs(model.readout.weight.std().item() - 1) < 0.5
