"""SaliencyOverlay's Python side: traits drive the maps, answers say what they show, bad values keep the view."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest
import torch
import traitlets

from cnnwidgets import Inspector, InputError
from cnnwidgets.backend import gradients as backend_gradients
from cnnwidgets.backend.preprocess import IMAGENET_MEAN, IMAGENET_STD
from cnnwidgets.methods import cam, gradients
from cnnwidgets.methods.reduce import display_map, to_uint8
from cnnwidgets.widgets.saliency_overlay import SaliencyOverlay

from tests.conftest import TinyCNN, hooks_left, model_state, assert_same_state


def maps_of(widget) -> np.ndarray:
    return np.frombuffer(widget.maps["data"], np.uint8).reshape(widget.maps["shape"])


@pytest.fixture
def overlay():
    torch.manual_seed(0)
    inspector = Inspector(TinyCNN(), labels=["cat", "dog", "tabby cat"])
    return SaliencyOverlay(inspector, torch.arange(16, dtype=torch.float32).view(1, 4, 4))


def test_starts_on_the_top_class_with_the_gradient(overlay):
    assert overlay.target == 1 and overlay.method == "saliency" and overlay.layer == "relu"
    assert overlay.maps["methods"] == ["saliency"] and overlay.maps["target"] == 1 and overlay.maps["label"] == "dog"
    expected = to_uint8(display_map(gradients.saliency(overlay.inspector, overlay._batch, 1))).numpy()
    assert np.array_equal(maps_of(overlay)[0], expected)
    assert [p["index"] for p in overlay.predictions][:2] == [1, 2]
    assert overlay.labels == ["cat", "dog", "tabby cat"]
    assert np.frombuffer(overlay.image["data"], np.uint8).reshape(overlay.image["shape"]).shape == (4, 4, 3)


def test_method_class_and_side_by_side_update_live(overlay):
    overlay.method = "grad_cam"
    assert overlay.maps["methods"] == ["grad_cam"] and overlay.maps["layer"] == "relu"
    expected = to_uint8(display_map(cam.grad_cam(overlay.inspector, overlay._batch, 1))).numpy()
    assert np.array_equal(maps_of(overlay)[0], expected)
    overlay.set_class("tabby cat")
    assert overlay.target == 2 and overlay.maps["target"] == 2
    overlay.compare = ["saliency", "deconvnet", "layer_cam"]
    overlay.side_by_side = True
    assert maps_of(overlay).shape == (3, 4, 4) and overlay.maps["titles"] == ["Gradient", "Deconvnet", "Layer-CAM"]
    # one shared scale: each map's strongest evidence is 255
    assert all(frame.max() == 255 for frame in maps_of(overlay))


def test_opacity_and_colormap_need_no_recompute(overlay, monkeypatch):
    calls = []
    monkeypatch.setattr(overlay, "_show", lambda: calls.append(1))
    overlay.opacity, overlay.colormap = 0.2, "magma"
    assert calls == []


def test_a_class_switch_reuses_kept_maps_and_forwards(overlay, monkeypatch):
    overlay.method = "grad_cam"
    overlay.target = 0
    overlay.target = 1
    built = []
    original = backend_gradients.LayerForward.__init__
    monkeypatch.setattr(backend_gradients.LayerForward, "__init__", lambda self, *a, **k: (built.append(1), original(self, *a, **k))[1])
    for target in (0, 2, 1):
        overlay.target = target
    assert built == []


def test_a_class_switch_for_gradient_methods_runs_no_new_forward(overlay, monkeypatch):
    overlay.method = "guided_backprop"
    built = []
    original = backend_gradients.InputForward.__init__
    monkeypatch.setattr(backend_gradients.InputForward, "__init__", lambda self, *a, **k: (built.append(1), original(self, *a, **k))[1])
    overlay.target = 0
    overlay.method = "saliency"  # the image's plain-gradient graph is kept from the first view
    overlay.target = 2
    assert built == []
    expected = to_uint8(display_map(gradients.saliency(overlay.inspector, overlay._batch, 2))).numpy()
    assert np.array_equal(maps_of(overlay)[0], expected)


def test_smoothgrad_and_integrated_gradients_options_drive_their_maps(overlay):
    def shown(method: str, **options) -> np.ndarray:
        function = getattr(gradients, method)
        return to_uint8(display_map(function(overlay.inspector, overlay._batch, overlay.target, **options))).numpy()

    overlay.method = "smoothgrad"
    assert overlay.maps["options"] == [25, 0.15, 50, "zero"]
    assert np.array_equal(maps_of(overlay)[0], shown("smoothgrad", samples=25, noise=0.15))
    overlay.smoothgrad_samples, overlay.smoothgrad_noise = 3, 0.4
    assert overlay.maps["options"][:2] == [3, 0.4]
    assert np.array_equal(maps_of(overlay)[0], shown("smoothgrad", samples=3, noise=0.4))
    overlay.method = "integrated_gradients"
    overlay.ig_steps = 7
    assert np.array_equal(maps_of(overlay)[0], shown("integrated_gradients", steps=7))
    overlay.ig_baseline = "black"
    black = -torch.tensor(IMAGENET_MEAN[:1]).view(1, 1, 1, 1) / torch.tensor(IMAGENET_STD[:1]).view(1, 1, 1, 1)
    black = black.expand(1, 1, 4, 4)  # black after the default ImageNet normalization, on paper
    assert np.array_equal(maps_of(overlay)[0], shown("integrated_gradients", steps=7, baseline=black))
    overlay.ig_baseline = "zero"  # back to a kept map, not a stale one of another baseline
    assert np.array_equal(maps_of(overlay)[0], shown("integrated_gradients", steps=7))
    with pytest.raises(traitlets.TraitError):
        overlay.ig_steps = 1
    assert overlay.ig_steps == 7


def test_bad_values_raise_and_keep_the_view(overlay):
    maps = overlay.maps
    with pytest.raises(InputError, match="did you mean 'grad_cam'"):
        overlay.method = "gradcam"
    with pytest.raises(InputError, match="out of range"):
        overlay.target = 7
    with pytest.raises(InputError, match="did you mean 'tabby cat'"):
        overlay.set_class("tabby ct")
    with pytest.raises(InputError, match="no spatial map"):
        overlay.layer = "pool"
    assert overlay.maps is maps and overlay.method == "saliency" and overlay.target == 1


def test_guided_on_an_unhookable_model_shows_the_error(overlay):
    class Swishy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = torch.nn.Conv2d(1, 2, 2), torch.nn.Linear(2, 3)

        def forward(self, x):
            return self.fc(torch.nn.functional.silu(self.conv(x)).mean((2, 3)))

    widget = SaliencyOverlay(Inspector(Swishy()), torch.randn(1, 4, 4))
    with pytest.raises(InputError, match="SiLU"):
        widget.method = "guided_backprop"
    assert "SiLU" in widget.error
    widget.method = "saliency"
    assert widget.error == ""


def test_sanity_panel_and_png_export(overlay, tmp_path):
    before = model_state(overlay.inspector.model)
    overlay.compare = ["saliency", "guided_backprop", "grad_cam"]
    overlay.side_by_side = True
    overlay._handle_custom_msg({"action": "run_sanity_check"}, [])  # what the button sends
    sanity = overlay.sanity
    assert sanity["methods"] == ["saliency", "guided_backprop", "grad_cam"] and sanity["steps"] == ["fc", "conv"]
    assert sanity["shape"][:2] == [3, 3] and len(sanity["correlations"][0]) == 3
    assert_same_state(before, model_state(overlay.inspector.model))
    assert hooks_left(overlay.inspector.model) == 0
    png = overlay.to_png(tmp_path / "overlay.png")
    picture = PIL.Image.open(io.BytesIO(png))
    assert picture.width > picture.height > 100
    assert (tmp_path / "overlay.png").read_bytes() == png


def test_default_widget_on_lite0(lite0, cat):
    widget = SaliencyOverlay(lite0, cat, method="grad_cam")
    assert widget.layer == "_head_act" and maps_of(widget).shape == (1, 224, 224)
    assert widget.predictions[0]["label"] in {"Egyptian cat", "tiger cat", "tabby"}
    with pytest.raises(TypeError, match="valid ones are"):
        SaliencyOverlay(lite0, cat, opacityy=0.3)
