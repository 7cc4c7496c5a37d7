"""The Index value: what one pass over a dataset keeps (see the package doc), read, checked, saved, loaded and
merged. Nothing here runs the model's forward; `builder` makes indexes."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...errors import InputError
from ..checkpoints import load_file
from ..inspector import Inspector
from .datasets import Source, _display, _preprocessed, image_hash

FORMAT_VERSION = 2
"""2: image hashes are `image_hashes` (a random linear hash); 1 held SHA-256 digests, which no longer match."""
NO_IMAGE = torch.iinfo(torch.int64).max
"""Image id of an empty top-k slot (fewer images seen than k); sorts after every real id."""
HASH_CHECKS = 8
"""How many images (evenly spread) are re-hashed to check that a dataset is the one an index was built on."""


def weights_fingerprint(model: nn.Module) -> str:
    """A hash of every parameter and buffer (names, shapes, dtypes, values): equal iff the weights are equal."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def top_parts(shape: Sequence[int]) -> tuple[str, ...]:
    """The tables a layer's top-k keeps: values, image ids and the maximum's position, (rows, cols) on a [C,H,W]
    map and (times, rows, cols) on a clip layer's [C,T,H,W]."""
    return ("values", "ids", "times", "rows", "cols") if len(shape) == 4 else ("values", "ids", "rows", "cols")


ID_BITS = 31
"""Bits of an image id (relative to the smallest among the candidates) that `_select` packs below an activation's
32 bits into one int64 sort key."""


def _select(values: torch.Tensor, ids: torch.Tensor, *positions: torch.Tensor, k: int,
            id_range: tuple[int, int] | None = None) -> tuple[torch.Tensor, ...]:
    """The best k of each row of candidates (with their positions): activation descending, ties to the lower image id
    (image ids are unique within a row, so the order is total).

    One `topk` of an int64 key (the float32 activation's bits made order-preserving, above the id's rank from the
    highest id) gives that order (cProfile of mobilenetv3_large_100, 64 images at batch 4: 0.52 s of sorts and
    gathers before, 0.16 s of `_select` after, with one selection per 4 batches). Candidates whose ids
    span 2^31 or more (a merge with empty slots) are sorted twice instead. `id_range` (lowest, highest id), where the
    caller knows it, spares reading it from the device (a wait for a GPU)."""
    if values.shape[1] == 0:
        return (values, ids, *positions)
    values = values.float()
    low, high = id_range if id_range is not None else (int(ids.min()), int(ids.max()))
    if high - low >= 1 << ID_BITS:
        order = torch.argsort(ids, dim=1, stable=True)
        values, ids, *rest = (t.gather(1, order) for t in (values, ids, *positions))
        order = torch.argsort(values, dim=1, descending=True, stable=True)[:, :k]
        return tuple(t.gather(1, order) for t in (values, ids, *rest))
    bits = (values + 0.0).view(torch.int32)  # + 0.0: -0.0 becomes 0.0, equal to it as in a comparison
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)
    key = (ordered << ID_BITS) | (high - ids)
    order = key.topk(min(k, key.shape[1]), dim=1).indices
    return tuple(t.gather(1, order) for t in (values, ids, *positions))


class Index:
    """Top-k images per channel, pooled codes, labels and predictions of a dataset (see the module doc).

    Build one with `build_index(inspector, dataset, ...)` (or `inspector.index(...)`); read it with `top`,
    `codes`, `labels`, `predictions`, `image`; persist it with `save` / `Index.load`; combine shards with
    `Index.merge`.
    """

    def __init__(self, state: dict) -> None:
        self._state = state
        self.inspector: Inspector | None = None
        self.source: Source | None = None

    # --- reading ----------------------------------------------------------------------------------------------

    @property
    def layers(self) -> list[str]:
        return list(self._state["config"]["layers"])

    @property
    def k(self) -> int:
        return int(self._state["config"]["k"])

    @property
    def offset(self) -> int:
        """Id of this index's first image: its position in the whole dataset when it covers one shard."""
        return int(self._state["offset"])

    def __len__(self) -> int:
        return int(self._state["count"])

    @property
    def complete(self) -> bool:
        return bool(self._state["complete"])

    @property
    def ids(self) -> torch.Tensor:
        return torch.arange(self.offset, self.offset + len(self))

    @property
    def codes(self) -> torch.Tensor | None:
        """[N, D] pooled CNN codes in image-id order (None when built with codes=None)."""
        return self._state["codes"]

    @property
    def codes_layer(self) -> str | None:
        return self._state["config"]["codes"]

    @property
    def labels(self) -> torch.Tensor | None:
        """[N] dataset labels (-1 where an item had none); None when no item had a label."""
        labels = self._state["labels"]
        return labels if bool((labels >= 0).any()) else None

    @property
    def predictions(self) -> torch.Tensor:
        """[N] the model's predicted class for each image."""
        return self._state["predictions"]

    @property
    def confidences(self) -> torch.Tensor:
        """[N] the softmax probability of each prediction."""
        return self._state["confidences"]

    @property
    def class_names(self) -> list[str]:
        """Names of the model's classes (for predictions)."""
        return list(self._state["class_names"])

    @property
    def label_names(self) -> list[str]:
        """Names of the dataset's labels: its `classes` if it has them, else the model's class names."""
        return list(self._state["label_names"] or self._state["class_names"])

    @property
    def thumbnails(self) -> torch.Tensor | None:
        """[N, t, t, 3] uint8 small pictures of the images as the model sees them (None when built without); for
        clips [N, F, t, t, 3] filmstrips of F frames (`builder.filmstrip_frames`)."""
        return self._state["thumbnails"]

    @property
    def is_video(self) -> bool:
        """True for an index of clips (a video model's [C,T,H,W] inputs): positions are (t, row, col)."""
        return len(self._state["input_shape"]) == 4

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The model input of every item: [C,H,W], or [C,T,H,W] for clips."""
        return tuple(self._state["input_shape"])

    @property
    def weights(self) -> str:
        """Fingerprint of the model weights the index was built with."""
        return self._state["weights"]

    @property
    def hashes(self) -> torch.Tensor:
        """[N] int64 content hash of every preprocessed image."""
        return self._state["hashes"]

    def layer_shape(self, layer: str) -> tuple[int, ...]:
        """[C, H, W] of the layer's maps ([C, T, H, W] for clips)."""
        return tuple(self._state["shapes"][self._layer(layer)])

    def receptive_field(self, layer: str):
        """The layer's `ReceptiveField` (None when it has no spatial extent to trace), traced for all the index's
        layers when first asked for (it needs the model: an attached inspector)."""
        from ..receptive_field import ReceptiveField

        fields, name = self._state["fields"], self._layer(layer)
        if name not in fields and self.inspector is not None:  # traced on first use, not while streaming the dataset
            fields.update(_fields(self.inspector, tuple(self._state["input_shape"]), self.layers))
        field = fields.get(name)
        return None if field is None else ReceptiveField.from_dict(field)

    def top(self, layer: str, channel: int) -> list[tuple[int, float, tuple[int, ...]]]:
        """The top-k images of `channel` of `layer` as (image id, activation, (row, col) of the maximum — (t, row,
        col) for clips), best first, ties broken by the lower image id."""
        top = self._state["top"][self._layer(layer)]
        channels = top["values"].shape[0]
        if not isinstance(channel, (int, np.integer)) or not 0 <= channel < channels:
            raise InputError(f"channel {channel} is out of range; layer {layer!r} has channels 0..{channels - 1}")
        positions = zip(*(top[key][channel].tolist() for key in top_parts(self.layer_shape(layer))[2:]))
        return [
            (int(i), float(v), tuple(where))
            for v, i, where in zip(top["values"][channel].tolist(), top["ids"][channel].tolist(), positions)
            if int(i) != NO_IMAGE
        ]

    def top_values(self, layer: str) -> torch.Tensor:
        """[C, k] top activations of every channel of `layer` (-inf in empty slots)."""
        return self._state["top"][self._layer(layer)]["values"]

    def _layer(self, layer: str) -> str:
        if layer not in self._state["top"]:
            from ...errors import LayerNotFoundError

            raise LayerNotFoundError(layer, self.layers)
        return layer

    def image(self, image_id: int) -> np.ndarray:
        """H×W×3 uint8 picture of image `image_id` as the model sees it (from the dataset, else the thumbnail)."""
        if not isinstance(image_id, (int, np.integer)) or isinstance(image_id, bool):
            raise InputError(f"an image id is an integer, not {type(image_id).__name__}")
        if not self.offset <= image_id < self.offset + len(self):
            raise InputError(f"image id {image_id} is not in this index; it holds ids {self.offset}..{self.offset + len(self) - 1}")
        if self.inspector is not None and self.source is not None and self.source.random_access:
            image, _ = self.source.item(image_id - self.offset)
            return _display(self.inspector, _preprocessed(self.inspector, image, None)[0])
        if self.thumbnails is not None:
            return self.thumbnails[image_id - self.offset].numpy()
        raise InputError("this index has no images attached; call index.attach(inspector, dataset) with the dataset it was built on")

    # --- checks, saving, loading ----------------------------------------------------------------------------------

    def attach(self, inspector: Inspector | None = None, dataset: object = None) -> Index:
        """Use `inspector` and `dataset` (the very ones the index was built on, else InputError) to show images."""
        if inspector is not None:
            found = weights_fingerprint(inspector.model)
            if found != self.weights:
                raise InputError(
                    f"this index was built with other model weights ({self.weights[:8]}…, the model now has {found[:8]}…); "
                    "rebuild it with inspector.index(dataset) on the current model"
                )
            self.inspector = inspector
        if dataset is not None:
            source = dataset if isinstance(dataset, Source) else Source(dataset)
            self._check_source(source)
            self.source = source
        return self

    def check(self) -> None:
        """Raise InputError if the attached model's weights changed since the index was built (e.g. it trained)."""
        if self.inspector is not None and weights_fingerprint(self.inspector.model) != self.weights:
            raise InputError("the model's weights changed since this index was built; rebuild it with inspector.index(dataset)")

    def _check_source(self, source: Source) -> None:
        if not source.random_access or self.inspector is None:
            return
        if source.count() < len(self):
            raise InputError(f"the dataset has {source.count()} images but the index was built on {len(self)}; pass the same dataset")
        for position in np.unique(np.linspace(0, len(self) - 1, min(HASH_CHECKS, len(self))).round().astype(int)):
            image, _ = source.item(int(position))
            if image_hash(_preprocessed(self.inspector, image, None)[0]) != int(self.hashes[position]):
                raise InputError(
                    f"image {position} of this dataset differs from the one the index was built on; "
                    "pass the same dataset (and transform), or rebuild the index"
                )

    def state_dict(self) -> dict:
        """Everything the index holds, as tensors, strings and numbers (what `save` writes)."""
        return self._state

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to `path` (atomically: a crash never leaves half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".partial")
        torch.save(self._state, temporary)
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: str | os.PathLike, inspector: Inspector | None = None, dataset: object = None) -> Index:
        """Read an index saved by `save`; with `inspector` / `dataset` it is checked against them and attached."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"no index file at {str(path)!r}; build one with inspector.index(dataset, path=...)")
        state = load_file(path, "index")
        if not isinstance(state, dict) or state.get("version") != FORMAT_VERSION:
            raise InputError(f"{str(path)!r} is not a cnnwidgets index of format {FORMAT_VERSION}; rebuild it")
        problem = state_problem(state)
        if problem is not None:
            raise InputError(f"{str(path)!r} is a damaged index ({problem}); rebuild it")
        return cls(state).attach(inspector, dataset)

    @classmethod
    def merge(cls, indexes: Sequence[Index]) -> Index:
        """The index of the whole from indexes of consecutive, disjoint shards (built with `offset=` each):
        equal to the index one pass over the whole would build."""
        if not indexes:
            raise InputError("Index.merge needs at least one index")
        parts = sorted(indexes, key=lambda index: index.offset)
        first = parts[0]
        for part in parts:
            if part.weights != first.weights:
                raise InputError("these indexes were built with different model weights; merge shards of one model only")
            if part._state["config"] != first._state["config"]:
                raise InputError("these indexes were built with different layers, k, codes or thumbnails; build shards alike")
            if not part.complete:
                raise InputError(f"the shard at offset {part.offset} is unfinished; finish it (call index again with its path) first")
        for before, after in itertools.pairwise(parts):
            if after.offset != before.offset + len(before):
                raise InputError(
                    f"shards must cover consecutive ids: one ends at {before.offset + len(before) - 1}, the next starts at "
                    f"{after.offset}; build each shard with offset= its first position"
                )
        state = {key: value for key, value in first._state.items()}
        state["count"] = sum(len(part) for part in parts)
        for key in ("hashes", "labels", "predictions", "confidences", "codes", "thumbnails"):
            state[key] = None if first._state[key] is None else torch.cat([part._state[key] for part in parts])
        state["top"] = {}
        for layer in first.layers:
            tops = [part._state["top"][layer] for part in parts]
            keys = top_parts(first.layer_shape(layer))
            merged = _select(*(torch.cat([top[key] for top in tops], 1) for key in keys), k=first.k)
            state["top"][layer] = dict(zip(keys, merged))
        merged_index = cls(state)
        merged_index.inspector = first.inspector
        return merged_index

    def __repr__(self) -> str:
        codes = "no codes" if self.codes is None else f"codes {tuple(self.codes.shape)} from {self.codes_layer!r}"
        state = "" if self.complete else ", unfinished"
        return f"Index({len(self)} images from id {self.offset}, top-{self.k} of {len(self.layers)} layers, {codes}{state})"


def _fields(inspector: Inspector, input_shape: tuple[int, ...], names: Sequence[str]) -> dict[str, dict | None]:
    from ..receptive_field import receptive_fields

    if len(input_shape) == 4:  # clips: fields in space-time are measured per unit (`backend.clip_field`)
        return dict.fromkeys(names)
    fields = receptive_fields(inspector.model, (1, *input_shape), layers=names)
    return {name: (None if (field := fields.get(name)) is None else field.as_dict()) for name in names}


# ---------------------------------------------------------------------------------------------- loading checks

PER_IMAGE = {"hashes": torch.int64, "labels": torch.int64, "predictions": torch.int64, "confidences": None}


def state_problem(state: dict) -> str | None:
    """What is wrong with an index state read from a file (a missing key, a count that does not match the
    arrays, an offset below 0, top-k tables of the wrong shape or pointing outside the index), or None."""
    missing = [key for key in ("weights", "config", "offset", "count", "complete", "input_shape", "shapes", "fields",
                               "class_names", "label_names", "top", "codes", "thumbnails", *PER_IMAGE) if key not in state]
    if missing:
        return f"missing {', '.join(missing)}"
    config, offset, count = state["config"], state["offset"], state["count"]
    if not isinstance(config, dict) or not {"layers", "k", "codes", "thumbnails"} <= config.keys():
        return "its config lacks layers, k, codes or thumbnails"
    k = config["k"]
    if not _natural(k) or k < 1 or not isinstance(config["layers"], list):
        return f"k={k!r} or layers={config['layers']!r} is not valid"
    if not _natural(offset) or not _natural(count):
        return f"offset={offset!r} and count={count!r} must be non-negative integers"
    for key, dtype in PER_IMAGE.items():
        values = state[key]
        if not isinstance(values, torch.Tensor) or values.shape != (count,) or (dtype is not None and values.dtype != dtype):
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            return f"{key} has shape {shape}, not ({count},) for count={count}"
    video = isinstance(state["input_shape"], (list, tuple)) and len(state["input_shape"]) == 4
    for key, rank in (("codes", 2), ("thumbnails", 5 if video else 4)):
        values = state[key]
        if values is not None and (not isinstance(values, torch.Tensor) or values.dim() != rank or len(values) != count):
            return f"{key} does not hold one row per image (count={count})"
    top, shapes = state["top"], state["shapes"]
    if not isinstance(top, dict) or not isinstance(shapes, dict) or not set(top) <= set(config["layers"]):
        return "its top-k tables do not match its layers"
    if state["complete"] and set(top) != set(config["layers"]):
        return f"top-k tables for {sorted(set(config['layers']) - set(top))} are missing"
    for layer, parts in top.items():
        problem = _top_problem(parts, shapes.get(layer), k, offset, count)
        if problem is not None:
            return f"layer {layer!r}: {problem}"
    return None


def _top_problem(parts: object, shape: object, k: int, offset: int, count: int) -> str | None:
    if not isinstance(shape, (list, tuple)) or len(shape) not in (3, 4) or not all(_natural(side) for side in shape):
        return f"its shape {shape!r} is not [C, H, W] or [C, T, H, W]"
    names = top_parts(shape)
    if not isinstance(parts, dict) or set(parts) != set(names) or not all(isinstance(parts[p], torch.Tensor) for p in names):
        return f"its top-k table needs tensors {', '.join(names)}"
    channels, *grid = shape
    sizes = {tuple(parts[p].shape) for p in names}
    if len(sizes) != 1 or len(next(iter(sizes))) != 2 or next(iter(sizes))[0] != channels or next(iter(sizes))[1] > k:
        return f"its top-k tables have shapes {sorted(sizes)}, not [{channels}, at most {k}]"
    ids = parts["ids"]
    real = ids != NO_IMAGE
    if bool(((ids[real] < offset) | (ids[real] >= offset + count)).any()):
        return f"its top-k tables name images outside ids {offset}..{offset + count - 1}"
    if any(bool(((parts[key] < 0) | (parts[key] >= side)).any()) for key, side in zip(names[2:], grid)):
        return f"its top-k positions fall outside its {'×'.join(map(str, grid))} maps"
    return None


def _natural(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
