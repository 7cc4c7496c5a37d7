"""ConfusionView: why a video network confuses two actions — where in space and time the clip speaks for each."""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
import traitlets
from torch import nn

from .. import render
from ..backend import Inspector
from ..backend.clips import ClipLike
from ..backend.images import ImageLike
from ..errors import InputError
from ..methods import video
from ..methods.temporal import evidence_display
from .arrays import Array, array_message
from .base import CnnWidget, front_end, top_predictions
from .defaults import as_inspector
from .frames import check_frame
from .jobs import Jobs, Steps

EVIDENCE_COLORMAP = "coolwarm"
"""Signed maps: blue against, white none, red for (the view draws them with the same map)."""


class ConfusionView(CnnWidget):
    """Two classes of a video model on one clip, side by side frame by frame (after Feichtenhofer et al., CVPR 2018,
    who explain PlayingViolin vs PlayingCello this way): where the evidence for each lies in space and time
    (`methods.video.class_evidence`: each class's Grad-CAM, unrectified, at `layer`: red where the clip speaks for
    the class, blue where against), and their difference (the Grad-CAM of the score difference: red where the clip
    speaks for `first` over `second`, blue the other way), with both probabilities and, per frame, each map's mean.

    `first` and `second` are class indices (names work in the constructor and `set_classes`); the default is the
    clip's top two predictions. `frame` picks the frame shown; the view has a slider and a play button, and every
    frame is in the browser, so moving through time needs no round trip. The two classes' maps share one symmetric
    scale, so they compare; the difference has its own (`methods.temporal.evidence_display`).

    The evidence is computed on the widget's job runner, in steps on the kernel's event loop (the forward, then one
    backward through the head per class; r3d_18 on a 16×112×112 clip, one thread: 2–3.6 s, then about 1 ms each),
    with `progress` shown; a newer pick cancels an older one and the last good view stays. `wait()` blocks until
    it is shown.
    """

    _esm = front_end("confusion_view")

    image = Array().tag(sync=True)
    labels = traitlets.List().tag(sync=True)
    predictions = traitlets.List().tag(sync=True)
    first = traitlets.Int(-1).tag(sync=True)
    second = traitlets.Int(-1).tag(sync=True)
    layer = traitlets.Unicode("").tag(sync=True)
    layers = traitlets.List().tag(sync=True)
    frame = traitlets.Int(0).tag(sync=True)
    opacity = traitlets.Float(0.6, min=0.0, max=1.0).tag(sync=True)
    evidence = Array().tag(sync=True)
    """uint8 [3,T,H,W]: evidence for `first`, for `second` (one scale) and their difference, 128 = 0, with the
    probabilities, scores, scales, per-frame means and the request id it answers."""

    def __init__(self, inspector: Inspector | nn.Module | None = None, clip: ClipLike | None = None,
                 first: int | str | None = None, second: int | str | None = None, *, layer: str | None = None,
                 **kwargs: object) -> None:
        self.inspector = as_inspector(inspector)
        if not self.inspector.is_video:
            raise InputError("ConfusionView compares two classes in space-time and needs a video model (Conv3d); "
                             "for an image model compare two classes in SaliencyOverlay(inspector, image, side_by_side=True)")
        if clip is None:
            raise InputError("ConfusionView needs a clip: ConfusionView(inspector, clip), e.g. a clip of zoo.motion_clips()")
        self._batch = self.inspector.preprocess(cast(ImageLike, clip))  # a video model's preprocess takes clips
        super().__init__(**kwargs)
        self._jobs = Jobs(self, thread=False)
        self._ready = False
        probabilities = self.inspector.logits(self._batch).softmax(-1)
        self._probabilities = probabilities
        top = probabilities.topk(2).indices.tolist()
        if first is not None and second is not None and self.inspector.class_index(first) == self.inspector.class_index(second):
            raise InputError(f"first and second are both {self.inspector.label(self.inspector.class_index(first))!r}; pick two different classes")
        with self.hold_trait_notifications():
            self.image = array_message(self.inspector.display_image(self._batch))
            self.labels = [self.inspector.label(i) for i in range(len(probabilities))]
            self.predictions = top_predictions(self.inspector, probabilities)
            self.layers = [info.name for info in self.inspector.layers if len(info.shape) == 4 and info.kind != "other"
                           and int(np.prod(info.shape[1:])) > 1]
            self.layer = layer if layer is not None else video.default_video_cam_layer(self.inspector)
            self.first = self.inspector.class_index(first) if first is not None else top[0]
            self.second = self.inspector.class_index(second) if second is not None else top[1 if top[0] == self.first else 0]
        self._ready = True
        self._show()

    def set_classes(self, first: int | str, second: int | str) -> None:
        """Compare `first` with `second` (names or indices)."""
        with self.hold_trait_notifications():
            self.first, self.second = self.inspector.class_index(first), self.inspector.class_index(second)

    # --- validation ----------------------------------------------------------------------------------------------

    @traitlets.validate("first", "second")
    def _check_class(self, proposal: dict) -> int:
        index = self.inspector.class_index(proposal["value"])
        other = self.second if proposal["trait"].name == "first" else self.first
        if index == other and self._ready:
            raise InputError(f"first and second are both {self.inspector.label(index)!r}; pick two different classes")
        return index

    @traitlets.validate("layer")
    def _check_layer(self, proposal: dict) -> str:
        name = self.inspector.layer(proposal["value"]).name
        if name not in self.layers:
            raise InputError(f"layer {name!r} has no space-time map for Grad-CAM; pick one of {', '.join(self.layers[-3:])}, …")
        return name

    @traitlets.validate("frame")
    def _check_frame(self, proposal: dict) -> int:
        return check_frame(proposal["value"], int(self._batch.shape[2]), "the clip")

    @traitlets.observe("first", "second", "layer")
    def _on_view(self, _change: dict) -> None:
        if self._ready:
            self._show()

    # --- computing -------------------------------------------------------------------------------------------------

    def result(self) -> video.ClassEvidence:
        """The evidence shown, as `methods.video.class_evidence` returns it (maps [T,H,W], scores, layer)."""
        return video.class_evidence(self.inspector, self._batch, self.first, self.second, layer=self.layer)

    def _show(self) -> None:
        """Compute the evidence for the current classes and layer on the job runner (a newer pick cancels it)."""
        self._jobs.start(lambda _job: self._evidence_steps())

    def _evidence_steps(self) -> Steps:
        found = yield from video.class_evidence_steps(self.inspector, self._batch, self.first, self.second, layer=self.layer)
        pictures, scale, bound = evidence_display(found.first_map, found.second_map, found.difference)
        totals = torch.stack([found.first_map, found.second_map, found.difference]).mean((2, 3))
        probabilities = [float(self._probabilities[self.first]), float(self._probabilities[self.second])]
        self.evidence = array_message(pictures.numpy(), **self.answer(
            first=self.first, second=self.second, names=[found.first, found.second], layer=found.layer,
            scores=list(found.scores), probabilities=probabilities, scale=scale, bound=bound,
            totals=totals.tolist(),
        ))
        self.error = ""

    def wait(self, timeout: float | None = None) -> None:
        """Block until the evidence for the current classes and layer is shown (in a notebook it follows in steps)."""
        self._jobs.finish(timeout)

    # --- export ------------------------------------------------------------------------------------------------------

    def _figure_png(self) -> bytes:
        import matplotlib.pyplot as plt

        self.wait()
        frames, pictures, shown = self.image.array, self.evidence.array, self.evidence
        frame = frames[self.frame].astype(np.float32)
        figure, axes = plt.subplots(1, 4, figsize=(15, 3.9), gridspec_kw={"width_ratios": [1, 1, 1, 1.5]})
        names = shown["names"]
        titles = [f"{names[0]} (p {shown['probabilities'][0]:.2f})", f"{names[1]} (p {shown['probabilities'][1]:.2f})",
                  "difference (red: first, blue: second)"]
        for index, (axis, title) in enumerate(zip(axes[:3], titles)):
            colors = render.colorize(pictures[index, self.frame], EVIDENCE_COLORMAP).astype(np.float32)
            axis.imshow(((1 - self.opacity) * frame + self.opacity * colors).round().clip(0, 255).astype(np.uint8))
            axis.set_title(title, fontsize=9)
            axis.axis("off")
        totals = np.asarray(shown["totals"])
        axes[3].plot(totals[0], label=names[0], color="#e53935")
        axes[3].plot(totals[1], label=names[1], color="#1976d2")
        axes[3].plot(totals[2], label="difference", color="#444", linestyle="--")
        axes[3].axvline(self.frame, color="#999", linewidth=1)
        axes[3].axhline(0, color="#ccc", linewidth=0.8)
        axes[3].set_xlabel("frame")
        axes[3].legend(fontsize=8)
        figure.suptitle(f"frame {self.frame} of {len(frames)}, Grad-CAM at {shown['layer']}; red: for, blue: against", fontsize=10)
        return render.figure_png(figure)
