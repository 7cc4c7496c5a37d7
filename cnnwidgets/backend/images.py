"""Turn whatever picture a user passes (PIL, numpy, path, integer tensor) into one RGB or grayscale PIL image.

Pixel values are read by their type, the same for PIL images, numpy arrays and tensors (`to_pil` docs the rule):
8-bit as is, 16- and 32-bit integers scaled by their type's range, floats in [0, 1] or whole numbers 0..255, bool
as black and white. Anything else is an InputError that says which call makes it a picture, never a silently
dark or saturated one. Float tensors are not pictures here: they are model inputs, checked in `check_input`.

Huge pictures are reduced while they are decoded (JPEG: Pillow's `draft`, a DCT-domain downscale; PNG: a band of
rows at a time, `backend.png`) or before any float copy is made (arrays: a box filter over row bands; other files:
Pillow's `reduce` after a whole decode), so memory stays near the output size.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from ..errors import InputError
from .png import reduced_png

ImageLike = PIL.Image.Image | np.ndarray | str | os.PathLike | torch.Tensor

MAX_SIDE = 4096
"""Images larger than this on a side are downscaled first: no classifier needs more, and it keeps memory bounded."""
MIN_SIDE = 8
MAX_INPUT_MAGNITUDE = 1e4
"""Largest |value| accepted in a float model input. Normalized pictures lie within a few units (ImageNet:
-2.12..2.64), unnormalized 0..255 ones within 255; 1e4 still allows any std >= 0.026 on 0..255 values, and
refuses garbage (randn * 1e30) that would overflow a float16 model (largest value 65504) at its first layer."""
BAND_ROWS = 256
"""Output rows reduced at a time when downscaling an array: bounds the temporaries to a few tens of MB."""

PIL_MODES_BY_RANGE = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
"""PIL modes whose values Pillow's own convert() would clip to 0..255: read through the numeric rule instead."""
PREMULTIPLIED = {"La": "LA", "RGBa": "RGBA"}
REDUCIBLE_MODES = {"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"}
"""Modes Pillow's `Image.reduce` takes; others (palette, bilevel, HSV, LAB) are converted to RGB(A) first."""
URL_SCHEMES = ("http://", "https://", "ftp://", "s3://", "gs://")

ARRAY_HINT = "pass uint8 values 0..255, floats in [0, 1], or 16/32-bit unsigned integers"


def to_pil(image: ImageLike, mode: str = "RGB") -> PIL.Image.Image:
    """Return `image` as a PIL image in `mode` ("RGB" or "L"), validated and at most MAX_SIDE on a side.

    Values by type: uint8 as is; uint16/int16/uint32/int32 divided by the type's largest value (negative values
    refused); int64 (numpy's and torch's default integer) only as 0..255; bool as 0/255; floats either in
    [0, 1] or whole numbers in 0..255 (what `np.asarray(picture, float)` gives), anything else refused with the
    call that fixes it. PIL `I;16*` and `F` images follow the same rule as arrays of their type, and `I` (int32) ones holding values
    0..65535 are read as the 16-bit data they are (16-bit PNGs and TIFFs decode to it); every other
    mode Pillow opens is converted by Pillow (transparent pixels over white, as a browser shows them).
    """
    if isinstance(image, (str, os.PathLike)):
        pil = _open(image)
    elif isinstance(image, PIL.Image.Image):
        pil = _from_pil(image)
    elif isinstance(image, np.ndarray):
        pil = _from_array(image)
    elif isinstance(image, torch.Tensor):
        pil = _from_tensor(image)
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


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether every value of `tensor` is finite. A sum is finite only when every term is (NaN and ±inf carry
    through it), and one sum is fast: 0.03 ms for [4, 3, 224, 224] against 4.5 ms for `isfinite(...).all()` (two
    threads), which every preprocessed image and indexed batch paid. A sum that overflows on large finite values is
    checked value by value."""
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def check_input(tensor: torch.Tensor, channels: int, min_side: int, map_dims: int = 2) -> torch.Tensor:
    """`tensor`, a float model input of one image ([C,H,W] or [1,C,H,W], `map_dims` 2) or one clip ([C,T,H,W] or
    [1,C,T,H,W], `map_dims` 3), as a batch of one, checked like a picture: not on the `meta` device, real, `channels`
    channels, frames at least `min_side` on a side (for images the model's total stride, see
    `Inspector.min_input_side`), at least one frame, finite, |values| <= MAX_INPUT_MAGNITUDE."""
    kind, axes = ("image", "H,W") if map_dims == 2 else ("clip", "T,H,W")
    if tensor.device.type == "meta":
        raise InputError("the tensor is on the 'meta' device and holds no values; pass a real tensor (e.g. on 'cpu')")
    if tensor.is_complex():
        raise InputError(f"a complex tensor ({tensor.dtype}) is not {'an image' if map_dims == 2 else 'a clip'}; "
                         "pass its magnitude tensor.abs() or tensor.real")
    batch = tensor.detach()
    if batch.dim() == map_dims + 1:
        batch = batch.unsqueeze(0)
    if batch.dim() != map_dims + 2 or batch.shape[0] != 1 or batch.shape[1] != channels:
        raise InputError(
            f"an input of shape {tuple(tensor.shape)} does not fit; this {'' if map_dims == 2 else 'video '}model takes one "
            f"{kind} as [{channels},{axes}] or [1,{channels},{axes}]{'' if map_dims == 2 else ' (or uint8 frames [T,H,W,3])'}"
        )
    height, width = batch.shape[-2:]
    if min(height, width) < min_side:
        raise InputError(
            f"the input is only {width}×{height} pixels, less than the model's total stride; pass one at least {min_side}×{min_side}"
            if map_dims == 2 else f"the clip's frames are only {width}×{height} pixels; pass frames at least {min_side}×{min_side}"
        )
    if batch.numel() == 0:
        raise InputError(f"the clip has no frames (shape {tuple(tensor.shape)}); pass at least one")
    if not all_finite(batch):
        raise InputError(f"the {'input' if map_dims == 2 else 'clip'} contains NaN or infinite values; "
                         f"pass {'a finite image' if map_dims == 2 else 'finite frames'}")
    largest = float(batch.abs().max())
    if largest > MAX_INPUT_MAGNITUDE:
        raise InputError(
            f"the input holds values up to {largest:.3g}, beyond ±{MAX_INPUT_MAGNITUDE:g}; pass a preprocessed image "
            "(inspector.preprocess(picture)) or the picture itself"
        )
    return batch


def _open(location: str | os.PathLike) -> PIL.Image.Image:
    text = os.fspath(location)
    if isinstance(text, str) and text.lower().startswith(URL_SCHEMES):
        name = text.rstrip("/").rsplit("/", 1)[-1] or "image"
        raise InputError(
            f"{text!r} is a URL; download it first: urllib.request.urlretrieve({text!r}, {name!r}), then pass {name!r}"
        )
    path = Path(text)
    if not path.is_file():
        raise InputError(f"no image file at {str(path)!r}; pass the path of an existing image file")
    pil: PIL.Image.Image | None = None
    try:
        with PIL.Image.open(path) as opened:
            size = opened.size
            if max(size) > MAX_SIDE:
                # JPEG: decode at 1/2, 1/4 or 1/8 scale, the smallest that keeps MAX_SIDE / 2 a side (plenty for
                # any classifier's input); PNG: decode and reduce a band of rows at a time (`backend.png`)
                opened.draft(opened.mode, (MAX_SIDE // 2, MAX_SIDE // 2))
                if opened.format == "PNG":
                    pil = reduced_png(path, math.ceil(max(size) / MAX_SIDE), None if opened.mode in REDUCIBLE_MODES else _reducible(opened))
            if pil is None:
                opened.load()
                pil = _from_pil(opened)
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as error:
        raise InputError(f"cannot read {str(path)!r} as an image ({error}); pass a PNG or JPEG file") from None
    if max(size) > MAX_SIDE:
        warnings.warn(f"the image is {size[0]}×{size[1]}; downscaled to at most {MAX_SIDE} px a side", stacklevel=4)
    if max(pil.size) > MAX_SIDE:
        if pil.mode not in REDUCIBLE_MODES:
            pil = pil.convert(_reducible(pil))
        pil = pil.reduce(math.ceil(max(pil.size) / MAX_SIDE))  # a box filter, one pass, no full-size float copy
    return pil


def _reducible(pil: PIL.Image.Image) -> str:
    """The mode `Image.reduce` takes that a picture of another mode (palette, bilevel, HSV, LAB) converts to."""
    return "RGBA" if pil.has_transparency_data else "RGB"


def _from_pil(pil: PIL.Image.Image) -> PIL.Image.Image:
    if pil.mode == "I":
        array = np.asarray(pil)
        if array.size and array.min() >= 0 and array.max() <= np.iinfo(np.uint16).max:
            array = array.astype(np.uint16)  # 16-bit data, as Pillow's PNG/TIFF readers and I;16 -> I give it
        return _from_array(array)
    if pil.mode in PIL_MODES_BY_RANGE:
        return _from_array(np.asarray(pil))
    if pil.mode in PREMULTIPLIED:
        return pil.convert(PREMULTIPLIED[pil.mode])
    return pil


def _from_tensor(tensor: torch.Tensor) -> PIL.Image.Image:
    if tensor.is_floating_point() or tensor.is_complex():
        raise InputError(
            f"a {tensor.dtype} tensor is a model input, not a picture; pass it to Inspector.preprocess "
            "(checked there), or a uint8 picture"
        )
    if tensor.device.type == "meta":
        raise InputError("the tensor is on the 'meta' device and holds no values; pass a real tensor (e.g. on 'cpu')")
    array = tensor.detach().cpu().numpy()
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # torchvision's read_image gives channels first
    return _from_array(array)


def _from_array(array: np.ndarray) -> PIL.Image.Image:
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (1, 3, 4):
        raise InputError(
            f"the array has shape {array.shape}, channels first; pass H×W×C instead: array.transpose(1, 2, 0)"
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise InputError(f"an array of shape {array.shape} is not an image; pass H×W (gray), H×W×3 (RGB) or H×W×4 (RGBA)")
    if min(array.shape[:2]) < MIN_SIDE:
        raise InputError(f"the image is only {array.shape[1]}×{array.shape[0]} pixels; pass one at least {MIN_SIDE}×{MIN_SIDE}")
    scale = _scale(array)
    factor = math.ceil(max(array.shape[:2]) / MAX_SIDE)
    if factor > 1:
        warnings.warn(
            f"the image is {array.shape[1]}×{array.shape[0]}; downscaled to at most {MAX_SIDE} px a side", stacklevel=4
        )
        return PIL.Image.fromarray(_box_reduce(array, factor, scale))
    if scale == 1.0 and array.dtype == np.uint8:
        return PIL.Image.fromarray(np.ascontiguousarray(array))
    return PIL.Image.fromarray(_to_uint8(array, scale))


def _scale(array: np.ndarray) -> float:
    """The factor that maps `array`'s values to 0..255 by the rule in `to_pil`, or InputError."""
    dtype = array.dtype
    if dtype == np.uint8:
        return 1.0
    if dtype == np.bool_:
        return 255.0
    if np.issubdtype(dtype, np.complexfloating):
        raise InputError(f"a {dtype} (complex) array is not an image; pass its magnitude np.abs(array) or array.real")
    if np.issubdtype(dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if dtype.itemsize == 8:
            if low < 0 or high > 255:
                raise InputError(
                    f"a {dtype} image with values {low}..{high} has no fixed range; pass array.astype(np.uint8) for 0..255, "
                    "array.astype(np.uint16) for 16-bit values, or array / array.max() for floats in [0, 1]"
                )
            return 1.0
        if low < 0:
            raise InputError(
                f"a {dtype} image with negative values (down to {low}) is not a picture; shift and scale it to "
                "0..255 (uint8) or to floats in [0, 1] first"
            )
        return 255.0 / np.iinfo(dtype).max
    if np.issubdtype(dtype, np.floating):
        if not np.isfinite(array).all():
            raise InputError("the image array contains NaN or infinite values; replace them (np.nan_to_num) first")
        lowest, highest = float(array.min()), float(array.max())
        if lowest >= 0 and highest <= 1:
            return 255.0
        if lowest >= 0 and highest <= 255 and bool((array == np.round(array)).all()):
            return 1.0
        raise InputError(
            f"a {dtype} image with values in [{lowest:.4g}, {highest:.4g}] is ambiguous; pass uint8 values 0..255 or floats in "
            "[0, 1] (or whole numbers 0..255): np.clip(image, 0, 1) for a [0, 1] picture, "
            "np.clip(image, 0, 255).round().astype(np.uint8) for a 0..255 one"
        )
    raise InputError(f"cannot use an array of dtype {dtype} as an image; {ARRAY_HINT}")


def _to_uint8(array: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.round(array.astype(np.float32) * np.float32(scale)), 0, 255).astype(np.uint8)


def _box_reduce(array: np.ndarray, factor: int, scale: float) -> np.ndarray:
    """`array` mapped to uint8 and averaged over factor×factor blocks (Pillow's `reduce`, the edge blocks over what
    remains), a band of BAND_ROWS output rows at a time, so no full-size copy is ever made."""
    height = array.shape[0]
    bands = []
    for top in range(0, height, BAND_ROWS * factor):
        band = array[top: top + BAND_ROWS * factor]
        band = band if band.dtype == np.uint8 and scale == 1.0 else _to_uint8(band, scale)
        bands.append(np.asarray(PIL.Image.fromarray(np.ascontiguousarray(band)).reduce(factor)))
    return np.concatenate(bands)


def _convert(pil: PIL.Image.Image, mode: str) -> PIL.Image.Image:
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
        rgba = pil.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        pil = PIL.Image.alpha_composite(background, rgba)  # transparent pixels show as white, as in a browser
    return pil if pil.mode == mode else pil.convert(mode)
