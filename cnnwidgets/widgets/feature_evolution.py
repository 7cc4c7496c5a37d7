"""FeatureEvolution: how features form during training, from checkpoints or live while a model trains."""

from __future__ import annotations

import copy
import itertools
import random
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import traitlets
from torch import nn

from .. import render
from ..backend import Inspector
from ..backend.checkpoints import CheckpointSource, load_checkpoints, non_finite
from ..backend.index import parse_item
from ..backend.receptive_field import receptive_fields
from ..errors import InputError
from ..methods import filter_images
from ..methods.evolution import evolution_panels, first_conv, weight_change
from .arrays import Array, array_message
from .base import CnnWidget, front_end
from .defaults import as_inspector
from .jobs import Job, Jobs, Steps

BACKGROUND_SHARE = 0.05
"""While snapshots keep coming, the background thread computes panels at most this share of the time and rests
the remainder, so the training loop keeps the cores and Python's interpreter lock (bench/feature_evolution.py:
2-3 % slower training with a snapshot every epoch). The thread keeps a normal CPU priority: at the lowest one
(nice 19) a loaded machine starved it, and `wait()` timed out after 60 s; `wait()` ends the rests instead."""
REST_MAX_S = 5.0
"""The longest rest between two rounds of panels, so a view falls at most this far behind once training stops."""


class FeatureEvolution(CnnWidget):
    """An epoch slider over training checkpoints: first-layer filters, each chosen feature's strongest image and
    its deconvnet projection per epoch (rows = features, columns = epochs), and curves of dead channels,
    sparsity, weight change and accuracy.

    Give checkpoints (`{epoch: state_dict or path}`, `[(epoch, state)]` or a folder), or track a model live with
    `FeatureEvolution.track(model, dataset)` and call `snapshot(epoch)` in your own training loop. The model
    passed in is never changed: checkpoints load into a private copy. With no arguments it shows the embedded
    digits CNN's training run on the held-out digits.

    A snapshot only copies the weights; the epoch's panels are computed on the widget's `Jobs` runner, in a
    background thread on one core working at most BACKGROUND_SHARE of the time while snapshots keep coming, so
    training keeps the processor and the view catches up as it can (the slider grows when an epoch is ready).
    `wait()` computes the rest without resting and blocks until every snapshot is shown.

    Requests (`widgets.base`): the epoch slider needs no Python work (every epoch's panels are in the browser), so
    its messages carry `epoch` and a `request` id, and the panels a snapshot publishes are the answer: `tiles`
    carries the `request` it saw. A publish moves `epoch` to the newest epoch only when the user was on the newest;
    the front end keeps the user's own epoch over a publish that answers an older request (the slider was moved
    while the snapshot was computed), instead of jumping away from it.
    """

    _esm = front_end("feature_evolution")

    epochs = traitlets.List(traitlets.Int()).tag(sync=True)
    epoch = traitlets.Int(-1).tag(sync=True)
    features = traitlets.List().tag(sync=True)
    filters = Array().tag(sync=True)
    tiles = Array().tag(sync=True)
    curves = traitlets.Dict().tag(sync=True)
    colormap = traitlets.Enum(list(render.COLORMAPS), "coolwarm").tag(sync=True)

    def __init__(
        self,
        model: Inspector | nn.Module | None = None,
        checkpoints: CheckpointSource | None = None,
        dataset: object = None,
        *,
        features: Sequence[tuple[str, int]] | None = None,
        features_per_layer: int = 4,
        layers: Sequence[str] | None = None,
        sample: int = 256,
        tile: int = 48,
        seed: int = 0,
        **kwargs: object,
    ) -> None:
        if model is None:
            from .. import zoo

            model = zoo.digits_cnn()
            checkpoints = checkpoints or {e: zoo.checkpoint_path(e) for e in zoo.checkpoint_epochs()}
            dataset = dataset if dataset is not None else zoo.digits("test")
        if dataset is None:
            raise InputError("FeatureEvolution needs a dataset to find each feature's strongest images; pass dataset=")
        given = as_inspector(model)
        self.inspector = Inspector(copy.deepcopy(given.model), given.transform, given.labels)
        self._tracked: nn.Module | None = None
        self._batch, self._targets = _sample_batch(self.inspector, dataset, sample, seed)
        spatial = [info.name for info in self.inspector.layers if info.kind == "activation" and len(info.shape) == 3 and info.shape[1] > 1]
        self._layers = list(layers) if layers is not None else spatial or self.inspector.layer_names
        self._features = ([(str(layer), int(channel)) for layer, channel in features] if features is not None
                          else _pick_features(self.inspector, self._layers, features_per_layer, seed))
        for layer, channel in self._features:
            if not 0 <= channel < self.inspector.layer(layer).shape[0]:
                raise InputError(f"channel {channel} is out of range for layer {layer!r}; pick 0..{self.inspector.layer(layer).shape[0] - 1}")
        self._tile = tile
        self._fields = receptive_fields(self.inspector.model, tuple(self._batch[:1].shape))
        self._states: dict[int, dict[str, torch.Tensor]] = {}
        self._panels: dict[int, dict] = {}
        self._metrics: dict[int, dict[str, float]] = {}
        self._computing = threading.RLock()  # held while the private copy computes panels and they are published
        self._queue = threading.Lock()  # guards _waiting
        self._waiting: dict[int, tuple[dict[str, torch.Tensor], dict[str, float]]] = {}
        self._jobs = Jobs(self, thread=True, rest_share=BACKGROUND_SHARE, rest_max_s=REST_MAX_S, raise_in_wait=True)
        super().__init__(**kwargs)
        self.features = [{"layer": layer, "channel": channel} for layer, channel in self._features]
        loaded = load_checkpoints(checkpoints or {})
        diverged = {epoch: names for epoch, state in loaded.items() if (names := non_finite(state))}
        for epoch, state in sorted(loaded.items()):
            if epoch not in diverged:
                self._add(epoch, state, None)
        self._publish()
        self.error = _diverged_message(diverged)

    @classmethod
    def track(cls, model: nn.Module | Inspector, dataset: object, **options: Any) -> FeatureEvolution:
        """A widget that follows `model` as it trains: display it, then call `snapshot(epoch)` each epoch."""
        widget = cls(model, None, dataset, **options)
        widget._tracked = as_inspector(model).model
        return widget

    def snapshot(self, epoch: int, metrics: Mapping[str, float] | None = None) -> None:
        """Record the tracked model's weights as they are now, as `epoch` (with optional metrics such as
        accuracies, drawn as curves); the view updates in the background (see `wait`).

        Only the copy of the weights happens here, so a snapshot every epoch barely slows the training loop.
        """
        if self._tracked is None:
            raise InputError("snapshot() follows a live model; create the widget with FeatureEvolution.track(model, dataset)")
        state = {name: tensor.detach().clone() for name, tensor in self._tracked.state_dict().items()}
        with self._queue:
            self._waiting[int(epoch)] = (state, dict(metrics or {}))
        self._jobs.start(self._drain, replace=False)  # after the running drain, which may have seen the queue empty

    def wait(self, timeout: float | None = None) -> None:
        """Block until every snapshot taken so far is computed and shown (at most `timeout` seconds, then a
        TimeoutError); raises the error that stopped one, if any (the widget shows it too)."""
        self._jobs.wait(timeout)

    def _drain(self, _job: Job) -> Steps:
        """The background job: compute the panels of the waiting snapshots and publish, a round per step, until
        none is left."""
        torch.set_num_threads(1)  # this thread only: no second team of spinning OpenMP threads beside the training
        while True:
            with self._queue:
                if not self._waiting:
                    return
                waiting = sorted(self._waiting.items())
                self._waiting.clear()
            with self._computing, self._working():
                for epoch, (state, metrics) in waiting:
                    self._add(epoch, load_checkpoints({epoch: state})[epoch], metrics)
                self._publish()
            yield None

    def add_checkpoint(self, epoch: int, state: Mapping[str, torch.Tensor], metrics: Mapping[str, float] | None = None) -> None:
        """Add (or replace) the weights after `epoch` and update the view (at once, unlike `snapshot`)."""
        with self._queue:
            self._waiting.pop(int(epoch), None)
        with self._computing, self._working():
            self._add(int(epoch), load_checkpoints({epoch: state})[int(epoch)], metrics)
            self._publish()

    def _add(self, epoch: int, state: dict[str, torch.Tensor], metrics: Mapping[str, float] | None) -> None:
        if names := non_finite(state):
            raise InputError(_diverged_message({epoch: names}))
        try:
            self.inspector.model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise InputError(f"the checkpoint of epoch {epoch} does not fit the model: {str(error).splitlines()[0]}") from None
        panels = evolution_panels(self.inspector, self._batch, self._features, self._layers, self._targets, self._tile, self._fields)
        weight = self.inspector.model.get_submodule(first_conv(self.inspector.model)).weight
        assert isinstance(weight, torch.Tensor)
        panels["filters"], panels["filters_note"] = filter_images(weight)
        self._states[epoch], self._panels[epoch] = state, panels
        self._metrics[epoch] = dict(metrics or {})

    def _publish(self) -> None:
        following = self.epoch == (self.epochs[-1] if self.epochs else -1)  # on the newest epoch: stay on the newest
        epochs = sorted(self._panels)
        if not epochs:
            self.epochs, self.epoch = [], -1
            return
        panels = [self._panels[e] for e in epochs]
        self.filters = array_message(np.stack([p["filters"].numpy() for p in panels]), source=first_conv(self.inspector.model),
                                     note=panels[0]["filters_note"])
        self.tiles = array_message(torch.stack([p["tiles"] for p in panels], 1).numpy(),
                                   values=torch.stack([p["values"] for p in panels], 1).tolist(),
                                   images=torch.stack([p["images"] for p in panels], 1).tolist(), epochs=epochs,
                                   request=self.request)
        weighted = [name for name, module in self.inspector.model.named_modules()
                    if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))]
        changes = [None] + [weight_change(self._states[a], self._states[b], weighted) for a, b in itertools.pairwise(epochs)]
        metric_names = sorted({name for e in epochs for name in self._metrics[e]})
        self.curves = {
            "epochs": epochs,
            "dead_fraction": {layer: [p["dead_fraction"][layer] for p in panels] for layer in self._layers},
            "sparsity": {layer: [p["sparsity"][layer] for p in panels] for layer in self._layers},
            "weight_change": {name: [None if c is None else c[name] for c in changes] for name in weighted},
            "metrics": {
                **({"sample accuracy": [p["accuracy"] for p in panels]} if panels[0]["accuracy"] is not None else {}),
                **{name: [self._metrics[e].get(name) for e in epochs] for name in metric_names},
            },
        }
        self.epochs = epochs
        if following or self.epoch not in epochs:
            self.epoch = epochs[-1]

    @traitlets.validate("epoch")
    def _check_epoch(self, proposal: dict) -> int:
        if proposal["value"] != -1 and proposal["value"] not in self._panels:
            raise InputError(f"no checkpoint for epoch {proposal['value']}; pick one of {sorted(self._panels)}")
        return proposal["value"]

    def _figure_png(self) -> bytes:
        import matplotlib.pyplot as plt

        epochs = self.epochs
        if not epochs:
            raise InputError("there is nothing to export yet; add a checkpoint or take a snapshot first")
        column = epochs.index(self.epoch)
        tiles = self.tiles.array  # [F, E, 2, S, S, 3]
        filters = self.filters.array[column]
        figure = plt.figure(figsize=(4 + 1.1 * len(epochs), 2 + 0.6 * len(tiles)))
        grid = figure.add_gridspec(2, 2, width_ratios=[1, max(1, len(epochs) / 3)], height_ratios=[1, 1])
        axis = figure.add_subplot(grid[0, 0])
        axis.imshow(render.tile(filters if filters.shape[-1] == 3 else render.colorize(filters[..., 0], "coolwarm")), interpolation="nearest")
        axis.set_title(f"{self.filters['source']} filters, epoch {self.epoch}", fontsize=9)
        axis.axis("off")
        cells = tiles.transpose(0, 2, 3, 1, 4, 5)  # [F, 2, S, E, S, 3]: per feature, image row over projection row
        count, _, size = cells.shape[:3]
        axis = figure.add_subplot(grid[:, 1])
        axis.imshow(cells.reshape(count * 2 * size, len(epochs) * size, 3), interpolation="nearest")
        axis.set_xticks([(i + 0.5) * size for i in range(len(epochs))], [str(e) for e in epochs], fontsize=8)
        axis.set_yticks([(2 * i + 1) * size for i in range(count)], [f"{f['layer']} #{f['channel']}" for f in self.features], fontsize=7)
        axis.set_title("strongest image and its deconvnet projection, by epoch", fontsize=9)
        axis = figure.add_subplot(grid[1, 0])
        for layer, values in self.curves["dead_fraction"].items():
            axis.plot(epochs, values, marker=".", label=layer)
        axis.axvline(self.epoch, color="gray", lw=0.8)
        axis.set_title("fraction of dead channels", fontsize=9)
        axis.legend(fontsize=6)
        return render.figure_png(figure)


def _diverged_message(diverged: Mapping[int, list[str]]) -> str:
    """The widget's note for epochs whose weights hold NaN or infinite values (not shown: their panels would
    look like pictures of a working model), or "" for none."""
    if not diverged:
        return ""
    epochs = sorted(diverged)
    names = diverged[epochs[0]]
    more = f" and {len(names) - 2} more" if len(names) > 2 else ""
    return (f"epoch{'s' if len(epochs) > 1 else ''} {', '.join(map(str, epochs))} not shown: NaN or infinite weights "
            f"({', '.join(names[:2])}{more}); training diverged there")


def _sample_batch(inspector: Inspector, dataset: Any, sample: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A fixed random sample of `dataset` as one preprocessed batch, with labels when every item has one."""
    if isinstance(dataset, torch.Tensor) and dataset.dim() == 4:
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:sample]
        return dataset[order.sort().values].float(), None
    try:
        count = len(dataset)
    except TypeError:
        raise InputError("the dataset needs a length (a torch Dataset, a list of images or an [N,C,H,W] tensor)") from None
    if count == 0:
        raise InputError("the dataset is empty; pass at least one image")
    positions = sorted(random.Random(seed).sample(range(count), min(sample, count)))
    items: list[tuple[Any, int | None]] = [parse_item(dataset[p], p) for p in positions]
    batch = torch.cat([inspector.preprocess(image) for image, _ in items]).cpu()
    labels = [label for _, label in items]
    return batch, None if any(label is None for label in labels) else torch.tensor(labels)


def _pick_features(inspector: Inspector, layers: Sequence[str], per_layer: int, seed: int) -> list[tuple[str, int]]:
    generator = random.Random(seed)
    features = []
    for layer in layers:
        channels = inspector.layer(layer).shape[0]
        features += [(layer, c) for c in sorted(generator.sample(range(channels), min(per_layer, channels)))]
    return features


