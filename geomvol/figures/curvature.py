"""The Gaussian curvature K of the learned geometry on each probed plane, across epochs (``curvature``).

Per plane (the 2-D input grid, or each plane through three images): a row of the network's decision
regions (the predicted class), then one row per feature map (block) of K, with the decision boundary
(where the predicted class changes) drawn over it; one column per probed epoch. K is signed: a diverging
colour map centred on 0 (red: curved like a sphere, blue: like a saddle), on a symmetric-log scale when
|K| spans more than two decades (linear below the median |K|), else linear; each panel its own scale, or
one per row (``figures.colour_scale`` shared or shared_relative_to_median: K is drawn as it is, never
relative to a median, since its sign is what it says). Where K is undefined (NaN: the plane's tangent
images dependent) the panel is left blank.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import Normalize, SymLogNorm  # noqa: E402

from geomvol.errors import GeomvolError  # noqa: E402
from geomvol.figures.common import (  # noqa: E402
    EPOCH_NOTE, block_label, class_colourbar, class_colours, class_names, draw_decision_boundary, experiment_name,
    first_seed, plotted, titled,
)
from geomvol.figures.images import PANEL, plane_panel  # noqa: E402
from geomvol.settings import FigureStyle  # noqa: E402

CURVATURE_CMAP = "RdBu_r"
SYMLOG_SPAN = 100.0  # max |K| over median |K| above which the scale is symmetric-log


def curvature_norm(values: np.ndarray) -> Normalize:
    """A colour norm centred on 0 for the signed curvature ``values``: from -max|K| to max|K|, symmetric-log
    (linear below the median |K|) when max|K| exceeds the median |K| SYMLOG_SPAN times."""
    size = np.abs(values[np.isfinite(values)])
    peak = float(size.max()) if size.size else 0.0
    if peak == 0.0:
        return Normalize(-1.0, 1.0)
    typical = float(np.median(size))
    if typical > 0.0 and peak / typical > SYMLOG_SPAN:
        return SymLogNorm(linthresh=typical, vmin=-peak, vmax=peak, base=10)
    return Normalize(-peak, peak)


def curvature_ticks(norm: Normalize) -> list[float] | None:
    """Colour-bar ticks of a symmetric-log norm: 0 and the powers of ten above its linear range, on both
    sides (every other power when there are more than five), so that no two labels sit on each other near
    0; None (matplotlib's own) for a linear norm."""
    if not isinstance(norm, SymLogNorm):
        return None
    powers = np.arange(math.floor(math.log10(norm.linthresh)) + 1, math.floor(math.log10(norm.vmax)) + 1)
    powers = powers[::-1][::2][::-1] if powers.size > 5 else powers
    return [*(-(10.0 ** powers[::-1])), 0.0, *(10.0 ** powers)]


def _fields(ds: xr.Dataset) -> list[dict]:
    """What each plane's rows are drawn from: the grid's variables, or each image plane's."""
    if "curvature" in ds:
        return [{"title": "input grid", "curvature": ds["curvature"], "predicted": ds["predicted_class"],
                 "x": "x1", "y": "x2", "plane": None}]
    if "plane_curvature" in ds:
        return [{"title": f"plane {int(plane)}", "curvature": ds["plane_curvature"].sel(plane=plane),
                 "predicted": ds["plane_predicted_class"].sel(plane=plane), "x": "u", "y": "v", "plane": int(plane)}
                for plane in ds["plane"].values]
    raise GeomvolError("the store has no curvature (curvature on the grid, plane_curvature on planes): probe with "
                       "probe.curvature: true")


def field_panel(ax, ds: xr.Dataset, field: dict, values: np.ndarray, title: str, **style):
    """A panel of ``values`` (y, x) on a field of :func:`_fields`: a plane (with its anchors) or the input grid."""
    if field["plane"] is not None:
        return plane_panel(ax, ds, values, field["plane"], title, **style)
    x, y = ds[field["x"]].values, ds[field["y"]].values
    mesh = ax.pcolormesh(x, y, values, shading="auto", rasterized=True, **style)
    ax.set(title=title, xlabel=field["x"], ylabel=field["y"], aspect="equal", xlim=(x.min(), x.max()),
           ylim=(y.min(), y.max()))
    return mesh


def draw_curvature(ds: xr.Dataset, seed: int | None = None, style: FigureStyle = FigureStyle()):
    """Decision regions and the Gaussian curvature K of every feature map on every probed plane (or the grid),
    one column per epoch, for one seed (default: the first); ``ds``: a volume store or a dataset of the notebook
    API (``geomvol.probe_plane(..., curvature=True)``). Returns the figure."""
    seed = first_seed(ds, seed)
    fields = _fields(ds)
    epochs = ds["epoch"].values
    blocks = [str(block) for block in ds["block"].values]
    classes = class_names(ds, fields[0]["predicted"].name)
    cmap, norm = class_colours(len(classes))
    rows_per_field = 1 + len(blocks)
    fig, axes = plt.subplots(rows_per_field * len(fields), len(epochs),
                             figsize=(PANEL * len(epochs) + 1.5, PANEL * rows_per_field * len(fields)),
                             squeeze=False, constrained_layout=True)
    for number, field in enumerate(fields):
        rows = axes[rows_per_field * number: rows_per_field * (number + 1)]
        predicted = field["predicted"].sel(seed=seed).values  # (epoch, y, x)
        for column, epoch in enumerate(epochs):
            mesh = field_panel(rows[0][column], ds, field, predicted[column], f"{field['title']}, epoch {int(epoch)}",
                          cmap=cmap, norm=norm)
        class_colourbar(fig, mesh, rows[0].tolist(), classes, predicted, "predicted class")
        for row, block in enumerate(blocks, start=1):
            curvature = field["curvature"].sel(seed=seed, block=block).values  # (epoch, y, x)
            shared = curvature_norm(curvature) if style.colour_scale != "per_panel" else None
            meshes = []
            for column, epoch in enumerate(epochs):
                panel_norm = shared if shared is not None else curvature_norm(curvature[column])
                meshes.append(field_panel(rows[row][column], ds, field, curvature[column], f"{block_label(block)}, epoch {int(epoch)}",
                                     cmap=CURVATURE_CMAP, norm=panel_norm))
                draw_decision_boundary(rows[row][column], ds[field["x"]].values, ds[field["y"]].values,
                                       predicted[column], "black", 0.8)
                if style.colour_scale == "per_panel":
                    colourbar = fig.colorbar(meshes[-1], ax=rows[row][column], shrink=0.8, pad=0.02,
                                             ticks=curvature_ticks(panel_norm))
                    colourbar.ax.tick_params(labelsize=6)
            label = f"Gaussian curvature K\n({block_label(block)})"
            if style.colour_scale == "per_panel":
                colourbar.set_label(label)
            else:
                fig.colorbar(meshes[-1], ax=rows[row].tolist(), label=label, ticks=curvature_ticks(shared))
    return titled(fig, f"{experiment_name(ds)} (seed {seed}): Gaussian curvature K of the metric each feature map "
                       f"induces on the plane (red: sphere-like, K > 0; blue: saddle-like, K < 0; symmetric-log colour "
                       f"scale where |K| spans decades), decision boundary in black\n{EPOCH_NOTE}")


plot_curvature = plotted(draw_curvature)
