"""CodeInversion: reconstructions of one image from its code at several layers, shallow to deep, side by side and
live (Mahendran & Vedaldi 2015). What survives at a layer is what that layer keeps."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
import traitlets
from torch import nn

from .. import render
from ..backend import Inspector
from ..backend.images import ImageLike
from ..errors import InputError
from ..methods.image_params import PARAMETERIZATIONS, check_range, to_uint8
from ..methods.invariance import default_layers
from ..methods.invert import INVERSION_DEFAULTS, Inverter
from .activation_maximization import BackgroundOptimization
from .arrays import Array, array_message
from .base import front_end
from .defaults import as_inspector, default_image

DEFAULT_SIZE = 128
"""px; Lite0 inverts about 3× faster at 128 than at 224. A smaller image or a fixed-size model keeps its own size."""


class CodeInversion(BackgroundOptimization):
    """Invert `image`'s code at each of `selected_layers` (the constructor's `layers=`; default: four from shallow
    to deep; `layer_names` are the layers to pick from) at `size` px (smaller is faster; default `DEFAULT_SIZE`, or
    the image's own size where that is smaller or the model takes one size only), all advancing together in the
    background: `steps` more per run, the view refreshed every `every`.
    `param`, `lr` and `tv` are the optimizer and total-variation prior of `cnnwidgets.methods.invert`."""

    _esm = front_end("code_inversion")

    selected_layers = traitlets.List().tag(sync=True)
    layer_names = traitlets.List().tag(sync=True)
    param = traitlets.Enum(list(PARAMETERIZATIONS), INVERSION_DEFAULTS.param).tag(sync=True)
    lr = traitlets.Float(INVERSION_DEFAULTS.lr).tag(sync=True)
    tv = traitlets.Float(INVERSION_DEFAULTS.tv).tag(sync=True)
    size = traitlets.Int(DEFAULT_SIZE).tag(sync=True)
    original = Array().tag(sync=True)
    reconstructions = Array().tag(sync=True)
    psnr = traitlets.List().tag(sync=True)
    distances = traitlets.List().tag(sync=True)

    SETTINGS = ("selected_layers", "param", "lr", "tv", "size")

    def __init__(self, inspector: Inspector | nn.Module | None = None, image: ImageLike | None = None, *,
                 layers: Sequence[str] | None = None, **kwargs: object) -> None:
        self.inspector = as_inspector(inspector)
        self._batch = self.inspector.preprocess(default_image(image)).clone()
        kwargs["selected_layers"] = list(layers) if layers is not None else default_layers(self.inspector)
        kwargs.setdefault("steps", 100)
        kwargs.setdefault("size", self.inspector.input_size[0] if self.inspector.input_size else min(DEFAULT_SIZE, self._batch.shape[-1]))
        super().__init__(**kwargs)
        self._setup_background()
        self.layer_names = self.inspector.layer_names
        self.inverters: list[Inverter] = []
        with self._working():
            self._make()
            self._publish()
        self.observe(lambda _change: self.reset(), list(self.SETTINGS))

    @traitlets.validate("selected_layers")
    def _check_layers(self, proposal: dict) -> list:
        names = list(proposal["value"])
        if not names:
            raise InputError("selected_layers is empty; pass at least one layer name, e.g. ['_stem_act', '_head_act']")
        return [self.inspector.layer(name).name for name in names]

    @traitlets.validate("size")
    def _check_size(self, proposal: dict) -> int:
        if not 16 <= proposal["value"] <= 1024:
            raise InputError(f"size={proposal['value']} is out of range; pick 16..1024 px")
        return proposal["value"]

    @traitlets.validate("lr", "tv")
    def _check_rates(self, proposal: dict) -> float:
        low, high = (1e-6, 10.0) if proposal["trait"].name == "lr" else (0.0, None)
        return check_range(proposal["trait"].name, proposal["value"], low, high)

    def _make(self) -> None:
        batch = self._batch
        if batch.shape[-1] != self.size or batch.shape[-2] != self.size:
            batch = F.interpolate(batch, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        inspector = self._private_inspector()
        self.inverters = [Inverter(inspector, batch, layer, param=self.param, lr=self.lr, tv=self.tv) for layer in self.selected_layers]

    def _advance(self, steps: int, stop: Callable[[], bool]) -> None:
        for inverter in self.inverters:
            inverter.step(steps, stop=stop)

    def _done(self) -> int:
        return min((inverter.steps_done for inverter in self.inverters), default=0)

    def _publish(self) -> None:
        results = [inverter.result() for inverter in self.inverters]
        with self.hold_trait_notifications():
            self.original = array_message(to_uint8(results[0].original.unsqueeze(0))[0].numpy())
            pictures = torch.stack([result.picture for result in results]).numpy()
            self.reconstructions = array_message(pictures, layers=[r.layer for r in results], step=self._done())
            self.psnr = [round(r.psnr, 2) for r in results]
            self.distances = [round(r.code_distance, 4) for r in results]

    def results(self):
        """The current `InversionResult` of each layer."""
        return [inverter.result() for inverter in self.inverters]

    def _figure_png(self) -> bytes:
        import matplotlib.pyplot as plt

        pictures = self.reconstructions.array
        figure, axes = plt.subplots(1, len(pictures) + 1, figsize=(3 * (len(pictures) + 1), 3.4))
        axes[0].imshow(self.original.array)
        axes[0].set_title("original", fontsize=9)
        for axis, picture, layer, value in zip(axes[1:], pictures, self.reconstructions["layers"], self.psnr):
            axis.imshow(picture)
            axis.set_title(f"{layer}\nPSNR {value:.1f} dB", fontsize=9)
        for axis in axes:
            axis.axis("off")
        figure.suptitle(f"reconstructions from each layer's code after {self.step} steps", fontsize=10)
        return render.figure_png(figure)
