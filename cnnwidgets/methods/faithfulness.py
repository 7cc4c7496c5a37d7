"""Is a map about the model? The model-randomization sanity check, and deletion/insertion faithfulness curves.

- `sanity_check` (Adebayo et al. 2018, "Sanity checks for saliency maps"): re-initialize the model's layers
  from the top (the classifier) down, cumulatively, on a *copy* of the model, and measure how much each
  method's map changes (Spearman rank correlation with the map of the trained model). A map that barely
  changes while the weights that made the prediction are destroyed (guided backprop does this) explains the
  image, not the model.
- `deletion_insertion` (Petsiuk et al. 2018, RISE): delete the most important pixels first and watch the class
  probability fall (a small area under the curve is faithful), or insert them into a blurred image and watch it
  rise (a large area is faithful).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..backend.device import batch_size_for
from ..backend.images import ImageLike
from ..errors import InputError
from .reduce import normalize_map, reduce_map

SANITY_METHODS = ("saliency", "guided_backprop", "grad_cam")


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two maps of the same shape (ties broken by position)."""
    a, b = a.detach().flatten().double(), b.detach().flatten().double()
    if a.shape != b.shape:
        raise ValueError(f"maps of {a.numel()} and {b.numel()} values cannot be compared")
    ra = torch.empty_like(a).scatter_(0, a.argsort(), torch.arange(len(a), dtype=torch.double))
    rb = torch.empty_like(b).scatter_(0, b.argsort(), torch.arange(len(b), dtype=torch.double))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denominator if denominator > 0 else 0.0


def _method(name: str | Callable) -> tuple[str, Callable]:
    if callable(name):
        return getattr(name, "__name__", "method"), name
    from . import cam, gradients

    for module in (gradients, cam):
        function = getattr(module, name, None)
        if callable(function) and not name.startswith("_"):
            return name, function
    raise InputError(f"unknown method {name!r}; pick one of saliency, smoothgrad, integrated_gradients, deconvnet, "
                     "guided_backprop, grad_cam, guided_grad_cam, grad_cam_plus_plus, score_cam, layer_cam")


def randomization_steps(model: nn.Module) -> list[str]:
    """The modules re-initialized one after another, top (output side) first: the top-level children that hold
    parameters, with sequential containers (nn.Sequential, nn.ModuleList) opened into their children."""
    steps: list[str] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if isinstance(child, (nn.Sequential, nn.ModuleList)):
                visit(full + ".", child)
            elif any(True for _ in child.parameters()):
                steps.append(full)

    visit("", model)
    return steps[::-1]


def _reinitialize(module: nn.Module) -> None:
    for sub in module.modules():
        if hasattr(sub, "reset_parameters") and callable(sub.reset_parameters):
            sub.reset_parameters()
        if isinstance(sub, nn.modules.batchnorm._NormBase):
            sub.reset_running_stats()


@dataclass
class SanityCheck:
    """Result of `sanity_check`: `steps[i]` is the module re-initialized at step i+1 (cumulatively, top down);
    `correlations[method][i]` the rank correlation of the map after step i with the trained model's map (1.0 at
    step 0); `maps[method]` the [steps+1, H, W] reduced maps, the trained model's first."""

    target: int
    steps: list[str]
    correlations: dict[str, list[float]]
    maps: dict[str, torch.Tensor] = field(repr=False)

    def figure(self, columns: int = 6):
        """A matplotlib figure: each method's map as layers are randomized, and the correlation curves."""
        import matplotlib.pyplot as plt

        methods = list(self.correlations)
        shown = np.unique(np.linspace(0, len(self.steps), min(columns, len(self.steps) + 1)).round().astype(int))
        figure, axes = plt.subplots(len(methods) + 1, len(shown), figsize=(2 * len(shown), 2 * len(methods) + 2.6),
                                    squeeze=False)
        for row, method in enumerate(methods):
            for column, step in enumerate(shown):
                axis = axes[row, column]
                axis.imshow(normalize_map(self.maps[method][step]), cmap="inferno", vmin=0, vmax=1)
                axis.set_xticks([])
                axis.set_yticks([])
                if row == 0:
                    axis.set_title("trained" if step == 0 else f"…{self.steps[step - 1]}", fontsize=8)
                if column == 0:
                    axis.set_ylabel(method, fontsize=9)
        curve = plt.subplot2grid((len(methods) + 1, 1), (len(methods), 0), fig=figure)
        for axis in axes[-1]:
            axis.remove()
        for method in methods:
            curve.plot(range(len(self.steps) + 1), self.correlations[method], marker="o", markersize=3, label=method)
        curve.set_xticks(range(len(self.steps) + 1))
        curve.set_xticklabels(["trained", *self.steps], rotation=60, fontsize=7, ha="right")
        curve.set_ylabel("rank correlation\nwith trained map", fontsize=8)
        curve.set_ylim(-0.2, 1.05)
        curve.axhline(0, color="gray", linewidth=0.5)
        curve.legend(fontsize=8)
        figure.tight_layout()
        return figure


def sanity_check(inspector, image: ImageLike, target: int | str | None = None, *,
                 methods: Sequence[str | Callable] = SANITY_METHODS, steps: Sequence[str] | None = None,
                 reduce: str = "abs", seed: int = 0, progress: bool = True) -> SanityCheck:
    """Cascading model-parameter randomization (Adebayo et al. 2018) on a deep copy of the model.

    `steps` names the modules to re-initialize, top first (default `randomization_steps(model)`); each step
    re-initializes one more (`reset_parameters`, BatchNorm statistics reset) with the global RNG forked and seeded
    with `seed`, so the user's model and random state are untouched. Maps are reduced with `reduce` ("abs" or
    "positive") before comparing.
    """
    from ..backend import Inspector

    chosen = [_method(method) for method in methods]
    batch = inspector.preprocess(image)
    index = inspector.class_index(target, batch)
    clone = copy.deepcopy(inspector.model)
    names = dict(clone.named_modules())
    order = list(steps) if steps is not None else randomization_steps(clone)
    unknown = [name for name in order if name not in names]
    if unknown:
        raise InputError(f"no module named {unknown[0]!r} to randomize; pass names from randomization_steps(model)")
    copied = Inspector(clone, inspector.transform, inspector.labels)
    maps: dict[str, list[torch.Tensor]] = {name: [] for name, _ in chosen}

    def record() -> None:
        for name, function in chosen:
            maps[name].append(reduce_map(function(copied, batch, index), reduce))

    record()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in tqdm(order, desc="randomizing", leave=False, disable=not progress):
            with torch.no_grad():
                _reinitialize(names[name])
            record()
    stacked = {name: torch.stack(values) for name, values in maps.items()}
    correlations = {name: [rank_correlation(values[0], step) for step in values] for name, values in stacked.items()}
    return SanityCheck(index, order, correlations, stacked)


def _blur(batch: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """The Gaussian blur RISE inserts pixels into (kernel 11, sigma 5), per channel, edges replicated."""
    x = torch.arange(size, dtype=torch.float32, device=batch.device) - size // 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(batch.dtype)
    channels = batch.shape[1]
    padded = F.pad(batch, (size // 2,) * 4, mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, size), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, size, 1), groups=channels)


def _area(values: np.ndarray) -> float:
    """Area under a curve sampled at evenly spaced fractions 0..1 (trapezoid rule)."""
    return float(((values[1:] + values[:-1]) / 2).sum() / (len(values) - 1))


def deletion_insertion(inspector, image: ImageLike, saliency_map: torch.Tensor, target: int | str | None = None, *,
                       steps: int = 50, deletion_baseline: float | torch.Tensor = 0.0,
                       insertion_start: str | torch.Tensor = "blur", batch_size: int | None = None) -> dict:
    """Deletion and insertion curves of a map (Petsiuk et al. 2018) and their areas.

    Pixels are ranked by `saliency_map` ([H,W], or [C,H,W] reduced with abs-max), most important first. Deletion
    replaces them, `steps` equal chunks at a time, by `deletion_baseline` (model-input units; 0 by default);
    insertion copies them into `insertion_start` ("blur": the image blurred as in RISE, or a tensor). The curves
    are the softmax probability of the target class. Returns fractions, both curves and their areas
    (deletion_auc lower is better, insertion_auc higher is better).
    """
    batch = inspector.preprocess(image)
    index = inspector.class_index(target, batch)
    ranking = reduce_map(saliency_map, "abs") if saliency_map.dim() == 3 else saliency_map.detach().float().cpu()
    height, width = batch.shape[-2:]
    if tuple(ranking.shape) != (height, width):
        raise InputError(f"a map of shape {tuple(ranking.shape)} does not fit the {height}×{width} input; "
                         "pass a map at input resolution ([H,W] or [C,H,W])")
    if steps < 1:
        raise InputError(f"steps must be at least 1, not {steps}")
    order = ranking.flatten().argsort(descending=True, stable=True).to(batch.device)
    pixels = height * width
    counts = np.round(np.linspace(0, pixels, steps + 1)).astype(int)
    start = _blur(batch) if isinstance(insertion_start, str) and insertion_start == "blur" else None
    if start is None:
        if not isinstance(insertion_start, torch.Tensor):
            raise InputError(f"insertion_start must be 'blur' or a tensor, not {insertion_start!r}")
        start = insertion_start.detach().to(batch).reshape(batch.shape)
    baseline = deletion_baseline.detach().to(batch).reshape(batch.shape) if isinstance(deletion_baseline, torch.Tensor) \
        else torch.full_like(batch, float(deletion_baseline))
    rank = torch.empty(pixels, dtype=torch.long, device=batch.device)
    rank[order] = torch.arange(pixels, device=batch.device)
    rank = rank.view(1, 1, height, width)
    size = batch_size or batch_size_for(inspector.device)
    curves = {}
    for kind, source, fill in (("deletion", batch, baseline), ("insertion", start, batch)):
        probabilities = []
        for first in range(0, len(counts), size):
            chunk = torch.as_tensor(counts[first:first + size], device=batch.device).view(-1, 1, 1, 1)
            replaced = rank < chunk  # [n,1,H,W]: the top-`count` pixels of each step
            images = torch.where(replaced, fill, source)
            probabilities.append(inspector.batch_logits(images, size).softmax(-1)[:, index])
        curves[kind] = torch.cat(probabilities).numpy()
    return {
        "target": index,
        "fractions": (counts / pixels).tolist(),
        "deletion": curves["deletion"].tolist(),
        "insertion": curves["insertion"].tolist(),
        "deletion_auc": _area(curves["deletion"]),
        "insertion_auc": _area(curves["insertion"]),
    }
