"""Receptive fields: which input pixels a unit of a layer can see, for any model, found by tracing its forward.

One forward pass on a dummy input runs under a `TorchFunctionMode` that follows every tensor from the input:
each convolution, pooling, padding and spatial slice updates the (size, jump, start) of the field along both
axes (Araujo et al., "Computing Receptive Fields of Convolutional Neural Networks", Distill 2019). Next to the
field it follows where the input's grid lives in the tensor, so permutes (ConvNeXt's and Swin's channels-last
blocks), flattening into tokens (ViT, a class token in front), and reshapes that cut the grid into windows or
patches (Swin, MobileViT) and put it back are all followed. Rules:

- element-wise ops, norms and activations, residual adds and concatenations: the union of their inputs' fields;
  normalization statistics (batch, layer and group norms) do not widen it;
- gates: an operand broadcast over the grid (squeeze-excitation, ECA, the [N, C, 1, 1] output of a global
  pool) scales the map and does not widen its field, though the gate itself sees the whole input;
- an op that mixes all positions (a global pool, attention over all tokens, a softmax over them) gives every
  unit the same field, the whole grid's (jump 0); attention over patches at one offset each (MobileViT) likewise
  where their fields together cover the input;
- mixing within windows that the result keeps (Swin's shifted-window attention) leaves the units of a window
  sharing its field: no single size, jump and start, so those layers have none (None, and `receptive_field`
  says which layer to pick instead); a patch merging that folds the window into channels has one again.

Strides, kernels, dilations and paddings are read from the calls themselves, so functional code, TensorFlow-style
"same" padding (`Conv2dSame`, dynamic padding) and reused modules are all covered. Tracing ResNet-50 or
Swin-T at 224×224 takes one forward pass plus Python bookkeeping per op (see the README for the times).

Unit (row, col) of a layer sees input rows `start + row·jump … start + row·jump + size − 1` (and likewise for
columns); `start` is negative where the field reaches into the zero padding. Sizes are the theoretical field
before clipping at the image border: VGG-16's conv5_3 sees 196 px.

After an upsampling neighbouring units share one field: no single form either (the field is None).

Where tracing cannot follow an op (a pixel unshuffle, a transposed conv, a custom kernel), the field is measured
instead: `gradient_receptive_field` finds the input pixels with a nonzero gradient of one unit, on a copy of the
model whose weights make every path count, with activations and norms as the identity and gates held constant by
the rule above (see there). `receptive_fields` falls back to it layer by layer and keeps the measured field when
it has the form above (a size, jump and start per axis).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import InputError, LayerNotFoundError
from .hooks import StopForward, eval_mode, forward_hooks


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
        """`box` clipped to the input image (what of the field is real pixels, not padding), as integers. Where an
        unpadded strided layer leaves the last input rows unread (a size its stride does not divide), they stay
        inside this box though no unit reads them."""
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


# One axis of a field while tracing: (size, jump, start); jump None where its units have no common form (inside
# shifted windows), and then (start, start + size) is the hull of all their fields.
_Axis = tuple[float, float | None, float]
_Axes = tuple[_Axis, _Axis]  # (rows, cols)
# Where the input's grid lives in a tensor: per tensor dim, its factors in row-major order, each (label, size):
# "h"/"w" a whole axis of the grid, "h/o"/"h/i" (and w) its outer/inner part after a split into windows or patches,
# "x" anything else (batch, channels), "pre" tokens put in front of the grid's (a class token).
_Atom = tuple[str, int]
_Layout = tuple[tuple[_Atom, ...], ...]
UNKNOWN = "unknown"  # a tensor made by an op the tracer cannot follow spatially (a pixel unshuffle)
NOT_TRACED = frozenset({"zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "new_zeros",
                        "new_ones", "new_empty", "new_full", "size", "dim", "numel"})
REDUCTIONS = frozenset({"mean", "sum", "amax", "amin", "max", "min", "std", "var", "norm", "logsumexp", "prod", "nanmean",
                        "nansum", "std_mean", "var_mean", "median", "logcumsumexp"})
WINDOW_OPS = frozenset({"conv2d", "max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "lp_pool2d"})
UPSAMPLINGS = frozenset({"interpolate", "upsample", "upsample_nearest", "upsample_bilinear"})
SPATIAL_UNKNOWN = frozenset({"pixel_shuffle", "pixel_unshuffle", "unfold", "fold", "grid_sample", "conv_transpose2d",
                             "affine_grid"})
RESHAPES = frozenset({"reshape", "view", "flatten", "unflatten", "view_as", "reshape_as", "squeeze", "unsqueeze",
                      "_unsafe_view", "contiguous"})


def _pair(value: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1])) if len(value) else (0, 0)
    return int(value), int(value)


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], position: int, name: str, default: object) -> Any:
    """Argument `name` (at `position`) of a torch call: whatever the caller passed, so its type is arbitrary."""
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else default


def tensors_in(value: object) -> Iterator[torch.Tensor]:
    """Every tensor inside `value`, a tensor or tuples, lists and dicts of them (a module's arguments or output)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)


class _Untraceable(Exception):
    """An op called in a way the tracing rules cannot follow: the tracer marks its outputs UNKNOWN (measured instead)."""


@dataclass(frozen=True)
class _State:
    axes: _Axes
    layout: _Layout | None  # None: the grid's place in the tensor is lost


def _axis_of(label: str) -> int:
    """The grid axis (0 rows, 1 cols) of a label of the grid's ("h", "w" or their parts "h/o", "w/i", ...)."""
    return 0 if label[0] == "h" else 1


def _full_dims(layout: _Layout) -> tuple[int | None, int | None]:
    """The dims holding the whole rows axis and the whole cols axis alone, where they do."""
    found: list[int | None] = [None, None]
    for d, atoms in enumerate(layout):
        if len(atoms) == 1 and atoms[0][0] in ("h", "w"):
            found[_axis_of(atoms[0][0])] = d
    return found[0], found[1]


def _spatial_atoms(layout: _Layout) -> list[_Atom]:
    return [atom for atoms in layout for atom in atoms if atom[0] != "x" and atom[0] != "pre"]


def _dim_size(atoms: tuple[_Atom, ...]) -> int:
    pre = sum(size for label, size in atoms if label == "pre")
    return pre + math.prod(size for label, size in atoms if label != "pre")


def _fits(layout: _Layout | None, shape: tuple[int, ...]) -> bool:
    return layout is not None and len(layout) == len(shape) and all(_dim_size(a) == n for a, n in zip(layout, shape))


def _reshape(layout: _Layout, shape: tuple[int, ...]) -> _Layout | None:
    """The layout after a reshape to `shape`: the row-major stream of factors cut into the new dims, a factor
    split where a dim needs part of it (a grid axis into outer × inner), merged back where parts meet again."""
    tokens: dict[str, tuple[_Atom, ...]] = {}  # a dim with class tokens in front of the grid moves only as a whole: one opaque factor
    stream: list[_Atom] = []
    for atoms in layout:
        if any(label == "pre" for label, _ in atoms):
            tokens[f"tokens{len(tokens)}"] = atoms
            stream.append((f"tokens{len(tokens) - 1}", _dim_size(atoms)))
        else:
            stream.extend(atom for atom in atoms if atom[1] != 1)
    dims: list[list[_Atom]] = []
    for size in shape:
        dim: list[_Atom] = []
        need = size
        while need > 1:
            if not stream:
                return None
            label, n = stream.pop(0)
            if n <= need:
                if need % n:
                    return None
                dim.append((label, n))
                need //= n
            else:  # a factor larger than the dim: split it (only whole axes or anything else, once)
                if n % need or "/" in label or label in tokens:
                    return None
                outer = label if label == "x" else f"{label}/o"
                inner = label if label == "x" else f"{label}/i"
                dim.append((outer, need))
                stream.insert(0, (inner, n // need))
                need = 1
        if any(label in tokens for label, _ in dim):
            if len(dim) != 1:
                return None
            dims.append(list(tokens[dim[0][0]]))
            continue
        dims.append(_merge_parts(dim))
    if stream:
        return None
    return tuple(tuple(d) for d in dims)


def _merge_parts(atoms: list[_Atom]) -> list[_Atom]:
    """Adjacent outer and inner parts of one axis (in that order) are the whole axis again; "x" factors merge."""
    merged: list[_Atom] = []
    for label, n in atoms:
        if merged:
            last, m = merged[-1]
            if (last, label) in (("h/o", "h/i"), ("w/o", "w/i")):
                merged[-1] = (last[0], m * n)
                continue
            if last == label == "x":
                merged[-1] = ("x", m * n)
                continue
        merged.append((label, n))
    return merged


def _mix(state: _State, dims: list[int], out_layout: _Layout | None, extent: tuple[int, int] | None = None) -> _State:
    """The state after an op that combines all values along `dims` (a reduction, a softmax, a matrix product or
    linear layer over them): an axis whose whole extent is mixed becomes one field that every unit shares (jump 0);
    mixing the inner part of a split axis widens its field by one window where the result no longer has that inner
    part (a patch merging); where the result keeps it (attention inside windows) the axis has no single field.
    Mixing only the outer part (attention across patches) leaves one field where those fields together cover
    the input of `extent` (H, W) for every offset, and none otherwise."""
    layout = state.layout
    if layout is None:  # which dims hold the grid is lost, so what the mix reaches is unknown: the tracer measures
        raise _Untraceable("a mix over dims of a tensor whose grid layout is lost")
    mixed = [atom for d in dims for atom in layout[d]]
    remaining = out_layout if out_layout is not None else ()
    kept = {atom[0] for atoms in remaining for atom in atoms}
    axes = list(state.axes)
    relabel: dict[str, str] = {}
    for axis, name in enumerate("hw"):
        field = axes[axis]
        labels = {label for label, _ in mixed if label[0] == name}
        if labels == {f"{name}/i"} and f"{name}/i" not in kept:
            relabel[f"{name}/o"] = name
        if not labels:
            continue
        size, jump, start = field
        sizes = {label: n for atoms in layout for label, n in atoms}
        count = sizes.get(name) or sizes[f"{name}/o"] * sizes[f"{name}/i"]
        if jump is None:  # no common form before: the hull stays, and is what a whole mix shares
            axes[axis] = (size, 0 if name in labels or {f"{name}/o", f"{name}/i"} <= labels else None, start)
        elif name in labels or {f"{name}/o", f"{name}/i"} <= labels:
            axes[axis] = (size + (count - 1) * jump, 0, start)
        elif f"{name}/i" in labels:
            inner = sizes[f"{name}/i"]
            if f"{name}/i" in kept:
                axes[axis] = (size + (count - 1) * jump, None, start)
            else:
                axes[axis] = (size + (inner - 1) * jump, jump * inner, start)
        elif extent is not None and start + (sizes[f"{name}/i"] - 1) * jump <= 0 and \
                start + (sizes[f"{name}/o"] - 1) * sizes[f"{name}/i"] * jump + size >= extent[axis]:
            # attention across patches at one offset inside each (MobileViT): the fields of those units together
            # reach over the whole input whatever the offset, so every unit sees all of it
            inner = sizes[f"{name}/i"]
            axes[axis] = ((sizes[f"{name}/o"] * inner - 1) * jump + size, 0, start)
        else:
            axes[axis] = (size + (count - 1) * jump, None, start)
    if out_layout is not None and relabel:
        out_layout = tuple(tuple((relabel.get(label, label), n) for label, n in atoms) for atoms in out_layout)
    return _State((axes[0], axes[1]), out_layout)


def _window(axes: _Axes, kernel: tuple[int, int], stride: tuple[int, int], before: tuple[float, float],
            dilation: tuple[int, int] = (1, 1)) -> _Axes:
    """A sliding window (conv or pool) over a field: `before` is the padding at the top/left."""
    out: list[_Axis] = []
    for field, k, s, p, d in zip(axes, kernel, stride, before, dilation):
        size, jump, start = field
        if jump is None:
            out.append(field)
            continue
        out.append((size + (d * (k - 1)) * jump, jump * s, start - p * jump))
    return out[0], out[1]


def _union(fields: list[_Axes]) -> _Axes:
    """The field that holds every one of `fields` for each unit (residual adds, concatenations); a field is shared by every
    unit (jump 0: the whole grid mixed, as after attention), it holds the others."""
    axes: list[_Axis] = []
    for axis in range(2):
        parts = [field[axis] for field in fields]
        shared = [part for part in parts if part[1] == 0]
        parts = shared or parts
        jumps = [part[1] for part in parts if part[1] is not None]
        jump = max(jumps) if len(jumps) == len(parts) else None
        start = min(part[2] for part in parts)
        end = max(part[2] + part[0] for part in parts)
        axes.append((end - start, jump, start))
    return axes[0], axes[1]


def _nchw_layout(shape: tuple[int, ...]) -> _Layout:
    return (*((("x", n),) for n in shape[:-2]), (("h", shape[-2]),), (("w", shape[-1]),))


def _align(layout: _Layout | None, shape: tuple[int, ...]) -> _Layout | None:
    """The layout of an op's output of `shape` that keeps the input's grid where it was (element-wise ops, channel
    slices, linear layers over channels, unbinding a leading dim); None where the grid did not stay."""
    if layout is None or _fits(layout, shape):
        return layout
    if len(layout) == len(shape):
        dims = []
        for atoms, n in zip(layout, shape):
            if _dim_size(atoms) == n:
                dims.append(atoms)
            elif all(label == "x" for label, _ in atoms):
                dims.append((("x", n),))
            else:
                return None
        return tuple(dims)
    extra = len(layout) - len(shape)
    if extra > 0:
        for kept in (layout[extra:], layout[:-extra]):
            dropped = layout[:extra] if kept is layout[extra:] else layout[-extra:]
            if all(label == "x" for atoms in dropped for label, _ in atoms):
                aligned = _align(kept, shape)
                if aligned is not None:
                    return aligned
        return None
    return _align(tuple((("x", n),) for n in shape[:-extra]) + layout, shape)


def _dims(value: int | tuple[int, ...] | list[int], ndim: int) -> list[int]:
    values = value if isinstance(value, (tuple, list)) else [value]
    return [int(v) % ndim for v in values]


class _Tracer(TorchFunctionMode):
    """Follows the field and the place of the grid through every torch function call on tensors from the input."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.states: dict[int, _State | str] = {}
        self._alive: list[torch.Tensor] = []  # keep traced tensors alive so their ids stay unique
        height, width = image.shape[-2:]
        self.input_size = (height, width)
        self.set(image, _State(((1, 1, 0), (1, 1, 0)), _nchw_layout(tuple(image.shape))))

    def set(self, tensor: torch.Tensor, state: _State | str) -> None:
        self.states[id(tensor)] = state
        self._alive.append(tensor)

    def get(self, tensor: torch.Tensor) -> _State | str | None:
        return self.states.get(id(tensor))

    def __torch_function__(self, func: Callable[..., Any], types: Collection[type], args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        name = getattr(func, "__name__", "").strip("_")
        outputs = list(tensors_in(output))
        if not outputs or name in NOT_TRACED:
            return output
        inputs = [t for t in tensors_in((args, kwargs)) if self.get(t) is not None]
        if not inputs:
            return output
        states = [state for state in (self.get(t) for t in inputs) if isinstance(state, _State)]
        if len(states) < len(inputs):  # an input the tracer could not follow (UNKNOWN)
            new: list[_State | str] = [UNKNOWN] * len(outputs)
        else:
            try:
                new = self._follow(name, args, kwargs, inputs, states, outputs)
            except Exception:  # noqa: BLE001 - an op called in a way the rules below do not expect: measure instead
                new = [UNKNOWN] * len(outputs)
        for tensor, state in zip(outputs, new):
            self.set(tensor, state)
        return output

    def _follow(self, name: str, args: tuple, kwargs: dict, inputs: list[torch.Tensor], states: list[_State],
                outputs: list[torch.Tensor]) -> list[_State | str]:
        source, state, out = inputs[0], states[0], outputs[0]
        layout = state.layout
        shape = tuple(out.shape)
        every = len(outputs)
        grid_last = layout is not None and source.dim() >= 3 and _full_dims(layout) == (source.dim() - 2, source.dim() - 1)
        if name in WINDOW_OPS or name == "pad" or name.startswith("adaptive_"):
            if name.startswith("adaptive_") and "pool2d" not in name:
                return [UNKNOWN] * every
            if name == "pad":
                return [self._pad(args, kwargs, state, source, shape)] * every
            if not grid_last:
                return [UNKNOWN] * every
            return [_State(self._windowed(name, args, kwargs, state.axes, source, out), _nchw_layout(shape))] * every
        if name in UPSAMPLINGS and grid_last:
            # neighbouring units share a unit's field (2i and 2i + 1 after a 2× nearest upsampling): no single form;
            # every unit still sees only what the grid before saw, so the hull stays
            counts = source.shape[-2:]
            rows, cols = (f if n == m else (f[0] + (n - 1) * (f[1] or 0), None, f[2])
                          for f, n, m in zip(state.axes, counts, shape[-2:]))
            return [_State((rows, cols), _nchw_layout(shape))] * every
        if name in SPATIAL_UNKNOWN:
            return [UNKNOWN] * every
        if name in ("permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis"):
            if layout is None:
                return [_State(state.axes, None)] * every
            order = self._order(name, args, kwargs, source.dim())
            return [_State(state.axes, tuple(layout[d] for d in order))] * every
        if name in RESHAPES:
            return [_State(state.axes, None if layout is None else _reshape(layout, shape))] * every
        if name == "getitem":
            return [self._index(args[1], state, source, shape)] * every
        if name in ("cat", "concat", "concatenate", "stack"):
            return [self._concatenate(name, args, kwargs, shape)] * every
        if name == "roll":
            if layout is None:
                return [UNKNOWN] * every
            shifted = _dims(_arg(args, kwargs, 2, "dims", None), source.dim())
            labels = {label[0] for d in shifted for label, _ in layout[d]}
            extents = {label[0]: n for atoms in layout for label, n in atoms if label[0] in "hw" and "/" not in label}
            rows, cols = ((f[0] + (extents.get(a, 1) - 1) * f[1], None, f[2]) if a in labels and f[1] else f
                          for a, f in zip("hw", state.axes))
            return [_State((rows, cols), layout)] * every  # a cyclic shift: units at the border see the far side
        if name in REDUCTIONS:
            dims_arg = _arg(args, kwargs, 1, "dim", None)
            dims = list(range(source.dim())) if dims_arg is None else _dims(dims_arg, source.dim())
            keepdim = bool(_arg(args, kwargs, 2, "keepdim", False))
            if layout is None:
                out_layout = None
            elif keepdim:
                out_layout = tuple((((atoms[0][0] if len(atoms) == 1 and atoms[0][0] in ("h", "w") else "x"), 1),)
                                   if d in dims else atoms for d, atoms in enumerate(layout))
            else:
                out_layout = tuple(atoms for d, atoms in enumerate(layout) if d not in dims)
            mixed = _mix(state, dims, out_layout, self.input_size)
            return [_State(mixed.axes, _align(mixed.layout, tuple(t.shape))) for t in outputs]
        if name in ("softmax", "log_softmax"):
            return [_mix(state, _dims(_arg(args, kwargs, 1, "dim", -1), source.dim()), layout, self.input_size)] * every
        if name == "linear":
            out_layout = None if layout is None else layout[:-1] + ((("x", shape[-1]),),)
            return [_mix(state, [source.dim() - 1], out_layout, self.input_size)] * every
        if name in ("matmul", "bmm", "mm", "scaled_dot_product_attention"):
            return [self._product(name, args, kwargs, shape)] * every
        if name in ("einsum", "bilinear", "conv1d", "conv3d"):
            return [UNKNOWN] * every
        return [self._elementwise(inputs, states, out) for out in outputs]

    @staticmethod
    def _order(name: str, args: tuple, kwargs: dict, ndim: int) -> list[int]:
        if name == "permute":
            dims = args[1:] if len(args) > 2 or not isinstance(_arg(args, kwargs, 1, "dims", None), (tuple, list)) else args[1]
            dims = kwargs.get("dims", dims)
            return _dims(list(dims), ndim)
        if name in ("movedim", "moveaxis"):
            sources = _dims(_arg(args, kwargs, 1, "source", None), ndim)
            targets = _dims(_arg(args, kwargs, 2, "destination", None), ndim)
            rest = iter(d for d in range(ndim) if d not in sources)
            placed = dict(zip(targets, sources))
            return [placed[d] if d in placed else next(rest) for d in range(ndim)]
        a, b = _dims([_arg(args, kwargs, 1, "dim0", None), _arg(args, kwargs, 2, "dim1", None)], ndim)
        order = list(range(ndim))
        order[a], order[b] = b, a
        return order

    def _windowed(self, name: str, args: tuple, kwargs: dict, axes: _Axes, source: torch.Tensor, out: torch.Tensor) -> _Axes:
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
            return _window(axes, kernel, stride, before, dilation)
        if name.startswith("adaptive_"):
            axes_out: list[_Axis] = []
            for field, n_in, n_out in zip(axes, source.shape[-2:], out.shape[-2:]):
                size, jump, start = field
                if jump is None or n_in == n_out:
                    axes_out.append(field if n_out > 1 or jump is not None else (size, 0, start))
                    continue
                step = n_in // n_out
                window = n_in - (n_out - 1) * step
                axes_out.append((size + (window - 1) * jump, jump * step if n_out > 1 else 0, start))
            return axes_out[0], axes_out[1]
        if name == "lp_pool2d":
            kernel = _pair(args[2])
            return _window(axes, kernel, _pair(_arg(args, kwargs, 3, "stride", None) or kernel), (0, 0))
        kernel = _pair(_arg(args, kwargs, 1, "kernel_size", 1))
        stride = _pair(_arg(args, kwargs, 2, "stride", None) or kernel)
        before = _pair(_arg(args, kwargs, 3, "padding", 0))
        dilation = _pair(_arg(args, kwargs, 4, "dilation", 1)) if name.startswith("max") else (1, 1)
        return _window(axes, kernel, stride, before, dilation)

    @staticmethod
    def _pad(args: tuple, kwargs: dict, state: _State, source: torch.Tensor, shape: tuple[int, ...]) -> _State | str:
        pads = list(_arg(args, kwargs, 1, "pad", ()))
        if state.layout is None:
            return UNKNOWN
        axes = list(state.axes)
        layout = list(state.layout)
        for k in range(len(pads) // 2):
            d = source.dim() - 1 - k
            before = pads[2 * k]
            atoms = layout[d]
            if all(label == "x" for label, _ in atoms):
                layout[d] = (("x", shape[d]),)
            elif len(atoms) == 1 and atoms[0][0] in ("h", "w"):
                axis = _axis_of(atoms[0][0])
                size, jump, start = axes[axis]
                if jump is not None:
                    axes[axis] = (size, jump, start - before * jump)
                layout[d] = ((atoms[0][0], shape[d]),)
            elif pads[2 * k] or pads[2 * k + 1]:
                return UNKNOWN
        return _State((axes[0], axes[1]), tuple(layout))

    @staticmethod
    def _index(index: object, state: _State, source: torch.Tensor, shape: tuple[int, ...]) -> _State | str:
        layout = state.layout
        if layout is None:
            return _State(state.axes, None)
        items = list(index) if isinstance(index, tuple) else [index]
        if any(not isinstance(item, (int, slice, type(None), type(Ellipsis))) or isinstance(item, bool) for item in items):
            return UNKNOWN
        if Ellipsis in items:
            at = items.index(Ellipsis)
            fill = source.dim() - sum(1 for item in items if item is not None and item is not Ellipsis)
            items[at:at + 1] = [slice(None)] * fill
        items += [slice(None)] * (source.dim() - sum(1 for item in items if item is not None))
        axes = list(state.axes)
        dims: list[tuple[_Atom, ...]] = []
        d = 0
        for item in items:
            if item is None:
                dims.append((("x", 1),))
                continue
            atoms, n = layout[d], source.shape[d]
            d += 1
            whole = len(atoms) == 1 and atoms[0][0] in ("h", "w")
            plain = all(label == "x" for label, _ in atoms)
            if isinstance(item, int):
                if plain:
                    continue
                if whole:
                    axis = _axis_of(atoms[0][0])
                    size, jump, start = axes[axis]
                    if jump is not None:
                        axes[axis] = (size, 0, start + (item % n) * jump)
                    continue
                if atoms[0][0] == "pre" and item % n < atoms[0][1]:
                    continue  # a class token
                return UNKNOWN
            if item == slice(None):
                dims.append(atoms)
                continue
            assert isinstance(item, slice)  # ints, None and Ellipsis are handled above
            first, _stop, step = item.indices(n)
            if plain:
                dims.append((("x", len(range(*item.indices(n)))),))
            elif whole:
                axis = _axis_of(atoms[0][0])
                size, jump, start = axes[axis]
                if jump is not None:
                    axes[axis] = (size, jump * step, start + first * jump)
                dims.append(((atoms[0][0], len(range(*item.indices(n)))),))
            elif atoms[0][0] == "pre" and first == atoms[0][1] and step == 1 and _stop == n:
                dims.append(atoms[1:])
            else:
                return UNKNOWN
        return _State((axes[0], axes[1]), _align(tuple(dims), shape))

    def _concatenate(self, name: str, args: tuple, kwargs: dict, shape: tuple[int, ...]) -> _State | str:
        tensors = list(_arg(args, kwargs, 0, "tensors", ()))
        dim = int(_arg(args, kwargs, 1, "dim", 0)) % len(shape)
        found = [(k, t, self.get(t)) for k, t in enumerate(tensors) if self.get(t) is not None]
        if any(state == UNKNOWN for _, _, state in found):
            return UNKNOWN
        traced = [(k, t, state) for k, t, state in found if isinstance(state, _State)]  # all of them: UNKNOWN is the only str
        axes = _union([state.axes for _, _, state in traced])
        layout = traced[0][2].layout
        if layout is None:
            return _State(axes, None)
        if name == "stack":
            return _State(axes, _align(layout[:dim] + ((("x", len(tensors)),),) + layout[dim:], shape))
        atoms = layout[dim]
        if all(label == "x" for label, _ in atoms):
            return _State(axes, _align(layout[:dim] + ((("x", shape[dim]),),) + layout[dim + 1:], shape))
        if len(traced) == 1 and traced[0][0] == len(tensors) - 1:  # tokens after a class token
            before = sum(t.shape[dim] for t in tensors[:-1])
            return _State(axes, _align(layout[:dim] + ((("pre", before), *atoms),) + layout[dim + 1:], shape))
        return UNKNOWN

    def _product(self, name: str, args: tuple, kwargs: dict, shape: tuple[int, ...]) -> _State | str:
        if name == "scaled_dot_product_attention":
            query, key, value = (args + (None, None, None))[:3]
        else:
            query, key, value = args[0], args[1], None
        parts = [(t, self.get(t)) for t in (query, key, value)]
        layouts = [s.layout if isinstance(s, _State) else None for _, s in parts]
        ndim = len(shape)
        if name == "scaled_dot_product_attention":
            base = layouts[0]
            out_layout = None if base is None or layouts[2] is None else base[:-1] + (layouts[2][-1],)
            contracted = [None, key.dim() - 2, value.dim() - 2]
        else:
            a, b = layouts[0], layouts[1]
            if a is not None and b is not None and query.dim() == key.dim() == ndim:
                out_layout = a[:-1] + (b[-1],)
            elif a is not None and query.dim() == ndim:
                out_layout = a[:-1] + ((("x", shape[-1]),),)
            elif b is not None and key.dim() == ndim:
                out_layout = b[:-2] + ((("x", shape[-2]),),) + (b[-1],)
            else:
                out_layout = None
            contracted = [query.dim() - 1, key.dim() - 2 if key.dim() > 1 else 0, None]
        fields = []
        for (_tensor, state), dim in zip(parts, contracted):
            if not isinstance(state, _State):
                continue
            fields.append(state.axes if dim is None else _mix(state, [dim], out_layout, self.input_size).axes)
        return _State(_union(fields), _align(out_layout, shape))

    @staticmethod
    def _elementwise(inputs: list[torch.Tensor], states: list[_State], out: torch.Tensor) -> _State:
        """Element-wise ops, norms, activations, channel slices: the union of the inputs' fields, leaving out an
        input broadcast over the grid (an SE or attention gate scales the map; it does not widen the field)."""
        shape = tuple(out.shape)
        layout = next((s.layout for s in states if _fits(s.layout, shape)), None)
        if layout is None:
            layout = _align(states[0].layout, shape)
        grid_dims = [d for d, atoms in enumerate(layout or ()) if any(label != "x" and label != "pre" and n > 1 for label, n in atoms)]
        spread = []
        for tensor, state in zip(inputs, states):
            aligned = (1,) * (len(shape) - tensor.dim()) + tuple(tensor.shape)
            if len(aligned) == len(shape) and all(aligned[d] == shape[d] for d in grid_dims):
                spread.append(state)
        return _State(_union([s.axes for s in (spread or states)]), layout)


def receptive_fields(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224),
                     layers: Sequence[str] | None = None) -> dict[str, ReceptiveField | None]:
    """The receptive field of every module call whose output is a map: [N, C, H, W], channels-last [N, H, W, C]
    or tokens [N, (class tokens +) H·W, D]; by layer name (as `Inspector.layers` names them: `name`, or `name#k`
    for the k-th call of a module used several times), for an input of `input_shape`. Unit (row, col) is the
    position on the map's H × W grid.

    The model runs once on zeros in eval mode under `torch.inference_mode()`; its flags are restored and its
    hooks removed afterwards. Layers the tracer cannot follow (a pixel unshuffle on the way) are
    measured by gradient support (`gradient_receptive_field`, on one copy of the model; a forward and backward
    pass of 12 images per such layer; only the `layers` asked for, when given). None where the field has no
    single size, jump and start: after a 2× upsampling neighbouring units share one field; inside Swin's
    shifted-window attention the units of a window share the window's.
    """
    device = next((t.device for t in [*model.parameters(), *model.buffers()]), torch.device("cpu"))
    image = torch.zeros(input_shape, device=device)
    names = {module: name for name, module in model.named_modules() if name}
    seen: list[tuple[nn.Module, int, _State | str | None, int]] = []
    calls: dict[nn.Module, int] = {}

    def hook(module: nn.Module, _inputs: tuple, output: object) -> None:
        call = calls.get(module, 0)
        calls[module] = call + 1
        if isinstance(output, torch.Tensor):
            seen.append((module, call, tracer.get(output), output.dim()))

    tracer = _Tracer(image)
    with eval_mode(model), torch.inference_mode(), forward_hooks([(m, hook) for m in names]):
        with tracer:
            model(image)
    wanted = None if layers is None else set(layers)
    fields: dict[str, ReceptiveField | None] = {}
    twin = None  # the positive copy, made once if some layer needs measuring
    for module, call, state, ndim in seen:
        name = names[module] if calls[module] == 1 else f"{names[module]}#{call + 1}"
        if wanted is not None and name not in wanted:
            continue
        kind = _map_kind(state, ndim)
        if kind is None:
            continue
        if kind == "measure":
            twin = twin or _positive_copy(model)
            fields[name] = _measured_field(twin, dict(twin.named_modules())[names[module]], call, tuple(input_shape))
        elif kind == "traced":
            assert isinstance(state, _State)  # _map_kind traces states only
            fields[name] = _field(state, tracer.input_size)
        else:
            fields[name] = None
    return fields


def _map_kind(state: object, ndim: int) -> str | None:
    """How to get the field of a module output: "traced", "measure", "none" (it has no single one), or None
    where the output is not a map (a vector of class scores)."""
    if not isinstance(state, _State):
        return "measure" if ndim == 4 else None
    if state.layout is None:
        shared = all(axis[1] == 0 for axis in state.axes)
        return ("traced" if shared else "none") if ndim == 4 else None
    labels = [label for label, n in _spatial_atoms(state.layout)]
    if _is_map(state.layout) or (not labels and ndim == 4):
        return "traced" if all(axis[1] is not None for axis in state.axes) else "none"
    return "none" if ndim == 4 else None  # windows, patches, channels flattened with the grid: not a map


def _is_map(layout: _Layout) -> bool:
    """Whether the grid lies in the tensor as a map: its rows and columns each a dim of their own, or together one
    dim of tokens (after any class tokens), not mixed with channels nor cut into windows."""
    dims = [atoms for atoms in layout if any(label != "x" for label, _ in atoms)]
    labels = [[label for label, _ in atoms] for atoms in dims]
    return sorted(labels) == [["h"], ["w"]] or labels in ([["h", "w"]], [["pre", "h", "w"]])


def _field(state: _State, input_size: tuple[int, int]) -> ReceptiveField:
    """The field of a state `_map_kind` calls "traced": both axes have one form (a jump)."""
    (row_size, row_jump, row_start), (col_size, col_jump, col_start) = state.axes
    assert row_jump is not None and col_jump is not None
    return ReceptiveField(size=(int(row_size), int(col_size)), jump=(int(row_jump), int(col_jump)), start=(row_start, col_start),
                          input_size=input_size)


def receptive_field(model: nn.Module, layer: str, input_shape: tuple[int, ...] = (1, 3, 224, 224)) -> ReceptiveField:
    """The receptive field of one layer (see `receptive_fields`); an InputError where it has none."""
    fields = receptive_fields(model, input_shape)
    if layer not in fields:
        raise LayerNotFoundError(layer, fields)
    field = fields[layer]
    if field is None:
        earlier = [name for name, f in list(fields.items())[:list(fields).index(layer)] if f is not None]
        hint = f", e.g. {earlier[-1]!r}" if earlier else ""
        raise InputError(f"the units of layer {layer!r} have no single receptive field (size, stride and offset), so it "
                         f"cannot be shown as one; pick another layer{hint}, or measure one unit with gradient_receptive_field")
    return field


# --- measured receptive fields: the support of a unit's input gradient --------------------------------------------

Box = tuple[int, int, int, int]  # (top, left, bottom, right) in input pixels, bottom/right exclusive


ACTIVATIONS = frozenset({"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "hardswish", "hardsigmoid", "silu", "gelu",
                         "sigmoid", "sigmoid_", "tanh", "elu", "elu_", "leaky_relu", "leaky_relu_", "mish", "softplus",
                         "selu", "celu", "prelu", "threshold", "quick_gelu"})
NORMS = frozenset({"layer_norm", "batch_norm", "group_norm", "instance_norm", "rms_norm", "local_response_norm",
                   "softmax"})
GATED = frozenset({"mul", "mul_", "div", "div_", "add", "add_", "sub", "sub_"})


class _Wiring(TorchFunctionMode):
    """What the measured field runs under, so that a unit's gradient reaches every pixel it is wired to:
    activations and norms are the identity (a ReLU6 saturated at 6 after residual adds, a dead ReLU, hardswish
    below −3 or a sigmoid at its tails would stop the gradient, as would attention's softmax once one score
    dominates; norms over equal channels would cancel it); max
    pools sum their windows (a max sends its gradient to one pixel of the window only); and a gate, an operand that
    depends on the input and is broadcast over two or more dims of the output (SE and ECA gates [N, C, 1, 1]), is
    held constant, by the same rule as the tracer: a gate scales the map, it does not widen the field."""

    def __torch_function__(self, func: Callable[..., Any], types: Collection[type], args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "").strip("_")
        if name in ACTIVATIONS or name in NORMS:
            return args[0]
        if name in GATED and len(args) == 2 and all(isinstance(a, torch.Tensor) for a in args):
            shape = torch.broadcast_shapes(args[0].shape, args[1].shape)
            args = tuple(_held(a, shape, name) for a in args)
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


def _held(operand: torch.Tensor, shape: torch.Size, name: str) -> torch.Tensor:
    """A gate operand replaced by the neutral value of the op (1 for a product, 0 for a sum); others as they are."""
    if not operand.requires_grad:
        return operand
    aligned = (1,) * (len(shape) - operand.dim()) + tuple(operand.shape)
    if sum(1 for n, m in zip(aligned, shape) if n == 1 and m > 1) < 2:
        return operand
    neutral = 1.0 if name.startswith(("mul", "div")) else 0.0
    return torch.full(aligned[-operand.dim():] if operand.dim() else (), neutral, dtype=operand.dtype, device=operand.device)


def _as_map(output: torch.Tensor, state: object) -> torch.Tensor | None:
    """The [N, C, H, W] view of a layer's output, its grid where the tracer found it (channels-last maps,
    tokens after class tokens); a 4-D output the tracer could not follow is taken as [N, C, H, W]."""
    layout = state.layout if isinstance(state, _State) else None
    if layout is None:
        return output if output.dim() == 4 else None
    where = {label: d for d, atoms in enumerate(layout) for label, _ in atoms if label in ("h", "w")}
    if set(where) != {"h", "w"}:
        return output if output.dim() == 4 and not _spatial_atoms(layout) else None
    rows, cols = where["h"], where["w"]
    if rows == cols:
        atoms = layout[rows]
        pre = sum(n for label, n in atoms if label == "pre")
        if [label for label, _ in atoms if label != "pre"] != ["h", "w"]:
            return None
        height, width = (n for label, n in atoms if label != "pre")
        output = output.narrow(rows, pre, height * width).unflatten(rows, (height, width))
        cols = rows + 1
    elif len(layout[rows]) != 1 or len(layout[cols]) != 1 or 0 in (rows, cols):
        return None
    output = output.movedim((rows, cols), (-2, -1))
    return output.reshape(output.shape[0], -1, *output.shape[-2:])


def rescale_gradients(_module: nn.Module, _inputs: tuple, output: object) -> None:
    """A forward hook for the positive copy's measured fields: keeps gradients near 1 through deep stacks (each layer
    divides them by its fan-in); which pixels have a gradient (the support) is unchanged."""
    if isinstance(output, torch.Tensor) and output.requires_grad:
        output.register_hook(lambda grad: grad / grad.abs().amax().clamp_min(1e-30))


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
            setattr(module, "inplace", False)  # noqa: B010 - a plain flag; nn.Module's __setattr__ is typed for tensors and modules
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

    hooks = [(m, rescale_gradients) for m in twin.modules() if m is not twin and m is not module] + [(module, capture)]
    tracer = _Tracer(image)
    with torch.inference_mode(False), torch.enable_grad(), forward_hooks(hooks), tracer, _Wiring():
        try:
            twin(image)
        except StopForward:
            pass
    output = _as_map(captured[0], tracer.get(captured[0])) if captured and isinstance(captured[0], torch.Tensor) else None
    if output is None:
        raise InputError("this layer's output is not a map on the input's grid (or the layer did not run): it has no "
                         "receptive field to measure; pick a layer with [N, C, H, W], [N, H, W, C] or token outputs")
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

    measured, (rows, cols) = _gradient_boxes(twin, module, call, choose, 12, input_shape)
    boxes = [box for box in measured if box is not None]
    if len(boxes) < len(measured):
        return None
    units, split = choose(rows, cols), len(picks(rows))
    height, width = input_shape[-2:]
    row_fit = _fit_axis([r for r, _ in units[:split]], [(b[0], b[2]) for b in boxes[:split]], rows, height)
    col_fit = _fit_axis([c for _, c in units[split:]], [(b[1], b[3]) for b in boxes[split:]], cols, width)
    if row_fit is None or col_fit is None:
        return None
    return ReceptiveField(size=(row_fit[0], col_fit[0]), jump=(row_fit[1], col_fit[1]), start=(row_fit[2], col_fit[2]),
                          input_size=(height, width))
