"""A dataset index: one streaming pass of a dataset through the model, kept small enough for any dataset size.

For each channel of each chosen layer it keeps the top-k images (by the channel's maximum over positions) and
where that maximum is; for every image its pooled CNN code, label, prediction, a content hash and a thumbnail.
Top-k sets are updated batch by batch (memory: k values per channel, whatever the dataset's size), in one
total order — activation descending, then image id ascending — so the result does not depend on batching, and
indexes of disjoint shards merge into exactly the index of the whole (`Index.merge`).

An index remembers a fingerprint of the model's weights and a hash of every image it saw; loading it with
another model or other images is refused, so a stale index is never shown. With `path=` the index is saved
as it goes (every `save_every` seconds and when interrupted) and a second call with the same path resumes
where the first stopped, or returns the finished index at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..errors import InputError, model_errors
from .checkpoints import load_file
from .device import batch_size_for
from .folded import ChannelsLast, foldable_pairs
from .hooks import eval_mode, forward_hooks
from .inspector import FOLD_AFTER_IMAGES, Inspector, class_scores
from .preprocess import display_batch

FORMAT_VERSION = 1
NO_IMAGE = torch.iinfo(torch.int64).max
"""Image id of an empty top-k slot (fewer images seen than k); sorts after every real id."""
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
HASH_CHECKS = 8
"""How many images (evenly spread) are re-hashed to check that a dataset is the one an index was built on."""


# ---------------------------------------------------------------------------------------------- fingerprints


def weights_fingerprint(model: nn.Module) -> str:
    """A hash of every parameter and buffer (names, shapes, dtypes, values): equal iff the weights are equal."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def image_hash(batch: torch.Tensor) -> int:
    """A 63-bit hash of one preprocessed image [C,H,W] (its exact float32 values). SHA-256, hashed in place: 0.8 ms
    for a 224×224 image here against 2.4 ms with BLAKE2b (CPUs hash SHA-256 in hardware), which the index pays for
    every image."""
    data = batch.detach().to("cpu", torch.float32).contiguous().numpy()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little") >> 1


# ---------------------------------------------------------------------------------------------- datasets


class Source:
    """Whatever dataset a user passes, as items (image-like, label or None) in order, with random access when possible."""

    def __init__(self, data: object) -> None:
        self.data = data
        self.classes: list[str] | None = None
        self.batched = False
        if isinstance(data, torch.utils.data.DataLoader):
            self.batched = True
            inner = data.dataset
            self._get = inner.__getitem__ if _map_style(inner) else None
            self._len = len(inner) if _map_style(inner) else None
            self.classes = _classes_of(inner)
        elif isinstance(data, torch.Tensor):
            if data.dim() != 4:
                raise InputError(f"a tensor dataset must be a batch [N,C,H,W], not shape {tuple(data.shape)}; stack the images")
            self._get, self._len = data.__getitem__, len(data)
        elif isinstance(data, (str, os.PathLike)):
            files, labels, classes = _image_folder(Path(data))
            self.classes = classes
            self._get = (lambda i: (files[i], labels[i])) if labels is not None else files.__getitem__
            self._len = len(files)
        elif isinstance(data, (PIL.Image.Image, np.ndarray)):
            raise InputError("index a dataset, not a single image; pass a list of images, a Dataset or a folder")
        elif _map_style(data):
            self._get, self._len = data.__getitem__, len(data)
            self.classes = _classes_of(data)
        elif isinstance(data, torch.utils.data.IterableDataset):
            self._get, self._len = None, None
        else:
            raise InputError(
                f"cannot index a {type(data).__name__}; pass a torch Dataset or DataLoader, a folder of images, "
                "a list of images or an [N,C,H,W] tensor"
            )

    def __len__(self) -> int | None:  # type: ignore[override]
        return self._len

    @property
    def random_access(self) -> bool:
        return self._get is not None

    def item(self, position: int) -> tuple[object, int | None]:
        """Item `position` as (image-like, label or None)."""
        if self._get is None:
            raise InputError("this dataset has no random access (an IterableDataset); pass a map-style Dataset to see its images")
        return parse_item(self._get(position), position)

    def items(self, start: int = 0) -> Iterator[tuple[object, int | None]]:
        """Items from `start` on, in order."""
        if self.batched:
            position = 0
            for batch in self.data:
                images, labels = _split_batch(batch)
                for row in range(len(images)):
                    if position >= start:
                        yield images[row], None if labels is None else int(labels[row])
                    position += 1
        elif self._get is not None:
            for position in range(start, self._len):
                yield self.item(position)
        else:
            for position, item in enumerate(self.data):
                if position >= start:
                    yield parse_item(item, position)


def _map_style(data: object) -> bool:
    return hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, (str, bytes, dict))


def _classes_of(data: object) -> list[str] | None:
    classes = getattr(data, "classes", None)
    return [str(c) for c in classes] if isinstance(classes, (list, tuple)) else None


def _image_folder(folder: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    if not folder.is_dir():
        raise InputError(f"no folder at {str(folder)!r}; pass a folder of images (one subfolder per class for labels)")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"no images (.png, .jpg, …) under {str(folder)!r}; pass a folder that holds some")
    parents = [p.relative_to(folder).parts for p in files]
    if all(len(parts) >= 2 for parts in parents):
        classes = sorted({parts[0] for parts in parents})
        return files, [classes.index(parts[0]) for parts in parents], classes
    return files, None, None


def _label(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return None  # a label that is not a class index (a caption, a box): ignored


def parse_item(item: object, position: int) -> tuple[object, int | None]:
    """(image-like, label or None) of a dataset item: an image, an (image, label, …) tuple, or a dict."""
    if isinstance(item, dict):
        image = next((item[key] for key in ("image", "img", "pixel_values", "input") if key in item), None)
        label = next((item[key] for key in ("label", "labels", "target", "class") if key in item), None)
        if image is None:
            raise InputError(f"item {position} is a dict with keys {sorted(item)}; it needs an 'image' key (and 'label')")
        return image, _label(label)
    if isinstance(item, (tuple, list)) and item:
        return item[0], _label(item[1]) if len(item) > 1 else None
    return item, None


def _split_batch(batch: object) -> tuple[Sequence, Sequence | None]:
    if isinstance(batch, (tuple, list)) and len(batch) >= 2 and isinstance(batch[0], (torch.Tensor, list)):
        return batch[0], batch[1] if isinstance(batch[1], (torch.Tensor, list)) else None
    if isinstance(batch, dict):
        image, label = parse_item(batch, 0)
        return image, label if isinstance(label, (torch.Tensor, list)) else None
    if isinstance(batch, torch.Tensor):
        return batch, None
    raise InputError(f"the DataLoader yields {type(batch).__name__}; it must yield image batches or (images, labels)")


# ---------------------------------------------------------------------------------------------- the index


def _select(values: torch.Tensor, ids: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, k: int):
    """The best k of each row of candidates: activation descending, ties to the lower image id."""
    order = torch.argsort(ids, dim=1, stable=True)
    values, ids, rows, cols = (t.gather(1, order) for t in (values, ids, rows, cols))
    order = torch.argsort(values, dim=1, descending=True, stable=True)[:, :k]
    return tuple(t.gather(1, order) for t in (values, ids, rows, cols))


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
        """[N, t, t, 3] uint8 small pictures of the images as the model sees them (None when built without)."""
        return self._state["thumbnails"]

    @property
    def weights(self) -> str:
        """Fingerprint of the model weights the index was built with."""
        return self._state["weights"]

    @property
    def hashes(self) -> torch.Tensor:
        """[N] int64 content hash of every preprocessed image."""
        return self._state["hashes"]

    def layer_shape(self, layer: str) -> tuple[int, int, int]:
        return tuple(self._state["shapes"][self._layer(layer)])

    def receptive_field(self, layer: str):
        """The layer's `ReceptiveField` (None when it has no spatial extent to trace), traced for all the index's
        layers when first asked for (it needs the model: an attached inspector)."""
        from .receptive_field import ReceptiveField

        fields, name = self._state["fields"], self._layer(layer)
        if name not in fields and self.inspector is not None:  # traced on first use, not while streaming the dataset
            fields.update(_fields(self.inspector, tuple(self._state["input_shape"]), self.layers))
        field = fields.get(name)
        return None if field is None else ReceptiveField.from_dict(field)

    def top(self, layer: str, channel: int) -> list[tuple[int, float, tuple[int, int]]]:
        """The top-k images of `channel` of `layer` as (image id, activation, (row, col) of the maximum), best
        first, ties broken by the lower image id."""
        top = self._state["top"][self._layer(layer)]
        channels = top["values"].shape[0]
        if not isinstance(channel, (int, np.integer)) or not 0 <= channel < channels:
            raise InputError(f"channel {channel} is out of range; layer {layer!r} has channels 0..{channels - 1}")
        return [
            (int(i), float(v), (int(r), int(c)))
            for v, i, r, c in zip(top["values"][channel], top["ids"][channel], top["rows"][channel], top["cols"][channel])
            if int(i) != NO_IMAGE
        ]

    def top_values(self, layer: str) -> torch.Tensor:
        """[C, k] top activations of every channel of `layer` (-inf in empty slots)."""
        return self._state["top"][self._layer(layer)]["values"]

    def _layer(self, layer: str) -> str:
        if layer not in self._state["top"]:
            from ..errors import LayerNotFoundError

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
        if len(source) < len(self):
            raise InputError(f"the dataset has {len(source)} images but the index was built on {len(self)}; pass the same dataset")
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
        for before, after in zip(parts, parts[1:]):
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
            merged = _select(*(torch.cat([top[key] for top in tops], 1) for key in ("values", "ids", "rows", "cols")), first.k)
            state["top"][layer] = dict(zip(("values", "ids", "rows", "cols"), merged))
        merged_index = cls(state)
        merged_index.inspector = first.inspector
        return merged_index

    def __repr__(self) -> str:
        codes = "no codes" if self.codes is None else f"codes {tuple(self.codes.shape)} from {self.codes_layer!r}"
        state = "" if self.complete else ", unfinished"
        return f"Index({len(self)} images from id {self.offset}, top-{self.k} of {len(self.layers)} layers, {codes}{state})"


# ---------------------------------------------------------------------------------------------- building


def _preprocessed(
    inspector: Inspector, image: object, shape: tuple[int, ...] | None, device: torch.device | str | None = None
) -> tuple[torch.Tensor, bool]:
    """[C,H,W] float model input for one item (on the model's device, or on `device`), resized to `shape` if it
    differs (and whether it was)."""
    try:
        batch = inspector.preprocess(image, device)[0]
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - a transform failing on an item: say which kind of item
        raise InputError(
            f"cannot preprocess a {type(image).__name__} from the dataset ({str(error).splitlines()[0]}); "
            "the dataset must yield images (PIL, arrays, paths, tensors) or (image, label) pairs"
        ) from None
    if shape is not None and tuple(batch.shape) != shape:
        if batch.shape[0] != shape[0]:
            raise InputError(f"an image has {batch.shape[0]} channels after preprocessing, others {shape[0]}; pass one kind of image")
        batch = F.interpolate(batch[None], size=shape[1:], mode="bilinear", align_corners=False, antialias=True)[0]
        return batch, True
    return batch, False


def _display(inspector: Inspector, image: torch.Tensor) -> np.ndarray:
    """H×W×3 uint8 of a [C,H,W] model input (normalization undone where known)."""
    return display_batch(image[None], inspector.transform)[0].numpy()


def _thumbnails(inspector: Inspector, batch: torch.Tensor, size: int) -> torch.Tensor:
    """[N, size, size, 3] uint8 pictures of an [N,C,H,W] model input, shrunk (antialiased) before being turned into
    pictures, so the per-pixel work is done on thumbnails, not on whole images."""
    if tuple(batch.shape[-2:]) != (size, size):
        batch = F.interpolate(batch.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return display_batch(batch, inspector.transform)


def default_layers(inspector: Inspector) -> list[str]:
    """Every activation layer (the maps after ReLU-like units, as in the CS231n figures), else every layer."""
    names = [layer.name for layer in inspector.layers if layer.kind == "activation"]
    return names or inspector.layer_names


def _codes_target(inspector: Inspector, codes: str | None) -> tuple[str | None, str | None, int, bool]:
    """(name, module name, call, take its input) of what gives the codes: by default the input of the last Linear."""
    if codes is None:
        return None, None, 0, False
    if codes == "auto":
        linears = [name for name, module in inspector.model.named_modules() if isinstance(module, nn.Linear)]
        if linears:
            return f"input of {linears[-1]}", linears[-1], 0, True
        codes = inspector.layer_names[-1]
    info = inspector.layer(codes)
    return info.name, info.module_name, info.call, False


def _auto_batch_size(device: torch.device, shape: tuple[int, ...]) -> int:
    pixels = shape[-1] * shape[-2]
    return int(min(256, batch_size_for(device) * max(1, (224 * 224) // max(pixels, 1))))


def _amp_dtype(device: torch.device) -> torch.dtype:
    """The autocast type for `amp=True`: bfloat16 (float32's range, so no overflow) where the hardware has it."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _index_model(inspector: Inspector, example: torch.Tensor, tapped: set[str]) -> nn.Module:
    """What the index runs: the inspector's folded, channels-last copy (`backend.folded`; it gives the model's
    activations up to float rounding, about 1e-6 relative, and is what makes the index as fast as a bare forward
    of that copy) unless a tapped module is a convolution it folded a batch norm into, whose output differs;
    then the model itself."""
    model = inspector.scoring_model(example, images=FOLD_AFTER_IMAGES)
    if model is inspector.model:
        return model
    with eval_mode(inspector.model), torch.inference_mode():
        folded = {conv for conv, _norm in foldable_pairs(inspector.model, example)}
    return inspector.model if folded & tapped else model


SPARSE_BELOW = 0.125
"""Search only the maxima above the floor for their position when under this fraction of them were above it in
the layer's previous batch; else search all (gathering most maps one by one costs more than one pass over all)."""


def _maxima(output: torch.Tensor, floor: torch.Tensor | None, sparse: bool) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per image and channel of an [N,C,H,W] map: the maximum (float32, NaN as -inf), where it first occurs (in
    row-major H·W order), read in the map's own memory layout (channels-last maps are not copied), and the
    fraction of maxima above `floor`.

    `floor` [C] (each channel's k-th best value so far, when it has k): only maxima above it can enter the top k.
    When `sparse`, the others come back as -inf and only the chosen maps are searched for their position. Finding
    maxima alone (`amax`) costs a quarter of finding them with their positions on a channels-last map (7 ms
    against 25 ms for [4, 96, 112, 112] on one core here); past the first k·10 images or so, few maxima beat the
    floor (about k/n after n images of a shuffled dataset).
    """
    n, c, h, w = output.shape
    output = output.detach()
    channels_last = output.is_contiguous(memory_format=torch.channels_last) and not output.is_contiguous()
    flat, positions = (output.permute(0, 2, 3, 1).reshape(n, h * w, c), 1) if channels_last else (output.flatten(2), 2)
    if floor is None or not sparse:
        values, where = flat.max(positions)
        values = values.float().nan_to_num(nan=-torch.inf)
        return values, where, 1.0 if floor is None else float((values > floor).float().mean())
    values = flat.amax(positions).float().nan_to_num(nan=-torch.inf)
    chosen = values > floor
    where = torch.zeros((n, c), dtype=torch.int64, device=output.device)
    images, maps = chosen.nonzero(as_tuple=True)
    if len(images):
        where[images, maps] = output[images, maps].flatten(1).argmax(1)
    return values.masked_fill(~chosen, -torch.inf), where, len(images) / max(n * c, 1)


class _Prepared(torch.utils.data.Dataset):
    """Items `start`… of a random-access `Source` as (model input [C,H,W] on the CPU, label or -1, whether it was
    resized to `shape`, content hash): the work a DataLoader's worker processes do while the model runs."""

    def __init__(self, inspector: Inspector, source: Source, start: int, shape: tuple[int, ...]) -> None:
        self.inspector, self.source, self.start, self.shape = inspector, source, start, shape

    def __len__(self) -> int:
        return len(self.source) - self.start

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int, bool, int]:
        image, label = self.source.item(self.start + position)
        tensor, resized = _preprocessed(self.inspector, image, self.shape, "cpu")
        return tensor, -1 if label is None else label, resized, image_hash(tensor)


def _hashed(images: torch.Tensor) -> torch.Tensor:
    return torch.tensor([image_hash(image) for image in images], dtype=torch.int64)


def _row_batches(
    inspector: Inspector, rows: Iterator[tuple[object, int | None]], shape: tuple[int, ...], size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, bool, torch.Tensor]]:
    while chunk := list(itertools.islice(rows, size)):
        prepared = [_preprocessed(inspector, image, shape, "cpu") for image, _label in chunk]
        images = torch.stack([tensor for tensor, _resized in prepared])
        labels = torch.tensor([-1 if label is None else label for _image, label in chunk], dtype=torch.int64)
        yield images, labels, any(resized for _tensor, resized in prepared), _hashed(images)


def _input_batches(
    inspector: Inspector, source: Source, start: int, shape: tuple[int, ...], batch_size: int, num_workers: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, bool, torch.Tensor]]:
    """(model inputs [B,C,H,W] on the CPU, labels (-1: none), whether an image was resized to `shape`, content
    hashes) batch by batch from item `start` on. A random-access dataset goes through a DataLoader whose
    `num_workers` processes decode, preprocess and hash images while the model runs (pinned memory for CUDA); a
    DataLoader passed by the user is read as it batches (its own workers decode; float batches of the model's input
    shape are used as they are); other iterables are read item by item."""
    if source.random_access and not source.batched:
        loader = torch.utils.data.DataLoader(
            _Prepared(inspector, source, start, shape), batch_size=batch_size, num_workers=num_workers,
            pin_memory=inspector.device.type == "cuda")
        for images, labels, resized, hashes in loader:
            yield images, labels, bool(resized.any()), hashes
        return
    if not source.batched:
        yield from _row_batches(inspector, source.items(start), shape, batch_size)
        return
    position = 0
    for batch in source.data:
        images, labels = _split_batch(batch)
        count = len(images)
        skip, position = min(max(start - position, 0), count), position + count
        if skip == count:
            continue
        rows = range(skip, count)
        if (isinstance(images, torch.Tensor) and images.is_floating_point() and tuple(images.shape[1:]) == shape
                and bool(torch.isfinite(images).all())):
            ready = images[skip:].detach().to("cpu", torch.float32)
            found = [None if labels is None else _label(labels[row]) for row in rows]
            yield ready, torch.tensor([-1 if label is None else label for label in found]), False, _hashed(ready)
        else:
            items = ((images[row], None if labels is None else _label(labels[row])) for row in rows)
            yield from _row_batches(inspector, items, shape, count - skip)


def build_index(
    inspector: Inspector,
    dataset: object,
    layers: Sequence[str] | None = None,
    *,
    k: int = 16,
    codes: str | None = "auto",
    thumbnails: int = 32,
    batch_size: int | None = None,
    num_workers: int = 0,
    amp: bool = False,
    offset: int = 0,
    path: str | os.PathLike | None = None,
    save_every: float = 60.0,
    progress: bool = True,
) -> Index:
    """Stream `dataset` through `inspector`'s model once and return its `Index`.

    `dataset`: a torch Dataset or DataLoader, a folder of images (labels from subfolders), a list of images, or
    an [N,C,H,W] tensor; items may be images or (image, label) pairs. `layers`: which layers' top-k to keep
    (default: every activation layer). `codes`: "auto" (the input of the model's last Linear, the penultimate
    features), a layer name (global-average-pooled), or None. `thumbnails`: side of the stored thumbnails (0:
    none). `batch_size`: images per forward (default: fast for the device; a DataLoader keeps its own batches).
    `num_workers`: processes that decode and preprocess images while the model runs (a DataLoader's are its own).
    `amp`: run the model under autocast (bfloat16, or float16 on GPUs without it): faster on GPUs, activations
    within about 1 % of float32's, so near-ties in the top-k may swap. `offset`: the id of the first image, for
    shards of a bigger dataset (merge them with `Index.merge`; `backend.distributed` does it on Ray).
    `path`: save there as it goes, and resume from there (or return the finished index) when called again.
    Runs on the model's device, through its folded copy where that gives the same maps (see `_index_model`);
    receptive fields are traced later, when first asked for. The model is left as it was.
    """
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive number of images per channel, not {k!r}")
    if not isinstance(offset, int) or offset < 0:
        raise InputError(f"offset must be the non-negative id of the first image, not {offset!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise InputError(f"num_workers must be a number of worker processes (0: none), not {num_workers!r}")
    source = Source(dataset)
    if source.random_access and len(source) == 0:
        raise InputError("the dataset is empty; pass one with at least one image")
    first = source.item(0) if source.random_access else next(iter(source.items(0)), None)
    if first is None:
        raise InputError("the dataset is empty; pass one with at least one image")
    example = _preprocessed(inspector, first[0], None)[0]  # layer shapes are those of this dataset's images from here on
    names = [inspector.layer(name).name for name in (default_layers(inspector) if layers is None else layers)]
    if not names:
        raise InputError("pass at least one layer name to index (see inspector.layer_names)")
    codes_name, codes_module_name, codes_call, codes_from_input = _codes_target(inspector, codes)
    weights = weights_fingerprint(inspector.model)
    config = {"layers": names, "k": k, "codes": codes_name, "thumbnails": int(thumbnails)}

    state = None
    if path is not None and Path(path).is_file():
        previous = Index.load(path)
        if previous.weights != weights or previous._state["config"] != config or previous.offset != offset:
            raise InputError(
                f"{str(path)!r} holds an index of other weights, layers or offset; pass another path or delete the file"
            )
        previous.inspector = inspector
        previous._check_source(source)
        if previous.complete:
            previous.source = source
            return previous
        state = previous._state

    total = len(source)
    count = 0 if state is None else int(state["count"])
    input_shape = tuple(example.shape) if state is None else tuple(state["input_shape"])
    device = inspector.device
    size = batch_size or _auto_batch_size(inspector.device, input_shape)
    infos = {name: inspector.layer(name) for name in names}
    tapped = {info.module_name for info in infos.values()} | ({codes_module_name} if codes_module_name else set())
    model = _index_model(inspector, example[None].expand(min(size, 4), *input_shape), tapped)
    root = model.inner if isinstance(model, ChannelsLast) else model

    reduced: dict[str, tuple[torch.Tensor, torch.Tensor, tuple[int, int]]] = {}
    captured_codes: list[torch.Tensor] = []
    wanted: dict[nn.Module, dict[int, str]] = {}
    for name, info in infos.items():
        wanted.setdefault(root.get_submodule(info.module_name), {})[info.call] = name
    calls: dict[nn.Module, int] = {}
    floors: dict[str, torch.Tensor] = {}  # per layer, each channel's k-th best value so far (see `_maxima`)
    chosen: dict[str, float] = {}  # per layer, the fraction of maxima that could enter the top-k in the last batch

    def make_hook(module: nn.Module) -> Callable:
        def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
            call = calls.get(module, 0)
            calls[module] = call + 1
            name = wanted[module].get(call)
            if name is None or not isinstance(output, torch.Tensor) or output.dim() != 4:
                return
            values, where, chosen[name] = _maxima(output, floors.get(name), chosen.get(name, 1.0) < SPARSE_BELOW)
            reduced[name] = (values, where, tuple(output.shape[2:]))

        return hook

    code_calls = [0]

    def codes_hook(_module: nn.Module, inputs: tuple, output: object = None) -> None:
        call = code_calls[0]
        code_calls[0] += 1
        if call != codes_call:
            return
        value = inputs[0] if codes_from_input else output
        value = value.detach().float()
        captured_codes.append(value.mean((2, 3)) if value.dim() == 4 else value.flatten(1))

    codes_module = None if codes_module_name is None else root.get_submodule(codes_module_name)
    shapes: dict[str, list[int]] = {} if state is None else dict(state["shapes"])
    top = None if state is None else {name: {key: t.to(device) for key, t in parts.items()} for name, parts in state["top"].items()}
    per_image: dict[str, list[torch.Tensor]] = {key: [] for key in ("hashes", "labels", "predictions", "confidences", "codes", "thumbnails")}
    if state is not None:
        for key in per_image:
            if state[key] is not None and len(state[key]):
                per_image[key].append(state[key])
    resized_note = False
    fields: dict[str, dict | None] = {} if state is None else dict(state["fields"])
    classes = [0 if state is None else len(state["class_names"])]
    last_save = time.monotonic()

    def snapshot(complete: bool) -> Index:
        joined = {key: (torch.cat(parts) if parts else None) for key, parts in per_image.items()}
        if joined["hashes"] is None:
            joined["hashes"] = torch.zeros(0, dtype=torch.int64)
            joined["labels"] = torch.zeros(0, dtype=torch.int64)
            joined["predictions"] = torch.zeros(0, dtype=torch.int64)
            joined["confidences"] = torch.zeros(0)
        for key in ("hashes", "labels", "predictions", "confidences", "codes", "thumbnails"):  # consolidate
            per_image[key][:] = [] if joined[key] is None else [joined[key]]
        index = Index({
            "version": FORMAT_VERSION, "weights": weights, "config": config, "offset": offset, "count": count,
            "complete": complete, "input_shape": list(input_shape), "shapes": shapes, "fields": fields,
            "class_names": [inspector.label(i) for i in range(classes[0])],
            "label_names": source.classes,
            "top": {} if top is None else {name: {key: t.cpu() for key, t in parts.items()} for name, parts in top.items()},
            **joined,
        })
        index.inspector, index.source = inspector, source
        return index

    autocast = torch.autocast(device.type, dtype=_amp_dtype(device)) if amp else contextlib.nullcontext()
    bar = tqdm(total=total, initial=count, desc="indexing", unit="img", disable=not progress, leave=False)
    finished = False
    try:
        hooks = [(module, make_hook(module)) for module in wanted]
        with eval_mode(inspector.model), torch.inference_mode(), forward_hooks(hooks), \
                forward_hooks([(codes_module, codes_hook)] if codes_module is not None and codes_from_input else [], pre=True), \
                forward_hooks([(codes_module, codes_hook)] if codes_module is not None and not codes_from_input else []):
            for images, labels, resized, hashes in _input_batches(inspector, source, count, input_shape, size, num_workers):
                if resized and not resized_note:
                    resized_note = True
                    warnings.warn(
                        f"the images have mixed sizes; each is resized to {input_shape[1]}×{input_shape[2]} "
                        "(pass a transform that crops to one size to choose how)", stacklevel=2)
                reduced.clear()
                captured_codes.clear()
                calls.clear()
                code_calls[0] = 0
                with model_errors(tuple(images.shape)), autocast:
                    scores = class_scores(model(images.to(device, non_blocking=True))).float()
                ids = torch.arange(offset + count, offset + count + len(images), device=device)
                if top is None:
                    top = {}
                for name in names:
                    if name not in reduced:
                        raise InputError(f"layer {name!r} gave no [N,C,H,W] output on this batch; pick layers from inspector.layers")
                    values, where, (height, width) = reduced[name]
                    shapes[name] = [values.shape[1], height, width]
                    candidates = (values.T, ids.expand(values.shape[1], -1), (where // width).T.int(), (where % width).T.int())
                    if name in top:
                        current = top[name]
                        candidates = tuple(torch.cat([current[key], new], 1) for key, new in zip(("values", "ids", "rows", "cols"), candidates))
                    top[name] = dict(zip(("values", "ids", "rows", "cols"), _select(*candidates, k)))
                    if top[name]["values"].shape[1] == k:
                        floors[name] = top[name]["values"][:, k - 1]
                classes[0] = scores.shape[1]
                confidence, predicted = scores.softmax(1).max(1)
                per_image["hashes"].append(hashes)
                per_image["labels"].append(labels.to(torch.int64))
                per_image["predictions"].append(predicted.cpu())
                per_image["confidences"].append(confidence.cpu())
                if codes_module is not None:
                    if not captured_codes:
                        raise InputError(f"the codes layer {codes_name!r} was not reached; pass codes= a layer from inspector.layers")
                    per_image["codes"].append(captured_codes[0].cpu())
                if thumbnails:
                    per_image["thumbnails"].append(_thumbnails(inspector, images, thumbnails))
                count += len(images)
                bar.update(len(images))
                if path is not None and time.monotonic() - last_save > save_every:
                    snapshot(False).save(path)
                    last_save = time.monotonic()
        finished = True
    finally:
        bar.close()
        if path is not None and not finished and count > 0:
            snapshot(False).save(path)  # interrupted: keep what is done, a second call resumes here
    if count == 0:
        raise InputError("the dataset is empty; pass one with at least one image")
    for name in names:
        top[name] = {key: t[:, :k] for key, t in top[name].items()}
        if top[name]["values"].shape[1] < k:  # fewer images than k: pad with empty slots
            pad = k - top[name]["values"].shape[1]
            channels = top[name]["values"].shape[0]
            filler = {"values": torch.full((channels, pad), -torch.inf, device=device),
                      "ids": torch.full((channels, pad), NO_IMAGE, dtype=torch.int64, device=device),
                      "rows": torch.zeros((channels, pad), dtype=torch.int32, device=device),
                      "cols": torch.zeros((channels, pad), dtype=torch.int32, device=device)}
            top[name] = {key: torch.cat([t, filler[key]], 1) for key, t in top[name].items()}
    index = snapshot(True)
    if path is not None:
        index.save(path)
    return index


def _fields(inspector: Inspector, input_shape: tuple[int, ...], names: Sequence[str]) -> dict[str, dict | None]:
    from .receptive_field import receptive_fields

    fields = receptive_fields(inspector.model, (1, *input_shape), layers=names)
    return {name: (fields[name].as_dict() if fields.get(name) is not None else None) for name in names}


# ---------------------------------------------------------------------------------------------- loading checks

PER_IMAGE = {"hashes": torch.int64, "labels": torch.int64, "predictions": torch.int64, "confidences": None}
TOP_PARTS = ("values", "ids", "rows", "cols")


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
    for key, rank in (("codes", 2), ("thumbnails", 4)):
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
    if not isinstance(parts, dict) or set(parts) != set(TOP_PARTS) or not all(isinstance(parts[p], torch.Tensor) for p in TOP_PARTS):
        return f"its top-k table needs tensors {', '.join(TOP_PARTS)}"
    if not isinstance(shape, (list, tuple)) or len(shape) != 3 or not all(_natural(side) for side in shape):
        return f"its shape {shape!r} is not [C, H, W]"
    channels, height, width = shape
    sizes = {tuple(parts[p].shape) for p in TOP_PARTS}
    if len(sizes) != 1 or len(next(iter(sizes))) != 2 or next(iter(sizes))[0] != channels or next(iter(sizes))[1] > k:
        return f"its top-k tables have shapes {sorted(sizes)}, not [{channels}, at most {k}]"
    ids = parts["ids"]
    real = ids != NO_IMAGE
    if bool(((ids[real] < offset) | (ids[real] >= offset + count)).any()):
        return f"its top-k tables name images outside ids {offset}..{offset + count - 1}"
    if bool(((parts["rows"] < 0) | (parts["rows"] >= height) | (parts["cols"] < 0) | (parts["cols"] >= width)).any()):
        return f"its top-k positions fall outside its {height}×{width} maps"
    return None


def _natural(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
