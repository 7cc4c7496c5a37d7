"""Layer layouts: NHWC maps and token sequences shown as [C,H,W], read off the model or set with `reshape=`; a layout
that cannot be known is refused by name; fixed-size models say their size; the default CAM layer covers the final
feature map."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

from cnnwidgets import Inspector, InputError
from cnnwidgets.methods import cam

from tests.conftest import hooks_left


class ChannelsLastBlock(nn.Module):
    """conv → [N,H,W,C] → LayerNorm and Linear on channels → back to [N,C,H,W]; then a module writing tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(6)
        self.fc = nn.Linear(6, 5)
        self.act = nn.GELU()
        self.tokens = Tokens()
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).permute(0, 2, 3, 1)
        x = self.act(self.fc(self.norm(x)))  # [N,H,W,5]
        x = self.tokens(x.permute(0, 3, 1, 2))  # [N,1+H·W,5]
        return self.head(x[:, 0])


class Tokens(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean((2, 3))[:, None], x.flatten(2).transpose(1, 2)], 1)


@pytest.fixture
def image() -> torch.Tensor:
    return torch.randn(1, 3, 8, 12, generator=torch.Generator().manual_seed(0))


def test_channels_last_layers_are_shown_channels_first(image):
    torch.manual_seed(0)
    model = ChannelsLastBlock()
    inspector = Inspector(model)
    inspector.preprocess(image)
    kinds = {layer.name: layer.layout.kind for layer in inspector.layers}
    assert kinds == {"conv": "nchw", "norm": "nhwc", "fc": "nhwc", "act": "nhwc"}
    assert inspector.layer("act").shape == (5, 4, 6)
    with torch.no_grad():
        expected = model.act(model.fc(model.norm(model.conv(image).permute(0, 2, 3, 1)))).permute(0, 3, 1, 2)[0]
    torch.testing.assert_close(inspector.activations(image, "act"), expected, rtol=0, atol=0)
    # tokens without a grid the model states: refused by name, with the fix
    with pytest.raises(InputError, match=r"reshape=\{'tokens': 'nhwc'\}.*'tokens'"):
        inspector.layer("tokens")


def test_reshape_sets_a_layout_by_name_or_function(image):
    torch.manual_seed(0)
    model = ChannelsLastBlock()
    grid = lambda t: t[:, 1:].reshape(len(t), 4, 6, -1).permute(0, 3, 1, 2)  # pytorch-grad-cam style
    inspector = Inspector(model, reshape={"tokens": grid})
    inspector.preprocess(image)
    tokens = inspector.activations(image, "tokens")
    assert tokens.shape == (5, 4, 6)
    torch.testing.assert_close(tokens, inspector.activations(image, "act"))
    grad = cam.grad_cam(inspector, image, 1, layer="tokens")
    assert grad.shape == (8, 12) and hooks_left(model) == 0
    wrong = Inspector(model, reshape={"conv": "tokens"})
    wrong.preprocess(image)
    with pytest.raises(InputError, match="does not fit"):
        _ = wrong.layers
    with pytest.raises(InputError, match="unknown layer 'nope'"):
        _ = Inspector(model, reshape={"nope": "nhwc"}).layers


def test_vit_lists_its_blocks_and_takes_its_size_only():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=4, img_size=32)
    inspector = Inspector(model)
    assert inspector.input_size == (32, 32) and inspector.transform.crop == 32
    names = inspector.layer_names
    assert {"blocks.0", "blocks.11", "blocks.11.norm1", "norm"} <= set(names)
    assert inspector.layer("blocks.11").layout.kind == "tokens" and inspector.layer("blocks.11").shape == (192, 2, 2)
    assert cam.default_cam_layer(inspector) == "blocks.11.norm1"
    with pytest.raises(InputError, match=r"takes 32×32 inputs only, not 48×48"):
        inspector.preprocess(torch.zeros(1, 3, 48, 48))
    picture = (torch.rand(40, 50, 3) * 255).to(torch.uint8).numpy()
    assert inspector.preprocess(picture).shape == (1, 3, 32, 32)  # the default transform crops to the model's size
    from cnnwidgets.widgets import ActivationMaximization

    widget = ActivationMaximization(inspector, target=0)  # its default image size follows the model
    assert widget.size == 32 and widget.error == ""
    with pytest.raises(InputError, match="doesn't match model"):  # timm's own check, as one line
        ActivationMaximization(inspector, target=0, size=48)


@pytest.mark.parametrize("build, size, expected", [
    (lambda: timm.create_model("inception_v3", pretrained=False, num_classes=4), 160, "Mixed_7c"),
    (lambda: torchvision.models.googlenet(weights=None, num_classes=4, aux_logits=False, init_weights=False), 64, "inception5b"),
    (lambda: timm.create_model("convnext_nano", pretrained=False, num_classes=4), 64, "stages"),
    (lambda: timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=4, img_size=64, window_size=4), 64, "norm"),
    (lambda: torchvision.models.swin_t(weights=None, num_classes=4), 64, "norm"),
    (lambda: torchvision.models.resnet18(weights=None, num_classes=4), 64, "layer4"),
], ids=["inception_v3", "googlenet", "convnext_nano", "swin_tiny", "tv_swin_t", "resnet18"])
def test_default_cam_layer_covers_the_final_feature_map(build, size, expected):
    torch.manual_seed(0)
    model = build()
    inspector = Inspector(model)
    inspector.preprocess(torch.zeros(1, 3, size, size))
    chosen = inspector.layer(cam.default_cam_layer(inspector))
    assert chosen.name == expected
    pooled_channels = {"Mixed_7c": 2048, "inception5b": 1024, "stages": 640, "norm": 768, "layer4": 512}[expected]  # what the head pools
    assert chosen.shape[0] == pooled_channels and chosen.shape[1] * chosen.shape[2] > 1
