"""The one probe core: a checkpoint's model, and the volume element and outputs at a set of points.

The point makers around it (:mod:`geomvol.probe.grid` for 2-D inputs,
:mod:`geomvol.probe.planes` for planes and lines through images) decide the
points and label the results; everything they measure comes from here.
"""

from __future__ import annotations

import math
import sys
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from geomvol.catalogue import block_windows, same_feature_maps
from geomvol.data.prepare import model_inputs
from geomvol.device import device_label, resolve_device
from geomvol.geometry import log_volume, log_volume_and_singular_values, log_volume_of_parts, plane_metric
from geomvol.geometry.volume import PlaneMetric, subspace_jacobian
from geomvol.geometry.curvature import gaussian_curvature, gaussian_curvature_of_parts
from geomvol.models import build_model, feature_map
from geomvol.models.registry import feature_maps_together, feature_width
from geomvol.probe.linear import fit_linear_probe
from geomvol.provenance import sha256_file
from geomvol.config import graph_feature_maps
from geomvol.settings import GridSettings, LineSettings, LinearProbeSettings, PlaneSettings, ProbeSettings
from geomvol.train.checkpoint import load_checkpoint

LN10 = math.log(10)
OUTPUT_BATCH = 256


@dataclass
class ProbedModel:
    """A checkpoint's network in eval mode, frozen, on the probe's device and dtype."""

    path: Path | None  # None: a model in memory (probed_module)
    state: dict
    model: nn.Module
    device: torch.device
    dtype: torch.dtype
    block_pooling: str | dict | None = None  # ProbeSettings.block_pooling
    classifier: Callable[[torch.Tensor], torch.Tensor] | None = None  # logits; None: the network's own
    widths: dict = field(default_factory=dict)  # feature map -> n, as found

    @property
    def objective(self) -> dict:
        return self.state["train_spec"]["training"].get("objective", {"name": "cross_entropy"})

    @property
    def seed(self) -> int:
        return self.state["train_spec"]["seed"]

    @property
    def epoch(self) -> int:
        return self.state["epoch"]

    def width(self, name: str) -> int:
        if name not in self.widths:
            self.widths[name] = feature_width(self.model, self.state["model_spec"], name, block_windows(self.block_pooling))
        return self.widths[name]

    def feature_map(self, name: str):
        """The feature map ``name``, its blocks pooled as the probe says."""
        return feature_map(self.model, name, block_windows(self.block_pooling))

    def feature_maps_together(self, names: list[str]):
        """The named feature maps side by side, (B, *input) -> (B, n_1 + ... + n_P), from one pass through a
        model that computes several in one; None for a model that does not, or for a single map."""
        return feature_maps_together(self.model, names, block_windows(self.block_pooling))

    @property
    def aliases(self) -> dict:
        """Feature maps that are one function under two names (computed once)."""
        architecture = self.state["model_spec"]
        return same_feature_maps(architecture, architecture["input_shape"], self.block_pooling)


def load_probed_model(checkpoint_path: str | Path, settings: ProbeSettings) -> ProbedModel:
    """Load the checkpoint (a clear error names a bad one) and ready its model for probing as ``settings`` say."""
    checkpoint_path = Path(checkpoint_path)
    state = load_checkpoint(checkpoint_path)
    device = resolve_device(settings.device)
    dtype = getattr(torch, settings.dtype)
    # in the probe's dtype before the weights are copied in: a float64-trained net keeps its exact weights
    model = build_model(state["model_spec"]).to(device=device, dtype=dtype)
    model.load_state_dict(state["model"])
    model.eval().requires_grad_(False)
    return ProbedModel(checkpoint_path, state, model, device, dtype, settings.block_pooling)


def probed_module(model: nn.Module, input_shape, settings: ProbeSettings, seed: int = 0, epoch: int = 0) -> ProbedModel:
    """A model in memory (a notebook's: any ``nn.Module`` whose forward gives logits) ready for probing as
    ``settings`` say: a frozen copy in eval mode on the probe's device and dtype (the model given is left as it
    is). ``seed`` and ``epoch`` only label the results. Its feature maps are its own (``feature_maps``) or its
    graph's nodes; their widths are measured on it."""
    device = resolve_device(settings.device)
    dtype = getattr(torch, settings.dtype)
    copy = deepcopy(model).to(device=device, dtype=dtype).eval().requires_grad_(False)
    state = {"model_spec": {"name": "module", "input_shape": list(input_shape)}, "epoch": epoch,
             "train_spec": {"seed": seed, "training": {}}}
    return ProbedModel(None, state, copy, device, dtype, settings.block_pooling)


def notebook_settings(feature_maps: list, *, metric: str = "subspace", top_k: int | None = None,
                      dtype: str = "float64", device: str = "cpu", curvature: bool = False, spectra: bool = False,
                      memory_budget_bytes: int = 1 << 30, grid: GridSettings | None = None,
                      plane: PlaneSettings | None = None, line: LineSettings | None = None) -> ProbeSettings:
    """The probe settings of the notebook API (``geomvol.probe_plane``, ``probe_line``, ``probe_grid``):
    ``feature_maps`` named as in a config (names, or ``{"node": ..., "pool": ...}`` for graph nodes; a name
    alone takes the model's own default: a graph node flattened, a study ResNet block averaged whole)."""
    names, pools = graph_feature_maps(feature_maps)
    given = {entry["node"] for entry in feature_maps if isinstance(entry, dict) and "pool" in entry}
    return ProbeSettings(
        feature_maps=tuple(names), metric=metric, top_k=top_k, dtype=dtype,
        block_pooling={node: tuple(pool) if isinstance(pool, list) else pool for node, pool in pools.items()
                       if node in given} or None,
        spectra=spectra, curvature=curvature, grid=grid or GridSettings(-1.5, 1.5, 80),
        plane=plane or PlaneSettings(1.0, 40), line=line or LineSettings(0.0, 1.0, 10, True), planes=(), lines=(),
        linear_probe=LinearProbeSettings(True, 1e-4, 500), device=device, memory_budget_bytes=memory_budget_bytes)


def _each_feature_map(probed: ProbedModel, settings: ProbeSettings, compute, what: str) -> dict:
    """``compute(feature_map)`` for every name in ``settings.feature_maps``, once per distinct map
    (two names of one function, as the ResNet's pooled and a block4 averaged over its whole map, once)."""
    aliases = probed.aliases
    results, by_function = {}, {}
    names = settings.feature_maps
    for name in tqdm(names, desc=what, unit="map", file=sys.stderr, disable=len(names) < 2):
        function = aliases.get(name, name)
        if function not in by_function:
            by_function[function] = compute(probed.feature_map(function))
        results[name] = by_function[function]
    return results


def log10_volumes(probed: ProbedModel, points: torch.Tensor, settings: ProbeSettings,
                  basis: torch.Tensor | None = None) -> dict:
    """log10 sqrt(det g) of every feature map in ``settings.feature_maps`` at ``points`` (B, *input): name -> (B,).

    ``basis`` (d, m) is used for the subspace metric and ignored for the full one.
    With the subspace metric, a model that computes several feature maps in one
    pass (``blocks_together``) has them measured from one set of JVPs.
    """
    subspace = basis if settings.metric == "subspace" else None
    names = list(settings.feature_maps)
    together = probed.feature_maps_together(names)
    if subspace is not None and together is not None and settings.top_k is None:
        volumes = log_volume_of_parts(together, points, [probed.width(n) for n in names],
                                      basis=subspace, memory_budget_bytes=settings.memory_budget_bytes)
        return {name: volume / LN10 for name, volume in zip(names, volumes)}

    def compute(features):
        return log_volume(features, points, basis=subspace, top_k=settings.top_k,
                          memory_budget_bytes=settings.memory_budget_bytes) / LN10

    return _each_feature_map(probed, settings, compute, f"volume at {points.shape[0]} points")


def plane_metrics(probed: ProbedModel, points: torch.Tensor, settings: ProbeSettings, basis: torch.Tensor) -> dict:
    """The metric every feature map of ``settings`` induces on the plane spanned by ``basis`` (d, 2), orthonormal,
    at ``points`` (B, *input): name -> :class:`geomvol.geometry.volume.PlaneMetric` (log volume element,
    eigenvalues, leading eigenvector). A model that computes several feature maps in one pass has them all from
    one set of JVPs."""
    names = list(settings.feature_maps)
    together = probed.feature_maps_together(names)
    if together is not None:
        parts = plane_metric(together, points, basis, [probed.width(name) for name in names],
                             memory_budget_bytes=settings.memory_budget_bytes)
        return {name: PlaneMetric(*(field[p] for field in (parts.log_volume, parts.log_eigenvalues, parts.angle)))
                for p, name in enumerate(names)}

    def compute(features):
        return plane_metric(features, points, basis, memory_budget_bytes=settings.memory_budget_bytes)

    return _each_feature_map(probed, settings, compute, f"metric at {points.shape[0]} points")


def volumes_and_metrics(probed: ProbedModel, points: torch.Tensor, settings: ProbeSettings,
                        basis: torch.Tensor) -> tuple[dict, dict]:
    """On a plane (``basis`` (d, 2)): log10 sqrt(det g) of every feature map (:func:`log10_volumes`) and the
    metric it induces on the plane (:func:`plane_metrics`); with the subspace metric, the volume element is the
    plane metric's own, from the same JVPs."""
    metrics = plane_metrics(probed, points, settings, basis)
    if settings.metric == "subspace":
        return {name: metric.log_volume / LN10 for name, metric in metrics.items()}, metrics
    return log10_volumes(probed, points, settings, basis), metrics


def margin_gradients(probed: ProbedModel, points: torch.Tensor, basis: torch.Tensor,
                     top_two: torch.Tensor) -> torch.Tensor:
    """The gradient (B, 2) within the plane spanned by ``basis`` (d, 2), orthonormal, of the margin between the two
    leading logits z_top1 - z_top2 (of :func:`network_logits`' classifier) at ``points`` (B, *input), in the
    basis's coordinates: the direction across the network's decision boundary. ``top_two`` (B, 2): the two leading
    classes at each point (of :func:`network_outputs`, in order). Two JVPs per point (attention by its math kernel,
    which has them: :func:`geomvol.models.nodes.differentiable_attention`)."""
    from geomvol.models.nodes import differentiable_attention

    classify = probed.classifier or probed.model
    gradients = []
    for chunk, leading_two in zip(points.split(OUTPUT_BATCH), top_two.split(OUTPUT_BATCH)):
        with differentiable_attention():
            jac = subspace_jacobian(classify, chunk, basis)  # (B, C, 2)
        leading = jac.gather(1, leading_two[:, :, None].expand(-1, -1, 2))  # (B, 2 classes, 2 directions)
        gradients.append(leading[:, 0] - leading[:, 1])
    return torch.cat(gradients)


def singular_values(probed: ProbedModel, points: torch.Tensor, settings: ProbeSettings) -> dict:
    """The singular values of the full Jacobian of every feature map at ``points``: name -> (B, min(n, d)), descending."""

    def compute(features):
        return log_volume_and_singular_values(features, points, memory_budget_bytes=settings.memory_budget_bytes)[1]

    return _each_feature_map(probed, settings, compute, f"spectra at {points.shape[0]} anchors")


def curvatures(probed: ProbedModel, points: torch.Tensor, settings: ProbeSettings, basis: torch.Tensor) -> dict:
    """The Gaussian curvature K of the metric every feature map of ``settings`` induces on the plane spanned by
    ``basis`` (d, 2), at ``points`` (B, *input): name -> (B,), NaN where the plane's tangent images are
    dependent (the count is printed). A model that computes several feature maps in one pass
    (``blocks_together``) has them all from one pass of the derivatives."""
    names = list(settings.feature_maps)

    def values(curvature) -> torch.Tensor:
        if curvature.degenerate.any():
            print(f"curvature undefined (dependent tangents) at {int(curvature.degenerate.sum())} of "
                  f"{points.shape[0]} points", file=sys.stderr)
        return curvature.gaussian

    together = probed.feature_maps_together(names)
    if together is not None:
        parts = gaussian_curvature_of_parts(together, points, basis, [probed.width(name) for name in names],
                                            memory_budget_bytes=settings.memory_budget_bytes)
        return {name: values(part) for name, part in zip(names, parts)}

    def compute(features):
        return values(gaussian_curvature(features, points, basis, memory_budget_bytes=settings.memory_budget_bytes))

    return _each_feature_map(probed, settings, compute, f"curvature at {points.shape[0]} points")


def kept_singular_values(probed: ProbedModel, settings: ProbeSettings, d: int, m: int) -> list[int]:
    """k per feature map: top_k, or min(n, d) (full) or min(n, m) (subspace of dimension m)."""
    columns = d if settings.metric == "full" else m
    return [settings.top_k or min(probed.width(name), columns) for name in settings.feature_maps]


@torch.no_grad()
def network_logits(probed: ProbedModel, points: torch.Tensor) -> torch.Tensor:
    """The logits (B, C) at ``points``: the network's, or its linear probe's (:func:`attach_linear_probe`) for a
    self-supervised checkpoint."""
    classify = probed.classifier or probed.model
    return torch.cat([classify(chunk) for chunk in points.split(OUTPUT_BATCH)])


def network_outputs(probed: ProbedModel, points: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities of the classes at ``points``: (B, C), of :func:`network_logits`."""
    return torch.softmax(network_logits(probed, points), dim=1)


@torch.no_grad()
def learned_boundary(probed: ProbedModel, a: torch.Tensor, b: torch.Tensor, predicted: np.ndarray, to_points,
                     gram: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The network's decision boundary on a 2-D field (:mod:`geomvol.geometry.boundary`): the crossing fraction
    (2, B, A) of each grid edge, located on the model's own logits, and each point's distance (B, A) to the
    boundary in input-space units (signed for two classes: positive where class 1 leads). ``a`` (A,) and ``b``
    (B,) are the field's axes, ``predicted`` (B, A) its leading classes (of ``n_classes``), ``to_points`` maps
    field coordinates (N, 2) to model inputs, ``gram`` (2, 2) is the Gram matrix of its axes' input-space
    vectors."""
    from geomvol.geometry.boundary import boundary_distance, boundary_segments

    a, b = a.cpu().double().numpy(), b.cpu().double().numpy()
    crossings = boundary_crossings(probed, predicted, to_points, a, b)
    bb, aa = np.meshgrid(b, a, indexing="ij")
    distance = boundary_distance(np.stack([aa, bb], axis=-1), boundary_segments(crossings, a, b), gram,
                                 predicted if n_classes == 2 else None)
    return crossings, distance


@torch.no_grad()
def boundary_crossings(probed: ProbedModel, predicted: np.ndarray, to_points, a: np.ndarray,
                       b: np.ndarray) -> np.ndarray:
    """:func:`geomvol.geometry.boundary.edge_crossings` on the probed network's logits, ``to_points`` mapping
    field coordinates (N, 2) on the axes ``a`` and ``b`` to its inputs, to the probe dtype's tolerance."""
    from geomvol.geometry.boundary import edge_crossings

    def logits_at(coordinates: torch.Tensor) -> torch.Tensor:
        return network_logits(probed, to_points(coordinates.to(device=probed.device, dtype=probed.dtype)))

    return edge_crossings(predicted, logits_at, a, b, tolerance=boundary_tolerance(probed.dtype))


def boundary_tolerance(dtype: torch.dtype) -> float:
    """How finely a boundary crossing is located, as a fraction of its grid edge: 1e-9 for a float64 probe, 1e-5
    for float32 (whose logits are not precise enough to place the root closer)."""
    return 1e-9 if dtype == torch.float64 else 1e-5


def boundary_attrs(field: str, axes: tuple[str, str]) -> tuple[dict, dict]:
    """Attributes of the learned boundary's crossings and of the distance to it, on a field with ``axes``."""
    crossing = {
        "long_name": "where the network's decision boundary crosses each grid edge, as a fraction of the edge",
        "units": "1",
        "description": (
            f"on {field}: edge {axes[0]} joins point ({axes[1]}_i, {axes[0]}_j) to ({axes[1]}_i, {axes[0]}_j+1), edge "
            f"{axes[1]} joins it to ({axes[1]}_i+1, {axes[0]}_j); where their leading classes c, c' differ, the root s "
            f"of z_c - z_c' along the edge, found on the model's logits (Illinois regula falsi to 1e-9 of the edge, "
            f"1e-5 for a float32 probe); "
            f"NaN where the leading class does not change, where a third class leads at the root, and on the last "
            f"column or row"),
        "method": "geomvol.geometry.boundary.edge_crossings",
    }
    distance = {
        "long_name": "distance to the network's own decision boundary",
        "units": "1",
        "description": (
            f"Euclidean distance in the model's input space (the normalised inputs) from each point of {field} to "
            f"the nearest segment of the boundary through the edge crossings (marching squares); signed for two "
            f"classes: positive where class 1 leads; unsigned for more; NaN where the field holds no boundary"),
        "method": "geomvol.geometry.boundary.boundary_distance",
    }
    return crossing, distance


@torch.no_grad()
def attach_linear_probe(probed: ProbedModel, data: dict, settings: LinearProbeSettings) -> dict:
    """Fit a linear probe (``settings``: ``probe.linear_probe``) on the frozen, unaugmented features of
    the prepared training images (the map the self-supervised objective trained, ``objective.features``);
    classify with it from now on. Test images go through the same input normalisation as training images.
    Returns its training and test accuracy."""
    features = probed.feature_map(probed.objective["features"])

    def encode(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([features(model_inputs(chunk, data, probed.dtype).to(probed.device))
                          for chunk in images.split(OUTPUT_BATCH)])

    train = encode(data["x"])
    linear = fit_linear_probe(train, data["y"], len(data["classes"]), weight_decay=settings.weight_decay,
                              standardize=settings.standardize, max_iter=settings.max_iter)
    probed.classifier = lambda x: linear.logits(features(x))
    return {"train": linear.accuracy(train, data["y"]), "test": linear.accuracy(encode(data["x_test"]), data["y_test"])}


def predictive_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Entropy of each row of class probabilities in nats, shape (B,) (0 log 0 = 0)."""
    return -torch.special.xlogy(probabilities, probabilities).sum(dim=1)


def probability_margin(probabilities: torch.Tensor) -> torch.Tensor:
    """Largest minus second-largest class probability of each row, shape (B,): 0 on a decision boundary."""
    top_two = probabilities.topk(2, dim=1).values
    return top_two[:, 0] - top_two[:, 1]


def checkpoint_coords(probed: ProbedModel) -> dict:
    """Per-checkpoint coordinates along (seed, epoch): which file was probed, and where (a model in memory:
    seed and epoch alone)."""
    dims = ("seed", "epoch")
    labels = {
        "seed": ("seed", [probed.seed], {"long_name": "training seed", "units": "1"}),
        "epoch": ("epoch", [probed.epoch], {"long_name": "training epochs completed (0: the untrained network)",
                                            "units": "1"}),
    }
    if probed.path is None:
        return labels
    return {
        **labels,
        "checkpoint_sha256": (dims, np.array([[sha256_file(probed.path)]], dtype=object),
                              {"long_name": "sha256 of the probed checkpoint file"}),
        "checkpoint_file": (dims, np.array([[str(probed.path)]], dtype=object),
                            {"long_name": "path of the probed checkpoint file"}),
        "probe_device": (dims, np.array([[device_label(probed.device)]], dtype=object),
                         {"long_name": "torch device the probe ran on (and the GPU model)"}),
    }


def block_coords(probed: ProbedModel, settings: ProbeSettings) -> dict:
    """The ``block`` dimension (feature-map names) with each map's width n."""
    names = list(settings.feature_maps)
    return {
        "block": ("block", np.array(names, dtype=object), {"long_name": "feature map (network block) probed"}),
        "feature_width": ("block", [probed.width(name) for name in names],
                          {"long_name": "width n of the feature map (flattened features)", "units": "1"}),
    }


def top_k_coord(probed: ProbedModel, settings: ProbeSettings, d: int, m: int) -> tuple:
    """The singular values kept, k, per block (coordinate along ``block``)."""
    return ("block", kept_singular_values(probed, settings, d, m),
            {"long_name": "singular values of J kept in the volume element", "units": "1"})


def metric_definition(metric: str, d: int, subspace: str, top_k_name: str = "top_k") -> str:
    """A sentence that says exactly which volume element was computed."""
    if metric == "full":
        return (
            f"log10 sqrt(pdet g), g = J^T J / n, J = d Phi/dx the Jacobian of the feature map named by `block` "
            f"(n its width, coordinate `feature_width`; d = {d} inputs), pseudo-determinant over the top k "
            f"singular values of J (coordinate `{top_k_name}`)"
        )
    return (
        f"log10 sqrt(det G), G = (J V)^T (J V) / n, J = d Phi/dx the Jacobian of the feature map named by `block` "
        f"(n its width, coordinate `feature_width`), V an orthonormal basis of {subspace}"
    )


def volume_attrs(settings: ProbeSettings, d: int, subspace: str, top_k_name: str = "top_k") -> dict:
    return {
        "long_name": "log10 of the volume element sqrt(det g) of the pullback metric",
        "units": "1",
        "description": metric_definition(settings.metric, d, subspace, top_k_name),
        "metric": settings.metric,
    }


def class_attrs(n_classes: int, classes: list[str] | None = None) -> dict:
    names = classes or [f"class_{c}" for c in range(n_classes)]
    return {
        "long_name": "class predicted by the network",
        "units": "1",
        "flag_values": list(range(n_classes)),
        "flag_meanings": " ".join(name.replace(" ", "_") for name in names),
    }


def curvature_attrs(plane: str) -> dict:
    """What the stored Gaussian curvature is: its definition, sign convention and where it is undefined."""
    return {
        "long_name": "Gaussian curvature K of the metric the feature map induces on the plane",
        "units": "1",
        "description": (
            f"K of G = T^T T / n on {plane}, T = (d Phi/du, d Phi/dv) the tangent images of the plane's two "
            f"coordinate directions under the feature map Phi named by `block` (n its width, coordinate "
            f"`feature_width`), by Gauss's equation K = n (<P f_uu, P f_vv> - |P f_uv|^2) / det(T^T T), P the "
            f"projection onto the normal space of the surface Phi(plane); intrinsic (independent of the "
            f"coordinates on the plane); the scalar curvature of the 2-D metric is 2K"),
        "sign_convention": "K > 0 where the surface is curved like a sphere, K < 0 like a saddle, 0 where flat",
        "undefined": "NaN where the plane's two tangent images are numerically dependent (det G ~ 0)",
        "method": ("the plane's second-order jet pushed through the layers, or nested forward-mode derivatives "
                   "where the jet rules do not cover the network (geomvol.geometry.curvature.gaussian_curvature)"),
    }


def stretch_attrs(field: str, frame: str) -> dict:
    """Attributes of the plane metric's eigenvalues, its leading eigenvector's angle and the margin gradient's angle
    on ``field``, whose orthonormal frame is ``frame`` (name -> attrs)."""
    angle = f"radians from the first axis of {frame} toward the second"
    return {
        "log10_metric_eigenvalue": {
            "long_name": "log10 of the eigenvalues of the metric the feature map induces on the plane",
            "units": "1",
            "description": (
                f"log10 lambda_1 >= lambda_2 of G = (J V)^T (J V) / n on {field}, J = d Phi/dx the Jacobian of the "
                f"feature map named by `block` (n its width), V {frame}; log10 lambda_1 + log10 lambda_2 = 2 log10 "
                f"sqrt(det G); log10(lambda_1 / lambda_2) is the metric's anisotropy; -inf for 0"),
            "method": "geomvol.geometry.volume.plane_metric (closed form on the R of a QR factorisation of J V)",
        },
        "stretch_angle": {
            "long_name": "direction in which the feature map stretches the plane most (G's leading eigenvector)",
            "units": "radian",
            "description": (
                f"angle of the eigenvector of lambda_1 of G (see log10_metric_eigenvalue), {angle}, in (-pi/2, "
                f"pi/2] (an eigenvector has no sign); NaN where lambda_1 = lambda_2 to rounding (isotropic)"),
        },
        "margin_gradient_angle": {
            "long_name": "direction of the gradient of the margin between the two leading logits within the plane",
            "units": "radian",
            "description": (
                f"angle of the gradient of m(x) = z_top1(x) - z_top2(x) projected on the plane of {field} (the "
                f"direction across the network's decision boundary), {angle}, in (-pi, pi]; NaN where it is 0"),
        },
    }


def stretch_fields(metrics: dict, gradients: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log10 eigenvalues (P, B, 2), stretch angles (P, B), margin gradient angles (B,)) as numpy arrays from
    :func:`plane_metrics` (P feature maps) and :func:`margin_gradients`."""
    eigenvalues = np.stack([metric.log_eigenvalues.cpu().numpy() / LN10 for metric in metrics.values()])
    angles = np.stack([metric.angle.cpu().numpy() for metric in metrics.values()])
    gradients = gradients.cpu().numpy()
    gradient_angles = np.where((gradients != 0).any(axis=1), np.arctan2(gradients[:, 1], gradients[:, 0]), np.nan)
    return eigenvalues, angles, gradient_angles


CLASS_PAIR_COORD = ("class_pair", np.array(["first", "second"], dtype=object),
                    {"long_name": "the two classes of a boundary crossing, the smaller class number first"})


def class_pair_attrs(field: str) -> dict:
    return {"long_name": "the pair of classes whose boundary crosses each grid edge", "units": "1",
            "description": (f"on {field}: for each edge of boundary_crossing that the network's boundary crosses, the "
                            f"leading classes of its two ends (class numbers, the smaller first: the boundary between "
                            f"them); -1 where the edge holds no crossing"),
            "method": "geomvol.geometry.boundary.crossing_classes"}


EIGENVALUE_COORD = ("eigenvalue", [1, 2], {"long_name": "rank of the eigenvalue of the plane metric (1 = largest)",
                                           "units": "1"})
ENTROPY_ATTRS = {"long_name": "entropy of the predicted class distribution (softmax of the logits)", "units": "nat"}
MARGIN_ATTRS = {"long_name": "largest minus second-largest predicted class probability (0 on a decision boundary)",
                "units": "1"}
