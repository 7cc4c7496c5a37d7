"""Invariance curves (Zeiler & Fergus 2014, Fig. 5): how much a layer's code and the prediction change as the image
is translated, rotated or scaled.

For each value of a transformation, the distance between the feature vectors of the original and the
transformed image at several layers (relative to the original's norm by default, so layers compare), and the
probability of the true class. All positions of one transformation go through the model in one batched pass.
The identity transformation is an exact copy, so its distance is exactly zero. The input image is not changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..backend.device import batch_size_for, batches
from ..backend.hooks import eval_mode, forward_hooks
from ..backend.inspector import class_scores
from ..errors import InputError, model_errors

KINDS = ("translate", "rotate", "scale")
UNITS = {"translate": "px", "rotate": "°", "scale": "×"}


def default_values(kind: str, positions: int = 41) -> list[float]:
    """`positions` values spanning the transformation's range, the identity exactly among them (for odd counts):
    shifts −60…60 px, rotations −180…180°, scales 0.5…2 (geometric)."""
    check_kind(kind)
    if not isinstance(positions, int) or positions < 2:
        raise InputError(f"positions={positions!r}; pass a whole number ≥ 2 (41 gives the identity in the middle)")
    half = (positions - 1) / 2
    steps = [(i - half) / half for i in range(positions)]  # −1 … 1, exactly 0 in the middle for odd counts
    if kind == "translate":
        return [60.0 * t for t in steps]
    if kind == "rotate":
        return [180.0 * t for t in steps]
    return [2.0**t for t in steps]


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InputError(f"unknown transformation {kind!r}; pick one of {', '.join(KINDS)}")
    return kind


def transform(batch: torch.Tensor, dx: float = 0.0, dy: float = 0.0, angle: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    """A transformed copy of an [N,C,H,W] model input: shifted right by `dx` and down by `dy` px, rotated by `angle`
    degrees, scaled by `scale` about the centre. Uncovered pixels are 0 in model space (the
    mean colour for a normalized input). Whole-pixel shifts are exact and the identity is an exact copy."""
    for name, value in (("dx", dx), ("dy", dy), ("angle", angle), ("scale", scale)):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"{name}={value!r} is not a number; pass a finite number")
    if scale <= 0:
        raise InputError(f"scale={scale} must be positive; pass e.g. 0.5 (half size) or 2 (double)")
    if angle == 0 and scale == 1 and float(dx).is_integer() and float(dy).is_integer():
        return _shift(batch, int(dx), int(dy))
    _, _, height, width = batch.shape
    radians = math.radians(angle)
    cos, sin = math.cos(radians) / scale, math.sin(radians) / scale
    # output pixel → input pixel, in normalized coordinates: undo the shift, then undo rotation and scale
    tx, ty = -2 * dx / width, -2 * dy / height
    theta = torch.tensor([[cos, sin, cos * tx + sin * ty], [-sin, cos, -sin * tx + cos * ty]], dtype=batch.dtype, device=batch.device)
    grid = F.affine_grid(theta.expand(len(batch), 2, 3), list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _shift(batch: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    out = torch.zeros_like(batch)
    height, width = batch.shape[-2:]
    if abs(dx) >= width or abs(dy) >= height:
        return out
    out[..., max(dy, 0): height + min(dy, 0), max(dx, 0): width + min(dx, 0)] = \
        batch[..., max(-dy, 0): height + min(-dy, 0), max(-dx, 0): width + min(-dx, 0)]
    return out


def transformed(batch: torch.Tensor, kind: str, value: float) -> torch.Tensor:
    """`batch` under one transformation of `kind` ("translate" is horizontal)."""
    check_kind(kind)
    if kind == "translate":
        return transform(batch, dx=value)
    if kind == "rotate":
        return transform(batch, angle=value)
    return transform(batch, scale=value)


@dataclass
class InvarianceCurves:
    """Distances per layer and target-class probability over one transformation's values."""

    kind: str
    values: list[float]
    distances: dict[str, list[float]]  # layer -> distance at each value
    probability: list[float]  # softmax probability of `target` at each value
    target: int
    label: str
    relative: bool  # distances divided by the original feature vector's norm

    @property
    def unit(self) -> str:
        return UNITS[self.kind]


def default_layers(inspector) -> list[str]:
    """Four layers from shallow to deep: the first activation, one a third and two thirds in, and the last."""
    layers = inspector.layers
    activations = [layer for layer in layers if layer.kind == "activation"] or layers
    picks = [activations[0], layers[len(layers) // 3], layers[2 * len(layers) // 3], layers[-1]]
    names: list[str] = []
    for layer in picks:
        if layer.name not in names:
            names.append(layer.name)
    return names


def invariance_curves(
    inspector,
    image,
    kind: str = "translate",
    *,
    values: Sequence[float] | None = None,
    layers: Sequence[str] | None = None,
    target: int | str | None = None,
    relative: bool = True,
    batch_size: int | None = None,
    progress: bool = True,
    callback: Callable[[int, int], object] | None = None,
) -> InvarianceCurves:
    """Curves of feature distance at `layers` (default `default_layers`) and of the probability of `target`
    (default: the top class on the untransformed image) over `values` of transformation `kind` (default
    `default_values(kind)`: 41 positions). `callback(done, total)` reports progress; so does a tqdm bar."""
    from tqdm.auto import tqdm

    check_kind(kind)
    values = [float(v) for v in (values if values is not None else default_values(kind))]
    if not values:
        raise InputError("values is empty; pass the transformation values to probe, or None for the default 41")
    batch = inspector.preprocess(image).clone()
    if isinstance(layers, str):
        raise InputError(f"layers must be a list of names, e.g. [{layers!r}]")
    names = list(layers) if layers is not None else default_layers(inspector)
    infos = [inspector.layer(name) for name in names]
    target_index = None if target is None else inspector.class_index(target)
    model = inspector.model
    modules = {info.name: (model.get_submodule(info.module_name), info.call) for info in infos}
    size = batch_size or batch_size_for(inspector.device)
    parts = batches(len(values), size)
    with eval_mode(model), torch.inference_mode(), model_errors(tuple(batch.shape)):
        reference, reference_scores = _features_and_scores(model, modules, batch)
        if target_index is None:
            target_index = int(reference_scores[0].argmax())
        norms = {name: float(feature.norm()) or 1.0 for name, feature in reference.items()}
        distances: dict[str, list[float]] = {name: [] for name in modules}
        probability: list[float] = []
        bar = tqdm(total=len(values), desc=f"{kind} curves", leave=False, disable=not progress or len(parts) < 4)
        try:
            for part in parts:
                chunk = torch.cat([transformed(batch, kind, value) for value in values[part]])
                features, scores = _features_and_scores(model, modules, chunk)
                for name, feature in features.items():
                    distance = (feature - reference[name]).norm(dim=1)
                    distances[name].extend((distance / norms[name] if relative else distance).tolist())
                probability.extend(scores.softmax(-1)[:, target_index].tolist())
                bar.update(len(chunk))
                if callback is not None:
                    callback(len(probability), len(values))
        finally:
            bar.close()
    for name in distances:  # the identity is an exact copy: report exact zeros, not float noise of batched kernels
        distances[name] = [0.0 if _is_identity(kind, v) else d for v, d in zip(values, distances[name])]
    return InvarianceCurves(kind, values, distances, probability, target_index, inspector.label(target_index), relative)


def _is_identity(kind: str, value: float) -> bool:
    return value == (1.0 if kind == "scale" else 0.0)


def _features_and_scores(model, modules: dict, batch: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Flattened outputs [N, D] of the named (module, call) layers and the class scores, from one forward."""
    wanted: dict = {}
    for name, (module, call) in modules.items():
        wanted.setdefault(module, {})[call] = name
    calls: dict = {}
    features: dict[str, torch.Tensor] = {}

    def make_hook(module):
        def hook(_module, _inputs, output):
            index = calls.get(module, 0)
            calls[module] = index + 1
            name = wanted[module].get(index)
            if name is not None:
                features[name] = output.detach().flatten(1).float().clone()

        return hook

    with forward_hooks([(module, make_hook(module)) for module in wanted]):
        scores = class_scores(model(batch)).float()
    return {name: features[name] for name in modules}, scores


def curve_table(curves: InvarianceCurves) -> np.ndarray:
    """[values, 2 + layers] array: value, probability, then each layer's distance (for plotting or saving)."""
    return np.array([curves.values, curves.probability, *curves.distances.values()], dtype=np.float32).T
