"""geomvol: the geometry a neural network learns, measured as volume elements
of the pullback metric of its feature maps.

The notebook API, on any model in memory: :func:`geomvol.probe_plane`,
:func:`geomvol.probe_line`, :func:`geomvol.probe_grid` (imported on first use:
``import geomvol`` itself loads no torch)."""

__version__ = "0.1.0"

_NOTEBOOK_API = ("probe_plane", "probe_line", "probe_grid")


def __getattr__(name: str):
    if name in _NOTEBOOK_API:
        import geomvol.probe

        return getattr(geomvol.probe, name)
    raise AttributeError(f"module 'geomvol' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_NOTEBOOK_API])
