"""Video clips for video classifiers: whatever a user passes (frames, arrays, tensors, a file) → one [1,C,T,H,W] batch.

A video model is one whose first convolution is a Conv3d (torchvision's r3d_18, mc3_18, r2plus1d_18, s3d, mvit_v1_b,
the zoo's motion networks). Its transform follows torchvision's `VideoClassification` preset, so a weights'
`transforms()` drops in: it maps a uint8 tensor [T,C,H,W] to a float tensor [C,T,H,W]. `ClipPreprocess` is the
default, with the Kinetics-400 recipe of that preset (resize 128×171, crop 112).

Decoding a file needs PyAV (`pip install av`): torchvision 0.29 no longer ships `torchvision.io.read_video`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import nn

from ..errors import InputError
from .images import MIN_SIDE, all_finite, check_input, to_pil
from .preprocess import display_batch

ClipLike = np.ndarray | torch.Tensor | Sequence | str | os.PathLike

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")
PROBE_FRAMES = 16
"""Clip length used to list a video model's layers before any clip was seen (torchvision's Kinetics clips)."""


@dataclass(frozen=True)
class ClipPreprocess:
    """Resize every frame (shorter side to `resize`, or to (h, w)), center-crop `crop`, scale to [0, 1], normalize.

    Takes a uint8 tensor [T,C,H,W] and returns [C,T,H,W], like torchvision's `VideoClassification`. `frames`, when
    set, is the clip length the model was trained on; clips of another length are refused.
    """

    resize: int | tuple[int, int] | None = (128, 171)
    crop: int | None = 112
    mean: tuple[float, ...] = KINETICS_MEAN
    std: tuple[float, ...] = KINETICS_STD
    frames: int | None = None

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        x = clip
        if self.resize is not None:  # on the uint8 frames without antialiasing, exactly as torchvision's preset
            x = TF.resize(x, list(self.resize) if isinstance(self.resize, tuple) else [self.resize], antialias=False)
        if self.crop is not None:
            x = TF.center_crop(x, [self.crop, self.crop])
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        channels = x.shape[1]
        x = TF.normalize(x, list(self.mean[:channels]), list(self.std[:channels]))
        return x.permute(1, 0, 2, 3)


def is_video_model(model: nn.Module) -> bool:
    """True when the model's first convolution is 3-D (it takes [N,C,T,H,W] clips)."""
    first = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    return isinstance(first, nn.Conv3d)


def clip_size(transform: Callable) -> tuple[int | None, int | None, int | None]:
    """(frames, height, width) a transform fixes, None where it leaves it free: ours, or torchvision's preset."""
    crop = getattr(transform, "crop", None) or getattr(transform, "crop_size", None)
    if isinstance(crop, (list, tuple)):
        height, width = (crop[0], crop[-1])
    else:
        height = width = crop
    return getattr(transform, "frames", None), height, width


def probe_shape(transform: Callable, channels: int) -> tuple[int, ...]:
    """The [1,C,T,H,W] zero clip used to list layers before a clip was seen."""
    frames, height, width = clip_size(transform)
    return (1, channels, frames or PROBE_FRAMES, height or 112, width or 112)


def read_video(path: Path) -> np.ndarray:
    """The frames of a video file as a [T,H,W,3] uint8 array (PyAV)."""
    if not path.is_file():
        raise InputError(f"no video file at {str(path)!r}; pass the path of an existing video file")
    try:
        import av
    except ImportError:
        raise InputError(
            f"reading {path.name!r} needs a video decoder; pip install av, or pass the frames as a [T,H,W,3] uint8 array"
        ) from None
    try:
        with av.open(str(path)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except (av.error.FFmpegError, ValueError, IndexError) as error:
        raise InputError(f"cannot decode {str(path)!r} as a video ({error}); pass an MP4/AVI/WebM file") from None
    if not frames:
        raise InputError(f"{str(path)!r} has no video frames; pass a file with a video stream")
    return np.stack(frames)


def _frames_array(clip: ClipLike | PIL.Image.Image) -> np.ndarray | None:
    """[T,H,W,C] uint8 for clips given as frames, arrays, uint8 tensors or files; None for a float (or complex, or
    meta) tensor, a model input."""
    if isinstance(clip, (str, os.PathLike)):
        return read_video(Path(clip))
    if isinstance(clip, (list, tuple)):
        if not clip:
            raise InputError("the clip has no frames; pass a list of at least one frame")
        frames = [np.asarray(to_pil(frame, "RGB")) for frame in clip]
        sizes = {frame.shape for frame in frames}
        if len(sizes) > 1:
            raise InputError(f"the frames differ in size ({sorted(sizes)}); pass frames of one size")
        return np.stack(frames)
    if isinstance(clip, torch.Tensor):
        if clip.is_floating_point() or clip.is_complex() or clip.device.type == "meta":
            return None  # a model input, checked by check_input
        if clip.dtype != torch.uint8:
            raise InputError(f"a {clip.dtype} tensor is not a clip; pass uint8 frames [T,H,W,3] or a float [C,T,H,W] input")
        array = clip.detach().cpu().numpy()
        if array.ndim == 4 and array.shape[1] in (1, 3) and array.shape[-1] not in (1, 3):
            array = array.transpose(0, 2, 3, 1)  # [T,C,H,W], as torchvision and PyAV tensors come
        clip = array
    if isinstance(clip, PIL.Image.Image) or (isinstance(clip, np.ndarray) and clip.ndim <= 3):
        raise InputError(
            "this is a video model and got a single image; pass a clip: a [T,H,W,3] uint8 array, a list of frames or a video file"
        )
    if not isinstance(clip, np.ndarray):
        raise InputError(f"cannot use a {type(clip).__name__} as a clip; pass a [T,H,W,3] uint8 array, a list of frames or a video file")
    if clip.ndim != 4:
        raise InputError(f"an array of shape {clip.shape} is not a clip; pass [T,H,W,3] (frames, height, width, RGB)")
    if clip.shape[-1] not in (1, 3):
        raise InputError(f"the clip has {clip.shape[-1]} channels (shape {clip.shape}); pass [T,H,W,3] RGB frames")
    if clip.dtype != np.uint8:
        if not np.issubdtype(clip.dtype, np.floating) or not np.isfinite(clip).all() or clip.min() < 0 or clip.max() > 1:
            raise InputError(f"a {clip.dtype} clip array is ambiguous; pass uint8 values 0..255 or floats in [0, 1]")
        clip = np.round(clip * 255).astype(np.uint8)
    return clip


def preprocess_clip(clip: ClipLike | PIL.Image.Image, transform: Callable, channels: int) -> torch.Tensor:
    """The [1,C,T,H,W] float batch for `clip` (on the CPU), checked against the clip length a transform fixes (and
    then its frame size too: `ClipPreprocess(frames=...)`, the zoo's networks).

    A float tensor is taken as already preprocessed ([C,T,H,W] or [1,C,T,H,W]) and checked as image tensors are
    (`images.check_input`: device, dtype, shape, size, finite, magnitude); anything else is decoded to uint8
    frames and goes through `transform`. Other models take preprocessed clips of any size their layers accept.
    """
    frames, height, width = clip_size(transform)
    array = _frames_array(clip)
    if array is None:
        assert isinstance(clip, torch.Tensor)  # _frames_array gives None only for a tensor
        batch = check_input(clip, channels, MIN_SIDE, map_dims=3)
        if frames is not None and height is not None and tuple(batch.shape[-2:]) != (height, width):  # a transform fixing the whole clip shape
            raise InputError(
                f"the clip's frames are {batch.shape[-2]}×{batch.shape[-1]}; this model takes {height}×{width} frames "
                "(pass uint8 frames to have them resized)"
            )
    else:
        if min(array.shape[1:3]) < MIN_SIDE:
            raise InputError(f"the frames are only {array.shape[2]}×{array.shape[1]} pixels; pass frames at least {MIN_SIDE}×{MIN_SIDE}")
        tensor = torch.from_numpy(np.array(array)).permute(0, 3, 1, 2)  # a writable copy
        if tensor.shape[1] != channels:
            tensor = tensor.expand(-1, 3, -1, -1) if channels == 3 else tensor.float().mean(1, keepdim=True).round().to(torch.uint8)
        batch = torch.as_tensor(transform(tensor)).unsqueeze(0)
        if not all_finite(batch):
            raise InputError("the transform gave NaN or infinite values; check its mean and std")
    if frames is not None and batch.shape[2] != frames:
        raise InputError(
            f"the clip has {batch.shape[2]} frames; this model takes {frames}: pass {frames} frames (e.g. clip[:{frames}])"
        )
    return batch.float()


def reject_clip(image: object) -> None:
    """Raise for a clip given to an image model (a list of frames, a [T,H,W,3] array, a 5-D tensor, a video file)."""
    clip = (isinstance(image, (list, tuple))
            or (isinstance(image, np.ndarray) and image.ndim == 4)
            or (isinstance(image, torch.Tensor) and (image.dim() == 5 or (image.dim() == 4 and not (image.is_floating_point() or image.is_complex()))))
            or (isinstance(image, (str, os.PathLike)) and Path(image).suffix.lower() in VIDEO_SUFFIXES))
    if clip:
        raise InputError("this is an image model and got a clip; pass one frame (e.g. clip[0]) or use a video model (Conv3d)")


def display_clip(batch: torch.Tensor, transform: Callable) -> np.ndarray:
    """The [T,H,W,3] uint8 frames the model sees for a [1,C,T,H,W] input (normalization undone where known)."""
    return display_batch(batch[0].transpose(0, 1), transform).numpy()


def frame_differences(clip: torch.Tensor) -> torch.Tensor:
    """[N,C,T-1,H,W] differences of consecutive frames of [N,C,T,H,W]: the cheapest stand-in for optical flow."""
    return clip[:, :, 1:] - clip[:, :, :-1]


def resize_map(volume: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """A [t,h,w] map resized trilinearly (centers aligned) to `size` (T,H,W)."""
    return F.interpolate(volume[None, None].float(), size=size, mode="trilinear", align_corners=False)[0, 0]
