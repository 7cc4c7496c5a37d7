"""TopActivations: top images of a neuron cropped to its receptive field, driven from Python as from the browser."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from cnnwidgets.backend.index import build_index
from cnnwidgets.errors import InputError
from cnnwidgets.widgets.top_activations import OUTSIDE, TopActivations, field_crop
from cnnwidgets.zoo.digits import digits, digits_cnn

from tests.conftest import hooks_left


@pytest.fixture(scope="module")
def inspector():
    return digits_cnn()


@pytest.fixture(scope="module")
def index(inspector):
    return build_index(inspector, digits("test"), ["relu1", "relu3", "pool3"], k=6, progress=False)


def crops_of(widget) -> np.ndarray:
    return np.frombuffer(widget.crops["data"], np.uint8).reshape(widget.crops["shape"])


def test_crops_are_the_receptive_fields_around_the_maxima(index):
    widget = TopActivations(index, "relu3", 5)
    top = index.top("relu3", 5)
    assert widget.crops["ids"] == [image_id for image_id, _, _ in top]
    assert widget.crops["values"] == [value for _, value, _ in top]
    assert widget.crops["values"] == sorted(widget.crops["values"], reverse=True)
    field = index.receptive_field("relu3")
    assert field.size == (18, 18)
    crops = crops_of(widget)
    assert crops.shape == (6, 18, 18, 3)
    image_id, _, (row, col) = top[0]
    expected = field_crop(index.image(image_id), field.box(row, col))
    assert np.array_equal(crops[0], expected)
    assert "receptive field 18×18" in widget.crops["note"]
    assert widget.full == {}


def test_selecting_a_crop_shows_the_whole_image_with_the_field(index):
    widget = TopActivations(index, "relu3", 2)
    widget.selected = 3
    image_id, value, (row, col) = index.top("relu3", 2)[3]
    assert widget.full["id"] == image_id and widget.full["value"] == value and widget.full["selected"] == 3
    assert widget.full["shape"] == [32, 32, 3]
    top, left, bottom, right = index.receptive_field("relu3").box(row, col)
    assert widget.full["box"] == [max(0, top), max(0, left), min(32, bottom), min(32, right)]
    widget.channel = 4  # another neuron: the same slot now shows its image
    assert widget.full["id"] == index.top("relu3", 4)[3][0]
    with pytest.raises(InputError, match="selected 9 is out of range"):
        widget.selected = 9


def test_small_fields_and_whole_image_layers(index):
    assert crops_of(TopActivations(index, "relu1", 0)).shape[1:] == (3, 3, 3)  # conv1's units see 3×3 pixels
    assert crops_of(TopActivations(index, "pool3", 0)).shape[1:] == (22, 22, 3)

    from torch import nn

    from cnnwidgets import Inspector

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    images = digits("test").tensors()[0][:10]
    pooled = build_index(Inspector(model), images, ["2"], k=3, progress=False)  # [4, 1, 1]: no spatial extent
    widget = TopActivations(pooled, "2", 1)
    assert "whole image" in widget.crops["note"]
    assert crops_of(widget).shape == (3, 32, 32, 3)
    assert np.array_equal(crops_of(widget)[0], pooled.image(widget.crops["ids"][0]))


def test_layer_and_channel_validation_and_random_neurons(index):
    widget = TopActivations(index)
    assert widget.layer == "pool3" and widget.channel == 0
    assert [layer["name"] for layer in widget.layers] == ["relu1", "relu3", "pool3"]
    assert widget.layers[0]["field"] == {"size": [3, 3], "jump": [1, 1]}
    with pytest.raises(InputError, match="unknown layer"):
        widget.layer = "relu9"
    with pytest.raises(InputError, match="out of range"):
        widget.channel = 32
    widget.layer, widget.channel = "relu3", 31
    widget.layer = "relu1"  # 16 channels: the channel falls back to 0
    assert widget.channel == 0 and widget.crops["layer"] == "relu1"
    layer, channel = widget.random_neuron(seed=1)
    assert (widget.layer, widget.channel) == (layer, channel) and widget.crops["channel"] == channel


def test_a_stale_index_is_refused(tmp_path):
    inspector = digits_cnn()
    index = build_index(inspector, digits("test").tensors()[0][:20], ["relu2"], k=2, progress=False)
    with torch.no_grad():
        inspector.model.fc2.bias.add_(0.5)
    with pytest.raises(InputError, match="changed since"):
        TopActivations(index)
    with pytest.raises(InputError, match="needs an index"):
        TopActivations(inspector)


def test_to_png_and_the_model_untouched(index, inspector):
    widget = TopActivations(index, "relu3", 1)
    widget.selected = 0
    png = widget.to_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert hooks_left(inspector.model) == 0


def test_field_crop_fills_the_outside_gray():
    image = np.full((10, 10, 3), 7, np.uint8)
    crop = field_crop(image, (-2, 8, 3, 13))
    assert crop.shape == (5, 5, 3)
    assert (crop[:2] == OUTSIDE).all() and (crop[:, 2:] == OUTSIDE).all() and (crop[2:, :2] == 7).all()


def test_deconv_overlay_is_the_projection_cropped_like_the_image(inspector, index):
    widget = TopActivations(index, "relu3", 5)
    assert widget.projections == {}  # nothing computed until asked for
    widget.show = "overlay"
    assert widget.projections["ids"] == widget.crops["ids"] and widget.projections["shape"] == [6, 18, 18, 3]
    assert "max-pool switches" in widget.projections["note"]
    pictures = np.frombuffer(widget.projections["data"], np.uint8).reshape(widget.projections["shape"])
    deconv = importlib.import_module("cnnwidgets.methods.deconv")
    field = index.receptive_field("relu3")
    for slot, (image_id, _, (row, col)) in enumerate(index.top("relu3", 5)):
        image, _ = digits("test")[image_id]
        projection = deconv.deconv_projection(inspector, image, "relu3", 5)[0].numpy()  # one gray channel, 32×32
        gray = np.round(np.clip((projection / (2 * np.abs(projection).max()) + 0.5) * 255, 0, 255))
        top, left, bottom, right = field.box(row, col)
        padded = np.pad(gray, 18, constant_values=OUTSIDE)  # outside the image: 128, zero in a projection picture
        expected = padded[top + 18:bottom + 18, left + 18:right + 18]
        assert np.array_equal(pictures[slot], np.repeat(expected[..., None], 3, 2).astype(np.uint8))
    # what is drawn (and exported): the projection over the image at the opacity
    widget.opacity = 0.25
    blended = np.round(0.75 * crops_of(widget).astype(float) + 0.25 * pictures).astype(np.uint8)
    assert np.array_equal(widget.shown_crops(), blended)
    widget.show = "projection"
    assert np.array_equal(widget.shown_crops(), pictures)
    # cached per neuron: coming back to it reuses the answer without a backward pass
    answer = widget.projections
    widget.channel = 6
    assert widget.projections["channel"] == 6
    widget.channel = 5
    assert widget.projections is answer
    assert hooks_left(inspector.model) == 0


def test_deconv_overlay_says_why_when_the_model_does_not_allow_it():
    from torch import nn

    from cnnwidgets import Inspector

    images = digits("test").tensors()[0][:10]
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GELU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 28 * 28, 3))
    gelu = TopActivations(build_index(Inspector(model), images, ["3"], k=2, progress=False), "3", 0, show="projection")
    assert gelu.projections["ids"] == [] and "GELU" in gelu.projections["note"] and gelu.error == ""
    assert np.array_equal(gelu.shown_crops(), crops_of(gelu))  # the images stay
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 30 * 30, 3))
    unpooled = TopActivations(build_index(Inspector(plain), images, ["1"], k=2, progress=False), "1", 0, show="overlay")
    assert len(unpooled.projections["ids"]) == 2 and "no nn.MaxPool layers" in unpooled.projections["note"]
