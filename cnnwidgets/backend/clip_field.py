"""Receptive fields in space-time: which frames and pixels of a clip a unit (t, row, col) of a video layer sees.

The 2-D tracer (`backend.receptive_field`) follows convolutions on images; video networks add a time axis, frame
differences (two-stream networks) and 3-D pools. Here the field is measured the way `gradient_receptive_field`
measures it for images: the voxels with a nonzero gradient of the unit (all channels) on a copy of the model in
which every path counts — positive weights, zero biases, norms and activations as the identity, max pools
averaging their windows (a max passes gradient to one voxel only). The weights are random positive numbers, not
equal ones: with equal weights a temporal convolution over frame differences telescopes (d₀ + d₁ + d₂ =
x₃ − x₀) and the middle frames would drop out. One forward up to the layer and one backward measure a batch of
units; the user's model is not touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import InputError
from .hooks import StopForward, forward_hooks
from .layers import LayerInfo
from .receptive_field import ACTIVATIONS, NORMS, _positive_copy, rescale_gradients

ClipBox = tuple[int, int, int, int, int, int]
"""(first frame, top, left, end frame, bottom, right) in input voxels, ends exclusive."""


class _SpaceTimeWiring(TorchFunctionMode):
    """Activations and norms as the identity, max pools as average pools over the same windows."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "").strip("_")
        if name in ACTIVATIONS or name in NORMS:
            return args[0]
        if name in ("max_pool3d", "max_pool3d_with_indices", "max_pool2d", "max_pool2d_with_indices"):
            kwargs.pop("return_indices", None)
            kwargs.pop("dilation", None)
            average = nn.functional.avg_pool3d if "3d" in name else nn.functional.avg_pool2d
            return average(*args[:4], **{k: v for k, v in kwargs.items() if k in ("kernel_size", "stride", "padding", "ceil_mode")})
        if name in ("adaptive_max_pool3d", "adaptive_max_pool3d_with_indices"):
            return nn.functional.adaptive_avg_pool3d(args[0], args[1] if len(args) > 1 else kwargs["output_size"])
        return func(*args, **kwargs)


def _positive_twin(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """`receptive_field`'s positive copy (weights 1 / fan-in, zero biases, identity norms, nothing in place) with every
    weight scaled by a random factor in [0.5, 1.5), so no two paths cancel. A module's weights are scaled when it is
    first called: the modules after the measured layer never run, and drawing their factors was most of the cost
    (r3d_18 up to `layer1`: 0.53 of 1.5 s at two threads on a loaded CPU, for the 33 M weights mostly in `layer4`)."""
    twin = _positive_copy(model)

    def scale_once(module: nn.Module, _inputs: tuple) -> None:
        handles.pop(module).remove()
        with torch.no_grad():
            for parameter in module.parameters(recurse=False):
                if parameter.dim() >= 2:
                    parameter.mul_(torch.rand(parameter.shape, generator=generator).to(parameter) + 0.5)

    handles = {module: module.register_forward_pre_hook(scale_once) for module in twin.modules()
               if any(parameter.dim() >= 2 for parameter in module.parameters(recurse=False))}
    return twin


def measured_clip_boxes(model: nn.Module, layer: LayerInfo, input_shape: Sequence[int],
                        positions: Sequence[tuple[int, int, int]]) -> list[ClipBox]:
    """The voxels each unit (t, row, col) of `layer` sees in a clip of `input_shape` ([C,T,H,W]), as boxes clipped
    to the clip (see the module doc)."""
    generator = torch.Generator().manual_seed(1)
    clip, output = _twin_forward(model, layer, input_shape, len(positions), generator)
    grid = output.shape[2:]
    seed = torch.zeros_like(output)
    weights = (torch.rand(output.shape[1], generator=generator) + 0.5).to(output)
    for k, (t, row, col) in enumerate(positions):
        if not all(0 <= v < side for v, side in zip((t, row, col), grid)):
            raise InputError(f"unit {(t, row, col)} is outside this layer's {'×'.join(map(str, grid))} grid")
        seed[k, :, t, row, col] = weights
    with torch.inference_mode(False):
        (grad,) = torch.autograd.grad(output, clip, seed)
    boxes = []
    for k in range(len(positions)):
        support = grad[k].abs().sum(0) != 0  # [T,H,W]
        if not bool(support.any()):
            raise InputError(f"no voxel of the clip reaches unit {tuple(positions[k])} of {layer.name!r}")
        spans = [torch.nonzero(support.flatten(1).any(1) if axis == 0 else support.any(0).any(1) if axis == 1
                               else support.any(0).any(0)).flatten() for axis in range(3)]
        boxes.append((int(spans[0][0]), int(spans[1][0]), int(spans[2][0]),
                      int(spans[0][-1]) + 1, int(spans[1][-1]) + 1, int(spans[2][-1]) + 1))
    return boxes


def frame_spans(model: nn.Module, layer: LayerInfo, input_shape: Sequence[int]) -> list[list[int]]:
    """[first, last] input frame that each time step of `layer` sees in a clip of `input_shape` ([C,T,H,W]): the
    time extent of the field of unit (t, 0, 0), for every t. One forward of T copies of a clip on the positive twin
    and one backward, copy t seeded at step t: a few large operations rather than one backward per step, which
    matters on a loaded CPU (r3d_18's `layer1` at two threads, load ~8: 1.5 s, against 4.7 s with one backward per
    step and every weight of the twin scaled up front). Which frames a step sees
    is set by the temporal kernels, strides and paddings alone, so a small H and W give the same spans at a
    fraction of the cost."""
    generator = torch.Generator().manual_seed(1)
    clip, output = _twin_forward(model, layer, input_shape, int(input_shape[1]), generator)
    steps = output.shape[2]
    if steps > len(clip):  # more time steps than frames (a temporal upsampling): one copy per step
        generator = torch.Generator().manual_seed(1)
        clip, output = _twin_forward(model, layer, input_shape, steps, generator)
    seed = torch.zeros_like(output)
    weights = (torch.rand(output.shape[1], generator=generator) + 0.5).to(output)
    for step in range(steps):
        seed[step, :, step, 0, 0] = weights
    with torch.inference_mode(False):
        (grad,) = torch.autograd.grad(output, clip, seed)
    spans = []
    for step in range(steps):
        frames = torch.nonzero(grad[step].abs().sum((0, 2, 3))).flatten()
        if not len(frames):
            raise InputError(f"no frame of the clip reaches time step {step} of {layer.name!r}")
        spans.append([int(frames[0]), int(frames[-1])])
    return spans


def _twin_forward(model: nn.Module, layer: LayerInfo, input_shape: Sequence[int], copies: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(the input clips, `layer`'s [N,C,T,H,W] output) of the positive twin on `copies` copies of one random
    positive clip of `input_shape`, with the graph from one to the other."""
    if len(input_shape) != 4:
        raise InputError(f"a clip input is [C,T,H,W], not {tuple(input_shape)}")
    twin = _positive_twin(model, generator)
    device = next((t.device for t in [*twin.parameters(), *twin.buffers()]), torch.device("cpu"))
    clip = (torch.rand((1, *input_shape), generator=generator) + 0.5).expand(copies, *input_shape)
    clip = clip.to(device).clone().requires_grad_(True)
    target = twin.get_submodule(layer.module_name)
    captured: list[torch.Tensor] = []
    calls = [0]

    def capture(_module: nn.Module, _inputs: tuple, output: object) -> None:
        calls[0] += 1
        if calls[0] - 1 == layer.call and isinstance(output, torch.Tensor):
            captured.append(output)
            raise StopForward

    hooks = [(m, rescale_gradients) for m in twin.modules() if m is not twin and m is not target] + [(target, capture)]
    with torch.inference_mode(False), torch.enable_grad(), forward_hooks(hooks), _SpaceTimeWiring():
        try:
            twin(clip)
        except StopForward:
            pass
    if not captured or captured[0].dim() != 5:
        raise InputError(f"layer {layer.name!r} gives no [C,T,H,W] map; pick a video layer with a space-time map")
    return clip, captured[0]


@dataclass(frozen=True)
class ClipField:
    """The field of every unit of a [C,T,H,W] layer, per axis (time, rows, cols): unit i sees input positions
    `start + i·jump` to `end + i·jump` (end exclusive; may reach outside the clip, into the padding), or the
    whole axis where `jump` is None."""

    start: tuple[int, int, int]
    end: tuple[int, int, int]
    jump: tuple[int | None, int | None, int | None]
    input_size: tuple[int, int, int]

    def box(self, t: int, row: int, col: int) -> ClipBox:
        """(first frame, top, left, end frame, bottom, right) of unit (t, row, col), unclipped."""
        lows, highs = [], []
        for axis, unit in enumerate((t, row, col)):
            jump = self.jump[axis]
            lows.append(0 if jump is None else self.start[axis] + unit * jump)
            highs.append(self.input_size[axis] if jump is None else self.end[axis] + unit * jump)
        return (lows[0], lows[1], lows[2], highs[0], highs[1], highs[2])

    @property
    def size(self) -> tuple[int, int, int]:
        """Frames, rows and columns of every unit's box."""
        box = self.box(0, 0, 0)
        return (box[3] - box[0], box[4] - box[1], box[5] - box[2])


def clip_field(model: nn.Module, layer: LayerInfo, input_shape: Sequence[int]) -> ClipField:
    """The layer's field in space-time, measured along the lines of units through the layer's centre (one
    backward for all of them) and fitted per axis as start + i·jump … end + i·jump from the units whose boxes are
    not cut by the clip's borders (exact for convolutions and pools; `clip_field` on a tiny 3-D CNN equals the
    hand-derived fields). Where fewer than two units are free of a border the jump is the layer's stride (length
    / units); an axis on which every unit is cut at one end is taken whole."""
    grid = tuple(layer.shape[1:])
    center = tuple(side // 2 for side in grid)
    units = [(i, center[1], center[2]) for i in range(grid[0])] + [(center[0], i, center[2]) for i in range(grid[1])] \
        + [(center[0], center[1], i) for i in range(grid[2])]  # the lines through the centre along T, H and W
    measured = measured_clip_boxes(model, layer, input_shape, units)
    lengths = tuple(int(side) for side in input_shape[1:])
    starts, ends = [0, 0, 0], list(lengths)
    jumps: list[int | None] = [None, None, None]
    done = 0
    for axis in range(3):
        boxes = measured[done:done + grid[axis]]
        done += grid[axis]
        lows = [(i, box[axis]) for i, box in enumerate(boxes) if box[axis] > 0]
        highs = [(i, box[axis + 3]) for i, box in enumerate(boxes) if box[axis + 3] < lengths[axis]]
        free = lows if len(lows) >= 2 else highs
        if not lows or not highs:
            continue
        if len(free) >= 2:
            (i0, v0), (i1, v1) = free[0], free[1]
            jump = round((v1 - v0) / (i1 - i0))
        else:  # too few units free of the borders to see the step: the layer's stride, length / units
            jump = round(lengths[axis] / grid[axis])
        starts[axis] = lows[0][1] - lows[0][0] * jump
        ends[axis] = highs[0][1] - highs[0][0] * jump
        jumps[axis] = jump
    return ClipField((starts[0], starts[1], starts[2]), (ends[0], ends[1], ends[2]), (jumps[0], jumps[1], jumps[2]),
                     (lengths[0], lengths[1], lengths[2]))
