"""NetworkMap: the model at a glance and the door to the other views. The network is drawn as a graph in forward
order (branches and residual joins as such), one box per layer or per collapsed block, with its kind, output
shape, parameters, multiply-adds, receptive field and stride, and a sparkline of the image's activation statistics;
click a block to expand it, click a layer to open it in another view on the same inspector and image."""

from __future__ import annotations

from collections.abc import Callable

import traitlets
from torch import nn

from .. import render
from ..backend import Index, Inspector
from ..backend.images import ImageLike
from ..errors import InputError
from ..methods.network_graph import NetworkGraph, add_receptive_fields, add_statistics, graph_layout, network_graph
from .base import CnnWidget, array_message, front_end
from .defaults import as_inspector, default_image
from .jobs import Job, Jobs, Steps

VIEWS = ("layers", "cam", "top")
"""What a click on a layer opens: LayerExplorer, Grad-CAM at that layer in SaliencyOverlay, TopActivations."""


class NetworkMap(CnnWidget):
    """The network of `inspector` traced on `image` (default: the embedded EfficientNet-Lite0 and the cat).

    `expanded` lists the open blocks (all closed at first, so a 300-layer model starts as a few boxes); `selected`
    is the layer last clicked, which opens `view` ("layers", "cam", or "top" with an `index`) on the same inspector
    and image (the inspector's cache is shared, so nothing is recomputed). `opened` holds that widget; callbacks
    given to `on_open` receive it; `viewer()` shows the map with the opened view below it. `totals` holds the
    model's parameters and multiply-adds (torchinfo's counts). `fields=False` leaves out receptive fields and
    strides: on squeeze-excitation models (timm's EfficientNet-B0) `methods.receptive_fields` still measures most
    layers by gradient, which took over 2.5 minutes at 64 px here, against 0.5 s for the rest of the graph.

    The map draws from a bare trace first; the image's statistics (sparklines, dead channels) and the receptive
    fields each need one more traced forward, which run as a job on the kernel's event loop once the map is shown
    (at once in a script; `wait()` blocks until they are in). Measured on DenseNet-121 (425 layers) at 224 px on a
    loaded 2-core machine (load average 7-9): a trace takes 0.41 s bare and 0.62 s with the statistics (a plain
    forward: 0.29 s), the fields 0.3-0.5 s; in JupyterLab the map was drawn 1.12 s after the cell ran when it
    waited for all three, 0.3-0.4 s now at load 5 (bench/network_map.py; the front end's drawing: 10 ms)."""

    _esm = front_end("network_map")

    units = traitlets.List().tag(sync=True)
    edges = traitlets.List().tag(sync=True)
    expanded = traitlets.List(traitlets.Unicode()).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    view = traitlets.Enum(list(VIEWS), "layers").tag(sync=True)
    totals = traitlets.Dict().tag(sync=True)
    image = traitlets.Dict().tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)

    def __init__(self, inspector: Inspector | nn.Module | None = None, image: ImageLike | None = None, *,
                 index: Index | None = None, fields: bool = True, **kwargs: object) -> None:
        self.inspector = as_inspector(inspector)
        self._image = default_image(image)
        self.index = index
        self.graph: NetworkGraph = network_graph(self.inspector, self._image, fields=False, stats=False)
        self._with_fields = fields
        self.opened: CnnWidget | None = None
        self._callbacks: list[Callable[[CnnWidget], object]] = []
        self._output = None
        super().__init__(**kwargs)
        self.totals = self.graph.totals
        self.title = type(self.inspector.model).__name__
        self.image = array_message(self.inspector.display_image(self._image))
        self._draw()
        self._jobs = Jobs(self, thread=False)
        self._jobs.start(self._add_details)

    def _add_details(self, _job: Job) -> Steps:
        """The job that adds the image's statistics, then the receptive fields and strides, to the drawn map."""
        add_statistics(self.graph, self.inspector, self._image)
        self._draw()
        yield 0.5
        if self._with_fields:
            add_receptive_fields(self.graph, self.inspector.model)
            self._draw()
        yield 1.0

    def wait(self, timeout: float | None = None) -> None:
        """Block until the statistics and receptive fields are in the map (in a script: as soon as it is made)."""
        self._jobs.wait(timeout)

    @traitlets.validate("expanded")
    def _check_expanded(self, proposal: dict) -> list[str]:
        unknown = sorted(set(proposal["value"]) - set(self.graph.blocks))
        if unknown:
            raise InputError(f"unknown blocks {unknown}; pick names from map.graph.blocks")
        return list(dict.fromkeys(proposal["value"]))

    @traitlets.validate("view")
    def _check_view(self, proposal: dict) -> str:
        if proposal["value"] == "top" and self.index is None:
            raise InputError("view='top' needs a dataset index; pass NetworkMap(inspector, image, index=inspector.index(dataset))")
        return proposal["value"]

    @traitlets.observe("expanded")
    def _on_expanded(self, _change: dict) -> None:
        self._draw()

    @traitlets.observe("selected")
    def _on_selected(self, change: dict) -> None:
        if change["new"]:
            with self._working():
                self.open_layer(change["new"])

    def expand(self, *blocks: str) -> None:
        """Open `blocks` (and their parents, so they show)."""
        opened = list(self.expanded)
        for name in blocks:
            block: str | None = name
            while block:
                opened.append(block)
                block = self.graph.blocks[block].parent if block in self.graph.blocks else ""
        self.expanded = opened

    def _draw(self) -> None:
        units, edges = self.graph.collapsed(set(self.expanded))
        layout = graph_layout(units, edges)
        order = {unit: i for i, unit in enumerate(units)}
        with self.hold_sync():  # one message: the front end never sees new boxes with the old edges
            self.units = [{**self._unit(unit), "rank": layout[unit][0], "lane": layout[unit][1]} for unit in units]
            self.edges = [[order[a], order[b]] for a, b in edges]

    def _unit(self, name: str) -> dict:
        """What a box shows: a layer's own numbers, or a closed block's totals and its layers' statistics."""
        if name in self.graph.blocks:
            block = self.graph.blocks[name]
            inside = [self.graph.node(node) for node in block.nodes]
            last = inside[-1]
            return {"name": name, "kind": "block", "type": block.type, "block": True, "layers": len(inside),
                    "shape": list(last.shape), "params": block.params, "macs": block.macs,
                    "receptive_field": last.receptive_field, "stride": last.stride,
                    "means": [node.mean for node in inside if node.mean is not None],
                    "dead": [node.dead_fraction for node in inside if node.dead_fraction is not None]}
        node = self.graph.node(name)
        return {"name": name, "kind": node.kind, "type": node.type, "block": False, "layers": 1, "shape": list(node.shape),
                "params": node.params, "macs": node.macs, "receptive_field": node.receptive_field, "stride": node.stride,
                "means": [] if node.mean is None else [node.mean],
                "dead": [] if node.dead_fraction is None else [node.dead_fraction]}

    def on_open(self, callback: Callable[[CnnWidget], object]) -> None:
        """Call `callback(widget)` whenever a click opens a view."""
        self._callbacks.append(callback)

    def open_layer(self, layer: str, view: str | None = None) -> CnnWidget:
        """Open `layer` in `view` (default: the `view` trait) on this map's inspector and image; return the widget."""
        from .layer_explorer import LayerExplorer
        from .saliency_overlay import SaliencyOverlay
        from .top_activations import TopActivations

        view = view or self.view
        if view not in VIEWS:
            raise InputError(f"view={view!r} is unknown; pick one of {', '.join(VIEWS)}")
        if layer not in self.inspector.layer_names:
            kind = self.graph.node(layer).kind
            raise InputError(f"{layer!r} ({kind}) has no [C,H,W] map to open; click a convolution, activation, pool or block")
        if view == "layers":
            widget = LayerExplorer(self.inspector, self._image, layer=layer)
        elif view == "cam":
            widget = SaliencyOverlay(self.inspector, self._image, method="grad_cam", layer=layer)
        else:
            if self.index is None:
                raise InputError("view='top' needs a dataset index; pass NetworkMap(inspector, image, index=inspector.index(dataset))")
            if layer not in self.index.layers:
                raise InputError(f"the index has no layer {layer!r}; it has {', '.join(self.index.layers[:6])}")
            widget = TopActivations(self.index, layer, 0)
        self.opened = widget
        if self._output is not None:
            from IPython.display import display

            self._output.clear_output()
            with self._output:
                display(widget)
        for callback in self._callbacks:
            callback(widget)
        return widget

    def viewer(self):
        """The map with the view a click opens shown below it (an ipywidgets VBox)."""
        import ipywidgets

        if self._output is None:
            self._output = ipywidgets.Output()
        return ipywidgets.VBox([self, self._output])

    def _figure_png(self) -> bytes:
        import matplotlib.pyplot as plt

        ranks = max(unit["rank"] for unit in self.units) + 1
        lanes = max(unit["lane"] for unit in self.units) + 1
        figure, axis = plt.subplots(figsize=(2.6 * lanes + 1, 0.55 * ranks + 1))
        centres = [(unit["lane"] * 2.6, -unit["rank"] * 0.55) for unit in self.units]
        for a, b in self.edges:
            axis.annotate("", xy=centres[b], xytext=centres[a], arrowprops={"arrowstyle": "->", "color": "0.6", "lw": 0.8})
        for unit, (x, y) in zip(self.units, centres):
            text = f"{unit['name']}  {'×'.join(map(str, unit['shape']))}"
            if unit["block"]:
                text += f"  [{unit['layers']} layers]"
            axis.text(x, y, text, ha="center", va="center", fontsize=7,
                      bbox={"boxstyle": "round", "fc": KIND_COLORS.get(unit["kind"], "#ddd"), "ec": "0.4", "lw": 0.5})
        axis.set_xlim(-1.5, 2.6 * lanes - 1.1)
        axis.set_ylim(-0.55 * ranks, 0.5)
        axis.axis("off")
        axis.set_title(f"{self.title}: {self.totals['params']:,} parameters, {self.totals['macs']:,} multiply-adds", fontsize=9)
        return render.figure_png(figure)


KIND_COLORS = {"conv": "#bbdefb", "activation": "#c8e6c9", "pool": "#ffe0b2", "norm": "#eeeeee", "linear": "#e1bee7",
               "join": "#ffcdd2", "function": "#fff9c4", "block": "#cfd8dc", "input": "#ffffff", "other": "#eeeeee"}
"""Box fills by kind, the same as the browser's (js/src/network_map.js)."""
