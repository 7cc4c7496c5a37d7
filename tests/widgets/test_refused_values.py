"""Every validated trait of every widget (EmbeddingScatter has its own tests) refuses a bad value wherever it comes
from — set from Python, inside `hold_trait_notifications()`, or in a state update from the browser: the trait
keeps its last good value, `error` says why in one line, nothing else changes (so the view stays), and the browser
gets the good value back."""

from __future__ import annotations

import pytest
import torch
import traitlets

from cnnwidgets import InputError
from cnnwidgets.backend.index import build_index
from cnnwidgets.widgets import (
    ActivationMaximization,
    AdversarialExplorer,
    CodeInversion,
    FeatureEvolution,
    InvarianceProbe,
    LayerExplorer,
    OcclusionSlider,
    SaliencyOverlay,
    TopActivations,
)
from cnnwidgets.zoo.digits import digits, digits_cnn

from tests.widgets.test_feature_evolution import small_cnn
from tests.methods.test_maximize import small_inspector

IMAGE = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))


def layer_explorer():
    return LayerExplorer(small_inspector(), IMAGE)


def occlusion_slider():
    return OcclusionSlider(small_inspector(), IMAGE, patch=8, stride=4, layer="relu1", channel=0)


def saliency_overlay():
    return SaliencyOverlay(small_inspector(), IMAGE, smoothgrad_samples=2, ig_steps=2)


def top_activations():
    inspector = digits_cnn()
    return TopActivations(build_index(inspector, digits("test"), ["relu1", "relu3"], k=3, progress=False), "relu3", 1)


def activation_maximization():
    return ActivationMaximization(small_inspector(), "c1", size=32, steps=2, every=1)


def code_inversion():
    return CodeInversion(small_inspector(), IMAGE, layers=["relu1"], size=32, steps=2, every=1)


def feature_evolution():
    data = torch.randn(12, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    return FeatureEvolution(small_cnn(0), {1: small_cnn(1).state_dict()}, data, features=[("4", 1)])


def invariance_probe():
    return InvarianceProbe(small_inspector(), IMAGE, layers=["relu1"], positions=3)


def adversarial_explorer():
    return AdversarialExplorer(small_inspector(), IMAGE, epsilon=4, steps=2, fool_target="c2")


CASES = {
    layer_explorer: [("layer", "nope", "unknown layer"), ("channel", 10**9, "out of range"),
                     ("filter_slice", 999, "filter_slice"), ("normalize", "nope", None), ("colormap", "nope", None)],
    occlusion_slider: [("patch", 0, "patch"), ("patch", 300, "larger than"), ("stride", 0, "at least 1"),
                       ("x", -50.0, "outside"), ("y", 1e6, "outside"), ("target", 5000, "out of range"),
                       ("layer", "nope", "unknown layer"), ("channel", 10**6, "out of range"),
                       ("opacity", 2.0, "between 0 and 1"), ("fill", "nope", None)],
    saliency_overlay: [("method", "nope", "unknown method"), ("compare", [], "at least one"),
                       ("compare", ["saliency", "nope"], "unknown method"), ("target", 5000, "out of range"),
                       ("layer", "nope", "unknown layer"), ("layer", "fc", "no spatial"), ("opacity", 2.0, None),
                       ("smoothgrad_samples", 0, None), ("ig_steps", 1, None), ("ig_baseline", "nope", None)],
    top_activations: [("layer", "nope", "unknown layer"), ("channel", 10**6, "out of range"),
                      ("selected", 99, "out of range"), ("show", "nope", None), ("opacity", -1.0, None)],
    activation_maximization: [("target", 5000, "out of range"), ("param", "generator", "prior=zoo.digits_generator()"),
                              ("temporal", -1.0, "temporal"), ("has_prior", True, "prior="), ("layer", "nope", "unknown layer"),
                              ("diversity_layer", "nope", "unknown layer"), ("count", 0, "count"), ("size", 4, "size"),
                              ("lr", -1.0, "lr"), ("jitter", 100.0, "jitter"), ("diversity", -2.0, "diversity"),
                              ("steps", 0, "steps"), ("every", 0, "every"), ("param", "nope", None)],
    code_inversion: [("selected_layers", ["nope"], "unknown layer"), ("selected_layers", [], "selected_layers is empty"), ("size", 4, "size"),
                     ("lr", 0.0, "lr"), ("tv", -1.0, "tv"), ("steps", 0, "steps")],
    feature_evolution: [("epoch", 7, "pick one of"), ("colormap", "nope", None)],
    invariance_probe: [("shift", 1000.0, "out of range"), ("angle", 999.0, "out of range"), ("scale", 10.0, "out of range")],
    adversarial_explorer: [("epsilon", 99, "out of range"), ("steps", 0, "out of range"), ("target", 5, "out of range"),
                           ("target", -2, "out of range"), ("fool_target", -1, "out of range"), ("method", "nope", None)],
}
PARAMS = [pytest.param(make, name, value, message, id=f"{make.__name__}-{name}={value!r}"[:60])
          for make, cases in CASES.items() for name, value, message in cases]
WIDGETS: dict = {}


def widget_of(make):
    """One widget per class for the whole module (a failed refusal shows up as a changed view, not a crash)."""
    if make not in WIDGETS:
        WIDGETS[make] = make()
    return WIDGETS[make]


def state(widget) -> dict:
    return {name: getattr(widget, name) for name in widget.keys if name not in ("error", "busy", "progress")}


def assert_unchanged(before: dict, widget) -> None:
    after = state(widget)
    for name, value in before.items():
        assert after[name] is value or after[name] == value, name


def browser_update(widget, **values) -> list[dict]:
    """Apply `values` as the front end sends them (a comm 'update' message); returns what the widget sent back."""
    sent = []
    widget._send = lambda message, buffers=None: sent.append(message)
    try:
        widget._handle_msg({"content": {"data": {"method": "update", "state": values, "buffer_paths": []}}, "buffers": []})
    finally:
        del widget._send
    return sent


@pytest.mark.parametrize("make, name, value, message", PARAMS)
def test_a_bad_value_from_the_browser_is_rolled_back(make, name, value, message):
    widget = widget_of(make)
    widget.error = ""
    before = state(widget)
    sent = browser_update(widget, **{name: value})
    assert_unchanged(before, widget)
    assert widget.error and "\n" not in widget.error
    if message:
        assert message in widget.error
    returned = [m["state"][name] for m in sent if m.get("method") == "update" and name in m.get("state", {})]
    assert returned and returned[-1] == widget.trait_metadata(name, "to_json", widget._trait_to_json)(before[name], widget)


@pytest.mark.parametrize("make, name, value, message", PARAMS)
def test_a_bad_value_from_python_is_refused_directly_and_in_a_hold(make, name, value, message):
    widget = widget_of(make)
    before = state(widget)
    for held in (False, True):
        widget.error = ""
        with pytest.raises(traitlets.TraitError) as raised:
            if held:
                with widget.hold_trait_notifications():
                    setattr(widget, name, value)
            else:
                setattr(widget, name, value)
        assert_unchanged(before, widget)
        assert widget.error and "\n" not in widget.error
        if message:
            assert isinstance(raised.value, InputError) and message in str(raised.value) and message in widget.error


def test_a_browser_message_with_one_bad_value_changes_nothing():
    """All values of the message are rolled back together, good ones too (they arrived as one change)."""
    widget = widget_of(layer_explorer)
    before = state(widget)
    good_layer = next(layer["name"] for layer in widget.layers if layer["name"] != widget.layer and layer["kind"] == "activation")
    browser_update(widget, layer=good_layer, channel=10**9)
    assert_unchanged(before, widget)
    assert "out of range" in widget.error
    browser_update(widget, layer=good_layer, channel=1)
    assert (widget.layer, widget.channel, widget.error) == (good_layer, 1, "")
