"""Merging a batch's maxima into every channel's top-k on the CPU, in place: a compiled loop (numba) over a table
of fixed size.

PyTorch merges by concatenating the candidates with the top-k and selecting again (`value._select`: an int64 sort
key, `topk`, three gathers), which reads and writes the whole table every time: for efficientnet_b0's 65 layers
(28,540 channels) one selection of 16 batches took 55 ms, 3.4 ms a batch whatever the point in the dataset. Here each
candidate is compared with its channel's k-th value (kept apart, a small array) and the few that reach it are
inserted in order: for batches of 4 random maxima over 28,540 channels, 3 ms a batch at the start (most enter),
2.3 ms at 160 images, 0.3 ms at 4,000; and the floor is current after every batch. The order is `_select`'s
(activation descending, then image id ascending; NaN as -inf, -0.0 equal to 0.0)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from .value import NO_IMAGE


@functools.cache
def _merge_kernel() -> Callable:
    import numba

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def merge(top_values: np.ndarray, top_ids: np.ndarray, top_where: np.ndarray, kth: np.ndarray,
              values: np.ndarray, ids: np.ndarray, where: np.ndarray) -> None:  # pragma: no cover (compiled)
        """top_* [R, k], each row in order (empty slots: -inf and the largest id), kth [R] their last values;
        values, where [N, R]; ids [N]."""
        k = top_values.shape[1]
        for r in range(top_values.shape[0]):
            for m in range(values.shape[0]):
                value, image = values[m, r], ids[m]
                if value != value:
                    value = -np.inf
                if value < kth[r]:  # the common case, read from a small array: the table's rows stay untouched
                    continue
                last = top_values[r, k - 1]
                if not (value > last or (value == last and image < top_ids[r, k - 1])):
                    continue
                slot = k - 1
                while slot > 0 and (top_values[r, slot - 1] < value or (top_values[r, slot - 1] == value and top_ids[r, slot - 1] > image)):
                    top_values[r, slot] = top_values[r, slot - 1]
                    top_ids[r, slot] = top_ids[r, slot - 1]
                    top_where[r, slot] = top_where[r, slot - 1]
                    slot -= 1
                top_values[r, slot] = value
                top_ids[r, slot] = image
                top_where[r, slot] = where[m, r]
                kth[r] = top_values[r, k - 1]

    return merge


def empty_table(rows: int, k: int) -> dict[str, torch.Tensor]:
    """A top-k table with no image yet: "values" (-inf), "ids" (`NO_IMAGE`) and "where" (0), each [rows, k], and
    "kth" [rows], each row's k-th value (the floor a newcomer must reach)."""
    return {"values": torch.full((rows, k), -torch.inf), "ids": torch.full((rows, k), NO_IMAGE),
            "where": torch.zeros((rows, k), dtype=torch.int64), "kth": torch.full((rows,), -torch.inf)}


def merge_into(top: dict[str, torch.Tensor], values: torch.Tensor, ids: torch.Tensor, where: torch.Tensor) -> None:
    """Merge candidates — maxima `values` [N, R] (float32), their image `ids` [N] and positions `where` [N, R]
    (int64) — into `top` (an `empty_table` and what was merged into it: rows in order), in place."""
    _merge_kernel()(top["values"].numpy(), top["ids"].numpy(), top["where"].numpy(), top["kth"].numpy(),
                    values.contiguous().numpy(), ids.numpy(), where.contiguous().numpy())
