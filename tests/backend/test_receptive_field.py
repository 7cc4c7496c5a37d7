"""Receptive fields traced through any model equal the published values of known architectures; measured by
gradient support they equal the traced ones, and they stand in where tracing fails."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from cnnwidgets import Inspector
from cnnwidgets.errors import InputError, LayerNotFoundError
from cnnwidgets.backend.receptive_field import ReceptiveField, gradient_receptive_field, receptive_field, receptive_fields
from cnnwidgets.zoo.efficientnet_lite0 import EfficientNetLite0

from tests.conftest import hooks_left, model_state, assert_same_state


@pytest.fixture(scope="module")
def vgg16_fields():
    return receptive_fields(torchvision.models.vgg16(weights=None))


def test_vgg16_matches_the_published_sizes(vgg16_fields):
    # Araujo et al., Distill 2019 (VGG-16: 212 px at pool5); per layer as in the standard table:
    # conv1_2 5, pool1 6, conv2_2 14, conv3_3 40, conv4_3 92, pool4 100, conv5_3 196, pool5 212.
    published = {"features.2": 5, "features.4": 6, "features.7": 14, "features.14": 40, "features.21": 92,
                 "features.23": 100, "features.28": 196, "features.30": 212}
    for layer, size in published.items():
        assert vgg16_fields[layer].size == (size, size), layer
    conv5_3 = vgg16_fields["features.28"]
    assert conv5_3.jump == (16, 16)
    assert conv5_3.center(0, 0) == (7.5, 7.5)  # symmetric padding: unit i is centred on pixel 16·i + 7.5
    assert conv5_3.center(3, 5) == (16 * 3 + 7.5, 16 * 5 + 7.5)
    assert conv5_3.box(0, 0) == (-90, -90, 106, 106)
    assert conv5_3.clipped_box(0, 0) == (0, 0, 106, 106)  # the part of the field that is image, not padding
    assert conv5_3.clipped_box(13, 13) == (118, 118, 224, 224)


def test_alexnet_matches_the_published_sizes():
    fields = receptive_fields(torchvision.models.alexnet(weights=None))
    # conv1 11 (stride 4), pool1 19, conv2 51, pool2 67, conv3 99, conv4 131, conv5 163, pool5 195 (Araujo et al.)
    sizes = {"features.0": 11, "features.2": 19, "features.3": 51, "features.5": 67, "features.6": 99,
             "features.8": 131, "features.10": 163, "features.12": 195}
    for layer, size in sizes.items():
        assert fields[layer].size == (size, size), layer
    assert fields["features.0"].jump == (4, 4) and fields["features.12"].jump == (32, 32)


def test_resnets_take_the_union_of_their_branches():
    resnet18 = receptive_fields(torchvision.models.resnet18(weights=None))
    # 7×7/2 conv, 3×3/2 pool, then 3×3 convs only: 7, 11, +4·8 (layer1) = 43, 99, 211, 435 at layer4
    assert resnet18["maxpool"].size == (11, 11)
    assert resnet18["layer1"].size == (43, 43)
    assert resnet18["layer2"].size == (99, 99)
    assert resnet18["layer3"].size == (211, 211)
    assert resnet18["layer4"].size == (435, 435) and resnet18["layer4"].jump == (32, 32)
    # the ReLU module of a block runs twice: each call has its own field
    assert resnet18["layer1.0.relu#1"].size == (19, 19) and resnet18["layer1.0.relu#2"].size == (27, 27)
    # the global pool sees everything
    assert resnet18["avgpool"].covers_input
    # torchvision's ResNet-50 (stride on the 3×3 conv, "v1.5"): 427 px; TF-slim's v1 (stride on the 1×1) has 483
    assert receptive_field(torchvision.models.resnet50(weights=None), "layer4").size == (427, 427)


def test_tensorflow_same_padding_is_traced_through_functional_pads():
    fields = receptive_fields(EfficientNetLite0())
    stem = fields["_conv_stem"]
    assert stem.size == (3, 3) and stem.jump == (2, 2) and stem.start == (0, 0)  # "same" pads only bottom/right at 224
    assert fields["_blocks.1._depthwise_conv"].start == (-2, -2)  # 3×3/2 after stride 2: pad 1 (= 2 px) before
    assert fields["_conv_head"].jump == (32, 32)


def test_dilation_and_padding_strings():
    model = nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2, padding="same"), nn.Conv2d(1, 1, 3, stride=2), nn.Flatten(), nn.LazyLinear(2))
    fields = receptive_fields(model, (1, 1, 20, 20))
    assert fields["0"] == ReceptiveField(size=(5, 5), jump=(1, 1), start=(-2, -2), input_size=(20, 20))
    assert fields["1"].size == (7, 7) and fields["1"].jump == (2, 2)


class Upsampling(nn.Module):
    """A 3×3 conv, then a nearest 2× upsampling: units 2i and 2i + 1 of `after` both see conv unit i."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)
        self.after = nn.ReLU()

    def forward(self, x):
        return self.after(nn.functional.interpolate(self.conv(x), scale_factor=2)).mean((2, 3))


def test_fields_without_one_size_and_jump_are_none_and_unknown_names_are_refused():
    fields = receptive_fields(Upsampling(), (1, 1, 16, 16))
    assert fields["conv"].size == (3, 3)
    assert fields["after"] is None
    with pytest.raises(InputError, match="unknown layer"):
        receptive_field(Upsampling(), "convv", (1, 1, 16, 16))


def test_tracing_leaves_the_model_as_it_was():
    model = torchvision.models.resnet18(weights=None).train()
    before = model_state(model)
    receptive_fields(model, (1, 3, 64, 64))
    assert_same_state(before, model_state(model))
    assert hooks_left(model) == 0


@pytest.mark.parametrize(
    ("architecture", "units"),
    [
        (torchvision.models.vgg11, [("features.2", (0, 0)), ("features.10", (1, 2)), ("features.20", (1, 0))]),
        (torchvision.models.resnet18, [("maxpool", (3, 2)), ("layer1", (15, 0)), ("layer2.0.relu#2", (2, 1))]),
    ],
)
def test_gradient_support_equals_the_traced_field(architecture, units):
    shape = (1, 3, 64, 64)
    model = architecture(weights=None)
    fields = receptive_fields(model, shape)
    for layer, (row, col) in units:
        assert gradient_receptive_field(model, layer, (row, col), shape) == fields[layer].clipped_box(row, col), layer


def test_gradient_support_sees_past_zero_weights_dead_units_and_max_pools(tiny):
    # TinyCNN's channel 0 has a zero weight, channel 1 a bias of -10 (dead on small inputs), then a 2×2 max pool:
    # its real gradients would miss pixels, the wiring does not
    assert gradient_receptive_field(tiny, "conv", (1, 2), (1, 1, 4, 4)) == (1, 2, 3, 4)
    assert gradient_receptive_field(tiny, "pool", (0, 0), (1, 1, 4, 4)) == (0, 0, 3, 3)  # conv units 0..1 → pixels 0..2
    x = torch.zeros(1, 1, 4, 4, requires_grad=True)
    tiny.conv(x)[0, 0, 1, 2].backward()
    assert x.grad[0, 0].nonzero().tolist() == [[1, 2], [2, 3]]  # what the real weights show: two pixels of four
    # an adaptive max pool too: 6×6 conv units into 2×2 windows of 3, so unit (1, 0) sees rows 3..7, columns 0..4
    adaptive = nn.Sequential(nn.Conv2d(1, 1, 3), nn.AdaptiveMaxPool2d(2))
    assert gradient_receptive_field(adaptive, "1", (1, 0), (1, 1, 8, 8)) == (3, 0, 8, 5)
    assert receptive_fields(adaptive, (1, 1, 8, 8))["1"].clipped_box(1, 0) == (3, 0, 8, 5)


class PixelUnshuffleNet(nn.Module):
    """A 1×1 conv, space-to-depth (2×2 blocks into channels), then a 3×3 conv with padding 1: the tracer cannot
    follow the unshuffle. By hand: a unit of `unshuffle` sees a 2×2 block (size 2, jump 2, start 0); the conv
    adds one unit each side (2 px each): size 6, jump 2, start −2."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Conv2d(3, 3, 1)
        self.unshuffle = nn.PixelUnshuffle(2)
        self.conv = nn.Conv2d(12, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv(self.unshuffle(self.mix(x)))).mean((2, 3))


class CropNet(nn.Module):
    """A 3×3 conv, a crop of 2 px each side (a spatial slice), then a 3×3 conv with stride 2. By hand: after the
    crop a unit i sees rows i + 2 … i + 4; after the strided conv unit i sees rows 2i + 2 … 2i + 6 (size 5)."""

    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(1, 2, 3)
        self.second = nn.Conv2d(2, 2, 3, stride=2)

    def forward(self, x):
        return self.second(self.first(x)[:, :, 2:-2, 2:-2])


def test_untraceable_layers_are_measured_instead():
    fields = receptive_fields(PixelUnshuffleNet(), (1, 3, 16, 16))
    assert fields["unshuffle"] == ReceptiveField(size=(2, 2), jump=(2, 2), start=(0.0, 0.0), input_size=(16, 16))
    assert fields["conv"] == ReceptiveField(size=(6, 6), jump=(2, 2), start=(-2.0, -2.0), input_size=(16, 16))
    assert fields["relu"] == fields["conv"]
    crop = receptive_fields(CropNet(), (1, 1, 20, 20))
    assert crop["first"] == ReceptiveField(size=(3, 3), jump=(1, 1), start=(0, 0), input_size=(20, 20))  # traced
    assert crop["second"] == ReceptiveField(size=(5, 5), jump=(2, 2), start=(2.0, 2.0), input_size=(20, 20))
    # the index (and so TopActivations' crops) gets the measured field
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    index = Inspector(PixelUnshuffleNet(), transform=lambda image: image).index(images, ["conv"], k=2, progress=False)
    assert index.receptive_field("conv") == fields["conv"]


def test_units_of_fields_without_one_size_and_jump_can_be_measured():
    # after the upsampling, units 4 and 5 both see conv unit 2: rows and columns 2 … 4
    assert gradient_receptive_field(Upsampling(), "after", (5, 4), (1, 1, 16, 16)) == (2, 2, 5, 5)
    assert gradient_receptive_field(Upsampling(), "after", (4, 5), (1, 1, 16, 16)) == (2, 2, 5, 5)


def test_measuring_leaves_the_model_as_it_was():
    model = torchvision.models.resnet18(weights=None).train()
    before = model_state(model)
    inplace = [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)]
    gradient_receptive_field(model, "layer1", (3, 3), (1, 3, 64, 64))
    assert_same_state(before, model_state(model))
    assert hooks_left(model) == 0
    assert [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)] == inplace == [True] * len(inplace)
    assert all(p.grad is None for p in model.parameters())
    net = PixelUnshuffleNet()
    before = model_state(net)
    receptive_fields(net, (1, 3, 16, 16))  # measures `unshuffle`, `conv` and `relu` on a copy
    assert_same_state(before, model_state(net))
    assert hooks_left(net) == 0 and net.relu.inplace


def test_measuring_refuses_bad_input(tiny):
    with pytest.raises(LayerNotFoundError, match="did you mean 'conv'"):
        gradient_receptive_field(tiny, "cnv", (0, 0), (1, 1, 4, 4))
    with pytest.raises(InputError, match=r"outside this layer's 3×3 grid"):
        gradient_receptive_field(tiny, "conv", (3, 0), (1, 1, 4, 4))
    with pytest.raises(InputError, match=r"input_shape must be \(N, C, H, W\)"):
        gradient_receptive_field(tiny, "conv", (0, 0), (1, 4, 4))
    with pytest.raises(InputError, match="not a map on the input.s grid"):
        gradient_receptive_field(tiny, "fc", (0, 0), (1, 1, 4, 4))


# --- modern architectures: permutes, gates, tokens, windows --------------------------------------------------------


def test_mobilenet_v2_and_inception_v3_match_the_published_sizes():
    # Araujo et al., Distill 2019: MobileNetV2 491 px (its last conv), Inception v3 1311 px (Mixed_7c)
    mobilenet = receptive_fields(torchvision.models.mobilenet_v2(weights=None), (1, 3, 224, 224), layers=["features.18"])
    assert mobilenet["features.18"].size == (491, 491) and mobilenet["features.18"].jump == (32, 32)
    inception = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    assert receptive_fields(inception, (1, 3, 299, 299), layers=["Mixed_7c"])["Mixed_7c"].size == (1311, 1311)


def test_convnext_is_traced_through_its_channels_last_blocks():
    # timm convnext_nano, by hand: a 4×4/4 stem (size 4, jump 4, start 0); each block's 7×7 depthwise conv (pad 3)
    # adds 6 units: 24 px in stage 0, 48, 96, 192 after the 2×2/2 downsamples (+4, +8, +16 px). Depths 2, 2, 8, 2:
    # stage 0 4 + 2·24 = 52; stage 1 56 + 2·48 = 152; stage 2 160 + 8·96 = 928; stage 3 944 + 2·192 = 1328.
    # Inside a block the LayerNorm and MLP run on [N, H, W, C] (after a permute): same field as the conv before.
    timm = pytest.importorskip("timm")
    fields = receptive_fields(timm.create_model("convnext_nano", pretrained=False), (1, 3, 64, 64))
    assert fields["stem"] == ReceptiveField(size=(4, 4), jump=(4, 4), start=(0, 0), input_size=(64, 64))
    assert fields["stages.0.blocks.0.conv_dw"].size == (28, 28) and fields["stages.0.blocks.0.conv_dw"].start == (-12, -12)
    assert fields["stages.0.blocks.0.norm"] == fields["stages.0.blocks.0.conv_dw"]  # NHWC LayerNorm
    assert fields["stages.0.blocks.0.mlp.fc2"] == fields["stages.0.blocks.0.conv_dw"]  # NHWC linear layers
    sizes = {"stages.0": 52, "stages.1": 152, "stages.2": 928, "stages.3": 1328}
    for layer, size in sizes.items():
        assert fields[layer].size == (size, size), layer
    assert fields["stages.3"].jump == (32, 32)
    assert None not in fields.values()


def test_efficientnet_gates_do_not_widen_the_field():
    # timm efficientnet_b0: stem 3×3/2 pad 1 (3, jump 2, start −1); block 0 depthwise 3×3 (7); block 1.0 expands
    # (1×1), then a 3×3/2 depthwise: 11 px, jump 4. Its squeeze-excitation multiplies the map by a gate computed
    # from the whole map; by the rule used here a gate scales the map and does not widen it: the SE output keeps
    # the depthwise conv's 11 px, while the gate itself (after the global mean) covers the input.
    timm = pytest.importorskip("timm")
    fields = receptive_fields(timm.create_model("efficientnet_b0", pretrained=False), (1, 3, 64, 64))
    assert fields["conv_stem"] == ReceptiveField(size=(3, 3), jump=(2, 2), start=(-1, -1), input_size=(64, 64))
    assert fields["blocks.0.0.conv_dw"].size == (7, 7)
    assert fields["blocks.1.0.conv_dw"].size == (11, 11) and fields["blocks.1.0.conv_dw"].jump == (4, 4)
    assert fields["blocks.1.0.se"] == fields["blocks.1.0.bn2"]
    assert fields["blocks.1.0.se.conv_reduce"].covers_input and fields["blocks.1.0.se.gate"].covers_input
    assert None not in fields.values()


def test_vision_transformer_patches_then_the_whole_image():
    # vit_tiny_patch16: the patch embedding is a 16×16/16 conv (16 px, jump 16); its tokens [N, 1 + H·W, D] keep
    # that field through the first LayerNorm; after the first attention every token has seen the whole image.
    timm = pytest.importorskip("timm")
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64)
    fields = receptive_fields(model, (1, 3, 64, 64))
    assert fields["patch_embed.proj"] == ReceptiveField(size=(16, 16), jump=(16, 16), start=(0, 0), input_size=(64, 64))
    assert fields["patch_embed"] == fields["patch_embed.proj"] == fields["blocks.0.norm1"]
    assert fields["blocks.0.attn"].covers_input and fields["blocks.0.attn"].jump == (0, 0)
    assert all(fields[name].covers_input for name in fields if name.startswith(("blocks.0.mlp", "blocks.1")) or name == "norm")
    assert fields["norm_pre"] == fields["patch_embed"]  # before the first attention
    assert gradient_receptive_field(model, "blocks.0.norm1", (2, 1), (1, 3, 64, 64)) == (32, 16, 48, 32)
    assert gradient_receptive_field(model, "blocks.0", (2, 1), (1, 3, 64, 64)) == (0, 0, 64, 64)


def test_swin_window_attention_has_no_single_field_and_says_which_layer_to_pick():
    # inside shifted windows the units of a window share its field: no single size and stride. The last stage's
    # window is its whole 7×7 grid, so there every unit sees the whole image again.
    swin = torchvision.models.swin_t(weights=None)
    fields = receptive_fields(swin)
    assert fields["features.0"].size == (4, 4) and fields["features.0"].jump == (4, 4)  # patches, [N, H, W, C]
    assert fields["features.1.0.attn"] is None
    assert fields["features.7"].covers_input
    with pytest.raises(InputError, match="pick another layer, e.g. 'features.1.0.norm1'"):
        receptive_field(swin, "features.1.0.attn")


def _matrix_model(name: str):
    timm = pytest.importorskip("timm")
    if name.startswith("tv:"):
        name = name[3:]
        extra = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
        # squeezenet at 65 px: its unpadded 7×7/2 conv reads every pixel only where the size is odd
        return getattr(torchvision.models, name)(weights=None, **extra), {"swin_t": 224, "squeezenet1_0": 65}.get(name, 64)
    # inception_v3 at its own 299 px: at other sizes its unpadded stride-2 convs leave the last row and column
    # unread (96 px: pixels 93-95 reach no unit), and the traced field, a formula per unit, still spans them
    size = {"inception_v3": 299, "swin_tiny_patch4_window7_224": 224}.get(name, 64)
    extra = {"img_size": 64} if name == "vit_tiny_patch16_224" else {}
    return timm.create_model(name, pretrained=False, **extra), size


MATRIX = ["resnet50", "resnet18d", "seresnext26d_32x4d", "efficientnet_b0", "tf_efficientnet_b0", "mobilenetv3_large_100",
          "convnext_nano", "regnety_008", "densenet121", "inception_v3", "vgg11_bn", "repvgg_a0", "dla34", "ghostnet_100",
          "cspresnet50", "hrnet_w18_small", "mobilevit_xxs", "vit_tiny_patch16_224", "swin_tiny_patch4_window7_224",
          "tv:googlenet", "tv:squeezenet1_0", "tv:shufflenet_v2_x1_0", "tv:mnasnet0_5", "tv:alexnet", "tv:swin_t",
          "tv:resnet18", "tv:mobilenet_v2"]


@pytest.mark.parametrize("name", MATRIX)
def test_measured_fields_equal_traced_ones_across_the_model_matrix(name):
    # the measured field (gradient support, activations and norms as the identity, gates held) equals the traced
    # one at a middle layer and at the last map of each model, where the traced one exists: saturating ReLU6
    # after residual adds (MobileNetV2 features.14), hardswish and sigmoid gates do not hide pixels
    torch.set_num_threads(1)
    model, size = _matrix_model(name)
    shape = (1, 3, size, size)
    fields = {layer: field for layer, field in receptive_fields(model, shape).items() if field is not None}
    names = list(fields)
    picks = {names[len(names) // 3], names[len(names) // 2], names[-1]}
    if name == "tv:mobilenet_v2":
        picks.add("features.14")
    for layer in sorted(picks):
        for unit in ((0, 0), (1, 1)):
            try:
                measured = gradient_receptive_field(model, layer, unit, shape)
            except InputError as error:
                assert "outside this layer" in str(error)
                continue
            assert measured == fields[layer].clipped_box(*unit), (layer, unit)
