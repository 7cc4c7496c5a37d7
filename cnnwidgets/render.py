"""Tensors to pictures: uint8 scaling, the colormaps every widget shares, grids, PNG bytes, figure export."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import PIL.Image
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLORMAPS = ("viridis", "magma", "inferno", "gray", "coolwarm")
"""The colormaps offered everywhere; the browser applies them from the same matplotlib definitions."""


def scale_to_uint8(values: torch.Tensor, low: torch.Tensor | float, high: torch.Tensor | float) -> torch.Tensor:
    """Map `low` → 0 and `high` → 255 (clipped); `low`/`high` broadcast, e.g. [C,1,1] for per-channel ranges."""
    low = torch.as_tensor(low, dtype=torch.float32)
    span = (torch.as_tensor(high, dtype=torch.float32) - low).clamp_min(1e-12)
    return ((values.float() - low) / span * 255).round().clamp(0, 255).to(torch.uint8)


def colorize(gray: np.ndarray, colormap: str = "viridis") -> np.ndarray:
    """An H×W uint8 map through a named colormap, as H×W×3 uint8."""
    import matplotlib

    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; pick one of {', '.join(COLORMAPS)}")
    table = (matplotlib.colormaps[colormap](np.arange(256))[:, :3] * 255).round().astype(np.uint8)
    return table[gray]


def tile(images: np.ndarray, columns: int | None = None, gap: int = 1, fill: int = 255) -> np.ndarray:
    """Lay out [N,H,W] or [N,H,W,3] images as one grid image, `columns` wide (default: about square)."""
    count, height, width = images.shape[:3]
    columns = columns or max(1, int(np.ceil(np.sqrt(count))))
    rows = int(np.ceil(count / columns))
    grid = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, *images.shape[3:]), fill, np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid[row * (height + gap): row * (height + gap) + height, column * (width + gap): column * (width + gap) + width] = image
    return grid


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an H×W or H×W×3 uint8 array as PNG."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def figure_png(figure: Figure, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed afterwards so exports do not pile up."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()
