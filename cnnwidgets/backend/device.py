"""Where models run, in which dtype, and batch sizes that are fast there."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")
R = TypeVar("R")


def best_device() -> torch.device:
    """CUDA when available, else Apple's MPS, else the CPU: where models cnnwidgets creates itself go."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU for a model without any)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def dtype_of(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's first floating parameter or buffer (float32 for a model without any):
    the dtype its inputs are cast to (see `hooks.eval_mode`)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


WRAPPERS = (nn.DataParallel, nn.parallel.DistributedDataParallel)


def unwrap(model: nn.Module) -> nn.Module:
    """The module that holds the layers: `.module` of DataParallel / DistributedDataParallel, `_orig_mod` of a
    `torch.compile`d model (hooks must sit on the original modules; the compiled graph would skip them).
    TorchScript models cannot be hooked and are refused."""
    while True:
        inner = model.module if isinstance(model, WRAPPERS) else getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            break
        model = inner
    if isinstance(model, torch.jit.ScriptModule):
        from ..errors import InputError

        raise InputError(
            "a TorchScript model (torch.jit.script / torch.jit.trace) cannot be hooked to look inside; pass the "
            "nn.Module before scripting"
        )
    return model


def batch_size_for(device: torch.device) -> int:
    """A batch size that is fast on `device` for ImageNet-sized CNNs.

    Measured on a 2-core CPU with EfficientNet-Lite0: batch 4 costs 18.5 ms an image, batch 64 costs 106;
    accelerators want large batches.
    """
    return {"cuda": 64, "mps": 32}.get(device.type, 4)


def batches(n: int, size: int) -> list[slice]:
    """Slices that cover range(n) in chunks of at most `size`."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


_split_lock = threading.Lock()
_split_state = {"holders": 0, "threads": 0}  # blocks inside `split_threads`, and the count the first one found


@contextlib.contextmanager
def split_threads(parts: int) -> Iterator[int]:
    """For the block, PyTorch's intra-op threads divided among `parts` runs that go at once (each gets the
    count yielded, at least 1); the count is restored after it. The setting is the process's: blocks that overlap
    (two indexes built at once, from two widgets) share the first one's split, and the last one out restores the
    count the first one found, so the user's setting is never lost."""
    with _split_lock:
        if _split_state["holders"] == 0:
            _split_state["threads"] = torch.get_num_threads()
            torch.set_num_threads(max(1, _split_state["threads"] // parts))
        _split_state["holders"] += 1
        share = torch.get_num_threads()
    try:
        yield share
    finally:
        with _split_lock:
            _split_state["holders"] -= 1
            if _split_state["holders"] == 0:
                torch.set_num_threads(_split_state["threads"])


STREAMS = 2
"""On the CPU, independent batches (the index's, occlusion's chunks) run this many at once, each on its own thread
with an equal share of PyTorch's threads (1 each on 2 cores). At a CPU's batch sizes one forward pass leaves a core
idle through much of its Python work and small operations: two 1-thread passes ran the bare forward of 160 images
at batch 4 1.56× (mobilenetv3_large_100), 1.42× (efficientnet_b0) and 1.09× (resnet50) faster than one 2-thread
pass (two cores, 128 px)."""


def stream_count(device: torch.device) -> int:
    """Batches to run at once on `device`: `STREAMS` on the CPU when PyTorch has that many threads, else 1 (a GPU
    runs one batch at a time, and the host waits for it)."""
    return min(STREAMS, torch.get_num_threads()) if device.type == "cpu" else 1


def slot_count(streams: int) -> int:
    """How many items `ordered_streams` holds at once with `streams` streams: one queued beyond those running."""
    return streams + 1 if streams > 1 else 1


def ordered_streams(work: Callable[[int, T], R], items: Iterable[T], streams: int) -> Iterator[R]:
    """`work(slot, item)` for each item, `streams` items at once on as many threads with PyTorch's threads split among
    them (`split_threads`); with one stream, each item in turn on the caller's thread. Results come in the items'
    order, each once it and those before it are done, while later items run; the caller's own work between results
    (merging a batch) overlaps theirs. One more item than there are streams is read and queued ahead, so a thread
    that finishes starts the next item at once instead of waiting while the caller merges a result and reads the
    next item: in three A/B runs in one process, the index of 160 images on Lite0 (batch 4, two cores) ran at
    0.86–0.89× the bare forward against 0.79–0.86× without it (median rounds 65.7 against 60.6 images/s); over 1,000
    images 0.72× against 0.63×, faster in all five rounds; over 4,000, 0.78× against 0.85× in two rounds 35 % apart
    (a noisy day, see the README). `slot` (0 … `slot_count(streams)` - 1) says which per-item state the item uses:
    an item reuses a slot only after the result of the item before it in that slot was taken.

    A failed item's error is raised in its place, after the results before it and once the items already read
    have finished, so none outlives the iterator. An error while reading `items` (an interrupted data pipeline) is
    raised after the results of the items already started. The index streams its batches through this, occlusion
    its chunks of positions."""
    if streams == 1:
        for item in items:
            yield work(0, item)
        return
    slots = slot_count(streams)
    with split_threads(streams), concurrent.futures.ThreadPoolExecutor(streams, thread_name_prefix="cnnwidgets-stream") as pool:
        running: collections.deque[concurrent.futures.Future] = collections.deque()
        iterator, submitted = iter(items), 0
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                break
            except BaseException:  # reading failed: answer the items already started, in order, then raise
                while running:
                    yield running.popleft().result()
                raise
            running.append(pool.submit(work, submitted % slots, item))
            submitted += 1
            if len(running) == slots:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()
