"""TopActivations: the dataset images (or clips) that most activate one neuron, cropped to its receptive field."""

from __future__ import annotations

import random
from collections import OrderedDict

import numpy as np
import PIL.Image
import traitlets
from torch import nn

from .. import render
from ..backend.clip_field import ClipBox, ClipField, clip_field
from ..backend.index import Index
from ..errors import InputError
from ..methods.deconv import deconv_projection, projection_picture
from .arrays import Array, array_message
from .base import CnnWidget, front_end

CROP_MAX = 112
"""Crops bigger than this (in input pixels) are downscaled to it before they are sent; smaller ones go as they are."""
OUTSIDE = 128
"""Gray for the part of a receptive field that lies outside the image (the zero padding the unit also sees); in a
projection picture 128 is also zero, so the outside reads as "no signal" there too."""
PROJECTIONS_KEPT = 32
"""How many neurons' deconvnet projections stay cached, so going back to a neuron needs no new backward pass."""
SHOW_MODES = ("image", "projection", "overlay")
STRIP_FRAMES = 8
"""At most this many frames of a clip's field go in its filmstrip (evenly spaced, first and last included): 8 frames of
a 96-px cell side by side still fit a notebook's width."""
STRIP_GAP = 2
"""White pixels between the frames of a filmstrip."""


def field_crop(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The square `box` (top, left, bottom, right; may reach outside) of an H×W×3 image, outside filled gray."""
    top, left, bottom, right = (round(v) for v in box)
    crop = np.full((bottom - top, right - left, 3), OUTSIDE, np.uint8)
    height, width = image.shape[:2]
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(bottom, height), min(right, width)
    if y1 > y0 and x1 > x0:
        crop[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    return crop


def clip_field_crop(frames: np.ndarray, box: ClipBox) -> np.ndarray:
    """The frames × rows × cols `box` (first frame, top, left, end frame, bottom, right; may reach outside) of
    [T,H,W,3] frames, outside filled gray (frames before the first or after the last too: the padding)."""
    first, top, left, end, bottom, right = box
    crop = np.full((end - first, bottom - top, right - left, 3), OUTSIDE, np.uint8)
    length = len(frames)
    for t in range(max(first, 0), min(end, length)):
        crop[t - first] = field_crop(frames[t], (top, left, bottom, right))
    return crop


def filmstrip(crop: np.ndarray, side: int) -> np.ndarray:
    """[side, F·side + gaps, 3]: at most STRIP_FRAMES frames of a [T,h,w,3] crop, each fitted to side × side, left to
    right with STRIP_GAP white columns between them."""
    count = min(STRIP_FRAMES, len(crop))
    picks = sorted({round(i * (len(crop) - 1) / max(count - 1, 1)) for i in range(count)})
    strip = np.full((side, len(picks) * (side + STRIP_GAP) - STRIP_GAP, 3), 255, np.uint8)
    for slot, t in enumerate(picks):
        strip[:, slot * (side + STRIP_GAP):slot * (side + STRIP_GAP) + side] = _fit(crop[t], side)
    return strip


def _fit(image: np.ndarray, side: int) -> np.ndarray:
    if image.shape[0] == side and image.shape[1] == side:
        return image
    return np.asarray(PIL.Image.fromarray(image).resize((side, side), PIL.Image.Resampling.BILINEAR))


class TopActivations(CnnWidget):
    """For one neuron (a channel of a layer), the k dataset images that activate it most, each cropped to the
    neuron's receptive field around the position of its maximum, with the activation under it — like the POOL5
    figure of Girshick et al. in the CS231n notes. Click a crop to see the whole image with the field outlined.

    `index` comes from `inspector.index(dataset)`; `layer` and `channel` pick the neuron (default: the last
    indexed layer, channel 0) and can be set from Python, like `selected` (which crop is enlarged, -1 none).

    `show` puts the neuron's deconvnet projection (Zeiler & Fergus 2014: the unit's activation sent back to pixel
    space through max-pool switches, rectification and transposed filters) in each crop: "image" (the default)
    shows the crops alone, "projection" the projection alone, "overlay" the projection over the image at
    `opacity`. Projections are computed only while `show` is not "image", once per neuron (cached); switching
    between projection and overlay or moving the opacity redraws in the browser without asking Python.
    The index must have its model and dataset attached (`index.attach`) to compute them.

    On an index of clips (a video model) each crop is a filmstrip: the frames of the unit's field in space-time
    (frames × box, measured by `backend.clip_field`) around the (t, row, col) of its maximum, gray where the field
    reaches past the clip; clicking one shows the frame of the maximum with the box.

    Requests follow the widgets' one protocol: the browser stamps each layer / channel / selection change with a
    `request` id and draws only the answer (`crops`, `full`, `projections`) that echoes its newest one.
    """

    _esm = front_end("top_activations")

    layers = traitlets.List().tag(sync=True)
    layer = traitlets.Unicode("").tag(sync=True)
    channel = traitlets.Int(0).tag(sync=True)
    crops = Array().tag(sync=True)
    selected = traitlets.Int(-1).tag(sync=True)
    full = Array().tag(sync=True)
    show = traitlets.Enum(SHOW_MODES, "image").tag(sync=True)
    opacity = traitlets.Float(0.6, min=0.0, max=1.0).tag(sync=True)
    projections = Array().tag(sync=True)

    def __init__(self, index: Index, layer: str | None = None, channel: int | None = None, **kwargs: object) -> None:
        if not isinstance(index, Index):
            raise InputError(f"TopActivations needs an index from inspector.index(dataset), not a {type(index).__name__}")
        index.check()
        self.index = index
        self._ready = False
        self._projections: OrderedDict[tuple[str, int], dict] = OrderedDict()
        self._clip_fields: dict[str, ClipField | None] = {}
        super().__init__(**kwargs)
        layers = []
        for name in index.layers:
            field = index.receptive_field(name)
            layers.append({"name": name, "shape": list(index.layer_shape(name)),
                           "field": None if field is None else {"size": list(field.size), "jump": list(field.jump)}})
        self.set_trait("layers", layers)
        with self.hold_trait_notifications():
            self.layer = layer if layer is not None else index.layers[-1]
            self.channel = channel if channel is not None else 0
        self._ready = True
        self._show()

    # --- validation and reactions -------------------------------------------------------------------------------

    @traitlets.validate("layer")
    def _check_layer(self, proposal: dict) -> str:
        self.index.layer_shape(proposal["value"])  # an unknown layer raises, listing close names
        return proposal["value"]

    @traitlets.validate("channel")
    def _check_channel(self, proposal: dict) -> int:
        channels = self.index.layer_shape(self.layer)[0] if self.layer else 0
        if not 0 <= proposal["value"] < channels:
            raise InputError(f"channel {proposal['value']} is out of range; layer {self.layer!r} has channels 0..{channels - 1}")
        return proposal["value"]

    @traitlets.validate("selected")
    def _check_selected(self, proposal: dict) -> int:
        shown = len(self.crops.get("ids", [])) if self.crops else 0
        if not -1 <= proposal["value"] < max(shown, 1):
            raise InputError(f"selected {proposal['value']} is out of range; pick -1 (none) or 0..{shown - 1}")
        return proposal["value"]

    @traitlets.observe("layer")
    def _on_layer(self, _change: dict) -> None:
        if self.channel >= self.index.layer_shape(self.layer)[0]:
            self.channel = 0  # triggers _show
        else:
            self._show()

    @traitlets.observe("channel")
    def _on_channel(self, _change: dict) -> None:
        self._show()

    @traitlets.observe("selected")
    def _on_selected(self, _change: dict) -> None:
        self._show_full()

    @traitlets.observe("show")
    def _on_show(self, _change: dict) -> None:
        self._show_projections()

    def random_neuron(self, seed: int | None = None) -> tuple[str, int]:
        """Jump to a random (layer, channel), as the "random neuron" button does; returns it."""
        chooser = random.Random(seed)
        layer = chooser.choice(self.index.layers)
        channel = chooser.randrange(self.index.layer_shape(layer)[0])
        with self.hold_trait_notifications():
            self.layer, self.channel = layer, channel
        return layer, channel

    # --- computing ------------------------------------------------------------------------------------------------

    def _clip_field(self) -> ClipField | None:
        """The current layer's field in space-time (measured once per layer; None without an attached model)."""
        if self.layer not in self._clip_fields:
            inspector = self.index.inspector
            self._clip_fields[self.layer] = None if inspector is None else clip_field(
                inspector.model, inspector.layer(self.layer), self.index.input_shape)
        return self._clip_fields[self.layer]

    def _clip_entries(self) -> list[dict]:
        """The top-k clips of the current neuron, each with its frames, space-time field box and position."""
        field = self._clip_field()
        entries = []
        for clip_id, value, position in self.index.top(self.layer, self.channel):
            frames = self.index.image(clip_id)
            length, height, width = frames.shape[:3]
            box = (0, 0, 0, length, height, width) if field is None else field.box(*position)
            entries.append({"id": clip_id, "value": value, "position": list(position), "image": frames, "box": box})
        return entries

    def _entries(self) -> list[dict]:
        """The top-k of the current neuron, each with its image, field box and crop."""
        if self.index.is_video:
            return self._clip_entries()
        field = self.index.receptive_field(self.layer)
        entries = []
        for image_id, value, (row, col) in self.index.top(self.layer, self.channel):
            image = self.index.image(image_id)
            height, width = image.shape[:2]
            if field is None or field.covers_input or (field.size[0] >= height and field.size[1] >= width):
                box: tuple[float, ...] = (0.0, 0.0, float(height), float(width))
            else:
                box = tuple(float(v) for v in field.box(row, col))
            entries.append({"id": image_id, "value": value, "position": [row, col], "image": image, "box": box})
        return entries

    def _note(self) -> str:
        if self.index.is_video:
            clip = self._clip_field()
            if clip is None:
                return "no model attached to measure the field: whole clips shown"
            frames, rows, cols = clip.size
            return f"receptive field {frames} frames × {rows}×{cols} px; gray = outside the clip (padding)"
        field = self.index.receptive_field(self.layer)
        if field is None:
            return "no receptive field can be traced for this layer: whole images shown"
        if field.covers_input or (field.size[0] >= field.input_size[0] and field.size[1] >= field.input_size[1]):
            return f"the receptive field ({field.size[0]} px) is as big as the image: whole images shown"
        note = f"receptive field {field.size[0]}×{field.size[1]} px, one unit every {field.jump[0]} px"
        return note + "; gray = outside the image (padding)"

    def _show(self) -> None:
        if not self._ready:
            return
        with self._working():
            entries = self._entries()
            self._shown = entries
            if entries and self.index.is_video:
                side = min(max(e["box"][4] - e["box"][1] for e in entries), CROP_MAX)
                crops = np.stack([filmstrip(clip_field_crop(e["image"], e["box"]), side) for e in entries])
            elif entries:
                sides = [round(e["box"][2] - e["box"][0]) for e in entries]
                side = min(max(sides), CROP_MAX)
                crops = np.stack([_fit(field_crop(e["image"], e["box"]), side) for e in entries])
            else:
                crops = np.zeros((0, 1, 1, 3), np.uint8)
            labels = self.index.labels
            predictions = self.index.predictions
            self.crops = array_message(
                crops, request=self.request, layer=self.layer, channel=self.channel, ids=[e["id"] for e in entries],
                values=[e["value"] for e in entries], positions=[e["position"] for e in entries],
                captions=[self._caption(e["id"], labels, predictions) for e in entries], note=self._note(),
            )
        if self.selected != -1 and self.selected >= len(entries):
            self.selected = -1
        else:
            self._show_full()
        self._show_projections()

    def _caption(self, image_id: int, labels, predictions) -> str:
        position = image_id - self.index.offset
        predicted = self.index.class_names[int(predictions[position])] if self.index.class_names else str(int(predictions[position]))
        if labels is not None and int(labels[position]) >= 0:
            return f"#{image_id} {self.index.label_names[int(labels[position])]} (→ {predicted})"
        return f"#{image_id} → {predicted}"

    def _show_full(self) -> None:
        if not self._ready:
            return
        if self.selected < 0 or self.selected >= len(getattr(self, "_shown", [])):
            self.full = {}
            return
        entry = self._shown[self.selected]
        image, box, frames = entry["image"], entry["box"], None
        if self.index.is_video:  # the frame of the maximum, with the field's box and its frames
            image, frames = image[entry["position"][0]], [max(0, box[0]), min(len(image), box[3])]
            box = box[1:3] + box[4:6]
        height, width = image.shape[:2]
        top, left, bottom, right = box
        clipped = [max(0, top), max(0, left), min(height, bottom), min(width, right)]
        self.full = array_message(image, request=self.request, layer=self.layer, channel=self.channel, selected=self.selected,
                                  id=entry["id"], value=entry["value"], box=clipped, position=entry["position"], frames=frames)

    def _show_projections(self) -> None:
        """Send the current neuron's projection crops (from the cache, else computed) while `show` wants them."""
        if not self._ready or self.show == "image":
            return
        key = (self.layer, self.channel)
        if key not in self._projections:
            with self._working():
                self._projections[key] = self._projection_message()
        self._projections.move_to_end(key)
        while len(self._projections) > PROJECTIONS_KEPT:
            self._projections.popitem(last=False)
        self._projections[key]["request"] = self.request  # a cached answer answers the current request
        self.projections = self._projections[key]

    def _projection_message(self) -> dict:
        """The deconvnet projection of the current neuron for each shown image, as a picture cropped and sized
        exactly like its crop; or, when the model does not allow one, an empty message whose note says why."""
        inspector, source = self.index.inspector, self.index.source
        if self.index.is_video:
            return self._projection_note("no deconvnet projection for clips: it is defined for 2-D convnets")
        if inspector is None or source is None or not source.random_access:
            return self._projection_note("no deconvnet projection: the index has no model and dataset attached; "
                                         "call index.attach(inspector, dataset) with the ones it was built on")
        entries = self._shown
        side = int(self.crops["shape"][1]) if entries else 1
        pictures = []
        try:
            for entry in entries:
                image, _ = source.item(entry["id"] - self.index.offset)
                projection = deconv_projection(inspector, image, self.layer, self.channel, tuple(entry["position"]))
                pictures.append(_fit(field_crop(projection_picture(projection).numpy(), entry["box"]), side))
        except InputError as error:
            return self._projection_note(f"no deconvnet projection for this model: {error}")
        pooled = any(isinstance(module, nn.modules.pooling._MaxPoolNd) for module in inspector.model.modules())
        note = ("deconvnet projection: the activation sent back through max-pool switches, rectification and "
                "transposed filters; gray = 0")
        if not pooled:
            note = ("deconvnet projection (this model has no nn.MaxPool layers, so there are no switches: only "
                    "rectification and transposed filters); gray = 0")
        stacked = np.stack(pictures) if pictures else np.zeros((0, 1, 1, 3), np.uint8)
        return array_message(stacked, request=self.request, layer=self.layer, channel=self.channel,
                             ids=[e["id"] for e in entries], note=note)

    def _projection_note(self, note: str) -> dict:
        return array_message(np.zeros((0, 1, 1, 3), np.uint8), request=self.request, layer=self.layer, channel=self.channel,
                             ids=[], note=note)

    def shown_crops(self) -> np.ndarray:
        """[k, S, S, 3] uint8 crops as the widget draws them now: the images, the projections, or the projections
        over the images at `opacity` (out = (1 − opacity)·image + opacity·projection, rounded), per `show`."""
        crops = self.crops.array
        projections = self.projections
        current = (projections.get("layer"), projections.get("channel"), projections.get("ids")) == (
            self.crops["layer"], self.crops["channel"], self.crops["ids"])
        if self.show == "image" or not current or not projections["ids"]:
            return crops
        pictures = projections.array
        opacity = 1.0 if self.show == "projection" else self.opacity
        return np.round((1 - opacity) * crops.astype(np.float64) + opacity * pictures).astype(np.uint8)

    # --- export -----------------------------------------------------------------------------------------------

    def _figure_png(self) -> bytes:
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        crops = self.shown_crops()
        count = len(crops)
        aspect = crops.shape[2] / crops.shape[1] if count else 1.0  # filmstrips of clips are wide
        columns = min(max(1, round(8 / aspect)), max(count, 1))
        rows = max(1, -(-count // columns))
        with_full = bool(self.full)
        figure = plt.figure(figsize=(1.4 * columns * aspect + (3.2 if with_full else 0), 1.6 * rows + 0.6))
        grid = figure.add_gridspec(rows, columns + with_full, width_ratios=[aspect] * columns + ([3] if with_full else []))
        for i in range(count):
            axis = figure.add_subplot(grid[i // columns, i % columns])
            axis.imshow(crops[i], interpolation="nearest")
            axis.set_title(f"{self.crops['values'][i]:.3g}", fontsize=8)
            axis.axis("off")
        if with_full:
            axis = figure.add_subplot(grid[:, columns:])
            image = self.full.array
            axis.imshow(image)
            top, left, bottom, right = self.full["box"]
            axis.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False, edgecolor="#00e5ff", linewidth=2))
            what = f"clip #{self.full['id']}, frame {self.full['position'][0]}" if self.index.is_video else f"image #{self.full['id']}"
            axis.set_title(f"{what}: {self.full['value']:.3g}", fontsize=9)
            axis.axis("off")
        title = f"{self.layer}, channel {self.channel}: top {count} {'clips' if self.index.is_video else 'images'} — {self.crops['note']}"
        if self.show != "image" and self.projections:
            shown = f"overlay at opacity {self.opacity:.2f}" if self.show == "overlay" else "projection"
            title += f"\n{shown} — {self.projections['note']}"
        figure.suptitle(title, fontsize=9, y=1.0 + 0.05 * title.count("\n"))  # above the enlarged image's title
        return render.figure_png(figure)
