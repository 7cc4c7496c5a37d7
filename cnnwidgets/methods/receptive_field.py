"""Receptive fields: which input pixels a unit of a layer can see, for any model, found by tracing its forward.

One forward pass on a dummy input runs under a `TorchFunctionMode` that follows every tensor from the input:
each convolution, pooling and padding call updates the (size, jump, start) of the field along both axes
(Araujo et al., "Computing Receptive Fields of Convolutional Neural Networks", Distill 2019); element-wise ops
with several inputs (the residual add of a ResNet, concatenation) take the union of their inputs' fields;
adaptive pools to 1×1 see the whole input. Strides, kernels, dilations and paddings are read from the calls
themselves, so functional code, TensorFlow-style "same" padding and reused modules are all covered.

Unit (row, col) of a layer sees input rows `start + row·jump … start + row·jump + size − 1` (and likewise for
columns); `start` is negative where the field reaches into the zero padding. Sizes are the theoretical field
before clipping at the image border: VGG-16's conv5_3 sees 196 px.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..backend.hooks import eval_mode, forward_hooks


@dataclass(frozen=True)
class ReceptiveField:
    """The input region of each unit of a [C, H, W] layer: (rows, cols) pairs of size, jump and start."""

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[float, float]
    input_size: tuple[int, int]

    def box(self, row: int, col: int) -> tuple[float, float, float, float]:
        """(top, left, bottom, right) of unit (row, col)'s field in input pixels, bottom/right exclusive, unclipped."""
        top = self.start[0] + row * self.jump[0]
        left = self.start[1] + col * self.jump[1]
        return top, left, top + self.size[0], left + self.size[1]

    def clipped_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """`box` clipped to the input image (what of the field is real pixels, not padding), as integers."""
        top, left, bottom, right = self.box(row, col)
        height, width = self.input_size
        return (max(0, math.floor(top)), max(0, math.floor(left)), min(height, math.ceil(bottom)), min(width, math.ceil(right)))

    def center(self, row: int, col: int) -> tuple[float, float]:
        top, left, bottom, right = self.box(row, col)
        return (top + bottom - 1) / 2, (left + right - 1) / 2

    @property
    def covers_input(self) -> bool:
        """True when the first unit sees the whole input (after a global pool: the layer's only unit)."""
        top, left, bottom, right = self.box(0, 0)
        return top <= 0 and left <= 0 and bottom >= self.input_size[0] and right >= self.input_size[1]

    def as_dict(self) -> dict:
        return {"size": list(self.size), "jump": list(self.jump), "start": list(self.start), "input_size": list(self.input_size)}

    @classmethod
    def from_dict(cls, values: dict) -> ReceptiveField:
        return cls(*(tuple(values[key]) for key in ("size", "jump", "start", "input_size")))


# One axis of a field while tracing: (size, jump, start).
_Axis = tuple[float, float, float]
_Field = tuple[_Axis, _Axis]  # (rows, cols)
UNKNOWN = "unknown"  # a tensor made by an op the tracer cannot follow spatially (an upsampling, a spatial slice)


def _pair(value: object) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1])) if len(value) else (0, 0)
    return int(value), int(value)


def _arg(args: tuple, kwargs: dict, position: int, name: str, default: object) -> object:
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else default


def _window(field: _Field, kernel: tuple[int, int], stride: tuple[int, int], before: tuple[float, float],
            dilation: tuple[int, int] = (1, 1)) -> _Field:
    """A sliding window (conv or pool) over a field: `before` is the padding at the top/left."""
    axes = []
    for (size, jump, start), k, s, p, d in zip(field, kernel, stride, before, dilation):
        axes.append((size + (d * (k - 1)) * jump, jump * s, start - p * jump))
    return axes[0], axes[1]


def _union(fields: list[_Field]) -> _Field:
    axes = []
    for axis in range(2):
        parts = [field[axis] for field in fields]
        jump = max(part[1] for part in parts)
        start = min(part[2] for part in parts)
        end = max(part[2] + part[0] for part in parts)
        axes.append((end - start, jump, start))
    return axes[0], axes[1]


def _spatial(tensor: object) -> tuple[int, int] | None:
    return tuple(tensor.shape[-2:]) if isinstance(tensor, torch.Tensor) and tensor.dim() == 4 else None


def _tensors(value: object) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


class _Tracer(TorchFunctionMode):
    """Attaches a field to every 4-D tensor derived from the input, following torch function calls."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.fields: dict[int, _Field | str] = {}
        self._alive: list[torch.Tensor] = []  # keep traced tensors alive so their ids stay unique
        height, width = image.shape[-2:]
        self.input_size = (height, width)
        self.set(image, ((1, 1, 0), (1, 1, 0)))

    def set(self, tensor: torch.Tensor, field: _Field | str) -> None:
        self.fields[id(tensor)] = field
        self._alive.append(tensor)

    def get(self, tensor: torch.Tensor) -> _Field | str | None:
        return self.fields.get(id(tensor))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        outputs = [t for t in _tensors(output) if t.dim() == 4]
        if not outputs:
            return output
        inputs = [t for t in _tensors((args, kwargs)) if self.get(t) is not None]
        if not inputs:
            return output
        field = self._follow(getattr(func, "__name__", ""), args, kwargs, inputs, outputs[0])
        for tensor in outputs:
            if _spatial(tensor) == _spatial(outputs[0]):
                self.set(tensor, field)
        return output

    def _follow(self, name: str, args: tuple, kwargs: dict, inputs: list[torch.Tensor], output: torch.Tensor) -> _Field | str:
        source = inputs[0]
        field = self.get(source)
        if field == UNKNOWN or any(self.get(t) == UNKNOWN for t in inputs):
            return UNKNOWN
        name = name.lstrip("_")
        if name == "conv2d":
            weight = _arg(args, kwargs, 1, "weight", None)
            stride = _pair(_arg(args, kwargs, 3, "stride", 1))
            dilation = _pair(_arg(args, kwargs, 5, "dilation", 1))
            kernel = tuple(weight.shape[-2:])
            padding = _arg(args, kwargs, 4, "padding", 0)
            if padding == "valid":
                before = (0, 0)
            elif padding == "same":  # PyTorch puts the odd pixel at the end
                before = tuple((d * (k - 1)) // 2 for k, d in zip(kernel, dilation))
            else:
                before = _pair(padding)
            return _window(field, kernel, stride, before, dilation)
        if name in ("max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "lp_pool2d"):
            if name == "lp_pool2d":
                kernel, stride, before, dilation = _pair(args[2]), _pair(_arg(args, kwargs, 3, "stride", None) or args[2]), (0, 0), (1, 1)
            else:
                kernel = _pair(_arg(args, kwargs, 1, "kernel_size", 1))
                stride = _pair(_arg(args, kwargs, 2, "stride", None) or kernel)
                before = _pair(_arg(args, kwargs, 3, "padding", 0))
                dilation = _pair(_arg(args, kwargs, 4, "dilation", 1)) if name.startswith("max") else (1, 1)
            return _window(field, kernel, stride, before, dilation)
        if name == "pad":
            pads = list(_arg(args, kwargs, 1, "pad", ()))
            left, top = (pads + [0, 0, 0, 0])[0], (pads + [0, 0, 0, 0])[2]
            return _window(field, (1, 1), (1, 1), (top, left))
        if name.startswith("adaptive_") and name.endswith("pool2d"):
            before_size, after_size = _spatial(source), _spatial(output)
            if after_size == before_size:
                return field
            axes = []
            for (size, jump, start), n_in, n_out in zip(field, before_size, after_size):
                stride = n_in // n_out
                kernel = n_in - (n_out - 1) * stride
                axes.append((size + (kernel - 1) * jump, jump * stride, start))
            return axes[0], axes[1]
        sizes = {_spatial(t) for t in inputs} | {_spatial(output)}
        if len(sizes) == 1:  # element-wise, activation, normalization, channel slice or concat: union of inputs
            return _union([self.get(t) for t in inputs])
        return UNKNOWN


def receptive_fields(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224)) -> dict[str, ReceptiveField | None]:
    """The receptive field of every module call with a [N, C, H, W] output, by layer name (as `Inspector.layers`
    names them: `name`, or `name#k` for the k-th call of a module used several times), for an input of
    `input_shape`. None where the field cannot be traced (an upsampling or a spatial slice on the way).

    The model runs once on zeros in eval mode under `torch.inference_mode()`; its flags are restored and its
    hooks removed afterwards.
    """
    device = next((t.device for t in [*model.parameters(), *model.buffers()]), torch.device("cpu"))
    image = torch.zeros(input_shape, device=device)
    names = {module: name for name, module in model.named_modules() if name}
    seen: list[tuple[nn.Module, int, object]] = []
    calls: dict[nn.Module, int] = {}

    def hook(module: nn.Module, _inputs: tuple, output: object) -> None:
        call = calls.get(module, 0)
        calls[module] = call + 1
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            seen.append((module, call, tracer.get(output)))

    tracer = _Tracer(image)
    with eval_mode(model), torch.inference_mode(), forward_hooks([(m, hook) for m in names]):
        with tracer:
            model(image)
    fields: dict[str, ReceptiveField | None] = {}
    for module, call, field in seen:
        name = names[module] if calls[module] == 1 else f"{names[module]}#{call + 1}"
        if field is None or field == UNKNOWN:
            fields[name] = None
            continue
        (rows, cols) = field
        fields[name] = ReceptiveField(
            size=(int(rows[0]), int(cols[0])), jump=(int(rows[1]), int(cols[1])), start=(rows[2], cols[2]),
            input_size=tracer.input_size,
        )
    return fields


def receptive_field(model: nn.Module, layer: str, input_shape: tuple[int, ...] = (1, 3, 224, 224)) -> ReceptiveField | None:
    """The receptive field of one layer (see `receptive_fields`)."""
    from ..errors import LayerNotFoundError

    fields = receptive_fields(model, input_shape)
    if layer not in fields:
        raise LayerNotFoundError(layer, fields)
    return fields[layer]
