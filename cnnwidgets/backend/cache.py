"""The Inspector's one memo: everything computed from the model's current weights, bounded by bytes.

Activations, Score-CAM scores, forward graphs kept for class switches, the folded scoring copy and the
incremental occlusion engine are all kept here, under (image key, purpose). One weights key covers them all:
the memo reads it on every access and drops every entry as soon as the weights change (an optimizer step, an
in-place edit, `load_state_dict`), so nothing stale is ever returned and old weights' results hold no memory.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar, cast

import torch
from torch import nn

V = TypeVar("V")
ImageKey = tuple[tuple[int, ...], str, str]


def weights_key(model: nn.Module) -> int:
    """Changes whenever a parameter or buffer is replaced or modified in place, or a module's structure changes."""
    tensors = (*model.parameters(), *model.buffers())
    return hash((tuple((t.data_ptr(), t._version) for t in tensors), tuple(type(m) for m in model.modules())))


def image_key(batch: torch.Tensor) -> ImageKey:
    """(shape, dtype, digest of the values) of an input: equal for equal inputs wherever they live. SHA-256, which
    CPUs hash in hardware: 0.8 ms for a 224×224 image here against 2.4 ms with BLAKE2b (`backend.index.image_hash`)."""
    data = batch.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    return tuple(batch.shape), str(batch.dtype).removeprefix("torch."), hashlib.sha256(data.data).hexdigest()


def tensor_bytes(value: object, exclude: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the distinct tensor storages in `value` (a tensor, or tuples, lists and dicts of them), leaving out
    the storages of `exclude` (the model's own parameters, which a kept result shares rather than owns)."""
    seen = {t.untyped_storage().data_ptr() for t in exclude}
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
    return total


def graph_bytes(held: list[torch.Tensor], exclude: Iterable[torch.Tensor] = ()) -> int:
    """Bytes held by the tensors `held` and by the autograd graphs behind them: the tensors the graphs' nodes saved
    for the backward, each storage counted once; what a kept forward costs until it is dropped. Walking the graph
    costs about 20 ms for EfficientNet-Lite0's input-gradient graph at 224 px (79 MiB)."""
    saved = list(held)
    nodes = [tensor.grad_fn for tensor in held]
    seen = set()
    while nodes:
        node = nodes.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for name in dir(node):
            if name.startswith("_saved_"):
                value = getattr(node, name)
                if isinstance(value, torch.Tensor):
                    saved.append(value)
                elif isinstance(value, (tuple, list)):
                    saved.extend(item for item in value if isinstance(item, torch.Tensor))
        nodes.extend(next_node for next_node, _ in node.next_functions)
    return tensor_bytes(saved, exclude)


class TensorCache:
    """Keeps values up to `max_bytes` in total, evicting the least recently used first; a value's size is its
    tensors' bytes unless given."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()

    def get(self, key: Hashable) -> object | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: Hashable, value: object, nbytes: int | None = None) -> None:
        if nbytes is None and not isinstance(value, (torch.Tensor, tuple, list, dict)):
            raise TypeError(f"a {type(value).__name__} is not sized by its tensors; pass nbytes=")
        size = tensor_bytes(value) if nbytes is None else nbytes
        if key in self._entries:
            self.bytes -= self._entries.pop(key)[1]
        if size > self.max_bytes:
            return
        self._entries[key] = (value, size)
        self.bytes += size
        while self.bytes > self.max_bytes:  # entries of no size free nothing, so they stay
            oldest = next(key for key, (_, held) in self._entries.items() if held > 0)
            self.bytes -= self._entries.pop(oldest)[1]

    def discard(self, keep: Callable[[Hashable], bool]) -> None:
        """Drop every entry whose key `keep` refuses."""
        for key in [key for key in self._entries if not keep(key)]:
            self.bytes -= self._entries.pop(key)[1]

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)


class Memo:
    """What has been computed from `model`'s current weights, kept under (image key, purpose) within `max_bytes`.

    `memo(purpose, build, image=batch)` returns the value kept for this purpose and input, or builds and keeps it;
    `get` and `put` do the two halves. `purpose` names what the value is: a string, or a tuple starting with one
    (("activation", layer), ("score cam", layer), …); `image` is the input it was computed from (a tensor or its `image_key`), or None
    for values of the weights alone. A value's size is its tensors' bytes unless `nbytes` says otherwise (a forward
    graph: `graph_bytes`). Values given 0 bytes are never evicted: the folded scoring copy and the incremental occlusion
    engine, one of each per weights, which like the model's own weights sit outside the budget. Every access reads the weights key, and a
    change drops every entry, so a changed weight always misses.
    """

    def __init__(self, model: nn.Module, max_bytes: int) -> None:
        self.model = model
        self._store = TensorCache(max_bytes)
        self._weights: int | None = None

    @property
    def max_bytes(self) -> int:
        return self._store.max_bytes

    @property
    def bytes(self) -> int:
        """Bytes held now (never above max_bytes)."""
        return self._store.bytes

    def weights_key(self) -> int:
        """The model's weights key (`weights_key`), dropping every entry when it changed since the last access."""
        key = weights_key(self.model)
        if key != self._weights:
            self._store.clear()
            self._weights = key
        return key

    def _key(self, purpose: Hashable, image: torch.Tensor | ImageKey | None) -> Hashable:
        self.weights_key()
        return (image_key(image) if isinstance(image, torch.Tensor) else image, purpose)

    def get(self, purpose: Hashable, image: torch.Tensor | ImageKey | None = None) -> object | None:
        """The value kept for `purpose` and `image` under the current weights, or None."""
        return self._store.get(self._key(purpose, image))

    def put(self, purpose: Hashable, value: object, image: torch.Tensor | ImageKey | None = None, nbytes: int | None = None) -> None:
        """Keep `value` for `purpose` and `image` (least recently used entries go beyond max_bytes; a value larger
        than max_bytes is not kept)."""
        self._store.put(self._key(purpose, image), value, nbytes)

    def __call__(self, purpose: Hashable, build: Callable[[], V], image: torch.Tensor | ImageKey | None = None,
                 nbytes: Callable[[V], int] | None = None) -> V:
        """The value kept for `purpose` and `image`, built by `build()` (and kept) when missing; `nbytes(value)`
        sizes it when its tensors' bytes would not."""
        key = self._key(purpose, image)
        found = self._store.get(key)
        if found is None:
            found = build()
            self._store.put(key, found, None if nbytes is None else nbytes(found))
        return cast(V, found)

    def discard(self, kind: str) -> None:
        """Drop the entries of one kind of purpose (`kind`, or a tuple starting with it), e.g. "input forward" to
        time a cold gradient."""
        def other(key: Hashable) -> bool:
            purpose = key[1] if isinstance(key, tuple) else None
            return not (purpose == kind or (isinstance(purpose, tuple) and purpose[0] == kind))

        self._store.discard(other)

    def clear(self) -> None:
        self._store.clear()

    def __len__(self) -> int:
        return len(self._store)
