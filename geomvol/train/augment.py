"""Random augmentation of whole batches on the training device, one draw of parameters per image:
the supervised crop and flip (:func:`augment`) and the Barlow Twins views (:func:`random_view`).

torchvision's v2 transforms draw one set of random parameters per call, so a
``v2.RandomCrop`` applied to a batch tensor crops every image of the batch
alike. Here the parameters are drawn per image from a generator on the
batch's device (its state goes into the checkpoint, for exact resume) and the
images are moved with torchvision's v2 kernels: ``pad`` and
``horizontal_flip``, plus a gather for the per-image crop windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv


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


@dataclass(frozen=True)
class ViewSpec:
    """One random view, each step drawn per image: RandomResizedCrop to the image size, horizontal flip,
    ColorJitter (brightness, contrast, saturation, hue) with probability ``jitter_p``, grayscale,
    Gaussian blur and solarisation (pixels >= 1/2 inverted), as torchvision's v2 transforms define them.
    The blur kernel is ``blur_kernel`` pixels wide, or (None) 2 ceil(3 sigma) + 1 for each image's sigma,
    so that a larger sigma reaches further, as PIL's GaussianBlur(radius=sigma) in the study does."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 1.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int | None = None
    solarize_p: float = 0.0


def barlow_twins_views(blur_kernel: int | None = None) -> tuple[ViewSpec, ViewSpec]:
    """The study's two asymmetric Barlow Twins views: blur always in the first, solarisation only in the second."""
    return (ViewSpec(blur_p=1.0, solarize_p=0.0, blur_kernel=blur_kernel),
            ViewSpec(blur_p=0.1, solarize_p=0.2, blur_kernel=blur_kernel))


def _uniform(low: float, high: float, batch: int, generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(batch, generator=generator, device=device)


def _bernoulli(p: float, batch: int, generator, device) -> torch.Tensor:
    return torch.rand(batch, generator=generator, device=device) < p


def _resized_crop_and_flip(images: torch.Tensor, view: ViewSpec, generator) -> torch.Tensor:
    """Per image a window of area fraction in crop_scale and aspect ratio in crop_ratio (log-uniform), clipped to
    the image, resampled bilinearly to the full size, mirrored with probability flip_p."""
    batch, device = images.shape[0], images.device
    area = _uniform(*view.crop_scale, batch, generator, device)
    log_ratio = _uniform(math.log(view.crop_ratio[0]), math.log(view.crop_ratio[1]), batch, generator, device)
    width = torch.sqrt(area * log_ratio.exp()).clamp(max=1.0)  # fractions of the image's width and height
    height = torch.sqrt(area / log_ratio.exp()).clamp(max=1.0)
    centre_x = (2 * _uniform(0, 1, batch, generator, device) - 1) * (1 - width)  # in [-1, 1] coordinates
    centre_y = (2 * _uniform(0, 1, batch, generator, device) - 1) * (1 - height)
    mirror = torch.where(_bernoulli(view.flip_p, batch, generator, device), -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=device, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = width * mirror, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    grid = nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _colour_jitter(images: torch.Tensor, view: ViewSpec, generator) -> torch.Tensor:
    """Brightness, contrast, saturation and hue factors drawn per image (identity where jitter is not applied),
    applied in an order drawn per batch; values clamped to [0, 1] after each step."""
    batch, device = images.shape[0], images.device
    applied = _bernoulli(view.jitter_p, batch, generator, device)

    def factor(spread: float, centre: float = 1.0) -> torch.Tensor:
        drawn = _uniform(centre - spread, centre + spread, batch, generator, device)
        return torch.where(applied, drawn, torch.full_like(drawn, centre))[:, None, None, None]

    brightness, contrast = factor(view.brightness), factor(view.contrast)
    saturation, hue = factor(view.saturation), factor(view.hue, centre=0.0)

    def adjust_brightness(x):
        return (x * brightness).clamp(0, 1)

    def adjust_contrast(x):
        mean = F.rgb_to_grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)
        return (contrast * x + (1 - contrast) * mean).clamp(0, 1)

    def adjust_saturation(x):
        return (saturation * x + (1 - saturation) * F.rgb_to_grayscale(x)).clamp(0, 1)

    def adjust_hue(x):
        h, s, v = _rgb_to_hsv(x).unbind(dim=-3)
        return _hsv_to_rgb(torch.stack([(h + hue[:, 0]).remainder(1.0), s, v], dim=-3))

    steps = [adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue]
    for index in torch.randperm(4, generator=generator, device=device).tolist():
        images = steps[index](images)
    return images


def _gaussian_blur(images: torch.Tensor, view: ViewSpec, generator) -> torch.Tensor:
    """Separable Gaussian blur with a sigma drawn per image, on the images drawn with probability blur_p; the
    kernel ``blur_kernel`` wide, or per image cut at ceil(3 sigma) pixels from its centre."""
    batch, channels, height, width = images.shape
    device = images.device
    sigma = _uniform(*view.blur_sigma, batch, generator, device)
    applied = _bernoulli(view.blur_p, batch, generator, device)
    k = view.blur_kernel or 2 * math.ceil(3 * view.blur_sigma[1]) + 1
    offsets = torch.arange(k, device=device, dtype=images.dtype) - (k - 1) / 2
    kernel = torch.exp(-offsets.square() / (2 * sigma[:, None].to(images.dtype) ** 2))
    if view.blur_kernel is None:
        kernel = torch.where(offsets.abs() <= torch.ceil(3 * sigma[:, None]).to(images.dtype), kernel, 0.0)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = (offsets == 0).to(images.dtype).expand(batch, k)
    kernel = torch.where(applied[:, None], kernel, identity).repeat_interleave(channels, dim=0)  # (B * C, k)
    x = nn.functional.pad(images.reshape(1, batch * channels, height, width), [k // 2] * 4, mode="reflect")
    x = nn.functional.conv2d(x, kernel[:, None, :, None], groups=batch * channels)
    x = nn.functional.conv2d(x, kernel[:, None, None, :], groups=batch * channels)
    return x.reshape(batch, channels, height, width)


def random_view(images: torch.Tensor, view: ViewSpec, generator: torch.Generator) -> torch.Tensor:
    """(B, C, H, W) float in [0, 1] -> one random view of each image, float in [0, 1] (colour steps for C = 3)."""
    batch, device = images.shape[0], images.device
    images = _resized_crop_and_flip(images, view, generator)
    if images.shape[1] == 3:
        images = _colour_jitter(images, view, generator)
        grey = _bernoulli(view.grayscale_p, batch, generator, device)[:, None, None, None]
        images = torch.where(grey, F.rgb_to_grayscale(images, num_output_channels=3), images)
    images = _gaussian_blur(images, view, generator)
    solarized = _bernoulli(view.solarize_p, batch, generator, device)[:, None, None, None]
    return torch.where(solarized & (images >= 0.5), 1.0 - images, images)
