"""Anchor images of planes and lines: from config entries to indices into a prepared split.

An entry is ``{indices: [i, j, k], split: s}`` (explicit) or ``{classes: [c1, c2, c3], seed: n,
sampler: ..., split: s}``: for each class (a name from the data set's class list, or its id) one
image of that class is drawn from the prepared split ``s`` (train or test) with ``seed``, by one
of two samplers:

- ``per_class_permutation``: for each distinct class a random permutation of its images, from one
  generator seeded with ``seed`` (classes in increasing order), the first taken; a class named
  twice gets two distinct images.
- ``rejection``: the study's ``random_samples_by_targets`` (``src/data/real_data.py``, used by its
  CIFAR-10 and Barlow Twins scripts): ``torch.manual_seed(seed)``, then for each class in the order
  given, ``torch.randint(len(split), (1,))`` until an image of that class comes up. On a whole split
  it picks the very images the study's scripts picked.
- ``randperm_after_split``: the draw of the study's ``src/run_mnist_plane.py`` and
  ``src/run_mnist.py``: ``torch.manual_seed(seed)``, ``torch.randperm(N)`` (its train/test split of
  the N images), then for each class in the order given ``X[Y == c][torch.randperm(count)[0]]``.
  On the whole data set in its source order (digits: split ``all``) it picks the study's images.

Errors name the config key.
"""

from __future__ import annotations

import torch

from geomvol.catalogue import SPLIT_NAMES
from geomvol.errors import ConfigError
from geomvol.settings import AnchorChoice


def class_id(value: int | str, classes: list[str], key: str) -> int:
    """A class given by id or name, as its id."""
    if isinstance(value, int) and 0 <= value < len(classes):
        return value
    if isinstance(value, str) and value in classes:
        return classes.index(value)
    raise ConfigError(f"config key {key}: unknown class {value!r}; the classes are ids 0..{len(classes) - 1} or {classes}")


def per_class_permutation(labels: torch.Tensor, wanted: list[int], seed: int) -> list[int]:
    """One image of each wanted class: the first of a seeded permutation of the class's images."""
    generator = torch.Generator().manual_seed(seed)
    drawn: dict[int, list[int]] = {}
    for label in sorted(set(wanted)):
        members = torch.nonzero(labels == label).flatten()
        drawn[label] = members[torch.randperm(members.numel(), generator=generator)[:wanted.count(label)]].tolist()
    return [drawn[label].pop(0) for label in wanted]


def rejection(labels: torch.Tensor, wanted: list[int], seed: int) -> list[int]:
    """The study's sampler: uniform random indices over the whole split, one class after the other, until
    the class comes up (``torch.manual_seed(seed)`` then ``torch.randint``; the same stream here from a
    generator of its own, leaving torch's global generator alone)."""
    generator = torch.Generator().manual_seed(seed)
    picked = []
    for label in wanted:
        while True:
            index = int(torch.randint(labels.shape[0], (1,), generator=generator))
            if int(labels[index]) == label:
                picked.append(index)
                break
    return picked


def randperm_after_split(labels: torch.Tensor, wanted: list[int], seed: int) -> list[int]:
    """The study's MNIST-plane draw: a generator seeded with ``seed`` draws ``randperm(N)`` (the study's
    train/test split, discarded here), then for each class in the order given the first of a ``randperm``
    of the class's images, in the split's order (a class named twice may give one image twice)."""
    generator = torch.Generator().manual_seed(seed)
    torch.randperm(labels.shape[0], generator=generator)
    picked = []
    for label in wanted:
        members = torch.nonzero(labels == label).flatten()
        picked.append(int(members[torch.randperm(members.numel(), generator=generator)[0]]))
    return picked


SAMPLERS = {"per_class_permutation": per_class_permutation, "rejection": rejection,
            "randperm_after_split": randperm_after_split}


def resolve_anchors(choices: tuple[AnchorChoice, ...], labels: dict[str, torch.Tensor], classes: list[str],
                    key: str) -> list[list[int]]:
    """Indices of each choice's anchors into its prepared split (``labels``: split name -> labels (N,))."""
    resolved = []
    for number, choice in enumerate(choices):
        where = f"{key}.{number}"
        split = choice.split
        if split not in labels:
            raise ConfigError(f"config key {where}.split: the data set has no {split!r} split (it has {sorted(labels)})")
        split_labels, split_name = labels[split], SPLIT_NAMES[split]
        if choice.indices is not None:
            indices = list(choice.indices)
            for index in indices:
                if index >= split_labels.shape[0]:
                    raise ConfigError(f"config key {where}.indices: index {index} is beyond the prepared {split_name} "
                                      f"set ({split_labels.shape[0]} images, indices 0..{split_labels.shape[0] - 1})")
            if len(set(indices)) < len(indices):
                raise ConfigError(f"config key {where}.indices: anchors {indices} repeat an image")
        else:
            wanted = [class_id(c, classes, f"{where}.classes") for c in choice.classes]
            for label in sorted(set(wanted)):
                available = int((split_labels == label).sum())
                if available < wanted.count(label):
                    raise ConfigError(f"config key {where}.classes: class {classes[label]!r} has {available} "
                                      f"images in the prepared {split_name} set, fewer than the {wanted.count(label)} asked")
            indices = SAMPLERS[choice.sampler](split_labels, wanted, choice.seed)
        resolved.append(indices)
    return resolved


def check_anchor_images(anchors: list[list[int]], images: list[torch.Tensor], key: str, tolerance: float = 1e-9) -> None:
    """Refuse anchors whose images (one tensor (m, ...) per entry) are equal, or (for three) collinear,
    so that they span no line or plane."""
    for number, (indices, anchor_images) in enumerate(zip(anchors, images)):
        points = anchor_images.reshape(len(indices), -1).double()
        spans = points[1:] - points[0]
        gram = spans @ spans.T
        what = "line" if len(indices) == 2 else "plane"
        if torch.any(gram.diagonal() == 0) or (len(indices) == 3 and torch.allclose(points[1], points[2])):
            raise ConfigError(f"config key {key}.{number}: the anchor images {indices} include equal images; "
                              f"they span no {what}")
        if len(indices) == 3 and torch.linalg.det(gram) <= tolerance * gram.diagonal().prod():
            raise ConfigError(f"config key {key}.{number}: the anchor images {indices} are collinear; they span no plane")
