r"""How much does a network magnify areas near its decision boundary? Measures of the volume element field.

Each measure summarises one probed field: the probe points of one (seed, epoch, block) on the input grid
(2-D data) or on one plane or line (images). With :math:`\ell_i = \log_{10}\sqrt{\det g}` at point i:

- **entropy correlation**: Spearman's rank correlation between :math:`\ell_i` and the predictive
  entropy :math:`H_i` (average ranks for ties; points where either is not finite are left out).
  Positive when the volume element is larger where the network is less certain.
- **boundary ratio**: :math:`\log_{10}(\overline{\sqrt{\det g}}_{B} / \overline{\sqrt{\det g}}_{\bar B})`,
  the mean volume element over the band B of points whose two largest class probabilities differ by
  less than ``boundary_margin``, over the mean elsewhere. Positive when areas near the boundary are magnified.
- **boundary distance correlation** (2-D sinusoid only): Spearman's rank correlation between
  :math:`\ell_i` and minus the Euclidean distance from the point to the true class boundary
  :math:`x_2 = a \sin(f x_1 + \varphi)`. Positive when the volume element grows toward the true boundary.

On the network's own boundary, located on every field by the probe (``boundary_distance``,
:mod:`geomvol.geometry.boundary`), with :math:`d_i` the distance of point i to it in input-space units:

- **learned boundary correlation**: Spearman's rank correlation between :math:`\ell_i` and
  :math:`-|d_i|`. Positive when the volume element grows toward the network's own boundary.
- **distance ratio**: :math:`\log_{10}` of the mean volume element over the fraction ``near_fraction`` of
  the field's points nearest the boundary, over the mean over the others: the boundary ratio restated on
  distance, with no probability band.
- **delta ratio** (with ``measures.boundary_delta``): the same ratio over the points within a fixed distance
  ``boundary_delta`` of the boundary (in input-space units) against those beyond.
- **boundary location error** (2-D sinusoid only, per seed and epoch): the mean Euclidean distance from the
  boundary's crossings inside the training square to the true boundary. It falls as the network learns the
  boundary.
- **seed agreement** (two or more seeds): for each pair of seeds, the rank correlation of their
  :math:`\ell` maps over the same points, and the overlap (intersection over union) of their top-decile
  points, the places each magnifies most; with their mean over the pairs. Do two seeds magnify the same
  places?
- **the direction of the stretch** (2-D fields: the sinusoid's grid, planes), from the eigenvalues
  :math:`\lambda_1 \ge \lambda_2` of the metric G the feature map induces on the field and the angle between
  G's leading eigenvector and the gradient of the margin :math:`z_{top1} - z_{top2}` within the field: the
  **metric anisotropy** :math:`\log_{10}(\lambda_1/\lambda_2)` and the **stretch alignment** :math:`|\cos|`
  of that angle (1: the map stretches across the boundary; 0: along it; :math:`2/\pi \approx 0.64` for
  directions at random), each as its mean over the ``near_fraction`` of the points nearest the network's
  boundary (``_near_boundary``) and over the others (``_away_from_boundary``).
- **agreement with another experiment** (``probe.compare_with``, on the planes both probe: the same anchor
  images and grid): the same two agreements between each seed of this experiment and each seed of the other, at
  the epochs both probed, of the same feature map (``compared_agreement_*``). Do a supervised net and a
  self-supervised one magnify the same places?
- **profiles**: the mean of :math:`\ell_i` (and of :math:`\log_{10}|K_i|`) over the points whose distance
  :math:`d_i` falls in each of ``profile_bins`` equal bins spanning the distances of the store's fields of that
  kind (signed where the field has two classes, so the two sides show; unsigned for more): the volume element
  against distance to the network's boundary. The hypothesis reads as a peak at distance 0 that grows with
  training.

A measure that is not defined for a field (fewer than 3 points, a constant field, no point inside the
band or none outside it) is NaN, and the stored variable's ``undefined`` attribute says where and why.
Across seeds each measure gets its mean and a percentile bootstrap interval that resamples seeds, both over
the seeds where it is defined (``m_n_seeds`` of them).

Where the curvature concentrates: when the probe stored the Gaussian curvature :math:`K_i` of the
induced metric (``probe.curvature``), the same measures are taken on :math:`|K_i|` (prefix
``abs_curvature_``: the boundary ratio of the mean :math:`|K|` in the band over the mean elsewhere, its
rank correlations with the entropy and with minus the distance to the true boundary), and on the sign of
:math:`K_i` (prefix ``curvature_sign_``): **near boundary**, the mean of :math:`\operatorname{sign} K`
over the band (+1: curved like a sphere at every point there, -1: like a saddle), **boundary contrast**,
that mean minus the mean elsewhere, and the rank correlations of :math:`\operatorname{sign} K` with the
entropy and with minus the distance to the true boundary (ties ranked on average). Points where K is
undefined (NaN) are left out.

What training changed: a measure can be high before any training (the untrained sinusoid net's volume
element already follows the true boundary, largest in the middle of the square where the boundary runs).
So each measure m also gets, when epoch 0 was probed, ``m_change`` (m minus its epoch-0 value, per seed)
with its mean and bootstrap interval, ``m_rise_fraction`` (the fraction of seeds in which m rose from
epoch 0) and ``m_rise_p_value`` (a two-sided exact sign test of rising against falling).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import xarray as xr

from geomvol.settings import BootstrapSettings, MeasuresSettings

LN10 = math.log(10.0)
CURVATURE_SIGN = ("the sign of the Gaussian curvature K of the metric induced on the plane (+1 curved like a sphere, -1 "
                  "like a saddle)")
DEFINITIONS = {
    # measure (without the plane_ or line_ prefix of a field): (long name, definition)
    "entropy_correlation": (
        "Spearman rank correlation between log10 volume element and predictive entropy over the probe points",
        "Spearman's rank correlation (average ranks for ties), over the probe points of one field, between "
        "log10 sqrt(det g) and the predictive entropy; points where either is not finite are left out; NaN "
        "for fewer than 3 points or a constant field"),
    "boundary_ratio": (
        "log10 of the mean volume element near the decision boundary over the mean elsewhere",
        "log10(mean sqrt(det g) over points whose two largest class probabilities differ by less than "
        "boundary_margin / mean sqrt(det g) over the other points); NaN when no point, or every point, is "
        "within that band"),
    "boundary_distance_correlation": (
        "Spearman rank correlation between log10 volume element and minus the distance to the true boundary",
        "Spearman's rank correlation, over the input grid, between log10 sqrt(det g) and minus the Euclidean "
        "distance from each point to the data set's class boundary x2 = amplitude sin(frequency x1 + phase)"),
    "abs_curvature_entropy_correlation": (
        "Spearman rank correlation between |K| and predictive entropy over the probe points",
        "Spearman's rank correlation (average ranks for ties), over the probe points of one field, between the "
        "absolute Gaussian curvature |K| of the induced metric and the predictive entropy; points where either is "
        "not finite are left out"),
    "abs_curvature_boundary_ratio": (
        "log10 of the mean |K| near the decision boundary over the mean elsewhere",
        "log10(mean |K| over points whose two largest class probabilities differ by less than boundary_margin / "
        "mean |K| over the other points), K the Gaussian curvature of the induced metric; NaN when no point, or "
        "every point, is within that band"),
    "abs_curvature_boundary_distance_correlation": (
        "Spearman rank correlation between |K| and minus the distance to the true boundary",
        "Spearman's rank correlation, over the input grid, between |K| and minus the Euclidean distance from each "
        "point to the data set's class boundary x2 = amplitude sin(frequency x1 + phase)"),
    "curvature_sign_near_boundary": (
        "mean sign of K near the decision boundary",
        f"the mean, over points whose two largest class probabilities differ by less than boundary_margin, of "
        f"{CURVATURE_SIGN}: +1 if K > 0 at every such point, -1 if K < 0 at every one; NaN when no point is "
        f"within that band"),
    "curvature_sign_boundary_contrast": (
        "mean sign of K near the decision boundary minus the mean elsewhere",
        f"the mean of {CURVATURE_SIGN} over points whose two largest class probabilities differ by less than "
        f"boundary_margin, minus its mean over the other points (from -2 to 2); NaN when no point, or every "
        f"point, is within that band"),
    "curvature_sign_entropy_correlation": (
        "Spearman rank correlation between the sign of K and predictive entropy",
        f"Spearman's rank correlation (average ranks for ties), over the probe points of one field, between "
        f"{CURVATURE_SIGN} and the predictive entropy: positive when uncertain points are more often curved "
        f"like a sphere"),
    "curvature_sign_boundary_distance_correlation": (
        "Spearman rank correlation between the sign of K and minus the distance to the true boundary",
        f"Spearman's rank correlation, over the input grid, between {CURVATURE_SIGN} and minus the Euclidean "
        f"distance from each point to the data set's class boundary x2 = amplitude sin(frequency x1 + phase)"),
    "learned_boundary_correlation": (
        "Spearman rank correlation between log10 volume element and minus the distance to the network's boundary",
        "Spearman's rank correlation, over the probe points of one field, between log10 sqrt(det g) and minus the "
        "absolute distance (boundary_distance, input-space units) from each point to the network's own decision "
        "boundary located on the field; NaN where the field holds no boundary"),
    "distance_ratio": (
        "log10 of the mean volume element nearest the network's boundary over the mean elsewhere",
        "log10(mean sqrt(det g) over the fraction near_fraction of the field's probe points nearest the network's "
        "own decision boundary (by |boundary_distance|) / mean sqrt(det g) over the other points); NaN where the "
        "field holds no boundary"),
    "delta_ratio": (
        "log10 of the mean volume element within boundary_delta of the network's boundary over the mean beyond",
        "log10(mean sqrt(det g) over the field's probe points within boundary_delta (input-space units) of the "
        "network's own decision boundary (|boundary_distance| <= boundary_delta) / mean sqrt(det g) over the points "
        "beyond); with measures.boundary_delta; NaN where the field holds no boundary, or no point (or every point) "
        "is within it"),
    "abs_curvature_delta_ratio": (
        "log10 of the mean |K| within boundary_delta of the network's boundary over the mean beyond",
        "log10(mean |K| over the field's probe points within boundary_delta of the network's own decision boundary / "
        "mean |K| over the points beyond); with measures.boundary_delta; NaN where the field holds no boundary, or "
        "no point (or every point) is within it"),
    "abs_curvature_learned_boundary_correlation": (
        "Spearman rank correlation between |K| and minus the distance to the network's boundary",
        "Spearman's rank correlation, over the probe points of one field, between |K| and minus the absolute "
        "distance from each point to the network's own decision boundary; NaN where the field holds no boundary"),
    "abs_curvature_distance_ratio": (
        "log10 of the mean |K| nearest the network's boundary over the mean elsewhere",
        "log10(mean |K| over the fraction near_fraction of the field's probe points nearest the network's own "
        "decision boundary / mean |K| over the other points); NaN where the field holds no boundary"),
    "metric_anisotropy_near_boundary": (
        "mean anisotropy of the metric nearest the network's boundary",
        "the mean of log10(lambda_1 / lambda_2), lambda_1 >= lambda_2 the eigenvalues of the metric G the feature map "
        "induces on the field, over the fraction near_fraction of the field's probe points nearest the network's own "
        "decision boundary (by |boundary_distance|); points where it is not finite left out; 0 for a map that "
        "stretches every direction alike; NaN where the field holds no boundary"),
    "metric_anisotropy_away_from_boundary": (
        "mean anisotropy of the metric away from the network's boundary",
        "the mean of log10(lambda_1 / lambda_2) over the field's other probe points (beyond the fraction "
        "near_fraction nearest the network's boundary); NaN where the field holds no boundary"),
    "stretch_alignment_near_boundary": (
        "mean alignment of the metric's stretch with the direction across the network's boundary, nearest it",
        "the mean of |cos| of the angle between G's leading eigenvector (stretch_angle) and the gradient of the margin "
        "between the two leading logits within the field (margin_gradient_angle), over the fraction near_fraction of "
        "the field's probe points nearest the network's own decision boundary; 1: the map stretches across the "
        "boundary, 0: along it, 2/pi = 0.64 for directions drawn at random; points where either angle is undefined "
        "left out; NaN where the field holds no boundary"),
    "stretch_alignment_away_from_boundary": (
        "mean alignment of the metric's stretch with the margin's gradient, away from the network's boundary",
        "the mean of |cos| of the angle between G's leading eigenvector and the margin's gradient within the field, "
        "over the field's other probe points (beyond the fraction near_fraction nearest the network's boundary); "
        "NaN where the field holds no boundary"),
}
# Measures of the network's boundary itself, one per (seed, epoch): (long name, definition)
BOUNDARY_DEFINITIONS = {
    "boundary_location_error": (
        "mean distance from the network's decision boundary to the true boundary",
        "the mean, over the crossings of the input grid's edges by the network's decision boundary "
        "(boundary_crossing) inside the square of the training points, of the Euclidean distance to the data set's "
        "class boundary x2 = amplitude sin(frequency x1 + phase); NaN where the grid holds no crossing there"),
}


# Profiles against the distance to the network's boundary, by probed quantity: (name without the field's
# prefix, long name, definition)
PROFILES = {
    "log10_volume": (
        "log10_volume_profile", "mean log10 volume element by distance to the network's boundary",
        "the mean of log10 sqrt(det g) over the probe points of one field whose distance to the network's own "
        "decision boundary (boundary_distance) falls in each distance bin; NaN for a bin without points"),
    "curvature": (
        "log10_abs_curvature_profile", "mean log10 |K| by distance to the network's boundary",
        "the mean of log10 |K| (K the Gaussian curvature of the induced metric; points where K is 0 or undefined "
        "left out) over the probe points of one field whose distance to the network's own decision boundary falls "
        "in each distance bin; NaN for a bin without points"),
}


def distance_bin_edges(distances: np.ndarray, bins: int) -> np.ndarray | None:
    """``bins`` + 1 equally spaced edges from the least to the greatest finite distance (None: none is finite)."""
    finite = np.asarray(distances, dtype=float)[np.isfinite(distances)]
    if finite.size == 0:
        return None
    low, high = float(finite.min()), float(finite.max())
    return np.linspace(low, high if high > low else low + 1.0, bins + 1)


def binned_means(values: np.ndarray, distance: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The mean of the finite ``values`` whose ``distance`` falls in each bin of ``edges`` (the last bin closed;
    distances outside the edges in the nearest bin); NaN for a bin without one."""
    values, distance = np.ravel(values), np.ravel(distance)
    keep = np.isfinite(values) & np.isfinite(distance)
    which = np.clip(np.searchsorted(edges, distance[keep], side="right") - 1, 0, len(edges) - 2)
    sums = np.bincount(which, weights=values[keep], minlength=len(edges) - 1)
    counts = np.bincount(which, minlength=len(edges) - 1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _profiled(quantity: str, field: np.ndarray) -> np.ndarray:
    """The values a profile averages: log10 sqrt(det g) as stored, log10 |K| of the curvature (-inf where K = 0,
    left out by :func:`binned_means`)."""
    if quantity == "curvature":
        with np.errstate(divide="ignore"):
            return np.log10(np.abs(field))
    return field


def rank_correlation(x: np.ndarray, y: np.ndarray, x_name: str = "log10 volume element") -> tuple[float, str | None]:
    """(Spearman's rank correlation of x and y over the points where both are finite, None), or (NaN, why)."""
    x, y = np.ravel(x), np.ravel(y)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return math.nan, f"{int(keep.sum())} points with finite values (3 needed)"
    x_ranks = pd.Series(x[keep]).rank().to_numpy()
    y_ranks = pd.Series(y[keep]).rank().to_numpy()
    for ranks, name in ((x_ranks, x_name), (y_ranks, "the compared field")):
        if np.ptp(ranks) == 0:
            return math.nan, f"{name} is constant over the points"
    return float(np.corrcoef(x_ranks, y_ranks)[0, 1]), None


def top_decile_overlap(a: np.ndarray, b: np.ndarray, fraction: float = 0.1) -> tuple[float, str | None]:
    """(intersection over union of the ``fraction`` of points where ``a`` is largest and those where ``b`` is,
    over the points where both are finite (at least one each), None), or (NaN, why)."""
    a, b = np.ravel(a), np.ravel(b)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 2:
        return math.nan, f"{int(keep.sum())} points with finite values (2 needed)"
    count = max(1, int(round(fraction * keep.sum())))
    top_a = set(np.argsort(-a[keep], kind="stable")[:count].tolist())
    top_b = set(np.argsort(-b[keep], kind="stable")[:count].tolist())
    return len(top_a & top_b) / len(top_a | top_b), None


AGREEMENT_DEFINITIONS = {
    "seed_agreement_correlation": (
        "Spearman rank correlation between two seeds' log10 volume element maps",
        "Spearman's rank correlation, over the probe points of one field (the same points for every seed), "
        "between the log10 sqrt(det g) of two seeds at the same epoch and block"),
    "seed_agreement_top_decile_iou": (
        "overlap of two seeds' top-decile magnification regions",
        "intersection over union of the 10% of a field's probe points where one seed's log10 sqrt(det g) is largest "
        "and the 10% where the other's is"),
}
COMPARED_DEFINITIONS = {
    "compared_agreement_correlation": (
        "Spearman rank correlation between this experiment's log10 volume element map and the compared one's",
        "Spearman's rank correlation, over the probe points of a plane both experiments probe (the same anchor images "
        "and grid), between the log10 sqrt(det g) of a seed of this experiment and a seed of the experiment of "
        "probe.compare_with, at the same epoch, of the same feature map (by name)"),
    "compared_agreement_top_decile_iou": (
        "overlap of this experiment's and the compared one's top-decile magnification regions",
        "intersection over union of the 10% of the plane's probe points where this experiment's seed's log10 "
        "sqrt(det g) is largest and the 10% where the compared experiment's seed's is"),
}


# What the agreement reads of the compared experiment's store (its coordinates come along).
COMPARED_VARIABLES = ("plane_log10_volume", "plane_anchor_source_index", "plane_anchor_split")


def map_agreement(first: np.ndarray, second: np.ndarray) -> dict:
    """The two agreements of two maps over the same points: (rank correlation, why), (top-decile IoU, why)."""
    return {"correlation": rank_correlation(first, second), "top_decile_iou": top_decile_overlap(first, second)}


def _agreement_variables(prefix: str, definitions: dict, pair_dim: str, labels: list[str], dims: list[str],
                         values: dict, undefined: dict, attrs: dict) -> dict:
    """The variables of an agreement (``definitions``: seed or compared): per pair (``pair_dim``, ``labels``) on
    ``dims``, and the mean over the pairs."""
    variables = {pair_dim: (pair_dim, np.array(labels, dtype=object), {"long_name": "two seeds compared",
                                                                       "units": "1"})}
    for name, (long_name, definition) in definitions.items():
        kind = name.rsplit("_agreement_", 1)[1]
        variables[f"{prefix}{name}"] = ([pair_dim, *dims], values[kind], {
            "long_name": long_name, "units": "1", "definition": definition, "undefined": undefined[kind], **attrs})
        counts = np.isfinite(values[kind]).sum(axis=0)
        mean = np.where(counts > 0, np.nansum(values[kind], axis=0) / np.maximum(counts, 1), np.nan)
        variables[f"{prefix}{name}_mean"] = (dims, mean, {
            "long_name": f"mean over the pairs of seeds: {long_name}", "units": "1", "n_pairs": len(labels), **attrs})
    return variables


def _seed_agreement(prefix: str, field_name: str, cell_dims: list[str], probed: xr.DataArray) -> dict:
    """The seed agreement of a field kind (AGREEMENT_DEFINITIONS): per pair of seeds (dim ``seed_pair``) and its
    mean over the pairs; none with one seed."""
    seeds = probed["seed"].values.tolist()
    pairs = list(itertools.combinations(range(len(seeds)), 2))
    if not pairs:
        return {}
    other_dims = cell_dims[1:]
    point_dims = [dim for dim in probed.dims if dim not in cell_dims]
    shape = [len(pairs), *(probed.sizes[d] for d in other_dims)]
    values = {"correlation": np.full(shape, np.nan), "top_decile_iou": np.full(shape, np.nan)}
    undefined = {kind: [] for kind in values}
    for index in np.ndindex(*shape[1:]):
        at = dict(zip(other_dims, index))
        maps = probed.isel(at).transpose("seed", *point_dims).values  # each seed's
        where = _where({dim: str(probed[dim].values[i]) for dim, i in at.items()})
        for number, (i, j) in enumerate(pairs):
            for kind, (value, why) in map_agreement(maps[i], maps[j]).items():
                values[kind][(number, *index)] = value
                if why is not None:
                    undefined[kind].append(f"seeds {seeds[i]} and {seeds[j]} {where}: {why}")
    labels = [f"{seeds[i]}-{seeds[j]}" for i, j in pairs]
    return _agreement_variables(prefix, AGREEMENT_DEFINITIONS, "seed_pair", labels, other_dims, values, undefined,
                                {"probed_field": field_name})


def counterpart(block: str, blocks: list[str]) -> str | None:
    """The feature map of ``blocks`` that is ``block`` (by name, or one function under two names), if any."""
    from geomvol.catalogue import SAME_FEATURE_MAPS

    for other in blocks:
        if other == block or SAME_FEATURE_MAPS.get(block) == other or SAME_FEATURE_MAPS.get(other) == block:
            return other
    return None


def compared_agreement(ds: xr.Dataset, compared: xr.Dataset) -> dict:
    """The agreement (COMPARED_DEFINITIONS) of every seed of ``ds`` with every seed of ``compared`` (the store of
    its ``probe.compare_with``) on each plane both probe, per (dim ``compared_seed_pair``, epoch, block, plane), and
    its mean over the pairs: NaN at an epoch the compared experiment did not probe, for a feature map it does not
    have, or where its plane's grid differs. The planes must go through the same anchor images."""
    from geomvol.errors import GeomvolError

    name = compared.attrs.get("experiment", "the compared experiment")
    for variable in COMPARED_VARIABLES[1:]:
        if variable in ds and not np.array_equal(ds[variable].values, compared[variable].values):
            raise GeomvolError(f"experiment {ds.attrs.get('experiment')} and {name} do not probe the same planes "
                               f"({variable}: {ds[variable].values.tolist()} against "
                               f"{compared[variable].values.tolist()}); compare_with needs the same anchor images")
    seeds, other_seeds = ds["seed"].values.tolist(), compared["seed"].values.tolist()
    pairs = list(itertools.product(range(len(seeds)), range(len(other_seeds))))
    dims = ["epoch", "block", "plane"]
    shape = [len(pairs), ds.sizes["epoch"], ds.sizes["block"], ds.sizes["plane"]]
    values = {"correlation": np.full(shape, np.nan), "top_decile_iou": np.full(shape, np.nan)}
    undefined = {kind: [] for kind in values}
    same_grid = all(np.array_equal(ds[axis].values, compared[axis].values) for axis in ("u", "v"))
    other_epochs, other_blocks = compared["epoch"].values.tolist(), compared["block"].values.tolist()
    for (e, epoch), (b, block), plane in itertools.product(enumerate(ds["epoch"].values.tolist()),
                                                           enumerate(ds["block"].values.tolist()),
                                                           range(ds.sizes["plane"])):
        other_block = counterpart(block, other_blocks)
        why = ("the two experiments probe the plane on different grids (probe.plane)" if not same_grid else
               f"{name} did not probe epoch {epoch}" if epoch not in other_epochs else
               f"{name} probes no feature map {block}" if other_block is None else None)
        if why is not None:
            for kind in values:
                undefined[kind].append(f"epoch={epoch} block={block} plane={plane}: {why}")
            continue
        maps = ds["plane_log10_volume"].sel(epoch=epoch, block=block, plane=plane).transpose("seed", "v", "u").values
        other_maps = compared["plane_log10_volume"].sel(epoch=epoch, block=other_block, plane=plane).transpose(
            "seed", "v", "u").values
        for number, (i, j) in enumerate(pairs):
            for kind, (value, why) in map_agreement(maps[i], other_maps[j]).items():
                values[kind][number, e, b, plane] = value
                if why is not None:
                    undefined[kind].append(f"seeds {seeds[i]} and {name}'s {other_seeds[j]} epoch={epoch} "
                                           f"block={block} plane={plane}: {why}")
    labels = [f"{seeds[i]}-{other_seeds[j]}" for i, j in pairs]
    variables = _agreement_variables("plane_", COMPARED_DEFINITIONS, "compared_seed_pair", labels, dims, values,
                                     undefined, {"probed_field": "plane_log10_volume", "compared_experiment": name})
    long_name = f"a seed of this experiment and one of {name}"
    variables["compared_seed_pair"][2]["long_name"] = long_name
    return variables


def _log10_mean(log10_values: np.ndarray) -> float:
    """log10 of the mean of 10**v, computed without overflow (-inf entries are volume 0)."""
    peak = log10_values.max()
    if not np.isfinite(peak):
        return float(peak)
    return float(peak + np.log10(np.mean(np.exp((log10_values - peak) * LN10))))


def _band(values: np.ndarray, margin: np.ndarray, band: float) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Masks of the points near the boundary (``margin`` < ``band``) and away from it, among those whose
    value is not NaN and finite margin, and why a contrast of the two is undefined (None: it is defined)."""
    keep = ~np.isnan(values) & np.isfinite(margin)
    near = keep & (margin < band)
    far = keep & ~(margin < band)
    if not near.any():
        return near, far, f"no probe point within the boundary band (probability margin < {band:g})"
    if not far.any():
        return near, far, f"every probe point is within the boundary band (probability margin < {band:g})"
    return near, far, None


def _log10_contrast(log10_values: np.ndarray, near: np.ndarray, far: np.ndarray,
                    zero: str) -> tuple[float, str | None]:
    """(log10 of the mean of 10**log10_values over the points ``near`` over the mean over the points ``far``, None),
    or (NaN, ``zero``: why) where one side's mean is 0."""
    near_mean, far_mean = _log10_mean(log10_values[near]), _log10_mean(log10_values[far])
    if not (np.isfinite(near_mean) and np.isfinite(far_mean)):
        return math.nan, zero
    return near_mean - far_mean, None


def boundary_ratio(log10_volume: np.ndarray, margin: np.ndarray, band: float,
                   quantity: str = "the volume element") -> tuple[float, str | None]:
    """(log10 of mean volume element where ``margin`` < ``band`` over the mean elsewhere, None), or (NaN, why).

    Points where the log volume is NaN or +inf are left out (-inf is a volume element of 0 and counts).
    ``quantity`` names what 10**log10_volume is, in the reason an undefined ratio gives.
    """
    log10_volume, margin = np.ravel(log10_volume), np.ravel(margin)
    near, far, why = _band(np.where(log10_volume < np.inf, log10_volume, np.nan), margin, band)
    if why is not None:
        return math.nan, why
    return _log10_contrast(log10_volume, near, far, f"{quantity} is 0 at every point on one side of the band")


def mean_near_boundary(values: np.ndarray, margin: np.ndarray, band: float) -> tuple[float, str | None]:
    """(mean of ``values`` where ``margin`` < ``band``, None), or (NaN, why); NaN values left out."""
    values, margin = np.ravel(values), np.ravel(margin)
    near, _, why = _band(values, margin, band)
    if not near.any():  # (points away from the band are not needed here)
        return math.nan, why
    return float(values[near].mean()), None


def boundary_contrast(values: np.ndarray, margin: np.ndarray, band: float) -> tuple[float, str | None]:
    """(mean of ``values`` where ``margin`` < ``band`` minus the mean elsewhere, None), or (NaN, why)."""
    values, margin = np.ravel(values), np.ravel(margin)
    near, far, why = _band(values, margin, band)
    if why is not None:
        return math.nan, why
    return float(values[near].mean() - values[far].mean()), None


def _nearest(keep: np.ndarray, distance: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the ``fraction`` of the ``keep`` points nearest the boundary (smallest |distance|; at least one,
    and one fewer than all) and of the other ``keep`` points; at least two are kept."""
    order = np.flatnonzero(keep)[np.argsort(np.abs(distance[keep]), kind="stable")]
    count = min(max(1, int(round(fraction * len(order)))), len(order) - 1)
    near = np.zeros_like(keep)
    near[order[:count]] = True
    return near, keep & ~near


def nearest_ratio(log10_values: np.ndarray, distance: np.ndarray, fraction: float,
                  quantity: str = "the volume element") -> tuple[float, str | None]:
    """(log10 of the mean of 10**log10_values over the ``fraction`` of points nearest the boundary (smallest
    |distance|, at least one) over the mean over the others, None), or (NaN, why)."""
    log10_values, distance = np.ravel(log10_values), np.ravel(distance)
    keep = ~np.isnan(log10_values) & (log10_values < np.inf) & np.isfinite(distance)
    if not np.isfinite(distance).any():
        return math.nan, "the field holds no decision boundary"
    if keep.sum() < 2:
        return math.nan, f"{int(keep.sum())} points with finite values (2 needed)"
    return _log10_contrast(log10_values, *_nearest(keep, distance, fraction),
                           f"{quantity} is 0 at every point near the boundary or away from it")


def delta_ratio(log10_values: np.ndarray, distance: np.ndarray, delta: float,
                quantity: str = "the volume element") -> tuple[float, str | None]:
    """(log10 of the mean of 10**log10_values over the points within ``delta`` of the boundary (|distance| <=
    delta) over the mean over the others, None), or (NaN, why)."""
    log10_values, distance = np.ravel(log10_values), np.ravel(distance)
    if not np.isfinite(distance).any():
        return math.nan, "the field holds no decision boundary"
    keep = ~np.isnan(log10_values) & (log10_values < np.inf) & np.isfinite(distance)
    near, far = keep & (np.abs(distance) <= delta), keep & (np.abs(distance) > delta)
    if not near.any():
        return math.nan, f"no probe point within {delta:g} of the boundary"
    if not far.any():
        return math.nan, f"every probe point is within {delta:g} of the boundary"
    return _log10_contrast(log10_values, near, far, f"{quantity} is 0 at every point near the boundary or away from it")


def _learned_boundary_measures(values: np.ndarray, log10_values: np.ndarray, distance,
                               settings: MeasuresSettings, quantity: str, prefix: str = "") -> dict:
    """The measures on the network's own boundary of a field (none where the probe did not locate it); the
    delta ratio with ``measures.boundary_delta``."""
    if distance is None:
        return {}
    names = ["learned_boundary_correlation", "distance_ratio"] + (
        ["delta_ratio"] if settings.boundary_delta is not None else [])
    if not np.isfinite(distance).any():
        return {f"{prefix}{name}": (math.nan, "the field holds no decision boundary") for name in names}
    values = {f"{prefix}learned_boundary_correlation": rank_correlation(values, -np.abs(distance), quantity),
              f"{prefix}distance_ratio": nearest_ratio(log10_values, distance, settings.near_fraction, quantity)}
    if settings.boundary_delta is not None:
        values[f"{prefix}delta_ratio"] = delta_ratio(log10_values, distance, settings.boundary_delta, quantity)
    return values


def _volume_measures(log10_volume, entropy, margin, minus_distance, distance, settings: MeasuresSettings) -> dict:
    """The measures of a log10 volume element field: name -> (value, why undefined)."""
    values = {"entropy_correlation": rank_correlation(log10_volume, entropy),
              "boundary_ratio": boundary_ratio(log10_volume, margin, settings.boundary_margin)}
    if minus_distance is not None:
        values["boundary_distance_correlation"] = rank_correlation(log10_volume, minus_distance)
    values.update(_learned_boundary_measures(log10_volume, log10_volume, distance, settings, "log10 volume element"))
    return values


def _curvature_measures(curvature, entropy, margin, minus_distance, distance, settings: MeasuresSettings) -> dict:
    """The measures of a Gaussian curvature field, on |K| and on the sign of K: name -> (value, why undefined)."""
    band = settings.boundary_margin
    size, sign = np.abs(curvature), np.sign(curvature)
    with np.errstate(divide="ignore"):
        log10_size = np.log10(size)
    values = {
        "abs_curvature_entropy_correlation": rank_correlation(size, entropy, "|K|"),
        "abs_curvature_boundary_ratio": boundary_ratio(log10_size, margin, band, "|K|"),
        "curvature_sign_near_boundary": mean_near_boundary(sign, margin, band),
        "curvature_sign_boundary_contrast": boundary_contrast(sign, margin, band),
        "curvature_sign_entropy_correlation": rank_correlation(sign, entropy, "the sign of K"),
    }
    if minus_distance is not None:
        values["abs_curvature_boundary_distance_correlation"] = rank_correlation(size, minus_distance, "|K|")
        values["curvature_sign_boundary_distance_correlation"] = rank_correlation(sign, minus_distance,
                                                                                  "the sign of K")
    values.update(_learned_boundary_measures(size, log10_size, distance, settings, "|K|", "abs_curvature_"))
    return values


def near_and_away_means(values: np.ndarray, distance, fraction: float) -> dict:
    """(mean of the finite ``values`` over the ``fraction`` of those points nearest the boundary (smallest
    |distance|, at least one), why) and (mean over the others, why), by "near" and "away"; (NaN, why) where
    undefined."""
    if distance is None:
        return {}
    values, distance = np.ravel(values), np.ravel(distance)
    if not np.isfinite(distance).any():
        why = "the field holds no decision boundary"
        return {"near": (math.nan, why), "away": (math.nan, why)}
    keep = np.isfinite(values) & np.isfinite(distance)
    if keep.sum() < 2:
        why = f"{int(keep.sum())} points with finite values (2 needed)"
        return {"near": (math.nan, why), "away": (math.nan, why)}
    near, away = _nearest(keep, distance, fraction)
    return {"near": (float(values[near].mean()), None), "away": (float(values[away].mean()), None)}


def _stretch_measures(name: str):
    """The measures of a stretch field (``metric_anisotropy`` or ``stretch_alignment``): its means nearest the
    network's boundary and away from it."""
    def measures_of(values, entropy, margin, minus_distance, distance, settings: MeasuresSettings) -> dict:
        means = near_and_away_means(values, distance, settings.near_fraction)
        return {f"{name}_{'near_boundary' if side == 'near' else 'away_from_boundary'}": value
                for side, value in means.items()}
    return measures_of


def with_stretch_fields(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with, on each 2-D field whose probe stored the plane metric, ``metric_anisotropy`` (log10(lambda_1 /
    lambda_2)) and ``stretch_alignment`` (|cos| of the angle between G's leading eigenvector and the margin's
    gradient), prefixed as the field (the grid's none, ``plane_``)."""
    derived = {}
    for prefix in ("", "plane_"):
        if f"{prefix}stretch_angle" not in ds:
            continue
        eigenvalues = ds[f"{prefix}log10_metric_eigenvalue"]
        anisotropy = eigenvalues.sel(eigenvalue=1) - eigenvalues.sel(eigenvalue=2)
        derived[f"{prefix}metric_anisotropy"] = anisotropy.assign_attrs(
            long_name="anisotropy of the metric: log10(lambda_1 / lambda_2)", units="1")
        derived[f"{prefix}stretch_alignment"] = np.abs(np.cos(
            ds[f"{prefix}stretch_angle"] - ds[f"{prefix}margin_gradient_angle"])).assign_attrs(
            long_name="|cos| of the angle between the metric's leading eigenvector and the margin's gradient",
            units="1")
    return ds.assign(derived) if derived else ds


# The measures that read the boundary band (points whose probability margin is below boundary_margin).
BAND_MEASURES = {"boundary_ratio", "abs_curvature_boundary_ratio", "curvature_sign_near_boundary",
                 "curvature_sign_boundary_contrast"}
# The probed quantities that have measures: the stored variable (after a field's plane_ or line_ prefix) and
# the function that measures one field of it.
QUANTITIES = {"log10_volume": _volume_measures, "curvature": _curvature_measures,
              "metric_anisotropy": _stretch_measures("metric_anisotropy"),
              "stretch_alignment": _stretch_measures("stretch_alignment")}


def distance_to_sinusoid(x1: np.ndarray, x2: np.ndarray, amplitude: float, frequency: float, phase: float,
                         samples_per_unit: int = 4000) -> np.ndarray:
    """Euclidean distance from each point (x1, x2) to the curve x2 = amplitude sin(frequency x1 + phase).

    The curve is sampled densely in x1 over the points' range widened by the largest possible distance
    (|x2| + amplitude), so the nearest curve point is always among the samples; the error is below half
    the arc length between samples (about 1e-3 at the default density for the study's curve).
    """
    x1, x2 = np.asarray(x1, dtype=float), np.asarray(x2, dtype=float)
    reach = float(np.abs(x2).max()) + abs(amplitude)
    curve_x1 = np.linspace(x1.min() - reach, x1.max() + reach,
                           int(math.ceil((np.ptp(x1) + 2 * reach) * samples_per_unit)) + 1)
    curve_x2 = amplitude * np.sin(frequency * curve_x1 + phase)
    points = np.stack([x1.ravel(), x2.ravel()], axis=1)
    distance = np.empty(points.shape[0])
    for start in range(0, points.shape[0], 256):
        chunk = points[start:start + 256]
        squared = (chunk[:, :1] - curve_x1) ** 2 + (chunk[:, 1:] - curve_x2) ** 2
        distance[start:start + 256] = np.sqrt(squared.min(axis=1))
    return distance.reshape(x1.shape)


def bootstrap_over_seeds(values: np.ndarray, resamples: int, level: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean over axis 0 (seeds) and the percentile bootstrap interval (2, ...) of that mean at ``level``, in
    each cell over the seeds where the value is defined (not NaN).

    Each of ``resamples`` resamples draws as many of those seeds as there are, with replacement (the draws of
    a cell with m defined seeds from ``numpy.random.default_rng(seed)``, the same for every cell with m).
    A cell with no defined seed gets a NaN mean, and one with fewer than two a NaN interval (nothing to
    resample).
    """
    values = np.asarray(values, dtype=float)
    defined = ~np.isnan(values)
    counts = defined.sum(axis=0)
    with np.errstate(invalid="ignore"):
        mean = np.where(counts > 0, np.nansum(values, axis=0) / np.maximum(counts, 1), np.nan)
    interval = np.full((2, *mean.shape), np.nan)
    tail = (1 - level) / 2 * 100
    draws = {}
    for cell in np.ndindex(*mean.shape):
        cell_values = values[(slice(None), *cell)][defined[(slice(None), *cell)]]
        m = cell_values.size
        if m < 2:
            continue
        if m not in draws:
            draws[m] = np.random.default_rng(seed).integers(0, m, size=(resamples, m))
        interval[(slice(None), *cell)] = np.percentile(cell_values[draws[m]].mean(axis=1), [tail, 100 - tail])
    return mean, interval


def _fields(ds: xr.Dataset) -> list[tuple[str, str, str, str, str | None, object]]:
    """(measure prefix, probed variable, entropy, margin variable, distance to the network's boundary (None: a
    store probed before it was located), measuring function) of each probed field kind and quantity in a store:
    the grid's, then the planes' and the lines'."""
    fields = []
    for prefix in ("", "plane_", "line_"):
        for quantity, measures_of in QUANTITIES.items():
            if f"{prefix}{quantity}" in ds:
                distance = f"{prefix}boundary_distance" if f"{prefix}boundary_distance" in ds else None
                fields.append((prefix, f"{prefix}{quantity}", f"{prefix}entropy", f"{prefix}probability_margin",
                               distance, measures_of))
    return fields


def _where(labels: dict) -> str:
    return " ".join(f"{dim}={value}" for dim, value in labels.items())


def magnification_measures(ds: xr.Dataset, settings: MeasuresSettings,
                           compared: xr.Dataset | None = None) -> xr.Dataset:
    """The magnification measures of a combined (volume) store's Dataset, per seed and across seeds; with
    ``compared`` (the combined store of the experiment's ``probe.compare_with``), the agreement of the two
    experiments' maps on their planes (:func:`compared_agreement`).

    Returns a Dataset with,
    for each measure ``m`` (prefixed ``plane_``/``line_`` on planes and lines): ``m`` on (seed, epoch,
    block[, plane|line]), ``m_mean`` without seed and ``m_interval`` with a ``bound`` dimension (low, high).
    """
    band = settings.boundary_margin
    bootstrap = settings.bootstrap
    variables = {}
    ds = with_stretch_fields(ds)
    true_distance = None  # the grid's distance to the true boundary (the sinusoid's), on (x2, x1)
    if settings.true_boundary is not None and "x1" in ds:
        x1, x2 = xr.broadcast(ds["x1"], ds["x2"])
        boundary = settings.true_boundary
        true_distance = xr.DataArray(distance_to_sinusoid(x1.values, x2.values, boundary.amplitude,
                                                          boundary.frequency, boundary.phase), dims=x1.dims)
    for prefix, field_name, entropy_name, margin_name, distance_name, measures_of in _fields(ds):
        probed = ds[field_name]
        point_dims = [dim for dim in ds[entropy_name].dims if dim not in ("seed", "epoch", prefix.rstrip("_"))]
        cell_dims = [dim for dim in probed.dims if dim not in point_dims]
        minus_distance = None
        if prefix == "" and true_distance is not None:
            minus_distance = -true_distance.transpose(*point_dims).values
        results, undefined = {}, {}
        quantity = field_name[len(prefix):]
        edges = None if distance_name is None or quantity not in PROFILES else distance_bin_edges(
            ds[distance_name].values, settings.profile_bins)
        profiles = None if edges is None else np.full([*(probed.sizes[d] for d in cell_dims), len(edges) - 1], np.nan)
        for index in np.ndindex(*[probed.sizes[d] for d in cell_dims]):
            at = dict(zip(cell_dims, index))
            labels = {dim: str(probed[dim].values[i]) for dim, i in at.items()}
            field = probed.isel(at).transpose(*point_dims).values
            others = {dim: i for dim, i in at.items() if dim != "block"}
            entropy = ds[entropy_name].isel(others).transpose(*point_dims).values
            margin = ds[margin_name].isel(others).transpose(*point_dims).values
            distance = None if distance_name is None else ds[distance_name].isel(others).transpose(*point_dims).values
            measured = measures_of(field, entropy, margin, minus_distance, distance, settings)
            if profiles is not None:
                profiles[index] = binned_means(_profiled(quantity, field), distance, edges)
            for name, (value, why) in measured.items():
                if name not in results:
                    results[name] = np.full([probed.sizes[d] for d in cell_dims], np.nan)
                    undefined[name] = []
                results[name][index] = value
                if why is not None:
                    undefined[name].append(f"{_where(labels)}: {why}")
        for name in DEFINITIONS:
            if name not in results:
                continue
            long_name, definition = DEFINITIONS[name]
            attrs = {"long_name": long_name, "units": "1", "definition": definition,
                     "probed_field": field_name, "undefined": undefined[name]}
            if name in BAND_MEASURES:
                attrs["boundary_margin"] = band
            if "near_fraction" in definition:
                attrs["near_fraction"] = settings.near_fraction
            if "boundary_delta" in definition:
                attrs["boundary_delta"] = settings.boundary_delta
            variables[prefix + name] = (cell_dims, results[name], attrs)
            variables.update(_over_seeds(prefix + name, cell_dims, results[name], long_name, undefined[name], bootstrap))
            if 0 in ds["epoch"].values:
                variables.update(_change_from_epoch_0(prefix + name, cell_dims, results[name], list(ds["epoch"].values),
                                                      long_name, bootstrap))
        if profiles is not None:
            variables.update(_profile_variables(prefix, quantity, cell_dims, profiles, edges, ds[distance_name],
                                                bootstrap))
        if quantity == "log10_volume":
            variables.update(_seed_agreement(prefix, field_name, cell_dims, probed))
    if compared is not None and "plane_log10_volume" in ds:
        variables.update(compared_agreement(ds, compared))
    if settings.true_boundary is not None and "boundary_crossing" in ds:
        variables.update(_location_error(ds, settings))
    keep_coords = {name: coord for name, coord in ds.coords.items()
                   if set(coord.dims) <= {"seed", "epoch", "block", "plane", "line"}}
    result = xr.Dataset(variables, coords={**keep_coords, "bound": ("bound", np.array(["low", "high"], dtype=object), {
        "long_name": "lower and upper end of the interval"})})
    result.attrs = {
        "title": f"geomvol magnification measures: experiment {ds.attrs['experiment']}",
        "experiment": ds.attrs["experiment"],
        "config_sha256": ds.attrs["config_sha256"],
        "definitions": __doc__,
        "change_from_epoch_0": ("m_change, m_change_mean, m_change_interval, m_rise_fraction, m_rise_p_value for "
                                "each measure m" if 0 in ds["epoch"].values else "not computed: epoch 0 was not probed"),
    }
    return result


def _profile_variables(prefix: str, quantity: str, cell_dims: list[str], profiles: np.ndarray, edges: np.ndarray,
                       distance: xr.DataArray, bootstrap: BootstrapSettings) -> dict:
    """A field kind's profile of ``quantity`` per seed (cell_dims + its distance bin), its mean over seeds with
    the bootstrap interval, and the bins as a coordinate (their centres, with the edges)."""
    name, long_name, definition = PROFILES[quantity]
    bin_dim = f"{prefix}distance_bin"
    centres = (edges[:-1] + edges[1:]) / 2
    units = distance.attrs.get("units", "input-space units")
    coordinate = xr.DataArray(centres, dims=bin_dim, attrs={
        "long_name": "centre of a bin of distance to the network's decision boundary", "units": units,
        "bin_edges": edges.tolist(), "signed": bool(np.nanmin(distance.values) < 0)})
    dims = [*cell_dims, bin_dim]
    undefined = ["a bin without points of the field: NaN"] if np.isnan(profiles).any() else []
    variables = {f"{prefix}{name}": (dims, profiles, {
        "long_name": long_name, "units": "1", "definition": definition, "probed_field": f"{prefix}{quantity}",
        "distance": distance.name, "undefined": undefined})}
    variables.update(_over_seeds(f"{prefix}{name}", dims, profiles, long_name, undefined, bootstrap))
    return variables | {bin_dim: coordinate}


def _location_error(ds: xr.Dataset, settings: MeasuresSettings) -> dict:
    """The sinusoid's boundary location error per seed and epoch (BOUNDARY_DEFINITIONS), over seeds and its
    change from epoch 0."""
    from geomvol.geometry.boundary import crossing_points

    boundary = settings.true_boundary
    x1, x2 = ds["x1"].values, ds["x2"].values
    low, high = float(ds["data_x1"].min()), float(ds["data_x1"].max())  # the square the training points fill
    low, high = min(low, float(ds["data_x2"].min())), max(high, float(ds["data_x2"].max()))
    cell_dims = ["seed", "epoch"]
    error = np.full((ds.sizes["seed"], ds.sizes["epoch"]), np.nan)
    undefined = []
    for (i, seed), (j, epoch) in itertools.product(enumerate(ds["seed"].values), enumerate(ds["epoch"].values)):
        points = crossing_points(ds["boundary_crossing"].isel(seed=i, epoch=j).values, x1, x2)
        points = points[((points >= low) & (points <= high)).all(axis=1)]
        if len(points) == 0:
            undefined.append(f"seed={seed} epoch={epoch}: no crossing inside the training square")
            continue
        error[i, j] = distance_to_sinusoid(points[:, 0], points[:, 1], boundary.amplitude, boundary.frequency,
                                           boundary.phase).mean()
    long_name, definition = BOUNDARY_DEFINITIONS["boundary_location_error"]
    variables = {"boundary_location_error": (cell_dims, error, {
        "long_name": long_name, "units": "1", "definition": definition, "probed_field": "boundary_crossing",
        "undefined": undefined})}
    variables.update(_over_seeds("boundary_location_error", cell_dims, error, long_name, undefined, settings.bootstrap))
    if 0 in ds["epoch"].values:
        variables.update(_change_from_epoch_0("boundary_location_error", cell_dims, error, list(ds["epoch"].values),
                                              long_name, settings.bootstrap))
    return variables


def _over_seeds(variable: str, cell_dims: list[str], values: np.ndarray, long_name: str, undefined: list[str],
                bootstrap: BootstrapSettings) -> dict:
    """``variable``'s mean over seeds (axis 0 of ``values``) and its bootstrap interval, as data variables."""
    mean, interval = bootstrap_over_seeds(values, bootstrap.resamples, bootstrap.level, bootstrap.seed)
    n_seeds = values.shape[0]
    summary_dims = cell_dims[1:]
    interval_undefined = []
    if n_seeds < 2:
        interval_undefined.append("one seed: no interval")
    if undefined:
        interval_undefined.append("where fewer than two seeds' values are defined (see the per-seed variable's "
                                  "undefined and the _n_seeds variable)")
    interval_attrs = {
        "long_name": f"{bootstrap.level:.0%} bootstrap interval of the mean over seeds: {long_name}",
        "units": "1",
        "method": "percentile bootstrap: resample the seeds with replacement, take the mean of each resample",
        "bootstrap_resamples": bootstrap.resamples, "confidence_level": bootstrap.level,
        "bootstrap_seed": bootstrap.seed, "n_seeds": n_seeds,
        "undefined": interval_undefined,
    }
    return {
        f"{variable}_mean": (summary_dims, mean, {
            "long_name": f"mean over the seeds where it is defined: {long_name}", "units": "1", "n_seeds": n_seeds}),
        f"{variable}_interval": (("bound", *summary_dims), interval, interval_attrs),
        f"{variable}_n_seeds": (summary_dims, (~np.isnan(values)).sum(axis=0), {
            "long_name": f"seeds where it is defined (of {n_seeds}), over which mean and interval are taken: "
                         f"{long_name}", "units": "1"}),
    }


RISE_DEFINITION = ("the fraction of seeds whose measure is higher at this epoch than at epoch 0, among the seeds "
                   "where both are defined (NaN where none is; 0 at epoch 0 itself)")
SIGN_TEST_DEFINITION = ("two-sided exact sign test of 'the measure rises from epoch 0 as often as it falls': with n "
                        "the seeds whose change is defined and non-zero and k those where it rose, p = min(1, "
                        "2 min(P[X <= k], P[X >= k])) for X ~ Binomial(n, 1/2); NaN for n = 0 (epoch 0 itself). "
                        "With n seeds the smallest p possible is 2^(1-n): 0.0078 for 8")


def sign_test(rises: int, falls: int) -> float:
    """Two-sided exact sign test p-value of ``rises`` against ``falls`` (ties left out): see SIGN_TEST_DEFINITION."""
    n = rises + falls
    if n == 0:
        return math.nan
    below = sum(math.comb(n, i) for i in range(rises + 1)) / 2**n
    above = sum(math.comb(n, i) for i in range(rises, n + 1)) / 2**n
    return min(1.0, 2 * min(below, above))


def _change_from_epoch_0(variable: str, cell_dims: list[str], values: np.ndarray, epochs: list, long_name: str,
                         bootstrap: BootstrapSettings) -> dict:
    """What training changed: ``variable`` minus its epoch-0 value per seed, its mean over seeds and bootstrap
    interval, and per epoch the fraction of seeds in which it rose and the sign test's p-value."""
    axis = cell_dims.index("epoch")
    change = values - np.take(values, [epochs.index(0)], axis=axis)
    change_name = f"change from epoch 0 of: {long_name}"
    undefined = ["where the measure is NaN at the epoch or at epoch 0 (see its undefined)"] if np.isnan(change).any() else []
    variables = {f"{variable}_change": (cell_dims, change, {
        "long_name": change_name, "units": "1", "definition": f"{variable} at the epoch minus {variable} at epoch 0, "
                                                               f"per seed", "undefined": undefined})}
    variables.update(_over_seeds(f"{variable}_change", cell_dims, change, change_name, undefined, bootstrap))
    defined = ~np.isnan(change)
    rises, falls = (change > 0).sum(axis=0), (change < 0).sum(axis=0)
    n_defined = defined.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(n_defined > 0, rises / n_defined, np.nan)
    p_value = np.vectorize(sign_test, otypes=[float])(rises, falls)
    summary_dims = cell_dims[1:]
    variables[f"{variable}_rise_fraction"] = (summary_dims, fraction, {
        "long_name": f"fraction of seeds in which it rose from epoch 0: {long_name}", "units": "1",
        "definition": RISE_DEFINITION, "n_seeds": values.shape[0]})
    variables[f"{variable}_rise_p_value"] = (summary_dims, p_value, {
        "long_name": f"sign test p-value of a rise from epoch 0: {long_name}", "units": "1",
        "definition": SIGN_TEST_DEFINITION, "n_seeds": values.shape[0]})
    return variables


# What the summary table quotes of each field (geomvol summary): the magnification at the network's own boundary
# on distance, its rank correlation with closeness to it, the study's probability-band ratio beside them, and the
# direction of the stretch nearest the boundary (2-D fields).
SUMMARY_MEASURES = ("distance_ratio", "delta_ratio", "learned_boundary_correlation", "boundary_ratio",
                    "stretch_alignment_near_boundary", "metric_anisotropy_near_boundary")
SUMMARY_COLUMNS = {
    "experiment": "the experiment (results/<experiment>/measures.zarr)",
    "field": "the probed field: the input grid, or a plane or line by its index",
    "block": "the feature map",
    "epoch": "the epoch (epoch E: after E passes over the training set)",
    "n_seeds": "seeds probed (each mean and interval is over those where its measure is defined)",
    **{f"{name}{part}": f"{DEFINITIONS[name][0]}: {what}" for name in SUMMARY_MEASURES
       for part, what in (("", "mean over seeds"), ("_low", "bootstrap interval, low end"),
                          ("_high", "bootstrap interval, high end"))},
    "seed_agreement_correlation": f"{AGREEMENT_DEFINITIONS['seed_agreement_correlation'][0]}: mean over the pairs",
    "seed_agreement_top_decile_iou": f"{AGREEMENT_DEFINITIONS['seed_agreement_top_decile_iou'][0]}: mean over the "
                                     f"pairs",
    "distance_ratio_change": "distance_ratio minus its epoch-0 value, mean over seeds",
    "distance_ratio_change_low": "its bootstrap interval, low end",
    "distance_ratio_change_high": "its bootstrap interval, high end",
    "distance_ratio_rise_fraction": "the fraction of seeds in which distance_ratio rose from epoch 0",
    "distance_ratio_rise_p_value": "two-sided exact sign test of rising against falling from epoch 0",
}


def measured_fields(measures: xr.Dataset) -> list[tuple[str, str | None, int | None]]:
    """(measure prefix, span dim, span index) of each probed field of a measures store: the grid, then each plane
    and line."""
    fields = [("", None, None)] if "entropy_correlation" in measures else []
    for kind in ("plane", "line"):
        if f"{kind}_entropy_correlation" in measures:
            fields += [(f"{kind}_", kind, int(i)) for i in measures[kind].values]
    return fields


def summary_table(measures: dict[str, xr.Dataset]) -> pd.DataFrame:
    """One row per experiment, probed field, block and epoch of the measures stores ``measures`` (experiment ->
    its measures Dataset), with the columns of :data:`SUMMARY_COLUMNS` (NaN where a store lacks a measure: no
    boundary located, no epoch 0)."""
    rows = []
    for experiment, ds in measures.items():
        for prefix, span, index in measured_fields(ds):
            for block, epoch in itertools.product(ds["block"].values.tolist(), ds["epoch"].values.tolist()):
                at = {"block": block, "epoch": epoch, **({} if span is None else {span: index})}
                row = {"experiment": experiment, "field": "grid" if span is None else f"{span} {index}",
                       "block": block, "epoch": int(epoch), "n_seeds": ds.sizes["seed"]}
                for name in (*SUMMARY_MEASURES, "distance_ratio_change"):
                    variable = f"{prefix}{name}"
                    defined = f"{variable}_mean" in ds
                    row[name] = float(ds[f"{variable}_mean"].sel(at)) if defined else math.nan
                    low, high = ds[f"{variable}_interval"].sel(at).values if defined else (math.nan, math.nan)
                    row[f"{name}_low"], row[f"{name}_high"] = float(low), float(high)
                for name in ("distance_ratio_rise_fraction", "distance_ratio_rise_p_value"):
                    variable = f"{prefix}{name}"
                    row[name] = float(ds[variable].sel(at)) if variable in ds else math.nan
                for name in AGREEMENT_DEFINITIONS:  # one seed: none
                    variable = f"{prefix}{name}_mean"
                    row[name] = float(ds[variable].sel(at)) if variable in ds else math.nan
                rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
