"""Methods in space-time for video inspectors (clips [1,C,T,H,W]; see `backend.clips`).

After Feichtenhofer et al. (CVPR 2018), "What have we learned from deep representations for action recognition?":
- `clip_saliency`: the input gradient's magnitude per voxel, [T,H,W];
- `grad_cam_3d`: Grad-CAM with the channel weights averaged over T, H and W, [T,H,W];
- `tube_occlusion`: the score drop when a patch × frames tube is replaced by a baseline, at every tube position;
- `maximize_clip`: activation maximization in space-time with separate spatial and temporal smoothness penalties
  (the paper's "slowness" prior: a strong temporal penalty gives the slow version of a unit's preferred input, none
  the fast one); for two-stream networks (`forward_streams`) the appearance and motion inputs are optimized jointly;
- `class_evidence`: where the evidence for each of two classes lies in space and time (per-class Grad-CAM and their
  difference), to explain a confusion.

The model is never changed: forwards run in eval mode (restored), gradients are taken w.r.t. inputs or a layer's
output with `torch.autograd.grad`, hooks live for one call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar, cast

import torch

from ..backend.clips import ClipLike, probe_shape, resize_map
from ..backend.device import batch_size_for, batches
from ..backend.gradients import layer_forward
from ..backend.hooks import eval_mode, tapped_forward
from ..backend.images import ImageLike
from ..backend.inspector import class_scores
from ..backend.layers import LayerInfo
from ..backend.preprocess import normalization_of
from ..errors import InputError, model_errors
from .gradients import saliency, target_tensor
from .image_params import check_range, check_steps, grad_of

T = TypeVar("T")


def _video(inspector) -> None:
    if not getattr(inspector, "is_video", False):
        raise InputError("this method works in space-time and needs a video model (Conv3d); for images use the 2-D method")


# ------------------------------------------------------------------------------------------------ attributions


def clip_saliency(inspector, clip: ClipLike, target: int | str | None = None) -> torch.Tensor:
    """[T,H,W]: the largest absolute input gradient of the class score over the colour channels at each voxel."""
    _video(inspector)
    # saliency hands its input to inspector.preprocess, which takes clips for a video model
    return saliency(inspector, cast(ImageLike, clip), target).abs().amax(0)


def default_video_cam_layer(inspector) -> str:
    """The last layer with a space-time map (more than one position), widened to the outermost block that ends
    with the same output (r3d_18: `layer4`; the zoo's two-stream net: the motion stream's last stage)."""
    _video(inspector)
    layers = inspector.layers
    maps = [layer for layer in layers if len(layer.shape) == 4 and math.prod(layer.shape[1:]) > 1]
    if not maps:
        raise InputError("the model has no layer with a space-time map; pass layer= from inspector.layers")
    last = maps[-1]
    for layer in layers:
        if layer.shape == last.shape and last.module_name.startswith(layer.module_name + ".") and layer.call == 0:
            return layer.name
    return last.name


def _cam_layer(inspector, layer: str | None) -> LayerInfo:
    info = inspector.layer(layer or default_video_cam_layer(inspector))
    if len(info.shape) != 4:
        raise InputError(f"layer {info.name!r} outputs {'×'.join(map(str, info.shape))}, not a [C,T,H,W] map; pick a conv layer or block")
    return info


def _raw_cams(inspector, clip: ClipLike, targets: list[int | str | None],
              layer: str | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """([K,t,h,w] unrectified Grad-CAM maps Σ_c mean_thw(∂score_k/∂A_c)·A_c at the layer, the [1,C,T,H,W] batch,
    the clip's class scores from the same forward)."""
    return finish(_raw_cam_steps(inspector, clip, targets, layer))


def _raw_cam_steps(inspector, clip: ClipLike, targets: list[int | str | None],
                   layer: str | None) -> Generator[float, None, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """`_raw_cams` as steps: the forward, then one backward per target."""
    batch = inspector.preprocess(clip)
    forward = layer_forward(inspector, batch, _cam_layer(inspector, layer).name)
    activation = forward.activation.detach()[0]
    maps = []
    yield 1 / (1 + len(targets))
    for target in targets:
        grads, _ = forward.gradient(target_tensor(inspector, target))
        maps.append(torch.einsum("c,cthw->thw", grads[0].mean((1, 2, 3)), activation))
        yield (1 + len(maps)) / (1 + len(targets))
    return torch.stack(maps).cpu(), batch, forward.scores.detach()[0].cpu()


def finish(steps: Generator[float | None, None, T]) -> T:
    """Run a method's steps (`*_steps`: yielding fractions done, returning the result) to the end; the result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def grad_cam_3d(inspector, clip: ClipLike, target: int | str | None = None, layer: str | None = None,
                upsample: bool = True) -> torch.Tensor:
    """Grad-CAM in space-time, [T,H,W]: relu(Σ_c mean_{t,h,w}(∂score/∂A_c) · A_c), resized trilinearly to the clip
    (or at the layer's own resolution with `upsample=False`). One forward and one backward through the head."""
    _video(inspector)
    raw, batch, _ = _raw_cams(inspector, clip, [target], layer)
    cam = raw[0].clamp(min=0)
    return resize_map(cam, tuple(batch.shape[-3:])) if upsample else cam


@dataclass
class ClassEvidence:
    """Where the evidence for two classes lies in a clip: unrectified Grad-CAM maps [T,H,W] of each class's score
    and their difference (= the Grad-CAM of the score difference first − second: positive where the clip speaks for
    `first` over `second`), with both scores."""

    first: str
    second: str
    first_map: torch.Tensor
    second_map: torch.Tensor
    difference: torch.Tensor
    scores: tuple[float, float]
    layer: str


def class_evidence(inspector, clip: ClipLike, first: int | str, second: int | str, layer: str | None = None) -> ClassEvidence:
    """Per-class space-time Grad-CAM for two classes and their difference, to explain why the model confuses them
    (the paper's PlayingViolin vs PlayingCello). Maps are resized to the clip's [T,H,W]."""
    return finish(class_evidence_steps(inspector, clip, first, second, layer))


def class_evidence_steps(inspector, clip: ClipLike, first: int | str, second: int | str,
                         layer: str | None = None) -> Generator[float, None, ClassEvidence]:
    """`class_evidence` as steps (one forward, then one backward through the head per class): yields the fraction
    done and returns the ClassEvidence; ConfusionView runs it on its job runner. The scores come from the same
    forward (r3d_18 on a 16×112×112 clip: one forward fewer, about 1.9 s on one thread)."""
    _video(inspector)
    indices = [inspector.class_index(first), inspector.class_index(second)]
    if indices[0] == indices[1]:
        raise InputError("class_evidence compares two different classes; pass two class names or indices")
    info = _cam_layer(inspector, layer)
    raw, batch, scores = yield from _raw_cam_steps(inspector, clip, [indices[0], indices[1]], info.name)
    size = tuple(batch.shape[-3:])
    first_map, second_map = resize_map(raw[0], size), resize_map(raw[1], size)
    return ClassEvidence(inspector.label(indices[0]), inspector.label(indices[1]), first_map, second_map,
                         first_map - second_map, (float(scores[indices[0]]), float(scores[indices[1]])), info.name)


@dataclass
class TubeOcclusion:
    """Score drops of occluding tubes: `drops` [nt,nh,nw] per tube position (clean score − occluded score), and
    `map` [T,H,W], each voxel's mean drop over the tubes that cover it."""

    drops: torch.Tensor
    map: torch.Tensor
    target: int
    starts: tuple[list[int], list[int], list[int]]  # first frame, row, column of each tube position


def _starts(length: int, size: int, stride: int) -> list[int]:
    starts = list(range(0, max(length - size, 0) + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)  # the last tube reaches the end
    return starts


def tube_occlusion(inspector, clip: ClipLike, target: int | str | None = None, *, patch: int = 8, frames: int = 4,
                   stride: int | None = None, frame_stride: int | None = None, baseline: float = 0.0,
                   batch_size: int | None = None) -> TubeOcclusion:
    """Occlude `frames` × `patch` × `patch` tubes of the preprocessed clip with `baseline` (0: the dataset mean after
    normalization), at strides `frame_stride` and `stride` (default: the tube's size), and record the target score's
    drop; every occluded clip is one forward, run in batches. `target` None: the top class of the clean clip."""
    return finish(tube_occlusion_steps(inspector, clip, target, patch=patch, frames=frames, stride=stride,
                                       frame_stride=frame_stride, baseline=baseline, batch_size=batch_size))


def tube_occlusion_steps(inspector, clip: ClipLike, target: int | str | None = None, *, patch: int = 8, frames: int = 4,
                         stride: int | None = None, frame_stride: int | None = None, baseline: float = 0.0,
                         batch_size: int | None = None) -> Generator[float, None, TubeOcclusion]:
    """`tube_occlusion` as steps of one batch of occluded clips each: yields the fraction done and returns the
    TubeOcclusion; a widget runs it on its job runner (`tubes = yield from ...`), so the kernel answers between
    batches and a newer request cancels the rest (OcclusionSlider's tube map on the zoo's clips: about 6 s in one
    step on a loaded 2-core CPU, now steps of a few tenths of a second)."""
    _video(inspector)
    batch = inspector.preprocess(clip)
    _, _, length, height, width = batch.shape
    for name, value, limit in (("patch", patch, min(height, width)), ("frames", frames, length)):
        if not isinstance(value, int) or not 1 <= value <= limit:
            raise InputError(f"{name}={value!r} does not fit the clip; pass a whole number from 1 to {limit}")
    stride, frame_stride = stride or patch, frame_stride or frames
    starts = (_starts(length, frames, frame_stride), _starts(height, patch, stride), _starts(width, patch, stride))
    positions = [(t, y, x) for t in starts[0] for y in starts[1] for x in starts[2]]
    index = inspector.class_index(target, clip)
    clean = float(inspector.batch_logits(batch)[0, index])
    yield 0.0
    size = batch_size or batch_size_for(inspector.device)
    scores = []
    for part in batches(len(positions), size):
        occluded = batch.repeat(part.stop - part.start, 1, 1, 1, 1)
        for row, (t, y, x) in enumerate(positions[part]):
            occluded[row, :, t:t + frames, y:y + patch, x:x + patch] = baseline
        scores.append(inspector.batch_logits(occluded, batch_size=size)[:, index])
        yield part.stop / len(positions)
    drops = (clean - torch.cat(scores)).view(len(starts[0]), len(starts[1]), len(starts[2]))
    total = torch.zeros(length, height, width)
    count = torch.zeros(length, height, width)
    for (t, y, x), drop in zip(positions, drops.flatten()):
        total[t:t + frames, y:y + patch, x:x + patch] += drop
        count[t:t + frames, y:y + patch, x:x + patch] += 1
    return TubeOcclusion(drops, total / count, index, starts)


# ------------------------------------------------------------------------------------------------ maximization


def spatial_smoothness(clips: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of horizontally and vertically neighbouring pixels of [N,C,T,H,W] clips."""
    return ((clips[..., 1:, :] - clips[..., :-1, :]) ** 2).mean() + ((clips[..., 1:] - clips[..., :-1]) ** 2).mean()


def temporal_smoothness(clips: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of consecutive frames of [N,C,T,H,W] clips (the paper's slowness prior)."""
    return ((clips[:, :, 1:] - clips[:, :, :-1]) ** 2).mean()


def frame_change(clips: torch.Tensor) -> float:
    """Mean absolute difference of consecutive frames of [N,C,T,H,W] clips: how fast the clip moves."""
    return float((clips[:, :, 1:] - clips[:, :, :-1]).abs().mean())


@dataclass
class VideoMaximization:
    """What `maximize_clip` found: the clip (display space, [1,3,T,H,W] in [0, 1]), for a two-stream model also its
    motion input (model space, [1,3,T-1,H,W]), the objective per step and the final frame-to-frame change."""

    clip: torch.Tensor
    history: list[float]
    description: str
    frame_change: float
    motion: torch.Tensor | None = None

    @property
    def frames(self) -> torch.Tensor:
        """[T,H,W,3] uint8 frames of the clip."""
        return (self.clip[0].permute(1, 2, 3, 0).clamp(0, 1) * 255).round().to(torch.uint8)


def _normalization(inspector) -> tuple[torch.Tensor, torch.Tensor]:
    channels = inspector.in_channels
    found = normalization_of(inspector.transform) or ((0.0,) * channels, (1.0,) * channels)
    mean, std = (torch.tensor(list(v)[:channels], dtype=torch.float32, device=inspector.device).view(1, -1, 1, 1, 1) for v in found)
    return mean, std


def _probe(inspector) -> tuple[int, int, int]:
    """(T, H, W) of the clips the model takes: the last input seen, else the transform's, else the probe shape."""
    return tuple((inspector.input_shape or probe_shape(inspector.transform, inspector.in_channels))[-3:])


class ClipMaximizer:
    """One space-time maximization that can be advanced a few steps at a time (`maximize_clip` runs one to the end;
    the ActivationMaximization widget runs it in chunks and shows the clip in between). Arguments as `maximize_clip`;
    nothing runs a forward pass before the first `step`, so building one checks the arguments only."""

    def __init__(self, inspector, target: int | str | None = None, *, layer: str | None = None, channel: int | None = None,
                 unit: str = "channel", lr: float = 0.05, spatial: float = 0.0, temporal: float = 0.0, jitter: int = 0,
                 seed: int = 0) -> None:
        _video(inspector)
        check_range("lr", lr, 1e-6, 10.0)
        self.spatial = check_range("spatial", spatial, 0.0)
        self.temporal = check_range("temporal", temporal, 0.0)
        if not isinstance(jitter, int) or isinstance(jitter, bool) or jitter < 0:
            raise InputError(f"jitter={jitter!r} is not a shift in px; pass a whole number ≥ 0")
        if unit not in ("channel", "neuron"):
            raise InputError(f"unit={unit!r} is unknown; pick 'channel' or 'neuron'")
        self.inspector, self.layer, self.unit, self.jitter = inspector, layer, unit, jitter
        model = inspector.model
        if layer is not None:
            info = inspector.layer(layer)
            channel = 0 if channel is None else channel
            if not isinstance(channel, int) or not 0 <= channel < info.shape[0]:
                raise InputError(f"channel {channel!r} is out of range; layer {info.name!r} has channels 0..{info.shape[0] - 1}")
            self.tap = (model.get_submodule(info.module_name), info.call)
            self.channel = channel
            self.description = f"{info.name} channel {channel}" + (" (centre neuron)" if unit == "neuron" else "")
        elif target is not None:
            self.index = inspector.class_index(target)
            self.description = f"class {inspector.label(self.index)!r} (logit)"
        else:
            raise InputError("maximize needs something to maximize; pass target= (a class) or layer= and channel=")
        length, height, width = _probe(inspector)
        self.mean, self.std = _normalization(inspector)
        self.generator = torch.Generator().manual_seed(seed)
        self.raw = (torch.randn(1, inspector.in_channels, length, height, width, generator=self.generator) * 0.1).to(inspector.device)
        self.two_stream = hasattr(model, "forward_streams")
        self.parameters = [self.raw.requires_grad_(True)]
        if self.two_stream:
            self.raw_motion = (torch.randn(1, inspector.in_channels, length - 1, height, width, generator=self.generator) * 0.1
                               ).to(inspector.device)
            self.parameters.append(self.raw_motion.requires_grad_(True))
        self.optimizer = torch.optim.Adam(self.parameters, lr=lr)
        self.history: list[float] = []

    @property
    def steps_done(self) -> int:
        return len(self.history)

    def _run(self, inputs: tuple[torch.Tensor, ...]) -> object:
        model = self.inspector.model
        return model.forward_streams(*inputs) if self.two_stream else model(inputs[0])

    def _objective(self, clip: torch.Tensor, motion: torch.Tensor | None) -> torch.Tensor:
        inputs = ((clip - self.mean) / self.std,) + ((motion,) if motion is not None else ())
        taps = {} if self.layer is None else {"unit": self.tap}
        output, captured = tapped_forward(self._run, taps, inputs, keep_graph=True, to_end=self.layer is None)
        if self.layer is None:
            return class_scores(output)[0, self.index]
        maps = captured["unit"][0, self.channel]
        if self.unit == "neuron":
            return maps[tuple(size // 2 for size in maps.shape)]
        return maps.mean()

    def current(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(clip in [0, 1], motion input in model space or None), with the autograd graph."""
        motion = torch.tanh(self.raw_motion) / self.std if self.two_stream else None  # a difference of two frames in [0, 1]
        return torch.sigmoid(self.raw), motion

    def step(self, steps: int = 1, stop: Callable[[], bool] | None = None) -> list[float]:
        """Advance `steps` steps (fewer if `stop()` turns true); return the objective of each step taken."""
        check_steps(steps)
        values: list[float] = []
        spatial, temporal, std = self.spatial, self.temporal, self.std
        with eval_mode(self.inspector.model), torch.inference_mode(False), torch.enable_grad(), model_errors(tuple(self.raw.shape)):
            for _ in range(steps):
                if stop is not None and stop():
                    break
                clip, motion = self.current()
                seen_clip, seen_motion = clip, motion
                if self.jitter:
                    dy, dx = (int(v) for v in torch.randint(-self.jitter, self.jitter + 1, (2,), generator=self.generator))
                    seen_clip = torch.roll(clip, (dy, dx), (3, 4))
                    seen_motion = torch.roll(motion, (dy, dx), (3, 4)) if motion is not None else None
                value = self._objective(seen_clip, seen_motion)
                loss = -value + spatial * spatial_smoothness(clip) + temporal * temporal_smoothness(clip)
                if motion is not None:
                    loss = loss + spatial * spatial_smoothness(motion * std) + temporal * temporal_smoothness(motion * std)
                gradients = grad_of(loss, self.parameters)
                for parameter, gradient in zip(self.parameters, gradients):
                    parameter.grad = gradient
                self.optimizer.step()
                for parameter in self.parameters:
                    parameter.grad = None
                values.append(float(value.detach()))
                self.history.append(values[-1])
        return values

    def result(self) -> VideoMaximization:
        with torch.no_grad():
            clip, motion = self.current()
        clip = clip.detach().cpu()
        motion = motion.detach().cpu() if motion is not None else None
        return VideoMaximization(clip, list(self.history), self.description, frame_change(clip), motion)


def maximize_clip(inspector, target: int | str | None = None, *, layer: str | None = None, channel: int | None = None,
                  unit: str = "channel", steps: int = 128, lr: float = 0.05, spatial: float = 0.0, temporal: float = 0.0,
                  jitter: int = 0, seed: int = 0,
                  callback: Callable[[int, torch.Tensor], object] | None = None, every: int = 16) -> VideoMaximization:
    """Gradient ascent on a clip for a class logit (`target`) or a channel / its centre neuron (`layer`, `channel`,
    `unit`), pixels squashed into [0, 1] by a sigmoid. Penalties: `spatial` × `spatial_smoothness` and
    `temporal` × `temporal_smoothness` (large `temporal`: the slow version of the unit's preferred input; 0: the
    fast one); `jitter` px random shifts each step. A two-stream model (with `forward_streams`) gets its appearance
    and motion inputs optimized jointly. Clip size: the last clip seen by the inspector, else the transform's.

    The penalties are mean squared differences and the objective a mean activation or a logit, so useful weights
    are large: on the zoo's C3D (24 steps, lr 0.1, a conv2 channel) `temporal=1000` cuts the mean frame-to-frame
    change from 0.23 to 0.04 while the channel's activation still rises from 0.04 to 7.1 (17 without it)."""
    maximizer = ClipMaximizer(inspector, target, layer=layer, channel=channel, unit=unit, lr=lr, spatial=spatial,
                              temporal=temporal, jitter=jitter, seed=seed)
    check_steps(steps)
    while maximizer.steps_done < steps:
        maximizer.step(min(every, steps - maximizer.steps_done))
        if callback is not None and maximizer.steps_done % every == 0:
            callback(maximizer.steps_done, maximizer.current()[0].detach())
    return maximizer.result()
