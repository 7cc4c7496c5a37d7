"""ActivationMaximization: synthesize the image that most excites a class or a channel, live, with stop/continue.

The optimization runs in a background thread, in chunks of `every` steps; after each chunk the widget sends the
current images, so the notebook stays responsive and the browser's stop button is handled at once. Every
regularizer of `cnnwidgets.methods.maximize` is a trait; changing one starts afresh (and keeps running if it was).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import traitlets
from torch import nn

from .. import render
from ..backend import Inspector
from ..errors import InputError
from ..methods.image_params import PARAMETERIZATIONS
from ..methods.maximize import UNITS, Maximizer, Settings
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


class ActivationMaximization(BackgroundOptimization):
    """Synthesize images that maximize class `target`'s logit, or channel `channel` of `layer` (mean, or its centre
    neuron with `unit="neuron"`), with the regularizers of `maximize` as traits: `param` ("fourier"/"pixel"),
    `lr`, `jitter` px, `scale` ±fraction, `rotate` ±degrees, `blur` σ, `l2`, `tv`; `count` images of `size` px from
    seed `seed`, pushed apart by `diversity` (compared at `diversity_layer`, "" for the default middle layer;
    `similarity` shows the batch's mean pairwise Gram-matrix similarity there). Press run (or call `start()` /
    `run()`), watch the images change every `every` steps, stop any time.
    With no inspector: the embedded EfficientNet-Lite0."""

    _esm = front_end("activation_maximization")

    target = traitlets.Unicode("espresso").tag(sync=True)
    layer = traitlets.Unicode("").tag(sync=True)
    channel = traitlets.Int(0).tag(sync=True)
    unit = traitlets.Enum(list(UNITS), "channel").tag(sync=True)
    param = traitlets.Enum(list(PARAMETERIZATIONS), "fourier").tag(sync=True)
    lr = traitlets.Float(Settings.lr).tag(sync=True)
    jitter = traitlets.Float(Settings.jitter).tag(sync=True)
    scale = traitlets.Float(Settings.scale).tag(sync=True)
    rotate = traitlets.Float(Settings.rotate).tag(sync=True)
    blur = traitlets.Float(Settings.blur).tag(sync=True)
    l2 = traitlets.Float(Settings.l2).tag(sync=True)
    tv = traitlets.Float(Settings.tv).tag(sync=True)
    diversity = traitlets.Float(0.0).tag(sync=True)
    diversity_layer = traitlets.Unicode("").tag(sync=True)
    count = traitlets.Int(1).tag(sync=True)
    size = traitlets.Int(160).tag(sync=True)
    seed = traitlets.Int(0).tag(sync=True)
    labels = traitlets.List().tag(sync=True)
    layer_names = traitlets.List().tag(sync=True)
    images = Array().tag(sync=True)
    history = traitlets.List().tag(sync=True)
    probabilities = traitlets.List().tag(sync=True)
    predictions = traitlets.List().tag(sync=True)
    similarity = traitlets.Dict().tag(sync=True)  # {"layer", "value"} for a batch, {} for one image
    description = traitlets.Unicode("").tag(sync=True)

    SETTINGS = ("target", "layer", "channel", "unit", "param", "lr", "jitter", "scale", "rotate", "blur", "l2", "tv", "diversity", "diversity_layer",
                "count", "size", "seed")

    def __init__(self, inspector: Inspector | nn.Module | None = None, target: int | str | None = "espresso", **kwargs: object) -> None:
        self.inspector = as_inspector(inspector)
        if self.inspector.input_size is not None:  # a fixed-size model (timm ViT, Swin) takes its own size only
            kwargs.setdefault("size", self.inspector.input_size[0])
        if isinstance(target, int):
            target = self.inspector.label(self.inspector.class_index(target))
        kwargs["target"] = target or ""
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

    @traitlets.validate(*SETTINGS)
    def _check_setting(self, proposal: dict) -> object:
        """A setting the optimization cannot use is refused at once (checked by building one on the user's model,
        which runs no forward pass), not when the next run starts."""
        if proposal["trait"].name == "diversity_layer" and proposal["value"]:
            self.inspector.layer(proposal["value"])  # checked even while a single image does not use it
        self._maximizer(self.inspector, **{proposal["trait"].name: proposal["value"]})
        return proposal["value"]

    def _maximizer(self, inspector: Inspector, **changed: object) -> Maximizer:
        value: dict[str, Any] = {name: changed.get(name, getattr(self, name)) for name in self.SETTINGS}
        settings = Settings(param=value["param"], lr=value["lr"], jitter=value["jitter"], scale=value["scale"],
                            rotate=value["rotate"], blur=value["blur"], l2=value["l2"], tv=value["tv"])
        batch = {"count": value["count"], "size": value["size"], "seed": value["seed"], "diversity": value["diversity"],
                 "diversity_layer": value["diversity_layer"] or None, "settings": settings}
        if value["layer"]:
            return Maximizer(inspector, layer=value["layer"], channel=value["channel"], unit=value["unit"], **batch)
        return Maximizer(inspector, value["target"] or None, **batch)

    def _make(self) -> None:
        self.maximizer = self._maximizer(self._private_inspector())
        self.description = self.maximizer.description

    def _advance(self, steps: int, stop: Callable[[], bool]) -> None:
        self.maximizer.step(steps, stop=stop)

    def _done(self) -> int:
        maximizer = getattr(self, "maximizer", None)  # none before the constructor made the first
        return maximizer.steps_done if maximizer is not None else 0

    def _publish(self) -> None:
        maximizer = self.maximizer
        result = maximizer.result()
        with self.hold_trait_notifications():
            self.images = array_message(result.pictures.numpy(), step=maximizer.steps_done)
            self.history = [round(v, 4) for v in result.history]
            self.probabilities = result.probabilities or []
            self.predictions = [[{"label": label, "probability": p} for label, p in top] for top in result.predictions]
            self.similarity = ({"layer": maximizer.diversity_layer, "value": round(result.similarity, 4)}
                               if result.similarity is not None else {})

    def result(self):
        """The current `MaximizationResult` (images, objective history, probabilities)."""
        return self.maximizer.result()

    def _figure_png(self) -> bytes:
        import matplotlib.pyplot as plt

        pictures = self.images.array
        figure, axes = plt.subplots(1, len(pictures) + 1, figsize=(3.4 * (len(pictures) + 1), 3.6))
        for index, (axis, picture) in enumerate(zip(axes, pictures)):
            axis.imshow(picture)
            title = f"p = {self.probabilities[index]:.3f}" if self.probabilities else ""
            axis.set_title(title, fontsize=9)
            axis.axis("off")
        axes[-1].plot(self.history)
        axes[-1].set_xlabel("step")
        spread = f"\nmean Gram similarity {self.similarity['value']:.2f}" if self.similarity else ""
        axes[-1].set_title(f"{self.description}: objective{spread}", fontsize=9)
        return render.figure_png(figure)
