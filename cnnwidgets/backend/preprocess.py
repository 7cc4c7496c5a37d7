"""Preprocessing: image -> model input tensor, and back to the picture the model sees."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
import torchvision.transforms.functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side, center-crop, scale to [0, 1], then normalize with `mean` and `std`.

    The default is torchvision's ImageNet recipe (resize 256, crop 224), used for a model passed without a transform.
    """

    resize: int = 256
    crop: int | None = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __call__(self, image: PIL.Image.Image) -> torch.Tensor:
        image = TF.resize(image, self.resize, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        if self.crop is not None:
            image = TF.center_crop(image, self.crop)
        return TF.normalize(TF.to_tensor(image), self.mean[: _channels(image)], self.std[: _channels(image)])


def _channels(image: PIL.Image.Image) -> int:
    return len(image.getbands())


def normalization_of(transform: Callable) -> tuple[Sequence[float], Sequence[float]] | None:
    """The (mean, std) a transform normalizes with, if it says: ours, torchvision presets, or a Compose with Normalize."""
    if hasattr(transform, "mean") and hasattr(transform, "std"):
        return transform.mean, transform.std
    for step in getattr(transform, "transforms", []):
        found = normalization_of(step)
        if found is not None:
            return found
    return None


def display_batch(batch: torch.Tensor, transform: Callable) -> torch.Tensor:
    """[N,H,W,3] uint8 pictures of an [N,C,H,W] model input: normalization undone where known, else each image
    min-max scaled; grayscale shown as gray RGB."""
    x = batch.detach().float().cpu()
    normalization = normalization_of(transform)
    if normalization is not None:
        channels = x.shape[1]
        mean = torch.tensor(list(normalization[0])[:channels]).view(1, -1, 1, 1)
        std = torch.tensor(list(normalization[1])[:channels]).view(1, -1, 1, 1)
        x = (x * std + mean).clamp(0, 1)
    else:
        low = x.flatten(1).amin(1).view(-1, 1, 1, 1)
        x = (x - low) / (x.flatten(1).amax(1).view(-1, 1, 1, 1) - low).clamp_min(1e-12)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return (x[:, :3] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def to_display(batch: torch.Tensor, transform: Callable) -> np.ndarray:
    """The H×W×3 uint8 picture of a [1,C,H,W] model input (see `display_batch`)."""
    return display_batch(batch[:1], transform)[0].numpy()
