"""InvarianceProbe: translate, rotate and scale the image with sliders; see the top-5 live and, over each whole range,
how far several layers' codes move and how the true class's probability changes (Zeiler & Fergus 2014, Fig. 5)."""

from __future__ import annotations

from collections.abc import Sequence

import traitlets
from torch import nn

from .. import render
from ..backend import Inspector
from ..backend.images import ImageLike
from ..errors import InputError
from ..methods.image_params import ModelInput, to_uint8
from ..methods.invariance import KINDS, default_layers, invariance_curves, transform
from .arrays import Array, array_message
from .base import CnnWidget, front_end, top_predictions
from .defaults import as_inspector, default_image

RANGES = {"shift": (-60.0, 60.0), "angle": (-180.0, 180.0), "scale": (0.5, 2.0)}


class InvarianceProbe(CnnWidget):
    """Sliders `shift` (px, horizontal), `angle` (degrees) and `scale` (×) transform the image; the widget shows it
    with its top-5 predictions, and curves over each transformation's whole range (41 positions, one batched
    pass each) of the relative feature distance at `layers` and of the probability of `target` (default: the
    top class of the untransformed image). With no arguments: the embedded EfficientNet-Lite0 and the cat."""

    _esm = front_end("invariance_probe")

    image = Array().tag(sync=True)
    predictions = traitlets.List().tag(sync=True)
    shift = traitlets.Float(0.0).tag(sync=True)
    angle = traitlets.Float(0.0).tag(sync=True)
    scale = traitlets.Float(1.0).tag(sync=True)
    curves = traitlets.Dict().tag(sync=True)
    label = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self,
        inspector: Inspector | nn.Module | None = None,
        image: ImageLike | None = None,
        *,
        layers: Sequence[str] | None = None,
        target: int | str | None = None,
        positions: int = 41,
        **kwargs: object,
    ) -> None:
        self.inspector = as_inspector(inspector)
        self._batch = self.inspector.preprocess(default_image(image)).clone()
        self._to_display = ModelInput.of(self.inspector).to_display
        names = list(layers) if layers is not None else default_layers(self.inspector)
        computed = {kind: invariance_curves(self.inspector, self._batch, kind, layers=names, target=target,
                                            values=_values(kind, positions)) for kind in KINDS}
        first = computed["translate"]
        super().__init__(**kwargs)
        self.label = first.label
        self.curves = {
            "layers": names,
            "label": first.label,
            **{kind: {"values": c.values, "distances": c.distances, "probability": c.probability, "unit": c.unit}
               for kind, c in computed.items()},
        }
        self._curves = computed
        self._show()

    @traitlets.validate("shift", "angle", "scale")
    def _check_range(self, proposal: dict) -> float:
        name, value = proposal["trait"].name, proposal["value"]
        low, high = RANGES[name]
        if not low <= value <= high:
            raise InputError(f"{name}={value} is out of range; pick a value between {low} and {high}")
        return value

    @traitlets.observe("shift", "angle", "scale")
    def _on_transform(self, _change: dict) -> None:
        self._show()

    def transformed(self):
        """The transformed model input [1,C,H,W] for the current slider values."""
        return transform(self._batch, dx=self.shift, angle=self.angle, scale=self.scale)

    def _show(self) -> None:
        with self._working():
            batch = self.transformed()
            probabilities = self.inspector.batch_logits(batch).softmax(-1)[0]
            self.predictions = top_predictions(self.inspector, probabilities)
            self.image = array_message(to_uint8(self._to_display(batch))[0].numpy())

    def _figure_png(self) -> bytes:
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(1, 4, figsize=(17, 3.8))
        axes[0].imshow(self.image.array)
        axes[0].set_title(f"shift {self.shift:g} px, angle {self.angle:g}°, scale {self.scale:g}×\n"
                          + ", ".join(f"{p['label']} {p['probability']:.2f}" for p in self.predictions[:2]), fontsize=9)
        axes[0].axis("off")
        current = {"translate": self.shift, "rotate": self.angle, "scale": self.scale}
        for axis, kind in zip(axes[1:], KINDS):
            curves = self._curves[kind]
            for layer, distances in curves.distances.items():
                axis.plot(curves.values, distances, label=layer)
            axis.plot(curves.values, curves.probability, "k--", label=f"p({curves.label})")
            axis.axvline(current[kind], color="gray", lw=0.8)
            axis.set_xlabel(f"{kind} ({curves.unit})")
            axis.set_ylim(bottom=0)
            if kind == "scale":
                axis.set_xscale("log", base=2)
        axes[1].set_ylabel("relative feature distance / probability")
        axes[3].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
        return render.figure_png(figure)


def _values(kind: str, positions: int) -> list[float]:
    from ..methods.invariance import default_values

    return default_values(kind, positions)
