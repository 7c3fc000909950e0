"""Random augmentation of whole batches on the training device, one draw of parameters per image.

torchvision's v2 transforms draw one set of random parameters per call, so a
``v2.RandomCrop`` applied to a batch tensor crops every image of the batch
alike. Here the parameters are drawn per image from a generator on the
batch's device (its state goes into the checkpoint, for exact resume) and the
images are moved with torchvision's v2 kernels: ``pad`` and
``horizontal_flip``, plus a gather for the per-image crop windows.
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F


def augment(images: torch.Tensor, augmentation: dict, generator: torch.Generator) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W): each image cropped at a random offset from its zero-padded
    copy (``crop_padding`` pixels each side; 0: no crop) and flipped left-right with probability
    1/2 (``horizontal_flip``), as RandomCrop(H, padding) and RandomHorizontalFlip() would one image."""
    batch, channels, height, width = images.shape
    device = images.device
    pad = augmentation["crop_padding"]
    if pad:
        padded = F.pad(images, [pad], fill=0)  # (B, C, H + 2 pad, W + 2 pad)
        top = torch.randint(0, 2 * pad + 1, (batch,), generator=generator, device=device)
        left = torch.randint(0, 2 * pad + 1, (batch,), generator=generator, device=device)
        rows = (top[:, None] + torch.arange(height, device=device))[:, None, :, None]  # (B, 1, H, 1)
        cols = (left[:, None] + torch.arange(width, device=device))[:, None, None, :]  # (B, 1, 1, W)
        batch_index = torch.arange(batch, device=device)[:, None, None, None]
        channel_index = torch.arange(channels, device=device)[None, :, None, None]
        images = padded[batch_index, channel_index, rows, cols]
    if augmentation["horizontal_flip"]:
        flip = torch.rand(batch, generator=generator, device=device) < 0.5
        images = torch.where(flip[:, None, None, None], F.horizontal_flip(images), images)
    return images
