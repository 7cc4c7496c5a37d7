"""ActivationMaximization's Python side: runs in the background, updates every few steps, stops and continues; the
parameterization switch (pixel / Fourier / generator prior, or all side by side) runs what `methods.maximize` runs;
on video models it maximizes clips, and the temporal penalty slows them down."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from cnnwidgets import InputError, zoo
from cnnwidgets.methods.maximize import maximize
from cnnwidgets.methods.video import maximize_clip
from cnnwidgets.widgets.activation_maximization import SLOW_TEMPORAL, ActivationMaximization

from tests.conftest import assert_same_state, hooks_left, model_state
from tests.methods.test_maximize import small_inspector
from tests.widgets.test_refused_values import browser_update

pytestmark = pytest.mark.usefixtures("one_thread")  # CI-sized: one thread, restored after each test
DIGITS = {"size": 32, "lr": 0.1, "jitter": 1.0, "rotate": 0.0, "scale": 0.0}
"""The settings that reach every digit class in 48 steps (tests/methods/test_generator_prior.py)."""


@pytest.fixture
def widget():
    return ActivationMaximization(small_inspector(), "c1", size=32, steps=12, every=4)


def test_runs_in_the_background_and_publishes_every_few_steps(widget):
    before = model_state(widget.inspector.model)
    seen = []
    widget.observe(lambda change: seen.append(change["new"]["step"]), "images")
    first = widget.images["data"]
    widget.start()
    assert widget.running
    widget.wait(30)
    assert not widget.running and widget.step == 12 and widget.goal == 12
    assert seen == [4, 8, 12] and widget.images["data"] != first
    assert len(widget.history) == 12 and len(widget.probabilities) == 1
    widget.run(steps=4)  # continue where it stopped
    assert widget.step == 16
    assert_same_state(before, model_state(widget.inspector.model)) and hooks_left(widget.inspector.model) == 0


def test_stop_from_the_browser_ends_the_run(widget):
    widget.steps, widget.every = 100_000, 1
    widget.start()
    time.sleep(0.3)
    widget.running = False  # what the stop button sends
    widget.wait(10)
    assert not widget.running and 0 < widget.step < 100_000
    assert not any(t.name.startswith("ActivationMaximization") for t in threading.enumerate())


def test_changing_a_setting_starts_afresh(widget):
    widget.run(steps=4)
    assert widget.step == 4
    widget.jitter = 2
    assert widget.step == 0 and widget.history == []
    widget.layer, widget.channel = "relu2", 3
    assert "relu2 channel 3" in widget.description and widget.probabilities == []
    widget.count = 2
    assert widget.images["shape"] == [2, 32, 32, 3]
    widget.send = lambda *a, **k: None
    widget._handle_custom_msg({"action": "reset"}, [])
    assert widget.step == 0


def test_bad_settings_show_an_error(widget):
    with pytest.raises(InputError, match="channels 0..15"):
        widget.layer, widget.channel = "relu2", 40
    assert widget.error


def test_to_png(widget):
    widget.run(steps=2)
    assert widget.to_png()[:4] == b"\x89PNG"
    picture = np.frombuffer(widget.images["data"], np.uint8).reshape(widget.images["shape"])
    assert picture.shape == (1, 32, 32, 3)


def test_diversity_controls_reach_the_optimization(widget):
    assert widget.similarity == {}  # one image: nothing to compare
    widget.count = 3
    assert widget.similarity["layer"] == "relu2" and 0 <= widget.similarity["value"] <= 1
    plain = widget.run(steps=4).images["data"]
    widget.diversity_layer, widget.diversity = "relu1", 5.0
    assert widget.step == 0 and widget.maximizer.diversity == 5.0 and widget.similarity["layer"] == "relu1"
    assert widget.run(steps=4).images["data"] != plain
    with pytest.raises(InputError, match="diversity=-2"):
        widget.diversity = -2


@pytest.mark.parametrize("param", ["pixel", "fourier", "generator"])
def test_switching_the_parameterization_runs_what_maximize_runs(param):
    prior = zoo.digits_generator()
    widget = ActivationMaximization(small_inspector(), "c1", prior=prior, size=32, every=4, seed=3)
    other = "pixel" if param != "pixel" else "fourier"
    widget.param = other
    widget.run(steps=4)
    widget.param = param  # starts afresh on the new parameterization
    assert widget.step == 0
    images = widget.run(steps=8).result().images
    expected = maximize(small_inspector(), "c1", steps=8, size=32, seed=3, progress=False,
                        **({"prior": prior} if param == "generator" else {"param": param}))
    assert torch.allclose(images, expected.images, atol=1e-5)
    assert widget.history == [round(v, 4) for v in expected.history]


def test_generator_without_a_prior_is_refused_in_one_line(widget):
    for change in (lambda: setattr(widget, "param", "generator"), lambda: ActivationMaximization(small_inspector(), "c1", param="generator", size=32)):
        with pytest.raises(InputError, match=r"prior=zoo\.digits_generator\(\)") as raised:
            change()
        assert "\n" not in str(raised.value)
    assert widget.param == "fourier"
    browser_update(widget, param="generator")
    assert widget.param == "fourier" and "prior=" in widget.error


def test_compare_shows_the_three_parameterizations_and_the_generator_reaches_the_class():
    inspector, prior = zoo.digits_cnn(), zoo.digits_generator()
    before, prior_before = model_state(inspector.model), model_state(prior)
    widget = ActivationMaximization(inspector, "3", prior=prior, steps=48, every=16, **DIGITS)
    browser_update(widget, compare=True)
    assert widget.error == "" and widget.step == 0
    widget.run()
    assert [v["name"] for v in widget.variants] == ["pixel", "fourier", "generator"]
    assert widget.images["shape"] == [3, 32, 32, 3] and len(widget.probabilities) == 3
    results = widget.results()
    on_prior = maximize(inspector, "3", prior=prior, steps=48, progress=False, **DIGITS)
    assert torch.allclose(results["generator"].images, on_prior.images, atol=1e-5)
    assert widget.variants[2]["probabilities"][0] >= 0.9  # measured 1.00: the generator's picture reaches "3"
    assert widget.predictions[2][0]["label"] == "3"
    assert widget.to_png()[:4] == b"\x89PNG"
    assert_same_state(before, model_state(inspector.model)) and assert_same_state(prior_before, model_state(prior))
    assert hooks_left(inspector.model) == hooks_left(prior) == 0


@pytest.fixture(scope="module")
def c3d():
    return zoo.motion_cnn("c3d")


VIDEO = {"layer": "features.conv2", "channel": 3, "lr": 0.1}


def test_temporal_smoothness_slows_the_clip_down(c3d):
    """The widget's clip is maximize_clip's; a strong temporal penalty lowers its frame-to-frame change (measured:
    0.23 fast, 0.04 slow after 24 steps)."""
    before = model_state(c3d.model)
    widget = ActivationMaximization(c3d, steps=24, every=8, **VIDEO)
    assert widget.video and widget.jitter == 0
    fast = widget.run().result()
    assert torch.allclose(fast.clip, maximize_clip(c3d, steps=24, **VIDEO).clip, atol=1e-5)
    browser_update(widget, temporal=SLOW_TEMPORAL)  # the "slow" button
    slow = widget.run().result()
    assert slow.frame_change < 0.5 * fast.frame_change
    assert widget.variants[0]["frame_change"] == round(slow.frame_change, 4)
    assert widget.clips["shape"] == [16, 32, 32, 3] and widget.clips["frames"] == 16
    widget.compare = True
    widget.run()
    paces = {v["name"]: v["frame_change"] for v in widget.variants}
    assert list(paces) == ["fast", "slow"] and paces["slow"] < 0.5 * paces["fast"]
    assert widget.clips["shape"] == [32, 32, 32, 3]
    assert widget.to_png()[:4] == b"\x89PNG"
    with pytest.raises(InputError, match="temporal"):
        widget.temporal = -1.0
    assert_same_state(before, model_state(c3d.model)) and hooks_left(c3d.model) == 0


def test_two_stream_appearance_and_motion_are_maximized_together():
    two_stream = zoo.motion_cnn("two_stream")
    before = model_state(two_stream.model)
    widget = ActivationMaximization(two_stream, "left", steps=4, every=2, lr=0.1).run()
    expected = maximize_clip(two_stream, "left", steps=4, lr=0.1)
    result = widget.result()
    assert torch.allclose(result.clip, expected.clip, atol=1e-5) and torch.allclose(result.motion, expected.motion, atol=1e-5)
    assert widget.clips["shape"] == [16, 32, 32, 3] and widget.motions["shape"] == [15, 32, 32, 3]
    assert widget.history[-1] > widget.history[0]
    assert_same_state(before, model_state(two_stream.model)) and hooks_left(two_stream.model) == 0
