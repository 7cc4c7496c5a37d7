"""SaliencyOverlay: an attribution map over the image (or each frame of a clip), any class, any method, several
side by side."""

from __future__ import annotations

import math

import numpy as np
import torch
import traitlets
from torch import nn

from .. import render
from ..backend import Inspector
from ..backend.gradients import input_forward, layer_forward
from ..backend.images import ImageLike
from ..errors import InputError
from ..methods import cam, faithfulness, gradients, video
from ..methods.image_params import ModelInput
from ..methods.occlusion import fill_image
from ..methods.reduce import REDUCTIONS, display_map, to_uint8
from ..methods.temporal import clip_display_map
from .arrays import Array, array_message
from .base import CnnWidget, front_end, top_predictions
from .defaults import as_inspector, default_image
from .frames import check_frame
from .jobs import Jobs, Steps

METHODS = {
    "saliency": ("Gradient", gradients.saliency, False),
    "smoothgrad": ("SmoothGrad", gradients.smoothgrad, False),
    "integrated_gradients": ("Integrated gradients", gradients.integrated_gradients, False),
    "deconvnet": ("Deconvnet", gradients.deconvnet, False),
    "guided_backprop": ("Guided backprop", gradients.guided_backprop, False),
    "grad_cam": ("Grad-CAM", cam.grad_cam, True),
    "guided_grad_cam": ("Guided Grad-CAM", cam.guided_grad_cam, True),
    "grad_cam_plus_plus": ("Grad-CAM++", cam.grad_cam_plus_plus, True),
    "score_cam": ("Score-CAM", cam.score_cam, True),
    "layer_cam": ("Layer-CAM", cam.layer_cam, True),
}
"""name -> (title, function, takes a layer)."""

VIDEO_METHODS = {
    "saliency": ("Gradient", gradients.saliency, False),
    "grad_cam": ("Grad-CAM", video.grad_cam_3d, True),
}
"""On a video model, the methods defined in space-time (`methods.video`): the input gradient [C,T,H,W] and Grad-CAM
with its weights averaged over T, H and W, resized to the clip. The rest are 2-D only for now and left out, with a
note (VIDEO_NOTE)."""
VIDEO_NOTE = ("on this video model: gradient and Grad-CAM in space-time; "
              + ", ".join(title for name, (title, _, _) in METHODS.items() if name not in VIDEO_METHODS)
              + " are 2-D only and left out")

OPTION_TRAITS = ("smoothgrad_samples", "smoothgrad_noise", "ig_steps", "ig_baseline")

RULE_METHODS = ("deconvnet", "guided_backprop", "guided_grad_cam")
"""Methods defined for ReLU networks only; a comparison leaves them out, with a note, on other activations."""
DEFAULT_COMPARE = ["saliency", "guided_backprop", "integrated_gradients", "grad_cam", "layer_cam"]
IG_BASELINES = ("zero", "black", "blur")
"""Integrated-gradients baselines: the all-zero model input (the dataset mean after normalization, Captum's
default), a black picture, or a blurred copy of the image."""
SANITY_THUMBNAIL = 56
MAPS_KEPT = 64


class SaliencyOverlay(CnnWidget):
    """The image with an attribution map over it: pick a method and a class (top-5 or any by name); opacity and
    colormap apply in the browser. `side_by_side` shows `compare` methods for the class on one color scale
    (each map divided by its own 99.5th percentile, 0..1). `run_sanity_check()` (or the panel's button) shows
    how the maps change as the model's layers are randomized, on a copy of the model.

    With no arguments it looks at the embedded EfficientNet-Lite0 and a photo of a cat. Maps are kept per
    (method, class, layer), and CAM methods reuse the forward pass across classes.

    On a video model `image` is a clip: the gradient and Grad-CAM are computed in space-time (`methods.video`;
    Grad-CAM's channel weights are averaged over T, H and W), each map is one [T,H,W] volume on one colour scale
    for the whole clip, and `frame` (a slider and a play button in the view) picks the frame it is drawn over.
    Methods not defined in space-time are left out of `methods`, and `methods_note` says so.

    The maps are computed on the widget's job runner in steps on the kernel's event loop (on a clip: each method's
    forward, then its backward; r3d_18 on a 16×112×112 clip, one thread, the gradient takes 5–7 s in all), with
    `progress` shown; a newer pick cancels an older one and the last good view stays. `wait()` blocks until the
    maps are shown.
    """

    _esm = front_end("saliency_overlay")
    ACTIONS = ("run_sanity_check",)

    image = Array().tag(sync=True)
    predictions = traitlets.List().tag(sync=True)
    labels = traitlets.List().tag(sync=True)
    methods = traitlets.List().tag(sync=True)
    method = traitlets.Unicode("saliency").tag(sync=True)
    target = traitlets.Int(-1).tag(sync=True)
    layer = traitlets.Unicode("").tag(sync=True)
    layers = traitlets.List().tag(sync=True)
    reduce = traitlets.Enum(list(REDUCTIONS), "abs").tag(sync=True)
    side_by_side = traitlets.Bool(False).tag(sync=True)
    compare = traitlets.List(traitlets.Unicode(), DEFAULT_COMPARE).tag(sync=True)
    opacity = traitlets.Float(0.6, min=0.0, max=1.0).tag(sync=True)
    colormap = traitlets.Enum(list(render.COLORMAPS), "inferno").tag(sync=True)
    smoothgrad_samples = traitlets.Int(25, min=1, max=200).tag(sync=True)
    smoothgrad_noise = traitlets.Float(0.15, min=0.0, max=0.5).tag(sync=True)
    ig_steps = traitlets.Int(50, min=2, max=300).tag(sync=True)
    ig_baseline = traitlets.Enum(list(IG_BASELINES), "zero").tag(sync=True)
    maps = Array().tag(sync=True)
    sanity = Array().tag(sync=True)
    frame = traitlets.Int(0).tag(sync=True)
    methods_note = traitlets.Unicode("").tag(sync=True)

    def __init__(self, inspector: Inspector | nn.Module | None = None, image: ImageLike | None = None, **kwargs: object) -> None:
        self.inspector = as_inspector(inspector)
        self._raw: dict[tuple, torch.Tensor] = {}
        initial = {name: kwargs.pop(name) for name in ("method", "target", "layer", "side_by_side", "compare", "reduce",
                                                       *OPTION_TRAITS) if name in kwargs}
        super().__init__(**kwargs)
        self._jobs = Jobs(self, thread=False)
        self._ready = False
        self._video = self.inspector.is_video
        self.methods = [{"name": name, "title": title, "cam": takes_layer} for name, (title, _, takes_layer) in self._table.items()]
        if self._video:
            self.methods_note = VIDEO_NOTE
            self.compare = list(VIDEO_METHODS)
        self._set_image(default_image(image))
        with self.hold_trait_notifications():
            for name, value in initial.items():
                setattr(self, name, value)
        self._ready = True
        self._show()

    # --- image and classes -------------------------------------------------------------------------------------

    def set_image(self, image: ImageLike) -> None:
        """Look at another image; on bad input the error is shown and the current view stays."""
        with self._working():
            self._set_image(image)
        self._show()

    def _set_image(self, image: ImageLike) -> None:
        inspector = self.inspector
        batch = inspector.preprocess(image)
        probabilities = inspector.logits(batch).softmax(-1)
        layers = _video_cam_layers(inspector) if self._video else [layer.name for layer in cam.cam_layers(inspector)]
        ready, self._ready = self._ready, False
        self._batch, self._raw = batch, {}
        with self.hold_trait_notifications():
            self.image = array_message(inspector.display_image(batch))
            self.frame = min(self.frame, self._frames() - 1)
            self.labels = [inspector.label(i) for i in range(len(probabilities))]
            self.predictions = top_predictions(inspector, probabilities)
            self.layers = layers
            if self.layer not in layers:
                self.layer = video.default_video_cam_layer(inspector) if self._video else cam.default_cam_layer(inspector)
            self.target = int(probabilities.argmax())
            self.sanity = {}
        self._ready = ready

    def set_class(self, target: int | str) -> None:
        """Show class `target`: an index or a class name (an unknown name raises an error listing close names)."""
        self.target = self.inspector.class_index(target)

    # --- validation ----------------------------------------------------------------------------------------------

    @property
    def _table(self) -> dict:
        """The methods this model offers: all of them on an image model, those defined in space-time on a video one."""
        return VIDEO_METHODS if self._video else METHODS

    def _known(self, name: str) -> str:
        name = _known_method(name)
        if name not in self._table:
            raise InputError(f"{METHODS[name][0]} is 2-D only and not defined for this video model; pick one of {', '.join(self._table)}")
        return name

    def _frames(self) -> int:
        """Frames of the clip (1 for an image)."""
        return int(self._batch.shape[2]) if self._video else 1

    @traitlets.validate("frame")
    def _check_frame(self, proposal: dict) -> int:
        return check_frame(proposal["value"], self._frames(), "the clip" if self._video else "an image")

    @traitlets.validate("method")
    def _check_method(self, proposal: dict) -> str:
        return self._known(proposal["value"])

    @traitlets.validate("compare")
    def _check_compare(self, proposal: dict) -> list:
        names = [self._known(name) for name in proposal["value"]]
        if not names:
            raise InputError("compare needs at least one method, e.g. ['saliency', 'grad_cam']")
        return names

    @traitlets.validate("target")
    def _check_target(self, proposal: dict) -> int:
        value = proposal["value"]
        if value == -1 and not self.labels:
            return value
        return self.inspector.class_index(value)

    @traitlets.validate("layer")
    def _check_layer(self, proposal: dict) -> str:
        if not proposal["value"] and not self.layers:
            return proposal["value"]
        if self._video:
            name = self.inspector.layer(proposal["value"]).name
            if name not in self.layers:
                raise InputError(f"layer {name!r} has no space-time map for Grad-CAM; pick one of {', '.join(self.layers[-3:])}, …")
            return name
        return cam.cam_layer(self.inspector, proposal["value"]).name

    @traitlets.observe("method", "target", "layer", "reduce", "side_by_side", "compare", *OPTION_TRAITS)
    def _on_view(self, _change: dict) -> None:
        if self._ready:
            self._show()

    # --- computing -------------------------------------------------------------------------------------------------

    @property
    def shown_methods(self) -> list[str]:
        return list(self.compare) if self.side_by_side else [self.method]

    @property
    def options(self) -> list:
        """The SmoothGrad and integrated-gradients settings, in OPTION_TRAITS order (sent with every answer)."""
        return [getattr(self, name) for name in OPTION_TRAITS]

    def _method_options(self, method: str) -> dict:
        """The keyword options `method` takes from the widget's controls."""
        if method == "smoothgrad":
            return {"samples": self.smoothgrad_samples, "noise": self.smoothgrad_noise}
        if method == "integrated_gradients":
            baseline = None  # "zero": integrated_gradients' own default, the all-zero model input
            if self.ig_baseline == "black":
                baseline = ModelInput.of(self.inspector)(torch.zeros_like(self._batch))
            elif self.ig_baseline == "blur":
                baseline = fill_image(self._batch, "blur")
            return {"steps": self.ig_steps, "baseline": baseline}
        if self._table[method][2]:
            return {"layer": self.layer}
        return {}

    def attribution(self, method: str) -> torch.Tensor:
        """The raw map of `method` for the current class, layer and options; kept, so asking again is free."""
        _, function, _ = self._table[self._known(method)]
        key = self._key(method)
        if key not in self._raw:
            self._raw[key] = function(self.inspector, self._batch, self.target, **self._method_options(method))
            while len(self._raw) > MAPS_KEPT:
                self._raw.pop(next(iter(self._raw)))
        return self._raw[key]

    def _key(self, method: str) -> tuple:
        """What the raw map of `method` depends on besides the image: (method, class, layer, options)."""
        settings = tuple(self.options) if method in ("smoothgrad", "integrated_gradients") else None
        return (method, self.target, self.layer if self._table[method][2] else None, settings)

    def _forward_for(self, method: str) -> None:
        """On a video model, the forward pass that `method` (gradient or Grad-CAM) keeps and reuses, run as a step
        of its own, so the kernel answers the browser between the forward and the backward."""
        if method == "grad_cam":
            layer_forward(self.inspector, self._batch, self.layer)
        else:
            input_forward(self.inspector, self._batch)

    def _show(self) -> None:
        """Compute the shown maps on the job runner, one method per step (a newer pick cancels the older)."""
        self._jobs.start(lambda _job: self._map_steps())

    def _map_steps(self) -> Steps:
        names, shown, notes = [], [], []
        methods = self.shown_methods
        for done, name in enumerate(methods, 1):
            if self._video and self._key(name) not in self._raw:
                self._forward_for(name)
                yield (done - 0.5) / len(methods)
            try:
                values = self.attribution(name)
            except InputError as error:  # a ReLU rule on a SiLU/GELU model: left out of a comparison
                if not self.side_by_side or name not in RULE_METHODS:
                    raise
                notes.append(f"{METHODS[name][0]} left out: {str(error).splitlines()[0]}")
                continue
            names.append(name)
            display = clip_display_map(values, self.reduce) if self._video else display_map(values, self.reduce)
            shown.append(to_uint8(display).numpy())
            yield done / len(methods)
        if not shown:
            raise InputError(notes[0])
        self.maps = array_message(np.stack(shown), **self.answer(
            methods=names, titles=[METHODS[name][0] for name in names], target=self.target,
            label=self.inspector.label(self.target), layer=self.layer, reduce=self.reduce, options=self.options,
            notes=notes,
        ))
        self.error = ""

    def wait(self, timeout: float | None = None) -> None:
        """Block until the maps for the current settings are shown (in a notebook they follow in steps)."""
        self._jobs.finish(timeout)

    def run_sanity_check(self, steps: int | None = None) -> faithfulness.SanityCheck:
        """Run the cascading randomization check for the shown methods and class; shows it in the panel."""
        with self._working():
            names = [name for name in self.shown_methods if name != "score_cam"] or ["saliency"]
            order = faithfulness.randomization_steps(self.inspector.model)
            if steps is not None:
                order = order[:steps]
            functions = [_with_layer(name, self.layer, self._table, self.reduce if self._video else None) for name in names]
            result = faithfulness.sanity_check(self.inspector, self._batch, self.target, methods=functions, steps=order)
            frames = self._frames()
            thumbnails = np.stack([
                np.stack([_thumbnail(step_map.view(frames, -1, step_map.shape[-1]).mean(0)) for step_map in result.maps[function.__name__]])
                for function in functions
            ])
            self.sanity = array_message(
                thumbnails, methods=names, titles=[METHODS[name][0] for name in names], steps=result.steps,
                correlations=[result.correlations[function.__name__] for function in functions], target=self.target,
                label=self.inspector.label(self.target),
            )
        return result

    # --- export ------------------------------------------------------------------------------------------------------

    def _figure_png(self) -> bytes:
        import matplotlib.pyplot as plt
        from matplotlib import colors

        self.wait()
        image, maps, when = self.image.array, self.maps.array, ""
        if image.ndim == 4:  # a clip: the shown frame
            image, maps, when = image[self.frame], maps[:, self.frame], f", frame {self.frame} of {len(image)}"
        count = len(maps)
        figure, axes = plt.subplots(1, count, figsize=(3.4 * count + 0.8, 3.8), squeeze=False)
        for axis, values, title in zip(axes[0], maps, self.maps["titles"]):
            overlay = render.colorize(values, self.colormap).astype(np.float32)
            blended = (1 - self.opacity) * image.astype(np.float32) + self.opacity * overlay
            axis.imshow(blended.round().clip(0, 255).astype(np.uint8))
            axis.set_title(title, fontsize=10)
            axis.axis("off")
        notes = "".join(f"\n{note}" for note in self.maps.get("notes", []))
        figure.suptitle(f"{self.maps['label']} (class {self.maps['target']}){when}{notes}", fontsize=11)
        mappable = plt.cm.ScalarMappable(norm=colors.Normalize(0, 1), cmap=self.colormap)
        figure.colorbar(mappable, ax=list(axes[0]), fraction=0.03, pad=0.02, label="attribution (shared scale)")
        return render.figure_png(figure)


def _video_cam_layers(inspector: Inspector) -> list[str]:
    """Layers of a video model with a space-time map to take Grad-CAM at ([C,T,H,W], more than one position)."""
    return [layer.name for layer in inspector.layers
            if len(layer.shape) == 4 and math.prod(layer.shape[1:]) > 1 and layer.kind != "other"]


def _known_method(name: str) -> str:
    if name not in METHODS:
        import difflib

        close = difflib.get_close_matches(name, list(METHODS), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else f"pick one of {', '.join(METHODS)}"
        raise InputError(f"unknown method {name!r}; {hint}")
    return name


def _with_layer(name: str, layer: str, table: dict = METHODS, clip_reduce: str | None = None):
    """Method `name` of `table` as function(inspector, image, target), its layer bound. With `clip_reduce` (video):
    its [T,H,W] display map laid out as one [1, T·H, W] map, so the sanity check compares whole space-time volumes
    (rank correlation over every voxel), not one frame."""
    _, function, takes_layer = table[name]
    if not takes_layer and clip_reduce is None:
        return function

    def bound(inspector, image, target):
        values = function(inspector, image, target, **({"layer": layer} if takes_layer else {}))
        if clip_reduce is None:
            return values
        volume = clip_display_map(values, clip_reduce)
        return volume.reshape(1, -1, volume.shape[-1])

    bound.__name__ = name
    return bound


def _thumbnail(values: torch.Tensor) -> np.ndarray:
    small = torch.nn.functional.adaptive_avg_pool2d(values[None, None].float(), SANITY_THUMBNAIL)[0, 0]
    return to_uint8(display_map(small)).numpy()
