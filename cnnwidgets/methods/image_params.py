"""Images being optimized: parameterizations, random transformations, regularizers, and the model-facing glue.

Shared by `maximize` (feature visualization), `invert` (code inversion) and `adversarial` (attacks, fooling images).
Images live in display space, [N,3,H,W] floats in [0, 1]; `ModelInput` maps them to what the model takes (its
normalization). Parameterizations (Olah et al. 2017, "Feature Visualization"):

- "pixel": one free value per pixel, squashed into [0, 1] by a sigmoid;
- "fourier": the image's 2-D spectrum, scaled by 1/frequency so all frequencies learn at a similar pace, with
  colours decorrelated (the ImageNet colour covariance square root used by Lucid), then a sigmoid.

Nothing here touches a model's parameters: gradients are taken with `torch.autograd.grad` w.r.t. the image
parameters only, and all randomness comes from an explicit `torch.Generator`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..backend.hooks import tapped_forward
from ..backend.preprocess import normalization_of
from ..errors import InputError

PARAMETERIZATIONS = ("fourier", "pixel")

# Square root of ImageNet's RGB colour covariance (from Lucid), columns scaled to unit max norm.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_CORRELATION = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()


class ModelInput:
    """Display images in [0, 1] ↔ the model's input: the normalization of an Inspector's transform.

    A transform that does not say how it normalizes is taken as identity (images go in as [0, 1]).
    """

    def __init__(self, transform: Callable, channels: int = 3, device: torch.device | str = "cpu") -> None:
        normalization = normalization_of(transform)
        mean, std = normalization if normalization is not None else ((0.0,) * channels, (1.0,) * channels)
        self.mean = torch.tensor(list(mean)[:channels], dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(list(std)[:channels], dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.channels = channels

    @classmethod
    def of(cls, inspector) -> ModelInput:
        return cls(inspector.transform, inspector.in_channels, inspector.device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """[N,3,H,W] display images in [0, 1] → model input (a gray model gets the channel mean)."""
        if self.channels == 1 and images.shape[1] == 3:
            images = images.mean(1, keepdim=True)
        return (images - self.mean) / self.std

    def to_display(self, batch: torch.Tensor) -> torch.Tensor:
        """Model input → display images in [0, 1] (clamped), 3 channels."""
        images = (batch.detach().float() * self.std + self.mean).clamp(0, 1)
        return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def default_size(inspector) -> int:
    """The side of the images the model was made for: its transform's crop, else the last input seen, else 224."""
    crop = getattr(inspector.transform, "crop", None) or getattr(inspector.transform, "crop_size", None)
    if isinstance(crop, (list, tuple)) and crop:
        crop = crop[0]
    if isinstance(crop, int) and crop > 0:
        return crop
    return inspector.input_shape[-1] if inspector.input_shape else 224


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] floats in [0, 1] → [N,H,W,3] uint8 on the CPU."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().contiguous()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] (higher is closer; identical gives inf)."""
    mse = float(((a.detach().float().cpu() - b.detach().float().cpu()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _frequencies(height: int, width: int) -> torch.Tensor:
    fy = torch.fft.fftfreq(height).view(-1, 1)
    fx = torch.fft.rfftfreq(width).view(1, -1)
    return (fx**2 + fy**2).sqrt()


class ImageParam(torch.nn.Module):
    """`count` images of size×size built from free tensors; calling it gives [count,3,H,W] in [0, 1].

    Its tensors are plain leaf tensors of its own (optimized with `torch.autograd.grad`); a
    `torch.Generator` seeds the start so results are reproducible. `init` (display images [N,3,H,W] in [0, 1])
    starts from given pictures instead of noise (pixel parameterization only, or fourier via its inverse).
    """

    def __init__(
        self,
        count: int,
        height: int,
        width: int | None = None,
        kind: str = "fourier",
        generator: torch.Generator | None = None,
        init: torch.Tensor | None = None,
        scale: float = 0.01,
        decay: float = 1.0,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        if kind not in PARAMETERIZATIONS:
            raise InputError(f"parameterization {kind!r} is unknown; pick one of {', '.join(PARAMETERIZATIONS)}")
        width = width or height
        if min(height, width) < 8:
            raise InputError(f"an image of {height}×{width} is too small to optimize; pass a size of at least 8")
        self.kind, self.height, self.width = kind, height, width
        self.color = COLOR_CORRELATION.to(device)
        if kind == "fourier":
            frequencies = _frequencies(height, width).to(device)
            spectrum_scale = 1.0 / frequencies.clamp_min(1.0 / max(height, width)) ** decay
            self.spectrum_scale = spectrum_scale * math.sqrt(height * width)
            shape: tuple[int, ...] = (count, 3, height, width // 2 + 1, 2)
        else:
            shape = (count, 3, height, width)
        noise = torch.randn(shape, generator=generator) * scale
        self.tensor = noise.to(device).requires_grad_(True)
        if init is not None:
            self.set_images(init)

    def parameters_to_optimize(self) -> list[torch.Tensor]:
        return [self.tensor]

    def _raw(self) -> torch.Tensor:
        """The pre-sigmoid image [N,3,H,W] in decorrelated colour space."""
        if self.kind == "pixel":
            return self.tensor
        spectrum = torch.view_as_complex(self.tensor) * self.spectrum_scale
        return torch.fft.irfft2(spectrum, s=(self.height, self.width)) / 4.0

    def forward(self) -> torch.Tensor:
        raw = self._raw()
        if self.kind == "fourier":
            raw = torch.einsum("nchw,dc->ndhw", raw, self.color)
        return torch.sigmoid(raw)

    @torch.no_grad()
    def set_images(self, images: torch.Tensor) -> None:
        """Make the parameterization show `images` ([N,3,H,W] or [3,H,W] in [0, 1], broadcast over the batch)."""
        images = images.to(self.tensor.device, torch.float32)
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if tuple(images.shape[-2:]) != (self.height, self.width):
            images = F.interpolate(images, size=(self.height, self.width), mode="bilinear", align_corners=False)
        logits = torch.logit(images.clamp(1e-3, 1 - 1e-3)).expand(self.tensor.shape[0], -1, -1, -1)
        if self.kind == "pixel":
            self.tensor.copy_(logits)
            return
        decorrelated = torch.einsum("ndhw,dc->nchw", logits, torch.linalg.inv(self.color).T)
        spectrum = torch.fft.rfft2(decorrelated * 4.0) / self.spectrum_scale
        self.tensor.copy_(torch.view_as_real(spectrum))

    @torch.no_grad()
    def blur(self, sigma: float) -> None:
        """Blur the current images in place (Yosinski et al. 2015's periodic Gaussian blur)."""
        if sigma > 0:
            self.set_images(gaussian_blur(self.forward(), sigma))


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N,C,H,W] images with reflected borders."""
    radius = max(1, math.ceil(2.5 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def random_transform(
    images: torch.Tensor,
    generator: torch.Generator,
    jitter: float = 0.0,
    scale: float = 0.0,
    rotate: float = 0.0,
) -> torch.Tensor:
    """Transformation robustness: each image shifted by up to `jitter` px, scaled by 1±`scale`, rotated by up to
    ±`rotate` degrees, all in one differentiable resampling (reflected borders). No-ops cost nothing."""
    if jitter <= 0 and scale <= 0 and rotate <= 0:
        return images
    count, _, height, width = images.shape

    def uniform(bound: float) -> torch.Tensor:
        return (torch.rand(count, generator=generator) * 2 - 1) * bound

    angle = uniform(math.radians(rotate))
    factor = 1 + uniform(scale)
    shift_x, shift_y = uniform(2 * jitter / width), uniform(2 * jitter / height)
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta.to(images.device, images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels (per image, summed over the batch)."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(1)
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(1)
    return (dx + dy).sum()


def l2_penalty(images: torch.Tensor) -> torch.Tensor:
    """Mean squared distance from mid-gray (per image, summed over the batch)."""
    return ((images - 0.5) ** 2).flatten(1).mean(1).sum()


def check_range(name: str, value: float, low: float, high: float | None = None) -> float:
    """`value` as a float if low ≤ value (≤ high), else a one-line InputError."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InputError(f"{name}={value!r} is out of range; pass a number {bound}")
    return float(value)


def check_steps(steps: int) -> int:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise InputError(f"steps={steps!r} is not a step count; pass a whole number ≥ 0")
    return steps


def grad_of(loss: torch.Tensor, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d tensors, without touching anything else's `.grad` (the model's parameters get none)."""
    return list(torch.autograd.grad(loss, list(tensors)))


def layer_output(model: torch.nn.Module, module: torch.nn.Module, call: int, batch: torch.Tensor) -> torch.Tensor:
    """The output of the `call`-th call of `module` when `model` runs on `batch`, with its autograd graph; the
    forward stops there. The hook is removed on exit, even on error."""
    return tapped_forward(model, {"layer": (module, call)}, batch, keep_graph=True)[1]["layer"]
