"""The model as a graph in forward order: every layer call with its kind, output shape, parameters, multiply-adds,
receptive field and stride, the real edges of the data flow (branches and residual joins kept as such), per-image
activation statistics, and the block hierarchy of module names so a view can collapse a 300-layer model.

One forward pass on the image (or on zeros) is traced two ways at once: forward hooks on every leaf module (a
module without children) record which node made each tensor, and a `TorchFunctionMode` follows the torch calls
made between modules (in a block's own `forward`). A call that combines tensors from two or more different nodes
(the residual `out += identity` of a ResNet, the `torch.cat` of an Inception block, the `x * gate` of a
squeeze-excitation) becomes a node of its own, named after the module whose `forward` made it (`layer1.0.add`);
other calls between modules (`torch.flatten`, a functional ReLU, a view) pass their input's node through, except
functional convolutions, linears, pools and resizes, which are nodes too.

Counts follow torchinfo 1.8.0, so totals agree with `torchinfo.summary`: parameters are the model's unique
parameters; multiply-adds of a call are, for each `weight` and `bias` parameter of a leaf module, its element count
times the output's spatial positions for a convolution (class name containing "Conv") and times one for anything
else (a linear layer's in × out + out, a batch norm's 2 × C), for one image; activations and pools count zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..backend.hooks import eval_mode, forward_hooks
from ..backend.layers import kind_of
from ..backend.receptive_field import ReceptiveField, receptive_fields, tensors_in
from ..errors import InputError, model_errors
from .activations import dead_channels

INPUT = "input"
FUNCTIONAL_NODES = ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "linear",
                    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
                    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
                    "max_pool2d_with_indices", "adaptive_max_pool2d_with_indices", "interpolate", "upsample")
"""Functional calls between modules that do a layer's work (so they are nodes, not pass-throughs)."""
JOIN_NAMES = {"iadd": "add", "add_": "add", "radd": "add", "imul": "mul", "mul_": "mul", "rmul": "mul",
              "isub": "sub", "sub_": "sub", "rsub": "sub", "concat": "cat", "concatenate": "cat"}


@dataclass
class Node:
    """One layer call: a leaf module's call (named as `Inspector.layers` names them: `name`, or `name#k` for the
    k-th call of a module used several times), a join of branches (`block.add`, `block.cat`), a functional layer
    (`block.conv2d`), or the input."""

    name: str
    kind: str  # conv, activation, pool, norm, linear, join, function, other, input
    type: str  # the module's class name, or the torch function's name
    inputs: list[str]
    shape: tuple[int, ...]  # output shape without the batch dimension
    params: int = 0  # parameters of this module counted at its first call only (so they sum to the model's)
    macs: int = 0  # torchinfo-style multiply-adds of this call, for one image (module doc)
    block: str = ""  # the module whose forward made the call ("" for the top level)
    receptive_field: int | None = None  # side of the field in input pixels (the larger axis), None if unknown
    stride: int | None = None  # input pixels between neighbouring units (the larger axis), None if unknown
    mean: float | None = None  # mean activation on the image (None without an image)
    dead_fraction: float | None = None  # fraction of channels zero everywhere on the image ([C,H,W] outputs only)

    def as_dict(self) -> dict:
        return {key: (list(value) if isinstance(value, tuple) else value) for key, value in self.__dict__.items()}


@dataclass
class Block:
    """A module with children (a stage, a residual block, an Inception branch): its nodes, its totals, its parent."""

    name: str
    type: str
    parent: str | None  # None for the top-level blocks
    depth: int  # 1 for children of the model
    nodes: list[str] = field(default_factory=list)  # every node inside, at any depth, in forward order
    params: int = 0
    macs: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class NetworkGraph:
    """Nodes in forward order (the input first), edges (from, to) of the data flow, blocks by name, and totals."""

    nodes: list[Node]
    edges: list[tuple[str, str]]
    blocks: dict[str, Block]
    totals: dict[str, int]
    input_shape: tuple[int, ...]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise InputError(f"no layer {name!r} in the graph; pick one of graph.nodes (e.g. {self.nodes[-1].name!r})")

    def collapsed(self, expanded: set[str] | frozenset[str] = frozenset()) -> tuple[list[str], list[tuple[str, str]]]:
        """What a view shows with only the blocks in `expanded` open: (units in forward order, edges between them).

        A unit is a node that no closed block contains, or the outermost closed block (shown as one box).
        A block opens only when its parent is open too. Edges inside one unit disappear; parallel edges merge."""
        unknown = sorted(set(expanded) - set(self.blocks))
        if unknown:
            raise InputError(f"unknown blocks {unknown}; pick names from graph.blocks")

        def unit_of(node: Node) -> str:
            parts = node.block.split(".") if node.block else []
            for depth in range(1, len(parts) + 1):
                name = ".".join(parts[:depth])
                if name in self.blocks and name not in expanded:
                    return name
            return node.name

        units = {node.name: unit_of(node) for node in self.nodes}
        order = list(dict.fromkeys(units[node.name] for node in self.nodes))
        edges = list(dict.fromkeys((units[a], units[b]) for a, b in self.edges if units[a] != units[b]))
        return order, edges

    def as_dict(self) -> dict:
        """Plain JSON-ready data (what a widget sends to the browser)."""
        return {"nodes": [node.as_dict() for node in self.nodes], "edges": [list(edge) for edge in self.edges],
                "blocks": {name: block.as_dict() for name, block in self.blocks.items()}, "totals": dict(self.totals),
                "input_shape": list(self.input_shape)}


def graph_layout(units: list[str], edges: list[tuple[str, str]]) -> dict[str, tuple[int, int]]:
    """(rank, lane) of each unit for drawing: rank = the longest path from a source (so every edge points to a
    later rank), lane = the unit's place among those of its rank, in forward order (parallel branches side by side)."""
    position = {unit: i for i, unit in enumerate(units)}
    incoming: dict[str, list[str]] = {unit: [] for unit in units}
    for source, target in edges:
        if position[source] < position[target]:
            incoming[target].append(source)
    rank: dict[str, int] = {}
    lanes: dict[int, int] = {}
    layout = {}
    for unit in units:
        rank[unit] = max((rank[source] + 1 for source in incoming[unit]), default=0)
        lane = lanes.get(rank[unit], 0)
        lanes[rank[unit]] = lane + 1
        layout[unit] = (rank[unit], lane)
    return layout


def torchinfo_macs(module: nn.Module, output_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one call of a leaf module for one image, as torchinfo 1.8.0 counts them (module doc)."""
    positions = math.prod(output_shape[1:]) if "Conv" in type(module).__name__ and len(output_shape) > 1 else 1
    total = 0
    for name, parameter in module.named_parameters():
        if name in ("weight", "bias"):
            total += parameter.numel() * positions
    return total


def _kind(module: nn.Module) -> str:
    if isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
        return "norm"
    if isinstance(module, nn.Linear):
        return "linear"
    return kind_of(module)


class _FlowTracer(TorchFunctionMode):
    """Records which node made each tensor; makes join and functional-layer nodes for calls between modules."""

    def __init__(self, stats: bool) -> None:
        super().__init__()
        self.stats = stats
        self.maker: dict[int, str] = {}  # id(tensor) -> node name
        self.alive: list[torch.Tensor] = []  # keeps traced tensors alive so their ids stay unique
        self.nodes: list[Node] = []
        self.quiet = 0  # > 0 inside a leaf module's call (its own torch calls are its business) or our own work
        self.block_stack: list[str] = [""]
        self.op_calls: dict[str, int] = {}

    def made(self, tensors: object, name: str) -> None:
        for tensor in tensors_in(tensors):
            self.maker[id(tensor)] = name
            self.alive.append(tensor)

    def makers(self, value: object) -> list[str]:
        return list(dict.fromkeys(self.maker[id(t)] for t in tensors_in(value) if id(t) in self.maker))

    def add(self, node: Node, output: object) -> None:
        """Record `node` as the maker of `output`, with the image's statistics of it (before any later in-place op)."""
        first = next(tensors_in(output), None)
        node.shape = tuple(first.shape[1:]) if first is not None else ()
        if self.stats and first is not None and first.is_floating_point():
            self.quiet += 1
            node.mean = float(first[0].float().mean())
            if first.dim() == 4:
                node.dead_fraction = float(dead_channels(first[0]).float().mean())
            self.quiet -= 1
        self.nodes.append(node)
        self.made(output, node.name)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        if self.quiet:
            return output
        sources = self.makers((args, kwargs))
        if not sources:
            return output
        op = getattr(func, "__name__", "op").strip("_")
        op = JOIN_NAMES.get(op, op)
        if op in FUNCTIONAL_NODES or len(sources) > 1:
            block = self.block_stack[-1]
            base = f"{block}.{op}" if block else op
            call = self.op_calls.get(base, 0)
            self.op_calls[base] = call + 1
            name = base if call == 0 else f"{base}#{call + 1}"
            self.add(Node(name, "function" if op in FUNCTIONAL_NODES else "join", op, sources, (), block=block), output)
        else:
            for tensor in tensors_in(output):
                if id(tensor) not in self.maker:
                    self.made(tensor, sources[0])
        return output


def network_graph(inspector, image: object | None = None, fields: bool = True, stats: bool = True) -> NetworkGraph:
    """The model of `inspector` as a `NetworkGraph`, traced on `image` (then each node also carries the image's
    mean activation and fraction of dead channels) or, without one, on zeros of the last input's shape (224×224
    before any).

    `fields=False` skips the receptive fields (one more forward, and a gradient per layer the tracer cannot follow);
    `stats=False` the image's statistics (a third of the trace's time on DenseNet-121; `add_statistics` adds them).
    The model leaves exactly as it came: eval mode only for the call, every hook removed, nothing else touched.
    """
    model = inspector.model
    if image is not None:
        batch = inspector.preprocess(image)
    else:
        size = (inspector.input_shape or (1, 1, 224, 224))[-2:]
        batch = torch.zeros((1, inspector.in_channels, *size), device=inspector.device)
    names = {module: name for name, module in model.named_modules() if name}
    leaves = {module for module in names if not any(True for _ in module.children())}
    calls: dict[nn.Module, int] = {}
    module_of: dict[str, nn.Module] = {}  # leaf node name (with its call number) -> module
    pending: list[list[str]] = []  # the makers of each running leaf call's inputs
    tracer = _FlowTracer(stats=stats and image is not None)

    def on_start(module: nn.Module, inputs: tuple) -> None:
        if module in leaves:
            pending.append([] if tracer.quiet else tracer.makers(inputs))
            tracer.quiet += 1
        else:
            tracer.block_stack.append(names[module])

    def on_end(module: nn.Module, _inputs: tuple, output: object) -> None:
        if module not in leaves:
            tracer.block_stack.pop()
            return
        tracer.quiet -= 1
        sources = pending.pop()
        if tracer.quiet:
            return
        call = calls.get(module, 0)
        calls[module] = call + 1
        name = f"{names[module]}#{call + 1}"
        module_of[name] = module
        first = next(tensors_in(output), None)
        shape = tuple(first.shape[1:]) if first is not None else ()
        params = sum(p.numel() for p in module.parameters()) if call == 0 else 0
        tracer.add(Node(name, _kind(module), type(module).__name__, sources, shape, params,
                        torchinfo_macs(module, shape), names[module].rpartition(".")[0]), output)

    modules = list(names)
    with eval_mode(model), torch.inference_mode(), model_errors(tuple(batch.shape)), \
            forward_hooks([(m, on_start) for m in modules], pre=True), forward_hooks([(m, on_end) for m in modules]), tracer:
        tracer.made(batch, INPUT)
        model(batch)
    # a module called once is named without its call number, as Inspector.layers names it
    renamed = {name: name.rpartition("#")[0] for name, module in module_of.items() if calls[module] == 1}
    nodes = [Node(INPUT, "input", "input", [], tuple(batch.shape[1:]))]
    for node in tracer.nodes:
        node.name = renamed.get(node.name, node.name)
        node.inputs = [renamed.get(source, source) for source in node.inputs]
        nodes.append(node)
    if fields:
        _set_fields(nodes, model, tuple(batch.shape))
    edges = [(source, node.name) for node in nodes for source in node.inputs]
    totals = {"params": sum(p.numel() for p in model.parameters()),
              "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "macs": sum(node.macs for node in nodes), "layers": len(nodes) - 1}
    return NetworkGraph(nodes, edges, _blocks(model, nodes), totals, tuple(batch.shape[1:]))


def add_receptive_fields(graph: NetworkGraph, model: nn.Module) -> NetworkGraph:
    """`graph` (made with `fields=False`) with each node's receptive field and stride set, as `fields=True` gives:
    one more traced forward of `model` at the graph's input size. A view can draw the graph first and add these
    after (NetworkMap does: on DenseNet-121 at 224 px they are a third of the map's cost)."""
    _set_fields(graph.nodes, model, (1, *graph.input_shape))
    return graph


def add_statistics(graph: NetworkGraph, inspector, image: object) -> NetworkGraph:
    """`graph` (made with `stats=False`) with each node's mean activation and fraction of dead channels on `image`,
    from one more trace; nodes are matched by name."""
    traced = {node.name: node for node in network_graph(inspector, image, fields=False).nodes}
    for node in graph.nodes:
        found = traced.get(node.name)
        if found is not None:
            node.mean, node.dead_fraction = found.mean, found.dead_fraction
    return graph


def _set_fields(nodes: list[Node], model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Receptive field side and stride of each node: traced for module calls, the union of the inputs for joins."""
    if len(input_shape) != 4:
        return
    traced = receptive_fields(model, input_shape)
    known: dict[str, ReceptiveField] = {}
    for node in nodes[1:]:
        found = traced.get(node.name)
        if node.kind == "join":
            inputs = [known[source] for source in node.inputs if source in known]
            found = _union(inputs) if len(inputs) == len(node.inputs) else None
        if found is not None:
            known[node.name] = found
            node.receptive_field, node.stride = max(found.size), max(found.jump)


def _union(fields: list[ReceptiveField]) -> ReceptiveField:
    """The field of a join: from the earliest start to the latest end of its inputs' fields, the coarsest jump."""
    size, jump, start = [], [], []
    for axis in range(2):
        first = min(f.start[axis] for f in fields)
        last = max(f.start[axis] + f.size[axis] for f in fields)
        size.append(int(last - first))
        jump.append(max(f.jump[axis] for f in fields))
        start.append(first)
    return ReceptiveField((size[0], size[1]), (jump[0], jump[1]), (start[0], start[1]), fields[0].input_size)


def _blocks(model: nn.Module, nodes: list[Node]) -> dict[str, Block]:
    """Every module with children that some node sits in, with its nodes and totals (parents before children)."""
    blocks: dict[str, Block] = {}
    for name, module in model.named_modules():
        if name and any(True for _ in module.children()):
            parent = name.rpartition(".")[0]
            while parent and parent not in blocks:
                parent = parent.rpartition(".")[0]
            blocks[name] = Block(name, type(module).__name__, parent or None, name.count(".") + 1)
    for node in nodes[1:]:
        parts = node.block.split(".") if node.block else []
        for depth in range(1, len(parts) + 1):
            block = blocks.get(".".join(parts[:depth]))
            if block is not None:
                block.nodes.append(node.name)
                block.params += node.params
                block.macs += node.macs
    return {name: block for name, block in blocks.items() if block.nodes}
