"""The analogue of the seed's Figure 1: log10 volume element over the input square per epoch."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import xarray as xr  # noqa: E402

from geomvol.settings import FigureStyle  # noqa: E402
from geomvol.figures.common import (  # noqa: E402
    EPOCH_NOTE, VOLUME_LABEL, draw_decision_boundary, experiment_name, first_seed, plotted, row_colourbars,
    row_scales, titled,
)


def draw_volume_grid(ds: xr.Dataset, seed: int | None = None, style: FigureStyle = FigureStyle()):
    """One panel per probed epoch of one seed (default: the first) and the first feature map, each panel its
    own colour scale or one for all (``style``, the ``figures`` config section): log10 sqrt(det g), the
    decision boundary (where the predicted class changes) and, in a store, the training points. ``ds``: a volume
    store or a dataset of the notebook API (``geomvol.probe_grid``). Returns the figure."""
    scale = style.colour_scale
    seed = first_seed(ds, seed)
    block = str(ds["block"].values[0])
    volume = ds["log10_volume"].sel(seed=seed, block=block).load()
    values, limits = row_scales(volume.values, scale)
    epochs = volume["epoch"].values
    fig, axes = plt.subplots(1, len(epochs), figsize=(3.6 * len(epochs) + 1.0, 3.6), squeeze=False, constrained_layout=True)
    x1, x2 = ds["x1"].values, ds["x2"].values
    meshes = []
    for column, (ax, epoch) in enumerate(zip(axes[0], epochs)):
        vmin, vmax = limits[column]
        meshes.append(ax.pcolormesh(x1, x2, values[column], vmin=vmin, vmax=vmax, cmap="viridis", shading="auto",
                                    rasterized=True))
        draw_decision_boundary(ax, x1, x2, ds["predicted_class"].sel(seed=seed, epoch=epoch).values, "white", 1.2)
        if "data_x1" in ds:
            ax.scatter(ds["data_x1"], ds["data_x2"], c=ds["data_class"], cmap="coolwarm", s=6, edgecolors="black",
                       linewidths=0.2)
        ax.set(title=f"epoch {int(epoch)}", xlabel="x1", ylabel="x2", aspect="equal",
               xlim=(x1.min(), x1.max()), ylim=(x2.min(), x2.max()))
    row_colourbars(fig, meshes, axes[0].tolist(), scale, VOLUME_LABEL)
    return titled(fig, f"{experiment_name(ds)} (seed {seed}): volume element of '{block}'\n{EPOCH_NOTE}")


plot_volume_grid = plotted(draw_volume_grid)
