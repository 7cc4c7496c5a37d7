"""Time in the widgets' video views: which input frames each time step of a layer covers, and space-time maps
scaled for display.

A layer of a video model writes [C,T',H,W] maps, and T' is often not the clip's T: a frame-difference stream has
one step fewer, temporal strides halve it, a global pool leaves one. `frame_spans` says which input frames each of
those time steps depends on. It measures rather than traces (the receptive-field tracer in `backend` is 2-D, and a
custom module such as the zoo's frame difference has no rule): each input frame in turn gets strong noise, and a
time step covers the frames whose noise changes its maps. One batched forward of T+1 clips up to the layer, on a
small centre crop of the frames (PROBE_SIDE).
"""

from __future__ import annotations

import torch

from ..backend.device import batch_size_for, batches
from ..backend.hooks import capture_outputs, eval_mode
from ..errors import InputError, model_errors
from .reduce import normalize_map

NOISE_STD = 1.0
"""Noise added to one frame (model input units, where a clip's values have a standard deviation about 1)."""
PROBE_SIDE = 32
"""Spans are measured on a centre crop of the clip at most this many pixels a side: which frames a time step depends
on is set by the temporal kernels, strides and paddings, not by the frame size, and the crop makes the T+1 forwards
cheaper (torchvision r3d_18 up to `layer1` on a 16×112×112 clip, a loaded 2-core CPU, one run: 21.8 s at full size,
6.8 s on the crop, the same spans). A model that refuses the crop (a fixed input size) is probed at full size."""
CHANGE_TOLERANCE = 1e-4
"""A time step depends on a frame when the noise moves its maps by more than this share of their largest value
(float rounding between batch sizes is ~1e-6 of it; a real dependence moves them by a sizeable fraction)."""


def frame_spans(inspector, batch: torch.Tensor, layer: str) -> list[list[int]]:
    """[first, last] input frame that each time step of `layer` depends on, for the clip `batch` [1,C,T,H,W];
    [] for a time step no frame reaches (its every unit is zero on this clip and stays so)."""
    info = inspector.layer(layer)
    if len(info.shape) != 4:
        raise InputError(f"layer {info.name!r} has no time axis (shape {tuple(info.shape)}); pick a [C,T,H,W] layer")
    height, width = batch.shape[-2:]
    top, left = max(0, (height - PROBE_SIDE) // 2), max(0, (width - PROBE_SIDE) // 2)
    crop = batch[..., top:top + PROBE_SIDE, left:left + PROBE_SIDE]
    if crop.shape != batch.shape:
        try:
            return _measured_spans(inspector, crop, info)
        except InputError:
            pass  # the model takes its own frame size only
    return _measured_spans(inspector, batch, info)


def _measured_spans(inspector, batch: torch.Tensor, info) -> list[list[int]]:
    length = batch.shape[2]
    noise = torch.randn(batch.shape[1:], generator=torch.Generator().manual_seed(0)).to(batch.device) * NOISE_STD
    probes = batch.repeat(length + 1, 1, 1, 1, 1)
    for frame in range(length):
        probes[frame + 1, :, frame] += noise[:, frame]
    model = inspector.model
    tap = {info.name: (model.get_submodule(info.module_name), info.call)}
    outputs = []
    with eval_mode(model), torch.inference_mode(), model_errors(tuple(batch.shape)):
        for part in batches(len(probes), batch_size_for(inspector.device)):
            outputs.append(info.to_map(capture_outputs(model, tap, probes[part])[info.name]).float().cpu())
    maps = torch.cat(outputs)  # [T+1, C, T', H, W]
    change = (maps[1:] - maps[:1]).abs().amax((1, 3, 4))  # [T, T']
    depends = change > CHANGE_TOLERANCE * maps[0].abs().max().clamp_min(1e-12)
    spans = []
    for step in range(maps.shape[2]):
        frames = depends[:, step].nonzero().flatten().tolist()
        spans.append([frames[0], frames[-1]] if frames else [])
    return spans


def clip_display_map(raw: torch.Tensor, how: str = "abs") -> torch.Tensor:
    """A raw space-time attribution ([C,T,H,W] input gradients, [T,H,W] CAMs) as a [T,H,W] map in [0, 1]: reduced
    over colour channels as `reduce.reduce_map` does for images, then scaled by one percentile over the whole clip,
    so frames share one colour scale and a quiet frame looks quiet."""
    raw = raw.detach().float().cpu()
    if raw.dim() == 4:
        reduced = raw.abs().amax(0) if how == "abs" else raw.clamp(min=0).amax(0)
    elif raw.dim() == 3:
        reduced = raw.abs() if how == "abs" else raw.clamp(min=0)
    else:
        raise ValueError(f"a space-time attribution is [C,T,H,W] or [T,H,W], not shape {tuple(raw.shape)}")
    return normalize_map(reduced)


def evidence_display(first: torch.Tensor, second: torch.Tensor, difference: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """uint8 [3,T,H,W] pictures of two classes' unrectified evidence maps and their difference, signed around 128
    (= 0): the first two on one symmetric scale (0 and 255 = ∓ the larger of their largest magnitudes, so the two
    classes compare), the difference on its own. Returns (pictures, evidence bound, difference bound): the values
    that ±127 stand for."""
    bound = float(torch.stack([first, second]).abs().max().clamp_min(1e-12))
    difference_bound = float(difference.abs().max().clamp_min(1e-12))
    signed = torch.stack([first / bound, second / bound, difference / difference_bound]).float()
    return (128 + signed * 127).round().clamp(0, 255).to(torch.uint8), bound, difference_bound
