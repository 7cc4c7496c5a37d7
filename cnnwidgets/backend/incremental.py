"""Incremental inference for occlusion (Nakandala et al., SIGMOD 2019): an occluder changes only a patch of the
input, so each layer is recomputed only inside that patch's region of influence and the unoccluded activations
are reused everywhere else.

The model is traced once per input shape with `torch.fx` (`make_fx` + `functionalize`, so the graph holds plain
aten ops with every padding and shape made concrete, TF-"same" padding included). The traced graph reads the
user's parameters (the very tensors, read only) and never touches the model itself.

One unoccluded pass stores every node's activation. An occluded batch then flows through the graph as *patches*:
per position a box (same size for the whole batch, shifted inward at the borders) and the recomputed values inside
it. Convolutions and pools grow the box by their exact halo and recompute only the crop that reads it; pads shift
it; pointwise ops and batch norm work on the patch alone, and so do layer norms and linear layers over the channels
of maps permuted to [N,H,W,C] (ConvNeXt's: timm convnext_nano's saving went from 0.004 to 0.15 of a forward's
convolution work at 224 px, its positions ran 1.2× faster than batched forwards; see `Permuted`); residual adds take
the union of their operands' boxes.
Anything else (global pooling, the classifier head, unknown ops) gets the full occluded activation map rebuilt and
runs as an ordinary batched op, as does every op once a box covers its whole map. Every map, patch and weight is
kept in channels-last layout, which the CPU's convolution kernels compute faster: Lite0's patch convolutions at
16 positions took 40 % less time than in the usual layout (converting each crop instead cost more than it saved),
and a batch of 16 Lite0 positions 21 % less CPU time in all (2-core CPU, 2026-11-30). Batch norms that follow a
convolution are folded into its weights, in patches and in batched convolutions alike. The result equals a full
forward pass up to float rounding; `IncrementalEngine.verify` checks that on real positions before the engine is used.
Two passes over new memory are saved where nothing else reads a map: pointwise ops write into their input (a ReLU6
after a convolution, the sum of a residual add; `_in_place_variants`), and a zero pad the same on both sides is left
to the convolution after it (`_absorbed_pads`). On this memory-bound CPU they took Lite0's 625 positions from 3.1 to
2.7 s (A/B in one process, 2026-12-01).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .cache import Memo
from .hooks import eval_mode

aten = torch.ops.aten

VIEW_OPS = {aten.view.default, aten.view_copy.default, aten.reshape.default, aten._unsafe_view.default,
            aten.expand.default, aten.expand_copy.default}
RESHAPE_OPS = {aten.view.default, aten.view_copy.default, aten.reshape.default, aten._unsafe_view.default}
PERMUTE_OPS = {aten.permute.default, aten.permute_copy.default}
BATCH_NORM_OPS = {aten.native_batch_norm.default, aten._native_batch_norm_legit_no_training.default}
CHANNELS_LAST = torch.channels_last
"""The layout of the batched convolutions once a region covers its map: CPU convolution kernels run it faster."""
DENSE_FRACTION = 0.9
"""A box covering more than this fraction of its map is computed as the full map (no cropping overhead)."""
FRESH_OPS = {aten.convolution.default, aten.addmm.default, aten.mm.default, aten.native_layer_norm.default,
             aten.max_pool2d_with_indices.default, aten.avg_pool2d.default}
"""Ops whose output the engine always computes into a new tensor, in patches and in full (pointwise ops too)."""
PASS_THROUGH_OPS = VIEW_OPS | PERMUTE_OPS | BATCH_NORM_OPS | {operator.getitem, aten.constant_pad_nd.default}
"""Ops whose output may share its tensor with their first input's (a folded batch norm or a shifted pad passes the
patch on as it is; views)."""


class UnsupportedModel(Exception):
    """The model cannot be traced or its incremental result differs from a full forward; use full forwards.
    `raised`: an exception from running the model or the engine caused it (worth one more try, see `engine_for`)."""

    def __init__(self, message: str, raised: bool = False) -> None:
        super().__init__(message)
        self.raised = raised


@dataclass
class Patch:
    """A batch of occluded activations: the unoccluded `full` map [1,C,H,W] with, per position b, the box
    rows y0[b]:y0[b]+h, columns x0[b]:x0[b]+w replaced by data[b] ([B,C,h,w])."""

    full: torch.Tensor
    y0: np.ndarray
    x0: np.ndarray
    data: torch.Tensor

    @property
    def h(self) -> int:
        return self.data.shape[-2]

    @property
    def w(self) -> int:
        return self.data.shape[-1]

    @property
    def batch(self) -> int:
        return self.data.shape[0]


@dataclass
class Dense:
    """A batch of full occluded values [B, ...]."""

    value: torch.Tensor


@dataclass
class Const:
    """A value that does not depend on the input (parameters, shapes, scalars)."""

    value: Any


@dataclass
class Permuted:
    """A patch of a map held in [N,H,W,C] order (after permute(0,2,3,1), as ConvNeXt's layer norms and linear layers
    run), or with `rows`, flattened to the [N*H*W, C] rows a linear layer's matrix product reads. `patch` holds the
    same values as an [N,C,H,W] Patch. Every op on it is position-local (a layer norm or a linear layer over the
    channels, a pointwise op), like a 1×1 convolution, so the changed box stays the same."""

    patch: Patch
    rows: bool = False

    def value(self) -> torch.Tensor:
        """The patch's data in this state's own order: [B,h,w,C], or [B*h*w, C] rows."""
        data = self.patch.data.permute(0, 2, 3, 1)
        return data.reshape(-1, data.shape[-1]) if self.rows else data

    def dense(self) -> torch.Tensor:
        """The full occluded values in this state's own order: [B,H,W,C], or [B*H*W, C] rows."""
        data = densify(self.patch).permute(0, 2, 3, 1)
        return data.reshape(-1, data.shape[-1]) if self.rows else data

    def like(self, full: torch.Tensor, value: torch.Tensor, rows: bool) -> Permuted:
        """The state of a position-local op's output: its unoccluded `full` value and the patch's `value`, both in
        the order `rows` says, on this state's boxes."""
        batch, h, w = self.patch.batch, self.patch.h, self.patch.w
        height, width = self.patch.full.shape[-2:]
        full_map = full.reshape(1, height, width, -1).permute(0, 3, 1, 2)
        data = value.reshape(batch, h, w, -1).permute(0, 3, 1, 2)
        return Permuted(Patch(full_map, self.patch.y0, self.patch.x0, data), rows)


@dataclass
class Unpadded:
    """A batch of full occluded maps whose zero padding the convolution that reads them adds itself: a padded copy
    costs a pass over new memory (see `_absorbed_pads`)."""

    value: torch.Tensor
    padding: tuple[int, int]


class Many(tuple):
    """The states of a multi-output op (batch norm, max pool with indices); None where not computed."""


def _ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return -((-a) // b)


def _within(values: np.ndarray, size: int) -> np.ndarray:
    """`values` clipped to [0, size] (np.clip's Python wrapper cost a single position ~1 ms over Lite0's layers)."""
    return np.minimum(np.maximum(values, 0), size)


def _unify(start: np.ndarray, stop: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """One length for every position's [start, stop) range (the longest, at least 1), shifted inward to fit [0, size)."""
    length = int(max(1, (stop - start).max()))
    length = min(length, size)
    return np.maximum(np.minimum(start, size - length), 0), length


def _repeated(window: torch.Tensor, batch: int) -> torch.Tensor:
    """[batch,C,h,w] copies of a [1,C,h,w] window, channels-last (the layout every patch is kept in)."""
    out = torch.empty((batch, *window.shape[1:]), dtype=window.dtype, device=window.device, memory_format=CHANNELS_LAST)
    return out.copy_(window.expand_as(out))


def _grid_rows(ys: np.ndarray, xs: np.ndarray, h: int, w: int, width: int) -> np.ndarray:
    """[B, h, w] row numbers, in a [H·W, C] view of a map `width` wide, of each position's h×w window at (ys[b],
    xs[b]) (int64, computed in NumPy: a PyTorch op on arrays this small costs several µs more)."""
    return (ys[:, None] + np.arange(h))[:, :, None] * width + (xs[:, None] + np.arange(w))[:, None, :]


def _pixels(maps: torch.Tensor) -> torch.Tensor:
    """[N·H·W, C]: the pixels of [N,C,H,W] maps as rows, a view of channels-last maps (a copy of others)."""
    return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


def _crop(source: torch.Tensor, ys: np.ndarray, xs: np.ndarray, h: int, w: int) -> torch.Tensor:
    """[B,C,h,w]: the window at (ys[b], xs[b]) of a [1,C,H,W] map, for each position (channels-last). Distinct
    windows are gathered in one `index_select` of the map's pixels: 2-3× faster than copying them one by one
    (16 windows of 5-20 px from Lite0-sized maps, 32-1,152 channels: 77-140 µs against 135-179 µs)."""
    if len(set(ys.tolist())) == 1 and len(set(xs.tolist())) == 1:
        y, x = int(ys[0]), int(xs[0])
        return _repeated(source[:, :, y:y + h, x:x + w], len(ys))
    channels, width = source.shape[1], source.shape[-1]
    rows = torch.from_numpy(_grid_rows(ys.astype(np.int64), xs.astype(np.int64), h, w, width).reshape(-1))
    return _pixels(source).index_select(0, rows).view(len(ys), h, w, channels).permute(0, 3, 1, 2)


def _paste(target: torch.Tensor, patch: Patch, dy: np.ndarray, dx: np.ndarray) -> torch.Tensor:
    """Write each position's patch into `target` [B,C,H,W] (channels-last) at offset (dy[b], dx[b]), clipped to
    target's bounds. Distinct offsets are written by one `index_copy_` into target's pixels (16 patches of 5-20 px,
    32-1,152 channels: 142-153 µs against 187-230 µs one by one). Both took Lite0's 625 positions from
    3.21-4.15 to 3.01-3.94 s (eight alternating rounds, one process; the same values, bit for bit)."""
    H, W = target.shape[-2:]
    h, w = patch.h, patch.w
    inside = (dy >= 0).all() and (dx >= 0).all() and (dy + h <= H).all() and (dx + w <= W).all()
    if inside and len(set(dy.tolist())) == 1 and len(set(dx.tolist())) == 1:
        y, x = int(dy[0]), int(dx[0])
        target[:, :, y:y + h, x:x + w] = patch.data
        return target
    dy, dx = dy.astype(np.int64), dx.astype(np.int64)
    rows = (_grid_rows(dy, dx, h, w, W) + (np.arange(len(dy)) * (H * W))[:, None, None]).reshape(-1)
    values = _pixels(patch.data)
    if not inside:  # keep the pixels that land in target
        target_rows, target_columns = dy[:, None] + np.arange(h), dx[:, None] + np.arange(w)
        kept = (((target_rows >= 0) & (target_rows < H))[:, :, None]
                & ((target_columns >= 0) & (target_columns < W))[:, None, :]).reshape(-1)
        rows, values = rows[kept], values[torch.from_numpy(kept)]
    target.permute(0, 2, 3, 1).view(-1, target.shape[1]).index_copy_(0, torch.from_numpy(rows), values)
    return target


def _window(source: torch.Tensor, patch: Patch, top: int, left: int, ys: np.ndarray, xs: np.ndarray, h: int, w: int) -> torch.Tensor:
    """[B,C,h,w] crops at (ys, xs) of `source` (the patch's full map padded by `top`/`left`) with the patch applied."""
    if patch.h == h and patch.w == w and (patch.y0 + top == ys).all() and (patch.x0 + left == xs).all():
        return patch.data  # the window is the patch (1×1 convolutions, the grown branch of a residual add)
    return _paste(_crop(source, ys, xs, h, w), patch, patch.y0 + top - ys, patch.x0 + left - xs)


def densify(patch: Patch) -> torch.Tensor:
    """The full occluded maps [B,C,H,W] of a patch."""
    full = _repeated(patch.full, patch.batch)
    return _paste(full, patch, patch.y0, patch.x0)


def _halo(start: np.ndarray, length: int, size_in: int, size_out: int, k: int, s: int, p: int, d: int):
    """Output range touched by input rows [start, start+length) of a window op, unified over positions, and the
    input rows (in coordinates padded by `p` at the start) it reads: (out_start, out_len, in_start, in_len, pad_end)."""
    extent = d * (k - 1) + 1
    first = _within(_ceil_div(start + p - extent + 1, s), size_out)
    stop = _within((start + length - 1 + p) // s + 1, size_out)
    out_start, out_len = _unify(first, np.maximum(stop, first), size_out)
    in_len = (out_len - 1) * s + extent
    pad_end = max(0, (size_out - 1) * s + extent - (size_in + p))
    return out_start, out_len, out_start * s, in_len, pad_end


def _pair(value: Any, default: Any = None) -> tuple[Any, Any]:
    """(rows, columns) of an op argument given as one number, a one- or two-element list, or nothing (`default`)."""
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return (default, default)
    if isinstance(value, int):
        return (value, value)
    value = list(value)
    return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])


class IncrementalEngine:
    """Occluded forward passes of `model` for one input shape, recomputing only what each occluder changes.

    `set_image(x)` runs the unoccluded pass for a [1,C,H,W] input; `logits(boxes, fill)` returns the class scores
    [B, classes] with, for each box (y0, x0, y1, x1), those input pixels replaced by `fill`'s ([1,C,H,W]).
    """

    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        from torch.func import functionalize
        from torch.fx.experimental.proxy_tensor import make_fx

        self.shape = tuple(example.shape)
        try:
            with eval_mode(model), torch.no_grad():
                self.graph = make_fx(functionalize(model, remove="mutations_and_views"), tracing_mode="real")(example)
        except Exception as error:  # noqa: BLE001 - any tracing failure means: use full forwards
            raise UnsupportedModel(f"cannot trace {type(model).__name__}: {str(error).splitlines()[0] if str(error) else error}",
                                   raised=True) from None
        self.graph.graph.eliminate_dead_code()  # unused outputs (batch norm statistics, pool indices)
        self.nodes = list(self.graph.graph.nodes)
        self._folded = self._fold_batch_norms()
        self._input = [n for n in self.nodes if n.op == "placeholder"]
        if len(self._input) != 1:
            raise UnsupportedModel("the traced model takes more than one input")
        self._varying = _depending_on(self.nodes, self._input[0])
        self._varying_set = set(self._varying)
        self._in_place = _in_place_variants(self._varying)
        self._absorbed_pads = _absorbed_pads(self._varying)
        self._constants: dict[torch.fx.Node, Const] = {}
        self._full: dict[torch.fx.Node, Any] = {}
        """Every node's value in the unoccluded pass: tensors (maps channels-last), tuples of them, parameters, numbers."""
        self._padded: dict[tuple, torch.Tensor] = {}
        self._channels_last_weights: dict[torch.fx.Node, torch.Tensor] = {}
        self._image_key: object = None
        self.kinds: dict[str, str] = {}
        """After `logits`: how each node was computed (Patch: incrementally, Dense: in full, Const: no input)."""
        self.work = 0
        """After `logits`: the multiply-adds its convolutions computed, for all positions."""
        self.saving = 0.0
        """After `verify`: the fraction of a full forward's convolution multiply-adds the engine saves per position."""

    def _fold_batch_norms(self) -> dict:
        """Eval-mode batch norms right after a convolution, folded into new (scaled) copies of its weight and bias:
        {conv node: (weight, bias), batch norm node: None}. The user's parameters are read, never changed."""
        folded: dict = {}
        for node in self.nodes:
            if node.op != "call_function" or node.target not in BATCH_NORM_OPS:
                continue
            conv = node.args[0]
            if not (isinstance(conv, torch.fx.Node) and conv.target is aten.convolution.default and len(conv.users) == 1
                    and not conv.args[6]):
                continue
            values = [getattr(self.graph, str(a.target)) if isinstance(a, torch.fx.Node) and a.op == "get_attr" else a for a in node.args[1:]]
            if node.target is aten.native_batch_norm.default:
                weight, bias, mean, var, training, _momentum, eps = values
            else:
                (weight, bias, mean, var, _momentum, eps), training = values, False
            conv_weight = conv.args[1]
            conv_bias = conv.args[2]
            if training or mean is None or not (isinstance(conv_weight, torch.fx.Node) and conv_weight.op == "get_attr"):
                continue
            if conv_bias is not None and not (isinstance(conv_bias, torch.fx.Node) and conv_bias.op == "get_attr"):
                continue
            with torch.no_grad():
                w = getattr(self.graph, str(conv_weight.target)).detach()
                b = getattr(self.graph, str(conv_bias.target)).detach() if conv_bias is not None else torch.zeros(w.shape[0], device=w.device)
                scale = (weight.detach() if weight is not None else 1.0) / torch.sqrt(var.detach() + eps)
                shift = bias.detach() if bias is not None else 0.0
                folded[conv] = ((w * scale.reshape(-1, 1, 1, 1)).contiguous(), (b - mean.detach()) * scale + shift)
            folded[node] = None
        return folded

    # --- the unoccluded pass ------------------------------------------------------------------------------------

    def set_image(self, x: torch.Tensor, key: object = None) -> None:
        """Run and keep the unoccluded pass for input `x` [1,C,H,W] (skipped when `key` equals the last one's)."""
        if key is not None and key == self._image_key:
            return
        if tuple(x.shape) != self.shape:
            raise ValueError(f"the engine was traced for inputs of shape {self.shape}, not {tuple(x.shape)}")
        values: dict[torch.fx.Node, Any] = {}
        with torch.inference_mode():
            for node in self.nodes:
                if node.op == "placeholder":
                    values[node] = x
                elif node.op == "get_attr":
                    values[node] = getattr(self.graph, str(node.target))
                elif node.op == "call_function":
                    args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda n: values[n])
                    values[node] = node.target(*args, **kwargs)
                elif node.op == "output":
                    values[node] = torch.fx.node.map_arg(node.args[0], lambda n: values[n])
                else:
                    raise UnsupportedModel(f"unsupported graph node {node.op}")
        self._full = {node: _channels_last_maps(value) if node in self._varying_set else value for node, value in values.items()}
        self._constants = {node: Const(value) for node, value in values.items() if node not in self._varying_set}
        self._padded = {}
        self._image_key = key

    # --- occluded batches -------------------------------------------------------------------------------------------

    def logits(self, boxes: Sequence[tuple[int, int, int, int]], fill: torch.Tensor) -> torch.Tensor:
        """Class scores [B, classes] with input box b = (y0, x0, y1, x1) replaced by `fill`'s pixels there."""
        if not self._full:
            raise RuntimeError("call set_image first")
        x = self._full[self._input[0]]
        boxes_np = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        H, W = x.shape[-2:]
        ys, h = _unify(boxes_np[:, 0], boxes_np[:, 2], H)
        xs, w = _unify(boxes_np[:, 1], boxes_np[:, 3], W)
        with torch.inference_mode():
            data = _crop(x, ys, xs, h, w)
            for b, (y0, x0, y1, x1) in enumerate(boxes_np.tolist()):
                data[b, :, y0 - ys[b]:y1 - ys[b], x0 - xs[b]:x1 - xs[b]] = fill[0, :, y0:y1, x0:x1]
            self.work = 0
            states: dict[torch.fx.Node, object] = dict(self._constants)
            states[self._input[0]] = Patch(x, ys, xs, data)
            for node in self._varying:
                if node.op == "placeholder":
                    continue
                if node.op == "output":
                    out = node.args[0]
                    out = out[0] if isinstance(out, (tuple, list)) else out
                    self.kinds = {n.name: type(s).__name__ for n, s in states.items()}
                    return self._dense(states[cast(torch.fx.Node, out)])
                states[node] = self._step(node, states)
        raise UnsupportedModel("the traced graph has no output")

    def full_work(self) -> int:
        """The multiply-adds of the convolutions of one full forward."""
        return sum(self._full[node].numel() * self._full[cast(torch.fx.Node, node.args[1])][0].numel()
                   for node in self._varying if node.target is aten.convolution.default)

    def _dense(self, state: object) -> torch.Tensor:
        if isinstance(state, Patch):
            return densify(state)
        if isinstance(state, Dense):
            return state.value
        if isinstance(state, Permuted):
            return state.dense()
        raise UnsupportedModel(f"cannot make a batch from {type(state).__name__}")

    def _step(self, node: torch.fx.Node, states: dict) -> object:
        target = node.target
        args: Any = node.args
        state = lambda a: states[a] if isinstance(a, torch.fx.Node) else Const(a)  # noqa: E731
        if target is operator.getitem:
            many = states[args[0]]
            if isinstance(many, Many):
                picked = many[args[1]]
                if picked is None:
                    raise UnsupportedModel(f"output {args[1]} of {args[0].target} is not computed incrementally")
                return picked
            raise UnsupportedModel(f"indexing the output of {args[0].target} is not supported")
        first = state(args[0]) if args else None
        if target in BATCH_NORM_OPS and node in self._folded and isinstance(first, (Patch, Dense)):
            return Many((first, None, None))  # a batch norm folded into the convolution before it (patch or batched)
        if node in self._absorbed_pads and (isinstance(first, Dense) or (isinstance(first, Patch) and self._covers(first))):
            dense = first.value if isinstance(first, Dense) else densify(first)
            return Unpadded(_as_layout(dense, CHANNELS_LAST), self._absorbed_pads[node])
        local = self._position_local(node, first, states)
        if local is not None:
            return local
        if isinstance(first, Patch) and self._covers(first):
            first = None  # fall through to the dense path below
        if isinstance(first, Patch):
            others = [state(a) for a in args[1:]]
            if target is aten.convolution.default and all(isinstance(o, Const) for o in others) and not args[6]:
                values = [o.value for o in others]
                if node in self._folded:  # the batch norm after it is folded in: its output is the batch norm's
                    bn = next(iter(node.users))
                    weight, bias = self._folded[node]
                    return self._conv(node, first, self._channels_last(node, weight), bias, *values[2:], out_full=self._full[bn][0])
                weight = self._channels_last(args[1], values[0]) if isinstance(args[1], torch.fx.Node) else values[0]
                return self._conv(node, first, weight, *values[1:])
            if target is aten.constant_pad_nd.default and all(isinstance(o, Const) for o in others):
                pad = list(others[0].value)
                if len(pad) == 4 and min(pad) >= 0:
                    return Patch(self._full[node], first.y0 + pad[2], first.x0 + pad[0], first.data)
            if target is aten.max_pool2d_with_indices.default and all(isinstance(o, Const) for o in others):
                return Many((self._pool(node, first, *(o.value for o in others)), None))
            if target is aten.avg_pool2d.default and all(isinstance(o, Const) for o in others):
                kernel, stride, padding, ceil_mode, _include_pad, divisor = ([o.value for o in others] + [[], 0, False, True, None])[:6]
                kernel = _pair(kernel)
                stride = _pair(stride) if stride else kernel
                if _pair(padding, 0) == (0, 0) and not ceil_mode and divisor is None:
                    return self._window_op(node, first, kernel, stride, (0, 0), (1, 1), 0.0,
                                           lambda crop: F.avg_pool2d(crop, kernel, stride))
            if target in BATCH_NORM_OPS and all(isinstance(o, Const) for o in others):
                values = [o.value for o in others]
                if target is aten.native_batch_norm.default:
                    weight, bias, mean, var, training, _momentum, eps = values
                else:
                    weight, bias, mean, var, _momentum, eps = values
                    training = False
                if not training and mean is not None:
                    data = F.batch_norm(first.data, mean, var, weight, bias, False, 0.0, eps)
                    return Many((Patch(self._full[node][0], first.y0, first.x0, data), None, None))
        if self._pointwise(node, states):
            return self._elementwise(node, states)
        return self._fallback(node, states)

    # --- op kinds -----------------------------------------------------------------------------------------------

    def _position_local(self, node: torch.fx.Node, first: object, states: dict) -> Patch | Permuted | Many | None:
        """The state of an op that keeps a patch's box because each output position reads only the same input
        position, on maps in [N,H,W,C] order (see `Permuted`): the permutes into and out of that order, a layer norm
        over the channels, a linear layer's flattening to rows, matrix product and unflattening, and pointwise ops
        with per-channel constants. None where the op is none of these (it then runs in full)."""
        target, args = node.target, cast(Any, node.args)
        full = self._full[node]
        const = lambda a: not isinstance(a, torch.fx.Node) or isinstance(states[a], Const)  # noqa: E731
        value = lambda a: states[a].value if isinstance(a, torch.fx.Node) else a  # noqa: E731
        if isinstance(first, Patch) and target in PERMUTE_OPS and list(args[1]) == [0, 2, 3, 1] and not self._covers(first):
            return Permuted(Patch(full.permute(0, 3, 1, 2), first.y0, first.x0, first.data))
        if isinstance(first, Permuted):
            patch, (height, width) = first.patch, first.patch.full.shape[-2:]
            channels = patch.full.shape[1]
            if not first.rows and target in PERMUTE_OPS and list(args[1]) == [0, 3, 1, 2]:
                return Patch(full, patch.y0, patch.x0, patch.data)
            if (not first.rows and target is aten.native_layer_norm.default and len(args[1]) == 1
                    and all(const(a) for a in args[2:])):
                out = target(first.value(), args[1], value(args[2]), value(args[3]), args[4])[0]
                return Many((first.like(full[0], out, rows=False), None, None))
            if target in RESHAPE_OPS:  # the engine's maps hold one image, so [1,H,W,C] <-> [H*W, C] are the only flattenings
                if not first.rows and tuple(full.shape) == (height * width, channels):
                    return Permuted(patch, rows=True)
                if first.rows and tuple(full.shape) == (1, height, width, channels):
                    return Permuted(patch, rows=False)
            if first.rows and target is aten.mm.default and const(args[1]):
                return first.like(full, torch.mm(first.value(), value(args[1])), rows=True)
        if target is aten.addmm.default and isinstance(states.get(args[1]), Permuted) and const(args[0]) and const(args[2]):
            rows = states[args[1]]
            if rows.rows:
                return rows.like(full, target(value(args[0]), rows.value(), value(args[2]), **node.kwargs), rows=True)
        permuted = [states[a] for a in node.all_input_nodes if isinstance(states[a], Permuted)]
        if permuted and _pointwise_op(target):
            one = permuted[0]
            same = all(p.rows == one.rows and (p.patch.y0 == one.patch.y0).all() and (p.patch.x0 == one.patch.x0).all()
                       and p.patch.data.shape == one.patch.data.shape for p in permuted)
            constants = [states[a].value for a in node.all_input_nodes if isinstance(states[a], Const)]
            if same and len(permuted) + len(constants) == len(node.all_input_nodes) and all(
                    not isinstance(c, torch.Tensor) or c.dim() <= 1 for c in constants):
                args_now, kwargs = torch.fx.node.map_aggregate(
                    (node.args, node.kwargs),
                    lambda a: states[a].value() if isinstance(a, torch.fx.Node) and isinstance(states[a], Permuted) else value(a))
                out = cast(Callable[..., Any], self._in_place_target(node))(*args_now, **kwargs)
                return one.like(full, out, rows=one.rows)
        return None

    def _channels_last(self, node: torch.fx.Node, weight: torch.Tensor) -> torch.Tensor:
        """A convolution weight in channels-last layout, kept, for the batched convolutions past the patches."""
        if node not in self._channels_last_weights:
            self._channels_last_weights[node] = weight.contiguous(memory_format=CHANNELS_LAST)
        return self._channels_last_weights[node]

    def _covers(self, patch: Patch) -> bool:
        H, W = patch.full.shape[-2:]
        return patch.h * patch.w > DENSE_FRACTION * H * W

    def _padded_source(self, node: torch.fx.Node, full: torch.Tensor, top: int, bottom: int, left: int, right: int, value: float) -> torch.Tensor:
        key = (node, top, bottom, left, right, value)
        if key not in self._padded:
            self._padded[key] = F.pad(full, (left, right, top, bottom), value=value) if (top or bottom or left or right) else full
        return self._padded[key]

    def _window_op(self, node, patch: Patch, kernel, stride, padding, dilation, pad_value, op, *, out_full=None) -> Patch:
        out_full = self._full[node] if out_full is None else out_full
        out_full = out_full[0] if isinstance(out_full, (tuple, list)) else out_full
        H, W = patch.full.shape[-2:]
        Ho, Wo = out_full.shape[-2:]
        oy, oh, iy, ih, pad_bottom = _halo(patch.y0, patch.h, H, Ho, kernel[0], stride[0], padding[0], dilation[0])
        ox, ow, ix, iw, pad_right = _halo(patch.x0, patch.w, W, Wo, kernel[1], stride[1], padding[1], dilation[1])
        source = self._padded_source(node.args[0], patch.full, padding[0], pad_bottom, padding[1], pad_right, pad_value)
        crop = _window(source, patch, padding[0], padding[1], iy, ix, ih, iw)
        data = op(crop)
        if tuple(data.shape[-2:]) != (oh, ow):
            raise UnsupportedModel(f"{node.target} gave a {tuple(data.shape[-2:])} crop, expected {(oh, ow)}")
        return Patch(out_full, oy, ox, data)

    def _conv(self, node, patch: Patch, weight, bias, stride, padding, dilation, transposed, output_padding, groups, *, out_full=None) -> Patch:
        if weight.dim() != 4:
            raise UnsupportedModel("only 2-d convolutions are computed incrementally")
        kernel = tuple(weight.shape[-2:])
        stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
        out = self._window_op(node, patch, kernel, stride, padding, dilation, 0.0,
                              lambda crop: F.conv2d(crop, weight, bias, stride, 0, dilation, groups), out_full=out_full)
        self.work += out.data.numel() * weight[0].numel()
        return out

    def _pool(self, node, patch: Patch, kernel, stride=(), padding=0, dilation=1, ceil_mode=False) -> Patch:
        kernel = _pair(kernel)
        stride = _pair(stride, None) if stride else kernel
        padding, dilation = _pair(padding, 0), _pair(dilation, 1)
        return self._window_op(node, patch, kernel, stride, padding, dilation, float("-inf"),
                               lambda crop: F.max_pool2d(crop, kernel, stride, 0, dilation))

    def _pointwise(self, node: torch.fx.Node, states: dict) -> bool:
        """An elementwise op whose patch inputs share one map shape and whose constants have no spatial extent."""
        if not _pointwise_op(node.target):
            return False
        full = self._full[node]
        if not isinstance(full, torch.Tensor) or full.dim() != 4:
            return False
        for arg in node.all_input_nodes:
            s = states[arg]
            if isinstance(s, Patch):
                if s.full.shape != full.shape:
                    return False
            elif isinstance(s, Const):
                value = s.value
                if isinstance(value, torch.Tensor) and value.numel() > 1 and (value.dim() < 3 or tuple(value.shape[-2:]) != (1, 1)):
                    return False
            else:
                return False
        return True

    def _elementwise(self, node: torch.fx.Node, states: dict) -> Patch:
        patches = [states[a] for a in node.all_input_nodes if isinstance(states[a], Patch)]
        H, W = patches[0].full.shape[-2:]
        if len(patches) == 1 or all(
            (p.y0 == patches[0].y0).all() and (p.x0 == patches[0].x0).all() and p.data.shape == patches[0].data.shape for p in patches
        ):
            ys, xs, h, w = patches[0].y0, patches[0].x0, patches[0].h, patches[0].w
            crops = {id(p): p.data for p in patches}
        else:
            ys, h = _unify(np.min([p.y0 for p in patches], 0), np.max([p.y0 + p.h for p in patches], 0), H)
            xs, w = _unify(np.min([p.x0 for p in patches], 0), np.max([p.x0 + p.w for p in patches], 0), W)
            crops = {id(p): _window(p.full, p, 0, 0, ys, xs, h, w) for p in patches}

        def value(a):
            if isinstance(a, torch.fx.Node):
                s = states[a]
                return crops[id(s)] if isinstance(s, Patch) else s.value
            return a

        args, kwargs = torch.fx.node.map_aggregate((node.args, node.kwargs), value)
        first = states.get(node.args[0]) if isinstance(node.args[0], torch.fx.Node) else None
        target = self._in_place_target(node) if isinstance(first, Patch) and crops.get(id(first)) is first.data else node.target
        return Patch(self._full[node], ys, xs, cast(Callable[..., Any], target)(*args, **kwargs))

    def _in_place_target(self, node: torch.fx.Node) -> Any:
        """The op to run for `node`: its in-place variant where `_in_place_variants` allows one, else the op itself."""
        return self._in_place.get(node, node.target)

    def _fallback(self, node: torch.fx.Node, states: dict) -> Dense | Many:
        layout = CHANNELS_LAST if node.target is aten.convolution.default else None

        def value(a):
            if not isinstance(a, torch.fx.Node):
                return a
            s = states[a]
            if isinstance(s, Patch):
                return _as_layout(densify(s), layout)
            if isinstance(s, Dense):
                return _as_layout(s.value, layout)
            if isinstance(s, Unpadded):  # only a convolution reads one (`_absorbed_pads`)
                return s.value
            if isinstance(s, Permuted):
                return s.dense()
            if isinstance(s, Many):
                raise UnsupportedModel(f"{node.target} uses a multi-output op directly")
            if layout is not None and isinstance(s.value, torch.Tensor) and s.value.dim() == 4:
                return self._channels_last(a, s.value)
            return s.value

        args, kwargs = cast(tuple[Any, Any], torch.fx.node.map_aggregate((node.args, node.kwargs), value))
        unpadded = states.get(node.args[0]) if node.args and isinstance(node.args[0], torch.fx.Node) else None
        if isinstance(unpadded, Unpadded):
            args = (*args[:4], list(unpadded.padding), *args[5:])
        if self._folded.get(node) is not None:  # a convolution with the batch norm after it folded in
            weight, bias = self._folded[node]
            args = (args[0], self._channels_last(node, weight), bias, *args[3:])
        if node.target in VIEW_OPS and isinstance(args[0], torch.Tensor) and isinstance(args[1], (list, tuple)):
            args = (args[0].contiguous(), *args[1:])  # a view of a channels-last map reads it in logical order
            traced = self._full[cast(torch.fx.Node, node.args[0])]
            size = list(args[1])  # the traced values hold one image: the first dimension holds `batch` times as much now
            batch = args[0].numel() // max(1, traced.numel())
            if size and size[0] > 0 and batch > 1 and args[0].numel() == batch * traced.numel():
                args = (args[0], [size[0] * batch, *size[1:]], *args[2:])
        out = cast(Callable[..., Any], self._in_place_target(node))(*args, **kwargs)
        if node.target is aten.convolution.default:
            self.work += out.numel() * args[1][0].numel()
        if isinstance(out, (tuple, list)):
            return Many(Dense(o) if isinstance(o, torch.Tensor) else Const(o) for o in out)
        return Dense(out)


def _pointwise_op(target: object) -> bool:
    """Whether `target` is an aten op tagged pointwise (elementwise: each output value reads the same position of its
    inputs)."""
    return isinstance(target, torch._ops.OpOverload) and torch.Tag.pointwise in target.tags


def _in_place_variants(varying: list[torch.fx.Node]) -> dict[torch.fx.Node, Any]:
    """{pointwise node: its in-place variant (`add_` for `add`)} where the node's first input is a tensor that nothing else
    reads: made for it alone in this pass (by a convolution, a matrix product, a pointwise op...) and passed on only
    through ops with no other reader; and where the traced result has that input's shape and dtype, so the op can write
    into it (not `add` of a [C,1,1] bias and a map, nor a comparison). Writing there saves a pass over new memory: on
    this 2-core CPU `clamp_` of a batch of 16 maps [672,14,14] took 78 µs, `hardtanh` into a new tensor 289 µs
    (2026-12-01)."""
    owned: set[torch.fx.Node] = set()
    for node in varying:
        if node.op != "call_function" or len(node.users) != 1:
            continue
        first = node.args[0] if node.args else None
        if node.target in FRESH_OPS or _pointwise_op(node.target) or (node.target in PASS_THROUGH_OPS and first in owned):
            owned.add(node)
    variants = {}
    for node in varying:
        first = node.args[0] if node.args else None
        if (_pointwise_op(node.target) and isinstance(first, torch.fx.Node) and first in owned and first not in node.args[1:]
                and _same_shape_and_dtype(node, first)):
            target = cast(torch._ops.OpOverload, node.target)
            packet = getattr(aten, target._schema.name.split("::")[1] + "_", None)
            variant = getattr(packet, target._overloadname, None)
            if variant is not None:
                variants[node] = variant
    return variants


def _same_shape_and_dtype(node: torch.fx.Node, other: torch.fx.Node) -> bool:
    """Whether the two nodes' traced values are tensors of one shape and dtype."""
    value, other_value = node.meta.get("val"), other.meta.get("val")
    return (isinstance(value, torch.Tensor) and isinstance(other_value, torch.Tensor) and value.shape == other_value.shape
            and value.dtype == other_value.dtype)


def _absorbed_pads(varying: list[torch.fx.Node]) -> dict[torch.fx.Node, tuple[int, int]]:
    """{zero pad node: (rows, columns)} for pads, the same on both sides, whose only reader is a convolution without
    padding of its own (TF-"same" padding, as EfficientNet-Lite0 has it): once the occluded maps are computed in
    full, the convolution pads them itself. On this 2-core CPU a zero pad of 16 maps [672,14,14] took 241 µs, and
    Lite0's 625 positions took 2.8 s instead of 3.2 s without the pads (A/B in one process, 2026-12-01)."""
    pads = {}
    for node in varying:
        if node.target is not aten.constant_pad_nd.default or len(node.users) != 1:
            continue
        args = cast(Any, node.args)
        pad, value = list(args[1]), args[2] if len(args) > 2 else 0.0
        reader = next(iter(node.users))
        reader_args = cast(Any, reader.args)
        if (len(pad) == 4 and min(pad) >= 0 and pad[0] == pad[1] and pad[2] == pad[3] and value == 0
                and reader.target is aten.convolution.default and reader_args[0] is node and list(reader_args[4]) == [0, 0]
                and not reader_args[6]):
            pads[node] = (pad[2], pad[0])
    return pads


def _depending_on(nodes: list[torch.fx.Node], source: torch.fx.Node) -> list[torch.fx.Node]:
    """The nodes whose value depends on `source` (with it, and the output), in graph order: the rest are the same
    for every occluder and are taken from the unoccluded pass."""
    varying = {source}
    for node in nodes:
        if node.op == "output" or any(arg in varying for arg in node.all_input_nodes):
            varying.add(node)
    return [node for node in nodes if node in varying]


def _channels_last_maps(value: object) -> object:
    """An activation (or a multi-output op's activations) with its [N,C,H,W] maps in channels-last layout."""
    if isinstance(value, torch.Tensor):
        return _as_layout(value, CHANNELS_LAST)
    if isinstance(value, (tuple, list)):
        return type(value)(_channels_last_maps(item) for item in value)
    return value


def _as_layout(value: torch.Tensor, layout) -> torch.Tensor:
    return value.contiguous(memory_format=layout) if layout is not None and value.dim() == 4 else value


# --- one engine per (input shape, weights), kept in the inspector's memo ---------------------------------------------


ENGINE_PAYS_AFTER = 100
"""Occluder positions after which tracing the engine has paid for itself. Tracing and checking it cost 5-8 batched
forwards of 4 (timm resnet50 1.4 s, convnext_nano 0.7-1.1 s; 224×224, 2-core CPU, 2026-12-01), the work of 20-30
positions, and each position then costs a quarter (convnext_nano: 25 against 34 ms) to a half (resnet50: 25 against
50 ms) less than in a batched forward of the folded copy, so the engine breaks even by about 100 positions on
convnext_nano and 45 on resnet50. Below this many positions, batched full forwards (what Captum runs) are as fast,
so occlusion runs those until this many have been asked for on the same weights."""

ENGINE_MIN_SAVING = 0.1
"""The least fraction of a forward's convolution multiply-adds the engine must save (measured by `verify` on
occluders of a seventh of the input, or bounded beforehand by `local_share`) for occlusion's method="auto" to use
it. Measured at 224 px (2026-11-30): EfficientNet-Lite0 0.28, timm resnet50 0.34, torchvision resnet18 0.39 (the
engine ran 2.7-4.7× faster than Captum there); timm efficientnet_b0 0.03 (a squeeze-excitation gate in its first
block makes every later map change): there the engine ran 0.92× Captum's time and batched forwards of the folded
copy are faster. timm convnext_nano saved 0.004 while its layer norms on permuted maps ran in full, 0.15 since they
run on patches (16 positions: 2.6 s by the engine, 3.1 s by batched forwards, one thread, load 7-9 on 2 cores)."""

GATE_OPS = frozenset({"mul", "mul_", "__mul__", "__rmul__", "__imul__", "add", "add_", "__add__", "__radd__",
                      "__iadd__", "sub", "sub_", "__sub__", "__rsub__", "__isub__", "div", "div_", "__truediv__",
                      "__rtruediv__", "__itruediv__", "addcmul", "addcmul_", "where"})
"""Elementwise torch functions through which a value per image and channel can be spread over a whole map."""


WATCHED_IMAGES = 2
"""Images in the batch `_GateWatch` watches: a value per image has this many rows, so a constant per channel
([1,C,1,1]: ConvNeXt's layer scale) is not mistaken for a gate."""


class _GateWatch(TorchFunctionMode):
    """Watches one forward pass of `WATCHED_IMAGES` images for the first map-wide gate, an elementwise op
    (`GATE_OPS`) that spreads a value per image and channel, [N,C,1,…], over a map [N,C,H,…] (squeeze-and-excitation
    and other channel attention pool the whole map into such a value), and counts the convolution multiply-adds
    before it and in all."""

    def __init__(self) -> None:
        super().__init__()
        self.before_gate = 0
        self.total = 0
        self.gated = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if func in (F.conv1d, F.conv2d, F.conv3d) and isinstance(result, torch.Tensor):
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            work = result.numel() * weight[0].numel()
            self.total += work
            self.before_gate += 0 if self.gated else work
        elif not self.gated and getattr(func, "__name__", None) in GATE_OPS:
            maps = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.dim() >= 3 and len(a) == WATCHED_IMAGES]
            spread = [m for m in maps if math.prod(m.shape[2:]) == 1]
            self.gated = bool(spread) and any(math.prod(m.shape[2:]) > 1 and m.dim() == spread[0].dim() for m in maps)
        return result


def local_share(memo: Memo, example: torch.Tensor) -> float:
    """The share of a forward's convolution multiply-adds that run before the model's first map-wide gate (see
    `_GateWatch`; 1.0 without one), on inputs shaped like `example`, kept in `memo`. Every map after such a gate
    changes wherever the occluder is, so this bounds what the engine can save per position (timm efficientnet_b0:
    0.04, its first block has one; the engine saved 0.03), and an engine below `ENGINE_MIN_SAVING` is not worth
    tracing. Costs one forward of two images, watched op by op (30-160 ms at 224 px on the timm models; VGG-11 0.4 s)."""
    def measured() -> float:
        watch = _GateWatch()
        try:
            with eval_mode(memo.model), torch.inference_mode(), watch:
                memo.model(example[:1].expand(WATCHED_IMAGES, *example.shape[1:]))
        except Exception:  # noqa: BLE001 - a model that cannot run two images: no bound, tracing and `verify` decide
            return 1.0
        return 1.0 if watch.total == 0 else watch.before_gate / watch.total

    return memo(("local share", tuple(example.shape), example.device), measured, nbytes=lambda _share: 0)


def engine_for(memo: Memo, example: torch.Tensor, positions: int | None = None) -> IncrementalEngine | None:
    """The engine for `memo.model` on inputs shaped like `example`, traced once and kept in `memo` (the Inspector's
    `inspector.memo`, one engine at a time, outside its byte budget) while the weights stay the same.

    With `positions` (the occluder positions a call is about to compute), None while tracing would not pay yet:
    the engine is built once this call's positions and those of earlier calls on the same weights reach
    ENGINE_PAYS_AFTER (a training loop that changes the weights between small calls never pays for a trace), and
    only where a map-wide gate does not come so early that the engine cannot save ENGINE_MIN_SAVING (`local_share`).
    Raises UnsupportedModel when the model cannot be traced or the engine's answer differs from a full forward.
    """
    model, shape = memo.model, (tuple(example.shape), example.device)
    kept = memo.get("incremental engine")  # (shape, the engine, the error it raised, or the positions asked so far)
    engine = kept[1] if isinstance(kept, tuple) and kept[0] == shape else None
    if engine is None or isinstance(engine, int):
        asked = (engine or 0) + (positions or 0)
        if positions is not None and (asked < ENGINE_PAYS_AFTER or local_share(memo, example) < ENGINE_MIN_SAVING):
            memo.put("incremental engine", (shape, asked), nbytes=0)
            return None
        engine = _traced_engine(model, example)
        memo.put("incremental engine", (shape, engine), nbytes=0)
    if isinstance(engine, UnsupportedModel):
        raise engine
    return engine


def _traced_engine(model: nn.Module, example: torch.Tensor) -> IncrementalEngine | UnsupportedModel:
    """A verified engine, or the reason there is none. A failure that an exception caused (while tracing the model or
    running the engine) is tried once more before it is kept: the model's own forward may have raised for a reason
    of its own, once (a flaky custom op, an injected fault), and keeping that failure would cost the model its fast
    path for as long as its weights live. A model the engine cannot handle fails both times; a result that differs
    from a full forward is kept at once."""
    def verified() -> IncrementalEngine:
        engine = IncrementalEngine(model, example)
        verify(engine, model, example)
        return engine

    try:
        return verified()
    except UnsupportedModel as error:
        if not error.raised:
            return error
    try:
        return verified()
    except UnsupportedModel as error:
        return error


def verify(engine: IncrementalEngine, model: nn.Module, example: torch.Tensor, tolerance: float = 1e-4) -> None:
    """Check the engine against full forwards on a few occluders (corners, centre, odd sizes); raise if they differ."""
    _n, _c, H, W = example.shape
    ph, pw = max(1, H // 7), max(1, W // 7)
    boxes = [(0, 0, ph, pw), (H - ph - 1, W - pw, H - 1, W), (H // 2 - 1, W // 3, H // 2 + ph, W // 3 + pw + 3), (1, W - 2, H, W)]
    fill = torch.zeros_like(example)
    engine.set_image(example)
    try:
        ours = engine.logits(boxes, fill)
    except UnsupportedModel:
        raise
    except Exception as error:  # noqa: BLE001 - an op the engine mishandles: full forwards instead
        raise UnsupportedModel(f"incremental inference failed: {str(error).splitlines()[0] if str(error) else error}",
                               raised=True) from None
    batch = example.expand(len(boxes), -1, -1, -1).clone()
    for b, (y0, x0, y1, x1) in enumerate(boxes):
        batch[b, :, y0:y1, x0:x1] = 0
    with eval_mode(model), torch.inference_mode():
        reference = model(batch)
    reference = reference[0] if isinstance(reference, (tuple, list)) else reference
    scale = max(1.0, float(reference.abs().max()))
    difference = float((ours - reference).abs().max())
    if not difference <= tolerance * scale:
        raise UnsupportedModel(f"incremental inference differs from a full forward by {difference:.2e}")
    engine.saving = 1 - engine.work / max(1, engine.full_work() * len(boxes))
