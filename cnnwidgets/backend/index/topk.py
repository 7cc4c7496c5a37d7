"""Merging a batch's maxima into every channel's top-k on the CPU, in place: a compiled loop (numba) over a table
of fixed size.

PyTorch merges by concatenating the candidates with the top-k and selecting again (`value._select`: an int64 sort
key, `topk`, three gathers), which reads and writes the whole table every time: for efficientnet_b0's 65 layers
(28,540 channels) one selection of 16 batches took 55 ms, 3.4 ms a batch whatever the point in the dataset. Here each
candidate is compared with its channel's k-th value (kept apart, a small array) and the few that reach it are
inserted in order: for batches of 4 random maxima over 28,540 channels, 3 ms a batch at the start (most enter),
2.3 ms at 160 images, 0.3 ms at 4,000; and the floor is current after every batch. The order is `_select`'s
(activation descending, then image id ascending; NaN as -inf, -0.0 equal to 0.0).

`take_into` goes one step further for float32 maps in channels-last or contiguous layout: one compiled call per
layer and batch reads the map as it lies (see `maxima`), finds each channel's maximum, and keeps those that would
enter (`Pending`), searching for a position only there; `commit` merges them once the forward pass is done, so an
interrupted pass leaves the table as it was. It replaces PyTorch's `amax`, the count above the
floor, the position search, the per-batch concatenation and the merge: on mobilenetv3_large_100 (48 layers, batch
4) those cost 5.2 ms of each batch's 18 ms forward, called from Python up to five times per layer."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from .maxima import group_of
from .value import NO_IMAGE


@functools.cache
def _commit_kernel() -> Callable:
    """The compiled `commit`. The rule for entering a row is written out in it, and `take`'s in that: numba caches
    a compiled function on disk only when it calls no other compiled function made at run time (as these are, so
    that importing cnnwidgets does not import numba); with the rule in helpers, `commit` was compiled anew in every
    process (0.15–0.4 s) and its cache on disk grew by a file each time."""
    import numba

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def commit(top_values: np.ndarray, top_ids: np.ndarray, top_where: np.ndarray, kth: np.ndarray, rows: np.ndarray,
               values: np.ndarray, ids: np.ndarray, where: np.ndarray, count: int) -> None:  # pragma: no cover (compiled)
        """Insert the first `count` candidates (table row, value, image, position) that enter, in any order (the
        order is total), each into its row in order. top_* [R, k], each row in order (empty slots: -inf and the
        largest id), kth [R] their last values."""
        last = top_values.shape[1] - 1
        for i in range(count):
            row, value, image = rows[i], values[i], ids[i]
            if value < kth[row]:  # the common case, read from a small array: the table's rows stay untouched
                continue
            if not (value > top_values[row, last] or (value == top_values[row, last] and image < top_ids[row, last])):
                continue
            slot = last
            while slot > 0 and (top_values[row, slot - 1] < value or (top_values[row, slot - 1] == value and top_ids[row, slot - 1] > image)):
                top_values[row, slot] = top_values[row, slot - 1]
                top_ids[row, slot] = top_ids[row, slot - 1]
                top_where[row, slot] = top_where[row, slot - 1]
                slot -= 1
            top_values[row, slot] = value
            top_ids[row, slot] = image
            top_where[row, slot] = where[i]
            kth[row] = top_values[row, last]

    return commit


def empty_table(rows: int, k: int) -> dict[str, torch.Tensor]:
    """A top-k table with no image yet: "values" (-inf), "ids" (`NO_IMAGE`) and "where" (0), each [rows, k], and
    "kth" [rows], each row's k-th value (the floor a newcomer must reach)."""
    return {"values": torch.full((rows, k), -torch.inf), "ids": torch.full((rows, k), NO_IMAGE),
            "where": torch.zeros((rows, k), dtype=torch.int64), "kth": torch.full((rows,), -torch.inf)}


def merge_into(top: dict[str, torch.Tensor], values: torch.Tensor, ids: torch.Tensor, where: torch.Tensor) -> None:
    """Merge candidates — maxima `values` [N, R] (float32), their image `ids` [N] and positions `where` [N, R]
    (int64) — into `top` (an `empty_table` and what was merged into it: rows in order), in place; NaN maxima
    rank as -inf."""
    n, rows = values.shape
    found = values.contiguous().numpy()
    _commit_kernel()(*table_views(top), np.tile(np.arange(rows), n), np.where(np.isnan(found), np.float32(-np.inf), found).ravel(),
                     np.repeat(ids.numpy(), rows), where.contiguous().numpy().ravel(), n * rows)


@functools.cache
def _take_kernel() -> Callable:
    import numba

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def take(rows: np.ndarray, group: int, lanes: int, per: int, ids: np.ndarray, kth: np.ndarray, top_ids: np.ndarray,
             first_row: int, pending_rows: np.ndarray, pending_values: np.ndarray, pending_ids: np.ndarray,
             pending_where: np.ndarray, count: int, track: bool) -> int:  # pragma: no cover (compiled)
        """rows [B, R, group·lanes]: map b is image ids[b // per]; its lane j·lanes + c holds position r·group + j
        of table row first_row + (b % per)·lanes + c (the layer's rows start at first_row). Each maximum that
        would enter its row (above the k-th value, or equal to it from an image before the k-th's: an empty slot's
        id is the largest) is appended to the pending arrays from `count` on, with its position. `track`: keep each
        lane's first best position during the pass (when most maxima enter); else keep the maxima only and search a
        position for those that enter. Returns the new count.

        A capped activation (ReLU6 at 6) ties at the k-th value in most maps once k images reached the cap; kept as
        candidates for `commit`, such ties made Lite0's first four activation layers keep 60–87 % of each batch's
        maxima and search every map in full (`track`), on every batch of 1,000 random images. Another thread may
        `commit` into a row meanwhile (the index's streams): it commits only batches before this one, so the row
        holds only earlier images and empty slots, and a value equal to the k-th of a full row can never enter,
        whichever moments the reads of `kth` and `top_ids` see."""
        width, last = rows.shape[2], top_ids.shape[1] - 1
        best = np.empty(width, np.float32)
        at = np.zeros(width, np.int64)
        nan = np.zeros(width, np.bool_)
        for b in range(rows.shape[0]):
            image = ids[b // per]
            layer_row = first_row + (b % per) * lanes
            if track:
                for lane in range(width):
                    best[lane] = rows[b, 0, lane]
                    at[lane] = 0
                for r in range(1, rows.shape[1]):
                    for lane in range(width):
                        value, kept = rows[b, r, lane], best[lane]
                        better = (value > kept) | ((value != value) & (kept == kept))
                        best[lane] = value if better else kept
                        at[lane] = r if better else at[lane]
            else:
                for lane in range(width):
                    best[lane] = -np.inf
                    nan[lane] = False
                for r in range(rows.shape[1]):
                    for lane in range(width):
                        value = rows[b, r, lane]
                        best[lane] = value if value > best[lane] else best[lane]
                        nan[lane] |= value != value
            for c in range(lanes):
                row = layer_row + c
                if track:  # fold the group's lanes: the maximum (NaN wins), at its first position
                    top, where = best[c], at[c] * group
                    for j in range(1, group):
                        value, position = best[j * lanes + c], at[j * lanes + c] * group + j
                        top_nan, value_nan = top != top, value != value
                        if (value > top) | (value_nan & ~top_nan) | (((value == top) | (value_nan & top_nan)) & (position < where)):
                            top, where = value, position
                    value = -np.inf if top != top else top
                else:
                    top, has_nan = -np.inf, False
                    for j in range(group):
                        top = max(top, best[j * lanes + c])
                        has_nan |= nan[j * lanes + c]
                    value = -np.inf if has_nan else top
                k_value = kth[row]  # enters: above the k-th value, or equal to it from an image before the k-th's
                if value < k_value or (value == k_value and image > top_ids[row, last]):
                    continue
                if not track:
                    where = 0
                    for r in range(rows.shape[1]):  # the first position holding the maximum (or a NaN), in row-major order
                        found = False
                        for j in range(group):
                            x = rows[b, r, j * lanes + c]
                            if (x != x) if has_nan else (x == top):
                                where, found = r * group + j, True
                                break
                        if found:
                            break
                pending_rows[count], pending_values[count] = row, value
                pending_ids[count], pending_where[count] = image, where
                count += 1
        return count

    return take


def table_views(top: dict[str, torch.Tensor]) -> tuple[np.ndarray, ...]:
    """The NumPy views (values, ids, where, kth) of a table that `take_into` reads and `commit` writes: made once,
    as each hook call would otherwise pay for four PyTorch calls."""
    return tuple(top[key].numpy() for key in ("values", "ids", "where", "kth"))


class Pending:
    """Candidates found by `take_into` during one forward pass, merged into the table by `commit` after it: a pass
    interrupted halfway (an exception, Ctrl-C) leaves the table as it was, so a saved index never holds images it
    has not counted. Arrays grow by doubling."""

    def __init__(self) -> None:
        self.count = 0
        self.rows, self.values = np.empty(0, np.int64), np.empty(0, np.float32)
        self.ids, self.where = np.empty(0, np.int64), np.empty(0, np.int64)

    def room_for(self, more: int) -> None:
        if self.count + more <= len(self.rows):
            return
        size = max(2 * len(self.rows), self.count + more)
        for key in ("rows", "values", "ids", "where"):
            grown = np.empty(size, getattr(self, key).dtype)
            grown[:self.count] = getattr(self, key)[:self.count]
            setattr(self, key, grown)


def take_into(views: tuple[np.ndarray, ...], first_row: int, rows: np.ndarray, ids: np.ndarray, track: bool,
              pending: Pending) -> float:
    """Find each map's maximum of one layer's batch and add those that reach their channel's k-th value in a table
    (`table_views`; the layer's rows start at `first_row`) to `pending`, with their positions. `rows`: the maps as
    `maxima.rows_of` reads them; `ids` [N]: the images' ids; `track`: find every maximum's position in the one pass
    (cheaper when most enter). Returns the fraction of maxima added.

    Only each row's last entry is read, and it only gets better: another thread may `commit` into
    the same table meanwhile (the index's streams), and a maximum that cannot enter at any moment never can."""
    count, positions, lanes = rows.shape
    group = group_of(positions, lanes)
    pending.room_for(count * lanes)
    before = pending.count
    pending.count = _take_kernel()(rows.reshape(count, positions // group, group * lanes), group, lanes, count // len(ids),
                                      ids, views[3], views[1], first_row, pending.rows, pending.values, pending.ids,
                                      pending.where, before, track)
    return (pending.count - before) / (count * lanes)


def commit(views: tuple[np.ndarray, ...], pending: Pending) -> None:
    """Insert the pending candidates that enter into the table (`table_views`), and empty `pending`."""
    if pending.count:
        _commit_kernel()(*views, pending.rows, pending.values, pending.ids, pending.where, pending.count)
    pending.count = 0
