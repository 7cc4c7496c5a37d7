"""How a layer's output is laid out, and the [N,C,H,W] map every view reads from it.

Convolutions give [N,C,H,W]. Transformers and some modern CNN blocks do not: Swin stages and a LayerNorm or Linear
applied to channels-last maps give [N,H,W,C] ("nhwc"); ViT blocks give token sequences [N,P+H·W,D] ("tokens", with
P prefix tokens such as the class token, dropped). pytorch-grad-cam asks its user for a `reshape_transform` per
model; here the layout is read off the model where the model says enough, and the user can set it per layer with
`Inspector(model, reshape={"layer name": "nhwc" | "nchw" | "tokens" | callable})` (a callable takes the layer's
batched output and returns [N,C,H,W], exactly like pytorch-grad-cam's `reshape_transform`).

Rules, for a 4-D output [N,a,b,c] of one module call (`infer_layout`):
1. convolutions, batch/group/instance norms and pools write [N,C,H,W]; `nn.Linear` and a plain `nn.LayerNorm`
   act on the last dimension, so on a 4-D input they write [N,H,W,C];
2. any other module (an activation, a block, a permute) is compared with the last of those "declaring" modules
   to finish before it, whose channel count C is known: the same shape keeps its layout; C first and not last
   means nchw, C last and not first means nhwc;
3. otherwise the grid must keep the input's aspect ratio: (b, c) for nchw, (a, b) for nhwc; exactly one fitting
   decides (Inception's concatenated 2048-channel `Mixed_7c` is read this way);
4. otherwise the layout is unknown and the layer is refused with an error that names `reshape=`.
Shapes cannot tell a permute of a cube ([C,C,C], channels equal to height and width) from no permute; such a
model sets that layer with `reshape=`.
A 3-D output [N,T,D] is a token sequence when the model says its patch grid (timm's `patch_embed.grid_size`,
(gh, gw)) and T = gh·gw + P with P 0 or the model's `num_prefix_tokens`; otherwise it is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import InputError

KINDS = ("nchw", "nhwc", "tokens")
NCHW_MODULES = (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, nn.GroupNorm,
                nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
                nn.modules.pooling._AdaptiveMaxPoolNd)


@dataclass(frozen=True)
class Layout:
    """The layout of a layer's output: "nchw", "nhwc", "tokens" (`prefix` tokens, then a `grid` of patches),
    "custom" (the user's `function`) or "unknown" (refused)."""

    kind: str
    prefix: int = 0
    grid: tuple[int, int] | None = None
    function: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, compare=False)

    def to_map(self, output: torch.Tensor) -> torch.Tensor:
        """The [N,C,H,W] map of a batched layer output in this layout (a view where the layout allows)."""
        if self.kind == "nchw":
            return output
        if self.kind == "nhwc":
            return output.permute(0, 3, 1, 2)
        if self.kind == "tokens" and self.grid is not None:
            rows, columns = self.grid
            return output[:, self.prefix:].reshape(len(output), rows, columns, -1).permute(0, 3, 1, 2)
        if self.kind == "custom" and self.function is not None:
            mapped = self.function(output)
            if not isinstance(mapped, torch.Tensor) or mapped.dim() != 4:
                shape = tuple(mapped.shape) if isinstance(mapped, torch.Tensor) else type(mapped).__name__
                raise InputError(f"the reshape function returned {shape}; it must return [N,C,H,W]")
            return mapped
        raise InputError("this layer's output layout is unknown; pass Inspector(model, reshape={layer: 'nhwc'}) or pick another layer")

    def map_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The [C,H,W] shape of the map made of an output of shape [N, …]."""
        return tuple(self.to_map(torch.empty(shape, device="meta")).shape[1:])


NCHW = Layout("nchw")
NHWC = Layout("nhwc")
UNKNOWN = Layout("unknown")


def declared(module: nn.Module, output: torch.Tensor) -> tuple[Layout, int] | None:
    """(layout, channels) for a module whose type fixes its output layout (rule 1), else None."""
    if output.dim() != 4:
        return None
    if isinstance(module, nn.modules.conv._ConvNd):
        return NCHW, module.out_channels
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return NCHW, module.num_features
    if isinstance(module, nn.GroupNorm):
        return NCHW, module.num_channels
    if isinstance(module, NCHW_MODULES):
        return NCHW, output.shape[1]
    if isinstance(module, nn.Linear):
        return NHWC, module.out_features
    if type(module) is nn.LayerNorm:
        return NHWC, module.normalized_shape[-1]
    return None


def _fits_aspect(grid: tuple[int, int], input_hw: tuple[int, int]) -> bool:
    """Whether an h×w grid is the input's H×W divided by one stride (rounding either way)."""
    (h, w), (height, width) = grid, input_hw
    if h < 1 or w < 1:
        return False
    stride = height / h
    return abs(width / stride - w) <= 1


def infer_layout(shape: tuple[int, ...], last: tuple[Layout, int, tuple[int, ...]] | None,
                 input_hw: tuple[int, int]) -> Layout:
    """The layout of a 4-D output [N,a,b,c] of a module that does not declare one (rules 2-4); `last` is the
    (layout, channels, output shape) of the last declaring module to finish before it."""
    a, b, c = shape[1:]
    if last is not None:
        layout, channels, last_shape = last
        if tuple(last_shape) == tuple(shape):
            return layout
        if a == channels != c:
            return NCHW
        if c == channels != a:
            return NHWC
    nchw, nhwc = _fits_aspect((b, c), input_hw), _fits_aspect((a, b), input_hw)
    if nchw != nhwc:
        return NCHW if nchw else NHWC
    return UNKNOWN


def patch_grid(model: nn.Module) -> tuple[tuple[int, int], int] | None:
    """((rows, columns) of the model's patch grid, its prefix token count), where the model says them (timm ViTs)."""
    embed = getattr(model, "patch_embed", None)
    grid = getattr(embed, "grid_size", None)
    if grid is None:
        return None
    return (int(grid[0]), int(grid[1])), int(getattr(model, "num_prefix_tokens", 0) or 0)


def token_layout(shape: tuple[int, ...], grid: tuple[tuple[int, int], int] | None) -> Layout:
    """The layout of a 3-D output [N,T,D]: tokens on the model's grid, or unknown."""
    if grid is None:
        return UNKNOWN
    (rows, columns), prefix = grid
    for tokens_before in sorted({0, prefix}):
        if shape[1] == rows * columns + tokens_before:
            return Layout("tokens", tokens_before, (rows, columns))
    return UNKNOWN


def user_layout(choice: str | Callable | Layout, shape: tuple[int, ...], grid: tuple[tuple[int, int], int] | None) -> Layout:
    """The Layout a user asked for in `reshape=` for a layer whose output has `shape` (batch included)."""
    if isinstance(choice, Layout):
        return choice
    if callable(choice):
        return Layout("custom", function=choice)
    if choice == "nchw" and len(shape) == 4:
        return NCHW
    if choice == "nhwc" and len(shape) == 4:
        return NHWC
    if choice == "tokens" and len(shape) == 3:
        found = token_layout(shape, grid)
        if found.kind == "tokens":
            return found
        for prefix in range(9):  # no grid from the model: the smallest prefix leaving a square grid
            side = math.isqrt(shape[1] - prefix) if shape[1] > prefix else 0
            if side and side * side == shape[1] - prefix:
                return Layout("tokens", prefix, (side, side))
    raise InputError(
        f"reshape {choice!r} does not fit an output of shape {tuple(shape)}; pass 'nchw' or 'nhwc' for 4-D outputs, "
        "'tokens' for [N,tokens,D], or a function returning [N,C,H,W]"
    )


def fixed_input_size(model: nn.Module) -> tuple[int, int] | None:
    """The (height, width) a model accepts and no other, where it says so: timm's `patch_embed.img_size` with
    `strict_img_size`, else its `pretrained_cfg` marked `fixed_input_size`; None for models taking any size."""
    embed = getattr(model, "patch_embed", None)
    size = getattr(embed, "img_size", None)
    if size is not None and getattr(embed, "strict_img_size", False) and not getattr(model, "dynamic_img_size", False):
        return int(size[0]), int(size[1])
    config = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    if config.get("fixed_input_size") and config.get("input_size"):
        return int(config["input_size"][-2]), int(config["input_size"][-1])
    return None
