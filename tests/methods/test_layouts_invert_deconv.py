"""Code inversion and deconvnet projections read NHWC (ConvNeXt) and token (ViT) layers through their layout, like
every view: the unit projected is the map's (channel, row, column); the inverted code is the layer's [C,H,W] map.
Tiny timm models with random weights at 64 px (ConvNeXt with its MLP channels-last, `conv_mlp=False`); models whose activations the deconvnet rule does not cover are refused
in one line."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from cnnwidgets import InputError, Inspector
from cnnwidgets.backend.hooks import eval_mode
from cnnwidgets.methods.deconv import deconv_projection
from cnnwidgets.methods.invert import Inverter

from tests.conftest import assert_same_state, hooks_left, model_state

pytestmark = pytest.mark.usefixtures("one_thread")

SIDE = 64


class ChannelsLastRelu(nn.Module):
    """conv → permute to [N,H,W,C] → LayerNorm → Linear → ReLU (an NHWC layer) → mean → Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.norm = nn.LayerNorm(6)
        self.fc1 = nn.Linear(6, 5)
        self.act = nn.ReLU()
        self.head = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.fc1(self.norm(self.conv(x).permute(0, 2, 3, 1)))).mean((1, 2)))


def _timm(name: str, **options) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=10, **options)


MODELS = {  # name: (builder, NHWC or token layer after a ReLU, the module whose output feeds that ReLU, token prefix)
    "hand_nhwc": (ChannelsLastRelu, "act", "fc1", None),
    "convnext_nano_relu": (lambda: _timm("convnext_nano", conv_mlp=False, act_layer="relu"), "stages.0.blocks.0.mlp.act", "stages.0.blocks.0.mlp.fc1", None),
    "vit_tiny_relu": (lambda: _timm("vit_tiny_patch16_224", img_size=SIDE, act_layer=nn.ReLU), "blocks.0.mlp.act", "blocks.0.mlp.fc1", 1),
}


@pytest.fixture(scope="module", params=list(MODELS))
def case(request):
    build, layer, below, prefix = MODELS[request.param]
    side = 16 if request.param == "hand_nhwc" else SIDE
    image = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    return build(), layer, below, prefix, image


def _reference_projection(model: nn.Module, below: str, image: torch.Tensor, prefix: int | None, grid: tuple[int, int],
                          channel: int, row: int, col: int) -> torch.Tensor:
    """The deconvnet projection of one unit right after a ReLU with no other ReLU below it: the ReLU's deconvnet rule
    passes relu(value) = value, so it is value × ∂(pre-activation unit)/∂input, by plain autograd on the raw output."""
    kept = []
    handle = model.get_submodule(below).register_forward_hook(lambda _m, _i, output: kept.append(output))
    x = image.clone().requires_grad_(True)
    try:
        with eval_mode(model), torch.enable_grad():
            model(x)
    finally:
        handle.remove()
    raw = kept[0][0]
    assert raw.dim() == 2 if prefix is not None else raw.dim() == 3 and raw.shape[:2] == grid  # tokens, or [H,W,C]
    unit = raw[prefix + row * grid[1] + col, channel] if prefix is not None else raw[row, col, channel]
    (grad,) = torch.autograd.grad(unit, x)
    return grad[0] * unit.detach().clamp(min=0)


def test_deconv_projects_the_maps_unit_through_the_layout(case):
    model, layer, below, prefix, image = case
    before = model_state(model)
    inspector = Inspector(model)
    maps = inspector.activations(image, layer)  # [C,H,W], read through the layout
    channel = int(maps.flatten(1).amax(1).argmax())  # the channel with the strongest unit
    row, col = divmod(int(maps[channel].flatten().argmax()), maps.shape[2])
    assert float(maps[channel, row, col]) > 0
    ours = deconv_projection(inspector, image, layer, channel)
    expected = _reference_projection(model, below, image, prefix, tuple(maps.shape[1:]), channel, row, col)
    assert float(expected.abs().max()) > 0
    torch.testing.assert_close(ours, expected, atol=1e-5 * float(expected.abs().max()), rtol=1e-4)
    assert hooks_left(model) == 0
    assert_same_state(before, model_state(model))


def test_the_inverted_code_is_the_layers_map(case):
    model, layer, _below, _prefix, image = case
    before = model_state(model)
    inspector = Inspector(model)
    inverter = Inverter(inspector, image, layer, seed=0)
    torch.testing.assert_close(inverter.code[0], inspector.activations(image, layer))
    distances = inverter.step(3)
    assert len(distances) == 3 and all(d == d and d < float("inf") for d in distances)
    assert inverter.result().image.shape == image.shape[1:]
    assert hooks_left(model) == 0
    assert_same_state(before, model_state(model))


@pytest.mark.parametrize("name", ["convnext_nano", "vit_tiny_patch16_224"])
def test_deconv_on_gelu_models_is_refused_in_one_line(name):
    model = _timm(name, img_size=SIDE) if name.startswith("vit") else _timm(name, conv_mlp=False)  # its MLP channels-last
    before = model_state(model)
    inspector = Inspector(model)
    layer = "stages.0.blocks.0.mlp.act" if name == "convnext_nano" else "blocks.0.mlp.act"
    with pytest.raises(InputError, match="GELU") as raised:
        deconv_projection(inspector, torch.randn(1, 3, SIDE, SIDE), layer, 0)
    assert "\n" not in str(raised.value)
    assert hooks_left(model) == 0
    assert_same_state(before, model_state(model))
