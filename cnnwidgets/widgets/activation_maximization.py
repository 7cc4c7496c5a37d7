"""ActivationMaximization: synthesize the image that most excites a class or a channel, live, with stop/continue.

The optimization runs in a background thread, in chunks of `every` steps; after each chunk the widget sends the
current images, so the notebook stays responsive and the browser's stop button is handled at once. Every
regularizer of `cnnwidgets.methods.maximize` is a trait; changing one starts afresh (and keeps running if it was).
"""

from __future__ import annotations

import threading

import numpy as np
import traitlets
from torch import nn

from .. import render
from ..backend import Inspector, as_inspector
from ..errors import InputError
from ..methods.image_params import PARAMETERIZATIONS
from ..methods.maximize import UNITS, Maximizer, Settings
from .base import CnnWidget, array_message, front_end


class BackgroundOptimization(CnnWidget):
    """A widget whose optimization advances in a background thread: `running` starts/stops it (also from the
    browser), each run adds `steps` steps, the view refreshes every `every` steps. `reset()` starts afresh."""

    running = traitlets.Bool(False).tag(sync=True)
    step = traitlets.Int(0).tag(sync=True)
    steps = traitlets.Int(64).tag(sync=True)
    every = traitlets.Int(4).tag(sync=True)
    goal = traitlets.Int(0).tag(sync=True)  # the step this run stops at

    def _setup_background(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._lock = threading.RLock()
        self.on_msg(self._on_message)

    # subclasses: build the optimization, advance it, publish its state, say how far it is
    def _make(self) -> None:
        raise NotImplementedError

    def _advance(self, steps: int) -> None:
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
        else:
            self._stop_event.set()

    def _on_message(self, _widget, content: dict, _buffers) -> None:
        if isinstance(content, dict) and content.get("type") == "reset":
            self.reset()

    def start(self) -> None:
        """Run `steps` more steps in the background (continue where it stopped)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop_event.clear()
            self.goal = self._done() + self.steps
            self._thread = threading.Thread(target=self._loop, name=f"{type(self).__name__}-run", daemon=True)
            self._thread.start()
            self.running = True  # after the thread is alive, so this trait's observer does not start a second one

    def stop(self) -> None:
        """Ask the run to stop after the current step, and wait for it."""
        self._stop_event.set()
        self.wait()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the background run ends (for scripts, tests and static exports)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def run(self, steps: int | None = None) -> "BackgroundOptimization":
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
        was_running = self._thread is not None and self._thread.is_alive()
        self.stop()
        with self._working():
            self._make()
            self.step = 0
            self._publish()
        if was_running:
            self.start()

    def _loop(self) -> None:
        try:
            self.error = ""
            while not self._stop_event.is_set() and self._done() < self.goal:
                self._advance(min(self.every, self.goal - self._done()))
                self.step = self._done()
                self._publish()
        except Exception as error:  # shown in the widget; the last good images stay
            self.error = str(error).splitlines()[0] if str(error) else type(error).__name__
        finally:
            self.running = False


class ActivationMaximization(BackgroundOptimization):
    """Synthesize images that maximize class `target`'s logit, or channel `channel` of `layer` (mean, or its centre
    neuron with `unit="neuron"`), with the regularizers of `maximize` as traits: `param` ("fourier"/"pixel"),
    `lr`, `jitter` px, `scale` ±fraction, `rotate` ±degrees, `blur` σ, `l2`, `tv`; `count` images of `size` px from
    seed `seed`, pushed apart by `diversity` (compared at `diversity_layer`, "" for the default middle layer;
    `similarity` shows the batch's mean pairwise Gram-matrix similarity there). Press run (or call `start()` / `run()`), watch the images change every `every` steps, stop any time.
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
    images = traitlets.Dict().tag(sync=True)
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
        self.maximizer: Maximizer | None = None
        with self._working():
            self._make()
            self._publish()
        self.observe(self._on_setting, list(self.SETTINGS))

    def _on_setting(self, _change: dict) -> None:
        self.reset()

    def _make(self) -> None:
        settings = Settings(param=self.param, lr=self.lr, jitter=self.jitter, scale=self.scale, rotate=self.rotate,
                            blur=self.blur, l2=self.l2, tv=self.tv)
        batch = {"count": self.count, "size": self.size, "seed": self.seed, "diversity": self.diversity,
                 "diversity_layer": self.diversity_layer or None, "settings": settings}
        if self.layer:
            self.maximizer = Maximizer(self.inspector, layer=self.layer, channel=self.channel, unit=self.unit, **batch)
        else:
            self.maximizer = Maximizer(self.inspector, self.target or None, **batch)
        self.description = self.maximizer.description

    def _advance(self, steps: int) -> None:
        self.maximizer.step(steps, stop=self._stop_event.is_set)

    def _done(self) -> int:
        return self.maximizer.steps_done if self.maximizer is not None else 0

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

        pictures = np.frombuffer(self.images["data"], np.uint8).reshape(self.images["shape"])
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
