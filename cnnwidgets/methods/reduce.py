"""The shared reducer: raw attribution maps ([3,H,W] gradients, [H,W] CAMs) to [H,W] display maps in [0, 1]."""

from __future__ import annotations

import torch

REDUCTIONS = ("abs", "positive")
"""abs: max |value| over channels (Simonyan et al. 2013); positive: max of the positive part over channels."""

DISPLAY_PERCENTILE = 99.5
"""Display maps are divided by this percentile of their values, so a few extreme pixels do not wash out the rest."""


def reduce_map(raw: torch.Tensor, how: str = "abs") -> torch.Tensor:
    """The [H,W] map of a raw attribution: [C,H,W] maps are reduced over channels, [H,W] maps only rectified.

    "abs" keeps the largest magnitude over channels (evidence for or against the class both count);
    "positive" keeps the largest positive value (evidence for the class only).
    """
    raw = raw.detach().float().cpu()
    if raw.dim() == 2:
        raw = raw.unsqueeze(0)
    if raw.dim() != 3:
        raise ValueError(f"an attribution map is [C,H,W] or [H,W], not shape {tuple(raw.shape)}")
    if how == "abs":
        return raw.abs().amax(0)
    if how == "positive":
        return raw.clamp(min=0).amax(0)
    raise ValueError(f"how must be one of {REDUCTIONS}, not {how!r}")


def normalize_map(values: torch.Tensor, percentile: float = DISPLAY_PERCENTILE) -> torch.Tensor:
    """A non-negative [H,W] map scaled to [0, 1]: divided by its `percentile`-th value, then clipped.

    Every method's map goes through the same rule, so maps shown side by side share one color scale: 1 is each
    map's strongest evidence, 0 none. An all-zero map stays zero.
    """
    values = values.detach().float().cpu()
    flat = values.flatten()
    top = torch.quantile(flat, percentile / 100) if flat.numel() <= 2**24 else flat.max()
    if float(top) <= 0:
        top = flat.max()
    if float(top) <= 0:
        return torch.zeros_like(values)
    return (values / top).clamp(0, 1)


def display_map(raw: torch.Tensor, how: str = "abs", percentile: float = DISPLAY_PERCENTILE) -> torch.Tensor:
    """reduce_map then normalize_map: the [H,W] map in [0, 1] the widgets draw."""
    return normalize_map(reduce_map(raw, how), percentile)


def to_uint8(display: torch.Tensor) -> torch.Tensor:
    """A [0, 1] display map as uint8 0..255 (the bytes sent to the browser, where the colormap is applied)."""
    return (display.clamp(0, 1) * 255).round().to(torch.uint8)
