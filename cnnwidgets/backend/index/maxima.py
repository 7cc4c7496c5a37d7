"""Each channel's maximum over positions, and where it first occurs, for every map of a batch: the search the index
makes on every map it sees.

PyTorch finds a maximum with its position (`max(dim)`, `argmax`) without vector instructions: 10–25× slower than
`amax` here ([4, 32, 112, 112] channels-last: 1.2 ms against 50 µs; [4, 1152, 7, 7]: 180 µs against 10 µs), and
that search was the largest cost of indexing. On the CPU, for float32 maps that are channels-last or contiguous,
the search is a small compiled loop (numba) over the map as it lies in memory:
- `channel_maxima`, every map: one pass keeping per vector lane the best value and the first row that held it,
  then the lanes folded into one answer per channel (3–10× faster than `max(dim)`; one core);
- `positions_of`, the chosen maps only, given their maxima (`channel_amax`): a scan of each from its start to the
  first position holding its maximum (about half of it), read in place; PyTorch gathered copies of the chosen maps
  and ran `argmax` on them.
Elsewhere (GPUs, other dtypes, other layouts) the same answers come from PyTorch.

Ties and NaN come out as from `torch.max(dim)`: the first position in row-major (H, W) or (T, H, W) order, and a
map holding NaN has NaN as its maximum, at its first NaN."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch

SEARCH_LANES = 64
"""The compiled loop keeps one running maximum per lane: a row of the [rows, lanes] view of a map. A channels-last
map of C channels is read as rows of g·C values (g consecutive positions), g chosen so that g·C reaches this many
lanes; a map whose positions are contiguous as rows of g positions. With 16 channels at 64×64 a row of 16 lanes
took 154 µs and one of 64 lanes 74 µs; past 64 lanes nothing changed."""

AMAX_LANES = 32
"""PyTorch's `amax` over the positions of a channels-last map [N, positions, C] runs fast when C is a multiple of
this and slowly otherwise: `amax` of [4, 4096, 16] took 383 µs here, of [4, 4096, 32] 18 µs (2 threads)."""


@functools.cache
def _kernels() -> tuple[Callable, Callable]:
    """The compiled loops (numba imports in about 0.2 s and compiles these in about 1 s, then loads them from its
    cache on disk in about 0.5 s)."""
    import numba

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def max_first(rows: np.ndarray, group: int, channels: int, out_values: np.ndarray, out_where: np.ndarray) -> None:  # pragma: no cover (compiled)
        """rows [B, R, group·channels], lane j·C + c holding position r·group + j of channel c → per b and channel
        the maximum and its first position (NaN wins). One pass keeps each lane's best value and first row, then
        the group's lanes are folded into one answer per channel."""
        lanes = rows.shape[2]
        best, at = np.empty(lanes, np.float32), np.empty(lanes, np.int32)
        for b in range(rows.shape[0]):
            for lane in range(lanes):
                best[lane] = rows[b, 0, lane]
                at[lane] = 0
            for r in range(1, rows.shape[1]):
                row, here = rows[b, r], np.int32(r)
                for lane in range(lanes):
                    value, kept = row[lane], best[lane]
                    take = (value > kept) | ((value != value) & (kept == kept))
                    best[lane] = value if take else kept
                    at[lane] = here if take else at[lane]
            for c in range(channels):
                top, where = best[c], np.int64(at[c]) * group
                for j in range(1, group):
                    value, position = best[j * channels + c], np.int64(at[j * channels + c]) * group + j
                    top_nan, value_nan = top != top, value != value
                    if (value > top) | (value_nan & ~top_nan) | (((value == top) | (value_nan & top_nan)) & (position < where)):
                        top, where = value, position
                out_values[b, c] = top
                out_where[b, c] = where

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def first_holding(rows: np.ndarray, values: np.ndarray, chosen: np.ndarray, where: np.ndarray) -> None:  # pragma: no cover (compiled)
        """rows [B, P, C]: per chosen (b, c), the first p with rows[b, p, c] equal to values[b, c] (NaN: the first
        NaN); 0 for the others."""
        for b in range(rows.shape[0]):
            for c in range(rows.shape[2]):
                where[b, c] = 0
                if not chosen[b, c]:
                    continue
                target = values[b, c]
                for p in range(rows.shape[1]):
                    value = rows[b, p, c]
                    if value == target or (target != target and value != value):
                        where[b, c] = p
                        break

    return max_first, first_holding


@functools.cache
def group_of(positions: int, channels: int) -> int:
    """How many consecutive positions one row of lanes holds: the largest divisor of `positions` with at most
    `SEARCH_LANES` lanes (1 when the channels alone fill them). Kept per shape: every hooked map of every batch asks."""
    most = max(1, SEARCH_LANES // channels)
    return max(g for g in range(1, min(most, positions) + 1) if positions % g == 0)


def _rows(maps: torch.Tensor) -> np.ndarray | None:
    """The maps [N,C,…] as a [B, positions, lanes] array read in place (see `rows_of`); None off the CPU or when
    not float32."""
    return rows_of(maps.detach().numpy()) if maps.device.type == "cpu" and maps.dtype == torch.float32 else None


def rows_of(maps: np.ndarray) -> np.ndarray | None:
    """Maps [N,C,…] as a [B, positions, lanes] array read in place: [N, P, C] for channels-last maps, [N·C, P, 1]
    for contiguous ones; None where the compiled loops do not apply (not float32, other layouts). NumPy only: a
    hook pays for every PyTorch call it makes (each costs microseconds more in the middle of a forward pass), and
    every line of Python: the two streams of the index share one interpreter lock. A plain `transpose` instead of
    `np.moveaxis` (3.3 against 0.9 µs alone) and `group_of` kept per shape made the index of 400 images on torchvision
    mnasnet0_5 (35 hooked maps, 128 px) 3 % faster with one thread and 6-7 % with two (A/B in one process, 6 rounds);
    `bench/index.py`, alternating processes, three each: mnasnet0_5 360-381 against 326-356 images/s (0.63-0.69 against
    0.58-0.62 of the bare forward), mobilenetv3_large_100 228-238 against 215-223."""
    n, c = maps.shape[:2]
    positions = math.prod(maps.shape[2:])
    if maps.dtype != np.float32 or positions == 0:
        return None
    last = maps.transpose((0, *range(2, maps.ndim), 1))
    if last.flags.c_contiguous:
        return last.reshape(n, positions, c)
    if maps.flags.c_contiguous:
        return maps.reshape(n * c, positions, 1)
    return None


def channel_maxima(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and channel of [N,C,H,W] (or [N,C,T,H,W]) maps: the maximum (float32) and its first row-major
    position over H·W (or T·H·W), int64, both [N,C]. Channels-last maps are read as they lie, never copied."""
    n, c = maps.shape[:2]
    maps = maps.detach()
    rows = _rows(maps)
    if rows is None:
        values, where = maps.flatten(2).max(2)
        return values.float(), where
    count, positions, lanes = rows.shape
    group = group_of(positions, lanes)
    maxima, positions_found = np.empty((count, lanes), np.float32), np.empty((count, lanes), np.int64)
    _kernels()[0](rows.reshape(count, positions // group, group * lanes), group, lanes, maxima, positions_found)
    return torch.from_numpy(maxima).view(n, c), torch.from_numpy(positions_found).view(n, c)


def channel_amax(maps: torch.Tensor) -> torch.Tensor:
    """Per image and channel of [N,C,…] maps: the maximum (float32, NaN where a map holds NaN), [N,C], by PyTorch's
    `amax` on the map as it lies. Where a channels-last map's C is not a multiple of `AMAX_LANES`, g consecutive
    positions are read as one row of g·C values (a view), reduced, and the g partial maxima reduced again: the same
    maxima, 5–20× faster for 8–48 channels (16 channels at 112×112: 1,051 against 48 µs), 1.5–3× for 120–240."""
    n, c = maps.shape[:2]
    maps = maps.detach()
    last = maps.movedim(1, -1)
    if not last.is_contiguous():
        return maps.flatten(2).amax(2).float()
    flat = last.reshape(n, -1, c)
    positions = flat.shape[1]
    group = AMAX_LANES // math.gcd(c, AMAX_LANES)
    if group == 1 or positions % group:
        return flat.amax(1).float()
    while group * c < 8 * AMAX_LANES and positions % (2 * group) == 0:
        group *= 2
    return flat.reshape(n, positions // group, group * c).amax(1).view(n, group, c).amax(1).float()


def positions_of(maps: torch.Tensor, values: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """The first row-major position of `values` [N,C] (each map's maximum, `channel_amax`) in the maps where
    `chosen` [N,C] (bool) is set, 0 elsewhere: int64 [N,C]."""
    n, c = maps.shape[:2]
    maps = maps.detach()
    rows = _rows(maps)
    if rows is None:
        picked = chosen.view(-1).nonzero().squeeze(1)  # image · C + channel
        found = maps[picked // c, picked % c].flatten(1).argmax(1)
        return torch.zeros(n * c, dtype=torch.int64, device=maps.device).index_copy_(0, picked, found).view(n, c)
    where = np.empty((rows.shape[0], rows.shape[2]), np.int64)
    _kernels()[1](rows, values.reshape(rows.shape[0], rows.shape[2]).numpy(),
                  chosen.reshape(rows.shape[0], rows.shape[2]).numpy(), where)
    return torch.from_numpy(where).view(n, c)
