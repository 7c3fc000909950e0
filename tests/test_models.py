import math

import pytest
import torch
from torch import nn

from geomvol.catalogue import STUDY_BLOCK_WINDOWS, block_windows, feature_width, resnet_block_shape, same_feature_maps
from geomvol.errors import ConfigError
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


# --- any PyTorch model: torchvision builders, python factories, feature maps named by graph nodes ----------


def test_a_graph_node_is_the_layer_output_it_names():
    """resnet18's node `layer2` is what its stem and first two stages compute; `avgpool` pooled and flattened is
    the readout's input; several nodes from one pass are the single ones side by side."""
    from geomvol.models.registry import feature_maps_together

    torch.manual_seed(0)
    net = build_model(model_spec({"name": "torchvision", "builder": "resnet18"}, [3, 32, 32], 10)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        stem = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        layer2 = net.layer2(net.layer1(stem))
        pooled = net.avgpool(net.layer4(net.layer3(layer2))).flatten(1)
        torch.testing.assert_close(feature_map(net, "layer2")(x), layer2.flatten(1))
        windows = {"layer2": [2, 2], "avgpool": "global_mean"}
        torch.testing.assert_close(feature_map(net, "layer2", windows)(x),
                                   nn.functional.avg_pool2d(layer2, 2).flatten(1))
        torch.testing.assert_close(feature_map(net, "avgpool", windows)(x), pooled)
        together = feature_maps_together(net, ["layer2", "avgpool"], windows)(x)
        torch.testing.assert_close(together, torch.cat([nn.functional.avg_pool2d(layer2, 2).flatten(1), pooled], 1))
        assert torch.equal(net.fc(pooled), net(x))  # the logits: the model's own output


def test_pools_of_maps_and_token_sequences():
    from geomvol.models.nodes import pool_features

    maps = torch.arange(2 * 3 * 4 * 4, dtype=torch.float64).reshape(2, 3, 4, 4)
    assert torch.equal(pool_features(maps, "none"), maps.reshape(2, 48))
    assert torch.equal(pool_features(maps, "global_mean"), maps.mean(dim=(2, 3)))
    windowed = pool_features(maps, (2, 4))  # (2, 3, 2, 1): the mean of each half of each map
    assert windowed.shape == (2, 6)
    assert windowed[0, 0] == maps[0, 0, :2].mean() and windowed[0, 1] == maps[0, 0, 2:].mean()
    tokens = torch.randn(2, 5, 7)
    assert torch.equal(pool_features(tokens, "global_mean"), tokens.mean(dim=1))
    with pytest.raises(ConfigError, match=r"needs a \(B, C, H, W\) map"):
        pool_features(tokens, (1, 1))
    with pytest.raises(ConfigError, match="does not divide the 4 x 4 map"):
        pool_features(maps, (3, 3))


def test_volume_element_of_a_python_models_node_is_the_analytic_one(tmp_path):
    """A factory's linear layer x -> W x: on a plane with orthonormal basis V the volume element is
    sqrt(det((W V)^T (W V) / n)) everywhere; the pipeline's engine measures it through the graph node."""
    factory = tmp_path / "linear_model.py"
    factory.write_text("from torch import nn\n\n"
                       "def build(d=6, n=4, classes=3):\n"
                       "    return nn.Sequential(nn.Flatten(), nn.Linear(d, n), nn.Tanh(), nn.Linear(n, classes))\n")
    spec = model_spec({"name": "python", "factory": f"{factory}:build", "kwargs": {}}, [6], 3)
    torch.manual_seed(0)
    net = build_model(spec).double().eval()
    basis = torch.linalg.qr(torch.randn(6, 2, dtype=torch.float64)).Q
    points = torch.randn(5, 6, dtype=torch.float64)
    measured = log_volume(feature_map(net, "1"), points, basis=basis)
    w_v = net[1].weight.detach() @ basis
    expected = 0.5 * torch.logdet(w_v.T @ w_v / 4)
    torch.testing.assert_close(measured, expected.expand(5))


def test_attention_feature_maps_have_forward_mode_derivatives():
    """torchvision's ViT: multi-head attention's fused fast path and flash kernel have no forward-mode
    derivative; through the node feature map a JVP equals the finite difference, and the fast-path switch is
    left as it was."""
    from torch.func import jvp
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16,
                            num_classes=3).double().eval().requires_grad_(False)
    features = feature_map(vit, "encoder.ln", {"encoder.ln": "global_mean"})
    x, direction = torch.randn(2, 3, 16, 16, dtype=torch.float64), torch.randn(2, 3, 16, 16, dtype=torch.float64)
    before = torch.backends.mha.get_fastpath_enabled()
    tangent = jvp(features, (x,), (direction,))[1]
    step = 1e-6
    difference = (features(x + step * direction) - features(x - step * direction)) / (2 * step)
    torch.testing.assert_close(tangent, difference, rtol=1e-6, atol=1e-8)
    assert torch.backends.mha.get_fastpath_enabled() == before


def test_feature_width_of_a_graph_model_is_its_flattened_pooled_output():
    from geomvol.models.registry import feature_width as model_feature_width

    spec = model_spec({"name": "torchvision", "builder": "resnet18"}, [3, 32, 32], 10)
    net = build_model(spec)
    net.train()
    running = net.bn1.running_mean.clone()
    assert model_feature_width(net, spec, "layer2", {"layer2": "none"}) == 128 * 4 * 4
    assert model_feature_width(net, spec, "layer2", {"layer2": [2, 2]}) == 128 * 2 * 2
    assert model_feature_width(net, spec, "layer4", {"layer4": "global_mean"}) == 512
    assert net.training and torch.equal(net.bn1.running_mean, running)  # measured in eval mode, nothing changed


def test_a_python_model_whose_file_changed_is_refused(tmp_path):
    from geomvol.errors import CheckpointError
    from geomvol.provenance import sha256_file

    factory = tmp_path / "net.py"
    factory.write_text("from torch import nn\n\ndef build():\n    return nn.Linear(2, 2)\n")
    spec = model_spec({"name": "python", "factory": f"{factory}:build", "kwargs": {},
                       "factory_sha256": sha256_file(factory)}, [2], 2)
    assert isinstance(build_model(spec), nn.Linear)
    factory.write_text("from torch import nn\n\ndef build():\n    return nn.Linear(2, 2, bias=False)\n")
    with pytest.raises(CheckpointError, match=rf"{factory}.*has changed since this model was specified"):
        build_model(spec)


def test_a_model_torch_fx_cannot_trace_is_refused_with_what_to_do():
    from geomvol.models.nodes import check_nodes

    class Branching(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 2)

        def forward(self, x):
            if x.sum() > 0:  # control flow on a value: torch.fx cannot trace it
                return self.linear(x)
            return -self.linear(x)

    with pytest.raises(ConfigError, match=r"torch.fx cannot trace Branching .*model.leaf_modules.*feature_maps"):
        check_nodes(Branching(), ["linear"], "experiments.x.probe.feature_maps")

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Branching()

        def forward(self, x):
            return self.inner(x)

    check_nodes(Wrapped(), ["inner"], "experiments.x.probe.feature_maps", leaf_modules=["Branching"])


def test_a_checkpoint_trained_elsewhere_is_read_in_each_common_form(tmp_path):
    """A state dict, Lightning's {'state_dict': ...} with nn.DataParallel's 'module.' prefix, geomvol's own
    checkpoint and a whole module (torch.save(model)) all give the model's state; anything else is refused
    naming the file and what does not fit."""
    from geomvol.errors import CheckpointError
    from geomvol.train.checkpoint import read_outside_state, save_checkpoint

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    state = net.state_dict()
    forms = {
        "state_dict.pt": state,
        "lightning.ckpt": {"state_dict": {f"module.{key}": value for key, value in state.items()}, "epoch": 3},
        "whole.pt": net,
    }
    for name, content in forms.items():
        torch.save(content, tmp_path / name)
    save_checkpoint({"model": state}, tmp_path / "geomvol.pt")
    fresh = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    for name in (*forms, "geomvol.pt"):
        read = read_outside_state(tmp_path / name, fresh)
        assert list(read) == list(state) and all(torch.equal(read[key], state[key]) for key in state), name

    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"extra.pt does not fit the model Sequential: 1 unexpected: extra.weight$"):
        read_outside_state(tmp_path / "extra.pt", fresh)
    wider = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2), nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match=r"2 missing: 3.weight, 3.bias; 3 mis-shaped: 0.weight \[4, 3\] \(the "
                                              r"model's \[5, 3\]\), 0.bias \[4\] \(the model's \[5\]\), 2.weight"):
        read_outside_state(tmp_path / "state_dict.pt", wider)
    torch.save({"epoch": 3, "optimizer": "adam"}, tmp_path / "no_state.pt")
    with pytest.raises(CheckpointError, match="no_state.pt holds no state dict"):
        read_outside_state(tmp_path / "no_state.pt", fresh)
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt is unreadable"):
        read_outside_state(tmp_path / "garbage.pt", fresh)
    with pytest.raises(CheckpointError, match="absent.pt does not exist"):
        read_outside_state(tmp_path / "absent.pt", fresh)


def test_a_timm_model_by_name_and_its_nodes():
    """model: {name: timm, builder: resnet18}: timm.create_model with the data set's classes; its node `layer4`
    is what timm's own forward_features computes."""
    timm = pytest.importorskip("timm", reason="timm is an optional extra: pip install 'geomvol[timm]'")
    torch.manual_seed(0)
    net = build_model(model_spec({"name": "timm", "builder": "resnet18", "kwargs": {}}, [3, 32, 32], 10)).eval()
    assert isinstance(net, timm.models.ResNet) and net.num_classes == 10
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(feature_map(net, "layer4")(x), net.forward_features(x).flatten(1))


def test_timm_missing_is_said_with_the_install_command(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)  # as on a machine without the extra
    with pytest.raises(ConfigError, match=r"model name timm needs timm: pip install 'geomvol\[timm\]'"):
        build_model(model_spec({"name": "timm", "builder": "resnet18"}, [3, 32, 32], 10))


def test_a_graph_nodes_feature_map_follows_the_models_mode():
    """One node feature map, made while the model is in eval mode, computes with batch statistics (and updates
    the running ones) once the model is put in training mode, as Barlow Twins training reads it, and with the
    running statistics again in eval mode."""
    torch.manual_seed(0)
    net = build_model(model_spec({"name": "torchvision", "builder": "resnet18"}, [3, 32, 32], 10)).eval()
    features = feature_map(net, "bn1")
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(features(x), net.bn1(net.conv1(x)).flatten(1))  # running statistics
        net.train()
        convolved = net.conv1(x)
        batch = (convolved - convolved.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
            convolved.var((0, 2, 3), unbiased=False, keepdim=True) + net.bn1.eps)
        torch.testing.assert_close(features(x), batch.flatten(1), atol=1e-5, rtol=1e-4)  # the batch's
        assert int(net.bn1.num_batches_tracked) == 1
        net.eval()
        torch.testing.assert_close(features(x), net.bn1(net.conv1(x)).flatten(1))


def test_torchvisions_weights_by_name_start_training_and_another_head_keeps_its_init(tmp_path, monkeypatch, capsys):
    """model.weights: IMAGENET1K_V1, read from torch's cache as torchvision reads it (a file there, written here,
    stands in for the download): epoch 0 of training: {epochs: 0} is the pretrained network, but for the
    1000-class head, which a 10-class data set's model keeps from its initialisation (said in the log)."""
    import torchvision

    from geomvol.config import resolve_config
    from geomvol.data.check import check_config_data
    from geomvol.data.images import write_synthetic
    from geomvol.stages import prepare_dataset
    from geomvol.train.checkpoint import load_checkpoint

    from helpers import train_with_metrics, training_run

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    torch.manual_seed(7)
    pretrained = torchvision.models.resnet18().state_dict()  # 1000 classes
    cached = tmp_path / "torch" / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    torch.save(pretrained, cached)
    write_synthetic("CIFAR10", tmp_path / "cifar", 20, 10, seed=0)
    config = {"experiments": {"pretrained": {
        "dataset": {"name": "cifar10", "root": str(tmp_path / "cifar")},
        "model": {"name": "torchvision", "builder": "resnet18", "weights": "IMAGENET1K_V1"},
        "training": {"epochs": 0, "batch_size": 10},
        "probe": {"feature_maps": [{"node": "layer4", "pool": "global_mean"}], "lines": [{"classes": ["cat", "dog"]}]}}}}
    experiment = check_config_data(resolve_config(config))["experiments"]["pretrained"]
    prepare_dataset(experiment["dataset"], tmp_path / "dataset.pt", tmp_path / "manifest.json")
    [checkpoint] = train_with_metrics(training_run(experiment), tmp_path / "dataset.pt", tmp_path / "ck",
                                      tmp_path / "state", tmp_path / "metrics.tsv")
    state = load_checkpoint(checkpoint)["model"]
    assert torch.equal(state["conv1.weight"], pretrained["conv1.weight"])
    assert torch.equal(state["layer4.1.bn2.running_var"], pretrained["layer4.1.bn2.running_var"])
    assert state["fc.weight"].shape == (10, 512)
    assert "weights IMAGENET1K_V1: 120 of 122 tensors loaded; kept from initialisation (another shape): fc.weight " \
           "[1000, 512] (the model's [10, 512]), fc.bias [1000] (the model's [10])" in capsys.readouterr().err
    experiment["model"]["weights"] = "ResNet18_Weights.IMAGENET_V9"
    with pytest.raises(ConfigError, match=r"model\.weights: torchvision's resnet18 has no weights "
                                          r"'ResNet18_Weights\.IMAGENET_V9'; it has ResNet18_Weights\.IMAGENET1K_V1, "
                                          r"ResNet18_Weights\.DEFAULT"):
        check_config_data({"experiments": {"pretrained": experiment}})


def test_weights_from_a_file_are_fitted_and_their_sha256_is_in_the_model_section(tmp_path, monkeypatch):
    """model.weights: a state dict file (any graph model): its sha256 enters the resolved model section (so a
    changed file retrains); keys the model lacks are refused before any job, naming them; a missing file and a
    name for a model that is not torchvision's are refused too."""
    from geomvol.config import resolve_config
    from geomvol.data.check import check_config_data
    from geomvol.provenance import sha256_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text("from torch import nn\n\ndef build(classes=10):\n"
                                     "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, classes))\n")
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 3)).state_dict(), "three.pt")

    def experiment(weights):
        return {"experiments": {"w": {"dataset": {"name": "digits", "n_train": 100, "n_test": 50},
                                      "model": {"name": "python", "factory": "net.py:build", "weights": weights},
                                      "probe": {"feature_maps": ["2"], "lines": [{"classes": [7, 6]}]}}}}

    model = check_config_data(resolve_config(experiment("three.pt")))["experiments"]["w"]["model"]
    assert model["weights_sha256"] == sha256_file(tmp_path / "three.pt")
    torch.save({"encoder.weight": torch.zeros(8, 64)}, "other.pt")
    with pytest.raises(ConfigError, match=r"model\.weights: weights file other\.pt does not fit the model Sequential: "
                                          r"4 missing: 1\.weight, 1\.bias, 3\.weight, 3\.bias; 1 unexpected: encoder"):
        check_config_data(resolve_config(experiment("other.pt")))
    with pytest.raises(ConfigError, match=r"model\.weights: weights file gone\.pt does not exist"):
        resolve_config(experiment("gone.pt"))
    with pytest.raises(ConfigError, match=r"model\.weights: 'IMAGENET1K_V1' is not a file .* weights by name are "
                                          r"torchvision's; a python model takes a state dict file"):
        resolve_config(experiment("IMAGENET1K_V1"))
