"""InvarianceProbe's Python side: curves at construction, sliders redraw the image and predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnwidgets import InputError
from cnnwidgets.widgets.invariance_probe import InvarianceProbe

from tests.conftest import hooks_left
from tests.methods.test_maximize import small_inspector


@pytest.fixture(scope="module")
def probe():
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    return InvarianceProbe(small_inspector(), image, layers=["relu1", "pool"])


def test_curves_cover_each_transformation_with_zero_at_the_identity(probe):
    assert probe.curves["layers"] == ["relu1", "pool"]
    for kind in ("translate", "rotate", "scale"):
        curve = probe.curves[kind]
        assert len(curve["values"]) == 41 and len(curve["probability"]) == 41
        assert all(curve["distances"][layer][20] == 0.0 for layer in ("relu1", "pool"))
    assert probe.label == probe.curves["label"]


def test_sliders_change_the_image_and_predictions(probe):
    start = probe.image["data"]
    probe.shift = 8
    shifted = probe.image["data"]
    assert shifted != start and len(probe.predictions) == 5
    probe.angle, probe.scale = 30, 1.5
    assert probe.image["data"] != shifted
    picture = np.frombuffer(probe.image["data"], np.uint8).reshape(probe.image["shape"])
    assert picture.shape == (32, 32, 3)
    probe.shift, probe.angle, probe.scale = 0, 0, 1
    assert probe.image["data"] == start
    assert hooks_left(probe.inspector.model) == 0


def test_out_of_range_slider_raises_and_keeps_the_view(probe):
    image = probe.image
    with pytest.raises(InputError, match="between -60.0 and 60.0"):
        probe.shift = 100
    assert probe.shift == 0 and probe.image is image


def test_to_png(probe):
    assert probe.to_png()[:8] == b"\x89PNG\r\n\x1a\n"
