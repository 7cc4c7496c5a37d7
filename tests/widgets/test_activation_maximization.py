"""ActivationMaximization's Python side: runs in the background, updates every few steps, stops and continues."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from cnnwidgets import InputError
from cnnwidgets.widgets.activation_maximization import ActivationMaximization

from tests.conftest import assert_same_state, hooks_left, model_state
from tests.methods.test_maximize import small_inspector


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
