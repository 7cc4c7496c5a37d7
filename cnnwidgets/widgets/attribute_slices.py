"""AttributeSlices: how the model does on slices of a dataset by an image attribute (brightness, contrast,
colourfulness, edge density, object scale, or the user's own): per bin the accuracy with its Wilson 95 % interval,
the mean confidence with its interval, and the count; click a bin to see its images and their predictions.

Predicting the dataset is the long part: it runs in steps of `methods.attributes.CHUNK` images on the widget's job
runner (on the kernel's event loop, so the view shows progress and the kernel answers between steps). Changing the
attribute or the bins afterwards only re-bins the stored values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import traitlets
from torch import nn

from .. import render
from ..backend import Inspector
from ..backend.images import ImageLike
from ..backend.index import Source
from ..backend.preprocess import display_batch
from ..errors import InputError
from ..methods.attributes import DEFAULT_BINS, Attribute, Bin, bin_edges, empty_bin_notes, slices, slicing_steps
from ..methods.attributes import AttributeSlices as Slicing
from .arrays import Array, array_message
from .base import CnnWidget, front_end
from .defaults import as_inspector
from .jobs import Job, Jobs, Steps

MAX_SHOWN = 48
"""Images of a clicked bin sent to the view: enough to judge a bin, few enough for one small message."""
THUMB = 96
"""Side of the thumbnails in pixels (larger model inputs are shrunk with antialiasing)."""
MAX_BINS = 20


class AttributeSlices(CnnWidget):
    """`dataset` (anything `inspector.index` takes) binned by `attribute` into `bins` equal-count bins (or the given
    increasing `edges`). `table` holds per bin: low, high, count, accuracy and its Wilson interval (None without
    labels of the model's classes), confidence and its interval. Setting `selected` (a bin; a click) shows up to
    MAX_SHOWN of its images in `images` with their predictions. `result` is the `methods.attribute_slices` answer."""

    _esm = front_end("attribute_slices")

    names = traitlets.List().tag(sync=True)
    attribute = traitlets.Unicode("").tag(sync=True)
    bins = traitlets.Int(DEFAULT_BINS).tag(sync=True)
    edges = traitlets.List().tag(sync=True)
    selected = traitlets.Int(-1).tag(sync=True)
    table = traitlets.Dict().tag(sync=True)
    images = Array().tag(sync=True)
    notes = traitlets.List().tag(sync=True)
    summary = traitlets.Dict().tag(sync=True)

    def __init__(self, inspector: Inspector | nn.Module | None, dataset: object, attributes: Mapping[str, Attribute] | None = None,
                 *, bins: int | Sequence[float] = DEFAULT_BINS, masks: Sequence[np.ndarray] | None = None,
                 limit: int | None = None, **kwargs: object) -> None:
        self.inspector = as_inspector(inspector)
        if dataset is None:
            raise InputError("AttributeSlices needs a dataset; pass e.g. zoo.digits('test') with zoo.digits_cnn()")
        self._source = Source(dataset)
        self.result: Slicing | None = None
        self._bins: list[Bin] = []
        if not isinstance(bins, (int, np.integer)):
            kwargs["edges"] = [float(edge) for edge in bins]
        else:
            kwargs["bins"] = int(bins)
        self._jobs = Jobs(self, thread=False, raise_in_wait=True)
        super().__init__(**kwargs)
        self._jobs.start(lambda job: self._predict(job, dataset, attributes, masks, limit))

    def wait(self, timeout: float | None = None) -> AttributeSlices:
        """Block until the dataset is predicted and binned (raises what stopped it)."""
        self._jobs.wait(timeout)
        return self

    # --- checking values ---------------------------------------------------------------------------------------------

    @traitlets.validate("attribute")
    def _check_attribute(self, proposal: dict) -> str:
        if self.result is not None and proposal["value"] not in self.result.bins:
            raise InputError(f"no attribute {proposal['value']!r}; pick one of {sorted(self.result.bins)}")
        return proposal["value"]

    @traitlets.validate("bins")
    def _check_bins(self, proposal: dict) -> int:
        if not 1 <= proposal["value"] <= MAX_BINS:
            raise InputError(f"bins={proposal['value']} is out of range; pick 1..{MAX_BINS}")
        return proposal["value"]

    @traitlets.validate("edges")
    def _check_edges(self, proposal: dict) -> list[float]:
        edges = proposal["value"]
        if edges and (len(edges) < 2 or any(not isinstance(v, (int, float)) for v in edges) or np.any(np.diff(edges) <= 0)):
            raise InputError(f"edges={edges!r}; pass at least two increasing numbers, or [] for equal-count bins")
        return [float(v) for v in edges]

    @traitlets.validate("selected")
    def _check_selected(self, proposal: dict) -> int:
        if not -1 <= proposal["value"] < max(len(self._bins), 1):
            raise InputError(f"selected={proposal['value']} is out of range; pick a bin 0..{len(self._bins) - 1} or -1")
        return proposal["value"]

    # --- predicting the dataset (a job) and binning -------------------------------------------------------------------

    def _predict(self, _job: Job, dataset: object, attributes: Mapping[str, Attribute] | None,
                 masks: Sequence[np.ndarray] | None, limit: int | None) -> Steps:
        result = yield from slicing_steps(self.inspector, dataset, attributes, bins=self.edges or self.bins, masks=masks, limit=limit)
        if not result.bins:
            raise InputError("every attribute is constant on this dataset; pass attributes that vary")
        if self.attribute and self.attribute not in result.bins:
            raise InputError(f"no attribute {self.attribute!r}; pick one of {sorted(result.bins)}")
        correct = result.correct
        with self.hold_trait_notifications():  # before `result` is set, so no observer bins yet: binned once below
            self.names = list(result.bins)
            self.attribute = self.attribute or next(iter(result.bins))
            self.summary = {"images": len(result.predictions), "labelled": correct is not None,
                            "accuracy": None if correct is None else float(correct.mean()),
                            "confidence": float(result.confidence.mean())}
        self.result = result
        self.error = ""
        self._rebin()

    @traitlets.observe("attribute", "bins", "edges")
    def _on_binning(self, _change: dict) -> None:
        if self.result is not None:
            with self._working():
                self._rebin()

    def _rebin(self) -> None:
        result = self.result
        assert result is not None
        values = result.attributes[self.attribute]
        self._bins = slices(values, bin_edges(values, self.edges or self.bins, self.attribute), result.confidence, result.correct)
        rows = [{key: value for key, value in found.as_dict().items() if key != "indices"} for found in self._bins]
        with self.hold_trait_notifications():
            self.notes = [note for note in result.notes if ": no images in" not in note] + empty_bin_notes(self.attribute, self._bins)
            self.table = self.answer(attribute=self.attribute, bins=rows, labelled=result.correct is not None)
            self.selected = -1
            self.images = array_message(np.zeros((0, THUMB, THUMB, 3), np.uint8), **self.answer(bin=-1, items=[], count=0))

    @traitlets.observe("selected")
    def _on_selected(self, _change: dict) -> None:
        if self.result is not None and self.selected >= 0:
            with self._working():
                self._show_bin()

    def _show_bin(self) -> None:
        result = self.result
        assert result is not None
        found = self._bins[self.selected]
        positions = found.indices[:MAX_SHOWN]
        pictures = thumbnails(self.inspector, [self._source.item(p)[0] for p in positions])  # type: ignore[misc]
        items = [{"position": p, "prediction": self.inspector.label(int(result.predictions[p])),
                  "probability": float(result.confidence[p]),
                  "label": None if result.labels is None else self.inspector.label(int(result.labels[p])),
                  "correct": None if result.correct is None else bool(result.correct[p])} for p in positions]
        self.images = array_message(pictures, **self.answer(bin=self.selected, items=items, count=found.count))

    def _figure_png(self) -> bytes:
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(1.2 * max(len(self._bins), 3) + 2, 3.6))
        rows = self.table.get("bins", [])
        x = np.arange(len(rows))
        labelled = self.table.get("labelled")
        for row, position in zip(rows, x):
            if row["count"] == 0:
                axis.text(float(position), 0.05, "empty", ha="center", fontsize=8)
                continue
            if labelled:
                low, high = row["accuracy_interval"]
                axis.bar(position, row["accuracy"], color="#1976d2", width=0.6)
                axis.errorbar(position, row["accuracy"], [[row["accuracy"] - low], [high - row["accuracy"]]], color="k", capsize=4)
            low, high = row["confidence_interval"]
            axis.errorbar(position + 0.15, row["confidence"], [[row["confidence"] - low], [high - row["confidence"]]],
                          fmt="o", color="#ff7f0e", capsize=3)
            axis.text(float(position), 1.02, f"n={row['count']}", ha="center", fontsize=8)
        axis.set_xticks(x, [f"{row['low']:.3g}–{row['high']:.3g}" for row in rows], fontsize=8)
        axis.set_ylim(0, 1.1)
        axis.set_xlabel(self.attribute)
        axis.set_ylabel("accuracy (bars, Wilson 95 %), confidence (dots)" if labelled else "confidence (mean ± 1.96 s.e.)", fontsize=8)
        return render.figure_png(figure)


def thumbnails(inspector: Inspector, images: Sequence[ImageLike]) -> np.ndarray:
    """[N, THUMB, THUMB, 3] uint8 pictures of `images` as the model sees them (after its resize and crop)."""
    if not images:
        return np.zeros((0, THUMB, THUMB, 3), np.uint8)
    batch = torch.cat([inspector.preprocess(image).cpu() for image in images])
    pictures = display_batch(batch, inspector.transform).permute(0, 3, 1, 2).float()
    pictures = F.interpolate(pictures, size=(THUMB, THUMB), mode="bilinear", antialias=True, align_corners=False)
    return pictures.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
