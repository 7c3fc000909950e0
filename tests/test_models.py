import math

import pytest
import torch
from torch import nn

from geomvol.catalogue import STUDY_BLOCK_WINDOWS, block_windows, feature_width, resnet_block_shape, same_feature_maps
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
    # the study's readout scales the bias with the weights: (R h + c) / sqrt(n)
    torch.testing.assert_close(model(x), model.readout(hidden) / 250**0.5)
    # N(0, 1) initialisation of every weight and bias
    weights = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert abs(weights.mean()) < 0.1 and abs(weights.std() - 1) < 0.1


def test_shallow_logits_on_fixed_weights_match_the_studys_formula():
    """n = 2 units, d = 1 input, 2 classes, weights written in by hand; logits by the formula, in float64."""
    s = torch.sigmoid
    x = torch.tensor([[0.0], [1.5]], dtype=torch.float64)
    h = torch.stack([s(1.0 * x[:, 0] + 0.5), s(-2.0 * x[:, 0] + 0.0)], dim=1)  # (2 points, 2 units)
    r_h = torch.stack([1.0 * h[:, 0] + 3.0 * h[:, 1], -1.0 * h[:, 0] + 0.0 * h[:, 1]], dim=1)
    c = torch.tensor([2.0, -4.0], dtype=torch.float64)
    for scaled, expected in ((True, (r_h + c) / 2**0.5), (False, r_h / 2**0.5 + c)):
        model = build_model(model_spec({"name": "shallow", "width": 2, "activation": "sigmoid",
                                        "scale_readout_bias": scaled}, [1], 2)).double()
        with torch.no_grad():
            model.hidden_layer.weight.copy_(torch.tensor([[1.0], [-2.0]]))
            model.hidden_layer.bias.copy_(torch.tensor([0.5, 0.0]))
            model.readout.weight.copy_(torch.tensor([[1.0, 3.0], [-1.0, 0.0]]))
            model.readout.bias.copy_(c)
        torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-15)


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
    for block_pooling in ("global_mean", STUDY_BLOCK_WINDOWS):
        windows = block_windows(block_pooling)
        aliases = same_feature_maps({"name": "resnet34"}, (3, 32, 32), block_pooling)
        assert aliases == {"pooled": "block4"}
        for alias, name in aliases.items():
            torch.testing.assert_close(feature_map(gelu, alias, windows)(x), feature_map(gelu, name, windows)(x),
                                       rtol=0, atol=0)
    assert same_feature_maps({"name": "resnet34"}, (3, 32, 32), {**STUDY_BLOCK_WINDOWS, "block4": [2, 2]}) == {}


def test_study_block_pooling_gives_512_values_per_block_of_a_32_by_32_input():
    """The study's windows: block1 64x32x32 -> 64x2x4, block2 128x16x16 -> 128x2x2, block3 256x8x8 -> 256x1x2,
    block4 512x4x4 -> 512; each value the mean over one window of the block's output."""
    torch.manual_seed(0)
    model = build_model(model_spec({"name": "resnet34", "activation": "gelu"}, [3, 32, 32], 10)).eval()
    x = torch.randn(2, 3, 32, 32)
    stages = model._blocks(x, 4)
    expected_maps = {"block1": (64, 32, 32), "block2": (128, 16, 16), "block3": (256, 8, 8), "block4": (512, 4, 4)}
    maps = model.feature_maps(STUDY_BLOCK_WINDOWS)
    for index, (block, shape) in enumerate(expected_maps.items()):
        assert tuple(stages[index].shape[1:]) == shape == resnet_block_shape(block, (3, 32, 32))
        features = maps[block](x)
        width = feature_width({"name": "resnet34"}, block, (3, 32, 32), STUDY_BLOCK_WINDOWS)
        assert features.shape == (2, 512) and width == 512
        h, w = STUDY_BLOCK_WINDOWS[block]
        rows, columns = shape[1] // h, shape[2] // w
        # channel 5, the last window of the first row of windows: the mean over that window
        window = stages[index][:, 5, :h, (columns - 1) * w: columns * w]
        torch.testing.assert_close(features[:, 5 * rows * columns + columns - 1], window.mean(dim=(1, 2)))
    for block, channels in (("block1", 64), ("block2", 128), ("block3", 256), ("block4", 512)):
        assert model.feature_maps()[block](x).shape == (2, channels)  # the global mean
    # the probe's one pass through the trunk gives the blocks one by one
    together = model.blocks_together(["block1", "block3", "pooled"], STUDY_BLOCK_WINDOWS)(x)
    torch.testing.assert_close(together, torch.cat([maps["block1"](x), maps["block3"](x), maps["pooled"](x)], dim=1))


def test_shallow_net_flattens_images():
    torch.manual_seed(0)
    model = build_model(model_spec({"name": "shallow", "width": 5, "activation": "sigmoid", "weight_std": 0.1},
                                   [1, 28, 28], 10))
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(model.hidden(x), torch.sigmoid(x.reshape(3, 784) @ model.hidden_layer.weight.T
                                                            + model.hidden_layer.bias))
    assert model(x).shape == (3, 10)
    assert abs(model.hidden_layer.weight.std().item() - 0.1) < 0.01 and abs(model.readout.weight.std().item() - 1) < 0.5


@pytest.mark.parametrize("init", ["torchvision", "pytorch_default"])
def test_resnet_initialisation_has_the_statistics_of_its_rule(init):
    """Written from the rules, not from geomvol's code: PyTorch's default convolution init (the study's kuangliu
    ResNet) is U(-b, b), b = 1 / sqrt(fan_in), so |w| <= b and std b / sqrt(3); torchvision's is N(0, 2 / fan_out).
    Batch norms start at weight 1, bias 0 in both; the readout is PyTorch's default Linear, U(+-1 / sqrt(512))."""
    torch.manual_seed(0)
    model = build_model(model_spec({"name": "resnet34", "init": init}, [3, 32, 32], 10))
    for conv in (model.net.layer3[1].conv1, model.net.layer4[2].conv2):  # 256 and 512 channels, 3 x 3
        weight = conv.weight.detach()
        out_channels, in_channels, height, width = weight.shape
        fan_in, fan_out = in_channels * height * width, out_channels * height * width
        if init == "pytorch_default":
            bound = 1 / math.sqrt(fan_in)
            assert float(weight.abs().max()) <= bound
            assert float(weight.std()) == pytest.approx(bound / math.sqrt(3), rel=0.01)
        else:
            assert float(weight.std()) == pytest.approx(math.sqrt(2 / fan_out), rel=0.01)
            assert float(weight.abs().max()) > 4 * math.sqrt(2 / fan_out)  # a normal's tails, beyond any uniform's
    batch_norm = model.net.layer4[2].bn2
    assert torch.equal(batch_norm.weight, torch.ones(512)) and torch.equal(batch_norm.bias, torch.zeros(512))
    assert float(model.net.fc.weight.detach().abs().max()) <= 1 / math.sqrt(512)


def test_a_resnet_checkpoint_without_init_builds_torchvisions():
    """Checkpoints written before `model.init` existed rebuild with torchvision's initialisation."""
    from geomvol.models.resnet import ResNetConfig

    assert ResNetConfig().init == "torchvision"
    with pytest.raises(ValueError, match="init must be torchvision or pytorch_default"):
        build_model(model_spec({"name": "resnet34", "init": "xavier"}, [3, 32, 32], 10))
