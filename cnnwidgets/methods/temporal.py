"""Time in the widgets' video views: which input frames each time step of a layer covers, and space-time maps
scaled for display.

A layer of a video model writes [C,T',H,W] maps, and T' is often not the clip's T: a frame-difference stream has
one step fewer, temporal strides halve it, a global pool leaves one. `frame_spans` says which input frames each of
those time steps depends on, from the layer's receptive field in time (`backend.clip_field.frame_spans`: the
gradient support of one unit per step on a copy of the network in which every path counts), measured on a clip
of the same length but only SPAN_SIDE pixels a side.
"""

from __future__ import annotations

import torch

from ..backend import clip_field
from ..backend.layers import LayerInfo
from ..errors import InputError, model_errors
from .reduce import normalize_map

SPAN_SIDE = 8
"""Spans are measured on clips this many pixels a side: which frames a time step sees is set by the temporal
kernels, strides and paddings, not by the frame size. torchvision r3d_18's `layer1` on a 16×112×112 clip, a loaded
2-core CPU (load ~7, bench/results/video.json): 0.18 s against 1.37 s for the earlier probe (T+1 noisy clips up
to the layer on a 32-px crop; 21.8 s at full size) at one thread, 1.2 s against 2.1 s at two. A model that
refuses the small clip (a fixed input size) is measured at the clip's own size."""


def frame_spans(inspector, batch: torch.Tensor, layer: str) -> list[list[int]]:
    """[first, last] input frame that each time step of `layer` depends on, for clips shaped like `batch`
    [1,C,T,H,W] (the spans depend on the clip's length, not on its values); measured once per layer and clip shape,
    kept in the Inspector's memo."""
    info = inspector.layer(layer)
    if len(info.shape) != 4:
        raise InputError(f"layer {info.name!r} has no time axis (shape {tuple(info.shape)}); pick a [C,T,H,W] layer")
    return inspector.memo(("frame spans", layer, tuple(batch.shape)), lambda: _measured_spans(inspector, info, batch))


def _measured_spans(inspector, info: LayerInfo, batch: torch.Tensor) -> list[list[int]]:
    channels, length, height, width = batch.shape[1:]
    full = (channels, length, height, width)
    small = (channels, length, min(SPAN_SIDE, height), min(SPAN_SIDE, width))
    if small != full:
        try:
            with model_errors(small):
                return clip_field.frame_spans(inspector.model, info, small)
        except InputError:
            pass  # the model takes its own frame size only
    with model_errors(full):
        return clip_field.frame_spans(inspector.model, info, full)


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
