"""CorrespondenceExplorer: click a point in one image, see its best match in the other by nearest neighbour of
the feature vectors at a chosen layer, with the similarity over the whole second image; and, on a synthetic
affine warp with known ground truth, the keypoint-transfer accuracy of every layer from shallow to deep."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch.nn.functional as F
import traitlets
from torch import nn

from .. import render
from ..backend import Inspector
from ..backend.images import ImageLike
from ..backend.preprocess import display_batch
from ..errors import InputError
from ..methods.correspondence import (
    affine_matrix,
    affine_warp,
    check_points,
    correspondence,
    default_layers,
    keypoint_transfer,
    matched_batches,
    spatial_size,
)
from .base import CnnWidget, array_message, front_end
from .defaults import as_inspector, default_image

DEFAULT_WARP = {"angle": 20.0, "scale": 1.2, "shift": [0.0, 0.0]}
"""The warp the accuracy curve uses by default (and image b when none is given): large enough that depth matters."""


class CorrespondenceExplorer(CnnWidget):
    """Images `image_a` and `image_b` (default: the cat, and the cat under `warp`) side by side. Setting `point`
    ([row, col] in image a's input pixels; a click in the browser) shows its best match in image b at `layer`,
    `score` its cosine similarity and `similarity` the map over image b (resized to the image, its lowest to
    highest cosine as 0…255; `similarity["grid"]` is the layer's h×w). `curve` is the keypoint-transfer accuracy
    per layer of `curve_layers` on image a under `warp`."""

    _esm = front_end("correspondence_explorer")

    image_a = traitlets.Dict().tag(sync=True)
    image_b = traitlets.Dict().tag(sync=True)
    layers = traitlets.List().tag(sync=True)
    layer = traitlets.Unicode("").tag(sync=True)
    point = traitlets.List([]).tag(sync=True)
    match = traitlets.List([]).tag(sync=True)
    score = traitlets.Float(0.0).tag(sync=True)
    similarity = traitlets.Dict().tag(sync=True)
    warp = traitlets.Dict().tag(sync=True)
    curve = traitlets.Dict().tag(sync=True)

    def __init__(self, inspector: Inspector | nn.Module | None = None, image_a: ImageLike | None = None,
                 image_b: ImageLike | None = None, *, curve_layers: Sequence[str] | None = None,
                 warp: Mapping[str, Any] | None = None, layer: str | None = None, point: Sequence[float] | None = None,
                 **kwargs: object) -> None:
        self.inspector = as_inspector(inspector)
        first = default_image(image_a)
        settings = checked_warp(warp or {})
        second: ImageLike
        if image_b is None:
            batch = self.inspector.preprocess(first).cpu()
            second = affine_warp(batch, affine_matrix(spatial_size(batch), settings["angle"], settings["scale"], settings["shift"]))
        else:
            second = image_b
        self._a, self._b = matched_batches(self.inspector, first, second)
        self.curve_layers = list(curve_layers) if curve_layers is not None else default_layers(self.inspector)
        super().__init__(**kwargs)
        spatial = [info for info in self.inspector.layers if len(info.shape) == 3]
        with self.hold_trait_notifications():
            self.set_trait("layers", [{"name": info.name, "shape": list(info.shape)} for info in spatial])
            self.image_a = array_message(display_batch(self._a, self.inspector.transform)[0].numpy())
            self.image_b = array_message(display_batch(self._b, self.inspector.transform)[0].numpy())
            self.layer = layer or self.curve_layers[len(self.curve_layers) // 2]
        self.warp = settings
        self.point = list(point) if point is not None else [self._a.shape[-2] // 2, self._a.shape[-1] // 2]

    @traitlets.validate("layer")
    def _check_layer(self, proposal: dict) -> str:
        info = self.inspector.layer(proposal["value"])
        if len(info.shape) != 3:
            raise InputError(f"layer {info.name!r} has no spatial map; pick one of the layers with [C,H,W] output")
        return info.name

    @traitlets.validate("point")
    def _check_point(self, proposal: dict) -> list[float]:
        return list(check_points([proposal["value"]], spatial_size(self._a))[0])

    @traitlets.validate("warp")
    def _check_warp(self, proposal: dict) -> dict[str, Any]:
        return checked_warp(proposal["value"])

    @traitlets.observe("layer", "point")
    def _on_point(self, _change: dict) -> None:
        if self.point and self.layer:
            with self._working():
                self._match()

    @traitlets.observe("warp")
    def _on_warp(self, _change: dict) -> None:
        with self._working():
            found = keypoint_transfer(self.inspector, self._a, self.curve_layers, angle=self.warp["angle"],
                                      scale=self.warp["scale"], shift=tuple(self.warp["shift"]))
            self.curve = {"layers": found.layers, "accuracy": found.accuracy, "error": found.error, "k": found.k,
                          "points": len(found.points), "warp": dict(self.warp)}

    def _match(self) -> None:
        found = correspondence(self.inspector, self._a, self._b, [tuple(self.point)], self.layer)
        size = tuple(self._b.shape[-2:])
        similarity = F.interpolate(found.similarity[:1].unsqueeze(0), size=size, mode="bilinear", align_corners=False)[0, 0]
        gray = render.scale_to_uint8(similarity, similarity.min(), similarity.max()).numpy()
        with self.hold_trait_notifications():
            self.match = [float(v) for v in found.matches[0]]
            self.score = found.scores[0]
            self.similarity = array_message(gray, grid=list(found.similarity.shape[-2:]))

    def _figure_png(self) -> bytes:
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(1, 3, figsize=(14, 4.4))
        a = np.frombuffer(self.image_a["data"], np.uint8).reshape(self.image_a["shape"])
        b = np.frombuffer(self.image_b["data"], np.uint8).reshape(self.image_b["shape"])
        similarity = np.frombuffer(self.similarity["data"], np.uint8).reshape(self.similarity["shape"])
        axes[0].imshow(a)
        axes[0].plot(self.point[1], self.point[0], "r+", ms=14, mew=2)
        axes[0].set_title(f"point {tuple(round(v) for v in self.point)}", fontsize=9)
        axes[1].imshow(b)
        axes[1].imshow(render.colorize(similarity, "magma"), alpha=0.5)
        axes[1].plot(self.match[1], self.match[0], "c+", ms=14, mew=2)
        axes[1].set_title(f"best match at {self.layer}: cosine {self.score:.2f}", fontsize=9)
        for axis in axes[:2]:
            axis.axis("off")
        curve = self.curve
        axes[2].plot(range(len(curve["layers"])), curve["accuracy"], "o-")
        axes[2].set_xticks(range(len(curve["layers"])), curve["layers"], rotation=30, ha="right", fontsize=7)
        axes[2].set_ylim(0, 1.05)
        axes[2].set_ylabel(f"fraction within {curve['k']:.0f} px")
        axes[2].set_title(f"keypoint transfer: angle {curve['warp']['angle']:g}°, scale {curve['warp']['scale']:g}", fontsize=9)
        return render.figure_png(figure)


def checked_warp(warp: Mapping[str, Any]) -> dict[str, Any]:
    """`warp` over DEFAULT_WARP with float angle, scale and shift [row, col], else a one-line InputError."""
    settings = {**DEFAULT_WARP, **warp}
    unknown = sorted(set(settings) - set(DEFAULT_WARP))
    if unknown:
        raise InputError(f"unknown warp settings {unknown}; pass angle, scale and shift")
    if not 0.25 <= float(settings["scale"]) <= 4:
        raise InputError(f"warp scale {settings['scale']} is out of range; pass 0.25 to 4")
    return {"angle": float(settings["angle"]), "scale": float(settings["scale"]), "shift": [float(v) for v in settings["shift"]]}
