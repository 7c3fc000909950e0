import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import SymLogNorm
from PIL import Image

from geomvol.config import result_config
from geomvol.figures import plot_curvature, plot_measures, plot_profiles, plot_volume_grid
from geomvol.figures.curvature import curvature_norm, curvature_ticks
from geomvol.provenance import sha256_tree
from geomvol.stages import combine_probes, measure, probe
from geomvol.store import open_store


def test_figure_carries_its_store_and_checksum(trained, tmp_path):
    experiment = trained["experiment"]
    paths = []
    for checkpoint in trained["checkpoints"]:
        paths.append(tmp_path / f"{checkpoint.stem}.zarr")
        probe([checkpoint], trained["data"], trained["manifest"], experiment["probe"], paths[-1])
    store = tmp_path / "volume.zarr"
    combine_probes(paths, "tiny", result_config(experiment), trained["data"], trained["manifest"], store)
    plot_volume_grid(store, tmp_path / "volume.png", tmp_path / "volume.pdf")

    checksum = sha256_tree(store)
    with Image.open(tmp_path / "volume.png") as image:
        assert image.text["Source"] == str(store)
        assert image.text["geomvol:store_sha256"] == checksum
        width, height = image.size
    assert width > 2.5 * height  # three panels side by side
    pdf = (tmp_path / "volume.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and checksum.encode() in pdf


def test_tree_checksum_ignores_the_snakemake_marker(tmp_path):
    (tmp_path / "a").write_text("x")
    before = sha256_tree(tmp_path)
    (tmp_path / ".snakemake_timestamp").write_text("")
    assert sha256_tree(tmp_path) == before
    (tmp_path / "b").write_text("y")
    assert sha256_tree(tmp_path) != before


def test_curvature_figure_and_measures_of_a_probed_grid(trained, tmp_path):
    """probe.curvature through the stages: the combined store keeps K per epoch, the measures store gets the
    curvature measures, and the curvature figure draws the decision regions and K, one column per epoch."""
    experiment = trained["experiment"]
    probe_section = {**experiment["probe"], "curvature": True}
    paths = []
    for checkpoint in trained["checkpoints"]:
        paths.append(tmp_path / f"{checkpoint.stem}.zarr")
        probe([checkpoint], trained["data"], trained["manifest"], probe_section, paths[-1])
    store = tmp_path / "volume.zarr"
    combine_probes(paths, "tiny", result_config(experiment), trained["data"], trained["manifest"], store)
    combined = open_store(store)
    assert combined["curvature"].dims == ("seed", "epoch", "block", "x2", "x1")
    assert combined["curvature"].sizes["epoch"] == len(trained["checkpoints"])
    assert np.isfinite(combined["curvature"].values).all()

    sections = {"measures": experiment["measures"], "dataset": experiment["dataset"]}
    measures = measure(store, sections, tmp_path / "measures.zarr")
    for name in ("abs_curvature_boundary_ratio", "curvature_sign_near_boundary", "curvature_sign_boundary_contrast",
                 "abs_curvature_entropy_correlation", "abs_curvature_boundary_distance_correlation"):
        assert measures[name].dims == ("seed", "epoch", "block"), name
    plot_measures(tmp_path / "measures.zarr", tmp_path / "measures.png", tmp_path / "measures.pdf")
    # 10 measures, two to a row, each a value panel and a change panel: 5 rows of 4 panels, which fit a page
    with Image.open(tmp_path / "measures.png") as image:
        assert 0.7 * image.width < image.height < 1.2 * image.width
    # the profiles: log10 volume element and log10 |K| against the signed distance to the network's boundary, one
    # row each, a line per epoch
    profiles = measures["log10_volume_profile"]
    assert profiles.dims == ("seed", "epoch", "block", "distance_bin") and profiles.sizes["distance_bin"] == 10
    assert measures["distance_bin"].attrs["signed"] is True and measures["log10_abs_curvature_profile"].notnull().any()
    plot_profiles(tmp_path / "measures.zarr", tmp_path / "profiles.png", tmp_path / "profiles.pdf")
    with Image.open(tmp_path / "profiles.png") as image:
        assert image.text["geomvol:figure"] == "profiles" and image.height > image.width  # two rows, one block

    plot_curvature(store, tmp_path / "curvature.png", tmp_path / "curvature.pdf")
    with Image.open(tmp_path / "curvature.png") as image:
        assert image.text["geomvol:store_sha256"] == sha256_tree(store)
        width, height = image.size
    assert width > 1.5 * height  # three epochs side by side, two rows (decision regions, K)


def test_curvature_colour_scale_is_centred_and_symmetric_log_across_decades():
    linear = curvature_norm(np.array([-2.0, 0.5, 1.0, np.nan]))
    assert (linear.vmin, linear.vmax) == (-2.0, 2.0) and not isinstance(linear, SymLogNorm)
    wide = curvature_norm(np.array([1e-3, -2e-3, 1e-3, 5.0]))
    assert isinstance(wide, SymLogNorm) and (wide.vmin, wide.vmax) == (-5.0, 5.0)
    assert wide.linthresh == pytest.approx(1.5e-3)  # the median |K|
    assert curvature_ticks(wide) == [-1.0, -0.1, -0.01, 0.0, 0.01, 0.1, 1.0]  # none at +-linthresh, beside 0
    assert curvature_ticks(linear) is None
    many = curvature_ticks(curvature_norm(np.array([1.0, -1.0, 1.0, 3e9])))  # 10^1 .. 10^9: every other power
    assert many[-5:] == [1e1, 1e3, 1e5, 1e7, 1e9] and many[:5] == [-1e9, -1e7, -1e5, -1e3, -1e1]


def test_overlapping_labels_are_found_and_named():
    """Epochs 0, 200, 5000, 10000 on a log axis print their last two labels on top of each other (as the
    measures figure once did); evenly spaced, labelled with their values, they read. Two titles on one spot
    are found too, and ticks outside the axis' view (not drawn) are not."""
    import matplotlib.pyplot as plt

    from geomvol.figures.common import overlapping_labels

    epochs = [0, 200, 5000, 10000]
    fig, (crowded, spaced) = plt.subplots(1, 2, figsize=(6, 2), constrained_layout=True)
    crowded.plot(epochs, [0, 1, 2, 3])
    crowded.set_xscale("symlog", linthresh=200)
    crowded.set_xticks(epochs, [str(epoch) for epoch in epochs])
    spaced.plot(range(4), [0, 1, 2, 3])
    spaced.set_xticks(range(4), [str(epoch) for epoch in epochs])
    spaced.set_yticks([-10, 0, 3, 50])
    spaced.set_ylim(0, 3)  # -10 and 50 lie outside the view: not drawn
    assert overlapping_labels(fig) == ["x tick labels '5000' and '10000' overlap (panel 'without a title or labels')"]
    crowded.set_title("epochs on a log axis")
    assert overlapping_labels(fig) == ["x tick labels '5000' and '10000' overlap (panel 'epochs on a log axis')"]
    spaced.text(0.5, 0.5, "one text", transform=spaced.transAxes)
    spaced.text(0.5, 0.5, "another", transform=spaced.transAxes)
    assert overlapping_labels(fig)[1:] == ["the texts 'one text' and 'another' overlap"]
    plt.close(fig)


def test_class_colours_stay_distinct_for_many_classes():
    """CIFAR-100's 100 classes get 100 distinct colours, class c mapped to the c-th (tab10 holds only 10)."""
    import matplotlib.pyplot as plt

    from geomvol.figures.common import class_colours

    for n in (10, 20, 100):
        cmap, norm = class_colours(n)
        colours = [tuple(cmap(norm(c))) for c in range(n)]
        assert len(set(colours)) == n, n
    assert tuple(class_colours(10)[0](class_colours(10)[1](3))) == tuple(plt.get_cmap("tab10").colors[3]) + (1.0,)


def test_datasets_of_the_notebook_api_are_drawn_as_stores_are():
    """geomvol.figures.draw_* on the notebook API's datasets (no store attrs, no anchor images): a line without
    its image strip, the grid without training points, the curvature of a plane with the classes given; each
    titled as probed in memory."""
    import torch

    import geomvol
    from geomvol.figures import draw_curvature, draw_lines, draw_volume_grid

    torch.manual_seed(0)
    images = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    anchors = torch.randn(3, 3, 2, 2)
    plane = geomvol.probe_plane(images, anchors, ["2"], resolution=4, curvature=True, classes=["ant", "bee", "cat"])
    figure = draw_curvature(plane)
    assert figure.get_suptitle().startswith("a model in memory (seed 0): Gaussian")
    labels = {label.get_text() for ax in figure.axes for label in ax.get_yticklabels()}
    assert labels & {"ant", "bee", "cat"}  # the class colour bar names the classes given
    assert len(draw_lines(geomvol.probe_line(images, anchors[:2], ["2"])).axes) == 1  # no image strip below
    points = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    grid = draw_volume_grid(geomvol.probe_grid(points, ["1"], resolution=6))
    assert "a model in memory (seed 0): volume element of '1'" in grid.get_suptitle()
    assert not any(isinstance(item, PathCollection) for item in grid.axes[0].collections)  # no training points
