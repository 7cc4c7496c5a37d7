"""The network graph: totals equal hand counts and torchinfo, edges equal the model's real data flow (torch.fx),
joins of branches are nodes, activation statistics are exact on a hand-built model, blocks collapse."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import torchvision
from torch import fx
from torchinfo import summary

from cnnwidgets import InputError, Inspector
from cnnwidgets.methods.network_graph import NetworkGraph, network_graph

from tests.conftest import assert_same_state, hooks_left, model_state

pytestmark = pytest.mark.usefixtures("one_thread")  # CI-sized: one thread, restored after each test


@pytest.fixture(scope="module")
def resnet18():
    return torchvision.models.resnet18(weights=None)


@pytest.fixture(scope="module")
def resnet_graph(resnet18) -> NetworkGraph:
    return network_graph(Inspector(resnet18), torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(0)))


def fx_module_edges(model: torch.nn.Module) -> set[tuple[str, str]]:
    """(module, module) edges of the data flow as torch.fx traces it, looking through functions between modules."""
    graph = fx.symbolic_trace(model.eval()).graph

    def modules_behind(node: fx.Node) -> set[str]:
        if node.op == "placeholder":
            return {"input"}
        if node.op == "call_module":
            return {node.target}
        return set().union(*(modules_behind(source) for source in node.all_input_nodes))

    return {(source, node.target) for node in graph.nodes if node.op == "call_module"
            for argument in node.all_input_nodes for source in modules_behind(argument)}


def our_module_edges(graph: NetworkGraph) -> set[tuple[str, str]]:
    """The same from our graph: looking through join and functional nodes, call numbers dropped."""
    nodes = {node.name: node for node in graph.nodes}

    def modules_behind(name: str) -> set[str]:
        node = nodes[name]
        if node.kind in ("join", "function"):
            return set().union(*(modules_behind(source) for source in node.inputs))
        return {name.split("#")[0]}

    return {(source, node.name.split("#")[0]) for node in graph.nodes if node.kind not in ("join", "function", "input")
            for argument in node.inputs for source in modules_behind(argument)}


def test_vgg16_totals_equal_the_hand_count_and_torchinfo():
    model = torchvision.models.vgg16(weights=None)
    graph = network_graph(Inspector(model), torch.zeros(3, 64, 64), fields=False)
    # hand count: 13 convs (3·64, 64·64, 64·128, 128·128, 128·256, 256·256 ×2, 256·512, 512·512 ×5, all 3×3, + biases)
    # and 3 linears (25088·4096, 4096·4096, 4096·1000 + biases)
    convs = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 512), (512, 512),
             (512, 512), (512, 512), (512, 512), (512, 512)]
    hand = sum(9 * i * o + o for i, o in convs) + sum(i * o + o for i, o in [(25088, 4096), (4096, 4096), (4096, 1000)])
    assert hand == 138_357_544
    assert graph.totals["params"] == hand == sum(node.params for node in graph.nodes)
    reference = summary(model, input_size=(1, 3, 64, 64), verbose=0)
    assert graph.totals["macs"] == reference.total_mult_adds
    # by hand: conv1_1 at 64×64 outputs does (3·9·64 + 64) multiply-adds per position, torchinfo's convention
    assert graph.node("features.0").macs == (3 * 9 * 64 + 64) * 64 * 64
    assert graph.node("features.0").shape == (64, 64, 64)
    assert graph.node("classifier.6").macs == 4096 * 1000 + 1000


def test_resnet18_totals_equal_the_hand_count_and_torchinfo(resnet18, resnet_graph):
    assert resnet_graph.totals["params"] == 11_689_512
    assert resnet_graph.totals["trainable_params"] == 11_689_512
    assert resnet_graph.totals["macs"] == summary(resnet18, input_size=(1, 3, 64, 64), verbose=0).total_mult_adds
    assert resnet_graph.node("layer1.0.bn1").macs == 2 * 64  # a batch norm: weight and bias, once per image


def test_resnet_edges_are_the_real_data_flow_with_residual_joins(resnet18, resnet_graph):
    assert our_module_edges(resnet_graph) == fx_module_edges(resnet18)
    add = resnet_graph.node("layer1.0.add")
    assert add.kind == "join" and add.inputs == ["layer1.0.bn2", "maxpool"]  # the identity skips the block
    assert resnet_graph.node("layer2.0.add").inputs == ["layer2.0.bn2", "layer2.0.downsample.1"]
    assert resnet_graph.node("layer1.0.relu#2").inputs == ["layer1.0.add"]  # a reused ReLU: one node per call
    assert resnet_graph.node("fc").inputs == ["avgpool"]  # torch.flatten in between passes through
    names = [node.name for node in resnet_graph.nodes]
    assert all(names.index(source) < names.index(target) for source, target in resnet_graph.edges)  # forward order


def test_googlenet_edges_are_the_real_data_flow_with_branches():
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    graph = network_graph(Inspector(model), torch.zeros(3, 64, 64), fields=False)
    assert our_module_edges(graph) == fx_module_edges(model)
    join = graph.node("inception3a.cat")
    assert join.inputs == [f"inception3a.{branch}" for branch in ("branch1.bn", "branch2.1.bn", "branch3.1.bn", "branch4.1.bn")]
    assert join.shape == (256, 8, 8)  # 64 + 128 + 32 + 32 channels
    starts = ["inception3a.branch1.conv", "inception3a.branch2.0.conv", "inception3a.branch3.0.conv", "inception3a.branch4.0"]
    assert all(graph.node(name).inputs == ["maxpool2"] for name in starts)


def test_receptive_fields_and_strides_per_node():
    graph = network_graph(Inspector(torchvision.models.vgg16(weights=None)), torch.zeros(3, 64, 64))
    # Araujo et al., Distill 2019: VGG-16 conv5_3 196 px, pool5 212 px, stride 32 at pool5
    assert (graph.node("features.28").receptive_field, graph.node("features.28").stride) == (196, 16)
    assert (graph.node("features.30").receptive_field, graph.node("features.30").stride) == (212, 32)
    assert graph.node("classifier.0").receptive_field is None  # no [C,H,W] output: no field


def test_a_join_sees_the_union_of_its_branches(resnet_graph):
    add = resnet_graph.node("layer1.0.add")
    assert add.receptive_field == max(resnet_graph.node("layer1.0.bn2").receptive_field, resnet_graph.node("maxpool").receptive_field) == 27
    assert add.stride == 4


def test_activation_statistics_are_exact_on_a_hand_built_model(tiny, tiny_input):
    # conv filter 0 gives x[i,j] − x[i+1,j+1] = −5 everywhere; filter 1 (2×2 sum − 10) gives 16i + 4j for i, j in 0..2
    inspector = Inspector(tiny)
    graph = network_graph(inspector, tiny_input, fields=False)
    conv, relu = graph.node("conv"), graph.node("relu")
    assert conv.mean == pytest.approx((-5 + 20) / 2) and conv.dead_fraction == 0.0
    assert relu.mean == pytest.approx(10.0) and relu.dead_fraction == 0.5  # channel 0 never fires
    assert graph.node("fc").dead_fraction is None  # [classes], not [C,H,W]
    without_image = network_graph(inspector, None, fields=False)  # zeros of the last input's shape
    assert without_image.node("conv").mean is None and without_image.node("fc").shape == (3,)
    assert [node.name for node in graph.nodes] == ["input", "conv", "relu", "pool", "fc"]
    assert graph.node("fc").params == 9 and graph.totals["params"] == 2 * 4 + 2 + 9


def test_the_model_leaves_as_it_came(resnet18):
    resnet18.train()
    before = model_state(resnet18)
    network_graph(Inspector(resnet18), torch.zeros(3, 32, 32))
    assert_same_state(before, model_state(resnet18))
    assert hooks_left(resnet18) == 0
    resnet18.eval()


def test_blocks_collapse_and_expand(resnet_graph):
    units, edges = resnet_graph.collapsed()
    assert units == ["input", "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    assert edges == list(itertools.pairwise(units))
    units, edges = resnet_graph.collapsed({"layer2"})
    assert units[6:8] == ["layer2.0", "layer2.1"] and ("layer1", "layer2.0") in edges and ("layer2.1", "layer3") in edges
    units, edges = resnet_graph.collapsed({"layer2", "layer2.0"})
    assert ("layer1", "layer2.0.downsample") in edges and ("layer2.0.downsample", "layer2.0.add") in edges
    block = resnet_graph.blocks["layer2.0"]
    assert block.parent == "layer2" and block.depth == 2 and block.nodes[0] == "layer2.0.conv1"
    assert block.params == sum(p.numel() for p in torchvision.models.resnet18().layer2[0].parameters())
    with pytest.raises(InputError, match="unknown blocks"):
        resnet_graph.collapsed({"layer9"})
    with pytest.raises(InputError, match="no layer"):
        resnet_graph.node("layer9.conv")


def test_the_embedded_model_graph_matches_torchinfo_and_is_json_ready(lite0):
    graph = network_graph(lite0, torch.zeros(3, 64, 64))
    assert graph.totals["params"] == sum(p.numel() for p in lite0.model.parameters())
    assert graph.totals["macs"] == summary(lite0.model, input_size=(1, 3, 64, 64), verbose=0).total_mult_adds
    joins = [node for node in graph.nodes if node.kind == "join"]
    assert len(joins) == 9  # Lite0's residual adds: stride 1 and in == out, blocks 2, 4, 6, 7, 9, 10, 12, 13, 14
    assert graph.nodes[-1].name == "_fc" and graph.nodes[-1].receptive_field is None
    assert json.loads(json.dumps(graph.as_dict()))["totals"] == graph.totals
