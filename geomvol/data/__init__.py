"""Data sets: preparation (seeded, checksummed) and loading for training and probing."""

from geomvol.data.prepare import load_dataset, prepare_dataset

__all__ = ["load_dataset", "prepare_dataset"]
