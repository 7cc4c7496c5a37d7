"""NetworkMap's Python side: boxes and edges of the collapsed graph, expanding blocks, totals in the state,
clicking a layer opens another view on the same inspector and image, bad input is one line, PNG export."""

from __future__ import annotations

import pytest
import torch
import torchvision

from cnnwidgets import InputError, Inspector
from cnnwidgets.backend import Preprocess
from cnnwidgets.methods.network_graph import graph_layout
from cnnwidgets.widgets.layer_explorer import LayerExplorer
from cnnwidgets.widgets.network_map import NetworkMap
from cnnwidgets.widgets.saliency_overlay import SaliencyOverlay

from tests.conftest import hooks_left

pytestmark = pytest.mark.usefixtures("one_thread")  # CI-sized: one thread, restored after each test


@pytest.fixture(scope="module")
def resnet_map() -> NetworkMap:
    inspector = Inspector(torchvision.models.resnet18(weights=None), Preprocess(resize=64, crop=64))
    return NetworkMap(inspector, torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)))


def test_the_map_starts_collapsed_with_totals_in_its_state(resnet_map):
    names = [unit["name"] for unit in resnet_map.units]
    assert names == ["input", "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    assert resnet_map.totals["params"] == 11_689_512
    layer1 = resnet_map.units[5]
    assert layer1["block"] and layer1["layers"] == 14 and layer1["shape"] == [64, 16, 16]
    assert len(layer1["means"]) == 14 and layer1["params"] == sum(p.numel() for p in resnet_map.inspector.model.layer1.parameters())
    assert [unit["rank"] for unit in resnet_map.units] == list(range(11))
    assert resnet_map.edges == [[i, i + 1] for i in range(10)]


def test_expanding_a_block_shows_its_residual_join(resnet_map):
    resnet_map.expand("layer1.0")  # opens its parent too
    assert resnet_map.expanded == ["layer1.0", "layer1"]
    names = [unit["name"] for unit in resnet_map.units]
    add, maxpool, bn2 = names.index("layer1.0.add"), names.index("maxpool"), names.index("layer1.0.bn2")
    assert [maxpool, add] in resnet_map.edges and [bn2, add] in resnet_map.edges  # the skip and the main path
    ranks = {unit["name"]: unit["rank"] for unit in resnet_map.units}
    assert ranks["layer1.0.add"] == ranks["layer1.0.bn2"] + 1 and ranks["layer1.0.add"] > ranks["maxpool"] + 1
    with pytest.raises(InputError, match="unknown blocks"):
        resnet_map.expanded = ["layer9"]
    resnet_map.expanded = []
    assert len(resnet_map.units) == 11


def test_branches_sit_side_by_side():
    layout = graph_layout(["input", "a", "b", "cat"], [("input", "a"), ("input", "b"), ("a", "cat"), ("b", "cat")])
    assert layout == {"input": (0, 0), "a": (1, 0), "b": (1, 1), "cat": (2, 0)}


def test_clicking_a_layer_opens_a_view_on_the_same_inspector(resnet_map):
    opened = []
    resnet_map.on_open(opened.append)
    resnet_map.selected = "layer2.0.conv1"
    assert isinstance(resnet_map.opened, LayerExplorer) and opened == [resnet_map.opened]
    assert resnet_map.opened.inspector is resnet_map.inspector and resnet_map.opened.layer == "layer2.0.conv1"
    resnet_map.view = "cam"
    cam = resnet_map.open_layer("layer3")
    assert isinstance(cam, SaliencyOverlay) and cam.layer == "layer3" and cam.method == "grad_cam"
    with pytest.raises(InputError, match="no \\[C,H,W\\] map"):
        resnet_map.open_layer("fc")
    with pytest.raises(InputError, match="needs a dataset index"):
        resnet_map.view = "top"
    resnet_map.view = "layers"
    assert hooks_left(resnet_map.inspector.model) == 0


def test_png_export(resnet_map):
    png = resnet_map.to_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_a_300_layer_model_starts_small():
    inspector = Inspector(torchvision.models.resnet101(weights=None), Preprocess(resize=32, crop=32))
    network = NetworkMap(inspector, torch.zeros(3, 32, 32), fields=False)
    assert network.totals["layers"] > 300 and len(network.units) == 11
    assert network.units[1]["receptive_field"] is None  # fields=False
    network.expand("layer3")
    assert len(network.units) == 10 + 23  # layer3 of ResNet-101 holds 23 bottlenecks


def test_in_a_kernel_the_map_draws_first_and_its_statistics_and_fields_follow_on_the_event_loop():
    """The image's statistics and the receptive fields (one more traced forward each) run as a job on the running
    event loop, after the map is shown; they then equal what `network_graph` finds in one go."""
    import asyncio

    from cnnwidgets.methods.network_graph import network_graph

    inspector = Inspector(torchvision.models.resnet18(weights=None), Preprocess(resize=64, crop=64))
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))

    async def in_a_kernel() -> tuple[list, list]:
        network = NetworkMap(inspector, image)
        drawn_first = network.units
        for _ in range(600):
            if not network.busy:
                break
            await asyncio.sleep(0.05)
        return drawn_first, network.units

    drawn_first, units = asyncio.run(in_a_kernel())
    assert all(unit["receptive_field"] is None and unit["means"] == [] for unit in drawn_first)
    reference = network_graph(inspector, image, fields=True)
    shown = {unit["name"]: unit for unit in units}
    assert shown["conv1"]["receptive_field"] == reference.node("conv1").receptive_field == 7
    assert shown["maxpool"]["receptive_field"] == reference.node("maxpool").receptive_field and shown["layer4"]["receptive_field"]
    assert shown["relu"]["means"] == [reference.node("relu").mean] and shown["relu"]["dead"] == [reference.node("relu").dead_fraction]
    assert len(shown["layer1"]["means"]) == sum(1 for node in reference.nodes if node.block.startswith("layer1") and node.mean is not None)
    assert hooks_left(inspector.model) == 0
