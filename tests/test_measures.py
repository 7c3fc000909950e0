"""Magnification measures on fields with known answers, the bootstrap on known data, and a hand-built store."""

import math

import numpy as np
import pytest
import xarray as xr

from geomvol.measures import (
    binned_means, boundary_ratio, bootstrap_over_seeds, distance_bin_edges, distance_to_sinusoid, rank_correlation,
    sign_test,
)
from geomvol.stages import measure
from geomvol.store import open_store, write_store

SPEC = {"measures": {"boundary_margin": 0.1, "near_fraction": 0.1, "profile_bins": 10, "boundary_delta": None,
                     "bootstrap": {"resamples": 2000, "level": 0.95, "seed": 0}},
        "dataset": {"name": "sinusoid", "amplitude": 0.6, "frequency": 7.0, "phase": -1.0}}


def test_rank_correlation_is_spearman():
    x = np.array([0.3, 1.0, 2.5, 4.0, 9.0])
    assert rank_correlation(x, np.exp(x)) == (pytest.approx(1.0), None)  # any increasing function
    assert rank_correlation(x, -x**3) == (pytest.approx(-1.0), None)
    # ties get average ranks: ranks of y are (1.5, 1.5, 3, 4, 5); Pearson of the ranks by hand
    y = np.array([1.0, 1.0, 2.0, 3.0, 4.0])
    rx, ry = np.arange(1.0, 6.0), np.array([1.5, 1.5, 3, 4, 5])
    expected = np.sum((rx - 3) * (ry - 3)) / math.sqrt(np.sum((rx - 3) ** 2) * np.sum((ry - 3) ** 2))
    assert rank_correlation(x, y)[0] == pytest.approx(expected)
    # non-finite points are left out
    assert rank_correlation(np.append(x, np.nan), np.append(np.exp(x), 0.0)) == (pytest.approx(1.0), None)


def test_a_constant_field_gives_nan_with_its_reason():
    value, why = rank_correlation(np.full(10, 2.0), np.arange(10.0))
    assert math.isnan(value) and why == "log10 volume element is constant over the points"
    value, why = rank_correlation(np.array([1.0, 2.0, np.nan]), np.ones(3))
    assert math.isnan(value) and why == "2 points with finite values (3 needed)"


def test_boundary_ratio_of_a_field_that_peaks_on_the_boundary():
    """Volume element 10 within the band |x2| < 0.1 of a boundary x2 = 0, 1 elsewhere: ratio exactly log10(10)."""
    x2 = np.linspace(-1, 1, 201)
    margin = np.abs(x2)  # two-class probabilities (1 ± |x2|)/2 differ by |x2|
    log10_volume = np.where(margin < 0.1, 1.0, 0.0)
    assert boundary_ratio(log10_volume, margin, 0.1) == (pytest.approx(1.0), None)
    # a smooth peak: mean of 10**(-|x2|) inside over outside, by direct sums
    log10_volume = -np.abs(x2)
    inside, outside = 10 ** log10_volume[margin < 0.1], 10 ** log10_volume[margin >= 0.1]
    assert boundary_ratio(log10_volume, margin, 0.1)[0] == pytest.approx(np.log10(inside.mean() / outside.mean()))
    # large log volumes do not overflow (the ratio is shift-invariant)
    assert boundary_ratio(log10_volume + 400.0, margin, 0.1)[0] == pytest.approx(np.log10(inside.mean() / outside.mean()))


def test_boundary_ratio_is_nan_without_a_boundary_or_without_points_away_from_it():
    log10_volume = np.linspace(0, 1, 50)
    value, why = boundary_ratio(log10_volume, np.full(50, 0.9), 0.1)
    assert math.isnan(value) and why == "no probe point within the boundary band (probability margin < 0.1)"
    value, why = boundary_ratio(log10_volume, np.full(50, 0.01), 0.1)
    assert math.isnan(value) and why == "every probe point is within the boundary band (probability margin < 0.1)"


def test_distance_to_sinusoid():
    x1 = np.linspace(-1.5, 1.5, 31)
    # a flat curve (amplitude 0): the distance is |x2|
    x2 = np.linspace(-1.5, 1.5, 31)[::-1]
    np.testing.assert_allclose(distance_to_sinusoid(x1, x2, 0.0, 7.0, -1.0), np.abs(x2), atol=1e-9)
    # points on the curve are at distance 0; a point above a crest is at its height above it
    on_curve = 0.6 * np.sin(7.0 * x1 - 1.0)
    assert distance_to_sinusoid(x1, on_curve, 0.6, 7.0, -1.0).max() < 1e-3
    crest = (math.pi / 2 + 1.0) / 7.0
    assert distance_to_sinusoid(np.array([crest]), np.array([1.6]), 0.6, 7.0, -1.0)[0] == pytest.approx(1.0, abs=1e-6)


def test_bootstrap_interval_covers_a_known_mean():
    """95% percentile intervals of the mean of 30 draws from N(2, 1): coverage near 95% over 400 data sets."""
    rng = np.random.default_rng(1)
    draws = rng.normal(2.0, 1.0, size=(30, 400))  # 30 seeds, 400 independent cells
    mean, (low, high) = bootstrap_over_seeds(draws, resamples=2000, level=0.95, seed=0)
    np.testing.assert_allclose(mean, draws.mean(axis=0))
    coverage = np.mean((low <= 2.0) & (2.0 <= high))
    assert 0.91 <= coverage <= 0.98, coverage
    width = np.mean(high - low)
    assert width == pytest.approx(2 * 1.96 / math.sqrt(30), rel=0.1)  # the normal-theory width


def test_bootstrap_is_over_the_seeds_where_a_value_is_defined():
    mean, interval = bootstrap_over_seeds(np.array([[0.5, 1.0]]), 100, 0.95, 0)
    np.testing.assert_array_equal(mean, [0.5, 1.0])
    assert np.isnan(interval).all()  # one seed: nothing to resample
    values = np.array([[0.5, np.nan, np.nan], [0.7, 1.0, np.nan], [0.9, 3.0, np.nan]])
    mean, interval = bootstrap_over_seeds(values, 500, 0.95, 0)
    np.testing.assert_allclose(mean[:2], [0.7, 2.0])
    assert np.isnan(mean[2])
    assert 0.5 <= interval[0, 0] < 0.7 < interval[1, 0] <= 0.9
    assert 1.0 <= interval[0, 1] < 2.0 < interval[1, 1] <= 3.0  # over its two defined seeds
    assert np.isnan(interval[:, 2]).all()
    # a cell's interval is the one its defined seeds alone give
    np.testing.assert_array_equal(interval[:, 1], bootstrap_over_seeds(values[1:, 1:2], 500, 0.95, 0)[1][:, 0])


def grid_store(path, seeds=(0, 1, 2), epochs=(100,), slopes=None):
    """A combined sinusoid store whose volume element peaks on the true boundary and whose network is
    uncertain exactly there: log10 volume = -slope * distance to the boundary, the slope (seed, epoch)
    1 + seed/10 unless ``slopes`` gives them."""
    axis = np.linspace(-1.5, 1.5, 41)
    x1, x2 = np.meshgrid(axis, axis)  # (x2, x1)
    distance = distance_to_sinusoid(x1, x2, 0.6, 7.0, -1.0)
    if slopes is None:
        slopes = np.array([[1 + s / 10] * len(epochs) for s in seeds])
    volume = -slopes[:, :, None, None, None] * distance  # (seed, epoch, block, x2, x1)
    margin = np.broadcast_to(np.minimum(distance, 1.0), (len(seeds), len(epochs), 41, 41))
    ds = xr.Dataset(
        {"log10_volume": (("seed", "epoch", "block", "x2", "x1"), volume, {"units": "1"}),
         "entropy": (("seed", "epoch", "x2", "x1"), -margin, {"units": "nat"}),
         "probability_margin": (("seed", "epoch", "x2", "x1"), margin.copy(), {"units": "1"})},
        coords={"seed": list(seeds), "epoch": list(epochs), "block": np.array(["hidden"], dtype=object), "x1": axis,
                "x2": axis},
        attrs={"experiment": "hand-built", "config_sha256": "0" * 64})
    write_store(ds, path)
    return ds, distance


def test_measures_on_the_networks_own_boundary(tmp_path):
    """A network whose boundary is the true one, x2 = 0.6 sin(7 x1 - 1), located by the probe's own code
    (edge_crossings on the logit x2 - 0.6 sin(7 x1 - 1)) and a volume element -slope * |distance| to it: the
    rank correlation with minus the distance is 1, the distance ratio that of the 10% nearest points over the
    rest, and the boundary location error (the crossings' mean distance to the true boundary) below 1e-3, the
    precision of the sampled true curve."""
    import torch

    from geomvol.geometry.boundary import boundary_distance, boundary_segments, edge_crossings

    ds, _ = grid_store(tmp_path / "source.zarr", seeds=(0, 1), epochs=(0, 100))
    axis = ds["x1"].values

    def logits(x):
        score = x[:, 1] - 0.6 * torch.sin(7 * x[:, 0] - 1)
        return torch.stack([-score, score], dim=1)

    x1, x2 = np.meshgrid(axis, axis)
    classes = (x2 - 0.6 * np.sin(7 * x1 - 1) > 0).astype(int)
    crossings = edge_crossings(classes, logits, axis, axis)
    signed = boundary_distance(np.stack([x1, x2], axis=-1), boundary_segments(crossings, axis, axis), np.eye(2), classes)
    ds["boundary_crossing"] = (("seed", "epoch", "edge", "x2", "x1"), np.broadcast_to(crossings, (2, 2, 2, 41, 41)))
    ds["boundary_distance"] = (("seed", "epoch", "x2", "x1"), np.broadcast_to(signed, (2, 2, 41, 41)))
    ds["log10_volume"][:] = -np.array([1.0, 2.0])[:, None, None, None, None] * np.abs(signed)
    ds["data_x1"], ds["data_x2"] = ("point", [-1.0, 1.0]), ("point", [-1.0, 1.0])
    write_store(ds, tmp_path / "volume.zarr")
    measures = measure(tmp_path / "volume.zarr", SPEC, tmp_path / "measures.zarr")
    np.testing.assert_allclose(measures["learned_boundary_correlation"].values, 1.0)
    nearest = np.sort(np.abs(signed).ravel())
    count = round(0.1 * nearest.size)
    expected = [np.log10(np.mean(10 ** (-k * nearest[:count])) / np.mean(10 ** (-k * nearest[count:]))) for k in (1, 2)]
    np.testing.assert_allclose(measures["distance_ratio"].sel(epoch=100, block="hidden").values, expected, rtol=1e-12)
    assert measures["distance_ratio"].attrs["near_fraction"] == 0.1
    error = measures["boundary_location_error"]
    assert error.dims == ("seed", "epoch") and float(error.max()) < 1e-3  # the true curve sampled at 4000 a unit
    assert float(measures["boundary_location_error_change"].sel(epoch=100).max()) == 0.0
    # the profile: in each of 10 bins spanning the signed distances, the mean of -k |d| over its points; highest
    # in the bin that holds distance 0, each seed's (k = 1, 2) and their mean
    profile = measures["log10_volume_profile"]
    assert profile.dims == ("seed", "epoch", "block", "distance_bin")
    edges = np.linspace(signed.min(), signed.max(), 11)
    np.testing.assert_allclose(profile["distance_bin"].attrs["bin_edges"], edges)
    np.testing.assert_allclose(profile["distance_bin"].values, (edges[:-1] + edges[1:]) / 2)
    assert profile["distance_bin"].attrs["signed"] is True
    which = np.clip(np.digitize(signed.ravel(), edges) - 1, 0, 9)
    for k, seed in ((1.0, 0), (2.0, 1)):
        expected = [np.mean(-k * np.abs(signed.ravel()[which == b])) for b in range(10)]
        np.testing.assert_allclose(profile.sel(seed=seed, epoch=100, block="hidden").values, expected, rtol=1e-12)
    zero_bin = int(np.searchsorted(edges, 0.0) - 1)
    assert int(np.argmax(profile.sel(seed=0, epoch=100, block="hidden").values)) == zero_bin
    np.testing.assert_allclose(measures["log10_volume_profile_mean"].sel(epoch=100, block="hidden").values,
                               profile.sel(epoch=100, block="hidden").mean("seed").values, rtol=1e-12)
    assert measures["log10_volume_profile_interval"].dims == ("bound", "epoch", "block", "distance_bin")


def test_the_summary_table_quotes_the_measures_stores(tmp_path):
    """geomvol summary over two measures stores: a row per experiment, field, block and epoch, each value the
    store's (mean over seeds, interval, change from epoch 0, its sign test), the columns defined in the header."""
    import pandas as pd

    from geomvol.measures import SUMMARY_COLUMNS
    from geomvol.stages import summarise

    stores = []
    for name, slopes in (("steep", [[1.0, 3.0], [1.0, 2.0]]), ("flat", [[1.0, 1.0], [1.0, 1.0]])):
        ds, distance = grid_store(tmp_path / f"{name}-source.zarr", seeds=(0, 1), epochs=(0, 100),
                                  slopes=np.array(slopes))
        ds["boundary_distance"] = (("seed", "epoch", "x2", "x1"), np.broadcast_to(distance, (2, 2, 41, 41)))
        ds.attrs["experiment"] = name
        write_store(ds, tmp_path / f"{name}.zarr")
        stores.append(measure(tmp_path / f"{name}.zarr", SPEC, tmp_path / f"{name}-measures.zarr"))
    table = summarise([tmp_path / "steep-measures.zarr", tmp_path / "flat-measures.zarr"], tmp_path / "summary.tsv")
    lines = (tmp_path / "summary.tsv").read_text().splitlines()
    assert lines[0].startswith(f"# made from {tmp_path / 'steep-measures.zarr'} (sha256 ")  # what it was made from
    assert lines[2] == f"# experiment: {SUMMARY_COLUMNS['experiment']}"
    read = pd.read_csv(tmp_path / "summary.tsv", sep="\t", comment="#")
    assert list(read.columns) == list(SUMMARY_COLUMNS) and len(read) == 4  # 2 experiments x 2 epochs, grid, hidden
    assert read[["experiment", "field", "block", "epoch"]].values.tolist() == [
        ["steep", "grid", "hidden", 0], ["steep", "grid", "hidden", 100], ["flat", "grid", "hidden", 0],
        ["flat", "grid", "hidden", 100]]
    for (name, epoch), measures in zip((("steep", 100), ("flat", 100)), stores):
        row = read[(read["experiment"] == name) & (read["epoch"] == epoch)].iloc[0]
        at = {"epoch": epoch, "block": "hidden"}
        assert row["n_seeds"] == 2
        for column in ("boundary_ratio", "distance_ratio", "learned_boundary_correlation", "distance_ratio_change"):
            assert row[column] == pytest.approx(float(measures[f"{column}_mean"].sel(at)), rel=1e-5)
            low, high = measures[f"{column}_interval"].sel(at).values
            assert (row[f"{column}_low"], row[f"{column}_high"]) == (pytest.approx(low, rel=1e-5), pytest.approx(high, rel=1e-5))
        assert row["distance_ratio_rise_fraction"] == float(measures["distance_ratio_rise_fraction"].sel(at))
    # the steep network's magnification at the boundary rose in both seeds (slope 1 -> 3, 2; p = 0.5 with two seeds),
    # the flat one's did not change
    steep, flat = (read[(read["experiment"] == name) & (read["epoch"] == 100)].iloc[0] for name in ("steep", "flat"))
    assert steep["distance_ratio_change_low"] > 0 and steep["distance_ratio_rise_fraction"] == 1.0
    assert steep["distance_ratio_rise_p_value"] == 0.5
    assert (steep["seed_agreement_correlation"], steep["seed_agreement_top_decile_iou"]) == (pytest.approx(1.0), 1.0)
    assert flat["distance_ratio_change"] == 0.0 and flat["distance_ratio_rise_fraction"] == 0.0
    assert (read.loc[read["epoch"] == 0, "distance_ratio_change"] == 0.0).all()
    assert table["experiment"].tolist() == read["experiment"].tolist()


def test_seed_agreement_on_hand_built_fields(tmp_path):
    """Seeds whose volume elements peak on the same places (slopes 1, 1.1: one ranking) agree fully: rank
    correlation 1, top-decile overlap 1; a third seed whose map is the first one's reversed ranks every point the
    other way (-1) and magnifies none of their top decile (overlap 0); means over the three pairs."""
    from geomvol.measures import top_decile_overlap

    ds, distance = grid_store(tmp_path / "source.zarr", seeds=(0, 1, 2), epochs=(0,))
    ds["log10_volume"][2] = distance[None, None]  # seed 2: +distance, where seeds 0 and 1 have -slope * distance
    write_store(ds, tmp_path / "volume.zarr")
    measures = measure(tmp_path / "volume.zarr", SPEC, tmp_path / "measures.zarr")
    assert measures["seed_pair"].values.tolist() == ["0-1", "0-2", "1-2"]
    correlation = measures["seed_agreement_correlation"].sel(epoch=0, block="hidden").values
    overlap = measures["seed_agreement_top_decile_iou"].sel(epoch=0, block="hidden").values
    np.testing.assert_allclose(correlation, [1.0, -1.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(overlap, [1.0, 0.0, 0.0])
    assert float(measures["seed_agreement_correlation_mean"].sel(epoch=0, block="hidden")) == pytest.approx(-1 / 3)
    assert measures["seed_agreement_top_decile_iou_mean"].attrs["n_pairs"] == 3
    # the overlap by hand: of 20 points the top two of each, one of them shared: 1 of 3
    assert top_decile_overlap(np.arange(10.0), np.arange(10.0)[::-1]) == (0.0, None)
    assert top_decile_overlap(np.array([5.0, 4, 3, 2, 1, 0, 0, 0, 0, 0] * 2), np.arange(20.0)[::-1]) == \
        (pytest.approx(1 / 3), None)


def test_binned_means_per_bin_of_distance():
    """Equal bins over the finite distances, the last closed; a bin without points NaN; non-finite values out."""
    edges = distance_bin_edges(np.array([-1.0, np.nan, 3.0, 1.0]), 4)
    np.testing.assert_array_equal(edges, [-1.0, 0.0, 1.0, 2.0, 3.0])
    means = binned_means(np.array([1.0, 2.0, 4.0, np.inf, 8.0]), np.array([-0.5, -0.2, 1.0, 1.5, 3.0]), edges)
    np.testing.assert_array_equal(means[[0, 2, 3]], [1.5, 4.0, 8.0])  # 1.0 opens bin 2; 3.0 closes the last
    assert np.isnan(means[1])
    assert distance_bin_edges(np.array([np.nan, np.inf]), 4) is None


def test_sign_test_is_the_exact_binomial_one():
    assert sign_test(8, 0) == sign_test(0, 8) == 2 / 2**8
    assert sign_test(7, 1) == pytest.approx(2 * 9 / 256)  # 2 P[X >= 7], X ~ Binomial(8, 1/2)
    assert sign_test(4, 4) == 1.0 and sign_test(3, 2) == 1.0
    assert math.isnan(sign_test(0, 0))


def test_change_from_epoch_0_on_hand_built_fields(tmp_path):
    """8 seeds: the slope of the field grows from 0.5 at epoch 0 to 1 + seed/10 at epoch 100, but for seed 7,
    where it falls to 0.2. The boundary ratio rises in 7 seeds of 8; the entropy correlation is 1 throughout
    (no change: ties, neither rising nor falling)."""
    seeds = tuple(range(8))
    later = np.array([1 + s / 10 for s in seeds[:-1]] + [0.2])
    slopes = np.stack([np.full(8, 0.5), later], axis=1)
    _, distance = grid_store(tmp_path / "volume.zarr", seeds, (0, 100), slopes)
    measures = measure(tmp_path / "volume.zarr", SPEC, tmp_path / "measures.zarr")
    band = distance < 0.1

    def ratio(k):
        return np.log10(np.mean(10 ** (-k * distance[band])) / np.mean(10 ** (-k * distance[~band])))

    expected = np.array([ratio(k) - ratio(0.5) for k in later])
    change = measures["boundary_ratio_change"].sel(block="hidden")
    np.testing.assert_allclose(change.sel(epoch=100).values, expected, rtol=1e-12)
    np.testing.assert_array_equal(change.sel(epoch=0).values, 0.0)
    assert measures["boundary_ratio_change_mean"].sel(epoch=100).item() == pytest.approx(expected.mean())
    low, high = measures["boundary_ratio_change_interval"].sel(epoch=100, block="hidden").values
    assert expected.min() <= low < expected.mean() < high <= expected.max()
    assert measures["boundary_ratio_rise_fraction"].sel(epoch=100).item() == 7 / 8
    assert measures["boundary_ratio_rise_p_value"].sel(epoch=100).item() == pytest.approx(2 * 9 / 256)
    assert measures["boundary_ratio_rise_fraction"].sel(epoch=0).item() == 0.0
    assert math.isnan(measures["boundary_ratio_rise_p_value"].sel(epoch=0).item())
    np.testing.assert_allclose(measures["entropy_correlation_change"].values, 0.0, atol=1e-12)
    assert measures["entropy_correlation_rise_fraction"].sel(epoch=100).item() == 0.0
    assert "sign test" in measures["boundary_ratio_rise_p_value"].attrs["definition"]
    assert measures["boundary_ratio_change"].attrs["units"] == "1"
    stored = open_store(tmp_path / "measures.zarr")
    assert stored["boundary_ratio_rise_p_value"].dims == ("epoch", "block")


def test_no_change_measures_without_epoch_0(tmp_path):
    grid_store(tmp_path / "volume.zarr")
    measures = measure(tmp_path / "volume.zarr", SPEC, tmp_path / "measures.zarr")
    assert "boundary_ratio_change" not in measures
    assert measures.attrs["change_from_epoch_0"] == "not computed: epoch 0 was not probed"


def test_measures_of_a_field_that_peaks_on_the_true_boundary(tmp_path):
    _, distance = grid_store(tmp_path / "volume.zarr")
    measures = measure(tmp_path / "volume.zarr", SPEC, tmp_path / "measures.zarr")
    for name in ("entropy_correlation", "boundary_distance_correlation"):
        np.testing.assert_allclose(measures[name].values, 1.0)  # monotone in the distance, per seed
        np.testing.assert_allclose(measures[f"{name}_interval"].values, 1.0)
    band = distance < 0.1
    expected = [np.log10(np.mean(10 ** (-k * distance[band])) / np.mean(10 ** (-k * distance[~band])))
                for k in (1.0, 1.1, 1.2)]
    np.testing.assert_allclose(measures["boundary_ratio"].values.ravel(), expected)
    np.testing.assert_allclose(measures["boundary_ratio_mean"].values.ravel(), np.mean(expected))
    low, high = measures["boundary_ratio_interval"].values.ravel()
    assert min(expected) - 1e-12 <= low < np.mean(expected) < high <= max(expected) + 1e-12
    interval = measures["boundary_ratio_interval"].attrs
    assert (interval["bootstrap_resamples"], interval["confidence_level"], interval["n_seeds"]) == (2000, 0.95, 3)
    assert measures["boundary_ratio"].attrs["undefined"] == []
    assert measures["boundary_ratio"].dims == ("seed", "epoch", "block")


def test_measures_say_where_and_why_a_measure_is_undefined(tmp_path):
    ds, _ = grid_store(tmp_path / "source.zarr", seeds=(0,))
    ds["log10_volume"][:] = 0.25  # a constant field
    ds["probability_margin"][:] = 0.5  # a confident network: no boundary on the grid
    write_store(ds, tmp_path / "volume.zarr")
    measures = measure(tmp_path / "volume.zarr", SPEC, tmp_path / "measures.zarr")
    for name in ("entropy_correlation", "boundary_ratio", "boundary_distance_correlation"):
        assert np.isnan(measures[name].values).all() and np.isnan(measures[f"{name}_interval"].values).all()
    assert measures["entropy_correlation"].attrs["undefined"] == [
        "seed=0 epoch=100 block=hidden: log10 volume element is constant over the points"]
    assert measures["boundary_ratio"].attrs["undefined"] == [
        "seed=0 epoch=100 block=hidden: no probe point within the boundary band (probability margin < 0.1)"]
    assert "one seed: no interval" in measures["boundary_ratio_interval"].attrs["undefined"]


def test_measures_of_planes_are_per_plane(tmp_path):
    u = np.linspace(-1, 1, 21)
    uu, vv = np.meshgrid(u, u)
    margin = np.stack([np.abs(uu), np.abs(vv)])  # plane 0: boundary u = 0; plane 1: boundary v = 0
    volume = np.where(margin < 0.1, 2.0, 1.0)[None, None, None]  # log10 volume 2 on the boundary, 1 elsewhere
    ds = xr.Dataset(
        {"plane_log10_volume": (("seed", "epoch", "block", "plane", "v", "u"), volume),
         "plane_entropy": (("seed", "epoch", "plane", "v", "u"), -margin[None, None]),
         "plane_probability_margin": (("seed", "epoch", "plane", "v", "u"), margin[None, None])},
        coords={"seed": [0], "epoch": [5], "block": np.array(["block1"], dtype=object), "plane": [0, 1], "u": u, "v": u},
        attrs={"experiment": "planes", "config_sha256": "0" * 64})
    write_store(ds, tmp_path / "volume.zarr")
    measures = measure(tmp_path / "volume.zarr", {**SPEC, "dataset": {"name": "mnist"}}, tmp_path / "measures.zarr")
    assert "boundary_distance_correlation" not in measures and "plane_boundary_distance_correlation" not in measures
    np.testing.assert_allclose(measures["plane_boundary_ratio"].values.ravel(), [1.0, 1.0])
    assert measures["plane_entropy_correlation"].dims == ("seed", "epoch", "block", "plane")
    assert (measures["plane_entropy_correlation"].values > 0.5).all()
    write_store(measures, tmp_path / "measures.zarr")  # and it round-trips through Zarr
    assert open_store(tmp_path / "measures.zarr")["plane_boundary_ratio_mean"].dims == ("epoch", "block", "plane")


def test_curvature_measures_on_a_hand_built_field(tmp_path):
    """K = +exp(-2 d) within the band (d < 0.1 from the true boundary, where the network is uncertain) and
    -exp(-2 d) away from it, d the distance to the boundary, undefined (NaN) at two points: |K| peaks on the
    boundary, where K is positive (sphere-like) and negative elsewhere (saddle-like)."""
    ds, distance = grid_store(tmp_path / "source.zarr", seeds=(0, 1))
    curvature = np.where(distance < 0.1, 1.0, -1.0) * np.exp(-2 * distance)
    curvature[0, :2] = np.nan
    ds["curvature"] = (("seed", "epoch", "block", "x2", "x1"), np.broadcast_to(curvature, (2, 1, 1, 41, 41)).copy(),
                       {"units": "1"})
    write_store(ds, tmp_path / "volume.zarr")
    measures = measure(tmp_path / "volume.zarr", SPEC, tmp_path / "measures.zarr")
    keep = ~np.isnan(curvature)
    size, band = np.abs(curvature[keep]), distance[keep] < 0.1
    expected_ratio = np.log10(size[band].mean() / size[~band].mean())
    np.testing.assert_allclose(measures["abs_curvature_boundary_ratio"].values, expected_ratio, rtol=1e-12)
    for name in ("abs_curvature_entropy_correlation", "abs_curvature_boundary_distance_correlation"):
        np.testing.assert_allclose(measures[name].values, 1.0)  # |K| falls with the distance
    np.testing.assert_array_equal(measures["curvature_sign_near_boundary"].values, 1.0)
    np.testing.assert_array_equal(measures["curvature_sign_boundary_contrast"].values, 2.0)
    sign_correlation = measures["curvature_sign_boundary_distance_correlation"].values
    assert (sign_correlation > 0.3).all()
    np.testing.assert_allclose(measures["curvature_sign_entropy_correlation"].values, sign_correlation)
    assert measures["abs_curvature_boundary_ratio"].attrs["probed_field"] == "curvature"
    assert measures["curvature_sign_near_boundary"].attrs["boundary_margin"] == 0.1
    assert measures["curvature_sign_near_boundary_mean"].dims == ("epoch", "block")
    # the volume element's measures are still there, unchanged by the curvature beside them
    np.testing.assert_allclose(measures["boundary_distance_correlation"].values, 1.0)


def test_curvature_undefined_everywhere_says_why(tmp_path):
    ds, _ = grid_store(tmp_path / "source.zarr", seeds=(0,))
    ds["curvature"] = (("seed", "epoch", "block", "x2", "x1"), np.full((1, 1, 1, 41, 41), np.nan), {"units": "1"})
    write_store(ds, tmp_path / "volume.zarr")
    measures = measure(tmp_path / "volume.zarr", SPEC, tmp_path / "measures.zarr")
    assert measures["abs_curvature_entropy_correlation"].attrs["undefined"] == [
        "seed=0 epoch=100 block=hidden: 0 points with finite values (3 needed)"]
    assert measures["curvature_sign_near_boundary"].attrs["undefined"] == [
        "seed=0 epoch=100 block=hidden: no probe point within the boundary band (probability margin < 0.1)"]


@pytest.mark.parametrize("alpha, beta, alignment", [(0.0, 0.0, 1.0), (0.0, math.pi / 2, 0.0),
                                                    (0.3, 0.3 + math.pi / 4, math.sqrt(0.5))])
def test_the_direction_of_the_stretch_of_a_linear_map(alpha, beta, alignment):
    """A network whose hidden map stretches the direction at angle alpha 10 times more than its normal
    (A = 10 e e^T + e' e'^T, so G = A^T A / 2 has lambda_1 / lambda_2 = 100) and whose boundary is the line
    w.x + c = 0 with w at angle beta: the anisotropy is 2 at every point, the stretch alignment |cos(alpha - beta)|,
    near the boundary and away from it, through the probe (geomvol.probe_grid) and the measures."""
    import torch

    import geomvol
    from geomvol.measures import magnification_measures
    from geomvol.settings import MeasuresSettings

    e = torch.tensor([math.cos(alpha), math.sin(alpha)], dtype=torch.float64)
    normal = torch.stack([-e[1], e[0]])
    w = torch.tensor([math.cos(beta), math.sin(beta)], dtype=torch.float64)

    class Stretching(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = torch.nn.Linear(2, 2, bias=False, dtype=torch.float64)
            self.hidden.weight.data = 10 * torch.outer(e, e) + torch.outer(normal, normal)

        def forward(self, x):
            score = self.hidden(x) @ torch.linalg.solve(self.hidden.weight.data.T, w) + 0.1
            return torch.stack([torch.zeros_like(score), score], dim=1)

    ds = geomvol.probe_grid(Stretching(), ["hidden"], resolution=21, low=-1.0, high=1.0)
    np.testing.assert_allclose(ds["log10_metric_eigenvalue"].values[..., 0] - ds["log10_metric_eigenvalue"].values[..., 1],
                               2.0, rtol=1e-12)
    ds.attrs.update(experiment="linear", config_sha256="0" * 64)
    measures = magnification_measures(ds, MeasuresSettings.from_sections(SPEC["measures"], {"name": "digits"}))
    for side in ("near_boundary", "away_from_boundary"):
        np.testing.assert_allclose(measures[f"metric_anisotropy_{side}"].values, 2.0, rtol=1e-12)
        np.testing.assert_allclose(measures[f"stretch_alignment_{side}"].values, alignment, atol=1e-12)
    assert measures["stretch_alignment_near_boundary"].attrs["near_fraction"] == 0.1
    assert measures["stretch_alignment_near_boundary_mean"].dims == ("epoch", "block")


def test_near_and_away_means_split_at_the_nearest_fraction():
    from geomvol.measures import near_and_away_means

    values, distance = np.array([1.0, 2.0, 3.0, 4.0, np.nan]), np.array([-0.1, 0.5, 0.2, -2.0, 0.0])
    means = near_and_away_means(values, distance, 0.5)  # 4 finite points: the 2 nearest (|d| 0.1, 0.2) and the rest
    assert means == {"near": (2.0, None), "away": (3.0, None)}
    value, why = near_and_away_means(values, np.full(5, np.nan), 0.5)["away"]
    assert math.isnan(value) and why == "the field holds no decision boundary"


def plane_store(path, name, volume, epochs, blocks, anchors=(3, 8, 1)):
    """A combined store of ``name`` with ``volume`` (seed, epoch, block, 1 plane, v, u) on a plane through the
    images ``anchors``."""
    u = np.linspace(-1, 1, volume.shape[-1])
    margin = np.ones((volume.shape[0], len(epochs), 1, len(u), len(u)))
    ds = xr.Dataset(
        {"plane_log10_volume": (("seed", "epoch", "block", "plane", "v", "u"), volume),
         "plane_entropy": (("seed", "epoch", "plane", "v", "u"), -margin),
         "plane_probability_margin": (("seed", "epoch", "plane", "v", "u"), margin),
         "plane_anchor_source_index": (("plane", "anchor"), [list(anchors)]),
         "plane_anchor_split": ("plane", np.array(["train"], dtype=object))},
        coords={"seed": list(range(volume.shape[0])), "epoch": list(epochs), "block": np.array(blocks, dtype=object),
                "plane": [0], "u": u, "v": u},
        attrs={"experiment": name, "config_sha256": "0" * 64})
    write_store(ds, path)
    return ds


def test_agreement_with_the_compared_experiment(tmp_path):
    """probe.compare_with on the same plane: a compared net whose map ranks the points as this one's does (its
    cube) agrees fully (rank correlation 1, top-decile overlap 1), one whose map is this one's reversed does not
    (-1, 0); per pair of seeds (this experiment's, the compared one's) and their mean; NaN, with the reason, at an
    epoch the compared experiment did not probe and for a feature map it does not have; planes through other
    images are refused."""
    from geomvol.errors import GeomvolError

    rng = np.random.default_rng(0)
    field = rng.normal(size=(1, 2, 1, 1, 9, 9))  # one seed, epochs 0 and 5, block1
    mine = np.concatenate([field, -field], axis=2)  # block1, block2
    plane_store(tmp_path / "mine.zarr", "supervised", mine, (0, 5), ["block1", "block2"])
    theirs = np.concatenate([field[:, :1] ** 3, -field[:, :1]])  # two seeds: the cube and the reverse, epoch 0 only
    plane_store(tmp_path / "theirs.zarr", "barlow", theirs, (0,), ["block1"])
    measures = measure(tmp_path / "mine.zarr", {**SPEC, "dataset": {"name": "mnist"}}, tmp_path / "measures.zarr",
                       compared=tmp_path / "theirs.zarr")
    correlation = measures["plane_compared_agreement_correlation"]
    assert correlation.dims == ("compared_seed_pair", "epoch", "block", "plane")
    assert measures["compared_seed_pair"].values.tolist() == ["0-0", "0-1"]
    np.testing.assert_allclose(correlation.sel(epoch=0, block="block1", plane=0).values, [1.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(measures["plane_compared_agreement_top_decile_iou"].sel(
        epoch=0, block="block1", plane=0).values, [1.0, 0.0])
    assert float(measures["plane_compared_agreement_correlation_mean"].sel(epoch=0, block="block1", plane=0)) == \
        pytest.approx(0.0, abs=1e-12)
    assert np.isnan(correlation.sel(epoch=5).values).all() and np.isnan(correlation.sel(block="block2").values).all()
    assert "epoch=5 block=block1 plane=0: barlow did not probe epoch 5" in correlation.attrs["undefined"]
    assert "epoch=0 block=block2 plane=0: barlow probes no feature map block2" in correlation.attrs["undefined"]
    assert correlation.attrs["compared_experiment"] == "barlow"
    assert measures.attrs["compared_store"] == str(tmp_path / "theirs.zarr")
    plane_store(tmp_path / "elsewhere.zarr", "barlow", theirs, (0,), ["block1"], anchors=(3, 8, 2))
    with pytest.raises(GeomvolError, match="do not probe the same planes"):
        measure(tmp_path / "mine.zarr", {**SPEC, "dataset": {"name": "mnist"}}, tmp_path / "m2.zarr",
                compared=tmp_path / "elsewhere.zarr")


def test_delta_ratio_within_a_fixed_distance_of_the_boundary(tmp_path):
    """measures.boundary_delta: log10 of the mean volume element within delta of the network's boundary over the
    mean beyond, by hand; undefined, with the reason, when no point or every point is within it; not computed
    without it."""
    from geomvol.measures import delta_ratio

    log10, distance = np.array([2.0, 2.0, 1.0, 1.0, 0.0]), np.array([-0.05, 0.1, 0.3, -0.5, np.nan])
    assert delta_ratio(log10, distance, 0.1) == (pytest.approx(1.0), None)  # 100 within, 10 beyond
    assert delta_ratio(log10, distance, 0.01)[1] == "no probe point within 0.01 of the boundary"
    assert delta_ratio(log10, distance, 1.0)[1] == "every probe point is within 1 of the boundary"

    ds, distance = grid_store(tmp_path / "source.zarr", seeds=(0, 1), epochs=(0,))
    ds["boundary_distance"] = (("seed", "epoch", "x2", "x1"), np.broadcast_to(distance, (2, 1, 41, 41)))
    write_store(ds, tmp_path / "volume.zarr")
    spec = {**SPEC, "measures": {**SPEC["measures"], "boundary_delta": 0.2}}
    measures = measure(tmp_path / "volume.zarr", spec, tmp_path / "measures.zarr")
    within = distance <= 0.2
    for seed, slope in ((0, 1.0), (1, 1.1)):
        expected = np.log10(np.mean(10 ** (-slope * distance[within])) / np.mean(10 ** (-slope * distance[~within])))
        assert float(measures["delta_ratio"].sel(seed=seed, epoch=0, block="hidden")) == pytest.approx(expected)
    assert measures["delta_ratio"].attrs["boundary_delta"] == 0.2 and "delta_ratio_interval" in measures
    assert "delta_ratio" not in measure(tmp_path / "volume.zarr", SPEC, tmp_path / "without.zarr")
