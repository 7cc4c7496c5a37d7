"""ActivationMaximization: synthesize the image that most excites a class or a channel, live, with stop/continue.

The optimization runs in a background thread, in chunks of `every` steps; after each chunk the widget sends the
current images, so the notebook stays responsive and the browser's stop button is handled at once. Every
regularizer of `cnnwidgets.methods.maximize` is a trait; changing one starts afresh (and keeps running if it was).

`param` picks what is optimized: pixels, a decorrelated Fourier spectrum, or the latent code of a generator prior
(`prior=`, e.g. `zoo.digits_generator()`). `compare=True` runs them side by side from the same seed with the same
regularizers, because the difference between parameterizations is a matter of texture and plausibility that
one image at a time does not show (the eye needs the three in a row, at the same step).

On a video model (Conv3d, `Inspector.is_video`) the same widget maximizes a clip (`methods.video.ClipMaximizer`,
what `maximize_clip` runs) with the spatial and temporal smoothness penalties of Feichtenhofer et al. as traits;
the clip is sent as binary frames and loops in the browser; `compare=True` shows the fast (no temporal penalty) and
the slow (`temporal`, or SLOW_TEMPORAL) version of the unit's preferred input side by side. A two-stream model's
appearance and motion inputs are maximized jointly and both shown.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import torch
import traitlets
from torch import nn

from .. import render
from ..backend import Inspector
from ..errors import InputError
from ..methods.generator_prior import check_prior
from ..methods.image_params import check_range
from ..methods.maximize import UNITS, MaximizationResult, Maximizer, Settings
from ..methods.video import ClipMaximizer, VideoMaximization
from .arrays import Array, array_message
from .base import CnnWidget, front_end
from .defaults import as_inspector
from .jobs import Job, Jobs, Steps


class BackgroundOptimization(CnnWidget):
    """A widget whose optimization advances in the background (on its `Jobs` runner, in a thread, on a private
    copy of the model): `running` starts/stops it, each run adds `steps` steps, the view refreshes every `every`
    steps. `reset()` starts afresh. From the browser: the actions "start", "stop" and "reset" (see `base`)."""

    running = traitlets.Bool(False).tag(sync=True)
    step = traitlets.Int(0).tag(sync=True)
    steps = traitlets.Int(64).tag(sync=True)
    every = traitlets.Int(4).tag(sync=True)
    goal = traitlets.Int(0).tag(sync=True)  # the step this run stops at

    ACTIONS = ("start", "stop", "reset")

    def _setup_background(self) -> None:
        self._jobs = Jobs(self, thread=True)
        self._job: Job | None = None
        self._copy: Inspector | None = None
        self._copied_weights: int | None = None

    def _private_inspector(self) -> Inspector:
        """The copy of the user's model the background steps run on, made again when the user's weights changed
        (the model itself is never used off the main thread)."""
        weights = self.inspector.weights_key()
        if self._copy is None or weights != self._copied_weights:
            self._copy, self._copied_weights = self.inspector.private_copy(), weights
        return self._copy

    # subclasses: build the optimization, advance it, publish its state, say how far it is
    def _make(self) -> None:
        raise NotImplementedError

    def _advance(self, steps: int, stop: Callable[[], bool]) -> None:
        raise NotImplementedError

    def _publish(self) -> None:
        raise NotImplementedError

    def _done(self) -> int:
        raise NotImplementedError

    @traitlets.validate("steps", "every")
    def _check_counts(self, proposal: dict) -> int:
        if not 1 <= proposal["value"] <= 100_000:
            raise InputError(f"{proposal['trait'].name}={proposal['value']} is out of range; pass a whole number ≥ 1")
        return proposal["value"]

    @traitlets.observe("running")
    def _on_running(self, change: dict) -> None:
        if change["new"]:
            self.start()
        elif self._job is not None:
            self._job.cancel()

    def start(self) -> None:
        """Run `steps` more steps in the background (continue where it stopped)."""
        if self._jobs.running:
            return
        self.error = ""
        self.goal = self._done() + self.steps
        self._job = self._jobs.start(self._run_steps)
        self.running = True  # after the job exists, so this trait's observer does not start a second one

    def stop(self) -> None:
        """Ask the run to stop after the current step, and wait for it."""
        self._jobs.cancel()
        self.wait()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the background run ends (for scripts, tests and static exports)."""
        self._jobs.wait(timeout)

    def run(self, steps: int | None = None) -> BackgroundOptimization:
        """Run `steps` (default `self.steps`) more steps and wait for them: for notebooks that export `to_png()`."""
        if steps is not None:
            self.steps = steps
        self.start()
        self.wait()
        if self.error:
            raise RuntimeError(self.error)
        return self

    def reset(self) -> None:
        """Start afresh (new random start with the current settings); a running optimization keeps running."""
        was_running = self._jobs.running
        self.stop()
        with self._working():
            self._make()
            self.step = 0
            self._publish()
        if was_running:
            self.start()

    def _run_steps(self, job: Job) -> Steps:
        """The job: `every` steps at a time until the goal, publishing after each chunk; `running` false at the end."""
        try:
            start = self._done()
            while self._done() < self.goal and not job.is_cancelled():
                self._advance(min(self.every, self.goal - self._done()), job.is_cancelled)
                self.step = self._done()
                self._publish()
                yield (self._done() - start) / max(self.goal - start, 1)
        finally:
            self.running = False


PARAMS = ("pixel", "fourier", "generator")
"""The widget's parameterizations, from least to most prior knowledge (the order `compare` shows them in): pixels,
the Fourier spectrum (`methods.image_params`), a generator's latent code (`methods.generator_prior`)."""
SLOW_TEMPORAL = 1000.0
"""The temporal penalty of the "slow" clip when `temporal` is 0: on the zoo's C3D (24 steps, lr 0.1, a conv2
channel) it cuts the mean frame-to-frame change from 0.23 to 0.04 while the channel still rises from 0.04 to 7.1
(see `methods.video.maximize_clip`)."""
MOTION_GRAY = 0.5
"""A two-stream model's motion input (a frame difference) is shown as gray + difference / 2: gray is no change."""


class ActivationMaximization(BackgroundOptimization):
    """Synthesize images that maximize class `target`'s logit (a class index; the constructor also takes a name), or
    channel `channel` of `layer` (mean, or its centre neuron with `unit="neuron"`), with the regularizers of
    `maximize` as traits: `param` ("pixel"/"fourier"/"generator", the last with `prior=`), `lr`, `jitter` px,
    `scale` ±fraction, `rotate` ±degrees, `blur` σ, `l2`, `tv`; `count` images of `size` px from seed `seed`,
    pushed apart by `diversity` (compared at `diversity_layer`, "" for the default middle layer; `similarity` shows
    the batch's mean pairwise Gram-matrix similarity there). `compare=True` runs every parameterization (the
    generator one when there is a prior; blur acts on pixels and is left out of it) side by side; `variants` lists
    them in the order of `images`, each with its objective per step. Press run (or call `start()` / `run()`),
    watch the images change every `every` steps, stop any time. With no inspector: the embedded EfficientNet-Lite0.

    On a video model: a clip of the model's size (`clips`, [K·T,H,W,3] frames; `motions` for a two-stream model's
    motion input), with `spatial` and `temporal` smoothness penalties, `jitter` in whole px; `compare=True` shows
    the fast (temporal 0) and the slow version; `variants` carry each one's `frame_change`."""

    _esm = front_end("activation_maximization")

    target = traitlets.Int(0).tag(sync=True)
    layer = traitlets.Unicode("").tag(sync=True)
    channel = traitlets.Int(0).tag(sync=True)
    unit = traitlets.Enum(list(UNITS), "channel").tag(sync=True)
    param = traitlets.Enum(list(PARAMS), "fourier").tag(sync=True)
    compare = traitlets.Bool(False).tag(sync=True)
    lr = traitlets.Float(Settings.lr).tag(sync=True)
    jitter = traitlets.Float(Settings.jitter).tag(sync=True)
    scale = traitlets.Float(Settings.scale).tag(sync=True)
    rotate = traitlets.Float(Settings.rotate).tag(sync=True)
    blur = traitlets.Float(Settings.blur).tag(sync=True)
    l2 = traitlets.Float(Settings.l2).tag(sync=True)
    tv = traitlets.Float(Settings.tv).tag(sync=True)
    spatial = traitlets.Float(0.0).tag(sync=True)
    temporal = traitlets.Float(0.0).tag(sync=True)
    diversity = traitlets.Float(0.0).tag(sync=True)
    diversity_layer = traitlets.Unicode("").tag(sync=True)
    count = traitlets.Int(1).tag(sync=True)
    size = traitlets.Int(160).tag(sync=True)
    seed = traitlets.Int(0).tag(sync=True)
    labels = traitlets.List().tag(sync=True)
    layer_names = traitlets.List().tag(sync=True)
    has_prior = traitlets.Bool(False).tag(sync=True)
    video = traitlets.Bool(False).tag(sync=True)
    images = Array().tag(sync=True)
    clips = Array().tag(sync=True)
    motions = Array().tag(sync=True)
    history = traitlets.List().tag(sync=True)
    variants = traitlets.List().tag(sync=True)
    probabilities = traitlets.List().tag(sync=True)
    predictions = traitlets.List().tag(sync=True)
    similarity = traitlets.Dict().tag(sync=True)  # {"layer", "value"} for a batch, {} for one image
    description = traitlets.Unicode("").tag(sync=True)

    SETTINGS = ("target", "layer", "channel", "unit", "param", "compare", "lr", "jitter", "scale", "rotate", "blur", "l2",
                "tv", "spatial", "temporal", "diversity", "diversity_layer", "count", "size", "seed")

    def __init__(self, inspector: Inspector | nn.Module | None = None, target: int | str | None = None,
                 prior: nn.Module | None = None, **kwargs: object) -> None:
        self.inspector = as_inspector(inspector)
        self.prior = check_prior(prior) if prior is not None else None
        self._private_prior: nn.Module | None = None
        if self.inspector.input_size is not None:  # a fixed-size model (timm ViT, Swin) takes its own size only
            kwargs.setdefault("size", self.inspector.input_size[0])
        if self.inspector.is_video:  # Settings' jitter is for 160-px images; a clip of 32 px moves too much with it
            kwargs.setdefault("jitter", 0.0)
        if target is None:  # the embedded model's espresso, else the first class
            target = "espresso" if "espresso" in (self.inspector.labels or ()) else 0
        kwargs["target"] = self.inspector.class_index(target)
        kwargs["has_prior"] = self.prior is not None
        kwargs["video"] = self.inspector.is_video
        super().__init__(**kwargs)
        self._setup_background()
        self.labels = list(self.inspector.labels or [])
        self.layer_names = self.inspector.layer_names
        with self._working():
            self._make()
            self._publish()
        self.observe(self._on_setting, list(self.SETTINGS))

    def _on_setting(self, _change: dict) -> None:
        self.reset()

    @traitlets.validate("has_prior", "video")
    def _check_fixed(self, proposal: dict) -> bool:
        fixed = {"has_prior": self.prior is not None, "video": self.inspector.is_video}[proposal["trait"].name]
        if proposal["value"] != fixed:
            raise InputError(f"{proposal['trait'].name} says what the widget was made with; pass prior= or a video "
                             "model to ActivationMaximization(...) instead")
        return fixed

    @traitlets.validate(*SETTINGS)
    def _check_setting(self, proposal: dict) -> object:
        """A setting the optimization cannot use is refused at once (checked by building one on the user's model,
        which runs no forward pass), not when the next run starts."""
        name, value = proposal["trait"].name, proposal["value"]
        if name == "target":
            value = self.inspector.class_index(value)  # an index out of range raises
        if name in ("spatial", "temporal"):
            check_range(name, value, 0.0)  # checked on image models too, where they wait for a video model
        if name == "diversity_layer" and value:
            self.inspector.layer(value)  # checked even while a single image does not use it
        self._maximizers(self.inspector, self.prior, **{name: value})
        return value

    def _maximizers(self, inspector: Inspector, prior: nn.Module | None,
                    **changed: object) -> list[tuple[str, Maximizer | ClipMaximizer]]:
        """(name, optimization) for each variant shown: one, or with `compare` every parameterization (images) or
        the fast and the slow clip (video)."""
        value: dict[str, Any] = {name: changed.get(name, getattr(self, name)) for name in self.SETTINGS}
        unit = {"layer": value["layer"], "channel": value["channel"], "unit": value["unit"]} if value["layer"] else {}
        target = None if value["layer"] else value["target"]
        if self.inspector.is_video:
            paces = ([("fast", 0.0), ("slow", value["temporal"] or SLOW_TEMPORAL)] if value["compare"]
                     else [("clip", value["temporal"])])
            return [(name, ClipMaximizer(inspector, target, lr=value["lr"], spatial=value["spatial"], temporal=temporal,
                                         jitter=round(value["jitter"]), seed=value["seed"], **unit))
                    for name, temporal in paces]
        params = [param for param in PARAMS if param != "generator" or prior is not None] if value["compare"] else [value["param"]]
        if "generator" in params and prior is None:
            raise InputError("param='generator' optimizes a generator's latent code; pass one as "
                             "ActivationMaximization(inspector, prior=zoo.digits_generator())")
        made: list[tuple[str, Maximizer | ClipMaximizer]] = []
        for param in params:
            on_prior = param == "generator"
            settings = Settings(param="fourier" if on_prior else param, lr=value["lr"], jitter=value["jitter"],
                                scale=value["scale"], rotate=value["rotate"], blur=0.0 if on_prior and value["compare"] else value["blur"],
                                l2=value["l2"], tv=value["tv"])
            made.append((param, Maximizer(inspector, target, count=value["count"], size=value["size"], seed=value["seed"],
                                          diversity=value["diversity"], diversity_layer=value["diversity_layer"] or None,
                                          settings=settings, prior=prior if on_prior else None, **unit)))
        return made

    def _private_generator(self) -> nn.Module | None:
        """The background steps' own copy of the prior (a user's module is never used off the main thread)."""
        if self.prior is not None and self._private_prior is None:
            self._private_prior = copy.deepcopy(self.prior)
        return self._private_prior

    def _make(self) -> None:
        self.optimizations = self._maximizers(self._private_inspector(), self._private_generator())
        self.maximizer = self.optimizations[0][1]
        self.description = self.maximizer.description.removesuffix(" (generator prior)")

    def _advance(self, steps: int, stop: Callable[[], bool]) -> None:
        for _name, optimization in self.optimizations:
            optimization.step(steps, stop=stop)

    def _done(self) -> int:
        optimizations = getattr(self, "optimizations", None)  # none before the constructor made the first
        return min(optimization.steps_done for _name, optimization in optimizations) if optimizations else 0

    def _publish(self) -> None:
        results = [(name, optimization.result()) for name, optimization in self.optimizations]
        if self.inspector.is_video:
            self._publish_clips(cast(list[tuple[str, VideoMaximization]], results))
        else:
            self._publish_images(cast(list[tuple[str, MaximizationResult]], results))

    def _publish_images(self, results: list[tuple[str, MaximizationResult]]) -> None:
        images = [result for _name, result in results]
        similarities = [result.similarity for result in images if result.similarity is not None]
        with self.hold_trait_notifications():
            self.images = array_message(torch.cat([result.pictures for result in images]).numpy(), step=self._done())
            self.history = [round(v, 4) for v in images[0].history]
            self.variants = [{"name": name, "history": [round(v, 4) for v in result.history],
                              "probabilities": result.probabilities or []} for name, result in results] if self.compare else []
            self.probabilities = [p for result in images for p in result.probabilities or []]
            self.predictions = [[{"label": label, "probability": p} for label, p in top] for result in images for top in result.predictions]
            self.similarity = ({"layer": cast(Maximizer, self.maximizer).diversity_layer, "value": round(similarities[0], 4)}
                               if similarities else {})

    def _publish_clips(self, results: list[tuple[str, VideoMaximization]]) -> None:
        frames = np.concatenate([result.frames.numpy() for _name, result in results])
        motions = [result.motion for _name, result in results if result.motion is not None]
        std = cast(ClipMaximizer, self.maximizer).std.cpu()
        with self.hold_trait_notifications():
            self.clips = array_message(frames, frames=int(results[0][1].clip.shape[2]), step=self._done())
            if motions:
                shown = torch.cat([(MOTION_GRAY + motion * std / 2).clamp(0, 1)[0].permute(1, 2, 3, 0) for motion in motions])
                self.motions = array_message((shown * 255).round().to(torch.uint8).numpy(), frames=int(motions[0].shape[2]))
            self.history = [round(v, 4) for v in results[0][1].history]
            self.variants = [{"name": name, "history": [round(v, 4) for v in result.history],
                              "frame_change": round(result.frame_change, 4)} for name, result in results]

    def result(self) -> Any:
        """The current `MaximizationResult` (images, objective history, probabilities), or on a video model the
        `VideoMaximization` (clip, motion input, history, frame change), of the first variant shown."""
        return self.maximizer.result()

    def results(self) -> dict[str, Any]:
        """Every variant's result by name ("pixel", "fourier", "generator"; "fast", "slow"; or the one shown)."""
        return {name: optimization.result() for name, optimization in self.optimizations}

    def _figure_png(self) -> bytes:
        import matplotlib.pyplot as plt

        if self.inspector.is_video:
            return self._clips_png()
        pictures = self.images.array
        names = [variant["name"] for variant in self.variants for _ in range(self.count)] or [""] * len(pictures)
        figure, axes = plt.subplots(1, len(pictures) + 1, figsize=(3.4 * (len(pictures) + 1), 3.6))
        for index, (axis, picture) in enumerate(zip(axes, pictures)):
            axis.imshow(picture)
            title = f"p = {self.probabilities[index]:.3f}" if self.probabilities else ""
            axis.set_title(f"{names[index]} {title}".strip(), fontsize=9)
            axis.axis("off")
        for variant in self.variants or [{"name": "", "history": self.history}]:
            axes[-1].plot(variant["history"], label=variant["name"] or None)
        if self.variants:
            axes[-1].legend(fontsize=8)
        axes[-1].set_xlabel("step")
        spread = f"\nmean Gram similarity {self.similarity['value']:.2f}" if self.similarity else ""
        axes[-1].set_title(f"{self.description}: objective{spread}", fontsize=9)
        return render.figure_png(figure)

    def _clips_png(self) -> bytes:
        """Every 4th frame of each variant's clip (and motion input) in a row, with its frame-to-frame change."""
        import matplotlib.pyplot as plt

        length = self.clips["frames"]
        rows = [(variant["name"], self.clips.array[k * length:(k + 1) * length], variant["frame_change"])
                for k, variant in enumerate(self.variants)]
        if self.motions:
            frames = self.motions["frames"]
            rows += [(f"{variant['name']} motion input", self.motions.array[k * frames:(k + 1) * frames], None)
                     for k, variant in enumerate(self.variants)]
        shown = range(0, length, 4)
        figure, axes = plt.subplots(len(rows), len(shown), figsize=(1.6 * len(shown), 1.8 * len(rows)), squeeze=False)
        for row, (name, frames_of, change) in zip(axes, rows):
            for axis, t in zip(row, shown):
                if t < len(frames_of):
                    axis.imshow(frames_of[t])
                axis.axis("off")
            row[0].set_title(f"{name}" + (f": frame change {change:.3f}" if change is not None else ""), fontsize=8, loc="left")
        figure.suptitle(f"{self.description}, frames 0, 4, 8, …", fontsize=9)
        return render.figure_png(figure)
