"""Fooling the network: FGSM and PGD attacks (Goodfellow et al. 2014; Madry et al. 2017), fooling images grown from
noise (Nguyen et al. 2015; CS231n), and input saliency to compare where the network looks before and after.

Attacks work in pixel space, images in [0, 1] (the model's normalization is applied on the way in), so `epsilon`
is in pixel units: 8/255 means no pixel changes by more than 8 levels out of 255. Untargeted attacks push the
loss of the true class up (default: the top prediction on the clean image); targeted ones push the loss of the
target class down. Formulas as in Captum's `FGSM` and `PGD`:

    untargeted: x' = clip(x + ε·sign(∇ₓ L(x, y)))        targeted: x' = clip(x − ε·sign(∇ₓ L(x, t)))

with L the cross-entropy (−log softmax) and gradient entries of magnitude ≤ 1e-6 treated as zero. PGD repeats
steps of `step_size` and projects back into the ε-ball around x and into [0, 1]. The model is never modified
(eval mode restored, `torch.autograd.grad` w.r.t. the image only); the input image is not changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..backend.hooks import eval_mode
from ..backend.inspector import class_scores
from ..errors import InputError, model_errors
from .gradients import saliency as input_saliency
from .image_params import (
    ModelInput,
    check_range,
    check_steps,
    default_size,
    grad_of,
    to_uint8,
)
from .reduce import display_map

ZERO_GRADIENT = 1e-6
"""Gradient entries this small are taken as zero (no step there), as in Captum."""


@dataclass
class AttackResult:
    """Clean and adversarial images (display space, [1,3,H,W] in [0, 1]) with what the model says about each."""

    method: str
    original: torch.Tensor
    adversarial: torch.Tensor
    epsilon: float
    label: int  # the true class (untargeted) or the target class (targeted)
    label_name: str
    targeted: bool
    original_top: list[tuple[str, float]]
    adversarial_top: list[tuple[str, float]]
    label_probability: tuple[float, float]  # probability of `label` before and after
    steps: int = 1

    @property
    def perturbation(self) -> torch.Tensor:
        """adversarial − original, in pixel units ([-ε, ε])."""
        return self.adversarial - self.original

    @property
    def linf(self) -> float:
        """The largest pixel change, in [0, 1] units (× 255 for levels)."""
        return float(self.perturbation.abs().max())

    @property
    def flipped(self) -> bool:
        """Whether the top prediction changed (untargeted) or became the target (targeted)."""
        before, after = self.original_top[0][0], self.adversarial_top[0][0]
        return after == self.label_name if self.targeted else before != after

    def magnified(self) -> torch.Tensor:
        """The perturbation stretched for display: 0.5 gray is no change, ±ε reaches 0 and 1."""
        bound = max(self.linf, 1e-12)
        return (0.5 + self.perturbation / (2 * bound)).clamp(0, 1)

    def pictures(self) -> dict[str, torch.Tensor]:
        """[H,W,3] uint8 pictures: original, magnified perturbation, adversarial."""
        return {"original": to_uint8(self.original)[0], "perturbation": to_uint8(self.magnified())[0],
                "adversarial": to_uint8(self.adversarial)[0]}


def _setup(inspector, image) -> tuple[ModelInput, torch.Tensor]:
    to_model = ModelInput.of(inspector)
    return to_model, to_model.to_display(inspector.preprocess(image).clone())


def _loss_gradient(model, to_model: ModelInput, images: torch.Tensor, label: int) -> torch.Tensor:
    """∇ of the cross-entropy of class `label` w.r.t. display images, taken w.r.t. the images only."""
    x = images.detach().clone().requires_grad_(True)
    with eval_mode(model), torch.enable_grad(), model_errors(tuple(x.shape)):
        scores = class_scores(model(to_model(x)))
        loss = F.cross_entropy(scores, torch.full((len(x),), label, device=scores.device), reduction="sum")
        (gradient,) = grad_of(loss, [x])
    return gradient


def _signed_step(gradient: torch.Tensor, size: float, targeted: bool) -> torch.Tensor:
    step = size * torch.sign(gradient) * (gradient.abs() > ZERO_GRADIENT)
    return -step if targeted else step


def _label(inspector, original: torch.Tensor, to_model: ModelInput, target, targeted: bool) -> int:
    if targeted:
        if target is None:
            raise InputError("a targeted attack needs a target class; pass target='goldfish' (or an index)")
        return inspector.class_index(target)
    return inspector.class_index(target, to_model(original))


def _result(inspector, method: str, original, adversarial, to_model, epsilon, label, targeted, steps) -> AttackResult:
    probabilities = inspector.batch_logits(to_model(torch.cat([original, adversarial]))).softmax(-1)

    def top(p: torch.Tensor) -> list[tuple[str, float]]:
        best = p.topk(min(5, len(p)))
        return [(inspector.label(int(i)), float(v)) for v, i in zip(best.values, best.indices)]

    return AttackResult(method, original, adversarial, epsilon, label, inspector.label(label), targeted, top(probabilities[0]),
                        top(probabilities[1]), (float(probabilities[0, label]), float(probabilities[1, label])), steps)


def fgsm(inspector, image, epsilon: float = 8 / 255, target: int | str | None = None, targeted: bool = False) -> AttackResult:
    """Fast gradient sign method: one step of size `epsilon` (pixel units in [0, 1]); see the module doc.

    `target` is the true class for an untargeted attack (default: the clean top prediction) or the class to
    reach when `targeted`.
    """
    check_range("epsilon", epsilon, 0.0, 1.0)
    to_model, original = _setup(inspector, image)
    label = _label(inspector, original, to_model, target, targeted)
    gradient = _loss_gradient(inspector.model, to_model, original, label)
    adversarial = (original + _signed_step(gradient, epsilon, targeted)).clamp(0, 1).detach()
    return _result(inspector, "FGSM", original, adversarial, to_model, float(epsilon), label, targeted, 1)


def pgd(
    inspector,
    image,
    epsilon: float = 8 / 255,
    *,
    step_size: float | None = None,
    steps: int = 10,
    target: int | str | None = None,
    targeted: bool = False,
    random_start: bool = False,
    seed: int = 0,
) -> AttackResult:
    """Projected gradient descent: `steps` signed steps of `step_size` (default ε/4), each projected back into the
    ε-ball (L∞) around the image and into [0, 1]; `random_start` begins at a uniform point of the ball (seeded)."""
    check_range("epsilon", epsilon, 0.0, 1.0)
    check_steps(steps)
    step_size = epsilon / 4 if step_size is None else check_range("step_size", step_size, 0.0, 1.0)
    to_model, original = _setup(inspector, image)
    label = _label(inspector, original, to_model, target, targeted)
    adversarial = original.clone()
    if random_start:
        generator = torch.Generator().manual_seed(seed)
        noise = (torch.rand(original.shape, generator=generator) * 2 - 1) * epsilon
        adversarial = (adversarial + noise.to(original.device)).clamp(0, 1)
    for _ in range(steps):
        gradient = _loss_gradient(inspector.model, to_model, adversarial, label)
        adversarial = adversarial + _signed_step(gradient, step_size, targeted)
        adversarial = torch.min(torch.max(adversarial, original - epsilon), original + epsilon).clamp(0, 1).detach()
    return _result(inspector, "PGD", original, adversarial, to_model, float(epsilon), label, targeted, steps)


def fooling_image(
    inspector,
    target: int | str,
    *,
    steps: int = 50,
    step_size: float = 2 / 255,
    size: int | None = None,
    confidence: float = 0.99,
    seed: int = 0,
) -> AttackResult:
    """An image grown from random noise until the model calls it `target` with at least `confidence` (or `steps`
    run out): targeted signed-gradient steps with no bound on the change. Its "original" is the noise."""
    check_steps(steps)
    check_range("step_size", step_size, 0.0, 1.0)
    check_range("confidence", confidence, 0.0, 1.0)
    label = inspector.class_index(target)
    size = size or default_size(inspector)
    to_model = ModelInput.of(inspector)
    generator = torch.Generator().manual_seed(seed)
    noise = (0.5 + (torch.rand(1, 3, size, size, generator=generator) - 0.5) * 0.5).to(inspector.device)
    image, done = noise.clone(), 0
    for done in range(1, steps + 1):
        gradient = _loss_gradient(inspector.model, to_model, image, label)
        image = (image + _signed_step(gradient, step_size, targeted=True)).clamp(0, 1).detach()
        if done % 5 == 0 and float(inspector.batch_logits(to_model(image)).softmax(-1)[0, label]) >= confidence:
            break
    return _result(inspector, "fooling image", noise, image, to_model, float(step_size * done), label, True, done)


def saliency(inspector, images: torch.Tensor, target: int | str | None = None) -> torch.Tensor:
    """[N,H,W] display maps in [0, 1] of display images [N,3,H,W] in [0, 1], to compare an image before and after an
    attack: each image goes to model input (`ModelInput`), then through the shared vanilla gradient
    (`methods.gradients.saliency`) and reducer (`methods.reduce.display_map`), so the maps are exactly the ones the
    saliency widgets show. `target` None means each image's own top class."""
    to_model = ModelInput.of(inspector)
    batch = to_model(images.detach())
    return torch.stack([display_map(input_saliency(inspector, batch[i:i + 1], target)) for i in range(len(batch))])
