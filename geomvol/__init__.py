"""geomvol: the geometry a neural network learns, measured as volume elements
of the pullback metric of its feature maps."""

__version__ = "0.1.0"
