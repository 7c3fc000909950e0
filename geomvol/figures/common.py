"""What every figure shares: saving as PNG and PDF with the lineage of its store in the files' metadata (and a
check that no labels overlap), the colour scales of a row of panels, entropy units, and what "epoch"
means."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402

from geomvol.io import atomic_path  # noqa: E402
from geomvol.catalogue import EPOCH_CONVENTION  # noqa: E402
from geomvol.provenance import record, sha256_tree  # noqa: E402
from geomvol.settings import FigureStyle  # noqa: E402
from geomvol.store import open_store  # noqa: E402

plt.rcParams["axes.titlepad"] = 9  # points between a panel's title and its top tick labels


def title_width(inches: float) -> int:
    """Characters of a 10-point title that fit across a figure ``inches`` wide."""
    return max(40, int(inches * 11))


def titled(fig, title: str):
    """``fig`` with ``title`` above it, each line wrapped to the figure's width."""
    width = title_width(fig.get_figwidth())
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in title.split("\n")), fontsize=10)
    return fig


def experiment_name(ds: xr.Dataset) -> str:
    """The experiment a dataset was probed for (a store's), or that it was probed in memory (the notebook API's)."""
    return ds.attrs.get("experiment", "a model in memory")


def class_names(ds: xr.Dataset, variable: str) -> list[str]:
    """The class names of a store (its ``classes``), or of a notebook dataset (the flag meanings of the predicted
    class ``variable``)."""
    if "classes" in ds.attrs:
        return list(ds.attrs["classes"])
    return ds[variable].attrs["flag_meanings"].split(" ")


def plotted(draw):
    """The ``plot_*`` function of a ``draw_*`` one: open a store (a volume store; the measures store for the
    profiles), draw it (one seed, default the first; the ``figures`` config section's style) and save it as PNG
    and PDF with its lineage (:func:`save_with_lineage`)."""
    def plot(store_path: str | Path, png: str | Path, pdf: str | Path, seed: int | None = None,
             style: FigureStyle = FigureStyle()) -> None:
        ds = open_store(store_path)
        save_with_lineage(draw(ds, seed, style), store_path, ds, png, pdf, style=style)

    plot.__name__ = plot.__qualname__ = draw.__name__.replace("draw_", "plot_")
    plot.__doc__ = f":func:`{draw.__name__}` of a store, saved as PNG and PDF with its lineage."
    return plot


def save_with_lineage(fig, store_path: str | Path, ds: xr.Dataset, png: str | Path, pdf: str | Path,
                      other_store: str | Path | None = None, style: FigureStyle | None = None) -> None:
    """Write ``fig`` (titled: :func:`titled`) atomically as PNG and PDF carrying their lineage, then close it.

    The lineage (what ``geomvol trace`` reads): the figure's kind (the file's stem), the store it was
    drawn from and that store's sha256 (and the other store's, for a comparison), the config's sha256,
    the provenance (:func:`geomvol.provenance.record`) and the definitions its numbers follow
    (:func:`figure_definitions`); in the PNG as ``geomvol:*`` text chunks, in the PDF as JSON in Keywords
    (and in words in Subject). Labels that overlap are named on stderr
    (:func:`overlapping_labels`).
    """
    lineage = {
        "figure": Path(png).stem,
        "store": str(store_path),
        "store_sha256": sha256_tree(store_path),
        "config_sha256": ds.attrs["config_sha256"],
        **{key: value if isinstance(value, str) else json.dumps(value, sort_keys=True) for key, value in record().items()},
        "definitions": json.dumps(figure_definitions(ds, style), sort_keys=True),
    }
    if other_store is not None:
        lineage.update(other_store=str(other_store), other_store_sha256=sha256_tree(other_store))
    description = f"geomvol figure from store {store_path} (sha256 {lineage['store_sha256']})"
    title = fig.get_suptitle()
    fig.set_dpi(150)  # the PNG's
    for problem in overlapping_labels(fig):
        print(f"geomvol: figure {png}: {problem}", file=sys.stderr)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi, metadata={
            "Title": title, "Description": description, "Source": str(store_path),
            **{f"geomvol:{key}": value for key, value in lineage.items()},
        })
    fig.set_layout_engine("none")  # laid out for the PNG: the PDF keeps its positions (a third of the time)
    with atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf", metadata={
            "Title": title, "Subject": description, "Keywords": json.dumps(lineage, sort_keys=True),
        })
    plt.close(fig)


def overlapping_labels(fig) -> list[str]:
    """Text of ``fig`` that does not read, as last drawn: neighbouring tick labels of any axis (colour bars
    included) whose boxes overlap, and any two other texts (titles, axis and colour-bar labels, annotations)
    that overlap each other or a tick label; each as a sentence naming the two texts. Lays the figure out
    (without rendering it) first."""
    from matplotlib.text import Text

    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    problems, drawn_ticks, every_tick_label = [], {}, set()  # drawn tick labels with their boxes, in order
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                every_tick_label.update((tick.label1, tick.label2))
        if not ax.get_visible() or not ax.axison:
            continue
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            low, high = sorted(axis.get_view_interval())
            slack = 1e-9 * max(abs(low), abs(high), 1.0)
            labels = {label: label.get_window_extent(renderer)
                      for tick, at in zip(axis.get_major_ticks(), axis.get_majorticklocs())
                      if low - slack <= at <= high + slack  # the ticks drawn
                      for label in (tick.label1, tick.label2) if label.get_visible() and label.get_text()}
            drawn_ticks.update(labels)
            for (first, first_box), (second, second_box) in zip(labels.items(), list(labels.items())[1:]):
                if first_box.overlaps(second_box):
                    where = ax.get_title() or ax.get_ylabel() or ax.get_xlabel() or "without a title or labels"
                    problems.append(f"{name} tick labels {first.get_text()!r} and {second.get_text()!r} overlap "
                                    f"(panel {where!r})")
    texts = {text: text.get_window_extent(renderer) for text in fig.findobj(Text)
             if text.get_visible() and text.get_text().strip() and text not in every_tick_label
             and (text.axes is None or text.axes.get_visible())}
    others = [*texts.items(), *drawn_ticks.items()]
    for i, (text, text_box) in enumerate(texts.items()):
        for other, other_box in others[i + 1:]:  # the texts after it, then every drawn tick label
            if text_box.overlaps(other_box):
                problems.append(f"the texts {text.get_text()!r} and {other.get_text()!r} overlap")
    return problems


DEFINITION_ATTRS = ("epoch_convention", "metric_definition", "block_pooling", "input_normalisation", "channel_mean",
                    "channel_std")


def figure_definitions(ds: xr.Dataset, style: FigureStyle | None = None) -> dict:
    """Which definitions a figure's numbers follow, from its store's attrs: what "epoch" means, the metric,
    the ResNet blocks' pooling, the input normalisation, how each plane's and line's anchors were chosen
    (split, sampler, seed), and the figure's style (colour scales, entropy units)."""
    definitions = {"epoch_convention": EPOCH_CONVENTION,
                   **{key: ds.attrs[key] for key in DEFINITION_ATTRS if key in ds.attrs}}
    for kind in ("plane", "line"):
        if f"{kind}_anchor_choice" in ds:
            definitions[f"{kind}_anchors"] = [json.loads(choice) for choice in ds[f"{kind}_anchor_choice"].values]
    if style is not None:
        definitions["style"] = dataclasses.asdict(style)
    return definitions


BLOCK_LABEL_CHARACTERS = 16


def block_label(name) -> str:
    """A feature map's name as a figure writes it: whole when short; a long graph-node path by as many of its last
    parts as fit (``…encoder_layer_0`` for ``encoder.layers.encoder_layer_0``), so that titles and colour-bar
    labels stay within their panels. The store keeps the whole name."""
    name = str(name)
    if len(name) <= BLOCK_LABEL_CHARACTERS:
        return name
    *parents, kept = name.split(".")
    for part in reversed(parents):
        if len(part) + len(kept) + 2 > BLOCK_LABEL_CHARACTERS:
            break
        kept = f"{part}.{kept}"
    return f"…{kept}"


def finite_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values, for one colour scale shared by several panels."""
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


CLASS_TICKS = 20  # a class colour bar names every class up to this many; beyond, those drawn


def class_colours(n_classes: int) -> tuple[ListedColormap, BoundaryNorm]:
    """One colour per class (tab10 up to 10 classes, tab20 up to 20, beyond that evenly spaced hues of turbo) and
    the norm that maps class c to its colour."""
    if n_classes <= 20:
        colours = plt.get_cmap("tab10" if n_classes <= 10 else "tab20").colors[:n_classes]
    else:
        colours = plt.get_cmap("turbo")(np.linspace(0, 1, n_classes))
    return ListedColormap(colours), BoundaryNorm(np.arange(n_classes + 1) - 0.5, n_classes)


def class_colourbar(fig, mesh, axes: list, classes: list[str], drawn: np.ndarray, label: str):
    """The colour bar of the predicted classes beside ``axes``: every class named when there are at most
    ``CLASS_TICKS``, else only classes ``drawn`` (the class ids in the panels, -1 or NaN for none), as many as
    stay apart (the others by their colour alone)."""
    shown = list(range(len(classes)))
    if len(classes) > CLASS_TICKS:  # drawn classes, each at least a tenth of the bar from the last named
        values = np.asarray(drawn, dtype=float)
        gap, shown = len(classes) / 10, []
        for c in sorted({int(c) for c in values[np.isfinite(values)] if c >= 0}):
            if not shown or c - shown[-1] >= gap:
                shown.append(c)
    bar = fig.colorbar(mesh, ax=axes, ticks=shown)
    bar.ax.set_yticklabels([classes[c] for c in shown], fontsize=6)
    bar.set_label(label)
    return bar


def draw_decision_boundary(ax, x: np.ndarray, y: np.ndarray, classes: np.ndarray, colour: str,
                           linewidth: float) -> None:
    """The decision boundary over a panel of predicted ``classes`` (y, x): where the predicted class changes,
    drawn as the edges of the regions of every class present but one (each boundary between two classes is
    an edge of both, so none is missed, and with two classes each is drawn once; contours of the class
    numbers would draw a line for every class number in between)."""
    present = np.unique(classes)
    for label in present[:-1]:
        ax.contour(x, y, (classes == label).astype(float), levels=[0.5], colors=colour, linewidths=linewidth)


def first_seed(ds: xr.Dataset, seed: int | None) -> int:
    return int(ds["seed"].values[0]) if seed is None else seed


EPOCH_NOTE = "epoch E: after E passes over the training set (0: untrained; the study's epoch E is E + 1 here)"
VOLUME_LABEL = r"$\log_{10}\sqrt{\det g}$"


def row_scales(panels: np.ndarray, colour_scale: str) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The values to draw of a row of panels (P, ...) and each panel's (vmin, vmax).

    per_panel: each panel its own finite range; shared: one range for the row; shared_relative_to_median:
    each panel minus the median of its finite values, then one range for the row.
    """
    panels = np.asarray(panels, dtype=float)
    if colour_scale == "shared_relative_to_median":
        medians = [np.median(panel[np.isfinite(panel)]) if np.isfinite(panel).any() else 0.0 for panel in panels]
        panels = panels - np.reshape(medians, (-1,) + (1,) * (panels.ndim - 1))
    if colour_scale == "per_panel":
        return panels, [finite_range(panel) for panel in panels]
    return panels, [finite_range(panels)] * len(panels)


def scale_label(label: str, colour_scale: str) -> str:
    """A colour bar's label, saying when the panels are drawn relative to their medians."""
    return f"{label}\n− panel median" if colour_scale == "shared_relative_to_median" else label


def row_colourbars(fig, meshes: list, axes: list, colour_scale: str, label: str) -> None:
    """One colour bar per panel (per_panel, labelled on the last), or one for the whole row."""
    label = scale_label(label, colour_scale)
    if colour_scale == "per_panel":
        for number, (mesh, ax) in enumerate(zip(meshes, axes)):
            bar = fig.colorbar(mesh, ax=ax, shrink=0.8, pad=0.04)
            bar.ax.tick_params(labelsize=6)
            if number == len(axes) - 1:
                bar.set_label(label)
    else:
        fig.colorbar(meshes[-1], ax=list(axes), label=label)


def entropy_in(nats: np.ndarray, units: str) -> tuple[np.ndarray, str]:
    """Entropy stored in nats, in the figure's units, and the unit's name: hartley (base-10 logarithm,
    the study's) or nat."""
    if units == "hartley":
        return np.asarray(nats) / math.log(10), "hartleys"
    return np.asarray(nats), "nats"
