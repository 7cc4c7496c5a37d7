"""Activation maps of one layer: per-channel statistics, dead channels, and display scaling."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..render import scale_to_uint8

DEAD_TOLERANCE = 1e-6
"""A channel whose every value is within this of zero counts as dead (never fires)."""


def dead_channels(activations: torch.Tensor) -> torch.Tensor:
    """[C] bool: channels of a [C,H,W] map that are zero everywhere (a dead ReLU unit on this input)."""
    return activations.abs().flatten(1).amax(1) <= DEAD_TOLERANCE


def dead_on_all(maps: Iterable[torch.Tensor]) -> torch.Tensor:
    """[C] bool: channels dead on every one of several images' [C,H,W] maps of the same layer."""
    dead = None
    for activations in maps:
        current = dead_channels(activations)
        dead = current if dead is None else dead & current
    if dead is None:
        raise ValueError("dead_on_all needs at least one activation map")
    return dead


def channel_stats(activations: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-channel min, max, mean, fraction of zeros and dead flag of a [C,H,W] map."""
    flat = activations.float().flatten(1)
    return {
        "min": flat.amin(1),
        "max": flat.amax(1),
        "mean": flat.mean(1),
        "zero_fraction": (flat.abs() <= DEAD_TOLERANCE).float().mean(1),
        "dead": dead_channels(activations),
    }


def scale_maps(activations: torch.Tensor, normalize: str = "layer") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[C,H,W] uint8 maps for display, with the per-channel (low, high) values shown as 0 and 255.

    "layer" uses one range for the whole layer, so weak and dead channels look dark as in the CS231n figures;
    "channel" stretches each channel to its own range.
    """
    flat = activations.float().flatten(1)
    if normalize == "layer":
        low = flat.min().expand(len(flat))
        high = flat.max().expand(len(flat))
    elif normalize == "channel":
        low, high = flat.amin(1), flat.amax(1)
    else:
        raise ValueError(f"normalize must be 'layer' or 'channel', not {normalize!r}")
    return scale_to_uint8(activations, low.view(-1, 1, 1), high.view(-1, 1, 1)), low, high
