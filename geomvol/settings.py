"""Resolved config sections as typed, frozen objects, named for what they are (torch-free).

The config (:mod:`geomvol.config`) is checked and resolved as plain data (what the schema, the JSON
passed to each job and the stores' attrs hold); code that computes from a section takes it as one of
these: built once from the resolved section (``from_section``), with every key it may read and no other,
and unchangeable on the way through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _frozen(value: Any) -> Any:
    """Lists as tuples, all the way down (a frozen object's fields cannot be changed in place)."""
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    return value


@dataclass(frozen=True)
class GridSettings:
    """The square grid over a 2-D input space: ``resolution`` points per axis from ``low`` to ``high``."""

    low: float
    high: float
    resolution: int


@dataclass(frozen=True)
class PlaneSettings:
    """The grid on each plane: ``resolution`` points per axis, u and v from -extent to extent."""

    extent: float
    resolution: int


@dataclass(frozen=True)
class LineSettings:
    """The points of each line p1 + t (p2 - p1): t from ``low`` to ``high`` (``endpoint`` false: high left out)."""

    low: float
    high: float
    points: int
    endpoint: bool


@dataclass(frozen=True)
class LinearProbeSettings:
    """The logistic regression that classifies a self-supervised network's frozen features."""

    standardize: bool
    weight_decay: float
    max_iter: int


@dataclass(frozen=True)
class AnchorChoice:
    """How one plane's (three) or line's (two) anchor images are chosen from a prepared split: explicit
    ``indices``, or one image of each of ``classes`` drawn by ``sampler`` with ``seed``."""

    split: str
    indices: tuple[int, ...] | None = None
    classes: tuple[int | str, ...] | None = None
    seed: int | None = None
    sampler: str | None = None

    @classmethod
    def from_entry(cls, entry: dict) -> AnchorChoice:
        return cls(**{key: _frozen(value) for key, value in entry.items()})

    def as_entry(self) -> dict:
        """The config entry it came from (what the stores record as the anchors' choice)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in vars(self).items() if value is not None}


@dataclass(frozen=True)
class ProbeSettings:
    """What one probe job computes and how it runs: a resolved ``probe`` section without the keys of other
    jobs (``epochs``: each job probes one checkpoint; ``compare_with``: the figures')."""

    feature_maps: tuple[str, ...]
    metric: str  # full | subspace
    top_k: int | None
    dtype: str
    block_pooling: Any  # None (no blocks), "global_mean", or block name -> (height, width) window (a graph node's:
    # its pool, "none", "global_mean" or a window: geomvol.models.nodes)
    spectra: bool
    curvature: bool  # the Gaussian curvature of the induced metric on the grid and on planes
    grid: GridSettings
    plane: PlaneSettings
    line: LineSettings
    planes: tuple[AnchorChoice, ...]
    lines: tuple[AnchorChoice, ...]
    linear_probe: LinearProbeSettings
    device: str  # run-time: auto | cpu | cuda
    memory_budget_bytes: int  # run-time

    @classmethod
    def from_section(cls, probe: dict) -> ProbeSettings:
        pooling = probe["block_pooling"]
        return cls(
            feature_maps=tuple(probe["feature_maps"]),
            metric=probe["metric"],
            top_k=probe["top_k"],
            dtype=probe["dtype"],
            block_pooling=({block: tuple(window) if isinstance(window, list) else window
                            for block, window in pooling.items()} if isinstance(pooling, dict) else pooling),
            spectra=probe["spectra"],
            curvature=probe["curvature"],
            grid=GridSettings(**probe["grid"]),
            plane=PlaneSettings(**probe["plane"]),
            line=LineSettings(**probe["line"]),
            planes=tuple(AnchorChoice.from_entry(entry) for entry in probe["planes"]),
            lines=tuple(AnchorChoice.from_entry(entry) for entry in probe["lines"]),
            linear_probe=LinearProbeSettings(**probe["linear_probe"]),
            device=probe["device"],
            memory_budget_bytes=probe["memory_budget_bytes"],
        )

    def anchors(self, kind: str) -> tuple[AnchorChoice, ...]:
        """The planes' or the lines' anchor choices (``kind``: plane or line)."""
        return self.planes if kind == "plane" else self.lines


@dataclass(frozen=True)
class BootstrapSettings:
    """The percentile bootstrap over seeds: ``resamples`` resamples, a ``level`` interval, drawn with ``seed``."""

    resamples: int
    level: float
    seed: int


@dataclass(frozen=True)
class SinusoidBoundary:
    """The sinusoid data set's true class boundary x2 = amplitude sin(frequency x1 + phase)."""

    amplitude: float
    frequency: float
    phase: float


@dataclass(frozen=True)
class MeasuresSettings:
    """What the magnification measures need: the ``measures`` section, and the true boundary when the data
    set has one (the sinusoid)."""

    boundary_margin: float
    near_fraction: float
    bootstrap: BootstrapSettings
    true_boundary: SinusoidBoundary | None = None
    profile_bins: int = 10
    boundary_delta: float | None = None  # None: no delta_ratio

    @classmethod
    def from_sections(cls, measures: dict, dataset: dict) -> MeasuresSettings:
        boundary = (SinusoidBoundary(dataset["amplitude"], dataset["frequency"], dataset["phase"])
                    if dataset["name"] == "sinusoid" else None)
        return cls(measures["boundary_margin"], measures["near_fraction"], BootstrapSettings(**measures["bootstrap"]),
                   boundary, measures["profile_bins"], measures["boundary_delta"])


@dataclass(frozen=True)
class FigureStyle:
    """The ``figures`` section: one colour scale per panel (the study's) or shared ones; entropy in hartleys
    (base 10, the study's) or nats, drawn as its log10 or itself (the study's); planes drawn whole or cropped to
    the anchors' triangle (the study's ``--ternary``), the volume element as a mesh or filled contours. The
    defaults are the schema's."""

    colour_scale: str = "per_panel"  # per_panel | shared | shared_relative_to_median
    entropy_units: str = "hartley"  # hartley | nat
    entropy_scale: str = "log10"  # log10 | linear
    plane_region: str = "square"  # square | triangle
    contour_levels: int | None = None  # None: a mesh
    spectra_epochs: list[int] | None = None  # None: every probed epoch
