"""Anchor images of planes and lines: from config entries to indices into the prepared training set.

An entry is ``{indices: [i, j, k]}`` (explicit) or ``{classes: [c1, c2, c3], seed: s}``:
for each class (a name from the data set's class list, or its id) one image
of that class is drawn with ``seed``; a class named twice gets two distinct
images. Errors name the config key.
"""

from __future__ import annotations

import torch

from geomvol.errors import ConfigError


def class_id(value: int | str, classes: list[str], key: str) -> int:
    """A class given by id or name, as its id."""
    if isinstance(value, int) and 0 <= value < len(classes):
        return value
    if isinstance(value, str) and value in classes:
        return classes.index(value)
    raise ConfigError(f"config key {key}: unknown class {value!r}; the classes are ids 0..{len(classes) - 1} or {classes}")


def resolve_anchors(entries: list[dict], labels: torch.Tensor, classes: list[str], key: str) -> list[list[int]]:
    """Indices into the prepared training set (labels (N,)) of each entry's anchors."""
    resolved = []
    for number, entry in enumerate(entries):
        where = f"{key}.{number}"
        if "indices" in entry:
            indices = list(entry["indices"])
            for index in indices:
                if index >= labels.shape[0]:
                    raise ConfigError(f"config key {where}.indices: index {index} is beyond the prepared training "
                                      f"set ({labels.shape[0]} images, indices 0..{labels.shape[0] - 1})")
            if len(set(indices)) < len(indices):
                raise ConfigError(f"config key {where}.indices: anchors {indices} repeat an image")
        else:
            wanted = [class_id(c, classes, f"{where}.classes") for c in entry["classes"]]
            generator = torch.Generator().manual_seed(entry.get("seed", 0))
            drawn: dict[int, list[int]] = {}
            for label in sorted(set(wanted)):
                members = torch.nonzero(labels == label).flatten()
                count = wanted.count(label)
                if members.numel() < count:
                    raise ConfigError(f"config key {where}.classes: class {classes[label]!r} has {members.numel()} "
                                      f"images in the prepared training set, fewer than the {count} asked")
                drawn[label] = members[torch.randperm(members.numel(), generator=generator)[:count]].tolist()
            indices = [drawn[label].pop(0) for label in wanted]
        resolved.append(indices)
    return resolved


def check_anchor_images(anchors: list[list[int]], images: torch.Tensor, key: str, tolerance: float = 1e-9) -> None:
    """Refuse anchors whose images are equal, or (for three) collinear, so that they span no line or plane."""
    for number, indices in enumerate(anchors):
        points = images[indices].reshape(len(indices), -1).double()
        spans = points[1:] - points[0]
        gram = spans @ spans.T
        what = "line" if len(indices) == 2 else "plane"
        if torch.any(gram.diagonal() == 0) or (len(indices) == 3 and torch.allclose(points[1], points[2])):
            raise ConfigError(f"config key {key}.{number}: the anchor images {indices} include equal images; "
                              f"they span no {what}")
        if len(indices) == 3 and torch.linalg.det(gram) <= tolerance * gram.diagonal().prod():
            raise ConfigError(f"config key {key}.{number}: the anchor images {indices} are collinear; they span no plane")
