"""Magnification measures against training epoch: when does the network start to magnify its boundary?

One panel per measure (those of the volume element, then, when the probe stored the curvature, those of |K|
and of the sign of K) and probed field (the input grid, or each plane and line), each beside its change from
epoch 0 (what training changed; when epoch 0 was probed); with one field, two measures to a row (three when
there are more than 16), so that the figure is no taller than wide. In each panel one line per block: the mean over seeds with its bootstrap interval shaded,
and each seed's value as faint dots; on the change panels, the number of seeds in which the measure rose from
epoch 0 at each epoch, a row per block at the panel's foot. A dashed line marks no effect (0; for the stretch
alignment, 2/pi, that of directions drawn at random). The probed
epochs are evenly spaced along the axis, labelled with their values, so that epochs spanning decades (0, 200,
5000, 10000) all read.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from geomvol.settings import FigureStyle  # noqa: E402
from geomvol.figures.common import EPOCH_NOTE, block_label, plotted, save_with_lineage, titled  # noqa: E402
from geomvol.measures import DEFINITIONS, PROFILES, measured_fields  # noqa: E402
from geomvol.store import open_store  # noqa: E402

PANEL = (3.4, 2.6)
MAX_ROWS = 8  # rows of measures in the figure of one field (each at least 1.6 inches, its label's length)
SHORT_NAMES = {
    "entropy_correlation": "rank corr.\nlog vol. ~ entropy",
    "boundary_ratio": "log10 vol. ratio\nnear / away from boundary",
    "boundary_distance_correlation": "rank corr. log vol. ~\n−distance to true boundary",
    "abs_curvature_entropy_correlation": "rank corr.\n|K| ~ entropy",
    "abs_curvature_boundary_ratio": "log10 |K| ratio\nnear / away from boundary",
    "abs_curvature_boundary_distance_correlation": "rank corr. |K| ~\n−distance to true boundary",
    "curvature_sign_near_boundary": "mean sign K\nnear boundary",
    "curvature_sign_boundary_contrast": "mean sign K near\nminus away from boundary",
    "curvature_sign_entropy_correlation": "rank corr.\nsign K ~ entropy",
    "curvature_sign_boundary_distance_correlation": "rank corr. sign K ~\n−distance to true boundary",
    "learned_boundary_correlation": "rank corr. log vol. ~\n−distance to network's boundary",
    "distance_ratio": "log10 vol. ratio nearest\n/ away from network's boundary",
    "abs_curvature_learned_boundary_correlation": "rank corr. |K| ~\n−distance to network's boundary",
    "abs_curvature_distance_ratio": "log10 |K| ratio nearest\n/ away from network's boundary",
    "delta_ratio": "log10 vol. ratio within δ\n/ beyond network's boundary",
    "abs_curvature_delta_ratio": "log10 |K| ratio within δ\n/ beyond network's boundary",
    "metric_anisotropy_near_boundary": "anisotropy log10(λ1/λ2)\nnearest network's boundary",
    "metric_anisotropy_away_from_boundary": "anisotropy log10(λ1/λ2)\naway from network's boundary",
    "stretch_alignment_near_boundary": "alignment |cos| stretch ~\nmargin gradient, nearest",
    "stretch_alignment_away_from_boundary": "alignment |cos| stretch ~\nmargin gradient, away",
}
# The value of a measure that shows no effect, drawn dashed: 0, or the alignment of directions drawn at random.
NO_EFFECT = {"stretch_alignment_near_boundary": 2 / math.pi, "stretch_alignment_away_from_boundary": 2 / math.pi}


def plot_measures(store_path: str | Path, png: str | Path, pdf: str | Path, seed: int | None = None,
                  style: FigureStyle = FigureStyle()) -> None:
    """Draw the measures store of one experiment (``seed`` and ``style`` are unused: every seed is drawn, and
    the panels are curves, not colour scales)."""
    store_path = Path(store_path)
    ds = open_store(store_path).load()
    fields = measured_fields(ds)
    rows = [name for name in DEFINITIONS if any(f"{prefix}{name}" in ds for prefix, _, _ in fields)]
    changes = [""] + (["_change"] if any(f"{prefix}{rows[0]}_change" in ds for prefix, _, _ in fields) else [])
    columns = [(*field, change) for field in fields for change in changes]
    # measures side by side in a row of panels: with one field two, or more to keep to MAX_ROWS rows
    per_row = max(2, math.ceil(len(rows) / MAX_ROWS)) if len(fields) == 1 else 1
    n_rows = math.ceil(len(rows) / per_row)
    width = max(PANEL[0] * per_row * len(columns) + 1, 6.0)
    row_height = min(PANEL[1], max(1.6, 1.1 * width / n_rows))  # toward a page: no taller than wide
    fig, axes = plt.subplots(n_rows, per_row * len(columns), figsize=(width, row_height * n_rows), squeeze=False,
                             constrained_layout=True)
    for ax in axes.flat[len(rows) * len(columns):]:
        ax.set_axis_off()
    epochs = ds["epoch"].values
    at_epoch = np.arange(len(epochs))  # evenly spaced, labelled with the epochs
    drawn = []  # the panels with values
    every = math.ceil(len(epochs) / 8)
    for index, name in enumerate(rows):
        row, first = index // per_row, (index % per_row) * len(columns)
        for column, (prefix, span_dim, span, change) in enumerate(columns):
            ax = axes[row, first + column]
            variable = f"{prefix}{name}{change}"
            if variable not in ds:
                ax.set_axis_off()
                continue
            select = {} if span_dim is None else {span_dim: span}
            for i, block in enumerate(ds["block"].values):
                colour = plt.get_cmap("tab10")(i)
                at = {**select, "block": block}
                mean = ds[f"{variable}_mean"].sel(at).values
                low, high = ds[f"{variable}_interval"].sel(at).values
                ax.plot(at_epoch, mean, "-o", color=colour, markersize=3, label=block_label(block))
                ax.fill_between(at_epoch, low, high, color=colour, alpha=0.25, linewidth=0)
                for s in ds["seed"].values:
                    ax.plot(at_epoch, ds[variable].sel(at).sel(seed=s).values, ".", color=colour, alpha=0.35,
                            markersize=4)
                if change:  # how many seeds rose from epoch 0, at each later epoch: a row per block at the foot
                    fraction = ds[f"{prefix}{name}_rise_fraction"].sel(at).values
                    defined = ds[f"{variable}_n_seeds"].sel(at).values  # seeds whose change is defined
                    for x, epoch, value, rose, count in zip(at_epoch, epochs, mean, fraction, defined):
                        if epoch > 0 and np.isfinite(rose) and np.isfinite(value):
                            ax.text(x, 0.03 + 0.075 * i, f"{round(rose * count)}/{count}", fontsize=6, color=colour,
                                    ha="center", va="bottom", transform=ax.get_xaxis_transform(),
                                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5})
            ax.axhline(0.0 if change else NO_EFFECT.get(name, 0.0), color="grey", linestyle="--", linewidth=0.8)
            ax.set_xticks(at_epoch[::every], [str(int(epoch)) for epoch in epochs[::every]])
            ax.set_xlim(-0.4, len(epochs) - 0.6)
            ax.margins(y=0.15)
            if ds[variable].sel(select).notnull().any():
                drawn.append(ax)
            else:
                why = ds[variable].attrs["undefined"][0].split(": ", 1)[-1]
                ax.text(0.5, 0.5, "undefined:\n" + textwrap.fill(why, 36), transform=ax.transAxes, ha="center",
                        va="center", fontsize=7, bbox={"facecolor": "white", "edgecolor": "none"})
            where = "input grid" if span_dim is None else f"{span_dim} {span}"
            ax.set_title(f"{where}: change from epoch 0" if change else where, fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            if column == 0:
                ax.set_ylabel(SHORT_NAMES[name], fontsize=8)
    # the legend on the last panel of the first row that has values (an undefined one says so in its middle)
    legend_panels = [ax for ax in drawn if ax in axes[0].tolist()] or drawn
    if legend_panels:
        legend_panels[-1].legend(title="block", fontsize=7, title_fontsize=7, loc="best")
    interval = ds[f"{fields[0][0]}{rows[0]}_interval"].attrs
    spread = (f"mean over {interval['n_seeds']} seeds, {interval['confidence_level']:.0%} bootstrap interval shaded, "
              f"seeds as dots" if interval["n_seeds"] > 1 else "one seed (no interval)")
    if len(changes) > 1:
        spread += "; k/n: of the n seeds where it is defined, k in which the measure rose from epoch 0"
    titled(fig, f"{ds.attrs['experiment']}: magnification measures\n{spread}; {EPOCH_NOTE}")
    save_with_lineage(fig, store_path, ds, png, pdf)


PROFILE_LABELS = {"log10_volume_profile": r"mean $\log_{10}\sqrt{\det g}$", "log10_abs_curvature_profile": r"mean $\log_{10}|K|$"}


def draw_profiles(ds, seed: int | None = None, style: FigureStyle = FigureStyle()):
    """The profiles of a measures store (``seed`` and ``style`` are unused: the mean over seeds is drawn): for each
    field (the input grid, each plane and line) and block, the mean log10 volume element (and log10 |K|) against
    the distance to the network's own boundary, one line per epoch (the bootstrap interval over seeds shaded), a
    dashed line at the boundary."""
    fields = [(prefix, span_dim, span) for prefix, span_dim, span in measured_fields(ds)
              if f"{prefix}{PROFILES['log10_volume'][0]}" in ds]
    if not fields:  # no boundary on any field, or probed before the probes located it
        located = any(f"{prefix}learned_boundary_correlation" in ds for prefix, _, _ in measured_fields(ds))
        why = ("no field holds a decision boundary: the network leads with one class everywhere probed" if located
               else "the probes of this store did not locate the network's boundary\n(probed before geomvol did; "
                    "rerun them: snakemake -R probe)")
        fig, ax = plt.subplots(figsize=(6.0, 2.0), constrained_layout=True)
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"no profiles: {why}", ha="center", va="center", fontsize=8)
        return titled(fig, f"{ds.attrs['experiment']}: the volume element against the distance to the network's "
                           f"boundary")
    names = [name for name, _, _ in PROFILES.values() if any(f"{prefix}{name}" in ds for prefix, _, _ in fields)]
    blocks = ds["block"].values
    rows = [(field, name) for field in fields for name in names]
    fig, axes = plt.subplots(len(rows), len(blocks), figsize=(PANEL[0] * len(blocks) + 1.2, PANEL[1] * len(rows)),
                             squeeze=False, constrained_layout=True)
    epochs = ds["epoch"].values
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(epochs)))
    for row, ((prefix, span_dim, span), name) in enumerate(rows):
        variable = f"{prefix}{name}"
        bins = ds[f"{prefix}distance_bin"]
        for column, block in enumerate(blocks):
            ax = axes[row, column]
            at = {"block": block, **({} if span_dim is None else {span_dim: span})}
            for epoch, colour in zip(epochs, colours):
                mean = ds[f"{variable}_mean"].sel(at).sel(epoch=epoch).values
                low, high = ds[f"{variable}_interval"].sel(at).sel(epoch=epoch).values
                ax.plot(bins.values, mean, "-o", color=colour, markersize=3, label=str(int(epoch)))
                ax.fill_between(bins.values, low, high, color=colour, alpha=0.2, linewidth=0)
            ax.axvline(0.0, color="grey", linestyle="--", linewidth=0.8)
            where = "input grid" if span_dim is None else f"{span_dim} {span}"
            ax.set_title(f"{where}, {block_label(block)}", fontsize=9)
            side = "signed: + where class 1 leads" if bins.attrs["signed"] else "unsigned"
            ax.set_xlabel(f"distance to the network's boundary ({side})", fontsize=8)
            ax.tick_params(labelsize=7)
            if column == 0:
                ax.set_ylabel(PROFILE_LABELS[name], fontsize=8)
    axes[0, -1].legend(title="epoch", fontsize=7, title_fontsize=7, loc="best")
    n_seeds = ds[f"{fields[0][0]}{names[0]}_interval"].attrs["n_seeds"]
    spread = (f"mean over {n_seeds} seeds, {ds[f'{fields[0][0]}{names[0]}_interval'].attrs['confidence_level']:.0%} "
              f"bootstrap interval shaded" if n_seeds > 1 else "one seed (no interval)")
    return titled(fig, f"{ds.attrs['experiment']}: the volume element against the distance to the network's boundary"
                       f"\n{spread}; {EPOCH_NOTE}")


plot_profiles = plotted(draw_profiles)
