"""Building an index: one streaming pass of a dataset through the model (see the package doc for what it keeps).

Runs the model's folded, channels-last copy where that gives the same maps, finds each channel's maximum and its
position with the compiled searches of `maxima` (positions only where they can still enter the top-k, once few
can), and saves as it goes with `path=`. On the CPU, from the second batch on, each hooked layer's maps are
searched in one compiled call (`topk.take_into`) and what enters is merged after the forward: in A/B runs in one
process (160 and 640 images, batch 4, two threads) mobilenetv3_large_100 indexed at 0.67 / 0.64× a bare forward against 0.59 / 0.61× with the
separate search and merge, efficientnet_b0 at 0.56 / 0.67× against 0.50 / 0.60×.

On the CPU, batches run in `device.STREAMS` streams (`device.ordered_streams`): two batches at once, one per thread,
each with its share of PyTorch's threads, and a third read and queued, merged in the dataset's order while the next
ones run (the first batch runs alone, with every thread: it sizes the table). The hooks' searches are
single-threaded and the forward of a small batch leaves a core idle through its Python work; in one process,
mobilenetv3_large_100 indexed at 0.98× the (one-stream) bare forward against 0.56× in one stream, efficientnet_b0 at
0.91× against 0.69× (160 images, batch 4, two cores). The index is the same, bit for bit: the streams read only the
table's k-th values, which only grow (`topk.take_into`), and batches are merged in order.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ...errors import InputError, model_errors
from ..device import batch_size_for, ordered_streams, slot_count, stream_count
from ..folded import ChannelsLast, foldable_pairs
from ..hooks import eval_mode, forward_hooks
from ..images import all_finite
from ..inspector import FOLD_AFTER_IMAGES, Inspector, class_scores
from ..layers import LayerInfo
from ..preprocess import display_batch
from .datasets import Source, _label, _preprocessed, _split_batch, image_hashes
from .maxima import channel_amax, channel_maxima, positions_of, rows_of
from .topk import Pending, commit, empty_table, merge_into, table_views, take_into
from .value import FORMAT_VERSION, NO_IMAGE, Index, _select, top_parts, weights_fingerprint

FILMSTRIP_FRAMES = 4
"""Frames kept (evenly spaced, first and last included) in a clip's thumbnail: a 16-frame motion clip at 32 px
takes 12 KB, and four frames show where an object moves, turns or grows."""


def filmstrip_frames(length: int) -> list[int]:
    """Which of `length` frames a clip's filmstrip thumbnail shows (evenly spaced, first and last included)."""
    count = min(FILMSTRIP_FRAMES, length)
    return sorted({round(i * (length - 1) / max(count - 1, 1)) for i in range(count)})


def _thumbnails(inspector: Inspector, batch: torch.Tensor, size: int) -> torch.Tensor:
    """[N, size, size, 3] uint8 pictures of an [N,C,H,W] model input, shrunk (antialiased) before being turned into
    pictures, so the per-pixel work is done on thumbnails, not on whole images. Clips [N,C,T,H,W] give filmstrips
    [N, F, size, size, 3] of `filmstrip_frames(T)`."""
    if batch.dim() == 5:
        frames = batch[:, :, filmstrip_frames(batch.shape[2])].transpose(1, 2)  # [N,F,C,H,W]
        pictures = _thumbnails(inspector, frames.reshape(-1, *frames.shape[2:]), size)
        return pictures.reshape(*frames.shape[:2], *pictures.shape[1:])
    if tuple(batch.shape[-2:]) != (size, size):
        batch = F.interpolate(batch.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return display_batch(batch, inspector.transform)


def default_layers(inspector: Inspector) -> list[str]:
    """Every activation layer (the maps after ReLU-like units, as in the CS231n figures). A model that applies its
    activations as functions has none (torchvision GoogLeNet: `F.relu` inside each `BasicConv2d`): then every
    layer but its convolutions and other single modules (norms), whose maps come before the activation that the
    enclosing block applies; else every layer. Convolutions left out also let the index run the folded copy
    (`_index_model`): GoogLeNet indexed at 0.37× a bare forward with its 57 convolutions tapped."""
    names = [layer.name for layer in inspector.layers if layer.kind == "activation"]
    names = names or [layer.name for layer in inspector.layers if layer.kind in ("block", "pool")]
    return names or inspector.layer_names


def _codes_target(inspector: Inspector, codes: str | None) -> tuple[str | None, str | None, int, LayerInfo | None]:
    """(name, module name, call, the layer or None to take the module's input) of what gives the codes: by default
    the input of the last Linear."""
    if codes is None:
        return None, None, 0, None
    if codes == "auto":
        linears = [name for name, module in inspector.model.named_modules() if isinstance(module, nn.Linear)]
        if linears:
            return f"input of {linears[-1]}", linears[-1], 0, None
        codes = inspector.layer_names[-1]
    info = inspector.layer(codes)
    return info.name, info.module_name, info.call, info


def _auto_batch_size(device: torch.device, shape: tuple[int, ...]) -> int:
    pixels = math.prod(shape[1:])  # per channel: H·W, or T·H·W for a clip
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

    def folded_convs() -> frozenset[str]:
        with eval_mode(inspector.model), torch.inference_mode():
            return frozenset(conv for conv, _norm in foldable_pairs(inspector.model, example))

    folded = inspector.memo(("folded convolutions", tuple(example.shape)), folded_convs, nbytes=lambda _names: 0)  # a traced forward: 47 ms
    return inspector.model if folded & tapped else model


SPARSE_BELOW = {"channels_last": 0.125, "contiguous": 0.5}
"""Search only the maxima above the floor (or, in `topk.take_into`, those that enter) for their position when under
this fraction of them were in the layer's previous batch; else search all. Finding the chosen maps' positions
(`maxima.positions_of`) scans each from its start: a channels-last map is read with a stride of C values, a cache line per position, so one full
pass (`maxima.channel_maxima`) costs less once an eighth of them are chosen; a contiguous map's positions are
adjacent, and scanning half of the chosen ones stays cheaper up to about half of them."""


def _maxima(output: torch.Tensor, floor: torch.Tensor | None, fraction: float) -> tuple[torch.Tensor | None, torch.Tensor | None, float]:
    """Per image and channel of an [N,C,H,W] map (or [N,C,T,H,W]): the maximum (float32), where it first
    occurs (in row-major H·W, or T·H·W, order), and the fraction of maxima above `floor` (see `maxima`: the map is
    read in its own memory layout).

    NaN maxima stay NaN here (the top-k merge ranks them as -inf); they never count as above the floor.

    `floor` [C] (each channel's k-th best value so far, when it has k): only maxima above it can enter the top k.
    When `fraction` (of maxima above the floor in the layer's previous batch) is under `SPARSE_BELOW` for the
    map's layout, the maxima come from `amax` and only the chosen maps are searched for their position (the others
    get position 0: at most the floor, and later than the images that set it, they can never enter the top-k);
    when none is chosen, (None, None, 0.0): the batch cannot change this layer's top-k. Past the first k·10 images
    or so, few maxima beat the floor (about k/n after n images of a shuffled dataset), and past about batch ×
    channels × k images most batches have none. Off the CPU every map is searched.
    """
    output = output.detach()
    if output.device.type != "cpu":  # a full search is cheap there, and counting the chosen maps would wait for the device
        floor = None
    channels_last = output.movedim(1, -1).is_contiguous() and not output.is_contiguous()
    if floor is None or fraction >= SPARSE_BELOW["channels_last" if channels_last else "contiguous"]:
        values, where = channel_maxima(output)
        return values, where, 1.0 if floor is None else _share_above(values, floor)
    values = channel_amax(output)
    share = _share_above(values, floor)
    if share == 0.0:
        return None, None, 0.0
    return values, positions_of(output, values, values > floor), share  # the others are at most the floor: they cannot enter


def _share_above(values: torch.Tensor, floor: torch.Tensor) -> float:
    """The fraction of maxima [N,C] above each channel's floor [C] (CPU tensors), counted by NumPy: 4 µs against
    10 µs by PyTorch for [4, 960], once per layer and batch."""
    return np.count_nonzero(values.numpy() > floor.numpy()) / values.numel()


def _ravel(axes: Sequence[torch.Tensor], grid: Sequence[int]) -> torch.Tensor:
    """Row-major flat positions (int64) in a grid (H, W) or (T, H, W) of one index tensor per axis."""
    where = torch.zeros_like(axes[0], dtype=torch.int64)
    for axis, side in zip(axes, grid):
        where = where * side + axis
    return where


def _unravel(where: torch.Tensor, grid: Sequence[int]) -> list[torch.Tensor]:
    """Row-major flat positions in a grid (H, W) or (T, H, W) as one index tensor per axis."""
    axes = []
    for side in reversed(grid):
        axes.append(where % side)
        where = where // side
    return axes[::-1]


PENDING_TIMES_K = 4
"""Off the CPU (see `MERGE_IN_PLACE_ON`), the maxima wait for `_TopK.select` until the pending images reach this
many times k: one selection then replaces 16 per-batch ones at batch 4 and k 16, and the floor it gives stays recent
enough for `_maxima` to skip most maps' positions on long datasets. Index over forward, 160 images at batch 4, one
thread, load ~7 on 2 cores (per-layer selections then): mobilenetv3_large_100 0.49 / 0.52 / 0.55 with 1 / 4 / 10; resnet50 0.84 / 0.85 / 0.79. The
first selection comes after k images, so that a floor exists early."""

PENDING_BATCHES = 4
"""…and until at least this many batches wait: at GPU batch sizes (64) the images alone would select after every
batch."""


MERGE_IN_PLACE_ON = ("cpu",)
"""Devices whose top-k tables take each batch in place (`topk.take_into` in the hooks, `topk.merge_into` for
maps it cannot read); elsewhere the maxima stay on the device and `_select` merges them every few batches (a read
on the host after each batch would make a GPU wait)."""


class _TopK:
    """Every indexed layer's top-k so far as one table over all their channels (`top`: values, image ids and flat
    positions, each [ΣC, ≤k], the layers' rows in order), and the per-batch maxima not yet compared with it.

    On the CPU each batch is merged into a table of k slots per channel at once, in place (`take` from the hooks,
    `add` for the first batch and for maps `take` cannot read), so the floor is always current. Elsewhere the
    maxima wait on the device and are merged for several batches at once by `_select` (the same top-k as after
    each: its order is total, activation descending, then image id), over every layer's channels together.
    Positions stay flat until `parts` (row and column tables) is asked for."""

    def __init__(self, k: int, shapes: dict[str, list[int]], parts: dict[str, dict[str, torch.Tensor]] | None,
                 device: torch.device) -> None:
        """`shapes`: each layer's map shape [C, H, W] (or [C, T, H, W]), in layer order; `parts`: each layer's
        top-k in the tables of `top_parts` (an index being resumed)."""
        self.k, self.in_place = k, device.type in MERGE_IN_PLACE_ON
        self.grids = {name: tuple(shape[1:]) for name, shape in shapes.items()}
        ends = list(itertools.accumulate(shape[0] for shape in shapes.values()))
        self.rows = {name: slice(end - shape[0], end) for (name, shape), end in zip(shapes.items(), ends)}
        self.top: dict[str, torch.Tensor] | None = None
        ids = torch.zeros(0, dtype=torch.int64)
        if parts is not None:
            ids = torch.cat([parts[name]["ids"] for name in shapes])
            self.top = {"values": torch.cat([parts[name]["values"] for name in shapes]).float(), "ids": ids,
                        "where": torch.cat([_ravel([parts[name][key] for key in top_parts(shape)[2:]], shape[1:])
                                            for name, shape in shapes.items()])}
        self.filled = int(ids.shape[1]) if ids.dim() == 2 else 0  # images in each channel's top-k
        if self.in_place:  # k slots per channel, empty ones after the filled
            self.table = empty_table(ends[-1], k)
            for key, part in (self.top or {}).items():
                self.table[key][:, :self.filled] = part
            if self.filled == k:
                self.table["kth"][:] = self.table["values"][:, -1]
            self.arrays = table_views(self.table)  # what `take` reads and `add` commits into
        self.id_range = (int(ids.min()), int(ids.max())) if ids.numel() else (NO_IMAGE, -1)  # of `top` and the batches
        self.batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.images = 0
        self.nothing: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.floor = self._floor()

    def layer_floor(self, name: str) -> torch.Tensor | None:
        """Each of the layer's channels' k-th best value so far, once k images are in."""
        return None if self.floor is None else self.floor[self.rows[name]]

    def take(self, name: str, maps: torch.Tensor, ids: np.ndarray, fraction: float, pending: Pending) -> float | None:
        """Search a layer's batch of maps where `topk.take_into` can read them (float32 on the CPU, channels-last
        or contiguous), keeping the maxima that may enter in `pending` until `add` merges them once the forward is
        done: the fraction kept, or None (then pass the layer's maxima to `add`). `fraction`: that of the layer's
        previous batch, which picks the search (`SPARSE_BELOW`)."""
        if not self.in_place or maps.dtype != torch.float32:
            return None
        rows = rows_of(maps.numpy())
        if rows is None:
            return None
        channels_last = rows.shape[0] == len(ids) and rows.shape[2] > 1
        track = fraction >= SPARSE_BELOW["channels_last" if channels_last else "contiguous"]
        return take_into(self.arrays, self.rows[name].start, rows, ids, track, pending)

    def add(self, reduced: dict[str, tuple[torch.Tensor | None, torch.Tensor | None]], ids: torch.Tensor, first_id: int,
            pending: Pending) -> None:
        """Take one batch's maxima [N,C] (NaN allowed) and flat positions [N,C] per layer (None, None: none can
        enter), of images `ids` [N] (`first_id` … on). On the CPU a layer absent from `reduced` was searched by
        `take`, whose candidates (`pending`) are merged here first."""
        n = len(ids)
        self.id_range = (min(self.id_range[0], first_id), max(self.id_range[1], first_id + n - 1))
        if self.in_place:
            commit(self.arrays, pending)
            for name, rows in self.rows.items():
                found, position = reduced.get(name, (None, None))
                if found is not None and position is not None:
                    merge_into({key: self.table[key][rows] for key in ("values", "ids", "where", "kth")}, found, ids, position)
            self.filled = min(self.k, self.filled + n)
            self.top = {key: self.table[key][:, :self.filled] for key in ("values", "ids", "where")}
            self.floor = self._floor()
            return
        values, where = [], []
        for name, rows in self.rows.items():
            found, position = reduced[name]
            if found is None or position is None:  # at most the floor, so they cannot enter: kept as -inf
                found, position = self._nothing(n, rows.stop - rows.start, ids.device)
            values.append(found)
            where.append(position)
        self.batches.append((torch.cat(values, 1), ids, torch.cat(where, 1)))
        self.images += n
        if self.images >= self.k if self.top is None else self.images >= PENDING_TIMES_K * self.k and len(self.batches) >= PENDING_BATCHES:
            self.select()

    def _nothing(self, n: int, channels: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Maxima of -inf at position 0 for n images of a layer whose batch cannot change its top-k (made once per
        shape: most layers of most batches, late in a long dataset; read only)."""
        if (n, channels) not in self.nothing:
            self.nothing[n, channels] = (torch.full((n, channels), -torch.inf, device=device),
                                         torch.zeros((n, channels), dtype=torch.int64, device=device))
        return self.nothing[n, channels]

    def select(self) -> None:
        """Merge the pending maxima into the top-k."""
        if not self.batches:  # on the CPU each batch is merged at once
            return
        values = torch.cat([batch[0] for batch in self.batches]).T.nan_to_num(nan=-torch.inf)
        ids = torch.cat([batch[1] for batch in self.batches]).expand(values.shape[0], -1)
        where = torch.cat([batch[2] for batch in self.batches]).T
        self.batches, self.images = [], 0
        if self.top is not None:
            values = torch.cat([self.top["values"], values], 1)
            ids = torch.cat([self.top["ids"], ids], 1)
            where = torch.cat([self.top["where"], where], 1)
        values, ids, where = _select(values, ids, where, k=self.k, id_range=self.id_range)
        self.top = {"values": values, "ids": ids, "where": where}
        self.floor = self._floor()

    def parts(self, pad: bool = False) -> dict[str, dict[str, torch.Tensor]]:
        """Each layer's top-k so far (pending maxima merged) in the tables of `top_parts`; `pad`: fewer than k
        images fill up with empty slots (value -inf, id `NO_IMAGE`)."""
        self.select()
        assert self.top is not None  # `add` was called
        values, ids, where = self.top["values"], self.top["ids"], self.top["where"]
        missing = self.k - values.shape[1] if pad else 0
        if missing > 0:
            empty = torch.full((values.shape[0], missing), -torch.inf, device=values.device)
            values = torch.cat([values, empty], 1)
            ids = torch.cat([ids, torch.full_like(empty, NO_IMAGE, dtype=torch.int64)], 1)
            where = torch.cat([where, torch.zeros_like(empty, dtype=torch.int64)], 1)
        return {name: dict(zip(top_parts([rows.stop - rows.start, *self.grids[name]]),
                               (values[rows].clone(), ids[rows].clone(),
                                *(axis.int() for axis in _unravel(where[rows], self.grids[name])))))
                for name, rows in self.rows.items()}

    def _floor(self) -> torch.Tensor | None:
        """Each channel's k-th best value in `top`, once it holds k images (on the CPU the table's own, kept
        current by each merge)."""
        if self.top is None or self.top["values"].shape[1] < self.k:
            return None
        return self.table["kth"] if self.in_place else self.top["values"][:, self.k - 1]


PARTS_ON_DEVICE = 32
"""Per-image results (hashes, predictions, codes, thumbnails) stay on the model's device for this many batches
before one copy to the CPU: a copy after each batch made the GPU wait for the host every batch."""


class _Stream:
    """What the hooks gather while one thread runs one batch, kept until the batch is merged (`calls` per module,
    layers `reached`, maxima `reduced` for `_TopK.add`, candidates `pending` from `_TopK.take`, the `codes`), and
    each layer's fraction of maxima `chosen` in the previous batch of this slot (which picks the search, see
    `SPARSE_BELOW`)."""

    def __init__(self) -> None:
        self.calls: dict[nn.Module, int] = {}
        self.reached: set[str] = set()
        self.reduced: dict[str, tuple[torch.Tensor | None, torch.Tensor | None]] = {}  # None: nothing can enter
        self.pending = Pending()
        self.codes: list[torch.Tensor] = []
        self.code_calls = 0
        self.chosen: dict[str, float] = {}
        self.ids = np.zeros(0, dtype=np.int64)

    def start(self, ids: np.ndarray) -> None:
        """Forget the previous batch; `ids`: this batch's image ids."""
        self.calls.clear()
        self.reached.clear()
        self.reduced.clear()
        self.codes.clear()
        self.code_calls = 0
        self.pending.count = 0
        self.ids = ids


class _Prepared(torch.utils.data.Dataset):
    """Items `start`… of a random-access `Source` as (model input [C,H,W] on the CPU, label or -1, whether it was
    resized to `shape`): the work a DataLoader's worker processes do while the model runs."""

    def __init__(self, inspector: Inspector, source: Source, start: int, shape: tuple[int, ...]) -> None:
        self.inspector, self.source, self.start, self.shape = inspector, source, start, shape

    def __len__(self) -> int:
        return self.source.count() - self.start

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int, bool]:
        image, label = self.source.item(self.start + position)
        tensor, resized = _preprocessed(self.inspector, image, self.shape, "cpu")
        return tensor, -1 if label is None else label, resized


def _row_batches(
    inspector: Inspector, rows: Iterator[tuple[object, int | None]], shape: tuple[int, ...], size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, bool]]:
    while chunk := list(itertools.islice(rows, size)):
        prepared = [_preprocessed(inspector, image, shape, "cpu") for image, _label in chunk]
        images = torch.stack([tensor for tensor, _resized in prepared])
        labels = torch.tensor([-1 if label is None else label for _image, label in chunk], dtype=torch.int64)
        yield images, labels, any(resized for _tensor, resized in prepared)


def _input_batches(
    inspector: Inspector, source: Source, start: int, shape: tuple[int, ...], batch_size: int, num_workers: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, bool]]:
    """(model inputs [B,C,H,W] on the CPU, labels (-1: none), whether an image was resized to `shape`) batch by
    batch from item `start` on. A random-access dataset goes through a DataLoader whose `num_workers` processes
    decode and preprocess images while the model runs (pinned memory for CUDA); a DataLoader passed by the user is
    read as it batches (its own workers decode; float batches of the model's input shape are used as they are);
    other iterables are read item by item."""
    if source.random_access and not source.batched:
        loader = torch.utils.data.DataLoader(
            _Prepared(inspector, source, start, shape), batch_size=batch_size, num_workers=num_workers,
            pin_memory=inspector.device.type == "cuda")
        for images, labels, resized in loader:
            yield images, labels, bool(resized.any())
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
                and all_finite(images)):
            ready = images[skip:].detach().to("cpu", torch.float32)
            found = [None if labels is None else _label(labels[row]) for row in rows]
            yield ready, torch.tensor([-1 if label is None else label for label in found]), False
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
    within a few % of float32's (3 % relative L2 on Lite0, bench/results/gpu.json), so near-ties in the top-k may
    swap. `offset`: the id of the first image, for shards of a bigger dataset (merge them with `Index.merge`;
    `backend.distributed` does it on Ray).
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
    if source.random_access and source.count() == 0:
        raise InputError("the dataset is empty; pass one with at least one image")
    first = source.item(0) if source.random_access else next(iter(source.items(0)), None)
    if first is None:
        raise InputError("the dataset is empty; pass one with at least one image")
    example = _preprocessed(inspector, first[0], None)[0]  # layer shapes are those of this dataset's images from here on
    names = [inspector.layer(name).name for name in (default_layers(inspector) if layers is None else layers)]
    if not names:
        raise InputError("pass at least one layer name to index (see inspector.layer_names)")
    codes_name, codes_module_name, codes_call, codes_layer = _codes_target(inspector, codes)
    codes_from_input = codes_layer is None
    weights = inspector.memo("weights fingerprint", lambda: weights_fingerprint(inspector.model), nbytes=len)  # 32 ms for 5 M weights
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

    total = source.length  # None for an IterableDataset: the bar counts without an end
    count = 0 if state is None else int(state["count"])
    input_shape = tuple(example.shape) if state is None else tuple(state["input_shape"])
    device = inspector.device
    size = batch_size or _auto_batch_size(inspector.device, input_shape)
    infos = {name: inspector.layer(name) for name in names}
    tapped = {info.module_name for info in infos.values()} | ({codes_module_name} if codes_module_name else set())
    model = _index_model(inspector, example[None].expand(min(size, 4), *input_shape), tapped)
    root = model.inner if isinstance(model, ChannelsLast) else model

    wanted: dict[nn.Module, dict[int, str]] = {}
    for name, info in infos.items():
        wanted.setdefault(root.get_submodule(info.module_name), {})[info.call] = name
    local = threading.local()  # .stream: the `_Stream` whose batch this thread runs

    def make_hook(module: nn.Module) -> Callable:
        def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
            stream = local.stream
            call = stream.calls.get(module, 0)
            stream.calls[module] = call + 1
            name = wanted[module].get(call)
            if name is None or not isinstance(output, torch.Tensor):
                return
            output = infos[name].to_map(output)  # channels-last and token layers as the [N,C,H,W] maps users see
            if output.dim() not in (4, 5):
                return
            shapes[name] = list(output.shape[1:])
            stream.reached.add(name)
            if table is not None:
                entered = table.take(name, output, stream.ids, stream.chosen.get(name, 1.0), stream.pending)
                if entered is not None:
                    stream.chosen[name] = entered
                    return
            floor = None if table is None else table.layer_floor(name)
            values, where, stream.chosen[name] = _maxima(output, floor, stream.chosen.get(name, 1.0))
            stream.reduced[name] = (values, where)

        return hook

    def codes_hook(_module: nn.Module, inputs: tuple, output: object = None) -> None:
        stream = local.stream
        call = stream.code_calls
        stream.code_calls += 1
        if call != codes_call:
            return
        if codes_layer is None:
            value = inputs[0]
        elif isinstance(output, torch.Tensor):
            value = codes_layer.to_map(output)
        else:
            return  # not a feature map: "not reached" below says so
        value = value.detach().float()
        stream.codes.append(value.mean(tuple(range(2, value.dim()))) if value.dim() in (4, 5) else value.flatten(1))

    codes_module = None if codes_module_name is None else root.get_submodule(codes_module_name)
    shapes: dict[str, list[int]] = {} if state is None else dict(state["shapes"])
    table = None if state is None else _TopK(  # made after the first batch, which tells the layers' shapes
        k, {name: shapes[name] for name in names},
        {name: {key: t.to(device) for key, t in state["top"][name].items()} for name in names}, device)
    per_image: dict[str, list[torch.Tensor]] = {key: [] for key in ("hashes", "labels", "predictions", "confidences", "codes", "thumbnails")}
    if state is not None:
        for key in per_image:
            if state[key] is not None and len(state[key]):
                per_image[key].append(state[key])
    resized_note = False
    fields: dict[str, dict | None] = {} if state is None else dict(state["fields"])
    classes = [0 if state is None else len(state["class_names"])]
    last_save = time.monotonic()
    batches = 0

    def to_host() -> None:
        """Copy the per-image results still on the model's device to the CPU, one copy per kind."""
        for parts in per_image.values():
            on_device = [part for part in parts if part.device.type != "cpu"]
            if on_device:
                parts[:] = [*(part for part in parts if part.device.type == "cpu"), torch.cat(on_device).cpu()]

    def snapshot(complete: bool) -> Index:
        top = {} if table is None else table.parts(pad=complete)
        to_host()
        joined = {key: (torch.cat(parts) if parts else None) for key, parts in per_image.items()}
        for key, part in joined.items():  # one tensor per kind from here on
            per_image[key][:] = [] if part is None else [part]
        if joined["hashes"] is None:
            joined["hashes"] = torch.zeros(0, dtype=torch.int64)
            joined["labels"] = torch.zeros(0, dtype=torch.int64)
            joined["predictions"] = torch.zeros(0, dtype=torch.int64)
            joined["confidences"] = torch.zeros(0)
        index = Index({
            "version": FORMAT_VERSION, "weights": weights, "config": config, "offset": offset, "count": count,
            "complete": complete, "input_shape": list(input_shape), "shapes": shapes, "fields": fields,
            "class_names": [inspector.label(i) for i in range(classes[0])],
            "label_names": source.classes,
            "top": {name: {key: t.cpu() for key, t in parts.items()} for name, parts in top.items()},
            **joined,
        })
        index.inspector, index.source = inspector, source
        return index

    def run_batch(stream: _Stream, cpu_images: torch.Tensor, first_id: int) -> tuple[int, dict[str, torch.Tensor]]:
        """One batch through the model on this thread: (classes, per-image results); its maxima stay in `stream`."""
        local.stream = stream
        stream.start(np.arange(first_id, first_id + len(cpu_images), dtype=np.int64))
        with torch.inference_mode():
            images = cpu_images.to(device, non_blocking=True)
            with model_errors(tuple(images.shape)), (torch.autocast(device.type, dtype=_amp_dtype(device)) if amp else contextlib.nullcontext()):
                scores = class_scores(model(images)).float()
            for name in names:
                if name not in stream.reached:
                    raise InputError(f"layer {name!r} gave no [N,C,H,W] output on this batch; pick layers from inspector.layers")
            confidence, predicted = scores.softmax(1).max(1)
            results = {"hashes": image_hashes(images), "predictions": predicted, "confidences": confidence}
            if codes_module is not None:
                if not stream.codes:
                    raise InputError(f"the codes layer {codes_name!r} was not reached; pass codes= a layer from inspector.layers")
                results["codes"] = stream.codes[0]
            if thumbnails:
                results["thumbnails"] = _thumbnails(inspector, images, thumbnails)
        return scores.shape[1], results

    def finish(stream: _Stream, ran: tuple[int, dict[str, torch.Tensor]], labels: torch.Tensor, first_id: int) -> None:
        """Merge a batch that `run_batch` ran, in the order of the dataset, and count it (then save, every
        `save_every` seconds)."""
        nonlocal table, count, batches, last_save
        classes[0], results = ran
        n = len(results["hashes"])
        if table is None:
            table = _TopK(k, {name: shapes[name] for name in names}, None, device)
        table.add(stream.reduced, torch.arange(first_id, first_id + n, device=device), first_id, stream.pending)
        per_image["labels"].append(labels.to(torch.int64))
        for key, part in results.items():
            per_image[key].append(part)
        count += n
        bar.update(n)
        batches += 1
        if batches % PARTS_ON_DEVICE == 0:
            to_host()
        if path is not None and time.monotonic() - last_save > save_every:
            snapshot(False).save(path)
            last_save = time.monotonic()

    stream_total = stream_count(device)
    streams = [_Stream() for _ in range(slot_count(stream_total))]  # per batch in flight: the running and the queued
    bar = tqdm(total=total, initial=count, desc="indexing", unit="img", disable=not progress, leave=False)
    finished = False

    def numbered() -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """(images, labels, id of the first image) of each batch still to index."""
        nonlocal resized_note
        dispatched = count
        for cpu_images, labels, resized in _input_batches(inspector, source, count, input_shape, size, num_workers):
            if resized and not resized_note:
                resized_note = True
                warnings.warn(
                    f"the images have mixed sizes; each is resized to {input_shape[-2]}×{input_shape[-1]} "
                    "(pass a transform that crops to one size to choose how)", stacklevel=2)
            yield cpu_images, labels, offset + dispatched
            dispatched += len(cpu_images)

    def run_numbered(slot: int, batch: tuple[torch.Tensor, torch.Tensor, int]) -> tuple[int, dict[str, torch.Tensor]]:
        return run_batch(streams[slot], batch[0], batch[2])

    try:
        hooks = [(module, make_hook(module)) for module in wanted]
        with eval_mode(inspector.model), torch.inference_mode(), forward_hooks(hooks), \
                forward_hooks([(codes_module, codes_hook)] if codes_module is not None and codes_from_input else [], pre=True), \
                forward_hooks([(codes_module, codes_hook)] if codes_module is not None and not codes_from_input else []):
            batches_left = numbered()
            if table is None:  # the first batch alone: it sizes the table the streams read
                first_batch = next(batches_left, None)
                if first_batch is not None:
                    finish(streams[0], run_numbered(0, first_batch), first_batch[1], first_batch[2])
            # every batch before a failed one is counted (in order), also when reading the data was interrupted
            for slot, (_images, labels, first_id), ran in ordered_streams(
                    lambda slot, batch: (slot, batch, run_numbered(slot, batch)), batches_left, stream_total):
                finish(streams[slot], ran, labels, first_id)
        finished = True
    finally:
        bar.close()
        if path is not None and not finished and count > 0:
            snapshot(False).save(path)  # interrupted: keep what is done, a second call resumes here
    if count == 0:
        raise InputError("the dataset is empty; pass one with at least one image")
    index = snapshot(True)
    if path is not None:
        index.save(path)
    return index
