"""Turn whatever image a user passes (PIL, numpy, path, uint8 tensor) into one RGB or grayscale PIL image."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
import PIL.Image
import torch

from ..errors import InputError

ImageLike = Union[PIL.Image.Image, np.ndarray, str, os.PathLike, torch.Tensor]

MAX_SIDE = 4096
"""Images larger than this on a side are downscaled first: no classifier needs more, and it keeps memory bounded."""
MIN_SIDE = 8


def to_pil(image: ImageLike, mode: str = "RGB") -> PIL.Image.Image:
    """Return `image` as a PIL image in `mode` ("RGB" or "L"), validated and at most MAX_SIDE on a side."""
    if isinstance(image, (str, os.PathLike)):
        pil = _open(Path(image))
    elif isinstance(image, PIL.Image.Image):
        pil = image
    elif isinstance(image, np.ndarray):
        pil = _from_array(image)
    elif isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8:
            raise InputError(
                f"a float tensor of shape {tuple(image.shape)} is not an image file or picture; "
                "pass a preprocessed [3,H,W] or [1,3,H,W] float tensor to Inspector.preprocess, or a uint8 image"
            )
        array = image.detach().cpu().numpy()
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)  # torchvision's read_image gives channels first
        pil = _from_array(array)
    else:
        raise InputError(
            f"cannot use a {type(image).__name__} as an image; pass a PIL image, an H×W×3 uint8 array, a file path or a tensor"
        )
    if min(pil.size) < MIN_SIDE:
        raise InputError(f"the image is only {pil.width}×{pil.height} pixels; pass one at least {MIN_SIDE}×{MIN_SIDE}")
    if max(pil.size) > MAX_SIDE:
        warnings.warn(f"the image is {pil.width}×{pil.height}; downscaled to at most {MAX_SIDE} px a side", stacklevel=3)
        pil = pil.copy()
        pil.thumbnail((MAX_SIDE, MAX_SIDE))
    return _convert(pil, mode)


def _open(path: Path) -> PIL.Image.Image:
    if not path.is_file():
        raise InputError(f"no image file at {str(path)!r}; pass the path of an existing image file")
    try:
        with PIL.Image.open(path) as opened:
            opened.load()
            return opened.copy()
    except (OSError, PIL.Image.DecompressionBombError) as error:
        raise InputError(f"cannot read {str(path)!r} as an image ({error}); pass a PNG or JPEG file") from None


def _from_array(array: np.ndarray) -> PIL.Image.Image:
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (1, 3, 4):
        raise InputError(
            f"the array has shape {array.shape}, channels first; pass H×W×C instead: array.transpose(1, 2, 0)"
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise InputError(f"an array of shape {array.shape} is not an image; pass H×W (gray), H×W×3 (RGB) or H×W×4 (RGBA)")
    if array.dtype == np.uint8:
        return PIL.Image.fromarray(array)
    if np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer):
        if not np.isfinite(array).all():
            raise InputError("the image array contains NaN or infinite values; replace them (np.nan_to_num) first")
        if np.issubdtype(array.dtype, np.floating) and array.min() >= 0 and array.max() <= 1:
            return PIL.Image.fromarray(np.round(array * 255).astype(np.uint8))
        raise InputError(
            f"a {array.dtype} image array with values in [{array.min()}, {array.max()}] is ambiguous; "
            "pass uint8 values 0..255 or floats in [0, 1]"
        )
    raise InputError(f"cannot use an array of dtype {array.dtype} as an image; pass uint8 values 0..255")


def _convert(pil: PIL.Image.Image, mode: str) -> PIL.Image.Image:
    if pil.mode in ("RGBA", "LA") or (pil.mode == "P" and "transparency" in pil.info):
        rgba = pil.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        pil = PIL.Image.alpha_composite(background, rgba)  # transparent pixels show as white, as in a browser
    return pil if pil.mode == mode else pil.convert(mode)
