"""Code inversion: reconstruct an image from its representation at one layer (Mahendran & Vedaldi 2015).

Find x minimizing ‖φ(x) − φ(x₀)‖² / ‖φ(x₀)‖² + tv·TV(x) + l2·‖x − ½‖², starting from noise, where φ is the
layer's output read as its [N,C,H,W] map (`backend.layout`: NHWC layers permuted, a ViT's class token left out,
as every view shows the layer). What survives in the reconstruction is what the layer keeps: early layers give the photo back
almost exactly, deep layers keep the object's parts and lose position, colour and detail.

`Inverter` advances one reconstruction a few steps at a time (for the live widget); `invert` runs one to the
end and `invert_layers` one per layer. The model is never modified (eval mode restored, gradients w.r.t. the
image only via `torch.autograd.grad`, hooks removed in `finally`); the input image is not changed; a seed
fixes the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..backend.hooks import eval_mode
from ..errors import InputError, model_errors
from .image_params import ImageParam, ModelInput, check_steps, layer_output, psnr, random_transform, to_uint8
from .maximize import Settings, regularized_step, with_options

INVERSION_DEFAULTS = Settings(param="pixel", lr=0.05, jitter=0.0, scale=0.0, rotate=0.0, tv=0.02, l2=0.0)
"""No transformation robustness (a reconstruction should stay in place) and a light total-variation prior."""


@dataclass
class InversionResult:
    """A reconstruction from one layer, and how close it came (in the code and in pixels)."""

    layer: str
    image: torch.Tensor  # [3,H,W] in [0, 1]
    original: torch.Tensor  # [3,H,W] in [0, 1]: what the model saw
    history: list[float]  # relative code distance per step
    code_distance: float  # final ‖φ(x) − φ(x₀)‖ / ‖φ(x₀)‖
    psnr: float  # dB between reconstruction and original

    @property
    def picture(self) -> torch.Tensor:
        """[H,W,3] uint8."""
        return to_uint8(self.image.unsqueeze(0))[0]


class Inverter:
    """One reconstruction of `image` from `layer`'s code (see the module doc); `step` advances it."""

    def __init__(self, inspector, image, layer: str, *, seed: int = 0, settings: Settings | None = None, **options: object) -> None:
        self.inspector = inspector
        self.settings = with_options(settings or INVERSION_DEFAULTS, options)
        info = inspector.layer(layer)
        self.layer = info.name
        self._module, self._call, self._to_map = inspector.model.get_submodule(info.module_name), info.call, info.to_map
        batch = inspector.preprocess(image).clone()
        self.to_model = ModelInput.of(inspector)
        self.original = self.to_model.to_display(batch)[0]
        with eval_mode(inspector.model), torch.no_grad(), model_errors(tuple(batch.shape)):
            self.code = self._to_map(layer_output(inspector.model, self._module, self._call, batch)).detach().clone()
        self._norm = self.code.pow(2).sum().clamp_min(1e-12)
        self.generator = torch.Generator().manual_seed(seed)
        _, _, height, width = batch.shape
        self.param = ImageParam(1, height, width, kind=self.settings.param, generator=self.generator, device=inspector.device)
        self.optimizer = torch.optim.Adam(self.param.parameters_to_optimize(), lr=self.settings.lr)
        self.history: list[float] = []

    @property
    def steps_done(self) -> int:
        return len(self.history)

    def distance(self, images: torch.Tensor) -> torch.Tensor:
        """‖φ(x) − φ(x₀)‖² / ‖φ(x₀)‖², with the autograd graph."""
        code = self._to_map(layer_output(self.inspector.model, self._module, self._call, self.to_model(images)))
        return (code - self.code).pow(2).sum() / self._norm

    def step(self, steps: int = 1, stop: Callable[[], bool] | None = None) -> list[float]:
        """Advance `steps` steps (fewer if `stop()` turns true); return the relative code distance of each."""
        check_steps(steps)
        s = self.settings
        values = []
        with eval_mode(self.inspector.model), torch.enable_grad(), model_errors((1, 3, self.param.height, self.param.width)):
            for _ in range(steps):
                if stop is not None and stop():
                    break
                images = self.param()
                distance = self.distance(random_transform(images, self.generator, s.jitter, s.scale, s.rotate))
                regularized_step(self.param, self.optimizer, distance, images, s, self.steps_done)
                values.append(float(distance.detach().sqrt()))
                self.history.append(values[-1])
        return values

    def image(self) -> torch.Tensor:
        """The current reconstruction, [3,H,W] in [0, 1] (a detached copy)."""
        with torch.no_grad():
            return self.param()[0].detach().clone()

    def result(self) -> InversionResult:
        image = self.image()
        with eval_mode(self.inspector.model), torch.no_grad():
            distance = float(self.distance(image.unsqueeze(0)).sqrt())
        return InversionResult(self.layer, image, self.original.clone(), list(self.history), distance, psnr(image, self.original))


def invert(inspector, image, layer: str, *, steps: int = 200, seed: int = 0, progress: bool = True, **options: Any) -> InversionResult:
    """Reconstruct `image` from its code at `layer`: `steps` of Adam from noise (options: `param`, `lr`, `tv`, `l2`,
    `jitter`, `scale`, `rotate`, `blur`)."""
    from tqdm.auto import tqdm

    check_steps(steps)
    inverter = Inverter(inspector, image, layer, seed=seed, **options)
    with tqdm(total=steps, desc=f"inverting {inverter.layer}", leave=False, disable=not progress or steps < 32) as bar:
        while inverter.steps_done < steps:
            chunk = min(16, steps - inverter.steps_done)
            inverter.step(chunk)
            bar.update(chunk)
    return inverter.result()


def invert_layers(inspector, image, layers: Sequence[str], *, steps: int = 200, seed: int = 0, progress: bool = True,
                  **options: object) -> list[InversionResult]:
    """`invert` at each of `layers` (shallow to deep, as given), same settings and seed."""
    if isinstance(layers, str) or not layers:
        raise InputError("invert_layers needs a list of layer names; pass e.g. ['_stem_act', '_blocks.5', '_head_act']")
    return [invert(inspector, image, layer, steps=steps, seed=seed, progress=progress, **options) for layer in layers]
