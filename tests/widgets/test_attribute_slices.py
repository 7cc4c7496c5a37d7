"""AttributeSlices through its messages: bins, accuracies and Wilson intervals against a hand computation, a bin's
images and predictions after a click sent as the front end sends it, request ids echoed, the prediction run in
steps on the kernel's event loop, notes for no labels and empty bins, one-line errors, the model untouched."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from cnnwidgets import InputError, Inspector, zoo
from cnnwidgets.backend import Preprocess
from cnnwidgets.widgets.attribute_slices import THUMB, AttributeSlices
from cnnwidgets.zoo.efficientnet_lite0 import MEAN, STD
from tests.conftest import assert_same_state, hooks_left, model_state
from tests.widgets.test_refused_values import browser_update

pytestmark = pytest.mark.usefixtures("one_thread")  # CI-sized: one thread, restored after each test

COUNT = 40


@pytest.fixture(scope="module")
def digits_cnn() -> Inspector:
    return zoo.digits_cnn()


@pytest.fixture(scope="module")
def hand(digits_cnn) -> dict:
    """The first COUNT held-out digits: predictions, confidences and correctness computed directly."""
    x, y = zoo.digits("test").tensors()
    probabilities = digits_cnn.batch_logits(x[:COUNT]).softmax(-1)
    confidence, predictions = probabilities.max(-1)
    return {"labels": y[:COUNT].numpy(), "predictions": predictions.numpy(), "confidence": confidence.numpy(),
            "correct": (predictions == y[:COUNT]).numpy()}


def wilson(hits: int, count: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval, written out again from Wilson (1927)."""
    p = hits / count
    denominator = 1 + z * z / count
    centre = p + z * z / (2 * count)
    spread = z * math.sqrt(p * (1 - p) / count + z * z / (4 * count * count))
    return max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)


def test_bins_equal_a_hand_computation_through_the_widget_s_messages(digits_cnn, hand):
    before = model_state(digits_cnn.model)
    order = list(range(COUNT))
    widget = AttributeSlices(digits_cnn, zoo.digits("test"), {"order": order, "brightness": "brightness"}, bins=4, limit=COUNT)
    assert widget.progress == 1.0 and not widget.busy and widget.names == ["order", "brightness"]
    assert widget.summary["accuracy"] == pytest.approx(hand["correct"].mean())

    sent = browser_update(widget, attribute="order", bins=2, request=7)  # as the front end sends a bins change
    table = widget.table
    assert table["request"] == 7 and table["attribute"] == "order" and table["labelled"] and not widget.error
    assert any("table" in m.get("state", {}) for m in sent)
    for row, part in zip(table["bins"], (slice(0, 20), slice(20, 40))):
        hits = int(hand["correct"][part].sum())
        assert row["count"] == 20 and row["accuracy"] == pytest.approx(hits / 20)
        assert row["accuracy_interval"] == pytest.approx(wilson(hits, 20))
        confidence = hand["confidence"][part]
        half = 1.959963984540054 * confidence.std(ddof=1) / math.sqrt(20)
        assert row["confidence"] == pytest.approx(confidence.mean(), abs=1e-6)
        assert row["confidence_interval"] == pytest.approx((confidence.mean() - half, confidence.mean() + half), abs=1e-6)

    browser_update(widget, selected=1, request=8)  # a click on the second bin
    images = widget.images
    assert images["request"] == 8 and images["bin"] == 1 and images["count"] == 20
    assert images.array.shape == (20, THUMB, THUMB, 3)
    assert [item["position"] for item in images["items"]] == list(range(20, 40))
    assert [item["prediction"] for item in images["items"]] == [str(p) for p in hand["predictions"][20:]]
    assert [item["correct"] for item in images["items"]] == hand["correct"][20:].tolist()
    digit = zoo.digits("test").images[20]  # the thumbnail is the digit as the model sees it, enlarged 3×
    assert np.abs(images.array[0, 1::3, 1::3, 0].astype(int) - digit.astype(int)).mean() < 12

    # brightness by hand: the mean gray level of each digit, binned at its quantiles
    brightness = zoo.digits("test").images[:COUNT].reshape(COUNT, -1).mean(1) / 255
    browser_update(widget, attribute="brightness", bins=4, request=9)
    edges = [row["low"] for row in widget.table["bins"]] + [widget.table["bins"][-1]["high"]]
    assert edges == pytest.approx(np.quantile(brightness, np.linspace(0, 1, 5)), abs=1 / 255)
    assert widget.selected == -1 and widget.images["bin"] == -1  # a new binning clears the selection
    assert_same_state(before, model_state(digits_cnn.model))
    assert hooks_left(digits_cnn.model) == 0


def test_given_edges_keep_an_empty_bin_with_a_note(digits_cnn):
    widget = AttributeSlices(digits_cnn, zoo.digits("test"), {"order": list(range(12))}, bins=[0, 5, 100, 200], limit=12)
    assert [row["count"] for row in widget.table["bins"]] == [5, 7, 0]
    assert widget.table["bins"][2]["accuracy"] is None and "order: no images in [100, 200)" in widget.notes
    browser_update(widget, selected=2, request=3)
    assert widget.images["count"] == 0 and widget.images.array.shape[0] == 0 and not widget.error


def test_no_labels_constant_attributes_and_bad_input(digits_cnn):
    pictures = [zoo.digits()[i][0] for i in range(10)]  # images without labels
    widget = AttributeSlices(digits_cnn, pictures)
    assert not widget.table["labelled"] and "the dataset has no labels: bins show confidence only" in widget.notes
    assert "colourfulness is constant (0) on this dataset: left out" in widget.notes and "colourfulness" not in widget.names
    assert all(row["accuracy"] is None and row["confidence"] is not None for row in widget.table["bins"])
    with pytest.raises(InputError, match="constant") as raised:
        AttributeSlices(digits_cnn, pictures, {"colour": "colourfulness"})
    assert "\n" not in str(raised.value)
    with pytest.raises(InputError, match="no computed attribute"):
        AttributeSlices(digits_cnn, pictures, {"x": "sharpness"})
    with pytest.raises(InputError, match="needs a dataset"):
        AttributeSlices(digits_cnn, None)


@pytest.mark.parametrize("name, value, message", [("attribute", "nope", "no attribute"), ("bins", 0, "out of range"),
                                                  ("edges", [3, 1], "increasing"), ("selected", 99, "out of range")])
def test_refused_values_from_the_browser_are_rolled_back(digits_cnn, name, value, message):
    widget = AttributeSlices(digits_cnn, zoo.digits("test"), limit=24)
    before = {key: getattr(widget, key) for key in ("attribute", "bins", "edges", "selected", "table")}
    sent = browser_update(widget, **{name: value})
    assert {key: getattr(widget, key) for key in before} == before
    assert message in widget.error and "\n" not in widget.error
    assert [m["state"][name] for m in sent if name in m.get("state", {})][-1] == before[name]


def test_the_dataset_is_predicted_in_steps_on_the_event_loop(digits_cnn):
    async def build() -> tuple[AttributeSlices, bool, list[float]]:
        widget = AttributeSlices(digits_cnn, zoo.digits("test"), limit=100)  # 13 chunks of 8
        pending = widget.result is None and widget.busy
        seen: list[float] = []
        widget.observe(lambda change: seen.append(change["new"]), "progress")
        while widget._jobs.running:
            await asyncio.sleep(0.01)
        return widget, pending, seen

    widget, pending, seen = asyncio.run(build())
    assert pending  # the constructor returned before predicting: the view shows at once
    assert seen == pytest.approx([*(np.arange(8, 100, 8) / 100), 1.0])  # one value per chunk of 8 images
    assert widget.summary["images"] == 100 and not widget.busy


def test_photo_patches_on_lite0_and_png(digits_cnn):
    lite0 = zoo.efficientnet_lite0(device="cpu")
    inspector = Inspector(lite0.model, Preprocess(resize=64, crop=64, mean=MEAN, std=STD), lite0.labels)
    widget = AttributeSlices(inspector, zoo.sample_patches(size=64, limit=16), bins=2)
    assert set(widget.names) == {"brightness", "contrast", "colourfulness", "edge_density"}
    assert not widget.table["labelled"] and any("not the model's" in note for note in widget.notes)
    widget.selected = 0
    assert widget.images.array.shape == (8, THUMB, THUMB, 3) and widget.images["items"][0]["label"] is None
    assert widget.to_png()[:8] == b"\x89PNG\r\n\x1a\n"
    assert hooks_left(lite0.model) == 0
