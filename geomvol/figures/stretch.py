"""The direction of the stretch (``stretch``): on each 2-D field (the input grid, or each plane through three
images), one row per feature map, one column per probed epoch, a field of ellipses over the network's decision
regions.

Each ellipse is the unit circle of the metric G the feature map induces on the field (its indicatrix: the
displacements the map sends to one length), drawn at one size at every tenth or so point of the grid: its short
axis lies along the direction the map stretches most (G's leading eigenvector), its long axis along the one it
stretches least, so a map that stretches across its decision boundary draws ellipses lying along the boundary.
Their colour is the anisotropy log10(lambda_1 / lambda_2) (0: a circle). On a plane the ellipses are drawn in the
plane's coordinates (u, v), through its axes in its orthonormal frame (``plane_axes_in_frame``). Each panel's title
gives the mean stretch alignment |cos| between G's leading eigenvector and the margin's gradient over the points
nearest the boundary (the measures' ``near_fraction``, 10% here; 1: across, 0: along, 0.64 at random).
"""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.collections import EllipseCollection  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

from geomvol.errors import GeomvolError  # noqa: E402
from geomvol.figures.common import (  # noqa: E402
    EPOCH_NOTE, block_label, class_colours, class_names, draw_decision_boundary, experiment_name, finite_range,
    first_seed, plotted, title_width, titled,
)
from geomvol.figures.curvature import field_panel  # noqa: E402
from geomvol.figures.images import PANEL  # noqa: E402
from geomvol.measures import near_and_away_means, with_stretch_fields  # noqa: E402
from geomvol.settings import FigureStyle  # noqa: E402

ELLIPSES_PER_AXIS = 12
NEAR_FRACTION = 0.1  # the default measures.near_fraction
MIN_WIDTH = 6.5  # inches: room for the title above one column
TITLE_LINE = 0.2  # inches a line of the title takes (10 points and its spacing)
ROW = PANEL + 0.4  # inches a row of panels takes: a panel and its two-line title


def _fields(ds: xr.Dataset) -> list[dict]:
    """What each field's rows are drawn from: the grid's variables, or each image plane's."""
    if "stretch_angle" in ds:
        return [{"title": "input grid", "prefix": "", "at": {}, "x": "x1", "y": "x2", "plane": None,
                 "axes_in_frame": np.eye(2)}]
    if "plane_stretch_angle" in ds:
        return [{"title": f"plane {int(plane)}", "prefix": "plane_", "at": {"plane": plane}, "x": "u", "y": "v",
                 "plane": int(plane), "axes_in_frame": ds["plane_axes_in_frame"].sel(plane=plane).values}
                for plane in ds["plane"].values]
    raise GeomvolError("the store has no plane metric (stretch_angle on the grid, plane_stretch_angle on planes): it "
                       "was probed by a geomvol before the direction of the stretch was measured; probe it again")


def indicatrices(anisotropy: np.ndarray, angle: np.ndarray, axes_in_frame: np.ndarray,
                 size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(widths, heights, angles in degrees) of the unit circles of the metrics with ``anisotropy`` log10(lambda_1 /
    lambda_2) and leading eigenvector at ``angle`` (in a field's orthonormal frame; NaN: a circle) in the field's
    own coordinates, whose axes are the columns of ``axes_in_frame`` (R, 2 x 2) in that frame: each scaled so that
    its long axis is ``size``. The metric in the field's coordinates is R^T G R, with G = e e^T + 10^-anisotropy
    e' e'^T (only its shape matters)."""
    angle = np.where(np.isfinite(angle), angle, 0.0)
    ratio = np.where(np.isfinite(anisotropy), 10.0 ** -np.abs(np.nan_to_num(anisotropy, nan=0.0)), 0.0)
    e = np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    normal = np.stack([-e[..., 1], e[..., 0]], axis=-1)
    metric = e[..., :, None] * e[..., None, :] + ratio[..., None, None] * normal[..., :, None] * normal[..., None, :]
    metric = axes_in_frame.T @ metric @ axes_in_frame
    values, vectors = np.linalg.eigh(metric)  # ascending: the first, the least stretched, is the long axis
    semi_axes = 1 / np.sqrt(np.maximum(values, 1e-300))
    scale = size / (2 * semi_axes[..., 0])
    return (2 * semi_axes[..., 0] * scale, 2 * semi_axes[..., 1] * scale,
            np.degrees(np.arctan2(vectors[..., 1, 0], vectors[..., 0, 0])))


def _draw_ellipses(ax, x: np.ndarray, y: np.ndarray, anisotropy: np.ndarray, angle: np.ndarray,
                   axes_in_frame: np.ndarray, norm: Normalize, cmap: str):
    """The indicatrices at every ``step``-th point of a field (y, x), about ELLIPSES_PER_AXIS along each axis."""
    step = max(1, round(len(x) / ELLIPSES_PER_AXIS))
    rows, columns = np.arange(0, len(y), step), np.arange(0, len(x), step)
    size = 0.9 * step * min(np.ptp(x) / max(len(x) - 1, 1), np.ptp(y) / max(len(y) - 1, 1))
    shown = np.ix_(rows, columns)
    widths, heights, angles = indicatrices(anisotropy[shown], angle[shown], axes_in_frame, size)
    xx, yy = np.meshgrid(x[columns], y[rows])
    colours = plt.get_cmap(cmap)(norm(np.nan_to_num(anisotropy[shown], nan=0.0, posinf=norm.vmax)).ravel())
    ellipses = EllipseCollection(widths.ravel(), heights.ravel(), angles.ravel(), units="xy",
                                 offsets=np.stack([xx.ravel(), yy.ravel()], axis=1), offset_transform=ax.transData,
                                 facecolors="none", edgecolors=colours, linewidths=0.8)
    ax.add_collection(ellipses)


def draw_stretch(ds: xr.Dataset, seed: int | None = None, style: FigureStyle = FigureStyle()):
    """The metric's indicatrices of every feature map over the decision regions of every 2-D field, one column per
    epoch, for one seed (default: the first); ``ds``: a volume store or a dataset of the notebook API
    (``geomvol.probe_grid``, ``geomvol.probe_plane``). Returns the figure."""
    seed = first_seed(ds, seed)
    ds = with_stretch_fields(ds.sel(seed=[seed]))
    fields = _fields(ds)
    epochs = ds["epoch"].values
    blocks = [str(block) for block in ds["block"].values]
    classes = class_names(ds, f"{fields[0]['prefix']}predicted_class")
    class_cmap, class_norm = class_colours(len(classes))
    anisotropy_all = np.concatenate([ds[f"{field['prefix']}metric_anisotropy"].values.ravel() for field in fields])
    _, high = finite_range(anisotropy_all)
    norm = Normalize(0.0, max(high, 1e-3))
    heading = (f"{experiment_name(ds)} (seed {seed}): the direction of the stretch\n"
               f"ellipses: the metric's unit circles at one size (short axis: the direction stretched most), over the "
               f"decision regions; alignment: mean |cos| between that direction and the margin's gradient over the "
               f"{NEAR_FRACTION:.0%} of points nearest the boundary (1: across it, 0: along it, 0.64 at random)\n"
               f"{EPOCH_NOTE}")
    width = max(PANEL * len(epochs) + 1.5, MIN_WIDTH)
    title_lines = sum(len(textwrap.wrap(line, title_width(width))) for line in heading.split("\n"))
    fig, axes = plt.subplots(len(blocks) * len(fields), len(epochs),
                             figsize=(width, ROW * len(blocks) * len(fields) + TITLE_LINE * title_lines + 0.3),
                             squeeze=False, constrained_layout=True)
    for number, field in enumerate(fields):
        prefix, at = field["prefix"], {"seed": seed, **field["at"]}
        x, y = ds[field["x"]].values, ds[field["y"]].values
        predicted = ds[f"{prefix}predicted_class"].sel(at).values  # (epoch, y, x)
        distance = ds[f"{prefix}boundary_distance"].sel(at).values
        for row, block in enumerate(blocks):
            ax_row = axes[len(blocks) * number + row]
            anisotropy = ds[f"{prefix}metric_anisotropy"].sel({**at, "block": block}).values
            angle = ds[f"{prefix}stretch_angle"].sel({**at, "block": block}).values
            alignment = ds[f"{prefix}stretch_alignment"].sel({**at, "block": block}).values
            for column, epoch in enumerate(epochs):
                ax = ax_row[column]
                near = near_and_away_means(alignment[column], distance[column], NEAR_FRACTION)["near"][0]
                title = (f"{field['title']}, {block_label(block)}\nepoch {int(epoch)}: "
                         + ("no boundary" if np.isnan(near) else f"alignment {near:.2f}"))
                field_panel(ax, ds, field, predicted[column], title, cmap=class_cmap, norm=class_norm, alpha=0.3)
                ax.title.set_fontsize(9)
                draw_decision_boundary(ax, x, y, predicted[column], "black", 0.8)
                _draw_ellipses(ax, x, y, anisotropy[column], angle[column], field["axes_in_frame"], norm, "viridis")
    mappable = plt.cm.ScalarMappable(norm=norm, cmap="viridis")
    fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.8,
                 label=r"anisotropy $\log_{10}(\lambda_1/\lambda_2)$")
    return titled(fig, heading)


plot_stretch = plotted(draw_stretch)
