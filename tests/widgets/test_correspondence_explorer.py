"""CorrespondenceExplorer's Python side: a point gives the match `correspondence` gives, the similarity map peaks
there, the accuracy curve is `keypoint_transfer`'s, bad input is one line, PNG export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnwidgets import InputError, Inspector
from cnnwidgets.backend import Preprocess
from cnnwidgets.methods.correspondence import correspondence, keypoint_transfer
from cnnwidgets.widgets.correspondence_explorer import CorrespondenceExplorer

from tests.conftest import hooks_left
from tests.methods.test_correspondence import StridedNet

pytestmark = pytest.mark.usefixtures("one_thread")  # CI-sized: one thread, restored after each test


@pytest.fixture(scope="module")
def explorer() -> CorrespondenceExplorer:
    inspector = Inspector(StridedNet(), Preprocess(resize=48, crop=48))
    image = torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(0))
    return CorrespondenceExplorer(inspector, image, curve_layers=["conv1", "conv2"], layer="conv2")


def test_a_point_shows_the_method_s_match_and_similarity(explorer):
    explorer.point = [20, 30]
    expected = correspondence(explorer.inspector, explorer._a, explorer._b, [(20, 30)], "conv2")
    assert explorer.match == list(expected.matches[0]) and explorer.score == pytest.approx(expected.scores[0])
    similarity = np.frombuffer(explorer.similarity["data"], np.uint8).reshape(explorer.similarity["shape"])
    assert similarity.shape == (48, 48) and explorer.similarity["grid"] == [24, 24]
    row, col = np.unravel_index(similarity.argmax(), similarity.shape)
    assert abs(row - explorer.match[0]) <= 2 and abs(col - explorer.match[1]) <= 2  # the map peaks at the match
    assert hooks_left(explorer.inspector.model) == 0


def test_the_curve_is_keypoint_transfer_under_the_warp(explorer):
    expected = keypoint_transfer(explorer.inspector, explorer._a, ["conv1", "conv2"], angle=20, scale=1.2)
    assert explorer.curve["accuracy"] == expected.accuracy and explorer.curve["layers"] == ["conv1", "conv2"]
    explorer.warp = {"angle": 0.0, "scale": 1.0}
    assert explorer.curve["accuracy"] == [1.0, 1.0]  # no warp: every point maps home
    explorer.warp = {"angle": 20.0, "scale": 1.2}


def test_bad_input_gets_one_line_errors(explorer):
    with pytest.raises(InputError, match="unknown layer"):
        explorer.layer = "fc"
    with pytest.raises(InputError, match="outside"):
        explorer.point = [99, 5]
    assert explorer.point == [20, 30]  # the last good point stays
    with pytest.raises(InputError, match="scale"):
        explorer.warp = {"scale": 9}
    assert explorer.layer == "conv2"


def test_png_export(explorer):
    assert explorer.to_png()[:8] == b"\x89PNG\r\n\x1a\n"
