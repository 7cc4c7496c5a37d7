"""Hostile clip tensors get the checks image tensors get (one `images.check_input` for both): one-line InputErrors,
the model left as it came."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnwidgets import InputError, Inspector

from tests.conftest import assert_refused

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def video() -> Inspector:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2))
    return Inspector(model)


@pytest.fixture(scope="module")
def image() -> Inspector:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    return Inspector(model)


@pytest.mark.parametrize(
    ("bad", "fix"),
    [
        (torch.empty(3, 4, 16, 16, device="meta"), "'meta' device"),
        (torch.empty(4, 16, 16, 3, dtype=torch.uint8, device="meta"), "'meta' device"),
        (torch.zeros(3, 4, 16, 16, dtype=torch.complex64), r"a complex tensor \(torch.complex64\) is not a clip; pass its magnitude"),
        (torch.ones(4, 16, 16, 3, dtype=torch.bool), "a torch.bool tensor is not a clip"),
        (torch.ones(4, 16, 16, 3, dtype=torch.int16), "a torch.int16 tensor is not a clip"),
        (torch.full((3, 4, 16, 16), float("nan")), "clip contains NaN or infinite values"),
        (torch.full((1, 3, 4, 16, 16), float("-inf")), "clip contains NaN or infinite values"),
        (torch.randn(3, 4, 16, 16) * 1e30, "beyond ±10000"),
        (torch.zeros(3, 4, 4, 16), "frames are only 16×4 pixels; pass frames at least 8×8"),
        (torch.zeros(3, 0, 16, 16), "no frames"),
        (torch.zeros(2, 4, 16, 16), r"takes one clip as \[3,T,H,W\]"),
        (torch.zeros(2, 3, 4, 16, 16), r"takes one clip as \[3,T,H,W\]"),
        (torch.zeros(1, 1, 3, 4, 16, 16), r"takes one clip as \[3,T,H,W\]"),
    ],
)
def test_hostile_clip_tensors_get_one_line_errors(video, bad, fix):
    assert_refused(video, bad, fix)


def test_a_good_float_clip_still_runs_as_given(video):
    clip = torch.randn(3, 4, 16, 16)
    torch.testing.assert_close(video.preprocess(clip), clip[None])
    with torch.inference_mode():
        expected = video.model(clip[None])[0]
    torch.testing.assert_close(video.logits(clip), expected)


@pytest.mark.parametrize("bad", [torch.zeros(1, 3, 32, 32, dtype=torch.complex64), torch.zeros(3, 32, 32, dtype=torch.complex128)])
def test_a_complex_image_batch_is_named_complex_not_a_clip(image, bad):
    with pytest.raises(InputError, match=rf"a complex tensor \({bad.dtype}\) is not an image") as raised:
        image.predict(bad)
    assert "\n" not in str(raised.value)
