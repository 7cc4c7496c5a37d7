"""Correspondence: exact on a pure translation at shift-equivariant layers; keypoint-transfer accuracy on affine
warps favours deeper layers as the warp grows; the warp itself is checked pixel by pixel; bad input is one line."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cnnwidgets import InputError, Inspector, zoo
from cnnwidgets.backend import Preprocess
from cnnwidgets.methods.correspondence import (
    affine_matrix,
    affine_warp,
    correspondence,
    keypoint_transfer,
    warp_points,
)
from cnnwidgets.zoo.efficientnet_lite0 import MEAN, STD

from tests.conftest import assert_same_state, hooks_left, model_state

pytestmark = pytest.mark.usefixtures("one_thread")  # CI-sized: one thread, restored after each test


class StridedNet(nn.Module):
    """conv 3×3 → ReLU → conv 3×3 stride 2 → global pool → 4 classes; seeded random weights."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.conv2(self.relu(self.conv1(x)))).flatten(1))


@pytest.fixture(scope="module")
def lite0_small() -> Inspector:
    """The embedded Lite0 at 128 px, so a curve costs two small forwards."""
    model = zoo.efficientnet_lite0(device="cpu").model
    return Inspector(model, Preprocess(resize=128, crop=128, mean=MEAN, std=STD))


def shifted_pair(inspector: Inspector, side: int, shift: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Two crops of one photo (preprocessed to ≥ 96 px): b shows a's pixel (r, c) at (r − dy, c − dx)."""
    photo = inspector.preprocess(zoo.sample_image("cat"))[0]
    dy, dx = shift
    return photo[:, :side, :side], photo[:, dy:dy + side, dx:dx + side]


@pytest.mark.parametrize(("layer", "stride", "shift", "margin"), [("conv2", 2, (6, 4), 6), ("_blocks.1._project_conv", 4, (8, 12), 24)])
def test_a_pure_translation_maps_every_point_to_its_shifted_twin(lite0_small, layer, stride, shift, margin):
    inspector = lite0_small if layer.startswith("_") else Inspector(StridedNet(), Preprocess(resize=96, crop=96))
    side = 64
    a, b = shifted_pair(inspector, side, shift)
    before = model_state(inspector.model)
    # interior points (away from the zero padding by the layer's reach) whose twin is inside b and interior too
    points = [(row, col) for row in range(margin + shift[0], side - margin, 3) for col in range(margin + shift[1], side - margin, 3)]
    found = correspondence(inspector, a, b, points, layer)
    for (row, col), cell in zip(points, found.cells_b):
        assert cell == ((row - shift[0]) // stride, (col - shift[1]) // stride)
    for (row, col), match in zip(points, found.matches):  # the centre of the twin's cell, in b's pixels
        assert match == ((row - shift[0]) // stride * stride + (stride - 1) / 2, (col - shift[1]) // stride * stride + (stride - 1) / 2)
    assert min(found.scores) == pytest.approx(1.0, abs=1e-5)  # the very same feature vector
    assert found.similarity.shape == (len(points), side // stride, side // stride)
    assert_same_state(before, model_state(inspector.model))
    assert hooks_left(inspector.model) == 0


def test_the_warp_moves_a_pixel_where_the_matrix_says():
    image = torch.zeros(1, 1, 40, 50)
    image[0, 0, 10, 30] = 1
    matrix = affine_matrix((40, 50), angle=30, scale=1.2, shift=(3, -4))
    warped = affine_warp(image, matrix)[0, 0]
    (row, col), = warp_points([(10, 30)], matrix)
    centroid = (warped * torch.arange(40).view(-1, 1)).sum() / warped.sum(), (warped * torch.arange(50)).sum() / warped.sum()
    assert math.dist((row, col), (float(centroid[0]), float(centroid[1]))) < 0.35
    # by hand: the centre stays, a point right of the centre turns counter-clockwise (up) by 90°
    turned = warp_points([(19.5, 24.5), (19.5, 34.5)], affine_matrix((40, 50), angle=90))
    assert [value for point in turned for value in point] == pytest.approx([19.5, 24.5, 9.5, 24.5])
    assert torch.allclose(affine_warp(image, affine_matrix((40, 50))), image, atol=1e-5)  # the identity


def test_deeper_layers_win_as_the_warp_grows(lite0_small):
    cat = zoo.sample_image("cat")
    layers = ["_stem_act", "_blocks.3._expand_act", "_blocks.9._depthwise_act"]  # strides 2, 4, 16
    same = keypoint_transfer(lite0_small, cat, layers)
    assert same.accuracy == [1.0, 1.0, 1.0] and same.k == pytest.approx(12.8)
    large = keypoint_transfer(lite0_small, cat, layers, angle=35, scale=1.35, shift=(8, -6))
    # measured: 0.23, 0.24, 0.47 of 62 points within 12.8 px; mean errors 44, 43, 23 px
    assert large.accuracy[2] > large.accuracy[0] + 0.15 and large.accuracy[2] > large.accuracy[1] + 0.15
    assert large.error[2] < large.error[0] / 1.5
    assert len(large.points) == len(large.truth) > 50


def test_bad_input_gets_one_line_errors():
    inspector = Inspector(StridedNet(), Preprocess(resize=64, crop=64))
    a, b = torch.zeros(3, 48, 48), torch.zeros(3, 40, 40)
    with pytest.raises(InputError, match="resize=True"):
        correspondence(inspector, a, b, [(5, 5)], "conv2", resize=False)
    assert correspondence(inspector, a, b, [(5, 5)], "conv2").similarity.shape == (1, 24, 24)  # b resized to a's size
    with pytest.raises(InputError, match="outside"):
        correspondence(inspector, a, a, [(50, 5)], "conv2")
    with pytest.raises(InputError, match="row, col"):
        correspondence(inspector, a, a, [5], "conv2")
    with pytest.raises(InputError, match="unknown layer"):
        correspondence(inspector, a, a, [(5, 5)], "conv9")
    with pytest.raises(InputError, match="outside the image"):
        keypoint_transfer(inspector, a, ["conv2"], shift=(500, 0))
