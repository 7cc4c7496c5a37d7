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

Where tracing cannot follow an op (an upsampling, a spatial slice, a custom kernel), the field is measured
instead: `gradient_receptive_field` finds the input pixels with a nonzero gradient of one unit, on a copy of the
model whose weights make every path count (see there). `receptive_fields` falls back to it layer by layer and
keeps the measured field when it has the form above (a size, jump and start per axis).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..backend.hooks import StopForward, eval_mode, forward_hooks
from ..errors import InputError, LayerNotFoundError


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
    `input_shape`.

    The model runs once on zeros in eval mode under `torch.inference_mode()`; its flags are restored and its
    hooks removed afterwards. Layers the tracer cannot follow (an upsampling or a spatial slice on the way) are
    measured by gradient support (`gradient_receptive_field`, on one copy of the model; a forward and backward
    pass of 12 images per such layer); None where even that field has no single size, jump and start (after a
    2× upsampling, neighbouring units share one field).
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
    twin = None  # the positive copy, made once if some layer needs measuring
    for module, call, field in seen:
        name = names[module] if calls[module] == 1 else f"{names[module]}#{call + 1}"
        if field is None or field == UNKNOWN:
            twin = twin or _positive_copy(model)
            fields[name] = _measured_field(twin, dict(twin.named_modules())[names[module]], call, tuple(input_shape))
            continue
        (rows, cols) = field
        fields[name] = ReceptiveField(
            size=(int(rows[0]), int(cols[0])), jump=(int(rows[1]), int(cols[1])), start=(rows[2], cols[2]),
            input_size=tracer.input_size,
        )
    return fields


def receptive_field(model: nn.Module, layer: str, input_shape: tuple[int, ...] = (1, 3, 224, 224)) -> ReceptiveField | None:
    """The receptive field of one layer (see `receptive_fields`)."""
    fields = receptive_fields(model, input_shape)
    if layer not in fields:
        raise LayerNotFoundError(layer, fields)
    return fields[layer]


# --- measured receptive fields: the support of a unit's input gradient --------------------------------------------

Box = tuple[int, int, int, int]  # (top, left, bottom, right) in input pixels, bottom/right exclusive


class _WindowSums(TorchFunctionMode):
    """Max pools become sums over the same windows: a max sends its gradient to one pixel of the window only,
    while the unit sees (and could pick) all of them."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "").lstrip("_")
        if name in ("max_pool2d", "max_pool2d_with_indices"):
            output = func(*args, **kwargs)
            pooled = output[0] if isinstance(output, tuple) else output
            summed = self._window_sum(args, kwargs, pooled.shape[-2:])
            return (summed, output[1]) if isinstance(output, tuple) else summed
        if name in ("adaptive_max_pool2d", "adaptive_max_pool2d_with_indices"):
            output = func(*args, **kwargs)
            averaged = nn.functional.adaptive_avg_pool2d(args[0], _arg(args, kwargs, 1, "output_size", None))
            return (averaged, output[1]) if isinstance(output, tuple) else averaged
        return func(*args, **kwargs)

    @staticmethod
    def _window_sum(args: tuple, kwargs: dict, size: torch.Size) -> torch.Tensor:
        image = args[0]
        kernel = _pair(_arg(args, kwargs, 1, "kernel_size", 1))
        stride = _pair(_arg(args, kwargs, 2, "stride", None) or kernel)
        padding = _pair(_arg(args, kwargs, 3, "padding", 0))
        dilation = _pair(_arg(args, kwargs, 4, "dilation", 1))
        # zeros after the bottom/right padding stand in for the windows ceil_mode adds there
        padded = nn.functional.pad(image, (padding[1], padding[1] + stride[1] * 2, padding[0], padding[0] + stride[0] * 2))
        channels = image.shape[1]
        ones = torch.ones((channels, 1, *kernel), dtype=image.dtype, device=image.device)
        summed = nn.functional.conv2d(padded, ones, stride=stride, dilation=dilation, groups=channels)
        return summed[..., : size[0], : size[1]]


def _positive_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode in which every path from input to output carries a nonzero gradient:
    weights positive and averaging (1 / fan-in, so activations stay near the input's and no ReLU6 or sigmoid
    saturates; on a positive input every term of every sum is then positive, so none cancels), biases 0, norms
    the identity, no in-place ops (hooks need the outputs intact)."""
    twin = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, parameter in twin.named_parameters():
            if parameter.dim() >= 2:
                parameter.fill_(1.0 / parameter[0].numel())
            else:
                parameter.fill_(0.0 if name.endswith("bias") else 1.0)
        for name, buffer in twin.named_buffers():
            if name.endswith("running_mean"):
                buffer.zero_()
            elif name.endswith("running_var"):
                buffer.fill_(1.0)
    for module in twin.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
        module.requires_grad_(False)
    return twin


def _layer_call(model: nn.Module, layer: str) -> tuple[str, int]:
    """(module name, call index) of a layer named as `receptive_fields` names them (`name` or `name#k`)."""
    name, _, call = layer.partition("#")
    modules = dict(model.named_modules())
    if not name or name not in modules or (call and not (call.isdigit() and int(call) >= 1)):
        raise LayerNotFoundError(layer, [n for n in modules if n])
    return name, int(call) - 1 if call else 0


def _gradient_boxes(twin: nn.Module, module: nn.Module, call: int,
                    choose: Callable[[int, int], list[tuple[int, int]]], batch: int,
                    input_shape: tuple[int, ...]) -> tuple[list[Box | None], tuple[int, int]]:
    """The gradient-support box of each unit (row, col) (all channels) that `choose(rows, cols)` picks in the
    `call`-th output of `module` (at most `batch` units, one batch element each, so one backward pass measures
    them all), None where no pixel has a gradient; and the layer's (rows, cols). `twin` is the positive copy
    (`_positive_copy`)."""
    generator = torch.Generator().manual_seed(1)
    image = (torch.rand((1, *input_shape[1:]), generator=generator) + 0.5).expand(batch, *input_shape[1:])
    device = next((t.device for t in [*twin.parameters(), *twin.buffers()]), torch.device("cpu"))
    image = image.to(device).clone().requires_grad_(True)
    captured: list[object] = []
    calls = [0]

    def capture(_module: nn.Module, _inputs: tuple, output: object) -> None:
        calls[0] += 1
        if calls[0] - 1 == call:
            captured.append(output)
            raise StopForward

    def rescale(_module: nn.Module, _inputs: tuple, output: object) -> None:
        # keeps gradients near 1 through deep stacks (each layer divides them by its fan-in); support is unchanged
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(lambda grad: grad / grad.abs().amax().clamp_min(1e-30))

    hooks = [(m, rescale) for m in twin.modules() if m is not twin and m is not module] + [(module, capture)]
    with torch.inference_mode(False), torch.enable_grad(), forward_hooks(hooks), _WindowSums():
        try:
            twin(image)
        except StopForward:
            pass
    if not captured or not isinstance(captured[0], torch.Tensor) or captured[0].dim() != 4:
        raise InputError("this layer has no [N, C, H, W] output (or did not run): it has no receptive field to measure")
    output = captured[0]
    rows, cols = output.shape[-2:]
    positions = choose(rows, cols)
    # all channels at (row, col), with random positive weights: channels may see different pixels (after a
    # space-to-depth), and unequal weights keep a normalization over channels from cancelling their sum
    channel_weights = torch.rand(output.shape[1], generator=generator).to(output) + 0.5
    seed = torch.zeros_like(output)
    for k, (row, col) in enumerate(positions):
        if not (0 <= row < rows and 0 <= col < cols):
            raise InputError(f"unit ({row}, {col}) is outside this layer's {rows}×{cols} grid")
        seed[k, :, row, col] = channel_weights
    with torch.inference_mode(False):
        (grad,) = torch.autograd.grad(output, image, seed, allow_unused=True)
    boxes: list[Box | None] = []
    for k in range(len(positions)):
        if grad is None:
            boxes.append(None)
            continue
        support = grad[k].abs().sum(0) != 0
        hit_rows = torch.nonzero(support.any(1)).flatten()
        hit_cols = torch.nonzero(support.any(0)).flatten()
        boxes.append(None if not len(hit_rows) else
                     (int(hit_rows[0]), int(hit_cols[0]), int(hit_rows[-1]) + 1, int(hit_cols[-1]) + 1))
    return boxes, (rows, cols)


def gradient_receptive_field(model: nn.Module, layer: str, position: tuple[int, int],
                             input_shape: tuple[int, ...] = (1, 3, 224, 224)) -> Box:
    """The input pixels unit `position` = (row, col) of `layer` sees, measured: the bounding box
    (top, left, bottom, right; bottom/right exclusive, within the image) of the pixels where the gradient of
    that position (all channels) with respect to the input is nonzero, for an input of `input_shape`. Layers are
    named as `receptive_fields` names them (`name`, or `name#k` for the k-th call of a reused module).

    Needs no knowledge of the model's ops, so it works where `receptive_fields` cannot trace. The gradient is
    taken on a copy of the model (the user's model is left exactly as it was) whose weights are all positive,
    biases zero and norms the identity, on a positive input: with the real weights a zero weight, a dead ReLU
    or a saturated ReLU6 would hide pixels the unit is wired to, and a max pool passes gradient to one pixel of
    each window only, so here max pools sum their windows instead. What remains is the wiring, which is the
    receptive field: on plain CNNs this equals `receptive_fields(...)[layer].clipped_box(row, col)`.
    One forward up to the layer and one backward.
    """
    if len(input_shape) != 4:
        raise InputError(f"input_shape must be (N, C, H, W), not {tuple(input_shape)}")
    name, call = _layer_call(model, layer)
    twin = _positive_copy(model)
    row, col = position
    (box,), _ = _gradient_boxes(twin, dict(twin.named_modules())[name], call, lambda rows, cols: [(row, col)], 1,
                             tuple(input_shape))
    if box is None:
        raise InputError(f"no input pixel has a gradient for unit {tuple(position)} of {layer!r}: its output does not depend on the input")
    return box


def _fit_axis(indexes: list[int], spans: list[tuple[int, int]], count: int, extent: int) -> tuple[int, int, float] | None:
    """(size, jump, start) of one axis from measured clipped spans [a, b) of units `indexes` of `count`, in an
    input of `extent` pixels; None when no such field gives exactly these spans. Where every measured span is
    clipped at the start (or the end) the part beyond the image is unknown, and the field stops at the border."""
    free_starts = [(i, a) for i, (a, _) in zip(indexes, spans) if a > 0]
    free_ends = [(i, b) for i, (_, b) in zip(indexes, spans) if b < extent]
    known = free_starts if len(free_starts) >= 2 else free_ends
    if len(known) >= 2:
        (i, v), (j, w) = known[:2]
        if (w - v) % (j - i):
            return None
        jump = (w - v) // (j - i)
    else:  # no two units reach inside the image on the same side: any jump fits, take the layer's stride
        jump = max(1, extent // count)
    start = free_starts[0][1] - free_starts[0][0] * jump if free_starts else 0
    size = free_ends[0][1] - start - free_ends[0][0] * jump if free_ends else extent - start
    if size <= 0:
        return None
    for i, (a, b) in zip(indexes, spans):
        if (max(0, start + i * jump), min(extent, start + i * jump + size)) != (a, b):
            return None
    return size, jump, float(start)


def _measured_field(twin: nn.Module, module: nn.Module, call: int, input_shape: tuple[int, ...]) -> ReceptiveField | None:
    """The field of a layer the tracer could not follow (`module` in the positive copy `twin`), from the
    gradient boxes of units at both ends and the middle of its middle row and column; None when they do not fit
    one size, jump and start per axis."""
    def picks(n: int) -> list[int]:
        return sorted({0, 1, n // 2, n // 2 + 1, n - 2, n - 1} & set(range(n)))

    def choose(rows: int, cols: int) -> list[tuple[int, int]]:
        return [(r, cols // 2) for r in picks(rows)] + [(rows // 2, c) for c in picks(cols)]

    boxes, (rows, cols) = _gradient_boxes(twin, module, call, choose, 12, input_shape)
    if any(box is None for box in boxes):
        return None
    units, split = choose(rows, cols), len(picks(rows))
    height, width = input_shape[-2:]
    row_fit = _fit_axis([r for r, _ in units[:split]], [(b[0], b[2]) for b in boxes[:split]], rows, height)
    col_fit = _fit_axis([c for _, c in units[split:]], [(b[1], b[3]) for b in boxes[split:]], cols, width)
    if row_fit is None or col_fit is None:
        return None
    return ReceptiveField(size=(row_fit[0], col_fit[0]), jump=(row_fit[1], col_fit[1]), start=(row_fit[2], col_fit[2]),
                          input_size=(height, width))
