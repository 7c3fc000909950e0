"""Training with a checkpoint per saved epoch and exact resume.

``fit`` (the training loop, :mod:`geomvol.train.loop`) is imported on first use, so that reading a
checkpoint (:mod:`geomvol.train.checkpoint`: probes, metrics, lineage) does not load the training stack.
"""

from geomvol.train.checkpoint import load_checkpoint

__all__ = ["fit", "load_checkpoint"]


def __getattr__(name: str):
    if name == "fit":
        from geomvol.train.loop import fit

        return fit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
