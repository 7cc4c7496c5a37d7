"""OcclusionSlider: drag a gray square over the image and watch the class probability (Zeiler & Fergus 2014); on a
clip, a gray tube (square × frames)."""

from __future__ import annotations

import time

import numpy as np
import torch
import traitlets
from torch import nn

from .. import render
from ..backend import Inspector
from ..backend.images import ImageLike
from ..errors import InputError
from ..methods.occlusion import (
    OcclusionMaps,
    centered_box,
    check_patch_stride,
    fill_image,
    grid_boxes,
    grid_shape,
    occluded_channel_sums,
    occluded_logits,
    occlusion_progressive,
)
from ..methods.video import TubeOcclusion, tube_occlusion_steps
from .arrays import Array, array_message
from .base import CnnWidget, front_end, one_line, top_predictions
from .defaults import as_inspector, default_image
from .jobs import Jobs, Steps

FILLS: dict[str, float | str] = {"gray": 0.0, "mean": "mean", "blur": "blur"}
"""What the square shows: gray is 0.0 in the model's input space (the dataset mean colour)."""
VIDEO_FRAMES = 4
"""Default tube length in frames: a quarter of a 16-frame clip, and what a first unit of the zoo's motion stream
sees (a frame difference, then a 3-frame convolution: 4 frames, `backend.clip_field`)."""
VIDEO_PATCH = 8
"""Default tube side on clips: a quarter of the zoo's 32-px frames (the motion stream's last units see 17 px)."""
PUSH_INTERVAL_S = 0.25
"""Partial heatmaps go to the browser at most this often (and whenever a coarse level completes)."""


class OcclusionSlider(CnnWidget):
    """Drag an occluder over the image; see the chosen class's probability under it, and the full occlusion maps.

    With no arguments it looks at the embedded EfficientNet-Lite0 and a photo of a cat. `x`, `y` (the occluder's
    centre in model-input pixels), `patch`, `stride`, `fill` ("gray", "mean", "blur"), `target` (a class index)
    and `layer`/`channel` (for the feature-map panel) drive it from Python as well.

    The heatmaps are computed coarse to fine in small chunks on the kernel's event loop (the widget's `Jobs` runner),
    so the widget keeps answering drags while they fill in; changing a setting cancels the run and starts a new
    one. Outside a running event loop (a script) they are computed at once.

    On a video model (`OcclusionSlider(inspector, clip)`) the occluder is a tube: the square over `frames`
    consecutive frames centred on the frame shown (`frame`; `length` is the clip's), filled with the model-space
    baseline 0. The readout gives the class probability and the score drop under the tube; the heatmap is the score
    drop of every tube position (`methods.video.tube_occlusion`, every start frame, `stride` px apart), shown for
    the tube centred on the current frame. The channel panel and the "which class wins" map are for images only.
    """

    _esm = front_end("occlusion_slider")

    image = Array().tag(sync=True)
    size = traitlets.List([0, 0]).tag(sync=True)
    predictions = traitlets.List().tag(sync=True)
    labels = traitlets.List().tag(sync=True)
    target = traitlets.Int(-1).tag(sync=True)
    patch = traitlets.Int(32).tag(sync=True)
    stride = traitlets.Int(8).tag(sync=True)
    fill = traitlets.Enum(list(FILLS), "gray").tag(sync=True)
    x = traitlets.Float(0.0).tag(sync=True)
    y = traitlets.Float(0.0).tag(sync=True)
    readout = traitlets.Dict().tag(sync=True)
    show_heatmap = traitlets.Bool(True).tag(sync=True)
    heatmap = Array().tag(sync=True)
    top_map = Array().tag(sync=True)
    layers = traitlets.List().tag(sync=True)
    layer = traitlets.Unicode("").tag(sync=True)
    channel = traitlets.Int(-1).tag(sync=True)
    feature_map = Array().tag(sync=True)
    opacity = traitlets.Float(0.6).tag(sync=True)
    colormap = traitlets.Enum(list(render.COLORMAPS), "viridis").tag(sync=True)
    length = traitlets.Int(0).tag(sync=True)
    frame = traitlets.Int(0).tag(sync=True)
    frames = traitlets.Int(VIDEO_FRAMES).tag(sync=True)

    def __init__(self, inspector: Inspector | nn.Module | None = None, image: ImageLike | None = None, **kwargs: object) -> None:
        self._ready = False
        self.inspector = as_inspector(inspector)
        self._video = self.inspector.is_video
        if self._video and image is None:
            raise InputError("OcclusionSlider on a video model needs a clip; pass one, e.g. zoo.motion_clips()[0][0]")
        self._batch = self.inspector.preprocess(default_image(image))
        height, width = self._batch.shape[-2:]
        self._clip_frames = self.inspector.display_image(self._batch) if self._video else None
        self._tubes: TubeOcclusion | None = None
        self._fills: dict[tuple[str, int], torch.Tensor] = {}
        self._run = 0  # stamps the maps' messages, so the browser matches partial maps to their settings
        self._jobs = Jobs(self, thread=False)
        self._readout_key: tuple | None = None
        self._maps: OcclusionMaps | None = None
        self._feature: np.ndarray | None = None
        super().__init__(**kwargs)
        probabilities = self.inspector.logits(self._batch).softmax(-1)
        self._probabilities = probabilities
        with self.hold_trait_notifications():
            self.size = [int(height), int(width)]
            if self._clip_frames is not None:
                self.length = len(self._clip_frames)
                if "frame" not in kwargs:
                    self.frame = self.length // 2
                if "patch" not in kwargs:
                    self.patch, self.stride = VIDEO_PATCH, VIDEO_PATCH // 2
                if "frames" not in kwargs:
                    self.frames = min(self.frames, self.length)
                for name, low, high in (("frame", 0, self.length - 1), ("frames", 1, self.length)):
                    if not low <= getattr(self, name) <= high:
                        raise InputError(f"{name}={getattr(self, name)} does not fit the clip; pass {low}..{high}")
            self.image = array_message(self._shown_picture())
            self.predictions = top_predictions(self.inspector, probabilities)
            self.labels = [self.inspector.label(i) for i in range(len(probabilities))]
            self.layers = [] if self._video else [layer.name for layer in self.inspector.layers]
        if "target" not in kwargs:
            self.target = int(probabilities.argmax())
        if "x" not in kwargs:
            self.x = width / 2
        if "y" not in kwargs:
            self.y = height / 2
        self._check_settings()
        self._ready = True
        self._update_readout()
        self._restart()

    # --- validation -----------------------------------------------------------------------------------------------

    @traitlets.validate("target")
    def _check_target(self, proposal: dict) -> int:
        value = proposal["value"]
        if value == -1 and not self._ready:
            return value
        return self.inspector.class_index(int(value), self._batch)

    @traitlets.validate("patch", "stride")
    def _check_geometry(self, proposal: dict) -> int:
        if hasattr(self, "_batch"):
            patch = proposal["value"] if proposal["trait"].name == "patch" else self.patch
            stride = proposal["value"] if proposal["trait"].name == "stride" else self.stride
            check_patch_stride(self._size(), patch, stride)
        return proposal["value"]

    @traitlets.validate("x", "y")
    def _check_position(self, proposal: dict) -> float:
        name, value = proposal["trait"].name, float(proposal["value"])
        if hasattr(self, "_batch"):
            limit = self._batch.shape[-1 if name == "x" else -2]
            if not 0 <= value <= limit:
                raise InputError(f"{name}={value} is outside the image; pass 0 ≤ {name} ≤ {limit}")
        return value

    @traitlets.validate("frame", "frames")
    def _check_frames(self, proposal: dict) -> int:
        name, value = proposal["trait"].name, proposal["value"]
        if self._ready and not self._video:
            raise InputError(f"{name} is for clips; this is an image model")
        low, high = (0, self.length - 1) if name == "frame" else (1, self.length or value)
        if self._ready and not low <= value <= high:
            raise InputError(f"{name}={value} does not fit the clip; pass {low}..{high}")
        return value

    @traitlets.validate("fill")
    def _check_fill(self, proposal: dict) -> str:
        if getattr(self, "_video", False) and proposal["value"] != "gray":
            raise InputError("a tube is filled with gray (the model-space baseline 0) only; pass fill='gray'")
        return proposal["value"]

    @traitlets.validate("channel")
    def _check_channel(self, proposal: dict) -> int:
        value = proposal["value"]
        if value != -1 and self.layer:
            channels = self.inspector.layer(self.layer).shape[0]
            if not 0 <= value < channels:
                raise InputError(f"channel {value} is out of range; layer {self.layer!r} has channels 0..{channels - 1} (-1 for none)")
        return value

    @traitlets.validate("layer")
    def _check_layer(self, proposal: dict) -> str:
        if proposal["value"] and getattr(self, "_video", False):
            raise InputError("the feature-map panel is for image models; on clips use TopActivations or methods.video")
        return self.inspector.layer(proposal["value"]).name if proposal["value"] else ""

    @traitlets.validate("opacity")
    def _check_opacity(self, proposal: dict) -> float:
        if not 0.0 <= proposal["value"] <= 1.0:
            raise InputError(f"opacity {proposal['value']} is not between 0 and 1")
        return proposal["value"]

    def _size(self) -> tuple[int, int]:
        """(height, width) of the model input."""
        height, width = self._batch.shape[-2:]
        return int(height), int(width)

    def _check_settings(self) -> None:
        check_patch_stride(self._size(), self.patch, self.stride)

    # --- the dragged occluder ---------------------------------------------------------------------------------------

    def _fill(self) -> torch.Tensor:
        key = (self.fill, self.patch)
        if key not in self._fills:
            self._fills = {key: fill_image(self._batch, FILLS[self.fill], self.patch)}
        return self._fills[key]

    @traitlets.observe("x", "y", "request", "patch", "fill", "target", "frame", "frames")
    def _on_position(self, _change: dict) -> None:
        if self._ready:
            self._update_readout()

    def _shown_picture(self) -> np.ndarray:
        """The picture under the occluder: the image, or the clip's current frame."""
        return self.inspector.display_image(self._batch) if self._clip_frames is None else self._clip_frames[self.frame]

    def tube_frames(self) -> tuple[int, int]:
        """(first, end) frames of the tube centred on the current frame, kept inside the clip."""
        first = min(max(self.frame - self.frames // 2, 0), self.length - self.frames)
        return first, first + self.frames

    def _update_readout(self) -> None:
        key = (self.x, self.y, self.request, self.patch, self.fill, self.target, self.frame, self.frames)
        if key == self._readout_key:
            return  # several traits of one browser message: answer once
        self._readout_key = key
        if self._video:
            self._update_tube_readout()
            return
        try:
            box = centered_box(self.y, self.x, self.patch, self._size())
            logits = occluded_logits(self.inspector, self._batch, [box], self._fill(), patch=self.patch)[0]
        except Exception as error:
            self.error = one_line(error)
            raise
        probabilities = logits.softmax(-1)
        top = int(probabilities.argmax())
        self.error = ""
        self.readout = self.answer(
            x=self.x, y=self.y, box=list(box), target=self.target, label=self.inspector.label(self.target),
            probability=float(probabilities[self.target]), unoccluded=float(self._probabilities[self.target]),
            top_index=top, top_label=self.inspector.label(top), top_probability=float(probabilities[top]),
        )

    def _update_tube_readout(self) -> None:
        try:
            box = centered_box(self.y, self.x, self.patch, self._size())
            first, end = self.tube_frames()
            occluded = self._batch.clone()
            occluded[:, :, first:end, box[0]:box[2], box[1]:box[3]] = 0.0
            logits = self.inspector.batch_logits(torch.cat([self._batch, occluded]))
        except Exception as error:
            self.error = one_line(error)
            raise
        probabilities = logits[1].softmax(-1)
        top = int(probabilities.argmax())
        self.error = ""
        self.readout = self.answer(
            x=self.x, y=self.y, box=list(box), frames=[first, end], target=self.target, label=self.inspector.label(self.target),
            probability=float(probabilities[self.target]), unoccluded=float(self._probabilities[self.target]),
            drop=float(logits[0, self.target] - logits[1, self.target]),
            top_index=top, top_label=self.inspector.label(top), top_probability=float(probabilities[top]),
        )

    @traitlets.observe("frame")
    def _on_frame(self, _change: dict) -> None:
        if self._ready and self._video:
            with self.hold_trait_notifications():
                self.image = array_message(self._shown_picture())
                self._push_tubes(self._run)

    # --- heatmaps, coarse to fine, without blocking the kernel ---------------------------------------------------------

    @traitlets.observe("patch", "stride", "fill", "target", "show_heatmap", "frames")
    def _on_settings(self, _change: dict) -> None:
        if self._ready:
            self._restart()

    @traitlets.observe("layer", "channel")
    def _on_feature(self, change: dict) -> None:
        if change["name"] == "layer" and self.channel >= 0 and self.layer and self.channel >= self.inspector.layer(self.layer).shape[0]:
            self.channel = -1
            return
        if self._ready:
            self._restart(features_only=self._maps is not None and bool(self._maps.done.all()))

    def _restart(self, features_only: bool = False) -> None:
        """Cancel the running computation and start the maps for the current settings (on the event loop)."""
        self._run += 1
        if not self.show_heatmap:
            self._jobs.cancel()
            self.heatmap, self.top_map, self.feature_map, self.progress = {}, {}, {}, 1.0
            return
        self.progress = 0.5 if features_only else 0.0
        run = self._run
        self._jobs.start(lambda _job: self._compute(run, features_only))

    def finish(self) -> None:
        """Compute whatever part of the maps is still missing, now (used by `to_png` and in scripts)."""
        self._jobs.finish()

    def _compute_tubes(self, run: int) -> Steps:
        """The score drop of every tube (every first frame, `stride` px apart): one job step per batch of tubes."""
        self._tubes = None
        self.heatmap = {}
        yield 0.0
        self._tubes = yield from tube_occlusion_steps(self.inspector, self._batch, self.target, patch=self.patch,
                                                      frames=self.frames, stride=self.stride, frame_stride=1)
        self._push_tubes(run)
        self.progress = 1.0

    def _push_tubes(self, run: int) -> None:
        """The heatmap of the tubes centred on the current frame (those the dragged tube covers)."""
        if self._tubes is None:
            return
        first, _end = self.tube_frames()
        ny, nx = grid_shape(self._size(), self.patch, self.stride)  # the regular grid the map is drawn on (the
        # method adds a last row / column reaching the border where the stride does not divide the size)
        drops = self._tubes.drops[self._tubes.starts[0].index(first), :ny, :nx].numpy().astype(np.float32)
        self.heatmap = array_message(drops, run=run, patch=self.patch, stride=self.stride, level=1, fraction=1.0, done=True,
                                     kind="drop", frames=[first, first + self.frames], target=self.target,
                                     label=self.inspector.label(self.target))

    def _compute(self, run: int, features_only: bool) -> Steps:
        if self._video:
            yield from self._compute_tubes(run)
            return
        size = self._size()
        patch, stride, fill = self.patch, self.stride, self._fill()
        ny, nx = grid_shape(size, patch, stride)
        if not features_only:
            self._maps, self._feature = None, None
            self.feature_map = {}
            self.progress = 0.0
            last_push, level = 0.0, None
            for maps in occlusion_progressive(self.inspector, self._batch, self.target, patch, stride, fill):
                self._maps = maps
                now = time.perf_counter()
                if maps.done.all() or maps.level != level or now - last_push > PUSH_INTERVAL_S:
                    self._push_maps(run, maps)
                    last_push, level = now, maps.level
                yield None
        if self.layer and self.channel >= 0:
            boxes = grid_boxes(size, patch, stride)
            values = np.full(len(boxes), np.nan, np.float32)
            done = 0
            for sums in occluded_channel_sums(self.inspector, self._batch, self.layer, self.channel, boxes, fill, patch=patch):
                values[done:done + len(sums)] = sums.numpy()
                done += len(sums)
                self.progress = 0.5 + 0.5 * done / len(boxes) if features_only else self.progress
                yield None
            reference = float(self.inspector.activations(self._batch, self.layer)[self.channel].sum())
            self._feature = values.reshape(ny, nx)
            self.feature_map = array_message(self._feature, run=run, layer=self.layer, channel=self.channel,
                                             patch=patch, stride=stride, unoccluded=reference)
        else:
            self.feature_map = {}
        self.progress = 1.0

    def _push_maps(self, run: int, maps: OcclusionMaps) -> None:
        meta = {"run": run, "patch": self.patch, "stride": self.stride, "level": maps.level, "fraction": maps.fraction,
                "done": bool(maps.done.all())}
        with self.hold_trait_notifications():
            self.heatmap = array_message(maps.preview(maps.probability).astype(np.float32), target=self.target,
                                         label=self.inspector.label(self.target),
                                         unoccluded=float(self._probabilities[self.target]), **meta)
            classes = maps.preview(maps.top_index.astype(np.float32))
            names = {str(int(c)): self.inspector.label(int(c)) for c in np.unique(classes) if c >= 0}
            self.top_map = array_message(maps.preview(maps.top_probability).astype(np.float32),
                                         classes=[int(c) for c in classes.ravel()], names=names, **meta)
            self.progress = maps.fraction * (0.5 if self.layer and self.channel >= 0 else 1.0)

    # --- export ------------------------------------------------------------------------------------------------------

    def _figure_png(self) -> bytes:
        import matplotlib.patches
        import matplotlib.pyplot as plt

        if self.show_heatmap:
            self.finish()
        if self._video:
            return self._tube_figure_png()
        panels = 1 + (self._maps is not None) + (self._feature is not None)
        figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 5.2), squeeze=False)
        axes = axes[0]
        picture = self.image.array
        readout = self.readout
        height, width = self.size
        extent = self._extent()
        axes[0].imshow(picture)
        if self._maps is not None:
            low = float(np.nanmin(self._maps.probability))
            high = max(float(np.nanmax(self._maps.probability)), readout["unoccluded"])
            shown = axes[0].imshow(self._maps.probability, cmap=self.colormap, vmin=low, vmax=high, alpha=self.opacity,
                                   extent=extent, interpolation="bilinear")
            figure.colorbar(shown, ax=axes[0], fraction=0.046, pad=0.02, label=f"P({readout['label']})")
        y0, x0, y1, x1 = readout["box"]
        axes[0].add_patch(matplotlib.patches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, facecolor=(0.5, 0.5, 0.5, 0.8),
                                                       edgecolor="white", linewidth=1.5))
        axes[0].set_title(f"P({readout['label']}) = {readout['probability']:.3f} under the square "
                          f"(unoccluded {readout['unoccluded']:.3f})\ntop-1 there: {readout['top_label']} "
                          f"{readout['top_probability']:.3f}; patch {self.patch}, stride {self.stride}, fill {self.fill}", fontsize=9)
        panel = 1
        if self._maps is not None:
            classes = self._maps.top_index
            unique = list(np.unique(classes))
            palette = plt.get_cmap("tab10")
            colors = np.array([palette(unique.index(c) % 10)[:3] for c in classes.ravel()]).reshape(*classes.shape, 3)
            axes[panel].imshow(picture)
            axes[panel].imshow(colors * self._maps.top_probability[..., None] ** 0.5, alpha=self.opacity, extent=extent, interpolation="nearest")
            handles = [matplotlib.patches.Patch(color=palette(k % 10), label=self.inspector.label(int(c))) for k, c in enumerate(unique[:10])]
            axes[panel].legend(handles=handles, fontsize=7, loc="lower left", framealpha=0.8)
            axes[panel].set_title("top-1 label under the square at each position", fontsize=9)
            panel += 1
        if self._feature is not None:
            axes[panel].imshow(picture)
            shown = axes[panel].imshow(self._feature, cmap=self.colormap, alpha=self.opacity, extent=extent, interpolation="bilinear")
            figure.colorbar(shown, ax=axes[panel], fraction=0.046, pad=0.02)
            axes[panel].set_title(f"total activation of {self.layer} channel {self.channel}", fontsize=9)
        for axis in axes:
            axis.set_xlim(-0.5, width - 0.5)
            axis.set_ylim(height - 0.5, -0.5)
            axis.axis("off")
        return render.figure_png(figure)

    def _tube_figure_png(self) -> bytes:
        import matplotlib.patches
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(5.5, 5.2))
        readout, heatmap = self.readout, self.heatmap
        height, width = self.size
        axis.imshow(self._shown_picture())
        if heatmap:
            drops = np.frombuffer(heatmap["data"], np.float32).reshape(heatmap["shape"])
            left, right, bottom, top = self._extent()
            shown = axis.imshow(drops, cmap=self.colormap, alpha=self.opacity, extent=(left, right, bottom, top),
                                interpolation="bilinear")
            figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.02, label=f"drop of the {readout['label']!r} score")
        y0, x0, y1, x1 = readout["box"]
        axis.add_patch(matplotlib.patches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, facecolor=(0.5, 0.5, 0.5, 0.8),
                                                    edgecolor="white", linewidth=1.5))
        first, end = readout["frames"]
        axis.set_title(f"frame {self.frame} of {self.length}; tube {self.patch} px × frames {first}–{end - 1}\n"
                       f"P({readout['label']}) = {readout['probability']:.3f} under the tube (unoccluded "
                       f"{readout['unoccluded']:.3f}), score drop {readout['drop']:.3g}", fontsize=9)
        axis.set_xlim(-0.5, width - 0.5)
        axis.set_ylim(height - 0.5, -0.5)
        axis.axis("off")
        return render.figure_png(figure)

    def _extent(self) -> list[float]:
        """Where the [ny, nx] maps go on the image: each cell centred on its occluder's centre, `stride` wide."""
        ny, nx = grid_shape((self.size[0], self.size[1]), self.patch, self.stride)
        left = self.patch / 2 - self.stride / 2 - 0.5
        top = self.patch / 2 - self.stride / 2 - 0.5
        return [left, left + nx * self.stride, top + ny * self.stride, top]
