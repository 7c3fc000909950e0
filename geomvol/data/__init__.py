"""Data sets: preparation (seeded, checksummed) and loading for training and probing."""

from geomvol.data.prepare import load_dataset, model_inputs, prepare_dataset

__all__ = ["load_dataset", "model_inputs", "prepare_dataset"]
