"""Real handwritten digits offline: scikit-learn's ``load_digits`` data, the study's ``mnist_small``.

``digits.csv.gz`` beside this module is the file scikit-learn ships as
``sklearn/datasets/data/digits.csv.gz`` (read by ``sklearn.datasets.load_digits``):
1797 images of 8 x 8 pixels with integer values 0..16, one row each (64 pixels
in row-major order, then the label), in ``load_digits``' order. It is a copy of
the test set of the UCI ML "Optical Recognition of Handwritten Digits" data set
(E. Alpaydin, C. Kaynak, 1998; CC BY 4.0): 32 x 32 bitmaps of 13 writers'
digits, each 4 x 4 block counted into one pixel.

The training/test split follows one of two rules (``dataset.split_rule``), each split in its
permutation's order (the same rules split torchvision's MNIST or CIFAR-10 training file, as the study's
MNIST-line script splits its 60000 MNIST images):

- ``randperm_last``: the study's own ``train_test_split(n, test_size=f, seed)``
  (``src/utils/train_test_split.py``): ``torch.manual_seed(seed)``, ``torch.randperm(n)``, the
  test split its *last* int(f n) entries (449 of the 1797 digits for f = 0.25) and the training
  split the rest;
- ``shuffle_split``: scikit-learn's ``train_test_split(x, y, test_size=f, random_state=seed)``:
  ``numpy.random.RandomState(seed).permutation(n)``, the test split its *first* ceil(f n)
  entries (450 digits).
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import torch

DIGITS_FILE = Path(__file__).with_name("digits.csv.gz")
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
N_DIGITS = 1797


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 images (N, 1, 8, 8) uint8 (values 0..16) and labels (N,) int64, in load_digits' order."""
    from geomvol.errors import DataError
    from geomvol.provenance import sha256_file

    if sha256_file(DIGITS_FILE) != DIGITS_SHA256:
        raise DataError(f"{DIGITS_FILE} is not scikit-learn's digits.csv.gz (sha256 differs from {DIGITS_SHA256}); "
                        f"reinstall geomvol")
    with gzip.open(DIGITS_FILE, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    images = torch.from_numpy(table[:, :64].reshape(-1, 1, 8, 8).astype(np.uint8))
    return images, torch.from_numpy(table[:, 64])


def train_test_indices(n: int, test_fraction: float, seed: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """(training, test) indices of ``n`` items by a split ``rule`` (the module's docstring)."""
    if rule == "randperm_last":
        permutation = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
        n_test = int(n * test_fraction)
        return permutation[:n - n_test], permutation[n - n_test:]
    if rule == "shuffle_split":
        n_test = math.ceil(test_fraction * n)
        permutation = np.random.RandomState(seed).permutation(n)
        return permutation[n_test:], permutation[:n_test]
    raise ValueError(f"unknown split rule {rule!r}")
