"""TopActivations on clips: filmstrips of each top clip cropped to the unit's field in space-time (checked against a
hand computation on a tiny 3-D CNN), the frame of the maximum when one is selected; answers echo request ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnwidgets.backend.index import build_index
from cnnwidgets.widgets.top_activations import OUTSIDE, STRIP_GAP, TopActivations
from tests.backend.test_index_clips import clip_inspector, tiny_c3d
from tests.conftest import hooks_left

pytestmark = pytest.mark.usefixtures("one_thread")

LENGTH, SIDE = 6, 16


@pytest.fixture(scope="module")
def inspector():
    return clip_inspector(tiny_c3d())


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    generator = torch.Generator().manual_seed(5)
    return torch.randint(0, 5, (9, 3, LENGTH, SIDE, SIDE), generator=generator).float() / 4  # in [0, 1]: shown as is


@pytest.fixture(scope="module")
def index(inspector, clips):
    return build_index(inspector, clips, ["1", "4"], k=3, progress=False)


def strips(widget) -> np.ndarray:
    return np.frombuffer(widget.crops["data"], np.uint8).reshape(widget.crops["shape"])


def test_filmstrips_are_the_space_time_fields_around_the_maxima(index, clips):
    widget = TopActivations(index, "4", 1)
    # layer "4" (conv 3, max pool 2, conv 3, all padded by 1): unit (t, y, x) sees frames 2t-3 .. 2t+4, rows 2y-3 ..
    # 2y+4 and columns 2x-3 .. 2x+4 of the clip: 8 frames × 8×8 px, gray where that is padding
    assert widget.crops["shape"] == [3, 8, 8 * 8 + 7 * STRIP_GAP, 3]
    assert "8 frames × 8×8 px" in widget.crops["note"]
    for k, (clip_id, _value, (t, y, x)) in enumerate(index.top("4", 1)):
        frames = np.round(clips[clip_id].permute(1, 2, 3, 0).numpy() * 255).astype(np.uint8)  # [T,H,W,3]
        expected = np.full((8, 8 * 8 + 7 * STRIP_GAP, 3), 255, np.uint8)
        for slot in range(8):
            tile = np.full((8, 8, 3), OUTSIDE, np.uint8)
            frame = 2 * t - 3 + slot
            for row in range(8):
                for col in range(8):
                    r, c = 2 * y - 3 + row, 2 * x - 3 + col
                    if 0 <= frame < LENGTH and 0 <= r < SIDE and 0 <= c < SIDE:
                        tile[row, col] = frames[frame, r, c]
            expected[:, slot * (8 + STRIP_GAP):slot * (8 + STRIP_GAP) + 8] = tile
        np.testing.assert_array_equal(strips(widget)[k], expected)
    widget.selected = 0
    clip_id, value, (t, y, x) = index.top("4", 1)[0]
    assert widget.full["frames"] == [max(0, 2 * t - 3), min(LENGTH, 2 * t + 5)]
    assert widget.full["box"] == [max(0, 2 * y - 3), max(0, 2 * x - 3), min(SIDE, 2 * y + 5), min(SIDE, 2 * x + 5)]
    assert widget.full["shape"] == [SIDE, SIDE, 3] and widget.full["value"] == value
    assert hooks_left(index.inspector.model) == 0


def test_answers_echo_the_request_of_a_browser_update(index):
    widget = TopActivations(index, "1", 0)
    widget.set_state({"channel": 2, "selected": -1, "request": 41})
    assert widget.crops["request"] == 41 and widget.crops["channel"] == 2
    widget.set_state({"selected": 1, "request": 42})
    assert widget.full["request"] == 42 and widget.full["selected"] == 1
    assert widget.crops["request"] == 41  # a selection asks for no new crops
    widget.set_state({"show": "projection"})
    assert widget.projections["request"] == 42 and "no deconvnet projection for clips" in widget.projections["note"]
    widget.channel = 3  # from Python alone: answered with the current id
    assert widget.crops["request"] == 42


def test_to_png_draws_the_filmstrips(index, tmp_path):
    widget = TopActivations(index, "4", 0)
    widget.selected = 1
    png = widget.to_png(tmp_path / "top.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "top.png").stat().st_size > 1000


def test_a_loaded_clip_index_without_its_model_shows_whole_filmstrips(index, tmp_path):
    from cnnwidgets.backend.index import Index

    index.save(tmp_path / "clips.idx")
    widget = TopActivations(Index.load(tmp_path / "clips.idx"), "4", 1)  # no model: no field to measure
    assert "whole clips shown" in widget.crops["note"]
    assert widget.crops["shape"][0] == 3 and widget.crops["shape"][2] > 3 * widget.crops["shape"][1]
