"""LayerExplorer: every activation map of a layer, dead channels, and the layer's filters, for one image or clip."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import traitlets
from torch import nn
from tqdm.auto import tqdm

from .. import render
from ..backend import Inspector
from ..backend.images import ImageLike
from ..backend.layers import weights_layer
from ..errors import InputError
from ..methods import channel_stats, dead_on_all, filter_images, scale_maps
from ..methods.temporal import frame_spans
from .arrays import Array, array_message
from .base import CnnWidget, front_end, top_predictions
from .defaults import as_inspector, default_image
from .frames import check_frame, layer_steps


class LayerExplorer(CnnWidget):
    """Pick a layer, see all its activation maps for the image; click one to enlarge it; see the layer's filters.

    With no arguments it looks at the embedded EfficientNet-Lite0 and a photo of a cat; a bare model is wrapped
    in an `Inspector` with the default ImageNet preprocessing. `images` adds more
    images so channels dead on all of them are flagged too. `layer` and `channel` drive the view from Python.
    Switching layer or channel runs no new forward pass: all layers are captured once per image.

    On a video model (first conv a Conv3d) `image` is a clip and every layer's maps are [C,T',H,W]: `frame` picks
    the time step shown (of the layer's own T', which may be shorter than the clip), the view says which input
    frames that step depends on (`methods.temporal.frame_spans`), and a play button steps through them. All time
    steps of a layer travel to the browser at once, so moving the slider or playing redraws there with no round
    trip: C·T'·H'·W' bytes, 61 KB for the zoo's `motion.conv2.1`, 3.2 MB for r3d_18's `layer1` at 112 px.
    """

    _esm = front_end("layer_explorer")

    image = Array().tag(sync=True)
    predictions = traitlets.List().tag(sync=True)
    layers = traitlets.List().tag(sync=True)
    layer = traitlets.Unicode("").tag(sync=True)
    channel = traitlets.Int(-1).tag(sync=True)
    frame = traitlets.Int(0).tag(sync=True)
    maps = Array().tag(sync=True)
    filters = Array().tag(sync=True)
    filter_slice = traitlets.Int(-1).tag(sync=True)
    filter_in_channels = traitlets.Int(0).tag(sync=True)
    normalize = traitlets.Enum(["layer", "channel"], "layer").tag(sync=True)
    colormap = traitlets.Enum(list(render.COLORMAPS), "viridis").tag(sync=True)

    def __init__(
        self,
        inspector: Inspector | nn.Module | None = None,
        image: ImageLike | None = None,
        *,
        images: Sequence[ImageLike] = (),
        layer: str | None = None,
        channel: int = -1,
        frame: int = 0,
        **kwargs: object,
    ) -> None:
        self.inspector = as_inspector(inspector)
        self._images = [default_image(image), *images]
        state = self._image_state(self._images[0])
        dead_all = self._dead_on_all_images() if images else {}
        super().__init__(**kwargs)
        self._dead_all = dead_all
        with self.hold_trait_notifications():
            self.set_trait("layers", state["layers"])
            self.image, self.predictions = state["image"], state["predictions"]
            self.layer = layer if layer is not None else _default_layer(self.inspector)
        self.channel = channel
        self.frame = frame

    def set_image(self, image: ImageLike) -> None:
        """Show another image; on bad input the error is shown and the current view stays."""
        with self._working():
            state = self._image_state(image)
        self._images = [image, *self._images[1:]]
        self.frame = min(self.frame, self._steps() - 1)  # a shorter clip has fewer time steps
        self.image, self.predictions = state["image"], state["predictions"]
        self._show_layer()

    def _image_state(self, image: ImageLike) -> dict:
        """Everything that depends on the image alone; all layers are captured in one forward pass here."""
        inspector = self.inspector
        batch = inspector.preprocess(image)
        inspector.activations(batch, inspector.layer_names)  # one forward fills the cache for every layer
        return {
            "image": array_message(inspector.display_image(batch)),
            "predictions": top_predictions(inspector, inspector.logits(batch).softmax(-1)),
            "layers": [{"name": info.name, "shape": list(info.shape), "kind": info.kind} for info in inspector.layers],
        }

    def _dead_on_all_images(self) -> dict[str, list[bool]]:
        names = self.inspector.layer_names
        per_image = [self.inspector.activations(image, names) for image in tqdm(self._images, desc="images", leave=False)]
        return {name: dead_on_all(maps[name] for maps in per_image).tolist() for name in names}

    @traitlets.validate("layer")
    def _check_layer(self, proposal: dict) -> str:
        return self.inspector.layer(proposal["value"]).name

    @traitlets.validate("channel")
    def _check_channel(self, proposal: dict) -> int:
        channels = self.inspector.layer(self.layer).shape[0] if self.layer else 0
        if not -1 <= proposal["value"] < channels:
            raise InputError(f"channel {proposal['value']} is out of range; layer {self.layer!r} has channels 0..{channels - 1} (-1 for none)")
        return proposal["value"]

    @traitlets.validate("frame")
    def _check_frame(self, proposal: dict) -> int:
        return check_frame(proposal["value"], self._steps(), f"layer {self.layer!r}")

    def _steps(self) -> int:
        """Time steps of the current layer's maps (1 on an image model)."""
        return layer_steps(self.inspector.layer(self.layer).shape, self.inspector.is_video) if self.layer else 1

    @traitlets.validate("filter_slice")
    def _check_filter_slice(self, proposal: dict) -> int:
        if not -1 <= proposal["value"] < max(self.filter_in_channels, 1):
            raise InputError(f"filter_slice {proposal['value']} is out of range; pick -1 (mean) or 0..{self.filter_in_channels - 1}")
        return proposal["value"]

    @traitlets.observe("layer", "normalize")
    def _on_layer(self, change: dict) -> None:
        if change["name"] == "layer" and self.channel >= self.inspector.layer(self.layer).shape[0]:
            self.channel = -1
        if change["name"] == "layer":
            self.filter_slice = -1
            self.frame = min(self.frame, self._steps() - 1)
        self._show_layer()

    @traitlets.observe("filter_slice")
    def _on_filter_slice(self, _change: dict) -> None:
        self._show_filters()

    def _activations(self) -> torch.Tensor:
        return self.inspector.activations(self._images[0], self.layer)

    def _time_spans(self) -> list[list[int]] | None:
        """The input frames each time step of the layer covers (video models only; measured once per layer and clip
        shape, in the Inspector's memo)."""
        if not self.inspector.is_video or len(self.inspector.layer(self.layer).shape) != 4:
            return None
        return frame_spans(self.inspector, self.inspector.preprocess(self._images[0]), self.layer)

    def _show_layer(self) -> None:
        with self._working():
            activations = self._activations()
            # scale_maps and channel_stats take [C,...]: a clip's [C,T,H,W] maps are scaled over all time steps
            scaled, low, high = scale_maps(activations.flatten(1, -2) if activations.dim() == 4 else activations, self.normalize)
            stats: dict[str, object] = {key: value.tolist() for key, value in channel_stats(activations).items()}
            stats["dead_all"] = self._dead_all.get(self.layer)
            stats["n_images"] = len(self._images)
            self.maps = array_message(scaled.view(activations.shape).numpy(), **self.answer(
                layer=self.layer, low=low.tolist(), high=high.tolist(), stats=stats, spans=self._time_spans()))
        self._show_filters()

    def _show_filters(self) -> None:
        source = weights_layer(self.inspector.layers, self.layer)
        if source is None:
            self.filter_in_channels = 0
            self.filters = array_message(np.zeros((0, 0, 0, 1), np.uint8), source="", note="no convolution before this layer")
            return
        weight = self.inspector.model.get_submodule(source.module_name).weight
        assert isinstance(weight, torch.Tensor)
        self.filter_in_channels = weight.shape[1]
        if weight.dim() == 5:  # a Conv3d's [O,I,kt,kh,kw]: its kt time slices side by side, [O,I,kh,kt·kw]
            length = weight.shape[2]
            weight = weight.detach().permute(0, 1, 3, 2, 4).flatten(3)
            pictures, note = filter_images(weight, self.filter_slice)
            note += f"; {length} time slices side by side" if length > 1 else "; one time slice (no motion)"
        else:
            pictures, note = filter_images(weight, self.filter_slice)
        self.filters = array_message(pictures.numpy(), source=source.name, note=note)

    def _figure_png(self) -> bytes:
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(1, 4, figsize=(16, 4.4), gridspec_kw={"width_ratios": [1, 1.6, 1, 1.2]})
        image, maps, when = self.image.array, self.maps.array, ""
        if image.ndim == 4:  # a clip: the frame the shown time step centres on, and the maps of that step
            spans = self.maps.get("spans") or [[0, len(image) - 1]]
            span = spans[self.frame] or [0, len(image) - 1]
            image = image[(span[0] + span[-1]) // 2]
            maps = maps[:, self.frame] if maps.ndim == 4 else maps
            when = f", time step {self.frame} (input frames {span[0]}–{span[-1]})"
        axes[0].imshow(image)
        axes[0].set_title("\n".join(f"{p['label']} {p['probability']:.2f}" for p in self.predictions[:3]), fontsize=9)
        dead = sum(self.maps["stats"]["dead"])
        axes[1].imshow(render.colorize(render.tile(maps, fill=0), self.colormap))
        axes[1].set_title(f"{self.layer}: {len(maps)} maps, {dead} dead{when}", fontsize=9)
        if self.channel >= 0:
            stats = self.maps["stats"]
            axes[2].imshow(render.colorize(maps[self.channel], self.colormap))
            axes[2].set_title(f"channel {self.channel}: {stats['min'][self.channel]:.3g} … {stats['max'][self.channel]:.3g}", fontsize=9)
        filters = self.filters.array
        if len(filters):
            tiles = render.tile(filters if filters.shape[-1] == 3 else render.colorize(filters[..., 0], "coolwarm"))
            axes[3].imshow(tiles, interpolation="nearest")
            axes[3].set_title(f"filters of {self.filters['source']}", fontsize=9)
        for axis in axes:
            axis.axis("off")
        return render.figure_png(figure)


def _default_layer(inspector: Inspector) -> str:
    """The first activation layer (the maps after the first conv and ReLU, as in the CS231n figures)."""
    activations = [info.name for info in inspector.layers if info.kind == "activation"]
    return activations[0] if activations else inspector.layer_names[0]
