"""LayerExplorer's Python side: traits drive the view, bad values keep the old state, no forward on switches."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import psutil
import pytest
import torch

from cnnwidgets import Inspector, InputError, LayerExplorer, LayerNotFoundError
from cnnwidgets.backend import inspector as inspector_module

from tests.conftest import hooks_left


@pytest.fixture(scope="module")
def explorer(lite0, cat):
    return LayerExplorer(lite0, cat)


def maps_of(widget: LayerExplorer) -> np.ndarray:
    return np.frombuffer(widget.maps["data"], np.uint8).reshape(widget.maps["shape"])


def test_starts_on_the_first_activation_layer_with_predictions(explorer):
    assert explorer.layer == "_stem_act" and explorer.maps["layer"] == "_stem_act"
    assert maps_of(explorer).shape == (32, 112, 112)
    assert explorer.predictions[0]["label"] in {"Egyptian cat", "tiger cat", "tabby"}
    assert np.frombuffer(explorer.image["data"], np.uint8).size == 224 * 224 * 3
    assert [layer["name"] for layer in explorer.layers][:2] == ["_conv_stem", "_stem_act"]


def test_maps_are_the_layers_activations_on_one_scale(explorer, lite0, cat):
    explorer.layer = "_blocks.2._expand_act"
    activations = lite0.activations(cat, "_blocks.2._expand_act")
    expected = (activations - activations.min()) / (activations.max() - activations.min()) * 255
    np.testing.assert_allclose(maps_of(explorer), expected.round().numpy(), atol=1)
    stats = explorer.maps["stats"]
    assert stats["dead"] == (activations.flatten(1).amax(1) == 0).tolist()
    np.testing.assert_allclose(stats["max"], activations.flatten(1).amax(1).numpy(), rtol=1e-6)
    explorer.normalize = "channel"
    assert maps_of(explorer).reshape(len(activations), -1).max(1).tolist() == [
        0 if dead else 255 for dead in stats["dead"]]
    explorer.normalize = "layer"


def test_switching_layers_and_channels_runs_no_forward(explorer, monkeypatch):
    forwards = []
    monkeypatch.setattr(inspector_module, "capture_outputs", lambda *a: forwards.append(a))
    for layer in ("_blocks.0", "_blocks.6._depthwise_act", "_head_act", "_conv_stem"):
        before = explorer.maps["data"]
        explorer.layer = layer
        explorer.channel = 3
        assert explorer.maps["layer"] == layer and explorer.maps["data"] != before
    assert forwards == []


def test_unknown_layer_or_channel_raises_and_keeps_the_view(explorer):
    explorer.layer, explorer.channel = "_blocks.1._expand_act", 5
    maps, filters = explorer.maps, explorer.filters
    with pytest.raises(LayerNotFoundError, match="did you mean"):
        explorer.layer = "_blocks.1._expand_ac"
    with pytest.raises(InputError, match="channels 0..95"):
        explorer.channel = 96
    assert (explorer.layer, explorer.channel) == ("_blocks.1._expand_act", 5)
    assert explorer.maps is maps and explorer.filters is filters


def test_filters_are_rgb_for_the_first_conv_and_sliced_deeper(explorer, lite0):
    explorer.layer = "_stem_act"
    assert explorer.filters["source"] == "_conv_stem" and explorer.filters["shape"] == [32, 3, 3, 3]
    explorer.layer = "_blocks.1._project_conv"
    weight = lite0.model._blocks[1]._project_conv.weight.detach()
    assert explorer.filters["shape"] == [24, 1, 1, 1] and explorer.filter_in_channels == 96
    explorer.filter_slice = 7
    picked = np.frombuffer(explorer.filters["data"], np.uint8).reshape(24)
    # 1×1 filters share one symmetric scale: 128 is zero, the largest |weight| reaches 0 or 255
    expected = (weight[:, 7, 0, 0] / weight[:, 7].abs().max() * 127.5 + 127.5).round().numpy()
    np.testing.assert_allclose(picked, expected, atol=1)
    with pytest.raises(InputError, match="filter_slice"):
        explorer.filter_slice = 96
    explorer.layer = "_blocks.3"  # a block shows the filters of its last conv
    assert explorer.filters["source"] == "_blocks.3._project_conv" and explorer.filter_slice == -1


def test_dead_on_all_images(lite0, cat):
    from cnnwidgets import zoo

    widget = LayerExplorer(lite0, cat, images=[zoo.sample_image("coffee")], layer="_blocks.6._expand_act")
    dead_cat = widget.maps["stats"]["dead"]
    dead_coffee = (lite0.activations(zoo.sample_image("coffee"), widget.layer).flatten(1).amax(1) == 0).tolist()
    assert widget.maps["stats"]["dead_all"] == [a and b for a, b in zip(dead_cat, dead_coffee)]
    assert widget.maps["stats"]["n_images"] == 2


def test_to_png_exports_the_view(explorer, tmp_path):
    explorer.layer, explorer.channel = "_blocks.5._expand_act", 7
    png = explorer.to_png(tmp_path / "view.png")
    picture = PIL.Image.open(io.BytesIO(png))
    assert picture.width > 800 and (tmp_path / "view.png").read_bytes() == png
    assert len(np.unique(np.asarray(picture.convert("RGB")).reshape(-1, 3), axis=0)) > 50


def test_bad_image_shows_an_error_and_keeps_the_last_view(lite0, cat):
    widget = LayerExplorer(lite0, cat)
    maps, image = widget.maps, widget.image
    with pytest.raises(InputError, match="NaN"):
        widget.set_image(torch.full((3, 224, 224), float("nan")))
    assert "NaN" in widget.error and widget.maps is maps and widget.image is image
    widget.set_image(np.asarray(cat)[::-1].copy())  # the cat upside down
    assert widget.error == "" and widget.image != image


def test_unknown_keyword_is_a_type_error_listing_valid_ones(lite0, cat):
    with pytest.raises(TypeError, match="colormap"):
        LayerExplorer(lite0, cat, colourmap="magma")


def test_works_on_a_tiny_model_and_leaves_no_hooks(tiny, tiny_input):
    widget = LayerExplorer(Inspector(tiny), tiny_input, layer="relu")
    assert widget.maps["stats"]["dead"] == [True, False]
    assert widget.filters["shape"] == [2, 2, 2, 1] and hooks_left(tiny) == 0


def test_memory_stays_bounded_over_many_switches(lite0, cat):
    widget = LayerExplorer(lite0, cat)
    names = [layer["name"] for layer in widget.layers]
    process = psutil.Process()
    for name in names[:50]:
        widget.layer = name
    start = process.memory_info().rss
    for step in range(500):
        widget.layer = names[step % len(names)]
        widget.channel = step % widget.maps["shape"][0]
    growth = process.memory_info().rss - start
    assert growth < 64 * 2**20, f"memory grew by {growth / 2**20:.0f} MiB over 500 switches"
    assert lite0.memo.bytes <= lite0.memo.max_bytes


def test_a_bare_model_is_wrapped_in_an_inspector(tiny, tiny_input):
    widget = LayerExplorer(tiny, tiny_input)
    assert widget.inspector.model is tiny and widget.layer == "relu"
