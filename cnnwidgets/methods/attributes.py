"""Performance as a function of image attributes (the ILSVRC analysis the CS231n notes cite: accuracy by object
scale, texture, …): per-image attributes, bins over them, and per bin the accuracy and the confidence with counts
and 95 % confidence intervals.

Computed attributes, on the picture the model sees (after its resize and crop), luminance Y = 0.299 R + 0.587 G +
0.114 B in [0, 1]:
- brightness: the mean of Y;
- contrast: the RMS contrast, the standard deviation of Y;
- colourfulness: Hasler & Süsstrunk (2003)'s M = σ_rgyb + 0.3 μ_rgyb on 0..255 values, with rg = R − G and
  yb = (R + G) / 2 − B (0 for a gray image; about 110 for "extremely colourful" in their scale);
- edge_density: the fraction of pixels whose Sobel gradient magnitude of Y (kernels scaled by 1/4, so a step
  from 0 to 1 reads 1 next to it) exceeds EDGE_THRESHOLD;
- object_scale, where masks are given: the fraction of the image's area a mask covers.
User attributes are values per image or functions of the picture (an H×W×3 uint8 array).

Bins hold about equal counts (quantiles) unless edges are given. Accuracy intervals are Wilson score intervals
(exact enough at small counts where the normal one is not); confidence intervals are mean ± 1.96 standard errors.
An attribute that is constant over the dataset cannot be binned: a requested one is an InputError, a default one is
left out with a note; an empty bin (given edges) is kept with count 0, no accuracy and a note.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..backend.index import Source
from ..backend.preprocess import display_batch
from ..errors import InputError

EDGE_THRESHOLD = 0.1
"""A pixel is an edge where Y changes by more than 10 % of the full range across it (Sobel magnitude > 0.1)."""
Z_95 = 1.959963984540054
"""The two-sided 95 % normal quantile."""
DEFAULT_BINS = 5
COMPUTED = ("brightness", "contrast", "colourfulness", "edge_density")


def luminance(pictures: np.ndarray) -> np.ndarray:
    """[N,H,W] Y in [0, 1] of [N,H,W,3] uint8 pictures."""
    rgb = pictures.astype(np.float64) / 255
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def colourfulness(pictures: np.ndarray) -> np.ndarray:
    """[N] Hasler & Süsstrunk's colourfulness of [N,H,W,3] uint8 pictures (module doc)."""
    rgb = pictures.astype(np.float64)
    rg = (rgb[..., 0] - rgb[..., 1]).reshape(len(rgb), -1)
    yb = (0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]).reshape(len(rgb), -1)
    spread = np.sqrt(rg.std(1) ** 2 + yb.std(1) ** 2)
    offset = np.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
    return spread + 0.3 * offset


def edge_density(pictures: np.ndarray, threshold: float = EDGE_THRESHOLD) -> np.ndarray:
    """[N] fraction of pixels with Sobel magnitude of Y above `threshold` (borders replicated)."""
    y = torch.from_numpy(luminance(pictures)).unsqueeze(1)
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=y.dtype) / 4
    kernels = torch.stack([sobel_x, sobel_x.T]).unsqueeze(1)
    gradients = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), kernels)
    magnitude = gradients.pow(2).sum(1).sqrt()
    return (magnitude > threshold).flatten(1).double().mean(1).numpy()


def image_attributes(pictures: np.ndarray, masks: Sequence[np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The computed attributes (module doc) of [N,H,W,3] uint8 pictures, by name; `object_scale` with masks."""
    pictures = np.asarray(pictures)
    if pictures.ndim != 4 or pictures.shape[-1] != 3 or pictures.dtype != np.uint8:
        raise InputError(f"pictures must be [N,H,W,3] uint8, not {pictures.dtype} {pictures.shape}")
    y = luminance(pictures).reshape(len(pictures), -1)
    found = {"brightness": y.mean(1), "contrast": y.std(1), "colourfulness": colourfulness(pictures),
             "edge_density": edge_density(pictures)}
    if masks is not None:
        if len(masks) != len(pictures):
            raise InputError(f"{len(masks)} masks for {len(pictures)} images; pass one mask per image (or None)")
        found["object_scale"] = np.array([np.asarray(mask, dtype=bool).mean() for mask in masks])
    return found


def wilson_interval(successes: int, count: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion `successes` / `count` (95 % by default)."""
    if count == 0:
        raise InputError("a proportion of nothing has no interval; the bin is empty")
    p = successes / count
    centre = (p + z * z / (2 * count)) / (1 + z * z / count)
    half = z * math.sqrt(p * (1 - p) / count + z * z / (4 * count * count)) / (1 + z * z / count)
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # rounding can put p outside at 0 and 1


@dataclass
class Bin:
    """Images whose attribute lies in [low, high) (the last bin includes high): how many, which, how the model did."""

    low: float
    high: float
    count: int
    indices: list[int]
    accuracy: float | None = None  # None without labels or for an empty bin
    accuracy_interval: tuple[float, float] | None = None  # Wilson 95 %
    confidence: float | None = None  # mean top-1 probability
    confidence_interval: tuple[float, float] | None = None  # mean ± 1.96 standard errors

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def bin_edges(values: np.ndarray, bins: int | Sequence[float], name: str = "attribute") -> np.ndarray:
    """Edges of `bins` equal-count bins (quantiles; tied values never split), or the given increasing edges."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise InputError(f"{name} has NaN or infinite values; pass finite numbers, one per image")
    if np.ptp(values) == 0:
        raise InputError(f"{name} is constant ({values[0]:g}) over the dataset, so it cannot be binned; pick another attribute")
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        if bins < 1:
            raise InputError(f"bins={bins}; pass a whole number ≥ 1 or a list of edges")
        return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not (np.diff(edges) > 0).all():
        raise InputError(f"bins={bins!r}; pass a number of bins or at least two increasing edges")
    return edges


def slices(values: np.ndarray, edges: np.ndarray, confidence: np.ndarray, correct: np.ndarray | None) -> list[Bin]:
    """One `Bin` per pair of consecutive edges; values outside the edges fall in no bin."""
    values = np.asarray(values, dtype=np.float64)
    found = []
    for i, (low, high) in enumerate(itertools.pairwise(edges)):
        inside = (values >= low) & ((values < high) if i < len(edges) - 2 else (values <= high))
        indices = np.flatnonzero(inside)
        result = Bin(float(low), float(high), len(indices), indices.tolist())
        if len(indices):
            mean = float(confidence[indices].mean())
            error = float(confidence[indices].std(ddof=1) / math.sqrt(len(indices))) if len(indices) > 1 else 0.0
            result.confidence, result.confidence_interval = mean, (mean - Z_95 * error, mean + Z_95 * error)
            if correct is not None:
                hits = int(correct[indices].sum())
                result.accuracy, result.accuracy_interval = hits / len(indices), wilson_interval(hits, len(indices))
        found.append(result)
    return found


@dataclass
class AttributeSlices:
    """Per-image attributes, labels, predictions and confidences, and the bins of each attribute; `notes` say
    what was left out and why."""

    attributes: dict[str, np.ndarray]
    labels: np.ndarray | None
    predictions: np.ndarray
    confidence: np.ndarray
    bins: dict[str, list[Bin]]
    notes: list[str] = field(default_factory=list)

    @property
    def correct(self) -> np.ndarray | None:
        return None if self.labels is None else self.predictions == self.labels


Attribute = str | Sequence[float] | np.ndarray | Callable[[np.ndarray], float]


def attribute_slices(inspector, dataset: object, attributes: Mapping[str, Attribute] | None = None, *,
                     bins: int | Sequence[float] = DEFAULT_BINS, masks: Sequence[np.ndarray] | None = None,
                     limit: int | None = None) -> AttributeSlices:
    """Run `dataset` (anything `inspector.index` takes) through the model and bin it by each attribute.

    `attributes` maps names to values per image or to functions of the picture the model sees (H×W×3 uint8); names
    of computed attributes ("brightness", …) pick those; None means every computed one (constant ones left out with
    a note). `masks` (one boolean array per image) adds `object_scale`. `limit` uses the first that many images.
    Without labels, or with labels of other classes than the model's (the dataset's `classes` differ from the
    inspector's labels, as for `zoo.sample_patches()`), bins report confidence only, with a note."""
    steps = slicing_steps(inspector, dataset, attributes, bins=bins, masks=masks, limit=limit)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


CHUNK = 8
"""Images preprocessed and predicted per step of `slicing_steps`. Small batches are the fastest per image on a 2-core
CPU (Lite0 at 224 px: 24 ms per image in batches of 8, 57 ms in batches of 32, measured 2026-11-22), and a
step of about 0.2 s keeps a widget's progress moving and its kernel answering between steps."""


def slicing_steps(inspector, dataset: object, attributes: Mapping[str, Attribute] | None = None, *,
                  bins: int | Sequence[float] = DEFAULT_BINS, masks: Sequence[np.ndarray] | None = None,
                  limit: int | None = None) -> Generator[float | None, None, AttributeSlices]:
    """`attribute_slices` as steps of CHUNK images: yields the fraction done (None when the dataset's length is
    unknown) and returns the AttributeSlices; a widget runs it on its job runner (`result = yield from ...`)."""
    source = Source(dataset)
    requested = dict(attributes) if attributes is not None else None
    names = set(COMPUTED) | ({"object_scale"} if masks is not None else set())
    for spec in (requested or {}).values():
        if isinstance(spec, str) and spec not in names:
            raise InputError(f"no computed attribute {spec!r}; pick one of {sorted(names)} or pass values per image")
    size = source.length
    total = min(size, limit) if size is not None and limit is not None else (size if size is not None else limit)
    items = itertools.islice(source.items(), limit)
    shape: tuple | None = None
    labels: list[int | None] = []
    computed: dict[str, list[np.ndarray]] = {}
    functions: dict[str, list[float]] = {name: [] for name, spec in (requested or {}).items() if callable(spec)}
    confidences, predictions = [], []
    while chunk := list(itertools.islice(items, CHUNK)):
        batch = torch.cat([inspector.preprocess(image).cpu() for image, _ in chunk])
        if shape is not None and batch.shape[1:] != shape:
            raise InputError("images come out of the transform in several sizes; use a transform that crops to one size")
        shape = batch.shape[1:]
        pictures = display_batch(batch, inspector.transform).numpy()
        done = len(labels)
        chunk_masks = masks[done: done + len(chunk)] if masks is not None else None
        if chunk_masks is not None and len(chunk_masks) != len(chunk):
            raise InputError(f"{len(masks or [])} masks for more images; pass one mask per image (or None)")
        for name, values in image_attributes(pictures, chunk_masks).items():
            computed.setdefault(name, []).append(values)
        for name in functions:
            spec = (requested or {})[name]
            functions[name] += [float(spec(picture)) for picture in pictures]  # type: ignore[operator]
        probabilities = inspector.batch_logits(batch).softmax(-1)
        confidence, predicted = probabilities.max(-1)
        confidences.append(confidence.numpy())
        predictions.append(predicted.numpy())
        labels += [label for _, label in chunk]
        yield len(labels) / total if total else None
    if not labels:
        raise InputError("the dataset is empty; pass at least one image")
    values_of = {name: np.concatenate(parts) for name, parts in computed.items()}
    chosen: dict[str, np.ndarray] = {}
    for name, spec in (requested if requested is not None else {name: name for name in values_of}).items():
        if isinstance(spec, str):
            chosen[name] = values_of[spec]
        elif callable(spec):
            chosen[name] = np.array(functions[name])
        else:
            values = np.asarray(spec, dtype=np.float64)
            if values.shape != (len(labels),):
                raise InputError(f"attribute {name!r} has {values.size} values for {len(labels)} images; pass one per image")
            chosen[name] = values
    confidence_of, predictions_of = np.concatenate(confidences), np.concatenate(predictions)
    notes = []
    label_array = np.array(labels, dtype=np.int64) if all(label is not None for label in labels) else None
    if label_array is None:
        notes.append("the dataset has no labels: bins show confidence only")
    elif source.classes is not None and inspector.labels is not None and list(source.classes) != list(inspector.labels):
        label_array = None
        notes.append(f"the dataset's classes ({', '.join(source.classes[:3])}, …) are not the model's: bins show confidence only")
    correct = None if label_array is None else predictions_of == label_array
    binned: dict[str, list[Bin]] = {}
    for name, values in chosen.items():
        if attributes is None and np.ptp(values) == 0:
            notes.append(f"{name} is constant ({values[0]:g}) on this dataset: left out")
            continue
        binned[name] = slices(values, bin_edges(values, bins, name), confidence_of, correct)
        notes += empty_bin_notes(name, binned[name])
    return AttributeSlices({name: chosen[name] for name in binned}, label_array, predictions_of, confidence_of, binned, notes)


def empty_bin_notes(name: str, found: list[Bin]) -> list[str]:
    """A note naming the empty bins of attribute `name`, or none."""
    empty = [f"[{b.low:g}, {b.high:g})" for b in found if b.count == 0]
    return [f"{name}: no images in {', '.join(empty)}"] if empty else []
