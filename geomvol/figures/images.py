"""Figures of planes and lines through images, from a combined store alone (the study's Figures 2, 3 and 4).

- ``planes``: per plane, rows predicted class, log10 entropy, log10 volume
  element (first feature map), and the ternary plot of the three anchor
  classes' probabilities with each grid point coloured by its volume element;
  one column per probed epoch (Figure 3; with MNIST, Figure 2's plane).
- ``lines``: per line, log10 volume element along t with the predicted class
  as background, one column per epoch, and the images along the line
  (Figure 2's line; Figure 5 for Barlow Twins).
- ``blocks``: log10 volume element on the first plane, one row per feature
  map (block) and one column per epoch (Figure 4).

- ``compare``: two experiments on the same plane side by side (supervised and
  Barlow Twins), predictions and log10 volume element at the epochs both probed.

Anchor images are drawn at their positions; one colour scale per row.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402
from matplotlib.offsetbox import AnnotationBbox, OffsetImage  # noqa: E402

from geomvol.config import SAME_FEATURE_MAPS  # noqa: E402
from geomvol.errors import GeomvolError  # noqa: E402
from geomvol.figures.common import finite_range, first_seed, save_with_lineage  # noqa: E402
from geomvol.store import open_store  # noqa: E402

PANEL = 2.6  # inches per panel


def _class_colours(n_classes: int) -> tuple[ListedColormap, BoundaryNorm]:
    cmap = ListedColormap(plt.get_cmap("tab10").colors[:n_classes])
    return cmap, BoundaryNorm(np.arange(n_classes + 1) - 0.5, n_classes)


def _image(pixels: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) uint8 -> what imshow draws: grey for one channel, RGB for three."""
    return (pixels[0], "gray") if pixels.shape[0] == 1 else (np.moveaxis(pixels, 0, -1), None)


def _draw_anchor(ax, pixels: np.ndarray, xy: tuple[float, float], zoom: float) -> None:
    image, cmap = _image(pixels)
    box = AnnotationBbox(OffsetImage(image, zoom=zoom, cmap=cmap), xy, frameon=True, pad=0.1,
                         bboxprops={"edgecolor": "white", "linewidth": 0.8})
    ax.add_artist(box)


def _draw_plane_anchors(ax, ds: xr.Dataset, plane: int) -> None:
    for anchor in ds["anchor"].values:
        xy = (float(ds["anchor_u"][anchor]), float(ds["anchor_v"][anchor]))
        _draw_anchor(ax, ds["plane_anchor_image"].values[plane, anchor], xy, zoom=0.7)


def _plane_panel(ax, ds, values, plane, title, **style):
    u, v = ds["u"].values, ds["v"].values
    mesh = ax.pcolormesh(u, v, values, shading="auto", **style)
    _draw_plane_anchors(ax, ds, plane)
    ax.set(title=title, xlabel="u", ylabel="v", aspect="equal", xlim=(u.min(), u.max()), ylim=(v.min(), v.max()))
    return mesh


def _anchor_names(ds: xr.Dataset, kind: str, span: int) -> list[str]:
    classes = ds.attrs["classes"]
    return [classes[int(c)] for c in ds[f"{kind}_anchor_class"].values[span]]


TRIANGLE = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])  # corners of the ternary plot


def _ternary_panel(ax, probabilities: np.ndarray, volume: np.ndarray, names: list[str], title: str, **style):
    """Grid points at the barycentre of their anchor-class probabilities (normalised to sum to one),
    coloured by ``volume``: a point near a corner is confidently that anchor's class."""
    weights = probabilities.reshape(3, -1)
    weights = weights / np.maximum(weights.sum(axis=0), 1e-300)
    xy = weights.T @ TRIANGLE
    ax.plot(*np.vstack([TRIANGLE, TRIANGLE[:1]]).T, color="black", linewidth=0.8)
    points = ax.scatter(xy[:, 0], xy[:, 1], c=volume.reshape(-1), s=6, **style)
    for corner, name in zip(TRIANGLE, names):
        ax.annotate(name, corner, textcoords="offset points", xytext=(0, -10 if corner[1] == 0 else 4),
                    ha="center", fontsize=7)
    ax.set(title=title, aspect="equal", xlim=(-0.1, 1.1), ylim=(-0.15, 1.0))
    ax.set_axis_off()
    return points


def plot_planes(store_path: str | Path, png: str | Path, pdf: str | Path, seed: int | None = None) -> None:
    """Predicted class, log10 entropy, log10 volume element and the anchor classes' ternary plot on every
    plane across epochs."""
    ds = open_store(store_path)
    seed = first_seed(ds, seed)
    block = str(ds["block"].values[0])
    epochs = ds["epoch"].values
    n_classes = len(ds.attrs["classes"])
    cmap, norm = _class_colours(n_classes)
    planes = ds["plane"].values
    fig, axes = plt.subplots(4 * len(planes), len(epochs), figsize=(PANEL * len(epochs) + 1.5, PANEL * 4 * len(planes)),
                             squeeze=False, constrained_layout=True)
    for plane in planes:
        rows = axes[4 * plane: 4 * plane + 4]
        at = {"seed": seed, "plane": plane}
        predicted = ds["plane_predicted_class"].sel(at).values
        log_entropy = np.log10(np.maximum(ds["plane_entropy"].sel(at).values, 1e-12))
        volume = ds["plane_log10_volume"].sel({**at, "block": block}).values
        limits = [finite_range(log_entropy), finite_range(volume)]
        names = _anchor_names(ds, "plane", plane)
        probabilities = ds["plane_anchor_probability"].sel(at).values
        for column, epoch in enumerate(epochs):
            title = f"epoch {int(epoch)}"
            mesh_class = _plane_panel(rows[0][column], ds, predicted[column], plane, title, cmap=cmap, norm=norm)
            mesh_entropy = _plane_panel(rows[1][column], ds, log_entropy[column], plane, title, cmap="magma",
                                        vmin=limits[0][0], vmax=limits[0][1])
            mesh_volume = _plane_panel(rows[2][column], ds, volume[column], plane, title, cmap="viridis",
                                       vmin=limits[1][0], vmax=limits[1][1])
            _ternary_panel(rows[3][column], probabilities[column], volume[column], names, title,
                           cmap="viridis", vmin=limits[1][0], vmax=limits[1][1])
        bar = fig.colorbar(mesh_class, ax=rows[0].tolist(), ticks=range(n_classes))
        bar.ax.set_yticklabels(ds.attrs["classes"], fontsize=6)
        bar.set_label("predicted class")
        fig.colorbar(mesh_volume, ax=rows[3].tolist(), label=rf"$\log_{{10}}\sqrt{{\det g}}$ ({block})")
        for row in rows[:3]:
            row[0].set_ylabel(f"plane {plane} ({', '.join(names)})\nv")
        fig.colorbar(mesh_entropy, ax=rows[1].tolist(), label=r"$\log_{10}$ entropy (nats)")
        fig.colorbar(mesh_volume, ax=rows[2].tolist(), label=rf"$\log_{{10}}\sqrt{{\det g}}$ ({block})")
    title = f"{ds.attrs['experiment']} (seed {seed}): planes through training images"
    fig.suptitle(title)
    save_with_lineage(fig, store_path, ds, png, pdf, title)


def _draw_interpolation(ax, anchors: np.ndarray, t: np.ndarray, shown: int = 11) -> None:
    """The images p1 + t (p2 - p1) (pixels, clipped to 0..255) at up to ``shown`` evenly spaced t of the line."""
    picks = np.unique(np.linspace(0, len(t) - 1, min(shown, len(t))).round().astype(int))
    p1, p2 = anchors.astype(np.float64)
    frames = [np.clip(p1 + t[i] * (p2 - p1), 0, 255).astype(np.uint8) for i in picks]
    gap = np.full((frames[0].shape[0], frames[0].shape[1], 2), 255, dtype=np.uint8)
    strip = np.concatenate([part for frame in frames for part in (frame, gap)][:-1], axis=2)  # (C, H, W total)
    image, cmap = _image(strip)
    ax.imshow(image, cmap=cmap, vmin=0, vmax=255)
    width = frames[0].shape[2] + gap.shape[2]
    ax.set_xticks([width * k + frames[0].shape[2] / 2 for k in range(len(picks))], [f"t={t[i]:.2g}" for i in picks],
                  fontsize=7)
    ax.set_yticks([])


def plot_lines(store_path: str | Path, png: str | Path, pdf: str | Path, seed: int | None = None) -> None:
    """log10 volume element along every line (one curve per feature map) with the predicted class behind it,
    one column per epoch; below, the images along the line (the study's Figures 2, top, and 5)."""
    ds = open_store(store_path)
    seed = first_seed(ds, seed)
    epochs = ds["epoch"].values
    n_classes = len(ds.attrs["classes"])
    cmap, norm = _class_colours(n_classes)
    t = ds["t"].values
    lines = ds["line"].values
    fig = plt.figure(figsize=(PANEL * 1.2 * len(epochs) + 1.5, PANEL * 1.6 * len(lines)), constrained_layout=True)
    grid = fig.add_gridspec(2 * len(lines), len(epochs), height_ratios=[3, 1] * len(lines))
    axes = [[fig.add_subplot(grid[2 * line, column]) for column in range(len(epochs))] for line in lines]
    for line in lines:
        at = {"seed": seed, "line": line}
        volume = ds["line_log10_volume"].sel(at)
        low, high = finite_range(volume.values)
        margin = 0.1 * (high - low) + 1e-9
        predicted = ds["line_predicted_class"].sel(at).values
        for column, epoch in enumerate(epochs):
            ax = axes[line][column]
            ax.pcolormesh(t, [low - margin, high + margin], np.tile(predicted[column], (2, 1)), shading="nearest",
                          cmap=cmap, norm=norm, alpha=0.35)
            for block in ds["block"].values:
                ax.plot(t, volume.sel(block=block).values[column], marker=".", label=str(block))
            ax.set(title=f"epoch {int(epoch)}", xlabel="t", ylim=(low - margin, high + margin))
        axes[line][0].set_ylabel(rf"line {line} ({', '.join(_anchor_names(ds, 'line', line))})" + "\n" + r"$\log_{10}\sqrt{\det g}$")
        _draw_interpolation(fig.add_subplot(grid[2 * line + 1, :]), ds["line_anchor_image"].values[line], t)
    axes[0][0].legend(fontsize=7)
    title = f"{ds.attrs['experiment']} (seed {seed}): lines between training images\n(background: predicted class)"
    fig.suptitle(title)
    save_with_lineage(fig, store_path, ds, png, pdf, title)


def plot_blocks(store_path: str | Path, png: str | Path, pdf: str | Path, seed: int | None = None) -> None:
    """log10 volume element on the first plane, one row per feature map (block), one column per epoch."""
    ds = open_store(store_path)
    seed = first_seed(ds, seed)
    epochs = ds["epoch"].values
    blocks = ds["block"].values
    fig, axes = plt.subplots(len(blocks), len(epochs), figsize=(PANEL * len(epochs) + 1.5, PANEL * len(blocks)),
                             squeeze=False, constrained_layout=True)
    for row, block in enumerate(blocks):
        volume = ds["plane_log10_volume"].sel(seed=seed, plane=0, block=block).values
        low, high = finite_range(volume)
        for column, epoch in enumerate(epochs):
            mesh = _plane_panel(axes[row][column], ds, volume[column], 0, f"{block}, epoch {int(epoch)}",
                                cmap="viridis", vmin=low, vmax=high)
        fig.colorbar(mesh, ax=axes[row].tolist(), label=rf"$\log_{{10}}\sqrt{{\det g}}$ ({block})")
    title = (f"{ds.attrs['experiment']} (seed {seed}): volume element per block\n"
             f"on plane 0 ({', '.join(_anchor_names(ds, 'plane', 0))})")
    fig.suptitle(title)
    save_with_lineage(fig, store_path, ds, png, pdf, title)


def _matching_blocks(first: list[str], second: list[str]) -> tuple[str, str]:
    """A feature map probed in both stores (by name, or one function under two names), else each one's first."""
    for name in first:
        for other in second:
            if name == other or SAME_FEATURE_MAPS.get(name) == other or SAME_FEATURE_MAPS.get(other) == name:
                return name, other
    return first[0], second[0]


def plot_compare(store_path: str | Path, other_path: str | Path, png: str | Path, pdf: str | Path,
                 seed: int | None = None) -> None:
    """Two experiments on the same first plane (e.g. supervised and Barlow Twins) at the epochs both probed:
    for each, a row of predicted classes and a row of log10 volume elements (its first feature map)."""
    stores = [open_store(store_path), open_store(other_path)]
    anchors = [ds["plane_anchor_index"].values[0].tolist() for ds in stores]
    if anchors[0] != anchors[1]:
        raise GeomvolError(f"stores {store_path} and {other_path} probe different planes (anchors {anchors[0]} and "
                           f"{anchors[1]}); compare needs the same anchor images")
    epochs = sorted(set(stores[0]["epoch"].values.tolist()) & set(stores[1]["epoch"].values.tolist()))
    seed = first_seed(stores[0], seed)
    blocks = _matching_blocks(*(ds["block"].values.tolist() for ds in stores))
    fig, axes = plt.subplots(4, len(epochs), figsize=(PANEL * len(epochs) + 2.0, PANEL * 4), squeeze=False,
                             constrained_layout=True)
    for number, ds in enumerate(stores):
        n_classes = len(ds.attrs["classes"])
        cmap, norm = _class_colours(n_classes)
        block = blocks[number]
        at = {"seed": seed, "plane": 0, "epoch": epochs}
        predicted = ds["plane_predicted_class"].sel(at).values
        volume = ds["plane_log10_volume"].sel({**at, "block": block}).values
        low, high = finite_range(volume)
        rows = axes[2 * number: 2 * number + 2]
        for column, epoch in enumerate(epochs):
            title = f"{ds.attrs['experiment']}, epoch {epoch}"
            mesh_class = _plane_panel(rows[0][column], ds, predicted[column], 0, title, cmap=cmap, norm=norm)
            mesh_volume = _plane_panel(rows[1][column], ds, volume[column], 0, title, cmap="viridis", vmin=low, vmax=high)
        bar = fig.colorbar(mesh_class, ax=rows[0].tolist(), ticks=range(n_classes))
        bar.ax.set_yticklabels(ds.attrs["classes"], fontsize=6)
        bar.set_label("predicted class" + (" (linear probe)" if "linear_probe_test_accuracy" in ds else ""))
        fig.colorbar(mesh_volume, ax=rows[1].tolist(), label=rf"$\log_{{10}}\sqrt{{\det g}}$ ({block})")
    title = (f"{stores[0].attrs['experiment']} and {stores[1].attrs['experiment']} (seed {seed}) on plane 0 "
             f"({', '.join(_anchor_names(stores[0], 'plane', 0))})")
    fig.suptitle(title)
    save_with_lineage(fig, store_path, stores[0], png, pdf, title, other_store=other_path)
