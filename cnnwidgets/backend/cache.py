"""A least-recently-used cache of tensors bounded by total bytes, so switching views costs no forward pass."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

import torch


class TensorCache:
    """Keeps tensors up to `max_bytes` in total, evicting the least recently used first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[Hashable, torch.Tensor] = OrderedDict()

    def get(self, key: Hashable) -> torch.Tensor | None:
        tensor = self._entries.get(key)
        if tensor is not None:
            self._entries.move_to_end(key)
        return tensor

    def put(self, key: Hashable, tensor: torch.Tensor) -> None:
        size = _nbytes(tensor)
        if size > self.max_bytes:
            return
        if key in self._entries:
            self.bytes -= _nbytes(self._entries.pop(key))
        self._entries[key] = tensor
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= _nbytes(evicted)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()
