"""Attributes against hand computations, bins and their intervals against hand counts, the whole slicing on the
embedded digits and photo patches, and one-line errors or notes for constant attributes and empty bins."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnwidgets import InputError, Inspector, zoo
from cnnwidgets.backend import Preprocess
from cnnwidgets.methods.attributes import (
    attribute_slices,
    bin_edges,
    image_attributes,
    slices,
    wilson_interval,
)
from cnnwidgets.zoo.efficientnet_lite0 import MEAN, STD

from tests.conftest import assert_same_state, hooks_left, model_state

pytestmark = pytest.mark.usefixtures("one_thread")  # CI-sized: one thread, restored after each test


def test_computed_attributes_equal_hand_values():
    gray = np.full((1, 8, 8, 3), 51, np.uint8)  # Y = 0.2 everywhere
    halves = np.zeros((1, 8, 8, 3), np.uint8)
    halves[:, :, 4:] = 255  # left half black, right half white: Y std 0.5, a vertical edge between columns 3 and 4
    red = np.zeros((1, 8, 8, 3), np.uint8)
    red[..., 0] = 255  # rg = 255, yb = 127.5 everywhere: colourfulness 0.3·√(255² + 127.5²)
    found = image_attributes(np.concatenate([gray, halves, red]), masks=[np.ones((8, 8)), np.eye(8), np.zeros((4, 4))])
    assert found["brightness"] == pytest.approx([0.2, 0.5, 0.299])
    assert found["contrast"] == pytest.approx([0.0, 0.5, 0.0], abs=1e-12)
    assert found["colourfulness"] == pytest.approx([0.0, 0.0, 0.3 * np.hypot(255, 127.5)])
    assert found["edge_density"] == pytest.approx([0.0, 2 / 8, 0.0])  # columns 3 and 4 read 1 (> 0.1); nothing else
    assert found["object_scale"] == pytest.approx([1.0, 1 / 8, 0.0])


def test_wilson_intervals_equal_published_values():
    # Wilson (1927) / Newcombe (1998) table: 3 of 4 → 0.3006–0.9544; 0 of 10 → 0–0.2775; 81 of 263 → 0.2553–0.3662
    assert wilson_interval(3, 4) == pytest.approx((0.3006, 0.9544), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)


def test_wilson_intervals_hold_the_proportion_at_zero_and_one():
    # in floating point the bounds for 0 of 3 and 10 of 10 missed p by 1e-17, and the bin plot's error bars refused that
    for count in range(1, 300):
        for successes in (0, count):
            low, high = wilson_interval(successes, count)
            assert low <= successes / count <= high


def test_bins_equal_a_hand_computation():
    values = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    correct = np.array([True, True, False, True, False, False, True, False])
    confidence = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.5, 0.5, 0.5])
    edges = bin_edges(values, 2)
    assert edges == pytest.approx([0.1, 0.45, 0.8])
    low, high = slices(values, edges, confidence, correct)
    assert (low.count, low.indices, low.accuracy) == (4, [0, 1, 2, 3], 0.75)
    assert low.accuracy_interval == pytest.approx((0.3006, 0.9544), abs=1e-4)
    assert low.confidence == pytest.approx(0.75)
    standard_error = np.std([0.9, 0.8, 0.7, 0.6], ddof=1) / 2  # 0.0645…
    assert low.confidence_interval == pytest.approx((0.75 - 1.96 * standard_error, 0.75 + 1.96 * standard_error), abs=1e-3)
    assert (high.count, high.accuracy, high.confidence, high.confidence_interval) == (4, 0.25, 0.5, (0.5, 0.5))
    assert slices(values, edges, confidence, None)[0].accuracy is None  # no labels: confidence only


def test_constant_attributes_and_empty_bins():
    with pytest.raises(InputError, match="constant"):
        bin_edges(np.full(5, 0.3), 3, "brightness")
    with pytest.raises(InputError, match="increasing edges"):
        bin_edges(np.arange(5.0), [0.5, 0.2])
    empty = slices(np.array([0.1, 0.9]), bin_edges(np.array([0.1, 0.9]), [0, 0.5, 0.6, 1]), np.array([0.5, 0.5]), np.array([True, False]))
    assert [b.count for b in empty] == [1, 0, 1] and empty[1].accuracy is None and empty[1].confidence is None


@pytest.fixture(scope="module")
def digits_cnn() -> Inspector:
    return zoo.digits_cnn()


def test_slicing_the_digits(digits_cnn):
    before = model_state(digits_cnn.model)
    dataset = zoo.digits("test")
    found = attribute_slices(digits_cnn, dataset, bins=3, limit=120)
    assert "colourfulness is constant (0) on this dataset: left out" in found.notes  # gray digits
    assert sorted(found.bins) == ["brightness", "contrast", "edge_density"]
    # the bins agree with the model's own predictions on the same images
    x, y = dataset.tensors()
    predictions = digits_cnn.batch_logits(x[:120]).argmax(1).numpy()
    assert np.array_equal(found.predictions, predictions) and np.array_equal(found.labels, y[:120].numpy())
    for bins in found.bins.values():
        assert sum(b.count for b in bins) == 120
        for b in bins:
            assert b.accuracy == pytest.approx((predictions[b.indices] == y[:120].numpy()[b.indices]).mean())
    with pytest.raises(InputError, match="constant"):
        attribute_slices(digits_cnn, dataset, {"colour": "colourfulness"}, limit=20)
    assert_same_state(before, model_state(digits_cnn.model))
    assert hooks_left(digits_cnn.model) == 0


def test_user_attributes_values_and_functions(digits_cnn):
    images = [zoo.digits()[i][0] for i in range(12)]  # a list of images without labels
    found = attribute_slices(digits_cnn, images, {"order": list(range(12)), "ink": lambda picture: picture.mean()}, bins=2)
    assert found.labels is None and "no labels" in found.notes[0]
    assert [b.indices for b in found.bins["order"]] == [list(range(6)), list(range(6, 12))]
    assert found.bins["order"][0].accuracy is None and found.bins["order"][0].confidence is not None
    with pytest.raises(InputError, match="one per image"):
        attribute_slices(digits_cnn, images, {"order": [1, 2, 3]})
    with pytest.raises(InputError, match="no computed attribute"):
        attribute_slices(digits_cnn, images, {"x": "sharpness"})


def test_slicing_photo_patches_reports_confidence_only():
    lite0 = zoo.efficientnet_lite0(device="cpu")
    inspector = Inspector(lite0.model, Preprocess(resize=64, crop=64, mean=MEAN, std=STD), lite0.labels)
    found = attribute_slices(inspector, zoo.sample_patches(size=64, limit=24), bins=2)
    assert found.labels is None and any("not the model's" in note for note in found.notes)  # photo names ≠ ImageNet
    assert set(found.bins) == {"brightness", "contrast", "colourfulness", "edge_density"}
    assert all(b.confidence is not None and b.accuracy is None for bins in found.bins.values() for b in bins)
