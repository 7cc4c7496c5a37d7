"""Occlusion (Zeiler & Fergus 2014; CS231n): slide a gray square over the image and record the class probability.

Position (i, j) of the grid covers input rows i*stride … i*stride+patch and columns j*stride … j*stride+patch
(the same grid as Captum's `Occlusion`: the square never leaves the image). `fill` is what the square shows, in
the model's input space (after preprocessing): a number (0.0 is the dataset mean for mean/std-normalized
inputs, the classic gray square), "mean" (the image's own mean colour), "blur" (the image blurred), or a
tensor of shape [C] or [C,H,W].

On the CPU the occluded forwards are incremental (see `cnnwidgets.backend.incremental`): each layer is recomputed
only where the square changes it, which gives the same numbers as full forwards (to float rounding) in a fraction
of the time. Elsewhere, or for models the incremental engine cannot trace, positions run as batched full forwards.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..backend.cache import image_key
from ..backend.device import batch_size_for, ordered_streams, stream_count
from ..backend.hooks import capture_outputs, eval_mode
from ..backend.images import ImageLike, all_finite
from ..backend.incremental import ENGINE_MIN_SAVING, IncrementalEngine, UnsupportedModel, engine_for
from ..backend.inspector import Inspector, class_scores
from ..errors import InputError, model_errors

Box = tuple[int, int, int, int]
"""(y0, x0, y1, x1): rows y0:y1 and columns x0:x1 of the input."""

METHODS = ("auto", "incremental", "full")
OUTPUTS = ("probability", "logit", "attribution")
INCREMENTAL_BATCH = 16
"""Positions per incremental batch on the CPU (crops are small, so larger batches than full forwards pay off)."""


# --- geometry ---------------------------------------------------------------------------------------------------


def check_patch_stride(size: tuple[int, int], patch: int, stride: int) -> None:
    """Raise InputError unless `patch` and `stride` are positive integers and the patch fits the [H, W] input."""
    for name, value in (("patch", patch), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InputError(f"{name} must be a whole number of pixels, not {value!r}")
        if value <= 0:
            raise InputError(f"{name} must be at least 1 pixel, not {value}; pass e.g. patch=32, stride=8")
    if patch > min(size):
        raise InputError(f"patch {patch} is larger than the {size[0]}×{size[1]} model input; pass patch ≤ {min(size)}")


def grid_shape(size: tuple[int, int], patch: int, stride: int) -> tuple[int, int]:
    """(ny, nx): occluder positions along each axis for an input of `size` (H, W)."""
    check_patch_stride(size, patch, stride)
    return (size[0] - patch) // stride + 1, (size[1] - patch) // stride + 1


def grid_box(i: int, j: int, patch: int, stride: int) -> Box:
    """The occluder box (y0, x0, y1, x1) of grid position (i, j)."""
    return i * stride, j * stride, i * stride + patch, j * stride + patch


def grid_boxes(size: tuple[int, int], patch: int, stride: int) -> list[Box]:
    """The occluder box of every grid position, row by row."""
    ny, nx = grid_shape(size, patch, stride)
    return [grid_box(i, j, patch, stride) for i in range(ny) for j in range(nx)]


def centered_box(y: float, x: float, patch: int, size: tuple[int, int]) -> Box:
    """The occluder of side `patch` centred at input pixel (y, x), clipped to the image (for a dragged square)."""
    top, left = math.floor(y - patch / 2 + 0.5), math.floor(x - patch / 2 + 0.5)  # as Math.round in the browser
    box = (max(top, 0), max(left, 0), min(top + patch, size[0]), min(left + patch, size[1]))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise InputError(f"an occluder at ({y}, {x}) lies outside the {size[0]}×{size[1]} input; pass a point inside it")
    return box


# --- fill ---------------------------------------------------------------------------------------------------------


def fill_image(batch: torch.Tensor, fill: float | str | torch.Tensor, patch: int = 32) -> torch.Tensor:
    """The [1,C,H,W] picture the occluder shows for a [1,C,H,W] model input (the square cuts a window into it)."""
    _n, channels, height, width = batch.shape
    if isinstance(fill, str):
        if fill == "mean":
            return batch.mean((2, 3), keepdim=True).expand_as(batch).contiguous()
        if fill == "blur":
            import torchvision.transforms.functional as TF

            sigma = max(1.0, patch / 4)
            kernel = min(2 * math.ceil(2 * sigma) + 1, (min(height, width) - 1) | 1)
            return TF.gaussian_blur(batch, [kernel, kernel], [sigma, sigma])
        raise InputError(f"fill {fill!r} is unknown; pass a number (0.0 = dataset mean), 'mean', 'blur' or a tensor")
    if isinstance(fill, (int, float, np.floating, np.integer)) and not isinstance(fill, bool):
        if not math.isfinite(fill):
            raise InputError(f"fill must be finite, not {fill}")
        return torch.full_like(batch, float(fill))
    if isinstance(fill, (torch.Tensor, np.ndarray)):
        tensor = torch.as_tensor(fill, dtype=torch.float32, device=batch.device)
        shape = tuple(tensor.shape)
        if shape in ((channels,), (channels, 1, 1), (1, channels, 1, 1)):
            return tensor.reshape(1, channels, 1, 1).expand_as(batch).contiguous()
        if shape in ((channels, height, width), (1, channels, height, width)):
            if not all_finite(tensor):
                raise InputError("the fill tensor contains NaN or infinite values; pass finite values")
            return tensor.reshape(batch.shape).clone()
        raise InputError(
            f"a fill of shape {shape} does not fit a {channels}×{height}×{width} input; "
            f"pass a number, 'mean', 'blur', or a tensor of shape [{channels}] or [{channels},{height},{width}]"
        )
    raise InputError(f"fill must be a number, 'mean', 'blur' or a tensor, not {type(fill).__name__}")


def occlude(batch: torch.Tensor, fill: torch.Tensor, boxes: Sequence[Box]) -> torch.Tensor:
    """[N,C,H,W]: the input with box n replaced by the fill picture there, one occluded copy per box."""
    out = batch.expand(len(boxes), -1, -1, -1).clone()
    for n, (y0, x0, y1, x1) in enumerate(boxes):
        out[n, :, y0:y1, x0:x1] = fill[0, :, y0:y1, x0:x1]
    return out


# --- occluded forward passes ------------------------------------------------------------------------------------


def occluded_logits(
    inspector: Inspector,
    image: ImageLike,
    boxes: Sequence[Box],
    fill: float | str | torch.Tensor = 0.0,
    *,
    patch: int = 32,
    method: str = "auto",
    batch_size: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Class scores [N, classes] (on the CPU) of the image with each box (y0, x0, y1, x1) occluded by `fill`."""
    return torch.cat(list(_logit_chunks(inspector, image, boxes, fill, patch=patch, method=method, batch_size=batch_size, progress=progress)))


def _logit_chunks(inspector, image, boxes, fill, *, patch, method, batch_size, progress, planned=None) -> Iterator[torch.Tensor]:
    """Logits of consecutive chunks of `boxes`, in order (the widget computes between chunks). `planned`: the
    positions to count towards tracing the engine (`ENGINE_PAYS_AFTER`), when not these boxes (a run in parts
    counts its whole grid once).

    Full forwards on the CPU run two chunks at once (`device.ordered_streams`): timm efficientnet_b0's 169 positions
    1.58× Captum's speed against 1.32–1.36× in one stream. Both chunks finish before either is yielded: the caller
    may run the user's cells between chunks, so the model is in eval mode only while they run. The incremental
    engine runs one chunk at a time: in two streams Lite0's 625 positions took 4.1–4.3 s against 3.3–3.5 s (A/B in
    one process, two cores)."""
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    batch = inspector.preprocess(image)
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    for box in boxes:
        y0, x0, y1, x1 = box
        if not (0 <= y0 < y1 <= size[0] and 0 <= x0 < x1 <= size[1]):
            raise InputError(f"occluder box {tuple(box)} is not inside the {size[0]}×{size[1]} input; pass (y0, x0, y1, x1) within it")
    filled = fill_image(batch, fill, patch)
    engine = _engine(inspector, batch, method, len(boxes) if planned is None else planned)
    size_now = batch_size or (INCREMENTAL_BATCH if engine is not None else batch_size_for(batch.device))
    scorer = None if engine is not None else inspector.scoring_model(batch, images=len(boxes))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(boxes), desc="occlusion", unit="pos", leave=False)
    try:
        start, streams = 0, (stream_count(batch.device) if engine is None else 1)
        while start < len(boxes):
            chunks = [boxes[first:first + size_now] for first in range(start, min(len(boxes), start + streams * size_now), size_now)]
            try:
                with eval_mode(inspector.model):  # once around the streams: each would restore the other's flags
                    parts = list(ordered_streams(lambda _slot, chunk: _chunk_logits(engine or scorer, batch, filled, chunk), chunks, len(chunks)))
            except torch.OutOfMemoryError:
                if size_now == 1:
                    raise InputError("out of GPU memory even one position at a time; free GPU memory or use device='cpu'") from None
                if batch.device.type == "cuda":
                    torch.cuda.empty_cache()
                size_now = max(1, size_now // 2)
                warnings.warn(f"out of GPU memory; retrying occlusion with batches of {size_now} positions", stacklevel=3)
                continue
            for chunk, logits in zip(chunks, parts):
                start += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                yield logits
    finally:
        if bar is not None:
            bar.close()


def _engine(inspector: Inspector, batch: torch.Tensor, method: str, positions: int):
    """The incremental engine with this image's unoccluded pass, or None for full forwards: always with
    method="full" or off the CPU; with "auto", once tracing pays (see `ENGINE_PAYS_AFTER`) and where the engine
    saves enough (`ENGINE_MIN_SAVING`)."""
    if method == "full" or (method == "auto" and batch.device.type != "cpu"):
        return None
    try:
        with model_errors(tuple(batch.shape)):
            engine = engine_for(inspector.memo, batch, positions if method == "auto" else None)
        if engine is None or (method == "auto" and engine.saving < ENGINE_MIN_SAVING):
            return None
    except UnsupportedModel as error:
        if method == "incremental":
            raise InputError(f"incremental occlusion does not work on this model ({error}); pass method='full'") from None
        return None
    engine.set_image(batch, key=image_key(batch))
    return engine


def _chunk_logits(runner, batch, filled, chunk) -> torch.Tensor:
    """Logits of one chunk: by the incremental engine, or by full forwards of `runner` (the scoring module; the
    caller holds the model in eval mode)."""
    if isinstance(runner, IncrementalEngine):
        return runner.logits(chunk, filled).float().cpu()
    occluded = occlude(batch, filled, chunk)
    with torch.inference_mode():
        return class_scores(runner(occluded)).float().cpu()


# --- the experiment ------------------------------------------------------------------------------------------------


def occlusion(
    inspector: Inspector,
    image: ImageLike,
    target: int | str | None = None,
    patch: int = 32,
    stride: int = 8,
    fill: float | str | torch.Tensor = 0.0,
    *,
    output: str = "probability",
    method: str = "auto",
    batch_size: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """The [ny, nx] grid of the target class's probability with the occluder at each position.

    `target` is a class index, a label, or None for the top prediction. `output="logit"` gives the target's logit
    instead; `output="attribution"` gives an [H, W] map in Captum's convention: for each pixel, the mean drop of
    the target's probability over the occluder positions that cover it (0 where none does).
    `method` is "auto" (incremental on the CPU, batched full forwards elsewhere), "incremental" or "full".
    """
    if output not in OUTPUTS:
        raise InputError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    batch = inspector.preprocess(image)
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    ny, nx = grid_shape(size, patch, stride)
    index = inspector.class_index(target, batch)
    logits = occluded_logits(inspector, batch, grid_boxes(size, patch, stride), fill, patch=patch, method=method,
                             batch_size=batch_size, progress=progress)
    if output == "logit":
        return logits[:, index].reshape(ny, nx)
    probabilities = logits.softmax(-1)[:, index].reshape(ny, nx)
    if output == "probability":
        return probabilities
    reference = float(inspector.logits(batch).softmax(-1)[index])
    return attribution_map(reference - probabilities, size, patch, stride)


def attribution_map(drops: torch.Tensor, size: tuple[int, int], patch: int, stride: int) -> torch.Tensor:
    """[H, W]: each pixel's mean of the [ny, nx] `drops` over the grid positions whose occluder covers it."""
    ny, nx = drops.shape
    total = torch.zeros(size, dtype=torch.float64)
    count = torch.zeros(size, dtype=torch.float64)
    for i in range(ny):
        for j in range(nx):
            total[i * stride:i * stride + patch, j * stride:j * stride + patch] += float(drops[i, j])
            count[i * stride:i * stride + patch, j * stride:j * stride + patch] += 1
    return (total / count.clamp_min(1)).float()


# --- progressive maps for the widget ----------------------------------------------------------------------------------


@dataclass
class OcclusionMaps:
    """The maps of one occlusion run so far; NaN / -1 where a position is not computed yet."""

    probability: np.ndarray  # [ny, nx] target probability
    top_index: np.ndarray  # [ny, nx] int: the most probable class
    top_probability: np.ndarray  # [ny, nx]: its probability
    done: np.ndarray  # [ny, nx] bool
    level: int  # the coarsest spacing still being filled (1 when refining the last level)

    @property
    def fraction(self) -> float:
        return float(self.done.mean())

    def preview(self, values: np.ndarray) -> np.ndarray:
        """`values` with every missing position showing its nearest computed one on the coarse lattice (for drawing)."""
        if self.done.all():
            return values
        out = values.copy()
        computed = np.argwhere(self.done)
        if len(computed) == 0:
            return out
        for i, j in np.argwhere(~self.done):
            k = np.abs(computed - (i, j)).max(1).argmin()
            out[i, j] = values[tuple(computed[k])]
        return out


def coarse_to_fine(ny: int, nx: int, levels: Sequence[int] = (4, 2, 1)) -> list[tuple[int, list[tuple[int, int]]]]:
    """Grid positions grouped by level: every `levels[0]`-th position first, then the ones the next level adds."""
    seen: set[tuple[int, int]] = set()
    groups = []
    for level in levels:
        group = [(i, j) for i in range(0, ny, level) for j in range(0, nx, level) if (i, j) not in seen]
        seen.update(group)
        if group:
            groups.append((level, group))
    return groups


def occlusion_progressive(
    inspector: Inspector,
    image: ImageLike,
    target: int | str | None = None,
    patch: int = 32,
    stride: int = 8,
    fill: float | str | torch.Tensor = 0.0,
    *,
    levels: Sequence[int] = (4, 2, 1),
    method: str = "auto",
    batch_size: int | None = None,
) -> Iterator[OcclusionMaps]:
    """Occlusion maps that fill in coarse to fine: yields the maps so far after every batch of positions.

    A coarse grid (every 4th position) comes first, then every 2nd, then the rest; stop iterating to cancel.
    """
    batch = inspector.preprocess(image)
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    ny, nx = grid_shape(size, patch, stride)
    index = inspector.class_index(target, batch)
    maps = OcclusionMaps(np.full((ny, nx), np.nan, np.float32), np.full((ny, nx), -1, np.int64),
                         np.full((ny, nx), np.nan, np.float32), np.zeros((ny, nx), bool), levels[0] if levels else 1)
    for level, group in coarse_to_fine(ny, nx, levels):
        maps.level = level
        boxes = [grid_box(i, j, patch, stride) for i, j in group]
        done = 0
        for logits in _logit_chunks(inspector, batch, boxes, fill, patch=patch, method=method, batch_size=batch_size,
                                    progress=False, planned=ny * nx if level == levels[0] else 0):
            probabilities = logits.softmax(-1)
            top = probabilities.max(-1)
            for k, (i, j) in enumerate(group[done:done + len(logits)]):
                maps.probability[i, j] = probabilities[k, index]
                maps.top_index[i, j] = top.indices[k]
                maps.top_probability[i, j] = top.values[k]
                maps.done[i, j] = True
            done += len(logits)
            yield maps


def occluded_channel_sums(
    inspector: Inspector,
    image: ImageLike,
    layer: str,
    channel: int,
    boxes: Sequence[Box],
    fill: float | str | torch.Tensor = 0.0,
    *,
    patch: int = 32,
    batch_size: int | None = None,
) -> Iterator[torch.Tensor]:
    """The total activation of `channel` of `layer` with each box occluded, in chunks (forwards stop at the layer)."""
    info = inspector.layer(layer)
    if not 0 <= channel < info.shape[0]:
        raise InputError(f"channel {channel} is out of range; layer {layer!r} has channels 0..{info.shape[0] - 1}")
    batch = inspector.preprocess(image)
    filled = fill_image(batch, fill, patch)
    size = batch_size or batch_size_for(batch.device)
    module = inspector.model.get_submodule(info.module_name)
    for start in range(0, len(boxes), size):
        occluded = occlude(batch, filled, boxes[start:start + size])
        with eval_mode(inspector.model), torch.inference_mode(), model_errors(tuple(occluded.shape)):
            captured = capture_outputs(inspector.model, {layer: (module, info.call)}, occluded)[layer]
        yield info.to_map(captured)[:, channel].flatten(1).sum(1).float().cpu()  # channels-last and token layers too
