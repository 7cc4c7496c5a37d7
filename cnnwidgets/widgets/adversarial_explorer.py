"""AdversarialExplorer: FGSM and PGD attacks with an epsilon slider, the perturbation magnified, predictions and
saliency before and after, and fooling images grown from noise (CS231n; Goodfellow et al. 2014; Nguyen et al. 2015)."""

from __future__ import annotations

import numpy as np
import torch
import traitlets
from torch import nn

from .. import render
from ..backend import Inspector
from ..backend.images import ImageLike
from ..errors import InputError
from ..methods.adversarial import AttackResult, fgsm, fooling_image, pgd, saliency
from ..methods.image_params import to_uint8
from .arrays import Array, array_message
from .base import CnnWidget, front_end
from .defaults import as_inspector, default_image

MAX_EPSILON = 32


class AdversarialExplorer(CnnWidget):
    """Attack the image: `method` "fgsm" or "pgd" (`steps` iterations), `epsilon` in pixel levels out of 255,
    untargeted (`target` -1: away from the top class) or toward class `target` (an index; the constructor also takes
    a name). Shows original, magnified perturbation and adversarial image with their top-5 and saliency maps.
    `fool()` (or the button) grows an image of class `fool_target` (an index, or a name to the constructor) from noise."""

    _esm = front_end("adversarial_explorer")
    ACTIONS = ("fool",)

    method = traitlets.Enum(["fgsm", "pgd"], "pgd").tag(sync=True)
    epsilon = traitlets.Int(8).tag(sync=True)
    steps = traitlets.Int(10).tag(sync=True)
    target = traitlets.Int(-1).tag(sync=True)
    labels = traitlets.List().tag(sync=True)
    original = Array().tag(sync=True)
    perturbation = Array().tag(sync=True)
    adversarial = Array().tag(sync=True)
    saliency_original = Array().tag(sync=True)
    saliency_adversarial = Array().tag(sync=True)
    original_top = traitlets.List().tag(sync=True)
    adversarial_top = traitlets.List().tag(sync=True)
    summary = traitlets.Dict().tag(sync=True)
    fool_target = traitlets.Int(0).tag(sync=True)
    fooling = Array().tag(sync=True)
    fooling_top = traitlets.List().tag(sync=True)

    def __init__(self, inspector: Inspector | nn.Module | None = None, image: ImageLike | None = None, *,
                 target: int | str | None = None, fool_target: int | str | None = None, **kwargs: object) -> None:
        self.inspector = as_inspector(inspector)
        self._batch = self.inspector.preprocess(default_image(image)).clone()
        labels = [self.inspector.label(i) for i in range(len(self.inspector.logits(self._batch)))]
        self._classes = len(labels)
        if target is not None and target != -1:
            kwargs["target"] = self.inspector.class_index(target, self._batch)
        if fool_target is None:  # the embedded model's goldfish, else the first class
            fool_target = "goldfish" if "goldfish" in labels else 0
        kwargs["fool_target"] = self.inspector.class_index(fool_target, self._batch)
        self.result: AttackResult | None = None
        self.fool_result: AttackResult | None = None
        super().__init__(**kwargs)
        self.labels = labels
        if self.result is None:  # a non-default attack setting above already ran the attack through its observer
            self._attack()

    @traitlets.validate("epsilon")
    def _check_epsilon(self, proposal: dict) -> int:
        if not 0 <= proposal["value"] <= MAX_EPSILON:
            raise InputError(f"epsilon={proposal['value']} is out of range; pick 0..{MAX_EPSILON} (pixel levels out of 255)")
        return proposal["value"]

    @traitlets.validate("steps")
    def _check_steps(self, proposal: dict) -> int:
        if not 1 <= proposal["value"] <= 100:
            raise InputError(f"steps={proposal['value']} is out of range; pick 1..100")
        return proposal["value"]

    @traitlets.validate("target", "fool_target")
    def _check_target(self, proposal: dict) -> int:
        value = proposal["value"]
        if value == -1 and proposal["trait"].name == "target":
            return value  # untargeted
        if not 0 <= value < self._classes:
            untargeted = "-1 (untargeted) or " if proposal["trait"].name == "target" else ""
            raise InputError(f"{proposal['trait'].name}={value} is out of range; pick {untargeted}a class index 0..{self._classes - 1}")
        return value

    @traitlets.observe("method", "epsilon", "steps", "target")
    def _on_attack(self, _change: dict) -> None:
        self._attack()

    def _attack(self) -> None:
        with self._working():
            epsilon, targeted = self.epsilon / 255, self.target != -1
            target = self.target if targeted else None
            if self.method == "fgsm":
                result = fgsm(self.inspector, self._batch, epsilon, target=target, targeted=targeted)
            else:
                result = pgd(self.inspector, self._batch, epsilon, steps=self.steps, target=target, targeted=targeted)
            maps = saliency(self.inspector, torch.cat([result.original, result.adversarial]))
            pictures = result.pictures()
            self.result = result
            with self.hold_trait_notifications():
                self.original = array_message(pictures["original"].numpy())
                self.perturbation = array_message(pictures["perturbation"].numpy(), linf=round(result.linf * 255, 2))
                self.adversarial = array_message(pictures["adversarial"].numpy())
                self.saliency_original = array_message(_gray(maps[0]))
                self.saliency_adversarial = array_message(_gray(maps[1]))
                self.original_top = _top(result.original_top)
                self.adversarial_top = _top(result.adversarial_top)
                self.summary = {"method": result.method, "epsilon": self.epsilon, "flipped": result.flipped,
                                "label": result.label_name, "targeted": result.targeted,
                                "before": result.label_probability[0], "after": result.label_probability[1],
                                "linf": round(result.linf * 255, 2)}

    def fool(self, steps: int = 50) -> AttackResult:
        """Grow an image of class `fool_target` from noise and show it with its top-5."""
        with self._working():
            size = self._batch.shape[-1]
            result = fooling_image(self.inspector, self.fool_target, steps=steps, size=size)
            self.fool_result = result
            self.fooling = array_message(to_uint8(result.adversarial)[0].numpy(), steps=result.steps, label=result.label_name)
            self.fooling_top = _top(result.adversarial_top)
        return result

    def _figure_png(self) -> bytes:
        import matplotlib.pyplot as plt

        panels = [("original", self.original, self.original_top), ("perturbation (magnified)", self.perturbation, None),
                  ("adversarial", self.adversarial, self.adversarial_top),
                  ("saliency before", self.saliency_original, None), ("saliency after", self.saliency_adversarial, None)]
        if self.fooling:
            panels.append((f"fooling image ({self.fooling['steps']} steps)", self.fooling, self.fooling_top))
        figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.8))
        for axis, (title, message, top) in zip(axes, panels):
            picture = message.array
            axis.imshow(picture, cmap="magma" if picture.ndim == 2 else None)
            if top:
                title += "\n" + "\n".join(f"{p['label']} {p['probability']:.2f}" for p in top[:2])
            axis.set_title(title, fontsize=9)
            axis.axis("off")
        summary = self.summary
        figure.suptitle(f"{summary['method']} ε = {summary['epsilon']}/255: p({summary['label']}) "
                        f"{summary['before']:.2f} → {summary['after']:.2f}", fontsize=10)
        return render.figure_png(figure)


def _gray(values: torch.Tensor) -> np.ndarray:
    return (values.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _top(pairs: list[tuple[str, float]]) -> list[dict]:
    return [{"label": label, "probability": probability} for label, probability in pairs]
