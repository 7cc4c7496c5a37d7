"""Which modules of a model a user can pick as a layer, in forward order, with their output shapes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import LayerNotFoundError, model_errors
from .hooks import StopForward, forward_hooks
from .layout import NCHW, Layout, declared, infer_layout, patch_grid, token_layout, user_layout

POOLS = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
         nn.modules.pooling._AdaptiveMaxPoolNd, nn.modules.pooling._LPPoolNd)
NOT_PICKED = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.Dropout, nn.Dropout2d, nn.Identity,
              nn.modules.padding._ReflectionPadNd, nn.modules.padding._ConstantPadNd, nn.Flatten)


@dataclass(frozen=True)
class LayerInfo:
    """A pickable layer: its name, what kind of module it is, and the shape [C, H, W] of its map ([C, T, H, W] in a
    video model) for the probed input.

    A module called several times in one forward (a ReLU reused in a residual block) gives one layer per call,
    named `name#1`, `name#2`, …; `call` is the zero-based call index. `layout` turns the module's raw output
    into the [N,C,H,W] map (`backend.layout`); `ended` orders the calls by when they finish (a block ends after
    everything inside it).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    module_name: str
    call: int = 0
    layout: Layout = NCHW
    ended: int = 0

    def to_map(self, output: torch.Tensor) -> torch.Tensor:
        """The [N,C,H,W] map of a batched output of this layer's module."""
        return self.layout.to_map(output)


def kind_of(module: nn.Module) -> str:
    """conv, activation, pool, block or other."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if type(module).__module__ == "torch.nn.modules.activation":
        return "activation"
    if isinstance(module, POOLS):
        return "pool"
    if any(True for _ in module.children()):
        return "block"
    return "other"


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(module, nn.modules.conv._ConvNd) for module in model.modules())


def discover_layers(model: nn.Module, batch: torch.Tensor, reshape: dict | None = None) -> list[LayerInfo]:
    """Run one forward on `batch` ([1,C,H,W]) and list every module call whose output is a map, in call order:
    [1,C,H,W] and [1,H,W,C] outputs and token sequences [1,T,D] on the model's patch grid, each with its layout
    (see `backend.layout`; `reshape` maps layer names to the user's layouts). Layers whose layout cannot be
    known come with the "unknown" layout; the Inspector refuses them by name."""
    names = {module: name for name, module in model.named_modules() if name}
    order: list[tuple[nn.Module, int]] = []  # (module, call index) in the order calls start
    outputs: dict[tuple[nn.Module, int], tuple[tuple[int, ...], Layout, int]] = {}  # raw shape, layout, end position
    started: dict[nn.Module, int] = {}
    finished: dict[nn.Module, int] = {}
    last: list[tuple[Layout, int, tuple[int, ...]]] = []  # the last declaring module's (layout, channels, shape)
    seen: dict[int, Layout] = {}  # layout of each output tensor so far, by id
    kept: list[torch.Tensor] = []
    grid = patch_grid(model)
    input_hw = (int(batch.shape[-2]), int(batch.shape[-1]))
    picked = {module for module in names if not isinstance(module, NOT_PICKED)}

    def on_start(module: nn.Module, _inputs: tuple) -> None:
        if module in picked:
            order.append((module, started.get(module, 0)))
        started[module] = started.get(module, 0) + 1

    def on_end(module: nn.Module, inputs: tuple, output: object) -> None:
        call = finished.get(module, 0)
        finished[module] = call + 1
        if not isinstance(output, torch.Tensor) or output.dim() not in (3, 4, 5) or output.shape[0] != batch.shape[0]:
            return
        shape = tuple(output.shape)
        found = declared(module, output)
        source = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        if output.dim() == 5:
            layout = NCHW  # [1,C,T,H,W]: a video model's maps (3-D convolutions write channels first)
        elif found is not None:
            layout = found[0]
            last[:] = [(found[0], found[1], shape)]
        elif source is not None and tuple(source.shape) == shape and id(source) in seen:
            layout = seen[id(source)]  # same shape as its input (an activation, a gated or residual block): same layout
        elif output.dim() == 4:
            layout = infer_layout(shape, last[0] if last else None, input_hw)
        else:
            layout = token_layout(shape, grid)
        seen[id(output)] = layout
        kept.append(output)  # alive until the probe ends, so no id is reused
        if module in picked:
            outputs[(module, call)] = (shape, layout, sum(finished.values()))

    modules = list(names)
    with forward_hooks([(m, on_start) for m in modules], pre=True), forward_hooks([(m, on_end) for m in modules]):
        with model_errors(tuple(batch.shape)):
            try:
                model(batch)
            except StopForward:
                pass
    layers = []
    for module, call in order:
        if (module, call) not in outputs:
            continue
        shape, layout, ended = outputs[(module, call)]
        name = names[module] if started[module] == 1 else f"{names[module]}#{call + 1}"
        if reshape and name in reshape:
            layout = user_layout(reshape[name], shape, grid)
        map_shape = layout.map_shape(shape) if layout.kind != "unknown" else shape[1:]
        layers.append(LayerInfo(name, kind_of(module), map_shape, names[module], call, layout, ended))
    if reshape:
        missing = set(reshape) - {layer.name for layer in layers}
        if missing:
            raise LayerNotFoundError(min(missing), [layer.name for layer in layers])
    return layers


def weights_layer(layers: list[LayerInfo], name: str) -> LayerInfo | None:
    """The convolution whose filters make layer `name`: itself, the last conv inside a block, else the last before it."""
    index = [layer.name for layer in layers].index(find_layer(layers, name).name)
    layer = layers[index]
    if layer.kind == "conv":
        return layer
    if layer.kind == "block":
        inside = [other for other in layers[index + 1:] if other.module_name.startswith(layer.module_name + ".")]
        convs = [other for other in inside if other.kind == "conv"]
        if convs:
            return convs[-1]
    earlier = [other for other in layers[:index] if other.kind == "conv"]
    return earlier[-1] if earlier else None


def find_layer(layers: list[LayerInfo], name: str) -> LayerInfo:
    """The layer called `name`, or an error listing close matches."""
    for layer in layers:
        if layer.name == name:
            return layer
    raise LayerNotFoundError(name, [layer.name for layer in layers])

