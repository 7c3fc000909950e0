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
- ``spectra``: log10 singular values of J / sqrt(n) at each anchor image,
  one curve per epoch, one panel per anchor and feature map (the study's
  spectrum plots).

- ``compare``: two experiments on the same plane side by side (supervised and
  Barlow Twins), predictions and log10 volume element at the epochs both probed.

Anchor images are drawn at their positions. Colour scales follow the ``figures`` config section
(``style``): each panel its own by default, as the study draws them, or one per row.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.offsetbox import AnnotationBbox, OffsetImage  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from geomvol.catalogue import SPLIT_NAMES  # noqa: E402
from geomvol.errors import GeomvolError  # noqa: E402
from geomvol.measures import counterpart, map_agreement  # noqa: E402
from geomvol.settings import FigureStyle  # noqa: E402
from geomvol.figures.common import (  # noqa: E402
    EPOCH_NOTE, VOLUME_LABEL, block_label, class_colourbar, class_colours, class_names, entropy_in, experiment_name,
    first_seed, plotted, row_colourbars, row_scales, save_with_lineage, scale_label, titled,
)
from geomvol.store import open_store  # noqa: E402

PANEL = 2.6  # inches per panel


def _image(pixels: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) uint8 -> what imshow draws: grey for one channel, RGB for three."""
    return (pixels[0], "gray") if pixels.shape[0] == 1 else (np.moveaxis(pixels, 0, -1), None)


def _draw_anchor(ax, pixels: np.ndarray, xy: tuple[float, float], zoom: float, axes_fraction: bool = False) -> None:
    """An anchor image drawn at ``xy`` (data coordinates, or fractions of the axes); small images enlarged."""
    image, cmap = _image(pixels)
    zoom *= max(1.0, 24 / image.shape[0])  # an 8 x 8 digit drawn as large as a 24-pixel image
    box = AnnotationBbox(OffsetImage(image, zoom=zoom, cmap=cmap), xy, frameon=True, pad=0.1,
                         xycoords="axes fraction" if axes_fraction else "data",
                         bboxprops={"edgecolor": "white", "linewidth": 0.8})
    ax.add_artist(box)


def anchor_corners(ds: xr.Dataset) -> np.ndarray:
    """(3, 2): the (u, v) of each anchor image on its plane."""
    return np.stack([ds["anchor_u"].values, ds["anchor_v"].values], axis=1)


def _draw_plane_anchors(ax, ds: xr.Dataset, plane: int) -> None:
    """The anchor images at their corners; a dataset without them (the notebook API's) gets a marker each."""
    if "plane_anchor_image" not in ds:
        ax.scatter(*anchor_corners(ds).T, s=30, marker="o", facecolor="white", edgecolor="black", zorder=3)
        return
    for anchor, xy in zip(ds["anchor"].values, anchor_corners(ds)):
        _draw_anchor(ax, ds["plane_anchor_image"].values[plane, anchor], tuple(xy), zoom=0.7)


def anchor_triangle(ds: xr.Dataset) -> np.ndarray:
    """(v, u) mask of the grid points strictly inside the triangle of the plane's three anchors (at
    ``anchor_u``, ``anchor_v``): the region the study's ``--ternary`` figures keep."""
    u, v = np.meshgrid(ds["u"].values, ds["v"].values)
    corners = anchor_corners(ds)
    inside = np.ones(u.shape, dtype=bool)
    for i in range(3):  # each edge: the point on the same side as the opposite corner
        a, b, c = corners[i], corners[(i + 1) % 3], corners[(i + 2) % 3]
        side = (b[0] - a[0]) * (v - a[1]) - (b[1] - a[1]) * (u - a[0])
        inside &= side * ((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])) > 0
    return inside


def in_region(ds: xr.Dataset, panels: np.ndarray, region: str) -> np.ndarray:
    """Panels (..., v, u) as floats, NaN outside the drawn ``region`` (``figures.plane_region``: square, the
    whole grid; triangle, the anchors' triangle), so that colour scales come from the values drawn."""
    panels = np.asarray(panels, dtype=float)
    return panels if region == "square" else np.where(anchor_triangle(ds), panels, np.nan)


def plane_panel(ax, ds, values, plane, title, region: str = "square", levels: int | None = None, **style):
    """One panel of a plane: a mesh of ``values`` (v, u), or about ``levels`` filled contours between the
    panel's vmin and vmax (at round values); the whole grid, or (region triangle) the anchors' triangle outlined.
    ``ds``: a volume store, or a dataset of the notebook API (``geomvol.probe_plane``)."""
    u, v = ds["u"].values, ds["v"].values
    if levels is None:
        mesh = ax.pcolormesh(u, v, values, shading="auto", rasterized=True, **style)
    else:
        low, high = style.pop("vmin"), style.pop("vmax")
        # levels + 1 round boundaries spanning [low, high], as contourf(levels=N) picks them from the data
        boundaries = MaxNLocator(levels + 1).tick_values(low, high)
        mesh = ax.contourf(u, v, np.ma.masked_invalid(values), levels=boundaries, extend="both", **style)
        mesh.set_rasterized(True)
    _draw_plane_anchors(ax, ds, plane)
    ax.set(title=title, xlabel="u", ylabel="v", aspect="equal", xlim=(u.min(), u.max()), ylim=(v.min(), v.max()))
    if region == "triangle":
        corners = anchor_corners(ds)
        ax.plot(*np.vstack([corners, corners[:1]]).T, color="black", linewidth=0.8)
        margin = 0.1
        ax.set(xlim=(corners[:, 0].min() - margin, corners[:, 0].max() + margin),
               ylim=(corners[:, 1].min() - margin, corners[:, 1].max() + margin))
    return mesh


def _anchor_names(ds: xr.Dataset, kind: str, span: int) -> list[str]:
    classes = class_names(ds, f"{kind}_predicted_class")
    return [classes[int(c)] for c in ds[f"{kind}_anchor_class"].values[span]]


TRIANGLE = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])  # corners of the ternary plot


def _ternary_panel(ax, probabilities: np.ndarray, volume: np.ndarray, names: list[str], title: str, **style):
    """Grid points at the barycentre of their anchor-class probabilities (normalised to sum to one),
    coloured by ``volume``: a point near a corner is confidently that anchor's class."""
    weights = probabilities.reshape(3, -1)
    weights = weights / np.maximum(weights.sum(axis=0), 1e-300)
    xy = weights.T @ TRIANGLE
    ax.plot(*np.vstack([TRIANGLE, TRIANGLE[:1]]).T, color="black", linewidth=0.8)
    points = ax.scatter(xy[:, 0], xy[:, 1], c=volume.reshape(-1), s=6, rasterized=True, **style)
    for corner, name in zip(TRIANGLE, names):
        ax.annotate(name, corner, textcoords="offset points", xytext=(0, -10 if corner[1] == 0 else 4),
                    ha="center", fontsize=7)
    ax.set(title=title, aspect="equal", xlim=(-0.1, 1.1), ylim=(-0.15, 1.0))
    ax.set_axis_off()
    return points


def draw_planes(ds: xr.Dataset, seed: int | None = None, style: FigureStyle = FigureStyle()):
    """Predicted class, log10 entropy, log10 volume element and the anchor classes' ternary plot on every
    plane across epochs; colour scales as ``style`` (the ``figures`` config section) says. ``ds``: a volume
    store, or a dataset of the notebook API (``geomvol.probe_plane``). Returns the figure."""
    scale, region, levels = style.colour_scale, style.plane_region, style.contour_levels
    seed = first_seed(ds, seed)
    block = str(ds["block"].values[0])
    epochs = ds["epoch"].values
    classes = class_names(ds, "plane_predicted_class")
    n_classes = len(classes)
    cmap, norm = class_colours(n_classes)
    planes = ds["plane"].values
    fig, axes = plt.subplots(4 * len(planes), len(epochs), figsize=(PANEL * len(epochs) + 1.5, PANEL * 4 * len(planes)),
                             squeeze=False, constrained_layout=True)
    for plane in planes:
        rows = axes[4 * plane: 4 * plane + 4]
        at = {"seed": seed, "plane": plane}
        predicted = in_region(ds, ds["plane_predicted_class"].sel(at).values, region)
        entropy, units = entropy_in(ds["plane_entropy"].sel(at).values, style.entropy_units)
        if style.entropy_scale == "log10":
            entropy, entropy_label = np.log10(np.maximum(entropy, 1e-12)), rf"$\log_{{10}}$ entropy ({units})"
        else:
            entropy_label = f"entropy ({units})"
        entropy, entropy_limits = row_scales(in_region(ds, entropy, region), scale)
        volume, volume_limits = row_scales(
            in_region(ds, ds["plane_log10_volume"].sel({**at, "block": block}).values, region), scale)
        names = _anchor_names(ds, "plane", plane)
        probabilities = ds["plane_anchor_probability"].sel(at).values
        meshes = {"entropy": [], "volume": [], "ternary": []}
        for column, epoch in enumerate(epochs):
            title = f"epoch {int(epoch)}"
            mesh_class = plane_panel(rows[0][column], ds, predicted[column], plane, title, region, cmap=cmap, norm=norm)
            low, high = entropy_limits[column]
            meshes["entropy"].append(plane_panel(rows[1][column], ds, entropy[column], plane, title, region,
                                                  cmap="magma", vmin=low, vmax=high))
            low, high = volume_limits[column]
            meshes["volume"].append(plane_panel(rows[2][column], ds, volume[column], plane, title, region, levels,
                                                 cmap="viridis", vmin=low, vmax=high))
            meshes["ternary"].append(_ternary_panel(rows[3][column], probabilities[column], volume[column], names, title,
                                                    cmap="viridis", vmin=low, vmax=high))
        class_colourbar(fig, mesh_class, rows[0].tolist(), classes, predicted,
                        "predicted class" + (" (linear probe)" if "linear_probe_test_accuracy" in ds else ""))
        for row in rows[:3]:
            row[0].set_ylabel(f"plane {plane}\n{', '.join(names)}\nv")
            for ax in row[1:]:  # v is named once a row: beside a colour bar it would touch the bar's labels
                ax.set_ylabel("")
        row_colourbars(fig, meshes["entropy"], rows[1].tolist(), scale, entropy_label)
        row_colourbars(fig, meshes["volume"], rows[2].tolist(), scale, f"{VOLUME_LABEL}\n({block_label(block)})")
        row_colourbars(fig, meshes["ternary"], rows[3].tolist(), scale, f"{VOLUME_LABEL}\n({block_label(block)})")
    return titled(fig, f"{experiment_name(ds)} (seed {seed}): planes through {_anchor_origin(ds, 'plane')}\n{EPOCH_NOTE}")


plot_planes = plotted(draw_planes)


def _anchor_origin(ds: xr.Dataset, kind: str) -> str:
    """Where the anchor images come from: training images, test images, or both (the anchors given, in memory)."""
    if f"{kind}_anchor_split" not in ds:
        return "the anchors given"
    splits = sorted(set(ds[f"{kind}_anchor_split"].values.tolist()))
    return " and ".join(SPLIT_NAMES[split] for split in splits) + " images"


def _draw_interpolation(ax, anchors: np.ndarray, t: np.ndarray, pixel_max: int, shown: int = 11) -> None:
    """The images p1 + t (p2 - p1) at up to ``shown`` evenly spaced t of the line, their pixels (0..pixel_max)
    drawn on the 0..255 scale, clipped."""
    picks = np.unique(np.linspace(0, len(t) - 1, min(shown, len(t))).round().astype(int))
    p1, p2 = anchors.astype(np.float64) * (255 / pixel_max)
    frames = [np.clip(p1 + t[i] * (p2 - p1), 0, 255).astype(np.uint8) for i in picks]
    gap = np.full((frames[0].shape[0], frames[0].shape[1], 2), 255, dtype=np.uint8)
    strip = np.concatenate([part for frame in frames for part in (frame, gap)][:-1], axis=2)  # (C, H, W total)
    image, cmap = _image(strip)
    ax.imshow(image, cmap=cmap, vmin=0, vmax=255)
    width = frames[0].shape[2] + gap.shape[2]
    ax.set_xticks([width * k + frames[0].shape[2] / 2 for k in range(len(picks))], [f"t={t[i]:.2g}" for i in picks],
                  fontsize=7)
    ax.set_yticks([])


def draw_lines(ds: xr.Dataset, seed: int | None = None, style: FigureStyle = FigureStyle()):
    """log10 volume element along every line (one curve per feature map) with the predicted class behind it,
    one column per epoch; below, the images along the line (the study's Figures 2, top, and 5), where ``ds``
    holds them (a volume store; not a dataset of the notebook API, ``geomvol.probe_line``). The y range is each
    panel's own (per_panel) or the line's (shared; relative to each curve's median). Returns the figure."""
    scale = style.colour_scale
    seed = first_seed(ds, seed)
    epochs = ds["epoch"].values
    cmap, norm = class_colours(len(class_names(ds, "line_predicted_class")))
    t = ds["t"].values
    lines = ds["line"].values
    blocks = ds["block"].values
    images = "line_anchor_image" in ds
    rows = 2 if images else 1
    fig = plt.figure(figsize=(PANEL * 1.2 * len(epochs) + 1.5, PANEL * (1.6 if images else 1.2) * len(lines)),
                     constrained_layout=True)
    grid = fig.add_gridspec(rows * len(lines), len(epochs), height_ratios=[3, 1][:rows] * len(lines))
    axes = [[fig.add_subplot(grid[rows * line, column]) for column in range(len(epochs))] for line in lines]
    for line in lines:
        at = {"seed": seed, "line": line}
        # (epoch, block, t): each epoch's panel is one entry of the row
        curves, limits = row_scales(ds["line_log10_volume"].sel(at).transpose("epoch", "block", "t").values, scale)
        predicted = ds["line_predicted_class"].sel(at).values
        for column, epoch in enumerate(epochs):
            ax = axes[line][column]
            low, high = limits[column]
            margin = 0.1 * (high - low) + 1e-9
            ax.pcolormesh(t, [low - margin, high + margin], np.tile(predicted[column], (2, 1)), shading="nearest",
                          cmap=cmap, norm=norm, alpha=0.35)
            for number, block in enumerate(blocks):
                ax.plot(t, curves[column, number], marker=".", label=block_label(block))
            ax.set(title=f"epoch {int(epoch)}", xlabel="t", ylim=(low - margin, high + margin))
        ylabel = scale_label(VOLUME_LABEL, scale)
        axes[line][0].set_ylabel(rf"line {line} ({', '.join(_anchor_names(ds, 'line', line))})" + "\n" + ylabel)
        if images:
            _draw_interpolation(fig.add_subplot(grid[2 * line + 1, :]), ds["line_anchor_image"].values[line], t,
                                int(ds["line_anchor_image"].attrs["valid_range"][1]))
    axes[0][0].legend(fontsize=7)
    return titled(fig, f"{experiment_name(ds)} (seed {seed}): lines between {_anchor_origin(ds, 'line')}\n"
                       f"(background: predicted class)\n{EPOCH_NOTE}")


plot_lines = plotted(draw_lines)


def draw_blocks(ds: xr.Dataset, seed: int | None = None, style: FigureStyle = FigureStyle()):
    """log10 volume element on the first plane, one row per feature map (block), one column per epoch; ``ds``: a
    volume store or a dataset of the notebook API. Returns the figure."""
    scale, region = style.colour_scale, style.plane_region
    seed = first_seed(ds, seed)
    epochs = ds["epoch"].values
    blocks = ds["block"].values
    fig, axes = plt.subplots(len(blocks), len(epochs), figsize=(PANEL * len(epochs) + 1.5, PANEL * len(blocks)),
                             squeeze=False, constrained_layout=True)
    for row, block in enumerate(blocks):
        volume, limits = row_scales(
            in_region(ds, ds["plane_log10_volume"].sel(seed=seed, plane=0, block=block).values, region), scale)
        meshes = []
        for column, epoch in enumerate(epochs):
            low, high = limits[column]
            meshes.append(plane_panel(axes[row][column], ds, volume[column], 0, f"{block_label(block)}, epoch {int(epoch)}",
                                       region, style.contour_levels, cmap="viridis", vmin=low, vmax=high))
        width = int(ds["feature_width"].sel(block=block))
        row_colourbars(fig, meshes, axes[row].tolist(), scale, f"{VOLUME_LABEL}\n({block_label(block)}, n = {width})")
    return titled(fig, f"{experiment_name(ds)} (seed {seed}): volume element per block\n"
                       f"on plane 0 ({', '.join(_anchor_names(ds, 'plane', 0))}); {EPOCH_NOTE}")


plot_blocks = plotted(draw_blocks)


def plot_spectra(store_path: str | Path, png: str | Path, pdf: str | Path, seed: int | None = None,
                 style: FigureStyle = FigureStyle()) -> None:
    """The singular-value spectrum of each feature map at each anchor image: log10 of the singular values of
    J / sqrt(n) (the square roots of the eigenvalues of g) against their rank, one curve per probed epoch (or
    per epoch of ``style.spectra_epochs``), and
    the number k the volume element keeps (dashed); one column per anchor image (of every plane and line), one
    row per feature map."""
    ds = open_store(store_path)
    seed = first_seed(ds, seed)
    columns = [(kind, int(span), int(anchor)) for kind, anchor_dim in (("plane", "anchor"), ("line", "line_anchor"))
               if f"{kind}_anchor_singular_values" in ds
               for span in ds[kind].values for anchor in ds[anchor_dim].values]
    if not columns:
        raise GeomvolError(f"store {store_path} has no spectra (probe.spectra was false)")
    blocks = ds["block"].values
    epochs = ds["epoch"].values if style.spectra_epochs is None else style.spectra_epochs
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(epochs)))
    fig, axes = plt.subplots(len(blocks), len(columns),
                             figsize=(PANEL * len(columns) + 1.0, PANEL * 1.2 * len(blocks) + 1.0),  # room for the title
                             squeeze=False, constrained_layout=True)
    for column, (kind, span, anchor) in enumerate(columns):
        anchor_dim = "anchor" if kind == "plane" else "line_anchor"
        name = _anchor_names(ds, kind, span)[anchor]
        for row, block in enumerate(blocks):
            ax = axes[row][column]
            values = ds[f"{kind}_anchor_singular_values"].sel({"seed": seed, "block": block, kind: span, anchor_dim: anchor})
            width = int(ds["feature_width"].sel(block=block))
            for colour, epoch in zip(colours, epochs):
                singular = values.sel(epoch=epoch).values
                with np.errstate(divide="ignore"):
                    ax.plot(ds["k"].values, np.log10(singular / np.sqrt(width)), color=colour, label=f"epoch {int(epoch)}")
            kept = int(ds[f"{kind}_top_k"].sel(block=block))
            ax.axvline(kept, color="grey", linestyle="--", linewidth=0.8, label=f"k = {kept} kept")
            ax.set(title=f"{kind} {span}, anchor {anchor} ({name})", xlabel="rank k")
            if column == 0:
                ax.set_ylabel(f"{block_label(block)}\n" + r"$\log_{10}\,\sigma_k(J)/\sqrt{n}$")
            ax.title.set_fontsize(8)
            _draw_anchor(ax, ds[f"{kind}_anchor_image"].values[span, anchor], (0.85, 0.8), zoom=0.6, axes_fraction=True)
    axes[0][-1].legend(fontsize=6)
    titled(fig, f"{ds.attrs['experiment']} (seed {seed}): singular values of the Jacobian at the anchor images\n"
                f"(square roots of the eigenvalues of g = J^T J / n); {EPOCH_NOTE}")
    save_with_lineage(fig, store_path, ds, png, pdf, style=style)


def _matching_blocks(first: list[str], second: list[str]) -> tuple[str, str]:
    """A feature map probed in both stores (by name, or one function under two names), else each one's first."""
    for name in first:
        other = counterpart(name, second)
        if other is not None:
            return name, other
    return first[0], second[0]


def plot_compare(store_path: str | Path, other_path: str | Path, png: str | Path, pdf: str | Path,
                 seed: int | None = None, style: FigureStyle = FigureStyle()) -> None:
    """Two experiments on the same first plane (e.g. supervised and Barlow Twins) at the epochs both probed:
    for each, a row of predicted classes and a row of log10 volume elements (a feature map both probe, else each
    one's first); the second's volume panels give the agreement of the two maps (the rank correlation and the
    overlap of their top-decile regions, as the measures' ``compared_agreement_*``)."""
    scale, region = style.colour_scale, style.plane_region
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
    maps = []  # each store's log10 volume element at the common epochs
    for number, ds in enumerate(stores):
        n_classes = len(ds.attrs["classes"])
        cmap, norm = class_colours(n_classes)
        block = blocks[number]
        at = {"seed": seed, "plane": 0, "epoch": epochs}
        predicted = in_region(ds, ds["plane_predicted_class"].sel(at).values, region)
        maps.append(ds["plane_log10_volume"].sel({**at, "block": block}).values)  # (epoch, v, u)
        volume, limits = row_scales(in_region(ds, maps[-1], region), scale)
        rows = axes[2 * number: 2 * number + 2]
        meshes = []
        for column, epoch in enumerate(epochs):
            title = f"{ds.attrs['experiment']}, epoch {epoch}"
            mesh_class = plane_panel(rows[0][column], ds, predicted[column], 0, title, region, cmap=cmap, norm=norm)
            low, high = limits[column]
            if number == 1:  # the agreement of the two maps drawn, over the whole plane (the measures' for this pair)
                agreement = map_agreement(maps[0][column], maps[1][column])
                title += (f"\nrank corr. {agreement['correlation'][0]:.2f}, top-10% IoU "
                          f"{agreement['top_decile_iou'][0]:.2f}")
            meshes.append(plane_panel(rows[1][column], ds, volume[column], 0, title, region, style.contour_levels,
                                      cmap="viridis", vmin=low, vmax=high))
        class_colourbar(fig, mesh_class, rows[0].tolist(), ds.attrs["classes"], predicted,
                        "predicted class" + (" (linear probe)" if "linear_probe_test_accuracy" in ds else ""))
        row_colourbars(fig, meshes, rows[1].tolist(), scale, f"{VOLUME_LABEL}\n({block_label(block)})")
    titled(fig, f"{stores[0].attrs['experiment']} and {stores[1].attrs['experiment']} (seed {seed}) on plane 0 "
                f"({', '.join(_anchor_names(stores[0], 'plane', 0))})\n{EPOCH_NOTE}")
    save_with_lineage(fig, store_path, stores[0], png, pdf, other_store=other_path, style=style)
