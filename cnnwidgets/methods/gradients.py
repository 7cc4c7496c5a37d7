"""Data-gradient attributions: vanilla gradient, SmoothGrad, integrated gradients, deconvnet, guided backprop.

Each takes `(inspector, image, target=None, **options)`; `target` is a class index, a class name, or None for
the top predicted class. Each returns the raw map [C,H,W] (on the CPU) in the model's input space, the space of
`inspector.preprocess(image)`; `methods.reduce.display_map` turns it into an [H,W] picture.

The model is never changed: gradients are taken w.r.t. the input with `torch.autograd.grad` (no `.grad` in the
parameters), in eval mode, with hooks that live for one call (see `cnnwidgets.backend.gradients`).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..backend.device import batch_size_for, batches
from ..backend.gradients import input_forward, input_gradients
from ..backend.images import ImageLike
from ..backend.inspector import Inspector
from ..errors import InputError

IG_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")
PROGRESS_AFTER = 64
"""Show a progress bar when a method runs more than this many forward-backward passes."""


def target_tensor(inspector: Inspector, target: int | str | None) -> torch.Tensor | None:
    """[1] class index for a given target (no forward pass needed), None to take the top class in the same pass."""
    if target is None:
        return None
    return torch.tensor([inspector.class_index(target)])


def saliency(inspector: Inspector, image: ImageLike, target: int | str | None = None) -> torch.Tensor:
    """The gradient of the class score w.r.t. the input pixels (Simonyan et al. 2013), [C,H,W]."""
    return _input_gradient(inspector, image, target, None, "saliency")


def guided_backprop(inspector: Inspector, image: ImageLike, target: int | str | None = None) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2014), [C,H,W].

    At each ReLU the gradient passes only where the forward input was positive and the gradient is positive
    (ReLU6: where the input was in (0, 6) and the gradient positive). Raises InputError for a model whose
    activations cannot all be hooked (SiLU, GELU, …) or that has no ReLU.
    """
    return _input_gradient(inspector, image, target, "guided", "guided_backprop")


def deconvnet(inspector: Inspector, image: ImageLike, target: int | str | None = None) -> torch.Tensor:
    """The deconvnet map (Zeiler & Fergus 2014), [C,H,W]: backward through each ReLU (and ReLU6) passes only the
    positive part of the gradient and ignores the forward mask."""
    return _input_gradient(inspector, image, target, "deconv", "deconvnet")


def _input_gradient(inspector: Inspector, image: ImageLike, target: int | str | None, rule: str | None, method: str) -> torch.Tensor:
    """[C,H,W]: the target score's gradient w.r.t. the image under ReLU `rule`, from the image's kept forward graph."""
    batch = inspector.preprocess(image)
    grad, _ = input_forward(inspector, batch, rule, method).gradient(target_tensor(inspector, target))
    return grad[0].cpu()


def _resolved_target(inspector: Inspector, image: ImageLike, target: int | str | None) -> torch.Tensor:
    """The target as a [1] tensor; None becomes the top class of the clean image (noisy copies may disagree)."""
    return torch.tensor([inspector.class_index(target, image)])


def _batch_size(inspector: Inspector, batch_size: int | None) -> int:
    size = batch_size or batch_size_for(inspector.device)
    if size < 1:
        raise InputError(f"batch_size must be at least 1, not {size}")
    return size


def _summed_gradients(inspector: Inspector, inputs: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                      batch_size: int, desc: str) -> torch.Tensor:
    """Σ_i weights[i] · ∂score/∂inputs[i] over an [N,C,H,W] stack, computed in batches."""
    total = torch.zeros_like(inputs[0])
    parts = batches(len(inputs), batch_size)
    model = inspector.model  # never the folded copy: the same call gives the same map (see input_forward)
    for part in tqdm(parts, desc=desc, leave=False, disable=len(inputs) <= PROGRESS_AFTER):
        chunk = inputs[part]
        grad, _ = input_gradients(model, chunk, target.expand(len(chunk)))
        total += (grad * weights[part].view(-1, 1, 1, 1).to(grad)).sum(0)
    return total


def smoothgrad(inspector: Inspector, image: ImageLike, target: int | str | None = None, *, samples: int = 25,
               noise: float = 0.15, seed: int = 0, batch_size: int | None = None) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017), [C,H,W]: the mean gradient over `samples` noisy copies of the input.

    The noise is Gaussian with standard deviation `noise` × (max − min) of the input (the paper's 10–20 %),
    drawn from a generator seeded with `seed` (the global RNG is untouched). Copies run in batches.
    """
    if samples < 1:
        raise InputError(f"samples must be at least 1, not {samples}")
    if noise < 0:
        raise InputError(f"noise must be a non-negative fraction of the input range, not {noise}")
    batch = inspector.preprocess(image)
    target_index = _resolved_target(inspector, batch, target)
    sigma = noise * float(batch.max() - batch.min())
    generator = torch.Generator().manual_seed(seed)
    noisy = batch + sigma * torch.randn((samples, *batch.shape[1:]), generator=generator).to(batch)
    weights = torch.full((samples,), 1 / samples)
    return _summed_gradients(inspector, noisy, target_index, weights, _batch_size(inspector, batch_size), "smoothgrad").cpu()


def _ig_points(steps: int, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(alphas, step weights) of the path integral from baseline (0) to input (1), as Captum defines them."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return torch.tensor(0.5 * (nodes + 1), dtype=torch.float32), torch.tensor(0.5 * weights, dtype=torch.float32)
    if steps < 2:
        raise InputError(f"{method} needs at least 2 steps, not {steps}")
    kind = method.removeprefix("riemann_")
    deltas = torch.full((steps,), 1 / steps)
    if kind == "trapezoid":
        deltas[0] /= 2
        deltas[-1] /= 2
        alphas = torch.linspace(0, 1, steps)
    elif kind == "left":
        alphas = torch.linspace(0, 1 - 1 / steps, steps)
    elif kind == "right":
        alphas = torch.linspace(1 / steps, 1, steps)
    else:
        alphas = torch.linspace(1 / (2 * steps), 1 - 1 / (2 * steps), steps)
    return alphas, deltas


def integrated_gradients(inspector: Inspector, image: ImageLike, target: int | str | None = None, *,
                         baseline: float | torch.Tensor | None = None, steps: int = 50,
                         method: str = "gausslegendre", batch_size: int | None = None) -> torch.Tensor:
    """Integrated gradients (Sundararajan et al. 2017), [C,H,W]: (input − baseline) × the path-averaged gradient.

    `baseline` is a number (in model-input units; None or 0 is Captum's default, the all-zero input), or a
    [C,H,W] / [1,C,H,W] tensor. `method` is the quadrature, as in Captum: "gausslegendre" (default) or
    "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle". Path points run in batches.
    """
    if method not in IG_METHODS:
        raise InputError(f"unknown integration method {method!r}; pick one of {', '.join(IG_METHODS)}")
    if steps < 1:
        raise InputError(f"steps must be at least 1, not {steps}")
    batch = inspector.preprocess(image)
    if baseline is None:
        base = torch.zeros_like(batch)
    elif isinstance(baseline, torch.Tensor):
        if baseline.dim() not in (3, 4) or baseline.numel() != batch.numel() or baseline.shape[-3:] != batch.shape[1:]:
            raise InputError(f"a baseline of shape {tuple(baseline.shape)} does not fit the input {tuple(batch.shape[1:])}; "
                             "pass a number or a tensor of the input's shape")
        base = baseline.detach().to(batch).reshape(batch.shape)
    else:
        base = torch.full_like(batch, float(baseline))
    target_index = _resolved_target(inspector, batch, target)
    alphas, weights = _ig_points(steps, method)
    path = base + alphas.to(batch).view(-1, 1, 1, 1) * (batch - base)
    averaged = _summed_gradients(inspector, path, target_index, weights, _batch_size(inspector, batch_size), "integrated gradients")
    return ((batch - base)[0] * averaged).cpu()
