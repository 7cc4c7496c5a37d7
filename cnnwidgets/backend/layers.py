"""Which modules of a model a user can pick as a layer, in forward order, with their output shapes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import LayerNotFoundError, model_errors
from .hooks import StopForward, forward_hooks

POOLS = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
         nn.modules.pooling._AdaptiveMaxPoolNd, nn.modules.pooling._LPPoolNd)
NOT_PICKED = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.Dropout, nn.Dropout2d, nn.Identity,
              nn.modules.padding._ReflectionPadNd, nn.modules.padding._ConstantPadNd, nn.Flatten)


@dataclass(frozen=True)
class LayerInfo:
    """A pickable layer: its name, what kind of module it is, and its output shape [C, H, W] ([C, T, H, W] in a
    video model) for the probed input.

    A module called several times in one forward (a ReLU reused in a residual block) gives one layer per call,
    named `name#1`, `name#2`, …; `call` is the zero-based call index.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    module_name: str
    call: int = 0


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


def discover_layers(model: nn.Module, batch: torch.Tensor) -> list[LayerInfo]:
    """Run one forward on `batch` and list every module call that outputs a [1, C, H, W] map, in call order."""
    names = {module: name for name, module in model.named_modules() if name}
    order: list[tuple[nn.Module, int]] = []  # (module, call index) in the order calls start
    shapes: dict[tuple[nn.Module, int], tuple[int, ...]] = {}
    started: dict[nn.Module, int] = {}
    finished: dict[nn.Module, int] = {}

    def on_start(module: nn.Module, _inputs: tuple) -> None:
        order.append((module, started.get(module, 0)))
        started[module] = started.get(module, 0) + 1

    def on_end(module: nn.Module, _inputs: tuple, output: object) -> None:
        call = finished.get(module, 0)
        finished[module] = call + 1
        if isinstance(output, torch.Tensor) and output.dim() in (4, 5):  # [1,C,H,W] maps, [1,C,T,H,W] for video
            shapes[(module, call)] = tuple(output.shape[1:])

    candidates = [module for module in names if not isinstance(module, NOT_PICKED)]
    with forward_hooks([(m, on_start) for m in candidates], pre=True), forward_hooks([(m, on_end) for m in candidates]):
        with model_errors(tuple(batch.shape)):
            try:
                model(batch)
            except StopForward:
                pass
    layers = []
    for module, call in order:
        if (module, call) not in shapes:
            continue
        name = names[module] if started[module] == 1 else f"{names[module]}#{call + 1}"
        layers.append(LayerInfo(name, kind_of(module), shapes[(module, call)], names[module], call))
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

