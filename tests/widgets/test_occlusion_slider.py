"""OcclusionSlider's Python side: the readout follows the occluder, maps fill in without blocking, bad values are refused."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import PIL.Image
import pytest
import torch

from cnnwidgets import InputError
from cnnwidgets.methods.occlusion import centered_box, grid_boxes, occluded_logits, occlusion
from cnnwidgets.widgets.occlusion_slider import OcclusionSlider

from tests.conftest import hooks_left


@pytest.fixture(scope="module")
def slider(lite0, cat):
    return OcclusionSlider(lite0, cat, patch=112, stride=56)


def grid(message) -> np.ndarray:
    return np.frombuffer(message["data"], np.float32).reshape(message["shape"])


def test_starts_on_the_top_class_with_the_square_in_the_middle(slider, lite0, cat):
    assert slider.target == lite0.class_index(None, cat)
    assert (slider.x, slider.y) == (112.0, 112.0) and slider.size == [224, 224]
    readout = slider.readout
    assert readout["box"] == [56, 56, 168, 168] and readout["label"] == lite0.label(slider.target)
    expected = occluded_logits(lite0, cat, [(56, 56, 168, 168)])[0].softmax(-1)
    assert readout["probability"] == pytest.approx(float(expected[slider.target]), abs=1e-4)
    assert readout["top_label"] == lite0.label(int(expected.argmax()))


def test_heatmap_equals_the_method_and_is_complete_outside_an_event_loop(slider, lite0, cat):
    assert slider.heatmap["done"] and slider.progress == 1.0 and slider.heatmap["shape"] == [3, 3]
    expected = occlusion(lite0, cat, slider.target, patch=112, stride=56, progress=False)
    np.testing.assert_allclose(grid(slider.heatmap), expected.numpy(), atol=1e-4)
    logits = occluded_logits(lite0, cat, grid_boxes((224, 224), 112, 56))
    assert slider.top_map["classes"] == logits.argmax(-1).tolist()
    np.testing.assert_allclose(grid(slider.top_map).ravel(), logits.softmax(-1).amax(-1).numpy(), atol=1e-4)


def test_a_fast_sequence_of_moves_ends_on_the_last_answer(slider, lite0, cat):
    for step in range(12):
        slider.request += 1
        slider.x, slider.y = 10.0 + 17 * step, 200.0 - 13 * step
    readout = slider.readout
    assert readout["request"] == slider.request and (readout["x"], readout["y"]) == (slider.x, slider.y)
    box = centered_box(slider.y, slider.x, slider.patch, (224, 224))
    expected = occluded_logits(lite0, cat, [box])[0].softmax(-1)[slider.target]
    assert readout["box"] == list(box) and readout["probability"] == pytest.approx(float(expected), abs=1e-4)


def test_one_browser_message_with_several_traits_is_answered_once(slider, monkeypatch):
    from cnnwidgets.widgets import occlusion_slider as module

    calls = []
    real = module.occluded_logits
    monkeypatch.setattr(module, "occluded_logits", lambda *a, **k: calls.append(a) or real(*a, **k))
    slider.set_state({"x": 40.0, "y": 50.0, "request": slider.request + 1})
    assert len(calls) == 1 and slider.readout["x"] == 40.0


def test_bad_values_are_refused_and_keep_the_view(slider):
    readout, heatmap = slider.readout, slider.heatmap
    for name, value, message in [("patch", 300, "larger than"), ("stride", 0, "at least 1"), ("x", -4.0, "outside"),
                                 ("target", 1000, "out of range"), ("layer", "_blocks.99", "unknown layer")]:
        with pytest.raises(InputError, match=message):
            setattr(slider, name, value)
    assert slider.readout is readout and slider.heatmap is heatmap
    with pytest.raises(TypeError, match="patch"):
        OcclusionSlider(slider.inspector, patches=3)


def test_feature_map_panel(lite0, cat):
    widget = OcclusionSlider(lite0, cat, patch=112, stride=56, layer="_blocks.1._expand_act", channel=4)
    feature = grid(widget.feature_map)
    boxes = grid_boxes((224, 224), 112, 56)
    batch = lite0.preprocess(cat).expand(len(boxes), -1, -1, -1).clone()
    for n, (y0, x0, y1, x1) in enumerate(boxes):
        batch[n, :, y0:y1, x0:x1] = 0
    with torch.inference_mode():
        block = lite0.model._blocks[1]
        stem = lite0.model._stem_act(lite0.model._bn0(lite0.model._conv_stem(batch)))
        maps = block._expand_act(block._bn0(block._expand_conv(lite0.model._blocks[0](stem))))
    np.testing.assert_allclose(feature.ravel(), maps[:, 4].sum((1, 2)).numpy(), rtol=1e-4)
    assert widget.feature_map["layer"] == "_blocks.1._expand_act" and hooks_left(lite0.model) == 0


def test_maps_fill_in_chunks_on_the_event_loop_and_a_change_cancels_them(tiny, tiny_input):
    from cnnwidgets import Inspector

    inspector = Inspector(tiny)
    pushes = []

    async def scenario():
        widget = OcclusionSlider(inspector, tiny_input, patch=1, stride=1)
        widget.observe(lambda change: pushes.append(dict(change["new"])), "heatmap")
        assert widget.progress < 1.0  # nothing computed yet: the constructor returned at once
        widget.stride = 2  # a new setting cancels the first run
        for _ in range(200):
            await asyncio.sleep(0)
            if widget.progress == 1.0:
                break
        return widget

    widget = asyncio.run(scenario())
    assert widget.heatmap["done"] and widget.heatmap["stride"] == 2 and widget.heatmap["shape"] == [2, 2]
    assert all(push.get("stride") == 2 for push in pushes if push)
    expected = occlusion(inspector, tiny_input, widget.target, patch=1, stride=2, progress=False)
    np.testing.assert_allclose(grid(widget.heatmap), expected.numpy(), atol=1e-6)


def test_to_png(slider, tmp_path):
    slider.layer, slider.channel = "_blocks.2._expand_act", 1
    png = slider.to_png(tmp_path / "occlusion.png")
    picture = PIL.Image.open(io.BytesIO(png))
    assert picture.width > 1000 and (tmp_path / "occlusion.png").read_bytes() == png
    assert len(np.unique(np.asarray(picture.convert("RGB")).reshape(-1, 3), axis=0)) > 100
