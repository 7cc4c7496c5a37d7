"""Activation maximization: synthesize the input that most excites a class score, a channel or a neuron.

Gradient ascent on the image (Erhan et al. 2009; Simonyan et al. 2013; Yosinski et al. 2015; Olah et al. 2017),
with the regularizers that make results readable, each an option:

- transformation robustness: random jitter (px), scale (±fraction) and rotation (±degrees) at every step;
- a frequency-space, colour-decorrelated parameterization ("fourier"), or plain pixels ("pixel");
- a periodic Gaussian blur (`blur` σ in px, every `blur_every` steps), and L2 and total-variation penalties;
- for a batch, diversity (Olah et al. 2017, "Diversity"): each image's objective minus `diversity` × its mean
  similarity to the other images, the similarity being the cosine of the Gram matrices ("style") of their
  activations at `diversity_layer`, so the batch shows different facets of the target instead of one picture N times.

`Maximizer` holds one optimization that can be advanced a few steps at a time (the widget runs it in chunks
and shows the image in between); `maximize` runs one to the end. The model is never modified: it runs in
eval mode (restored afterwards), gradients are taken with `torch.autograd.grad` w.r.t. the image parameters
only, hooks are removed in `finally`. Same arguments and seed, same images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ..backend.hooks import eval_mode, tapped_forward
from ..backend.inspector import class_scores
from ..errors import InputError, model_errors
from .generator_prior import GeneratorParam
from .image_params import (
    ImageParam,
    ModelInput,
    check_range,
    check_steps,
    default_size,
    grad_of,
    l2_penalty,
    random_transform,
    to_uint8,
    total_variation,
)

if TYPE_CHECKING:
    from .video import VideoMaximization

UNITS = ("channel", "neuron")


@dataclass(frozen=True)
class Settings:
    """The regularizers and optimizer of one maximization (all defaults give readable class images)."""

    param: str = "fourier"
    lr: float = 0.05
    jitter: float = 8.0
    scale: float = 0.05
    rotate: float = 5.0
    blur: float = 0.0
    blur_every: int = 4
    l2: float = 0.0
    tv: float = 0.0

    def checked(self) -> Settings:
        for name, low, high in (("lr", 1e-6, 10.0), ("jitter", 0.0, 64.0), ("scale", 0.0, 0.9), ("rotate", 0.0, 180.0),
                                ("blur", 0.0, 10.0), ("l2", 0.0, None), ("tv", 0.0, None)):
            check_range(name, getattr(self, name), low, high)
        if not isinstance(self.blur_every, int) or self.blur_every < 1:
            raise InputError(f"blur_every={self.blur_every!r} is not a step count; pass a whole number ≥ 1")
        return self


@dataclass
class MaximizationResult:
    """What `maximize` found: images, the objective per step, and for a class target its probability on each image."""

    images: torch.Tensor  # [N,3,H,W] floats in [0, 1]
    history: list[float]  # mean objective (before penalties) per step
    description: str
    probabilities: list[float] | None = None  # softmax probability of the target class on each final image
    predictions: list[list[tuple[str, float]]] = field(default_factory=list)  # top-3 on each final image
    similarity: float | None = None  # mean pairwise Gram-matrix cosine of the images at the diversity layer (N > 1)

    @property
    def pictures(self) -> torch.Tensor:
        """[N,H,W,3] uint8."""
        return to_uint8(self.images)


def gram_similarity(features: torch.Tensor) -> torch.Tensor:
    """[N,N] cosine similarities of the Gram matrices of [N,C,H,W] activations (Olah et al. 2017's diversity
    measure): each image's channel-by-channel correlations G = F·Fᵀ / (H·W), compared as flattened vectors. It
    ignores where things are and keeps which features occur together, so two shifted copies still count as alike."""
    flat = features.flatten(2)
    grams = flat @ flat.transpose(1, 2) / flat.shape[-1]
    unit = F.normalize(grams.flatten(1), dim=1, eps=1e-12)
    return unit @ unit.T


def mean_pairwise_similarity(features: torch.Tensor) -> torch.Tensor:
    """The mean of `gram_similarity` over all pairs of different images (0 for a single image): 1 when every
    image has the same Gram matrix, 0 when no two share a co-active channel pair."""
    count = features.shape[0]
    if count < 2:
        return features.new_zeros(())
    similarity = gram_similarity(features)
    return (similarity.sum() - similarity.diagonal().sum()) / (count * (count - 1))


def default_diversity_layer(inspector) -> str:
    """The layer diversity compares images at when none is named: the middle activation layer with a spatial
    feature map (Gram matrices of rectified features, like Olah et al.'s mid-level "mixed4a"), else the middle
    layer with one."""
    spatial = [layer for layer in inspector.layers if len(layer.shape) == 3 and layer.shape[1] * layer.shape[2] > 1]
    activations = [layer for layer in spatial if layer.kind == "activation"]
    candidates = activations or spatial
    if not candidates:
        raise InputError("the model has no layer with a spatial feature map to compare images at; pass diversity_layer=")
    return candidates[len(candidates) // 2].name


def with_options(settings: Settings, options: dict) -> Settings:
    """`settings` with `options` replaced; an unknown option is an InputError listing the valid ones."""
    unknown = sorted(set(options) - set(Settings.__dataclass_fields__))
    if unknown:
        raise InputError(f"unknown options {unknown}; valid ones are {sorted(Settings.__dataclass_fields__)}")
    return replace(settings, **options).checked()


class Maximizer:
    """One activation-maximization run that can be advanced step by step (see the module doc).

    Targets: `target` a class (index or label name) — its logit is maximized; or `layer` and `channel` — the
    channel's mean activation (`unit="channel"`) or its centre neuron (`unit="neuron"`). `count` images are
    optimized together from different random starts, for a batch of different results; `diversity` > 0 pushes
    them apart (the module doc), compared at `diversity_layer` (default: `default_diversity_layer`).
    """

    def __init__(
        self,
        inspector,
        target: int | str | None = None,
        *,
        layer: str | None = None,
        channel: int | None = None,
        unit: str = "channel",
        count: int = 1,
        size: int | None = None,
        seed: int = 0,
        init: torch.Tensor | None = None,
        diversity: float = 0.0,
        diversity_layer: str | None = None,
        settings: Settings | None = None,
        prior: torch.nn.Module | None = None,
        **options: object,
    ) -> None:
        self.inspector = inspector
        self.settings = with_options(settings or Settings(), options)
        self.diversity = check_range("diversity", diversity, 0.0, None)
        if unit not in UNITS:
            raise InputError(f"unit={unit!r} is unknown; pick 'channel' or 'neuron'")
        if not isinstance(count, int) or not 1 <= count <= 64:
            raise InputError(f"count={count!r}; pass a whole number of images between 1 and 64")
        if prior is not None and (init is not None or self.settings.blur):
            raise InputError("prior= optimizes a generator's latent codes; drop init= and blur=, which act on pixels")
        self.size = size or default_size(inspector)
        if not isinstance(self.size, int) or self.size < 16:
            raise InputError(f"size={size!r} is too small; pass an image side of at least 16 px")
        self.layer = self.channel = self.class_index = None
        self.unit = unit
        if layer is not None:
            info = inspector.layer(layer)
            self.layer = info.name
            self._module = inspector.model.get_submodule(info.module_name)
            self._call = info.call
            self._to_map = info.to_map
            channels = info.shape[0]
            channel = 0 if channel is None else channel
            if not isinstance(channel, int) or not 0 <= channel < channels:
                raise InputError(f"channel {channel!r} is out of range; layer {info.name!r} has channels 0..{channels - 1}")
            self.channel = channel
            self.description = f"{info.name} channel {channel}" + (" (centre neuron)" if unit == "neuron" else "")
        else:
            if target is None:
                raise InputError("maximize needs something to maximize; pass target='espresso' (a class) or layer= and channel=")
            self.class_index = inspector.class_index(target)
            self.description = f"class {inspector.label(self.class_index)!r} (logit)"
        self.diversity_layer = None
        if count > 1:
            diversity_info = inspector.layer(diversity_layer or default_diversity_layer(inspector))
            self.diversity_layer = diversity_info.name
            self._diversity_tap = (inspector.model.get_submodule(diversity_info.module_name), diversity_info.call,
                                   diversity_info.to_map)
        self.generator = torch.Generator().manual_seed(seed)
        self.to_model = ModelInput.of(inspector)
        self.param: GeneratorParam | ImageParam
        if prior is not None:
            self.param = GeneratorParam(prior, count, self.size, generator=self.generator, device=inspector.device)
            self.description += " (generator prior)"
        else:
            self.param = ImageParam(count, self.size, kind=self.settings.param, generator=self.generator, init=init,
                                    device=inspector.device)
        self.optimizer = torch.optim.Adam(self.param.parameters_to_optimize(), lr=self.settings.lr)
        self.history: list[float] = []

    @property
    def steps_done(self) -> int:
        return len(self.history)

    def objective(self, images: torch.Tensor, diversity_features: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[N] objective values of display images (with the autograd graph), and with `diversity_features` the
        activations at the diversity layer from the same forward pass (else None)."""
        taps = {"unit": (self._module, self._call, self._to_map)} if self.class_index is None else {}
        if diversity_features:
            taps["diversity"] = self._diversity_tap
        output, captured = tapped_forward(self.inspector.model, taps, self.to_model(images), keep_graph=True,
                                          to_end=self.class_index is not None)
        features = captured.get("diversity")
        if self.class_index is not None:
            return class_scores(output)[:, self.class_index], features
        maps = captured["unit"][:, self.channel]
        if self.unit == "neuron":
            return maps[:, maps.shape[1] // 2, maps.shape[2] // 2], features
        return maps.flatten(1).mean(1), features

    def step(self, steps: int = 1, stop: Callable[[], bool] | None = None) -> list[float]:
        """Advance `steps` steps (fewer if `stop()` turns true); return the objective of each step taken."""
        check_steps(steps)
        s = self.settings
        values = []
        with eval_mode(self.inspector.model), torch.enable_grad(), model_errors((self.param.tensor.shape[0], 3, self.size, self.size)):
            for _ in range(steps):
                if stop is not None and stop():
                    break
                images = self.param()
                seen = random_transform(images, self.generator, s.jitter, s.scale, s.rotate)
                value, features = self.objective(seen, diversity_features=bool(self.diversity and self.diversity_layer))
                loss = -value.sum()
                if features is not None:  # Σ_i diversity × (image i's mean similarity to the others)
                    loss = loss + self.diversity * len(value) * mean_pairwise_similarity(features)
                regularized_step(self.param, self.optimizer, loss, images, s, self.steps_done)
                values.append(float(value.detach().mean()))
                self.history.append(values[-1])
        return values

    def images(self) -> torch.Tensor:
        """The current images, [N,3,H,W] in [0, 1] (a detached copy)."""
        with torch.no_grad():
            return self.param().detach().clone()

    def similarity(self, images: torch.Tensor) -> float | None:
        """Mean pairwise Gram-matrix cosine of display images at the diversity layer (None for a single image)."""
        if self.diversity_layer is None:
            return None
        with eval_mode(self.inspector.model), torch.no_grad(), model_errors(tuple(images.shape)):
            features = tapped_forward(self.inspector.model, {"diversity": self._diversity_tap}, self.to_model(images))[1]["diversity"]
        return float(mean_pairwise_similarity(features))

    def result(self) -> MaximizationResult:
        images = self.images()
        probabilities, predictions = None, []
        if self.class_index is not None:
            scores = self.inspector.batch_logits(self.to_model(images)).softmax(-1)
            probabilities = scores[:, self.class_index].tolist()
            top = scores.topk(min(3, scores.shape[1]), dim=1)
            predictions = [[(self.inspector.label(int(i)), float(p)) for p, i in zip(ps, ids)]
                           for ps, ids in zip(top.values, top.indices)]
        return MaximizationResult(images, list(self.history), self.description, probabilities, predictions,
                                  self.similarity(images))


def maximize(
    inspector,
    target: int | str | None = None,
    *,
    layer: str | None = None,
    channel: int | None = None,
    steps: int = 128,
    progress: bool = True,
    callback: Callable[[int, torch.Tensor], object] | None = None,
    every: int = 16,
    **options: Any,
) -> MaximizationResult | VideoMaximization:
    """Synthesize images that maximize a class logit (`target`) or a channel/neuron (`layer`, `channel`).

    Options: `count` images, `size` px, `seed`, `unit` ("channel"/"neuron"), `param` ("fourier"/"pixel"), `lr`,
    `jitter` px, `scale` ±fraction, `rotate` ±degrees, `blur` σ px every `blur_every` steps, `l2` and `tv`
    penalty weights, `init` start images, `diversity` weight and `diversity_layer` for a batch (`count` > 1),
    `prior` a generator (e.g. `zoo.digits_generator()`) whose latent codes are optimized instead of pixels, so the
    images stay on its manifold (`methods.generator_prior`). `callback(step, images)` is called every `every` steps.
    """
    from tqdm.auto import tqdm

    if getattr(inspector, "is_video", False):  # clips in space-time: methods.video (options: spatial, temporal, …)
        from .video import maximize_clip

        return maximize_clip(inspector, target, layer=layer, channel=channel, steps=steps, callback=callback, every=every, **options)
    check_steps(steps)
    if not isinstance(every, int) or every < 1:
        raise InputError(f"every={every!r}; pass a whole number of steps ≥ 1")
    maximizer = Maximizer(inspector, target, layer=layer, channel=channel, **options)
    bar = tqdm(total=steps, desc=f"maximizing {maximizer.description}", leave=False, disable=not progress or steps < 32)
    try:
        while maximizer.steps_done < steps:
            chunk = min(every, steps - maximizer.steps_done)
            maximizer.step(chunk)
            bar.update(chunk)
            if callback is not None:
                callback(maximizer.steps_done, maximizer.images())
    finally:
        bar.close()
    return maximizer.result()


def regularized_step(param, optimizer: torch.optim.Optimizer, loss: torch.Tensor, images: torch.Tensor,
                     settings: Settings, step: int) -> None:
    """One optimizer step on `loss` plus the settings' L2 and total-variation penalties of `images`, then the
    periodic blur. The gradient goes to the image parameterization only (`torch.autograd.grad`), never to a model."""
    if settings.l2:
        loss = loss + settings.l2 * l2_penalty(images)
    if settings.tv:
        loss = loss + settings.tv * total_variation(images)
    (gradient,) = grad_of(loss, param.parameters_to_optimize())
    param.tensor.grad = gradient
    optimizer.step()
    param.tensor.grad = None
    if settings.blur and (step + 1) % settings.blur_every == 0:
        param.blur(settings.blur)
