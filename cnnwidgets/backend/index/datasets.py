"""Dataset adaptation for the index: whatever a user passes (a Dataset, a DataLoader, a folder, a list, a tensor)
as items (image-like, label or None) in order, each turned into the model input the index hashes and runs."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeGuard, cast

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from ...errors import InputError
from ..images import ImageLike
from ..inspector import Inspector
from ..preprocess import display_batch

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
IMAGE_KEYS = ("image", "img", "pixel_values", "input")  # where a dict item (or batch) holds its image(s)
LABEL_KEYS = ("label", "labels", "target", "class")


HASH_SEED = 20261130
LOW_63_BITS = (1 << 63) - 1


@functools.lru_cache(maxsize=8)
def _hash_multipliers(numel: int, device: torch.device) -> torch.Tensor:
    """`numel` fixed odd random int64 multipliers, the same on every machine (drawn on the CPU from one seed)."""
    generator = torch.Generator().manual_seed(HASH_SEED)
    return (torch.randint(-(1 << 62), 1 << 62, (numel,), generator=generator, dtype=torch.int64) * 2 + 1).to(device)


@functools.cache
def _hash_kernel() -> Callable:
    import numba

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def weighted_sums(bits: np.ndarray, multipliers: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover (compiled)
        """out[n] = Σ_i bits[n, i] · multipliers[i], in int64 arithmetic that wraps (modulo 2^64)."""
        for n in range(bits.shape[0]):
            total = np.int64(0)
            for i in range(bits.shape[1]):
                total += np.int64(bits[n, i]) * multipliers[i]
            out[n] = total

    return weighted_sums


def image_hashes(batch: torch.Tensor) -> torch.Tensor:
    """63-bit hashes [N] (int64, on the batch's device) of N preprocessed images [N, …], from their exact float32
    values: the bit patterns times fixed random odd multipliers, summed modulo 2^64. Two different images collide
    with probability about 2^-63. Hashing happens where the batch already is, in one pass: 0.1 ms for a 224×224
    image on this CPU (SHA-256 took 0.8 ms, 8 % of a Lite0 forward; on a GPU it took as long as the forward),
    and nothing waits on the device. On the CPU a compiled loop makes the same sums without PyTorch's int64 copies
    of the batch: 38 against 239 µs for four 128-px images (700 µs inside an index's loop)."""
    batch = batch.detach().to(torch.float32).reshape(len(batch), -1).contiguous()
    if batch.device.type == "cpu":
        out = np.empty(len(batch), np.int64)
        _hash_kernel()(batch.numpy().view(np.int32), _hash_multipliers(batch.shape[1], batch.device).numpy(), out)
        return torch.from_numpy(out) & LOW_63_BITS
    bits = batch.view(torch.int32).to(torch.int64)
    return (bits * _hash_multipliers(bits.shape[1], bits.device)).sum(1) & LOW_63_BITS


def image_hash(image: torch.Tensor) -> int:
    """`image_hashes` of one preprocessed image [C,H,W]."""
    return int(image_hashes(image[None])[0])


class _MapStyle(Protocol):
    """A map-style dataset: items by position, and a length."""

    def __getitem__(self, position: int, /) -> object: ...

    def __len__(self) -> int: ...


NO_RANDOM_ACCESS = "this dataset has no random access (an IterableDataset); pass a map-style Dataset to see its images"


class Source:
    """Whatever dataset a user passes, as items (image-like, label or None) in order, with random access when possible."""

    def __init__(self, data: object) -> None:
        self.data: Any = data  # whatever the user passed: iterated as it comes (a DataLoader, an IterableDataset)
        self.classes: list[str] | None = None
        self.batched = False
        self._get: Callable[[int], object] | None
        self.length: int | None  # None: no random access (an IterableDataset), so no length before the end
        if isinstance(data, torch.utils.data.DataLoader):
            self.batched = True
            inner = data.dataset
            self._get = inner.__getitem__ if _map_style(inner) else None
            self.length = len(inner) if _map_style(inner) else None
            self.classes = _classes_of(inner)
        elif isinstance(data, torch.Tensor):
            if data.dim() not in (4, 5):
                raise InputError(f"a tensor dataset must be a batch [N,C,H,W] (clips: [N,C,T,H,W]), not shape {tuple(data.shape)}; "
                                 "stack the images")
            self._get, self.length = data.__getitem__, len(data)
        elif isinstance(data, (str, os.PathLike)):
            files, labels, classes = _image_folder(Path(data))
            self.classes = classes
            self._get = (lambda i: (files[i], labels[i])) if labels is not None else files.__getitem__
            self.length = len(files)
        elif isinstance(data, (PIL.Image.Image, np.ndarray)):
            raise InputError("index a dataset, not a single image; pass a list of images, a Dataset or a folder")
        elif _map_style(data):
            self._get, self.length = data.__getitem__, len(data)
            self.classes = _classes_of(data)
        elif isinstance(data, torch.utils.data.IterableDataset):
            self._get, self.length = None, None
        else:
            raise InputError(
                f"cannot index a {type(data).__name__}; pass a torch Dataset or DataLoader, a folder of images, "
                "a list of images or an [N,C,H,W] tensor"
            )

    @property
    def random_access(self) -> bool:
        return self._get is not None

    def count(self) -> int:
        """How many items a random-access dataset holds."""
        if self.length is None:
            raise InputError(NO_RANDOM_ACCESS)
        return self.length

    def item(self, position: int) -> tuple[object, int | None]:
        """Item `position` as (image-like, label or None)."""
        if self._get is None:
            raise InputError(NO_RANDOM_ACCESS)
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
        elif self.random_access:
            for position in range(start, self.count()):
                yield self.item(position)
        else:
            for position, item in enumerate(self.data):
                if position >= start:
                    yield parse_item(item, position)


def _map_style(data: object) -> TypeGuard[_MapStyle]:
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
        image, label = _dict_entries(item, position)
        return image, _label(label)
    if isinstance(item, (tuple, list)) and item:
        return item[0], _label(item[1]) if len(item) > 1 else None
    return item, None


def _dict_entries(item: dict, position: int) -> tuple[object, object]:
    """(image, label or None) of a dict item or batch, under the usual keys."""
    image = next((item[key] for key in IMAGE_KEYS if key in item), None)
    label = next((item[key] for key in LABEL_KEYS if key in item), None)
    if image is None:
        raise InputError(f"item {position} is a dict with keys {sorted(item)}; it needs an 'image' key (and 'label')")
    return image, label


Batch = torch.Tensor | list


def _split_batch(batch: object) -> tuple[Batch, Batch | None]:
    """(images, labels or None) of one batch a DataLoader yields: a tensor, an (images, labels, …) pair, an
    (images,) one (a `TensorDataset` of images alone) or a dict."""
    if isinstance(batch, (tuple, list)) and len(batch) == 1 and isinstance(batch[0], torch.Tensor):
        return batch[0], None
    if isinstance(batch, (tuple, list)) and len(batch) >= 2 and isinstance(batch[0], (torch.Tensor, list)):
        return batch[0], batch[1] if isinstance(batch[1], (torch.Tensor, list)) else None
    if isinstance(batch, dict):
        images, labels = _dict_entries(batch, 0)
        if isinstance(images, (torch.Tensor, list)):
            return images, labels if isinstance(labels, (torch.Tensor, list)) else None
    if isinstance(batch, torch.Tensor):
        return batch, None
    raise InputError(f"the DataLoader yields {type(batch).__name__}; it must yield image batches or (images, labels)")



def _preprocessed(
    inspector: Inspector, image: object, shape: tuple[int, ...] | None, device: torch.device | str | None = None
) -> tuple[torch.Tensor, bool]:
    """[C,H,W] float model input for one item ([C,T,H,W] for a clip of a video model) (on the model's device, or on
    `device`), its frames resized to `shape` if they differ (and whether they were). Clips of another length are
    refused: resampling time would change the motion the model sees."""
    try:
        # whatever the dataset yields: preprocess refuses what it cannot read, and the message below names the item's type
        batch = inspector.preprocess(cast(ImageLike, image), device)[0]
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
        if batch.dim() == 4 and batch.shape[1] != shape[1]:
            raise InputError(f"a clip has {batch.shape[1]} frames after preprocessing, others {shape[1]}; pass clips of one length")
        frames = batch.transpose(0, 1) if batch.dim() == 4 else batch[None]  # [T,C,H,W]: each frame resized alike
        frames = F.interpolate(frames, size=shape[-2:], mode="bilinear", align_corners=False, antialias=True)
        return (frames.transpose(0, 1) if batch.dim() == 4 else frames[0]), True
    return batch, False


def _display(inspector: Inspector, image: torch.Tensor) -> np.ndarray:
    """H×W×3 uint8 of a [C,H,W] model input (T×H×W×3 frames of a [C,T,H,W] clip; normalization undone where known)."""
    if image.dim() == 4:
        return display_batch(image.transpose(0, 1), inspector.transform).numpy()
    return display_batch(image[None], inspector.transform)[0].numpy()

